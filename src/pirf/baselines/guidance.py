"""Sampling-time physics baselines: DiffusionPDE guidance and CoCoGen correction.

Both run on the same pretrained EDM denoiser, Heun sampler, schedule and seeded noise as
every other row of a table (docs: ``spec/baselines.md``, ``spec/evaluation.md``), so that
the only difference from the base model is the physics they add while sampling:

* DiffusionPDE (:func:`guided_heun_step`): in the last ``guide_fraction`` of the Heun
  steps, the state ``x_cur`` is moved against the gradient of the residual norm of the
  step's denoised estimate, taken back through the network:
  ``x_next <- x_next - zeta * d||R(x0_hat)||_2 / d x_cur``.
* CoCoGen (``corrections > 0``): the same guidance, then gradient steps on the final
  sample itself, ``x <- x - zeta * d||R(x)||_2 / dx`` (no network involved).

The guidance loss is :func:`residual_norm`, the per-sample L2 norm (not squared) of the
residual in physical units, as DiffusionPDE uses. DiffusionPDE also divides by the number
of pixels (``/ 128^2``); we do not, so a ``zeta`` here is that of the PIRF authors' port
on the same loss only, not DiffusionPDE's own numbers.

The step sizes are swept on validation seeds and the best is reported
(:data:`METHODS`, :func:`sweep_grid`, :func:`select_setting`).

>>> loss = functools.partial(residual_norm, pde, normalisation)
>>> result = generate_guided(denoiser, 64, (2, 32, 32), seed=0, loss_fn=loss, zeta=1e-4)
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
from pirf.sampling.generate import ProgressFn, SamplingResult, sample_in_batches
from pirf.sampling.precision import FP32, Denoiser, NetworkCall, Precision
from pirf.sampling.samplers import StepInfo, heun_step, integrate
from pirf.sampling.schedule import RHO, SIGMA_MAX, SIGMA_MIN, karras_sigmas, noise_levels

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


def _check_guidance(
    zeta: float, guide_fraction: float, corrections: int, correction_zeta: float | None
) -> tuple[float, float]:
    """The guidance and correction step sizes, checked."""
    zeta = _finite_nonnegative("the guidance step zeta", zeta)
    fraction = _finite_nonnegative("the guided fraction of steps", guide_fraction)
    if fraction > 1:
        raise PirfError(f"the guided fraction of steps must lie in [0, 1], got {guide_fraction}")
    if isinstance(corrections, bool) or not isinstance(corrections, int) or corrections < 0:
        raise PirfError(f"corrections must be a non-negative integer, got {corrections!r}")
    step = zeta if correction_zeta is None else correction_zeta
    return zeta, _finite_nonnegative("the correction step", step)


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


# ------------------------------------------------------------------------------ stepping
def guided_heun_step(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigma: float,
    sigma_next: float,
    loss_fn: LossFn,
    zeta: float,
) -> torch.Tensor:
    """One DiffusionPDE-guided EDM Heun step from ``sigma`` to ``sigma_next``.

    The update is :func:`pirf.sampling.heun_step` itself (so also the Euler step onto
    ``sigma_next = 0``), run with ``x_cur = x`` requiring grad. The denoised estimate
    ``x0_hat`` is the *last* network evaluation of the step: the corrector's
    ``D(x_pred, sigma_next)`` at the Euler-predicted state, as in DiffusionPDE's code
    (which reuses ``x_N`` after the corrector; the spec's "``D(x_cur, sigma)``, from the
    second evaluation" names the second). On the step to 0 there is no corrector and
    ``x0_hat = D(x_cur, sigma)``, the first and only evaluation. Then
    ``L = loss_fn(x0_hat).sum()``, ``g = dL/dx_cur`` back through the network (through
    both evaluations, as the predicted state depends on the first), and
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
        x_next = heun_step(recording, x_cur, sigma, sigma_next)
        gradient = _loss_gradient(loss_fn, x_cur, estimates[-1])
    return (x_next - zeta * gradient).detach()


def correction_step(x: torch.Tensor, loss_fn: LossFn, zeta: float) -> torch.Tensor:
    """One CoCoGen correction of a sample: ``x - zeta * d loss_fn(x).sum() / dx``, detached."""
    with torch.enable_grad():
        state = x.detach().requires_grad_(True)
        gradient = _loss_gradient(loss_fn, state, state)
    return (x - zeta * gradient).detach()


@dataclass(frozen=True)
class GuidedResult:
    """The final states of a guided run and what they cost, per sample."""

    samples: torch.Tensor
    """Final states ``(B, C, H, W)``, detached."""
    nfe: int
    """Forward network evaluations: ``2N - 1`` for Heun, guided or not (guidance reuses
    the step's own evaluations)."""
    backward: int
    """Backward passes through the network: one per guided step."""
    backward_nfe: int
    """Network evaluations those passes go back through: two per guided step with a
    corrector, one for a guided step onto ``sigma = 0``."""
    guided_steps: int
    """Steps that applied guidance (none when ``zeta = 0``)."""
    corrections: int
    """CoCoGen correction steps applied (gradients of the loss only, not of the network;
    none when their step size is 0)."""


def guided_sample(
    denoiser: Denoiser,
    noise: torch.Tensor,
    sigmas: torch.Tensor | Sequence[float],
    loss_fn: LossFn,
    *,
    zeta: float,
    guide_fraction: float = 0.2,
    corrections: int = 0,
    correction_zeta: float | None = None,
    precision: Precision = FP32,
) -> GuidedResult:
    """Heun sampling from ``noise * sigmas[0]`` with DiffusionPDE guidance and CoCoGen
    corrections.

    Like :func:`pirf.sampling.sample` (unit ``noise``, a decreasing schedule ending in 0,
    a float32 state unless ``noise`` is float64), except that the last
    :func:`guided_step_count` steps are :func:`guided_heun_step` with step ``zeta``, and
    ``corrections`` :func:`correction_step` s of size ``correction_zeta`` (default
    ``zeta``) follow the last step. Unguided steps run the network at ``precision`` like
    the plain sampler; guided steps run it in float32 (bf16 would put its rounding into
    the gradient). A step size of 0 skips the work it would scale, so ``zeta = 0`` with no
    corrections is exactly the plain sampler, at its cost.
    """
    zeta, step = _check_guidance(zeta, guide_fraction, corrections, correction_zeta)
    levels = noise_levels(sigmas)
    steps = len(levels) - 1
    guided = guided_step_count(steps, guide_fraction) if zeta > 0 else 0
    corrections = corrections if step > 0 else 0
    nfe = 0

    def count(info: StepInfo) -> None:
        nonlocal nfe
        nfe = info.nfe

    with torch.no_grad():
        x = (noise if noise.dtype == torch.float64 else noise.to(torch.float32)) * levels[0]
    x = integrate(denoiser, x, levels, stop=steps - guided, precision=precision, callback=count)
    network = NetworkCall(denoiser, low_precision=False)
    backward_nfe = 0
    for index in range(steps - guided, steps):
        sigma, sigma_next = levels[index], levels[index + 1]
        x = guided_heun_step(network, x, sigma, sigma_next, loss_fn, zeta)
        backward_nfe += 1 if sigma_next == 0 else 2
    for _ in range(corrections):
        x = correction_step(x, loss_fn, step)
    return GuidedResult(x.detach(), nfe + network.calls, guided, backward_nfe, guided, corrections)


# ------------------------------------------------------------------------------ many samples
@dataclass(frozen=True)
class GuidedSamplingResult(SamplingResult):
    """A :class:`~pirf.sampling.SamplingResult` with the backward cost of guidance."""

    backward_per_sample: int = 0
    backward_nfe_per_sample: int = 0
    guided_steps: int = 0
    corrections: int = 0


def generate_guided(
    denoiser: Denoiser,
    n: int,
    shape: tuple[int, int, int],
    seed: int,
    loss_fn: LossFn,
    *,
    steps: int = 20,
    zeta: float,
    guide_fraction: float = 0.2,
    corrections: int = 0,
    correction_zeta: float | None = None,
    device: torch.device | str = "cpu",
    batch_size: int | None = None,
    precision: Precision = FP32,
    sigma_min: float = SIGMA_MIN,
    sigma_max: float = SIGMA_MAX,
    rho: float = RHO,
    channels_last: bool | None = None,
    progress: ProgressFn | None = None,
) -> GuidedSamplingResult:
    """``n`` guided samples of ``shape`` from seed ``seed``: :func:`pirf.sampling.generate`
    with :func:`guided_sample` as the sampler.

    Sample ``i`` starts from the same noise as in every other method, whatever the
    micro-batch; ``batch_size=None`` picks one and halves it after a CUDA out-of-memory
    error (guidance keeps a step's graph, so it needs more memory than plain sampling).
    ``nfe_per_sample`` counts forward network evaluations; the backward passes are in the
    extra fields. Samples are returned in model space, float32, on the CPU.
    """
    _check_guidance(zeta, guide_fraction, corrections, correction_zeta)
    sigmas = karras_sigmas(steps, sigma_min, sigma_max, rho)
    last: list[GuidedResult] = []

    def run(noise: torch.Tensor) -> torch.Tensor:
        result = guided_sample(
            denoiser,
            noise,
            sigmas,
            loss_fn,
            zeta=zeta,
            guide_fraction=guide_fraction,
            corrections=corrections,
            correction_zeta=correction_zeta,
            precision=precision,
        )
        last[:] = [result]
        return result.samples

    done = sample_in_batches(
        run,
        n,
        shape,
        seed,
        device=device,
        batch_size=batch_size,
        channels_last=channels_last,
        progress=progress,
    )
    result = last[0]
    return GuidedSamplingResult(
        done.samples,
        steps,
        "heun",
        result.nfe,
        done.seconds,
        done.batch_size,
        precision,
        backward_per_sample=result.backward,
        backward_nfe_per_sample=result.backward_nfe,
        guided_steps=result.guided_steps,
        corrections=result.corrections,
    )


# ------------------------------------------------------------------------------ sweeps
ZETA_GRID: tuple[float, ...] = (0.0, 5e-6, 1e-5, 1e-4, 1e-3)
"""Guidance steps the PIRF authors swept for DiffusionPDE (at 40 steps), best reported."""

METHODS: dict[str, dict[str, Any]] = {
    "diffusionpde": {"zeta": ZETA_GRID, "guide_fraction": 0.2, "corrections": 0},
    "cocogen": {"zeta": ZETA_GRID, "guide_fraction": 0.2, "corrections": (1, 3, 5)},
}
"""Settings of each sampling-time baseline, as keyword arguments of :func:`guided_sample`
and :func:`generate_guided`; a tuple is a sweep axis (:func:`sweep_grid`).

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
    "GuidedResult",
    "GuidedSamplingResult",
    "LossFn",
    "correction_step",
    "generate_guided",
    "guided_heun_step",
    "guided_sample",
    "guided_step_count",
    "residual_norm",
    "select_setting",
    "sweep_grid",
]
