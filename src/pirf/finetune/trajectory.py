"""Differentiable sampler trajectories for reward fine-tuning, truncated in steps.

All modes run the deterministic EDM sampler (:mod:`pirf.sampling`) and return a final
sample through which the reward's gradient reaches the trainable weights:

* ``draft`` (DRaFT-K): steps ``0 .. N-K-1`` under ``torch.no_grad``, the last ``K`` with
  autograd. The state entering the window is a plain tensor that does not require grad,
  so when the lower layers are frozen the window's first network call records nothing
  below the trainable blocks (nothing upstream needs a gradient there).
* ``full``: gradient through all ``N`` steps, each step under
  ``torch.utils.checkpoint``, so memory holds one state per step plus one step's
  activations, not every step's activations.
* ``refl`` (ReFL): sample without gradient to a random step ``t`` among the last ``K``,
  then one differentiable denoiser call ``D(x_t, sigma_t)``: the predicted clean sample.
* ``draft-lv`` (DRaFT-LV): sample ``x0`` without gradient, re-noise ``copies`` copies of
  it to the level of the last step, ``x0 + sigma_{N-1} eps``, and run the last step on
  each with autograd; the reward is averaged over copies (lower-variance gradient of the
  last step).

``hold``: a boolean mask ``(C, H, W)`` of entries whose gradient stops wherever a
differentiable network call reads them (the PDE's inputs under ``--reward-inputs held``):
the weights then learn only from how each call makes the other entries, and no call is
rewarded for reshaping the held entries that later calls read.

Precision follows :class:`pirf.sampling.Precision` with the step indices of the whole
schedule (the last ``fp32_steps`` in float32). Under checkpointing every step gets its own
:class:`~pirf.sampling.NetworkCall`, so the recomputation in the backward pass runs at the
step's precision, not at whatever the last step set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.utils.checkpoint import checkpoint as checkpoint_call

from pirf.errors import PirfError
from pirf.finetune.config import MODES
from pirf.sampling import FP32, Denoiser, NetworkCall, Precision, integrate, step_function
from pirf.sampling.schedule import noise_levels


@dataclass(frozen=True)
class GradientTrajectory:
    """The differentiable end of a sampler run.

    ``final`` is ``(B, C, H, W)``, or ``(copies * B, C, H, W)`` for ``draft-lv`` (copy
    ``j`` of sample ``i`` at row ``j * B + i``). ``states`` and ``sigmas`` are the
    (detached) inputs of the differentiable network calls' steps and their noise levels,
    for distillation regularisation; ``steps`` are their schedule indices.
    """

    final: torch.Tensor
    states: list[torch.Tensor]
    sigmas: list[float]
    steps: list[int]
    copies: int = 1


class HeldInputs:
    """A network call whose input has the gradient stopped at the ``hold`` entries: the
    same values, read as constants."""

    def __init__(self, network: NetworkCall, hold: torch.Tensor) -> None:
        self.network, self.hold = network, hold

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **conditioning) -> torch.Tensor:
        return self.network(torch.where(self.hold, x.detach(), x), sigma, **conditioning)


def _check_window(k: int, steps: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= steps:
        raise PirfError(f"the gradient window K must be an integer in 1..{steps}, got {k!r}")


def _differentiable_steps(
    denoiser: Denoiser,
    x: torch.Tensor,
    levels: list[float],
    indices: range,
    *,
    method: str,
    precision: Precision,
    checkpoint: bool,
    states: list[torch.Tensor],
    hold: torch.Tensor | None = None,
) -> torch.Tensor:
    """Steps ``indices`` with autograd, optionally one checkpoint per step; the gradient
    stops at the ``hold`` entries of every network call's input."""
    step = step_function(method)
    total = len(levels) - 1
    held = None if hold is None else hold.to(x.device)
    with torch.enable_grad():
        for index in indices:
            states.append(x.detach())
            call = NetworkCall(denoiser, precision.low_precision(index, total))
            network = call if held is None else HeldInputs(call, held)
            sigma, sigma_next = levels[index], levels[index + 1]
            if checkpoint:
                x = checkpoint_call(step, network, x, sigma, sigma_next, use_reentrant=False)
            else:
                x = step(network, x, sigma, sigma_next)
    return x


def _start(noise: torch.Tensor, levels: list[float]) -> torch.Tensor:
    """The sampler's first state, ``noise * sigma_max``, float32 unless ``noise`` is
    float64, cut from any graph."""
    x = noise.detach()
    return (x if x.dtype == torch.float64 else x.to(torch.float32)) * levels[0]


@torch.no_grad()
def window_start(
    denoiser: Denoiser,
    noise: torch.Tensor,
    sigmas: torch.Tensor | Sequence[float],
    k: int,
    *,
    method: str = "heun",
    precision: Precision = FP32,
) -> torch.Tensor:
    """The state entering the last ``k`` sampler steps from unit ``noise``: steps
    ``0 .. N-k-1`` without gradient. A plain tensor that does not require grad (see the
    module docstring); :func:`window_trajectory` continues from it."""
    levels = noise_levels(sigmas)
    total = len(levels) - 1
    _check_window(k, total)
    x = _start(noise, levels)
    return integrate(denoiser, x, levels, stop=total - k, method=method, precision=precision)


