"""Sampling-time physics baselines: DiffusionPDE guidance and CoCoGen correction.

Both run on the same pretrained EDM denoiser, sampler, schedule and seeded noise as every
other row of a table (docs: ``spec/baselines.md``, ``spec/evaluation.md``), so that the
only difference from the base model is the physics they add while sampling. Each is a
wrapper of the one sampler (:mod:`pirf.sampling.wrappers`), not a sampler of its own:

* DiffusionPDE (:class:`DiffusionPDEGuidance`, a step wrapper): in the last
  ``guide_fraction`` of the steps, the state ``x_cur`` is moved against the gradient of
  the residual norm of the step's denoised estimate, taken back through the network:
  ``x_next <- x_next - zeta * d||R(x0_hat)||_2 / d x_cur``.
* CoCoGen (:class:`CoCoGenCorrections`, a finisher): the same guidance, then gradient steps
  on the final sample itself, ``x <- x - zeta * d||R(x)||_2 / dx`` (no network involved).

The guidance loss is :func:`residual_norm`, the per-sample L2 norm (not squared) of the
residual in physical units, as DiffusionPDE uses. DiffusionPDE also divides by the number
of pixels (``/ 128^2``); we do not, so a ``zeta`` here is that of the PIRF authors' port
on the same loss only, not DiffusionPDE's own numbers.

The step sizes are swept on validation seeds and the best is reported
(:data:`METHODS`, :func:`sweep_grid`, :func:`select_setting`).

>>> loss = functools.partial(residual_norm, pde, normalisation)
>>> result = generate(denoiser, 64, (2, 32, 32), seed=0, **wrappers(loss, zeta=1e-4))
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from pirf.errors import PirfError
from pirf.finetune.reward import admissible_fields
from pirf.pdes.base import PDE
from pirf.pdes.normalisation import Normalisation
from pirf.sampling.precision import Denoiser
from pirf.sampling.wrappers import SamplerWrappers, SamplingCost, StepFn

LossFn = Callable[[torch.Tensor], torch.Tensor]
"""``loss_fn(x) -> (B,)``: a differentiable per-sample loss of model-space states ``x``."""


# ------------------------------------------------------------------------------ the loss
def residual_norm(
    pde: PDE,
    normalisation: Normalisation,
    samples: torch.Tensor,
    *,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Per-sample L2 norm ``(B,)`` of the PDE residual of model-space ``samples``.

    ``||R||_2 = sqrt(sum of R^2 over every residual point)``, not squared, in physical
    units and ``dtype`` (float32 by default, float64 for exact checks): DiffusionPDE's
    guidance loss. Darcy's coefficient is made admissible first
    (:func:`pirf.finetune.reward.admissible_fields`), as in the fine-tuning reward, so the
    gradient is that of the same residual PIRF optimises. Differentiable in ``samples``;
    the gradient of a zero residual is zero (not NaN).
    """
    if dtype not in (torch.float32, torch.float64):
        raise PirfError(f"the residual norm is computed in float32 or float64, not {dtype}")
    fields = admissible_fields(pde, normalisation.to_physical(samples.to(dtype)))
    residual = pde.residual(fields).flatten(1)
    return torch.linalg.vector_norm(residual, dim=1)


