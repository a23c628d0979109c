"""Time and memory of a full evaluation at realistic sizes (benchmark, not a test).

Run with ``pytest -m benchmark tests/evaluation/test_timing.py -s``. The fields are smooth
random fields (white noise filtered by ``(1 + |k|^2)^-1.5``) with a pointwise residual:
the content does not matter for cost, only the sizes.
"""

import resource
import time

import pytest
import torch

from pirf.evaluation import evaluate_fields, ground_truth_floor, prepare_reference
from pirf.pdes import PDE, Normalisation


class Pointwise(PDE):
    """Channels ``(a, u, v)``; residual ``u - a^2`` everywhere (cost only)."""

    name = "timing-pointwise"
    channels = ("a", "u", "v")

    def residual(self, fields: torch.Tensor) -> torch.Tensor:
        return fields[:, 1:2] - fields[:, :1] ** 2


def smooth_fields(n: int, channels: int, resolution: int, seed: int) -> torch.Tensor:
    """``n`` smooth random fields (float32), made 256 at a time to keep memory low."""
    generator = torch.Generator().manual_seed(seed)
    k = torch.fft.fftfreq(resolution, d=1.0 / resolution)
    filter_ = (1 + k[:, None] ** 2 + k[None, :] ** 2) ** -1.5
    chunks = []
    for start in range(0, n, 256):
        noise = torch.randn(
            min(256, n - start), channels, resolution, resolution, generator=generator
        )
        chunks.append(torch.fft.ifft2(torch.fft.fft2(noise) * filter_).real.to(torch.float32))
    return torch.cat(chunks)


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


@pytest.mark.benchmark
@pytest.mark.parametrize(
    ("n", "resolution", "channels"), [(512, 32, 2), (512, 64, 2), (512, 64, 3), (1600, 128, 3)]
)
def test_evaluation_cost(n, resolution, channels):
    pde = type("Timing", (Pointwise,), {"channels": ("a", "u", "v")[:channels]})()
    reference = smooth_fields(2 * n, channels, resolution, seed=0)
    samples = smooth_fields(n, channels, resolution, seed=1)
    normalisation = Normalisation.from_fields(reference[:256])  # from_fields copies in float64
    data_peak = peak_rss_gib()
    seconds = {}
    start = time.perf_counter()
    report = evaluate_fields(pde, samples, reference, normalisation)
    seconds["evaluate_fields (reference as tensor)"] = time.perf_counter() - start
    start = time.perf_counter()
    prepared = prepare_reference(pde, reference, normalisation)
    seconds["prepare_reference"] = time.perf_counter() - start
    start = time.perf_counter()
    evaluate_fields(pde, samples, prepared, normalisation)
    seconds["evaluate_fields (prepared)"] = time.perf_counter() - start
    start = time.perf_counter()
    ground_truth_floor(pde, prepared, normalisation, n_samples=n)
    seconds["ground_truth_floor (prepared)"] = time.perf_counter() - start
    timings = ", ".join(f"{name} {value:.1f} s" for name, value in seconds.items())
    print(
        f"\n{n} samples vs {2 * n} reference, {channels} x {resolution}^2, "
        f"{torch.get_num_threads()} threads: {timings}; peak RSS {data_peak:.2f} GiB with the "
        f"data, {peak_rss_gib():.2f} GiB after evaluating"
    )
    assert report["counts"]["subset"] == n