def window_trajectory(
    denoiser: Denoiser,
    state: torch.Tensor,
    sigmas: torch.Tensor | Sequence[float],
    k: int,
    *,
    method: str = "heun",
    precision: Precision = FP32,
    checkpoint: bool = False,
    hold: torch.Tensor | None = None,
) -> GradientTrajectory:
    """The last ``k`` sampler steps from ``state`` (at the schedule's step ``N-k``), with
    autograd: DRaFT-K's differentiable window. ``state`` may come from
    :func:`window_start` now or, for amortised trajectories, from earlier weights."""
    levels = noise_levels(sigmas)
    total = len(levels) - 1
    _check_window(k, total)
    indices = range(total - k, total)
    states: list[torch.Tensor] = []
    x = _differentiable_steps(
        denoiser,
        state.detach(),
        levels,
        indices,
        method=method,
        precision=precision,
        checkpoint=checkpoint,
        states=states,
        hold=hold,
    )
    return GradientTrajectory(x, states, levels[total - k : total], list(indices))


def _random_step(low: int, high: int, generator: torch.Generator | None) -> int:
    return int(torch.randint(low, high, (), generator=generator))


def truncated_trajectory(
    denoiser: Denoiser,
    noise: torch.Tensor,
    sigmas: torch.Tensor | Sequence[float],
    k: int = 2,
    *,
    mode: str = "draft",
    method: str = "heun",
    precision: Precision = FP32,
    checkpoint: bool | None = None,
    generator: torch.Generator | None = None,
    step: int | None = None,
    copies: int = 2,
    fast: Denoiser | None = None,
    hold: torch.Tensor | None = None,
) -> GradientTrajectory:
    """Run the sampler from unit ``noise`` over ``sigmas`` with gradient where ``mode`` says.

    ``k``: the number of differentiable steps (``draft``), or the range of the random step
    (``refl``: ``t`` uniform in ``N-k .. N-1``, or ``step`` if given); ignored by ``full``
    and ``draft-lv``. ``checkpoint``: one ``torch.utils.checkpoint`` per differentiable
    step (default: on for ``full``, off otherwise). ``generator`` draws the ReFL step and
    the DRaFT-LV noise (on ``noise``'s device). ``fast``: the network for the steps without
    gradient, e.g. a ``torch.compile`` of ``denoiser`` sharing its weights (default:
    ``denoiser``). ``hold``: entries whose gradient stops at every differentiable step's
    input (module docstring). See the module docstring.
    """
    ahead = denoiser if fast is None else fast
    if mode not in MODES:
        raise PirfError(f"unknown trajectory mode '{mode}'; use one of {', '.join(MODES)}")
    levels = noise_levels(sigmas)
    total = len(levels) - 1
    run = {"method": method, "precision": precision}
    if mode in ("draft", "full"):
        window = total if mode == "full" else k
        use_checkpoint = (mode == "full") if checkpoint is None else checkpoint
        state = window_start(ahead, noise, levels, window, **run)
        return window_trajectory(
            denoiser, state, levels, window, checkpoint=use_checkpoint, hold=hold, **run
        )
    x = _start(noise, levels)
    states: list[torch.Tensor] = []
    if mode == "refl":
        _check_window(k, total)
        t = _random_step(total - k, total, generator) if step is None else step
        if not 0 <= t < total:
            raise PirfError(f"the ReFL step must be in 0..{total - 1}, got {t}")
        x = integrate(ahead, x, levels, stop=t, **run)
        network = NetworkCall(denoiser, precision.low_precision(t, total))
        sigma = torch.full((x.shape[0],), levels[t], dtype=x.dtype, device=x.device)
        # x comes from steps without gradient: nothing upstream to hold
        with torch.enable_grad():
            final = network(x, sigma)
        return GradientTrajectory(final, [x], [levels[t]], [t])
    if isinstance(copies, bool) or not isinstance(copies, int) or copies < 1:
        raise PirfError(f"DRaFT-LV needs a positive number of copies, got {copies!r}")
    clean = integrate(ahead, x, levels, **run)
    last = total - 1
    eps = torch.randn(
        (copies, *clean.shape), generator=generator, dtype=clean.dtype, device=clean.device
    )
    renoised = (clean.unsqueeze(0) + levels[last] * eps).flatten(0, 1)
    final = _differentiable_steps(
        denoiser,
        renoised,
        levels,
        range(last, total),
        checkpoint=bool(checkpoint),
        states=states,
        hold=hold,
        **run,
    )
    return GradientTrajectory(final, states, [levels[last]], [last], copies)


__all__ = [
    "MODES",
    "GradientTrajectory",
    "truncated_trajectory",
    "window_start",
    "window_trajectory",
]
