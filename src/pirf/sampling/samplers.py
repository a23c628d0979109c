"""Deterministic EDM samplers: step functions and the drivers that run them over a schedule.

The probability-flow ODE of an EDM denoiser ``D`` is ``dx/dsigma = (x - D(x, sigma)) /
sigma``. A step function advances ``x`` from ``sigma`` to ``sigma_next``:

* :func:`euler_step`: first order, one network evaluation;
* :func:`heun_step`: EDM's second-order Heun step (Euler predictor, trapezoidal corrector),
  two evaluations, except on a step to ``sigma = 0`` where the slope is undefined and only
  the Euler part runs (one evaluation, landing on ``D(x, sigma)``).

Step functions are pure: they hold no state, never touch the gradient mode and only call
``denoiser(x, sigma)``, so fine-tuning reuses them unchanged inside a differentiable (or
checkpointed) trajectory. The noise levels are numbers, one for the whole batch, or
``(B,)`` tensors, one per sample (PIDM's per-sample schedules), with the same arithmetic.

Precision and gradients are the drivers' business: :func:`integrate` runs a range of steps
of a schedule, :func:`sample` a whole trajectory from unit noise, both without autograd
bookkeeping unless ``grad=True``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, overload

import torch

from pirf.errors import PirfError
from pirf.sampling.precision import FP32, Denoiser, NetworkCall, Precision
from pirf.sampling.schedule import noise_levels
from pirf.sampling.wrappers import DenoiserWrapper, SamplingCost, StepFn, StepWrapper

Sigma = float | torch.Tensor
"""A noise level of a step: a number for the whole batch, or a ``(B,)`` tensor per sample."""


def _sigma_batch(x: torch.Tensor, sigma: Sigma) -> torch.Tensor:
    """The ``(B,)`` noise levels the denoiser is called with."""
    if isinstance(sigma, torch.Tensor):
        return sigma
    return torch.full((x.shape[0],), sigma, dtype=x.dtype, device=x.device)


def _per_pixel(value: Sigma) -> Sigma:
    """A number, or a per-sample tensor shaped to broadcast against ``(B, C, H, W)``."""
    return value.reshape(-1, 1, 1, 1) if isinstance(value, torch.Tensor) else value


def _reaches_zero(sigma_next: Sigma) -> bool:
    """Whether the step ends at ``sigma = 0``: for every sample or for none (a per-sample
    schedule that reaches 0 for some samples only has no step rule)."""
    if not isinstance(sigma_next, torch.Tensor):
        return sigma_next == 0
    zeros = int((sigma_next == 0).sum())
    if zeros not in (0, sigma_next.numel()):
        raise PirfError("a step must reach sigma = 0 for every sample of the batch or for none")
    return zeros > 0


def _slope(denoiser: Denoiser, x: torch.Tensor, sigma: Sigma) -> torch.Tensor:
    """``dx/dsigma = (x - D(x, sigma)) / sigma``."""
    return (x - denoiser(x, _sigma_batch(x, sigma))) / _per_pixel(sigma)


def euler_step(
    denoiser: Denoiser, x: torch.Tensor, sigma: Sigma, sigma_next: Sigma
) -> torch.Tensor:
    """One Euler step of the probability-flow ODE from ``sigma`` to ``sigma_next``."""
    return x + _per_pixel(sigma_next - sigma) * _slope(denoiser, x, sigma)


def heun_step(denoiser: Denoiser, x: torch.Tensor, sigma: Sigma, sigma_next: Sigma) -> torch.Tensor:
    """One EDM Heun step: Euler predictor, then the trapezoidal corrector unless
    ``sigma_next == 0`` (where the step is Euler's)."""
    slope = _slope(denoiser, x, sigma)
    step = _per_pixel(sigma_next - sigma)
    predicted = x + step * slope
    if _reaches_zero(sigma_next):
        return predicted
    slope_next = _slope(denoiser, predicted, sigma_next)
    return x + step * 0.5 * (slope + slope_next)


STEPS: dict[str, StepFn] = {"heun": heun_step, "euler": euler_step}


def step_function(method: str) -> StepFn:
    """The step function of a sampler name (``heun`` or ``euler``)."""
    try:
        return STEPS[method]
    except KeyError:
        raise PirfError(f"unknown sampler '{method}'; use one of {', '.join(STEPS)}") from None


def network_evaluations(method: str, steps: int) -> int:
    """NFE of one trajectory over a schedule ending in 0: ``2N - 1`` for Heun (no corrector
    on the step to 0), ``N`` for Euler."""
    step_function(method)
    return 2 * steps - 1 if method == "heun" else steps


@dataclass(frozen=True)
class StepInfo:
    """What a step callback sees after sampler step ``index`` (0-based) of ``steps``."""

    index: int
    steps: int
    sigma: float
    sigma_next: float
    x: torch.Tensor
    """The state at ``sigma_next``."""
    nfe: int
    """Network evaluations of this trajectory so far."""
    low_precision: bool
    """Whether the step ran the network under bf16 autocast."""


StepCallback = Callable[[StepInfo], None]


@dataclass(frozen=True)
class Trajectory:
    """The states of one sampler run: ``states[i]`` is the state at ``sigmas[i]``."""

    states: list[torch.Tensor]
    sigmas: list[float]
    nfe: int

    @property
    def final(self) -> torch.Tensor:
        return self.states[-1]


def _state(x: torch.Tensor) -> torch.Tensor:
    """The sampler state: float64 input stays float64, anything else becomes float32."""
    return x if x.dtype == torch.float64 else x.to(torch.float32)


def _run(
    step: StepFn,
    network: NetworkCall,
    x: torch.Tensor,
    levels: list[float],
    indices: range,
    precision: Precision,
    callback: StepCallback | None,
    states: list[torch.Tensor] | None = None,
    *,
    denoiser: Denoiser | None = None,
    step_wrapper: StepWrapper | None = None,
    cost: SamplingCost | None = None,
) -> torch.Tensor:
    """Steps ``indices`` of the schedule ``levels``, appending each new state to ``states``.

    The steps call ``denoiser`` (default: ``network`` itself), ``step_wrapper`` may replace
    any step, and ``network`` sets each step's precision and counts the evaluations.
    """
    steps = len(levels) - 1
    stepped = network if denoiser is None else denoiser
    cost = SamplingCost() if cost is None else cost
    for index in indices:
        run_step, full = step, False
        if step_wrapper is not None:
            run_step = step_wrapper(step, index, steps, cost)
            full = step_wrapper.full_precision(index, steps)
        network.low_precision = precision.low_precision(index, steps) and not full
        x = run_step(stepped, x, levels[index], levels[index + 1])
        if states is not None:
            states.append(x)
        if callback is not None:
            sigma, sigma_next = levels[index], levels[index + 1]
            callback(
                StepInfo(index, steps, sigma, sigma_next, x, network.calls, network.low_precision)
            )
    cost.nfe = network.calls
    return x


def _step_range(start: int, stop: int | None, steps: int) -> range:
    stop = steps if stop is None else stop
    if not 0 <= start <= stop <= steps:
        raise PirfError(f"need 0 <= start <= stop <= {steps} steps, got {start} and {stop}")
    return range(start, stop)


def integrate(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor | Sequence[float],
    *,
    start: int = 0,
    stop: int | None = None,
    method: str = "heun",
    precision: Precision = FP32,
    callback: StepCallback | None = None,
    grad: bool = False,
    step_wrapper: StepWrapper | None = None,
    cost: SamplingCost | None = None,
) -> torch.Tensor:
    """Advance the state ``x`` at ``sigmas[start]`` through steps ``start .. stop - 1`` of
    the schedule ``sigmas``, to ``sigmas[stop]`` (``stop=None``: the end).

    Unlike :func:`sample`, ``x`` is a state (already at noise level ``sigmas[start]``), not
    unit noise. Step indices are those of the whole schedule, so the precision policy of a
    piece of a trajectory is the policy of the whole one. ``grad=False`` runs without
    autograd bookkeeping (``torch.no_grad``, whose outputs, unlike inference-mode tensors,
    may enter a later graph); ``grad=True`` records the graph through these steps.
    ``step_wrapper`` and ``cost`` are those of :func:`sample` (e.g. the stochastic steps
    of :class:`pirf.sampling.stochastic.Churn`, which continue a state to 0).
    """
    step = step_function(method)
    levels = noise_levels(sigmas)
    indices = _step_range(start, stop, len(levels) - 1)
    network = NetworkCall(denoiser)
    with torch.enable_grad() if grad else torch.no_grad():
        return _run(
            step,
            network,
            _state(x),
            levels,
            indices,
            precision,
            callback,
            step_wrapper=step_wrapper,
            cost=cost,
        )


@overload
def sample(
    denoiser: Denoiser,
    noise: torch.Tensor,
    sigmas: torch.Tensor | Sequence[float],
    *,
    method: str = ...,
    precision: Precision = ...,
    callback: StepCallback | None = ...,
    return_trajectory: Literal[False] = ...,
    grad: bool = ...,
    denoiser_wrapper: DenoiserWrapper | None = ...,
    step_wrapper: StepWrapper | None = ...,
    cost: SamplingCost | None = ...,
) -> torch.Tensor: ...


@overload
def sample(
    denoiser: Denoiser,
    noise: torch.Tensor,
    sigmas: torch.Tensor | Sequence[float],
    *,
    method: str = ...,
    precision: Precision = ...,
    callback: StepCallback | None = ...,
    return_trajectory: Literal[True],
    grad: bool = ...,
    denoiser_wrapper: DenoiserWrapper | None = ...,
    step_wrapper: StepWrapper | None = ...,
    cost: SamplingCost | None = ...,
) -> Trajectory: ...


def sample(
    denoiser: Denoiser,
    noise: torch.Tensor,
    sigmas: torch.Tensor | Sequence[float],
    *,
    method: str = "heun",
    precision: Precision = FP32,
    callback: StepCallback | None = None,
    return_trajectory: bool = False,
    grad: bool = False,
    denoiser_wrapper: DenoiserWrapper | None = None,
    step_wrapper: StepWrapper | None = None,
    cost: SamplingCost | None = None,
) -> torch.Tensor | Trajectory:
    """Integrate the probability-flow ODE from ``noise * sigmas[0]`` down to ``sigmas[-1]``.

    ``noise`` has unit variance (e.g. :func:`pirf.sampling.initial_noise`); it is scaled by
    ``sigma_max = sigmas[0]`` here. ``sigmas`` is a decreasing schedule, normally ending
    in 0 (:func:`pirf.sampling.karras_sigmas`). The state is float32 (float64 if ``noise``
    is float64). ``callback`` sees a :class:`StepInfo` after every step, with the network
    evaluations so far. Returns the final state, or with ``return_trajectory`` a
    :class:`Trajectory` of all ``N + 1`` states and the NFE. No autograd bookkeeping
    unless ``grad=True`` (see :func:`integrate`).

    Physics enters through wrappers (:mod:`pirf.sampling.wrappers`): the steps call
    ``denoiser_wrapper(network)`` instead of the network, ``step_wrapper`` replaces the
    steps it changes, and ``cost``, if given, receives the trajectory's counts.
    """
    step = step_function(method)
    levels = noise_levels(sigmas)
    network = NetworkCall(denoiser)
    stepped = network if denoiser_wrapper is None else denoiser_wrapper(network)
    with torch.enable_grad() if grad else torch.no_grad():
        x = _state(noise) * levels[0]
        states = [x] if return_trajectory else None
        indices = range(len(levels) - 1)
        x = _run(
            step,
            network,
            x,
            levels,
            indices,
            precision,
            callback,
            states,
            denoiser=stepped,
            step_wrapper=step_wrapper,
            cost=cost,
        )
    if states is None:
        return x
    return Trajectory(states, levels, network.calls)
