"""PIDM: physics-informed diffusion training, ported to fine-tuning an EDM denoiser.

PIDM (Bastek, Sun and Kochmann) adds a PDE-residual penalty on the denoiser's estimate of
the clean field to the usual denoising loss. In EDM terms, for a training pair ``x`` with
noise level ``sigma`` and noisy state ``x_noisy = x + sigma n``, the per-sample loss is::

    weight(sigma) * mean((D(x_noisy, sigma) - x)^2)          the EDM denoising loss
      + c * mean(R(x0_hat)^2) / (2 sigma)                     the residual loss

where ``R`` is the PDE residual in physical units of the de-normalised estimate
(:func:`pirf.finetune.reward.residual_loss`, the quantity PIRF's reward and the evaluation
measure) and ``c`` is the residual weight, about ``1e-4`` in the PIRF authors' port. The
estimate ``x0_hat`` is either the one-step estimate ``D(x_noisy, sigma)`` (``one-step``)
or the output of a short differentiable Heun sampler run from ``x_noisy`` down to noise
level 0 (``sample``, PIDM's "sample" variant, which judges the residual of something closer
to what sampling produces, at a few times the cost).

:func:`pidm_finetune` starts from a base checkpoint's EMA weights and trains on the base
model's kind of data (checked against the checkpoint) with Adam, a short linear warm-up and
cosine decay. Every random draw is a pure function of ``(seed, iteration)``
(:class:`pirf.training.draws.Draws`), so a run is reproducible. The result is written as
``OUT/checkpoint`` in the base checkpoint's format, so everything that samples or
evaluates a pirf checkpoint takes it unchanged.

The training loop :func:`optimise` is shared with the other trained baseline,
:mod:`pirf.baselines.pgdiffusion`, as is the plumbing around it
(:mod:`pirf.baselines.common`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from pirf.baselines.common import (
    BaselineRunConfig,
    baseline_saver,
    baseline_summary,
    check_positive,
    check_run,
    optimise,
    training_data,
)
from pirf.devices import resolve_device
from pirf.errors import PirfError
from pirf.finetune.reward import residual_loss
from pirf.models import EDMDenoiser, load_model, loss_weight
from pirf.models.edm import per_sample_sigma, working_dtype
from pirf.pdes.base import PDE
from pirf.pdes.normalisation import Normalisation
from pirf.sampling.samplers import heun_step
from pirf.sampling.schedule import RHO, SIGMA_MIN
from pirf.training.ema import EMA

ESTIMATES: tuple[str, ...] = ("one-step", "sample")
"""Which clean-field estimate the residual loss judges."""


# --------------------------------------------------------------------------- the training loop
# --------------------------------------------------------------------------- the PIDM loss
def sub_schedule(
    sigma: torch.Tensor, steps: int, *, sigma_min: float = SIGMA_MIN, rho: float = RHO
) -> torch.Tensor:
    """Per-sample Karras schedules ``(steps + 1, B)`` from ``sigma`` ``(B,)`` down to 0.

    Row ``k < steps`` is the Karras level ``k`` of a ``steps``-step schedule between
    ``sigma`` and ``min(sigma_min, sigma)`` (the sampler's own schedule, with ``sigma`` as
    its maximum); the last row is 0. A sample whose ``sigma`` is already at or below
    ``sigma_min`` gets zero-length steps, which leave its state unchanged, before the final
    step to 0. One step is ``[sigma, 0]``, i.e. the one-step estimate.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise PirfError(f"the sampler needs a positive integer number of steps, got {steps!r}")
    zero = torch.zeros_like(sigma).unsqueeze(0)
    if steps == 1:
        return torch.cat([sigma.unsqueeze(0), zero])
    low = torch.clamp(sigma, max=sigma_min)
    ramp = torch.arange(steps, dtype=sigma.dtype, device=sigma.device).unsqueeze(1) / (steps - 1)
    high_root, low_root = sigma ** (1.0 / rho), low ** (1.0 / rho)
    levels = (high_root + ramp * (low_root - high_root)) ** rho
    levels[0], levels[-1] = sigma, low  # the endpoints exactly
    return torch.cat([levels, zero])


def heun_estimate(
    denoiser: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    noisy: torch.Tensor,
    sigma: torch.Tensor,
    steps: int,
    *,
    sigma_min: float = SIGMA_MIN,
    rho: float = RHO,
) -> torch.Tensor:
    """Differentiable EDM Heun sampling of ``noisy`` from its levels ``sigma`` ``(B,)`` to 0
    on :func:`sub_schedule`: :func:`pirf.sampling.heun_step` with per-sample levels (Euler
    on the last step, to 0).

    Uses ``2 * steps - 1`` denoiser calls; gradients flow through all of them.
    """
    levels = sub_schedule(sigma, steps, sigma_min=sigma_min, rho=rho)
    x = noisy
    for index in range(steps):
        x = heun_step(denoiser, x, levels[index], levels[index + 1])
    return x


@dataclass(frozen=True)
class PIDMLoss:
    """Per-sample parts ``(B,)`` of the PIDM loss."""

    total: torch.Tensor
    """``denoising + residual``: what training minimises (its batch mean)."""
    denoising: torch.Tensor
    """The EDM loss ``weight(sigma) * mean((D(x_noisy, sigma) - x)^2)``."""
    residual: torch.Tensor
    """The residual loss ``c * residual_mse / (2 sigma)`` (zero when ``c`` is 0)."""
    residual_mse: torch.Tensor
    """``mean(R(x0_hat)^2)`` in physical units, for logging; when ``c`` is 0 it is the
    one-step estimate's, detached (no sampler is run)."""


