"""Deterministic EDM samplers as small pure functions.

A *denoiser* is any callable ``D(x, sigma) -> x0_estimate`` with ``x`` ``(B, C, H, W)`` and
``sigma`` a ``(B,)`` tensor. The probability-flow ODE is ``dx/dsigma = (x - D(x, sigma)) /
sigma``; a step function advances ``x`` from ``sigma`` to ``sigma_next``:

* :func:`euler_step`: first order, one network evaluation;
* :func:`heun_step`: EDM's second-order Heun step (Euler predictor, trapezoidal corrector),
  two evaluations, except on the last step to ``sigma = 0`` where only the Euler part runs.

The step functions hold no state and make no assumption about gradients, so fine-tuning
reuses them unchanged inside a differentiable trajectory. :func:`sample` drives them over a
schedule, optionally with the low-precision policy of :class:`Precision`.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch

from pirf.errors import PirfError

Denoiser = Callable[..., torch.Tensor]
StepFn = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class Precision:
    """Which sampler steps may run the network in bfloat16.

    ``bf16=True`` runs the network under bf16 autocast on CUDA for every step but the last
    ``fp32_steps``, which run in float32: bf16 rounding of the final steps alone puts a floor
    under the PDE residual. The sampler state is always float32. On the CPU it has no effect.
    """

    bf16: bool = False
    fp32_steps: int = 2

    def low_precision(self, step: int, steps: int) -> bool:
        """Whether sampler step ``step`` (0-based) of ``steps`` runs in bf16."""
        return self.bf16 and step < steps - self.fp32_steps


FP32 = Precision(bf16=False)


def _accepts_autocast(denoiser: Denoiser) -> bool:
    target = denoiser.forward if isinstance(denoiser, torch.nn.Module) else denoiser
    try:
        return "autocast" in inspect.signature(target).parameters
    except (TypeError, ValueError):
        return False


def evaluate(
    denoiser: Denoiser, x: torch.Tensor, sigma: float, *, low_precision: bool | None = None
) -> torch.Tensor:
    """``D(x, sigma)`` with ``sigma`` broadcast to ``(B,)``.

    ``low_precision`` (None: leave it to the denoiser) selects bf16 autocast: passed as the
    ``autocast`` keyword to denoisers that take it (pirf's EDM denoiser), else by wrapping
    the call in an autocast region on CUDA.
    """
    sigma_batch = torch.full((x.shape[0],), float(sigma), dtype=torch.float32, device=x.device)
    if low_precision is None:
        return denoiser(x, sigma_batch)
    if _accepts_autocast(denoiser):
        return denoiser(x, sigma_batch, autocast=low_precision)
    context = (
        torch.autocast("cuda", dtype=torch.bfloat16, enabled=low_precision)
        if x.device.type == "cuda"
        else contextlib.nullcontext()
    )
    with context:
        return denoiser(x, sigma_batch).float()


def _slope(denoiser: Denoiser, x: torch.Tensor, sigma: float, low_precision: bool | None):
    """The ODE's ``dx/dsigma = (x - D(x, sigma)) / sigma``."""
    return (x - evaluate(denoiser, x, sigma, low_precision=low_precision)) / sigma


def euler_step(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigma: float,
    sigma_next: float,
    *,
    low_precision: bool | None = None,
) -> torch.Tensor:
    """One Euler step of the probability-flow ODE from ``sigma`` to ``sigma_next``."""
    return x + (sigma_next - sigma) * _slope(denoiser, x, sigma, low_precision)


def heun_step(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigma: float,
    sigma_next: float,
    *,
    low_precision: bool | None = None,
) -> torch.Tensor:
    """One EDM Heun step: Euler predictor, then the trapezoidal corrector if ``sigma_next > 0``."""
    slope = _slope(denoiser, x, sigma, low_precision)
    x_next = x + (sigma_next - sigma) * slope
    if sigma_next == 0:
        return x_next
    slope_next = _slope(denoiser, x_next, sigma_next, low_precision)
    return x + (sigma_next - sigma) * 0.5 * (slope + slope_next)


STEPS: dict[str, StepFn] = {"heun": heun_step, "euler": euler_step}


def step_function(method: str) -> StepFn:
    """The step function of a sampler name (``heun`` or ``euler``)."""
    try:
        return STEPS[method]
    except KeyError:
        raise PirfError(f"unknown sampler '{method}'; use one of {', '.join(STEPS)}") from None


def network_evaluations(method: str, steps: int) -> int:
    """NFE of one trajectory: ``2N - 1`` for Heun (no corrector at sigma = 0), ``N`` for Euler."""
    step_function(method)
    return 2 * steps - 1 if method == "heun" else steps


def sample(
    denoiser: Denoiser,
    noise: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    method: str = "heun",
    precision: Precision | None = None,
    callback: Callable[[int, torch.Tensor], None] | None = None,
    return_trajectory: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
    """Integrate the probability-flow ODE from ``noise * sigmas[0]`` down to ``sigmas[-1]``.

    ``noise`` is unit-variance; ``sigmas`` a schedule ending in 0 (e.g. :func:`karras_sigmas`).
    The state is float32. ``callback(step, x)`` sees the state after each step. With
    ``return_trajectory`` the states before every step and the final one are returned too.
    Gradients are the caller's business: wrap the call in ``torch.no_grad()`` to sample.
    """
    step = step_function(method)
    levels = [float(s) for s in sigmas]
    steps = len(levels) - 1
    x = noise.to(torch.float32) * levels[0]
    trajectory = [x] if return_trajectory else []
    for index in range(steps):
        low = None if precision is None else precision.low_precision(index, steps)
        x = step(denoiser, x, levels[index], levels[index + 1], low_precision=low)
        if return_trajectory:
            trajectory.append(x)
        if callback is not None:
            callback(index, x)
    return (x, trajectory) if return_trajectory else x