# ------------------------------------------------------------------------------ checks
def _finite_nonnegative(what: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PirfError(f"{what} must be a number, got {value!r}")
    if not (math.isfinite(value) and value >= 0):
        raise PirfError(f"{what} must be finite and non-negative, got {value}")
    return float(value)


def _check_fraction(guide_fraction: float) -> float:
    fraction = _finite_nonnegative("the guided fraction of steps", guide_fraction)
    if fraction > 1:
        raise PirfError(f"the guided fraction of steps must lie in [0, 1], got {guide_fraction}")
    return fraction


def _check_count(corrections: int) -> int:
    if isinstance(corrections, bool) or not isinstance(corrections, int) or corrections < 0:
        raise PirfError(f"corrections must be a non-negative integer, got {corrections!r}")
    return corrections


def guided_step_count(steps: int, guide_fraction: float) -> int:
    """How many of the last of ``steps`` sampler steps are guided: ``ceil(fraction * N)``.

    Rounded to 9 digits first, so that ``0.1 * 30`` counts 3, not 4. (DiffusionPDE's code
    guides steps ``i > 0.8 N``, one fewer: 7 of 40; we take "the last 20 %" literally.)
    """
    return min(steps, math.ceil(round(guide_fraction * steps, 9)))


def _loss_gradient(loss_fn: LossFn, x: torch.Tensor, loss_of: torch.Tensor) -> torch.Tensor:
    """``d loss_fn(loss_of).sum() / dx``; zero where the loss does not depend on ``x``."""
    loss = loss_fn(loss_of)
    if loss.shape != (x.shape[0],):
        raise PirfError(
            f"the guidance loss must return one value per sample ({x.shape[0]}), "
            f"got shape {tuple(loss.shape)}"
        )
    if not loss.requires_grad:
        return torch.zeros_like(x)
    (gradient,) = torch.autograd.grad(loss.sum(), x, allow_unused=True)
    return torch.zeros_like(x) if gradient is None else gradient


# ------------------------------------------------------------------------------ guidance
def guided_step(
    step: StepFn,
    denoiser: Denoiser,
    x: torch.Tensor,
    sigma: float,
    sigma_next: float,
    loss_fn: LossFn,
    zeta: float,
) -> tuple[torch.Tensor, int]:
    """One DiffusionPDE-guided sampler step from ``sigma`` to ``sigma_next``, and the number
    of network evaluations its backward pass went through.

    The update is ``step`` itself (e.g. :func:`pirf.sampling.heun_step`, so also its Euler
    step onto ``sigma_next = 0``), run with ``x_cur = x`` requiring grad. The denoised
    estimate ``x0_hat`` is the *last* network evaluation of the step: for Heun the
    corrector's ``D(x_pred, sigma_next)`` at the Euler-predicted state, as in DiffusionPDE's
    code (which reuses ``x_N`` after the corrector; the spec's "``D(x_cur, sigma)``, from the
    second evaluation" names the second). On the step to 0 there is no corrector and
    ``x0_hat = D(x_cur, sigma)``, the first and only evaluation. Then
    ``L = loss_fn(x0_hat).sum()``, ``g = dL/dx_cur`` back through the network (through
    every evaluation of the step, as the predicted state depends on the first), and
    ``x_next - zeta * g`` is returned detached: no graph outlives the step. Summing the
    per-sample losses gives each sample its own gradient, the network being per-sample.
    """
    estimates: list[torch.Tensor] = []

    def recording(state: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        estimate = denoiser(state, noise)
        estimates.append(estimate)
        return estimate

    with torch.enable_grad():
        x_cur = x.detach().requires_grad_(True)
        x_next = step(recording, x_cur, sigma, sigma_next)
        gradient = _loss_gradient(loss_fn, x_cur, estimates[-1])
    return (x_next - zeta * gradient).detach(), len(estimates)


def guided_step_function(
    step: StepFn, loss_fn: LossFn, zeta: float, cost: SamplingCost
) -> StepFn:
    """``step`` made a :func:`guided_step` of ``loss_fn`` with step ``zeta``, counting its
    guidance in ``cost`` (one guided step, one backward pass through the step's network
    evaluations): what a guidance step wrapper returns for a step it guides."""

    def guided(
        denoiser: Denoiser, x: torch.Tensor, sigma: float, sigma_next: float
    ) -> torch.Tensor:
        x_next, evaluations = guided_step(step, denoiser, x, sigma, sigma_next, loss_fn, zeta)
        cost.guided_steps += 1
        cost.backward += 1
        cost.backward_nfe += evaluations
        return x_next

    return guided


@dataclass(frozen=True)
class DiffusionPDEGuidance:
    """DiffusionPDE's guidance as a step wrapper (:class:`pirf.sampling.wrappers.StepWrapper`).

    The last :func:`guided_step_count` steps become :func:`guided_step` with step ``zeta``
    and run the network in float32 (bf16 would put its rounding into the gradient); the
    other steps are the plain sampler's, at its precision. Guidance reuses the step's own
    forward evaluations, so the forward NFE is the plain sampler's; each guided step adds
    one backward pass, through the step's evaluations (two for a Heun step with a
    corrector, one onto ``sigma = 0``). ``zeta = 0`` guides no step: the plain sampler, at
    its cost.
    """

    loss_fn: LossFn
    zeta: float
    guide_fraction: float = 0.2

    def __post_init__(self) -> None:
        _finite_nonnegative("the guidance step zeta", self.zeta)
        _check_fraction(self.guide_fraction)

    def guided_steps(self, steps: int) -> int:
        """How many of ``steps`` sampler steps are guided (the last ones)."""
        return guided_step_count(steps, self.guide_fraction) if self.zeta > 0 else 0

    def guides(self, index: int, steps: int) -> bool:
        """Whether step ``index`` (0-based) of ``steps`` is guided."""
        return index >= steps - self.guided_steps(steps)

    def full_precision(self, index: int, steps: int) -> bool:
        """Guided steps run the network in float32."""
        return self.guides(index, steps)

    def __call__(self, step: StepFn, index: int, steps: int, cost: SamplingCost) -> StepFn:
        if not self.guides(index, steps):
            return step
        return guided_step_function(step, self.loss_fn, self.zeta, cost)


def correction_step(x: torch.Tensor, loss_fn: LossFn, zeta: float) -> torch.Tensor:
    """One CoCoGen correction of a sample: ``x - zeta * d loss_fn(x).sum() / dx``, detached."""
    with torch.enable_grad():
        state = x.detach().requires_grad_(True)
        gradient = _loss_gradient(loss_fn, state, state)
    return (x - zeta * gradient).detach()


@dataclass(frozen=True)
class CoCoGenCorrections:
    """CoCoGen's corrections as a finisher (:data:`pirf.sampling.wrappers.Finisher`):
    ``count`` :func:`correction_step` s of size ``zeta`` on the final state. They
    differentiate the loss, not the network; a step of 0 applies none."""

    loss_fn: LossFn
    zeta: float
    count: int

    def __post_init__(self) -> None:
        _finite_nonnegative("the correction step", self.zeta)
        _check_count(self.count)

    def __call__(self, x: torch.Tensor, cost: SamplingCost) -> torch.Tensor:
        if self.zeta == 0:
            return x
        for _ in range(self.count):
            x = correction_step(x, self.loss_fn, self.zeta)
            cost.corrections += 1
        return x


def wrappers(
    loss_fn: LossFn,
    *,
    zeta: float,
    guide_fraction: float = 0.2,
    corrections: int = 0,
    correction_zeta: float | None = None,
) -> SamplerWrappers:
    """The sampler wrappers of one guidance setting (the keys of :data:`METHODS`), as
    keyword arguments of :func:`pirf.sampling.generate`.

    DiffusionPDE guidance with step ``zeta`` in the last ``guide_fraction`` of the steps,
    then ``corrections`` CoCoGen correction steps of size ``correction_zeta`` (default
    ``zeta``). A step size of 0 leaves out the work it would scale, so ``zeta = 0`` with no
    corrections is exactly the plain sampler, at its cost.
    """
    guidance = DiffusionPDEGuidance(loss_fn, zeta, guide_fraction)
    step = zeta if correction_zeta is None else correction_zeta
    finish = CoCoGenCorrections(loss_fn, step, corrections)
    return {
        "step_wrapper": guidance if guidance.zeta > 0 else None,
        "finish": finish if finish.zeta > 0 and finish.count > 0 else None,
    }


# ------------------------------------------------------------------------------ sweeps
ZETA_GRID: tuple[float, ...] = (0.0, 5e-6, 1e-5, 1e-4, 1e-3)
"""Guidance steps the PIRF authors swept for DiffusionPDE (at 40 steps), best reported."""

METHODS: dict[str, dict[str, Any]] = {
    "diffusionpde": {"zeta": ZETA_GRID, "guide_fraction": 0.2, "corrections": 0},
    "cocogen": {"zeta": ZETA_GRID, "guide_fraction": 0.2, "corrections": (1, 3, 5)},
}
"""Settings of each sampling-time baseline, as keyword arguments of :func:`wrappers`; a
tuple is a sweep axis (:func:`sweep_grid`).

DiffusionPDE: guidance in the last 20 % of the steps, no corrections, ``zeta`` swept over
:data:`ZETA_GRID`. CoCoGen, as the PIRF authors re-implemented it: the same guidance plus
1, 3 or 5 post-sampling corrections whose step is ``zeta`` as well (``correction_zeta``
left at its default). ``zeta = 0`` is in both grids, so the base model is a candidate and
a sweep never selects something worse than it on the validation seeds.
"""


def sweep_grid(method: str, overrides: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Candidate settings of ``method`` (a key of :data:`METHODS`): every combination of
    its sweep axes, in order, without repeats of the base model (a zero step makes the
    corrections no-ops, so CoCoGen's ``zeta = 0`` appears once). ``overrides`` replaces
    settings: a value fixes one, a tuple or list makes it an axis."""
    try:
        settings = dict(METHODS[method])
    except KeyError:
        raise PirfError(f"unknown baseline '{method}'; use one of {', '.join(METHODS)}") from None
    for key, value in (overrides or {}).items():
        if key not in ("zeta", "guide_fraction", "corrections", "correction_zeta"):
            raise PirfError(f"{method} has no setting '{key}'")
        settings[key] = tuple(value) if isinstance(value, list) else value
    axes = {key: value if isinstance(value, tuple) else (value,) for key, value in settings.items()}
    grid: list[dict[str, Any]] = []
    for values in itertools.product(*axes.values()):
        setting = dict(zip(axes, values, strict=True))
        if setting["zeta"] == 0 and any(other["zeta"] == 0 for other in grid):
            continue
        grid.append(setting)
    return grid


def select_setting(
    evaluate: Callable[[dict[str, Any]], float], grid: Sequence[dict[str, Any]]
) -> tuple[dict[str, Any], list[float]]:
    """The setting of ``grid`` with the lowest ``evaluate(setting)``, and every score.

    ``evaluate`` should return the mean residual of samples drawn on *validation* seeds,
    never the test seeds: choosing the step size on the samples that are then reported
    would flatter the baseline. Ties go to the earlier setting; NaN or infinite scores
    (a diverged step size) never win.
    """
    if not grid:
        raise PirfError("the sweep grid is empty; give at least one setting")
    scores = [float(evaluate(dict(setting))) for setting in grid]
    best: int | None = None
    for index, score in enumerate(scores):
        if math.isfinite(score) and (best is None or score < scores[best]):
            best = index
    if best is None:
        raise PirfError("every setting of the sweep scored NaN or inf; try smaller steps")
    return dict(grid[best]), scores


__all__ = [
    "METHODS",
    "ZETA_GRID",
    "CoCoGenCorrections",
    "DiffusionPDEGuidance",
    "LossFn",
    "correction_step",
    "guided_step",
    "guided_step_count",
    "guided_step_function",
    "residual_norm",
    "select_setting",
    "sweep_grid",
    "wrappers",
]
