"""Many samples from a denoiser: seeded, micro-batched, timed.

:func:`generate` returns samples in model space on the CPU; turning them into physical
fields and files is the caller's (``pirf sample``) business. Sample ``i`` always starts
from the same noise (:mod:`pirf.sampling.noise`), so the micro-batch size changes only the
speed, never the noise. The same function samples the base model and the sampling-time
physics baselines, which it takes as wrappers (:mod:`pirf.sampling.wrappers`)::

    result = generate(denoiser, 64, (2, 32, 32), seed=0, steps=20)
    guided = generate(denoiser, 64, (2, 32, 32), seed=0, steps=20,
                      **pirf.baselines.guidance.wrappers(loss, zeta=1e-4, corrections=3))
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from pirf.errors import PirfError
from pirf.sampling.noise import initial_noise
from pirf.sampling.precision import FP32, Denoiser, Precision
from pirf.sampling.samplers import sample, step_function
from pirf.sampling.schedule import RHO, SIGMA_MAX, SIGMA_MIN, karras_sigmas
from pirf.sampling.wrappers import DenoiserWrapper, Finisher, SamplingCost, StepWrapper

ProgressFn = Callable[[int, int], None]
"""``progress(done, total)``: samples finished so far out of the total."""


@dataclass(frozen=True)
class SamplingResult:
    """Samples ``(n, C, H, W)`` (model space, float32, CPU) and what they cost."""

    samples: torch.Tensor
    steps: int
    method: str
    nfe_per_sample: int
    """Network evaluations per sample, as counted (``2N - 1`` for Heun, ``N`` for Euler)."""
    seconds: float
    """Wall time from the first noise draw to the last sample on the CPU."""
    batch_size: int
    """The micro-batch size in use at the end (after any out-of-memory halving)."""
    precision: Precision = FP32
    backward_per_sample: int = 0
    """Backward passes through the network per sample (guidance: one per guided step)."""
    backward_nfe_per_sample: int = 0
    """Network evaluations those backward passes go through, per sample."""
    guided_steps: int = 0
    """Sampler steps that applied guidance."""
    corrections: int = 0
    """Correction steps applied to each final sample (no network involved)."""

    @property
    def seconds_per_sample(self) -> float:
        return self.seconds / max(len(self.samples), 1)

    @property
    def samples_per_second(self) -> float:
        return len(self.samples) / self.seconds if self.seconds > 0 else float("inf")


def default_batch_size(shape: tuple[int, int, int], device: torch.device) -> int:
    """A first micro-batch size: modest on the CPU (cache-sized), large on a GPU, where an
    out-of-memory error halves it until it fits."""
    values = shape[0] * shape[1] * shape[2]
    if device.type == "cuda":
        return max(1, min(4096, (1 << 23) // values))
    return max(1, min(256, (1 << 17) // values))


def _check_request(n: int, shape: tuple[int, ...], batch_size: int | None) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise PirfError(f"the number of samples must be a positive integer, got {n!r}")
    if len(shape) != 3 or any(int(side) <= 0 for side in shape):
        raise PirfError(f"the sample shape must be (C, H, W) with positive sizes, got {shape}")
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0
    ):
        raise PirfError(f"the batch size must be a positive integer, got {batch_size!r}")


@dataclass(frozen=True)
class Batched:
    """What :func:`sample_in_batches` returns: the samples and the sampling facts."""

    samples: torch.Tensor
    seconds: float
    batch_size: int


def sample_in_batches(
    run: Callable[[torch.Tensor], torch.Tensor],
    n: int,
    shape: tuple[int, int, int],
    seed: int,
    *,
    device: torch.device | str = "cpu",
    batch_size: int | None = None,
    channels_last: bool | None = None,
    progress: ProgressFn | None = None,
    start: int = 0,
) -> Batched:
    """Apply ``run(noise) -> samples`` to the seeded unit noise of samples
    ``start .. start + n - 1``, in micro-batches: the loop of :func:`generate`.

    ``batch_size=None`` starts from :func:`default_batch_size` and halves it after a CUDA
    out-of-memory error until a micro-batch fits; an explicit size is used as given.
    ``channels_last`` (default: on CUDA) hands ``run`` channels-last noise. Samples come
    back float32, contiguous, on the CPU; ``progress(done, n)`` is called at the start and
    after every micro-batch.
    """
    shape = tuple(int(side) for side in shape)
    _check_request(n, shape, batch_size)
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise PirfError(f"the first sample index must be a non-negative integer, got {start!r}")
    device = torch.device(device)
    if channels_last is None:
        channels_last = device.type == "cuda"
    layout = torch.channels_last if channels_last else torch.contiguous_format
    adaptive = batch_size is None
    size = default_batch_size(shape, device) if batch_size is None else batch_size
    chunks: list[torch.Tensor] = []
    done = 0
    if progress is not None:
        progress(0, n)
    start_time = time.perf_counter()
    while done < n:
        take = min(size, n - done)
        noise = initial_noise(take, shape, seed, start=start + done).to(
            device, memory_format=layout
        )
        try:
            chunk = run(noise).to("cpu", torch.float32, memory_format=torch.contiguous_format)
        except torch.cuda.OutOfMemoryError:
            if not adaptive or take == 1:
                raise PirfError(
                    f"out of GPU memory at micro-batch {take}; pass a smaller batch size"
                ) from None
            chunk = None
        if chunk is None:  # outside the handler, so the failed attempt's tensors are freed
            del noise
            size = max(1, take // 2)
            torch.cuda.empty_cache()
            continue
        chunks.append(chunk)
        done += take
        if progress is not None:
            progress(done, n)
    return Batched(torch.cat(chunks), time.perf_counter() - start_time, size)


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
    precision: Precision = FP32,
    sigma_min: float = SIGMA_MIN,
    sigma_max: float = SIGMA_MAX,
    rho: float = RHO,
    channels_last: bool | None = None,
    progress: ProgressFn | None = None,
    denoiser_wrapper: DenoiserWrapper | None = None,
    step_wrapper: StepWrapper | None = None,
    finish: Finisher | None = None,
    start: int = 0,
) -> SamplingResult:
    """``n`` samples of ``shape`` ``(C, H, W)`` from seed ``seed``, ``steps`` sampler steps.

    The samples are those of indices ``start .. start + n - 1`` of the seed (each sample's
    noise is its own, :func:`pirf.sampling.initial_noise`), so a set can be sampled in
    pieces, e.g. when each piece needs wrappers of its own.

    The denoiser must already be on ``device`` (and in eval mode, if it is a module).
    Micro-batching, out-of-memory halving, ``channels_last`` and ``progress`` are those of
    :func:`sample_in_batches`. ``denoiser_wrapper`` and ``step_wrapper`` go to
    :func:`pirf.sampling.sample`, ``finish`` is applied to each micro-batch's final states
    (:mod:`pirf.sampling.wrappers`); the result counts the forward network evaluations and
    whatever backward passes and corrections the wrappers add, per sample.
    """
    step_function(method)
    sigmas = karras_sigmas(steps, sigma_min, sigma_max, rho)
    cost = SamplingCost()

    def run(noise: torch.Tensor) -> torch.Tensor:
        nonlocal cost
        cost = SamplingCost()
        x = sample(
            denoiser,
            noise,
            sigmas,
            method=method,
            precision=precision,
            denoiser_wrapper=denoiser_wrapper,
            step_wrapper=step_wrapper,
            cost=cost,
        )
        return x if finish is None else finish(x, cost)

    done = sample_in_batches(
        run,
        n,
        shape,
        seed,
        device=device,
        batch_size=batch_size,
        channels_last=channels_last,
        progress=progress,
        start=start,
    )
    return SamplingResult(
        done.samples,
        steps,
        method,
        cost.nfe,
        done.seconds,
        done.batch_size,
        precision,
        backward_per_sample=cost.backward,
        backward_nfe_per_sample=cost.backward_nfe,
        guided_steps=cost.guided_steps,
        corrections=cost.corrections,
    )
