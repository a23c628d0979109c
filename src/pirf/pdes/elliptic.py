"""Building blocks of the Dirichlet problems on the unit square (Poisson, Helmholtz, Darcy).

Fields live on ``R x R`` nodes with spacing ``h = 1 / (R - 1)``; boundary nodes hold the
(zero) Dirichlet value and the unknowns are the ``n = R - 2`` interior nodes per axis.

The five-point Laplacian with zero Dirichlet values is diagonalised by the type-I discrete
sine transform: with ``S[j, k] = sin(pi (j+1) (k+1) / (n+1))`` (symmetric, ``S S = (n+1)/2 I``)
and eigenvalues ``mu_k = -(4 / h^2) sin^2(pi (k+1) / (2 (n+1)))``, the system
``(Laplacian_h + c) v = f`` is solved exactly by two batched matrix products each way.
Matrix products (rather than FFTs) keep the solver exact in float64, identical on CPU and
GPU, and fast at the grid sizes used here (n <= 254: O(n^3) per sample, tensor-core friendly).
"""

from __future__ import annotations

import math

import torch

from pirf.errors import PirfError


def interior(fields: torch.Tensor) -> torch.Tensor:
    """The interior nodes ``[..., 1:-1, 1:-1]``."""
    return fields[..., 1:-1, 1:-1]


def with_zero_boundary(interior_values: torch.Tensor) -> torch.Tensor:
    """Pad interior values ``(..., n, n)`` with a ring of zeros to the full grid."""
    return torch.nn.functional.pad(interior_values, (1, 1, 1, 1))


def node_spacing(resolution: int) -> float:
    """``h = 1 / (R - 1)`` of the unit square's node grid."""
    return 1.0 / (resolution - 1)


def laplacian_5pt(fields: torch.Tensor) -> torch.Tensor:
    """Five-point Laplacian at the interior nodes of full-grid ``fields`` ``(..., R, R)``.

    Uses the boundary values as stored; returns ``(..., R-2, R-2)``.
    """
    h = node_spacing(fields.shape[-1])
    if fields.shape[-1] != fields.shape[-2]:
        raise PirfError(f"expected a square grid, got {tuple(fields.shape[-2:])}")
    center = fields[..., 1:-1, 1:-1]
    neighbours = (
        fields[..., :-2, 1:-1]
        + fields[..., 2:, 1:-1]
        + fields[..., 1:-1, :-2]
        + fields[..., 1:-1, 2:]
    )
    return (neighbours - 4.0 * center) / h**2


class DirichletSineSolver:
    """Exact solver of ``(Laplacian_h + shift) v = f`` on the interior nodes, zero boundary.

    Construct once per (resolution, dtype, device); :meth:`solve` takes any batch
    ``(..., n, n)``. ``shift`` must not hit an eigenvalue of ``-Laplacian_h``.
    """

    def __init__(
        self,
        resolution: int,
        *,
        shift: float = 0.0,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ) -> None:
        n = resolution - 2
        if n < 1:
            raise PirfError(f"resolution {resolution} has no interior nodes; use at least 3")
        h = node_spacing(resolution)
        k = torch.arange(1, n + 1, dtype=torch.float64)
        sine = torch.sin(math.pi * k[:, None] * k[None, :] / (n + 1))
        mu = -(4.0 / h**2) * torch.sin(math.pi * k / (2 * (n + 1))) ** 2
        denominator = mu[:, None] + mu[None, :] + shift
        if denominator.abs().min() < 1e-12 * denominator.abs().max():
            raise PirfError(f"shift {shift} is an eigenvalue of the discrete Laplacian")
        # Fold the transform's normalisation (2/(n+1))^2 into the inverse eigenvalues.
        self._sine = sine.to(dtype=dtype, device=device)
        self._inverse = ((2.0 / (n + 1)) ** 2 / denominator).to(dtype=dtype, device=device)
        self.resolution = resolution

    def transform(self, values: torch.Tensor) -> torch.Tensor:
        """Unnormalised 2-D DST-I ``S v S`` of ``(..., n, n)``.

        On the CPU each sample is transformed by its own ``n x n`` products: BLAS picks its
        kernels (and so the rounding) by the operands' shapes, and a batched product was
        measured to change a sample's last bits with the batch size. One sample at a time,
        a result is bitwise the same in any batch, at no measurable cost next to the
        ``O(n^3)`` products. On a GPU the batch stays whole: there throughput matters more.
        """
        if values.device.type != "cpu" or values.ndim == 2:
            return self._sine @ values @ self._sine
        flat = values.reshape(-1, *values.shape[-2:])
        out = torch.stack([self._sine @ sample @ self._sine for sample in flat.unbind()])
        return out.reshape(values.shape)

    def solve(self, rhs: torch.Tensor) -> torch.Tensor:
        """Interior solution ``(..., n, n)`` for interior right-hand side ``rhs``."""
        return self.transform(self.transform(rhs) * self._inverse)
