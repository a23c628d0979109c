"""Unit-square Dirichlet building blocks: the five-point Laplacian and the exact DST solver."""

import itertools
import math

import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.linalg
import torch

from pirf.errors import PirfError
from pirf.pdes.elliptic import (
    DirichletSineSolver,
    interior,
    laplacian_5pt,
    node_spacing,
    with_zero_boundary,
)
from pirf.pdes.grid import UNIT_SQUARE_NODES

PI = math.pi


def observed_orders(errors: list[float]) -> list[float]:
    """Orders between successive grids that halve h."""
    return [math.log2(coarse / fine) for coarse, fine in itertools.pairwise(errors)]


def sparse_operator(resolution: int, shift: float) -> scipy.sparse.csr_matrix:
    """``Laplacian_h + shift`` on the interior nodes, row-major ``(i, j) -> i n + j``,
    assembled from the 1-D second-difference matrix."""
    n = resolution - 2
    h = 1.0 / (resolution - 1)
    second = scipy.sparse.diags([1.0, -2.0, 1.0], [-1, 0, 1], shape=(n, n)) / h**2
    identity = scipy.sparse.identity(n)
    operator = scipy.sparse.kron(second, identity) + scipy.sparse.kron(identity, second)
    return (operator + shift * scipy.sparse.identity(n * n)).tocsr()


# shift 30 lies between the two smallest eigenvalues of -Laplacian_h (~2 pi^2 and ~5 pi^2):
# an indefinite operator; -50 is a screened (more definite) one.
@pytest.mark.parametrize("resolution", [12, 17])
@pytest.mark.parametrize("shift", [0.0, 1.0, 30.0, -50.0])
def test_sine_solver_matches_a_sparse_direct_solve(resolution, shift):
    n = resolution - 2
    generator = torch.Generator().manual_seed(resolution)
    rhs = torch.randn(3, n, n, dtype=torch.float64, generator=generator)
    solution = DirichletSineSolver(resolution, shift=shift).solve(rhs)
    matrix = sparse_operator(resolution, shift)
    for sample in range(3):
        direct = scipy.sparse.linalg.spsolve(matrix.tocsc(), rhs[sample].numpy().ravel())
        error = np.linalg.norm(solution[sample].numpy().ravel() - direct)
        # Both are backward stable: the forward error is ~ eps * cond, and cond <= 200 for
        # these grids and shifts (measured errors ~1e-15).
        assert error < 1e-13 * np.linalg.norm(direct), (shift, error)


def test_sine_transform_is_its_own_inverse_up_to_scale():
    resolution = 13
    n = resolution - 2
    solver = DirichletSineSolver(resolution)
    values = torch.randn(2, n, n, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    # S S = (n + 1) / 2 I per axis.
    twice = solver.transform(solver.transform(values))
    assert torch.allclose(twice, ((n + 1) / 2) ** 2 * values, rtol=0, atol=1e-12)


def test_sine_solver_refuses_an_eigenvalue_shift():
    resolution = 10
    h = node_spacing(resolution)
    smallest = 2 * (4 / h**2) * math.sin(PI / (2 * (resolution - 1))) ** 2
    with pytest.raises(PirfError, match="eigenvalue"):
        DirichletSineSolver(resolution, shift=smallest)
    with pytest.raises(PirfError, match="interior"):
        DirichletSineSolver(2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sine_solver_keeps_dtype(dtype):
    solver = DirichletSineSolver(9, dtype=dtype)
    out = solver.solve(torch.ones(7, 7, dtype=dtype))
    assert out.dtype == dtype and out.shape == (7, 7)


def smooth_function(resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``u = sin(pi x) exp(y) cos(2 y)`` and its Laplacian on the nodes."""
    x, y = UNIT_SQUARE_NODES.mesh((resolution, resolution))
    u = torch.sin(PI * x) * torch.exp(y) * torch.cos(2 * y)
    # d2/dy2 [exp(y) cos(2y)] = exp(y) (-3 cos(2y) - 4 sin(2y))
    u_yy = torch.sin(PI * x) * torch.exp(y) * (-3 * torch.cos(2 * y) - 4 * torch.sin(2 * y))
    return u, -(PI**2) * u + u_yy


def test_laplacian_is_second_order_on_smooth_functions():
    errors = []
    for resolution in (17, 33, 65):
        u, laplacian = smooth_function(resolution)
        errors.append(float((laplacian_5pt(u) - interior(laplacian)).abs().max()))
    orders = observed_orders(errors)
    # Truncation error (h^2 / 12)(u_xxxx + u_yyyy) + O(h^4): orders 2 - O(h^2).
    assert all(1.95 < order < 2.05 for order in orders), (errors, orders)


def test_laplacian_is_exact_on_cubics():
    x, y = UNIT_SQUARE_NODES.mesh((11, 11))
    u = x**3 - 2 * x**2 * y + y**3 + x * y
    exact = 6 * x - 4 * y + 6 * y
    # Fourth derivatives vanish: only rounding of |u| <= 3, amplified by 8 / h^2 = 800
    # (at most ~5e-13; measured ~8e-14).
    assert float((laplacian_5pt(u) - interior(exact)).abs().max()) < 1e-12


def test_laplacian_batches_and_rejects_rectangles():
    u, _ = smooth_function(9)
    batch = torch.stack([u, 2 * u])[None]
    out = laplacian_5pt(batch)
    assert out.shape == (1, 2, 7, 7)
    assert torch.allclose(out[0, 1], 2 * out[0, 0])
    with pytest.raises(PirfError, match="square"):
        laplacian_5pt(torch.zeros(9, 10, dtype=torch.float64))


def test_interior_and_zero_boundary_are_inverse():
    values = torch.arange(1.0, 10.0).reshape(1, 3, 3)
    full = with_zero_boundary(values)
    assert full.shape == (1, 5, 5)
    assert torch.equal(interior(full), values)
    assert float(full.abs().sum()) == float(values.sum())  # the ring is zero
    assert node_spacing(5) == 0.25
