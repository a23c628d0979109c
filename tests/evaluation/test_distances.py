"""Two-sample distances against naive double loops, and their basic properties."""

import itertools
import math

import pytest
import torch

from pirf.evaluation.distances import (
    BANDWIDTHS,
    energy_distance,
    gaussian_kernel,
    mean_off_diagonal,
    mmd,
    pairwise_sq_distances,
)


def naive_kernel(x: torch.Tensor, y: torch.Tensor, scale: float) -> float:
    d2 = sum((float(a) - float(b)) ** 2 for a, b in zip(x, y, strict=True))
    return sum(math.exp(-d2 / (2 * b * scale)) for b in BANDWIDTHS) / len(BANDWIDTHS)


def naive_mmd(x: torch.Tensor, y: torch.Tensor, scale: float) -> float:
    """Biased MMD^2 by the definition: three double loops over all pairs."""

    def mean_kernel(p, q):
        return sum(naive_kernel(a, b, scale) for a in p for b in q) / (len(p) * len(q))

    return mean_kernel(x, x) + mean_kernel(y, y) - 2 * mean_kernel(x, y)


def naive_energy(x: torch.Tensor, y: torch.Tensor) -> float:
    def mean_distance(p, q):
        total = sum(math.dist(a.tolist(), b.tolist()) for a, b in itertools.product(p, q))
        return total / (len(p) * len(q))

    return 2 * mean_distance(x, y) - mean_distance(x, x) - mean_distance(y, y)


@pytest.fixture
def tiny_sets() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(5, 3, generator=generator, dtype=torch.float64)
    y = 0.7 * torch.randn(7, 3, generator=generator, dtype=torch.float64) + 0.4
    return x, y


def test_pairwise_distances_match_cdist_and_ignore_blocking():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(11, 6, generator=generator, dtype=torch.float64)
    y = torch.randn(9, 6, generator=generator, dtype=torch.float64)
    expected = torch.cdist(x, y, compute_mode="donot_use_mm_for_euclid_dist") ** 2
    for batch_size in (1, 4, 512):
        assert torch.allclose(pairwise_sq_distances(x, y, batch_size=batch_size), expected)
        within = pairwise_sq_distances(x, batch_size=batch_size)
        assert torch.allclose(within, torch.cdist(x, x) ** 2, atol=1e-12)
        assert torch.equal(within, within.T)
        assert torch.all(within.diagonal() == 0)


def test_pairwise_distances_accumulate_float32_features_in_float64():
    x = torch.tensor([[1e4, 1.0]], dtype=torch.float32)
    y = torch.tensor([[1e4, 0.0]], dtype=torch.float32)
    # In float32, |x|^2 + |y|^2 - 2 x.y loses the 1 against 1e8 entirely.
    assert float(pairwise_sq_distances(x, y)[0, 0]) == 1.0


def test_mmd_matches_naive_double_loop(tiny_sets):
    x, y = tiny_sets
    for scale in (0.5, 3.0):
        assert mmd(x, y, scale) == pytest.approx(naive_mmd(x, y, scale), rel=1e-12, abs=1e-14)
        assert mmd(x, y, scale, batch_size=2) == pytest.approx(naive_mmd(x, y, scale), rel=1e-12)


def test_energy_distance_matches_naive_double_loop(tiny_sets):
    x, y = tiny_sets
    assert energy_distance(x, y) == pytest.approx(naive_energy(x, y), rel=1e-10)


def test_identical_sets_are_at_distance_zero(tiny_sets):
    x, _ = tiny_sets
    assert abs(mmd(x, x.clone(), 1.0)) < 1e-14
    # The energy distance takes square roots of squared distances formed as
    # |x|^2 + |y|^2 - 2 x.y: a rounding error of eps |x|^2 ~ 1e-15 on a zero distance
    # becomes ~3e-8 after the root, so "zero" means zero to about sqrt(eps) (seen: 4e-9,
    # depending on the BLAS kernel the product takes).
    assert abs(energy_distance(x, x.clone())) < 1e-7


def test_distances_are_positive_and_grow_with_a_shift():
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(40, 8, generator=generator, dtype=torch.float64)
    y = torch.randn(40, 8, generator=generator, dtype=torch.float64)
    values = [mmd(x, y + shift, 16.0) for shift in (0.0, 0.5, 1.0, 2.0)]
    energies = [energy_distance(x, y + shift) for shift in (0.0, 0.5, 1.0, 2.0)]
    assert min(values) > 0 and min(energies) > 0
    assert values == sorted(values) and energies == sorted(energies)
    assert max(values) <= 2.0


def test_kernel_is_one_at_zero_distance_and_mean_off_diagonal():
    d2 = torch.tensor([[0.0, 2.0], [2.0, 0.0]], dtype=torch.float64)
    kernel = gaussian_kernel(d2, 1.0)
    assert torch.allclose(kernel.diagonal(), torch.ones(2, dtype=torch.float64))
    expected = sum(math.exp(-2.0 / (2 * b)) for b in BANDWIDTHS) / len(BANDWIDTHS)
    assert float(kernel[0, 1]) == pytest.approx(expected)
    assert mean_off_diagonal(d2) == 2.0
