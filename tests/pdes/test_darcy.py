"""Darcy: finite-volume operator, batched PCG solver, residual, snap and data generation."""

import itertools
import math

import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.linalg
import torch

from pirf.errors import PirfError
from pirf.pdes import get
from pirf.pdes.darcy import (
    Darcy,
    central_difference_form,
    darcy_operator,
    darcy_pcg,
    solve_darcy,
)
from pirf.pdes.elliptic import interior, with_zero_boundary
from pirf.pdes.pcg import cg_iteration_bound
from pirf.seeding import unit_generators

PI = math.pi
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def smooth_problem(resolution: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A smooth coefficient, an exact solution and its forcing ``-div(a grad u)`` on nodes.

    ``a = 2 + sin(2 pi x) cos(pi y)`` (between 1 and 3), ``u = sin(pi x) sin(pi y)``.
    """
    x, y = Darcy.grid.mesh((resolution, resolution))
    a = 2.0 + torch.sin(2 * PI * x) * torch.cos(PI * y)
    a_x = 2 * PI * torch.cos(2 * PI * x) * torch.cos(PI * y)
    a_y = -PI * torch.sin(2 * PI * x) * torch.sin(PI * y)
    u = torch.sin(PI * x) * torch.sin(PI * y)
    u_x = PI * torch.cos(PI * x) * torch.sin(PI * y)
    u_y = PI * torch.sin(PI * x) * torch.cos(PI * y)
    forcing = -(a_x * u_x + a_y * u_y) + 2 * PI**2 * a * u
    return a, u, forcing


def observed_orders(errors: list[float]) -> list[float]:
    """Orders between successive grids that halve h."""
    return [math.log2(coarse / fine) for coarse, fine in itertools.pairwise(errors)]


RESOLUTIONS = [17, 33, 65]  # h = 1/16, 1/32, 1/64


def test_operator_is_second_order_consistent_on_smooth_fields():
    errors = []
    for resolution in RESOLUTIONS:
        a, u, forcing = smooth_problem(resolution)
        errors.append(float((darcy_operator(a, u) - interior(forcing)).abs().max()))
    orders = observed_orders(errors)
    # Truncation error of the five-point flux form with harmonic faces is O(h^2).
    assert all(1.9 < order < 2.1 for order in orders), (errors, orders)


def test_solver_converges_at_second_order_on_manufactured_solution():
    errors = []
    for resolution in RESOLUTIONS:
        a, u, forcing = smooth_problem(resolution)
        solution = solve_darcy(a[None], interior(forcing)[None], rtol=1e-13)[0]
        errors.append(float((solution - u).abs().max()))
    orders = observed_orders(errors)
    assert all(1.9 < order < 2.1 for order in orders), (errors, orders)
    assert errors[-1] < 1e-3


def assemble_fv_matrix(a: np.ndarray) -> scipy.sparse.csr_matrix:
    """The harmonic-mean five-point matrix on interior nodes, built entry by entry."""
    resolution = a.shape[0]
    n = resolution - 2
    inverse_h2 = (resolution - 1) ** 2
    rows, cols, values = [], [], []
    for i in range(1, resolution - 1):
        for j in range(1, resolution - 1):
            row = (i - 1) * n + (j - 1)
            diagonal = 0.0
            for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                ni, nj = i + di, j + dj
                face = 2 * a[i, j] * a[ni, nj] / (a[i, j] + a[ni, nj]) * inverse_h2
                diagonal += face
                if 1 <= ni <= resolution - 2 and 1 <= nj <= resolution - 2:
                    rows.append(row)
                    cols.append((ni - 1) * n + (nj - 1))
                    values.append(-face)
            rows.append(row)
            cols.append(row)
            values.append(diagonal)
    return scipy.sparse.csr_matrix((values, (rows, cols)), shape=(n * n, n * n))


def test_pcg_matches_sparse_direct_solve_of_the_same_matrix():
    resolution = 24
    a = Darcy().sample_inputs(unit_generators(5, 0, range(3)), resolution)[:, 0]
    rhs = (
        torch.randn(
            3,
            resolution - 2,
            resolution - 2,
            dtype=torch.float64,
            generator=torch.Generator().manual_seed(1),
        )
        + 1.0
    )
    result = darcy_pcg(a, rhs, rtol=1e-13)
    for sample in range(3):
        matrix = assemble_fv_matrix(a[sample].numpy())
        direct = scipy.sparse.linalg.spsolve(matrix.tocsc(), rhs[sample].numpy().ravel())
        pcg_solution = result.solution[sample].numpy().ravel()
        # rtol 1e-13 in the preconditioned norm bounds the relative energy-norm error by
        # ~2e-13; allow a few digits for the condition number of the grid norm conversion.
        assert np.linalg.norm(pcg_solution - direct) < 1e-10 * np.linalg.norm(direct)


def test_ground_truth_residual_is_at_solver_tolerance_far_below_noise():
    pde = Darcy()
    fields = pde.generate(unit_generators(0, "test", range(4)), 32)
    residual = pde.residual(fields)
    assert residual.shape == (4, 1, 30, 30)
    noise = torch.randn(
        fields[:, 1].shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2)
    )
    perturbed = fields.clone()
    perturbed[:, 1] += 1e-3 * fields[:, 1].std() * with_zero_boundary(interior(noise))
    ratio = residual.flatten(1).norm(dim=1) / pde.residual(perturbed).flatten(1).norm(dim=1)
    assert float(ratio.max()) < 1e-6, ratio
    # The forcing is 1: a pointwise residual of 1e-7 is still 1e-7 of it (measured ~1e-9).
    assert float(residual.abs().max()) < 1e-7


def test_iterations_stay_flat_as_the_grid_is_refined():
    pde = Darcy()
    rtol = 1e-11
    bound = cg_iteration_bound(12.0 / 3.0, rtol)
    counts = []
    for resolution in (17, 33, 65, 129):
        a = pde.sample_inputs(unit_generators(1, 0, range(2)), resolution)[:, 0]
        rhs = torch.ones(2, resolution - 2, resolution - 2, dtype=torch.float64)
        result = darcy_pcg(a, rhs, rtol=rtol)
        assert float(result.relative_residual.max()) <= rtol
        counts.append(int(result.iterations.max()))
    # Preconditioned condition number <= contrast 4: CG's bound (25 here) holds at every h,
    # where unpreconditioned CG would need O(1/h) iterations.
    assert max(counts) <= bound + 2, counts
    assert max(counts) - min(counts) <= 4, counts


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_generation_is_deterministic_whatever_the_batch(dtype):
    pde = Darcy()
    full = pde.generate(unit_generators(3, 0, range(5)), 24, dtype=dtype)
    pieces = torch.cat(
        [
            pde.generate(unit_generators(3, 0, index), 24, dtype=dtype)
            for index in ([0], [1, 2, 3], [4])
        ]
    )
    # Each sample stops on its own and the preconditioner transforms samples one by one on
    # the CPU, so a sample's solution is bitwise independent of its batch.
    assert torch.equal(full, pieces)


@pytest.mark.parametrize("device", DEVICES)
def test_float32_agrees_with_float64(device):
    pde = Darcy()
    inputs = pde.sample_inputs(unit_generators(4, 0, range(3)), 32)
    reference = pde.solve(inputs)
    single = pde.solve(inputs.to(device=device, dtype=torch.float32))
    assert single.dtype == torch.float32 and single.device.type == device
    difference = (single[:, 1].double().cpu() - reference[:, 1]).flatten(1).norm(dim=1)
    # The default float32 tolerance is eps * R ~ 4e-6 in the energy norm.
    assert float((difference / reference[:, 1].flatten(1).norm(dim=1)).max()) < 3e-5


def test_inputs_are_binary_and_snap_thresholds_at_the_midpoint():
    pde = get("darcy")
    a = pde.sample_inputs(unit_generators(0, 0, range(8)), 32)
    assert a.shape == (8, 1, 32, 32) and a.dtype == torch.float64
    assert set(a.unique().tolist()) == {3.0, 12.0}
    fields = torch.stack(
        [torch.tensor([[2.0, 7.49], [7.5, 13.0]]), torch.tensor([[0.1, 0.2], [0.3, 0.4]])]
    )[None].expand(1, 2, 2, 2)
    fields = torch.nn.functional.pad(fields, (0, 6, 0, 6), value=10.0)  # 8 x 8, min grid
    snapped = pde.snap(fields)
    assert snapped[0, 0, :2, :2].tolist() == [[3.0, 3.0], [12.0, 12.0]]
    assert bool((snapped[0, 0, 2:] == 12.0).all())
    assert torch.equal(snapped[:, 1], fields[:, 1])


def test_consistency_is_zero_for_solutions_and_sees_wrong_ones():
    pde = Darcy()
    fields = pde.generate(unit_generators(6, 0, range(3)), 24)
    assert float(pde.consistency(fields).max()) < 1e-9
    blurred = fields.clone()
    blurred[:, 0] += 0.5 * torch.randn(
        blurred[:, 0].shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    assert float(pde.consistency(blurred).max()) < 1e-9  # snapping restores the coefficient
    scaled = fields.clone()
    scaled[:, 1] *= 1.01
    assert torch.allclose(pde.consistency(scaled), torch.full((3,), 0.01, dtype=torch.float64))


def test_residual_is_differentiable_in_both_channels():
    pde = Darcy()
    generator = torch.Generator().manual_seed(0)
    a = 3.0 + 9.0 * torch.rand(1, 8, 8, dtype=torch.float64, generator=generator)
    u = torch.randn(1, 8, 8, dtype=torch.float64, generator=generator)
    fields = torch.stack([a, u], dim=1).requires_grad_()
    assert torch.autograd.gradcheck(pde.residual, (fields,))
    assert torch.autograd.gradcheck(pde.reference_residual, (fields,))


def test_central_form_agrees_on_smooth_fields_but_not_across_jumps():
    pde = Darcy(forcing=0.0)
    errors = []
    for resolution in RESOLUTIONS:
        a, u, _ = smooth_problem(resolution)
        fields = torch.stack([a, u])[None]
        central = central_difference_form(a, u)[None, None]
        errors.append(float((pde.residual(fields) - central).abs().max()))
    assert all(1.8 < order < 2.2 for order in observed_orders(errors)), errors
    darcy = Darcy()
    data = darcy.generate(unit_generators(0, 0, range(2)), 32)
    # On binary data the central-difference form is O(1) at interfaces (forcing is 1), and
    # so is the reference residual built on it.
    assert float((central_difference_form(data[:, 0], data[:, 1]) - 1.0).abs().max()) > 0.5
    assert float(darcy.reference_residual(data).abs().max()) > 0.5
    assert float(darcy.residual(data).abs().max()) < 1e-7


def test_solver_errors_are_clear():
    a = Darcy().sample_inputs(unit_generators(0, 0, [0]), 16)[:, 0]
    with pytest.raises(PirfError, match="did not converge in 2 iterations"):
        solve_darcy(a, 1.0, max_iterations=2)
    with pytest.raises(PirfError, match="positive"):
        solve_darcy(-a, 1.0)
    with pytest.raises(PirfError, match="a_low < a_high"):
        Darcy(a_low=12.0, a_high=3.0)


def test_metadata_and_presets():
    pde = Darcy.from_preset("paper")
    assert Darcy.presets["tiny"]["resolution"] == 32
    assert Darcy.presets["small"]["resolution"] == 64
    assert Darcy.presets["paper"]["resolution"] == 128
    meta = pde.metadata()
    assert meta["channels"] == ["a", "u"] and meta["input_channels"] == ["a"]
    assert pde.threshold == 7.5
