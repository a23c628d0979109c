"""Helmholtz: exact DST solver of Laplacian(u) + k^2 u = a, residual, consistency, data."""

import itertools
import math

import pytest
import torch

import pirf.pdes
from pirf.errors import PirfError
from pirf.pdes.elliptic import interior, node_spacing, with_zero_boundary
from pirf.pdes.grf import cosine_grf
from pirf.pdes.helmholtz import Helmholtz
from pirf.pdes.poisson import Poisson
from pirf.seeding import unit_generators

PI = math.pi
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
RESOLUTIONS = [17, 33, 65, 129]  # h = 1/16 ... 1/128


def manufactured(resolution: int, wavenumber: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``u = x (1 - x) e^x sin(2 pi y)`` (zero on the boundary) and
    ``a = Laplacian(u) + k^2 u`` on the nodes."""
    x, y = Helmholtz.grid.mesh((resolution, resolution))
    f = x * (1 - x) * torch.exp(x)
    f_xx = torch.exp(x) * (-(x**2) - 3 * x)  # (x - x^2) e^x differentiated twice
    g = torch.sin(2 * PI * y)
    u = f * g
    return u, f_xx * g - 4 * PI**2 * u + wavenumber**2 * u


def observed_orders(errors: list[float]) -> list[float]:
    return [math.log2(coarse / fine) for coarse, fine in itertools.pairwise(errors)]


# k = 5: k^2 = 25 lies above the smallest Dirichlet eigenvalue 2 pi^2 ~ 19.7, an indefinite
# operator; the scheme must still converge at second order.
@pytest.mark.parametrize("wavenumber", [1.0, 5.0])
def test_solver_converges_at_second_order_on_a_manufactured_solution(wavenumber):
    pde = Helmholtz(wavenumber=wavenumber)
    errors = []
    for resolution in RESOLUTIONS:
        u, a = manufactured(resolution, wavenumber)
        errors.append(float((pde.solve(a[None, None])[0, 1] - u).abs().max()))
    orders = observed_orders(errors)
    # Error = C h^2 + O(h^4): orders 2 + O(h^2) (measured 2.00-2.02); a wrong sign of the
    # k^2 term or a first-order scheme gives an O(1) error or order ~1.
    assert all(1.95 < order < 2.05 for order in orders), (errors, orders)
    assert errors[-1] < 5e-4 * float(u.abs().max())


def test_residual_of_exact_fields_vanishes_at_second_order_and_adds_k2_u():
    pde = Helmholtz()
    errors = []
    for resolution in RESOLUTIONS[:3]:
        u, a = manufactured(resolution, 1.0)
        fields = torch.stack([a, u])[None]
        residual = pde.residual(fields)
        assert residual.shape == (1, 1, resolution - 2, resolution - 2)
        errors.append(float(residual.abs().max()))
        difference = residual - Poisson().residual(fields)
        assert torch.allclose(difference[0, 0], interior(u), rtol=0, atol=1e-12)
    orders = observed_orders(errors)
    assert all(1.95 < order < 2.05 for order in orders), (errors, orders)


def residual_ratio(pde: Helmholtz, fields: torch.Tensor) -> torch.Tensor:
    """Per-sample ||residual(fields)|| / ||residual(fields with u perturbed by 1e-3 noise)||."""
    noise = torch.randn(
        fields[:, 1].shape, dtype=fields.dtype, generator=torch.Generator().manual_seed(3)
    )
    perturbed = fields.clone()
    perturbed[:, 1] += 1e-3 * fields[:, 1].std() * with_zero_boundary(interior(noise))
    return pde.residual(fields).flatten(1).norm(dim=1) / (
        pde.residual(perturbed).flatten(1).norm(dim=1)
    )


def test_ground_truth_residual_is_at_rounding_level_far_below_noise():
    pde = Helmholtz()
    fields = pde.generate(unit_generators(0, "test", range(4)), 32)
    residual = pde.residual(fields)
    assert residual.shape == (4, 1, 30, 30)
    # Rounding only: eps * cond ~ 2e-16 * 400 relative to the source (measured ~4e-14).
    relative = residual.flatten(1).norm(dim=1) / interior(fields[:, 0]).flatten(1).norm(dim=1)
    assert float(relative.max()) < 1e-12, relative
    assert float(residual_ratio(pde, fields).max()) < 1e-6


@pytest.mark.parametrize("device", DEVICES)
def test_float32_solves_to_float32_precision(device):
    pde = Helmholtz()
    inputs = pde.sample_inputs(unit_generators(4, 0, range(4)), 32)
    reference = pde.solve(inputs)
    single = pde.solve(inputs.to(device=device, dtype=torch.float32))
    assert single.dtype == torch.float32 and single.device.type == device
    assert pde.residual(single).dtype == torch.float32
    single = single.cpu().double()
    # See the Poisson test: a few float32 roundings in u (measured ~3e-7), and a residual
    # within a modest factor of the exact solution's rounded to float32 (measured ~6).
    assert float(pde.consistency(single).max()) < 1e-6
    rounded = torch.stack([reference[:, 0], reference[:, 1].float().double()], dim=1)
    ratio = pde.residual(single).flatten(1).norm(dim=1) / (
        pde.residual(rounded).flatten(1).norm(dim=1)
    )
    assert float(ratio.max()) < 20.0
    assert float(residual_ratio(pde, single).max()) < 5e-3  # 1e-3 noise: measured 2.3e-4


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_generation_is_bitwise_identical_whatever_the_batch(dtype):
    pde = Helmholtz()
    full = pde.generate(unit_generators(3, 0, range(4)), 33, dtype=dtype)
    pieces = torch.cat(
        [pde.generate(unit_generators(3, 0, part), 33, dtype=dtype) for part in ([0, 1], [2], [3])]
    )
    assert torch.equal(full, pieces)


def test_inputs_are_the_grf_with_zero_boundary():
    pde = pirf.pdes.get("helmholtz")
    inputs = pde.sample_inputs(unit_generators(1, 0, range(3)), 24)
    assert inputs.shape == (3, 1, 24, 24) and inputs.dtype == torch.float64
    field = cosine_grf(unit_generators(1, 0, range(3)), 24, 2.0, 3.0)
    assert torch.equal(inputs[:, 0], with_zero_boundary(interior(field)))


def test_consistency_zeroes_the_source_boundary_and_sees_wrong_solutions():
    pde = Helmholtz()
    fields = pde.generate(unit_generators(6, 0, range(3)), 24)
    assert float(pde.consistency(fields).max()) < 1e-13
    # A generated a with a non-zero boundary is re-solved as the sampler would make it.
    noisy_boundary = fields.clone()
    ring = 1.0 - with_zero_boundary(torch.ones(22, 22, dtype=torch.float64))
    noisy_boundary[:, 0] += 0.3 * ring
    assert float(pde.consistency(noisy_boundary).max()) < 1e-13
    scaled = fields.clone()
    scaled[:, 1] *= 0.98
    assert torch.allclose(pde.consistency(scaled), torch.full((3,), 0.02, dtype=torch.float64))


def test_wavenumber_enters_the_solution():
    inputs = Helmholtz().sample_inputs(unit_generators(2, 0, range(2)), 20)
    # k = 0 is Poisson, through the same cached solver.
    assert torch.equal(Helmholtz(wavenumber=0.0).solve(inputs), Poisson().solve(inputs))
    pde = Helmholtz(wavenumber=2.0)
    poisson = Poisson().solve(inputs)[:, 1]
    difference = pde.solve(inputs)[:, 1] - poisson
    # (L + k^2) u_H = a = L u_P  =>  (L + k^2)(u_H - u_P) = -k^2 u_P.
    expected = pde.solve(-4.0 * poisson[:, None])[:, 1]
    assert torch.allclose(difference, expected, rtol=0, atol=1e-13 * float(poisson.abs().max()))
    # ||u_H - u_P|| <= k^2 / (lambda_min - k^2) ||u_P||, lambda_min ~ 2 pi^2: 0.25 here.
    relative = difference.flatten(1).norm(dim=1) / poisson.flatten(1).norm(dim=1)
    assert bool(((relative > 0.01) & (relative < 4.0 / (2 * PI**2 - 4.0))).all()), relative


def test_a_resonant_wavenumber_is_refused():
    resolution = 16
    h = node_spacing(resolution)
    smallest = 2 * (4 / h**2) * math.sin(PI * h / 2) ** 2  # smallest eigenvalue of -Lap_h
    pde = Helmholtz(wavenumber=math.sqrt(smallest))
    inputs = pde.sample_inputs(unit_generators(0, 0, [0]), resolution)
    with pytest.raises(PirfError, match="eigenvalue"):
        pde.solve(inputs)
    with pytest.raises(PirfError, match="finite wavenumber"):
        Helmholtz(wavenumber=float("inf"))


def test_residual_is_differentiable():
    pde = Helmholtz(wavenumber=2.0)
    fields = torch.randn(
        1, 2, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    ).requires_grad_()
    assert torch.autograd.gradcheck(pde.residual, (fields,))


def test_metadata_and_presets():
    assert {name: config["resolution"] for name, config in Helmholtz.presets.items()} == {
        "tiny": 32,
        "small": 64,
        "paper": 128,
    }
    pde = Helmholtz.from_preset("tiny", wavenumber=2.0)
    meta = pde.metadata()
    assert meta["pde"] == "helmholtz" and meta["channels"] == ["a", "u"]
    assert meta["params"] == {"wavenumber": 2.0, "grf_alpha": 2.0, "grf_tau": 3.0}
    assert pde.shift == 4.0 and Helmholtz().wavenumber == 1.0
