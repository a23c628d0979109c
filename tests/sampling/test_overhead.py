"""Sampler overhead against the cost of a network (benchmark, not a test).

Run with ``pytest -m benchmark tests/sampling/test_overhead.py -s``. A denoiser that does
one multiplication measures what sampling costs besides the network: seeded noise, the
ODE updates, micro-batching. The tiny U-Net preset is the smallest real network.
"""

import pytest
import torch

from pirf.models import preset_denoiser
from pirf.sampling import Precision, generate


def trivial(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    return 0.5 * x


def microseconds_per_evaluation(result) -> float:
    """Wall time per sample and network evaluation."""
    return 1e6 * result.seconds / (len(result.samples) * result.nfe_per_sample)


@pytest.mark.benchmark
def test_sampler_overhead_is_negligible():
    shape = (2, 32, 32)
    rows = {}
    for method in ("heun", "euler"):
        generate(trivial, 64, shape, 0, steps=20, method=method)  # warm-up
        rows[f"trivial denoiser, {method}"] = generate(
            trivial, 1024, shape, 0, steps=20, method=method
        )
    model = preset_denoiser("tiny", channels=2, resolution=32).eval()
    for label, precision in (("float32", Precision()), ("bf16, last 2 float32", Precision(True))):
        generate(model, 4, shape, 0, steps=2, precision=precision)  # warm-up
        rows[f"tiny U-Net, heun, {label}"] = generate(
            model, 64, shape, 0, steps=20, precision=precision
        )
    print(f"\n{torch.get_num_threads()} thread(s), 20 steps, {shape}")
    for label, result in rows.items():
        print(
            f"{label:38s} {result.samples_per_second:9.1f} samples/s  "
            f"{microseconds_per_evaluation(result):9.1f} us per sample and evaluation  "
            f"(NFE {result.nfe_per_sample}, micro-batch {result.batch_size})"
        )
    overhead = microseconds_per_evaluation(rows["trivial denoiser, heun"])
    network = microseconds_per_evaluation(rows["tiny U-Net, heun, float32"])
    assert overhead < 0.01 * network
