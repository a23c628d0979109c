"""Many samples from a denoiser: seeded, micro-batched, timed.

:func:`generate` returns samples in model space on the CPU; turning them into physical
fields and files is the caller's (``pirf sample``) business.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from pirf.errors import PirfError
from pirf.sampling.noise import initial_noise
from pirf.sampling.samplers import Denoiser, Precision, network_evaluations, sample
from pirf.sampling.schedule import SIGMA_MAX, SIGMA_MIN, karras_sigmas

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class SamplingResult:
    """Samples ``(n, C, H, W)`` (model space, float32, CPU) and what they cost."""

    samples: torch.Tensor
    steps: int
    method: str
    nfe_per_sample: int
    seconds: float
    batch_size: int

    @property
    def seconds_per_sample(self) -> float:
        return self.seconds / max(len(self.samples), 1)

    @property
    def samples_per_second(self) -> float:
        return len(self.samples) / self.seconds if self.seconds > 0 else float("inf")


def default_batch_size(shape: tuple[int, int, int], device: torch.device) -> int:
    """A first micro-batch size: modest on the CPU, large on a GPU (halved on OOM)."""
    pixels = shape[1] * shape[2]
    if device.type == "cuda":
        return max(1, min(4096, (1 << 22) // pixels))
    return max(1, min(256, (1 << 16) // pixels))


def generate(
    denoiser: Denoiser,
    n: int,
    shape: tuple[int, int, int],
    seed: int,
    *,
    steps: int = 20,
    method: str = "heun",
    device: torch.device | str = "cpu",
    batch_size: int | None = None,
    precision: Precision | None = None,
    sigma_min: float = SIGMA_MIN,
    sigma_max: float = SIGMA_MAX,
    progress: ProgressFn | None = None,
) -> SamplingResult:
    """``n`` samples of ``shape`` ``(C, H, W)`` from seed ``seed`` with ``steps`` sampler steps.

    Sample ``i`` always starts from the same noise (see :mod:`pirf.sampling.noise`), whatever
    ``batch_size``. With ``batch_size=None`` a size is chosen and, on a CUDA out-of-memory
    error, halved until a micro-batch fits.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise PirfError(f"the number of samples must be a positive integer, got {n!r}")
    device = torch.device(device)
    sigmas = karras_sigmas(steps, sigma_min, sigma_max)
    nfe = network_evaluations(method, steps)
    adaptive = batch_size is None
    size = default_batch_size(shape, device) if batch_size is None else batch_size
    if size <= 0:
        raise PirfError(f"the batch size must be positive, got {size}")
    chunks: list[torch.Tensor] = []
    done = 0
    start_time = time.perf_counter()
    with torch.no_grad():
        while done < n:
            take = min(size, n - done)
            noise = initial_noise(take, shape, seed, start=done).to(device)
            try:
                x = sample(denoiser, noise, sigmas, method=method, precision=precision)
            except torch.cuda.OutOfMemoryError:
                if not adaptive or take == 1:
                    raise PirfError(
                        f"out of GPU memory at micro-batch {take}; pass a smaller batch size"
                    ) from None
                size = max(1, take // 2)
                torch.cuda.empty_cache()
                continue
            chunks.append(x.float().cpu())
            done += take
            if progress is not None:
                progress(done, n)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start_time
    return SamplingResult(torch.cat(chunks), steps, method, nfe, seconds, size)