def pidm_loss(
    denoiser: EDMDenoiser,
    x: torch.Tensor,
    sigma: torch.Tensor | float,
    noise: torch.Tensor,
    *,
    pde: PDE,
    normalisation: Normalisation,
    residual_weight: float = 1e-4,
    estimate: str = "one-step",
    sample_steps: int = 2,
) -> PIDMLoss:
    """The PIDM loss of clean fields ``x`` (model space) at noise levels ``sigma`` with unit
    noise ``noise`` (see the module docstring).

    The denoising part is computed with exactly the arithmetic of
    :func:`pirf.models.edm_loss`, so with ``residual_weight`` 0 the loss, and its gradient,
    is the plain EDM loss. The residual is evaluated in float64 for float64 input and in
    float32 otherwise.
    """
    if estimate not in ESTIMATES:
        raise PirfError(f"unknown PIDM estimate '{estimate}'; use one of {', '.join(ESTIMATES)}")
    check_positive("residual_weight", residual_weight, allow_zero=True)
    x = x.to(working_dtype(x))
    sigma = per_sample_sigma(sigma, x)
    noisy = x + sigma.reshape(-1, 1, 1, 1) * noise.to(x.dtype)
    denoised = denoiser(noisy, sigma)
    denoising = loss_weight(sigma, denoiser.sigma_data) * (denoised - x).square().flatten(1).mean(
        dim=1
    )
    dtype = working_dtype(x)
    if residual_weight == 0:
        with torch.no_grad():
            mse = residual_loss(pde, normalisation, denoised.detach(), dtype=dtype)
        return PIDMLoss(denoising, denoising, torch.zeros_like(denoising), mse.to(x.dtype))
    if estimate == "one-step":
        estimated = denoised
    else:
        estimated = heun_estimate(denoiser, noisy, sigma, sample_steps)
    mse = residual_loss(pde, normalisation, estimated, dtype=dtype).to(x.dtype)
    residual = residual_weight * mse / (2.0 * sigma)
    return PIDMLoss(denoising + residual, denoising, residual, mse)


# --------------------------------------------------------------------------- the run
@dataclass
class PIDMConfig(BaselineRunConfig):
    """Arguments of :func:`pidm_finetune`."""

    residual_weight: float = 1e-4
    """``c`` of the residual loss ``c * mean(R^2) / (2 sigma)``."""
    estimate: str = "one-step"
    """``one-step``: residual of ``D(x_noisy, sigma)``; ``sample``: of a short Heun run."""
    sample_steps: int = 2
    """Heun steps of the ``sample`` estimate."""
    ema_halflife: float = 0.0
    """EMA half-life in training samples; 0 makes the EMA a copy of the weights."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value (0 disables)."""


def _validate(config: PIDMConfig) -> None:
    check_run(config.out, config.iters, config.batch, config.lr, config.seed, config.data)
    check_positive("residual_weight", config.residual_weight, allow_zero=True)
    check_positive("ema_halflife", config.ema_halflife, allow_zero=True)
    check_positive("grad_clip", config.grad_clip, allow_zero=True)
    if config.estimate not in ESTIMATES:
        raise PirfError(
            f"unknown PIDM estimate '{config.estimate}'; use one of {', '.join(ESTIMATES)}"
        )
    steps = config.sample_steps
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise PirfError(f"sample_steps must be a positive integer, got {steps!r}")


def pidm_finetune(config: PIDMConfig) -> dict[str, Any]:
    """Fine-tune a base checkpoint with the PIDM loss; returns the run's summary.

    Writes ``OUT/checkpoint`` (model = the fine-tuned weights, ema = their EMA; loadable by
    :func:`pirf.models.load_model`) and ``OUT/summary.json``. The
    checkpoint's ``extra`` says ``"baseline": "pidm"`` and names the base and the data.
    """
    _validate(config)
    device = resolve_device(config.device)
    # Float32 and no bf16 autocast: the residual of a bf16 estimate is dominated by
    # rounding, which would drown the very signal this loss trains on.
    base = load_model(config.ckpt, device=device, bf16=False, float32=True)
    data = training_data(base, config.data)
    model = copy.deepcopy(base.denoiser)
    ema = EMA(model, halflife=config.ema_halflife, rampup=None)

    def loss_fn(
        iteration: int, x: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        parts = pidm_loss(
            model,
            x,
            sigma,
            noise,
            pde=base.pde,
            normalisation=base.normalisation,
            residual_weight=config.residual_weight,
            estimate=config.estimate,
            sample_steps=config.sample_steps,
        )
        return {
            "loss": parts.total,
            "denoising_loss": parts.denoising,
            "residual_loss": parts.residual,
            "residual_mse": parts.residual_mse,
        }

    save = baseline_saver("pidm", config, model, ema.model, base, data, details={})
    run = optimise(
        model,
        loss_fn,
        fields=data.fields,
        config=config,
        grad_clip=config.grad_clip,
        device=device,
        save=save,
        ema=ema,
        label="pidm",
    )
    return baseline_summary(
        "pidm",
        config,
        model,
        run,
        summary={"estimate": config.estimate, "residual_weight": config.residual_weight},
        device=device,
    )


__all__ = [
    "ESTIMATES",
    "PIDMConfig",
    "PIDMLoss",
    "heun_estimate",
    "pidm_finetune",
    "pidm_loss",
    "sub_schedule",
]
