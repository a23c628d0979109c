"""PG-Diffusion: a denoiser conditioned on the gradient of the PDE residual.

The conditional denoiser ``D(x, sigma | g)`` takes, besides the noisy state ``x``, the
gradient ``g`` of the mean squared PDE residual with respect to ``x``. The residual is the
one the reward and the evaluation use: of the de-normalised state, in physical units
(:func:`pirf.finetune.reward.residual_loss`), differentiated back through
``normalisation.to_physical``. Its size depends on the PDE's units and, enormously, on the
noise level, so the network sees it *normalised per sample*: ``g / (rms(g) + eps)``. The
direction of the physics gradient is what the network can use at every noise level and for
every PDE; its magnitude would only be a badly scaled input.

Architecture (:class:`PGUNet`, registered as backbone ``"pg-unet"``): the condition is
embedded by ``conv3x3 -> SiLU -> conv3x3`` (``C -> C`` channels) and fused with the
first features by concatenation with the network input, i.e. the stem of a pirf
:class:`~pirf.models.unet.UNet` with ``2C`` input and ``C`` output channels sees
``[c_in x, embed(g)]``. :func:`pg_from_base` copies every weight of a base U-Net, puts the
base stem's weights on the first ``C`` input channels and zeros on the others, so the new
model starts out as exactly the base model whatever the condition is.

Training (:func:`pgdiffusion_train`) is EDM denoising on the training data, with the
condition computed at each noisy state and replaced by zeros with probability
``drop_prob`` per sample (condition dropout, as in classifier-free guidance): the model
with a zero condition is the unconditional one, and it is also what a plain call
``model(x, sigma)`` evaluates. Sampling (:func:`pg_sample`, :func:`generate_pg`) is EDM's
deterministic Heun sampler with a guided denoiser ``(w + 1) D(x | g) - w D(x | 0)``, the
EDM form of classifier-free guidance ``eps = (w + 1) eps_cond - w eps_uncond`` (``D`` and
``eps`` are affine in each other at a fixed ``x`` and ``sigma``, so mixing either is the
same), plus a direct step ``x_next -= step_zeta * grad`` along the raw residual gradient.

Importing this module registers the ``"pg-unet"`` backbone; a checkpoint written by
:func:`pgdiffusion_train` loads with :func:`pirf.models.load_checkpoint` only after
``import pirf.baselines.pgdiffusion``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from pirf.baselines.common import (
    BaselineRunConfig,
    check_positive,
    check_run,
    save_baseline,
    training_data,
)
from pirf.baselines.pidm import optimise
from pirf.devices import resolve_device
from pirf.errors import PirfError
from pirf.finetune.reward import residual_loss
from pirf.models import (
    EDMDenoiser,
    load_model,
    loss_weight,
    register_backbone,
)
from pirf.models.edm import per_sample_sigma, working_dtype
from pirf.models.layers import Conv2d
from pirf.models.unet import UNet, UNetConfig
from pirf.pdes.base import PDE
from pirf.pdes.normalisation import Normalisation
from pirf.sampling import (
    FP32,
    RHO,
    SIGMA_MAX,
    SIGMA_MIN,
    ProgressFn,
    SamplingResult,
    StepInfo,
    karras_sigmas,
    noise_levels,
)
from pirf.sampling.generate import sample_in_batches
from pirf.sampling.samplers import StepCallback
from pirf.seeding import unit_generators
from pirf.training.draws import Draws

PG_BACKBONE = "pg-unet"
"""Registry name of :class:`PGUNet`."""
CONDITION_EPS = 1e-12
"""Added to the per-sample RMS of the residual gradient before dividing by it, so a field
with (numerically) zero residual gets a zero condition instead of 0 / 0."""
STREAM_CONDITION_DROP = 104
"""Seed stream of the condition-dropout draws (``pirf.training.draws`` uses 100-103)."""
GRAD_CLIP = 1.0
"""Global gradient-norm clip of PG-Diffusion training (as in base training)."""


# --------------------------------------------------------------------------- the network
class PGUNet(nn.Module):
    """A U-Net backbone with a residual-gradient condition fused at its input.

    ``forward(x_in, noise_labels, condition=None)``: ``x_in`` and ``condition`` are
    ``(B, C, H, W)``; the condition (zeros if ``None``: the unconditional model) passes
    through :attr:`condition_block` and is concatenated with ``x_in`` before the U-Net's
    stem. The condition is not scaled by EDM's ``c_in``: it is already normalised.
    """

    def __init__(self, channels: int, unet: UNetConfig | dict[str, Any]) -> None:
        super().__init__()
        config = unet if isinstance(unet, UNetConfig) else UNetConfig.from_json(unet)
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise PirfError(f"the PG U-Net needs a positive channel count, got {channels!r}")
        if config.in_channels != 2 * channels or (config.out_channels or 0) != channels:
            raise PirfError(
                f"the PG U-Net for {channels} channels needs a U-Net with {2 * channels} input "
                f"and {channels} output channels, got {config.in_channels} and "
                f"{config.out_channels}"
            )
        self.channels = channels
        self.condition_block = nn.Sequential(
            Conv2d(channels, channels, 3, periodic=config.periodic),
            nn.SiLU(),
            Conv2d(channels, channels, 3, periodic=config.periodic),
        )
        self.unet = UNet(config)

    def architecture(self) -> dict[str, Any]:
        """The registry entry that rebuilds this network (``pirf.models.build_backbone``)."""
        return {
            "backbone": PG_BACKBONE,
            "config": {"channels": self.channels, "unet": self.unet.config.to_json()},
        }

    def top_module_names(self, blocks: int | None = None) -> list[str]:
        """The U-Net's choice for layer-wise fine-tuning (see :meth:`UNet.top_module_names`)."""
        return [f"unet.{name}" for name in self.unet.top_module_names(blocks)]

    def forward(
        self,
        x_in: torch.Tensor,
        noise_labels: torch.Tensor,
        condition: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if condition is None:
            condition = torch.zeros_like(x_in)
        elif condition.shape != x_in.shape:
            raise PirfError(
                f"the condition must have the state's shape {tuple(x_in.shape)}, "
                f"got {tuple(condition.shape)}"
            )
        features = self.condition_block(condition.to(x_in.dtype))
        return self.unet(torch.cat([x_in, features], dim=1), noise_labels)


def pg_unet_from_config(*, channels: int, unet: dict[str, Any]) -> PGUNet:
    """Registry factory: a :class:`PGUNet` from its :meth:`PGUNet.architecture` config."""
    return PGUNet(channels, unet)


# Re-importing the module (e.g. importlib.reload) registers the same factory again.
register_backbone(PG_BACKBONE, pg_unet_from_config, replace=True)


def pg_from_base(base: EDMDenoiser) -> EDMDenoiser:
    """A conditional denoiser that equals ``base`` (a pirf U-Net denoiser) exactly.

    Every U-Net weight is copied (position channels included); the stem's weights for the
    ``C`` extra (condition) input channels are zero, so the condition cannot change the
    output until training moves them. The condition block is drawn from the global
    generator (seed it first).
    """
    backbone = base.backbone
    if not isinstance(backbone, UNet):
        raise PirfError(
            f"PG-Diffusion starts from a pirf U-Net; the base backbone is {type(backbone).__name__}"
        )
    config = backbone.config
    channels = config.in_channels
    if (config.out_channels or channels) != channels:
        raise PirfError("PG-Diffusion needs a base U-Net with as many outputs as inputs")
    pg = PGUNet(channels, replace(config, in_channels=2 * channels, out_channels=channels))
    weights = dict(backbone.state_dict())
    # The U-Net's input is [fields (C), condition features (C), position channels]; the
    # base stem has [fields (C), position channels].
    stem = weights["stem.weight"]
    fields, positions = stem[:, :channels], stem[:, channels:]
    weights["stem.weight"] = torch.cat([fields, torch.zeros_like(fields), positions], dim=1)
    pg.unet.load_state_dict(weights, strict=True)
    parameter = next(backbone.parameters())
    pg = pg.to(device=parameter.device, dtype=parameter.dtype)
    return EDMDenoiser(pg, base.sigma_data, bf16=base.bf16).train(base.training)


def _pg_backbone(model: EDMDenoiser) -> PGUNet:
    if not isinstance(model, EDMDenoiser) or not isinstance(model.backbone, PGUNet):
        raise PirfError("expected a PG-Diffusion denoiser (an EDMDenoiser around a PGUNet)")
    return model.backbone


def pg_denoise(
    model: EDMDenoiser,
    x: torch.Tensor,
    sigma: torch.Tensor | float,
    condition: torch.Tensor | None,
    *,
    autocast: bool | None = None,
) -> torch.Tensor:
    """``D(x, sigma | condition)``: the conditional denoiser, the condition handed to its
    backbone unscaled (``condition=None`` gives exactly ``model(x, sigma)``)."""
    _pg_backbone(model)
    return model(x, sigma, autocast=autocast, condition=condition)


# --------------------------------------------------------------------------- the condition
def residual_gradient(x: torch.Tensor, pde: PDE, normalisation: Normalisation) -> torch.Tensor:
    """Per-sample gradient of ``mean(R^2)`` (physical units, of ``to_physical(x)``) with
    respect to the model-space state ``x``; detached, in ``x``'s dtype.

    Works inside ``torch.no_grad`` (it enables gradients locally) but not on
    inference-mode tensors.
    """
    with torch.enable_grad():
        state = x.detach().to(working_dtype(x)).requires_grad_(True)
        loss = residual_loss(pde, normalisation, state, dtype=state.dtype).sum()
        (gradient,) = torch.autograd.grad(loss, state)
    return gradient.to(x.dtype)


def normalise_condition(gradient: torch.Tensor, eps: float = CONDITION_EPS) -> torch.Tensor:
    """``gradient / (rms + eps)`` with the RMS over each sample's channels and pixels."""
    rms = gradient.flatten(1).square().mean(dim=1).sqrt()
    return gradient / (rms.reshape(-1, 1, 1, 1) + eps)


def physics_condition(
    x: torch.Tensor, pde: PDE, normalisation: Normalisation
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(condition, raw gradient)`` of the states ``x``: the network input and the
    un-normalised :func:`residual_gradient`."""
    gradient = residual_gradient(x, pde, normalisation)
    return normalise_condition(gradient), gradient


def condition_drops(seed: int, positions: list[int] | range, drop_prob: float) -> torch.Tensor:
    """Which samples ``(B,)`` (bool, CPU) lose their condition: one uniform draw per sample
    from a generator keyed by ``(seed, sample position)``, so the drops of a run do not
    depend on the batch layout. ``drop_prob`` 1 drops all, 0 none."""
    generators = unit_generators(seed, STREAM_CONDITION_DROP, positions)
    draws = torch.stack([torch.rand((), generator=g, dtype=torch.float64) for g in generators])
    return draws < drop_prob


def pg_loss(
    model: EDMDenoiser,
    x: torch.Tensor,
    sigma: torch.Tensor | float,
    noise: torch.Tensor,
    *,
    pde: PDE,
    normalisation: Normalisation,
    drop: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-sample EDM loss ``(B,)`` of the conditional model, with the condition computed at
    each noisy state and replaced by zeros where ``drop`` ``(B,)`` is true.

    Same arithmetic as :func:`pirf.models.edm_loss`: with every condition dropped it is
    exactly the EDM loss of the unconditional model.
    """
    x = x.to(working_dtype(x))
    sigma = per_sample_sigma(sigma, x)
    noisy = x + sigma.reshape(-1, 1, 1, 1) * noise.to(x.dtype)
    condition, _ = physics_condition(noisy, pde, normalisation)
    if drop is not None:
        dropped = drop.to(device=x.device, dtype=torch.bool).reshape(-1, 1, 1, 1)
        condition = torch.where(dropped, torch.zeros_like(condition), condition)
    error = (pg_denoise(model, noisy, sigma, condition) - x).square().flatten(1).mean(dim=1)
    return loss_weight(sigma, model.sigma_data) * error


# --------------------------------------------------------------------------- sampling
def _check_guidance(guidance_w: float, step_zeta: float) -> None:
    if not math.isfinite(guidance_w):
        raise PirfError(f"guidance_w must be finite, got {guidance_w}")
    check_positive("step_zeta", step_zeta, allow_zero=True)


def pg_network_evaluations(steps: int, guidance_w: float) -> int:
    """Network evaluations of one :func:`pg_sample` trajectory over a schedule of ``steps``
    ending in 0: ``2N - 1`` guided denoiser calls, each 2 evaluations (conditional and
    unconditional), or 1 when ``guidance_w`` is 0 (the unconditional term vanishes and is
    not computed)."""
    return (2 * steps - 1) * (1 if guidance_w == 0 else 2)


def pg_sample(
    model: EDMDenoiser,
    noise: torch.Tensor,
    sigmas: torch.Tensor | list[float],
    pde: PDE,
    normalisation: Normalisation,
    *,
    guidance_w: float = 1.0,
    step_zeta: float = 0.0,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """Deterministic Heun sampling from ``noise * sigmas[0]`` with the guided denoiser.

    Each denoiser evaluation at a state ``x`` computes the condition there and returns
    ``(w + 1) D(x | g) - w D(x | 0)`` (see the module docstring); after each step the
    state moves by ``-step_zeta`` times the raw residual gradient of the state the step
    started from (already computed for the step's first evaluation). The network runs in
    full precision; the state is float32 (float64 for float64 noise). ``callback`` sees a
    :class:`pirf.sampling.StepInfo` after every step, whose ``nfe`` counts network
    evaluations.
    """
    _pg_backbone(model)
    _check_guidance(guidance_w, step_zeta)
    levels = noise_levels(sigmas)
    steps = len(levels) - 1
    calls = 0

    def guided(x: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
        nonlocal calls
        condition, gradient = physics_condition(x, pde, normalisation)
        sigma_batch = torch.full((x.shape[0],), sigma, dtype=x.dtype, device=x.device)
        denoised = pg_denoise(model, x, sigma_batch, condition, autocast=False).to(x.dtype)
        calls += 1
        if guidance_w != 0:
            unconditional = pg_denoise(model, x, sigma_batch, None, autocast=False).to(x.dtype)
            calls += 1
            denoised = (guidance_w + 1) * denoised - guidance_w * unconditional
        return denoised, gradient

    with torch.no_grad():
        x = noise if noise.dtype == torch.float64 else noise.to(torch.float32)
        x = x * levels[0]
        for index in range(steps):
            sigma, sigma_next = levels[index], levels[index + 1]
            denoised, gradient = guided(x, sigma)
            slope = (x - denoised) / sigma
            predicted = x + (sigma_next - sigma) * slope
            if sigma_next == 0:
                x_next = predicted
            else:
                denoised_next, _ = guided(predicted, sigma_next)
                slope_next = (predicted - denoised_next) / sigma_next
                x_next = x + (sigma_next - sigma) * 0.5 * (slope + slope_next)
            if step_zeta != 0:
                x_next = x_next - step_zeta * gradient
            x = x_next
            if callback is not None:
                callback(StepInfo(index, steps, sigma, sigma_next, x, calls, False))
    return x


def generate_pg(
    model: EDMDenoiser,
    n: int,
    shape: tuple[int, int, int],
    seed: int,
    *,
    pde: PDE,
    normalisation: Normalisation,
    steps: int = 20,
    guidance_w: float = 1.0,
    step_zeta: float = 0.0,
    device: torch.device | str = "cpu",
    batch_size: int | None = None,
    sigma_min: float = SIGMA_MIN,
    sigma_max: float = SIGMA_MAX,
    rho: float = RHO,
    progress: ProgressFn | None = None,
) -> SamplingResult:
    """``n`` PG-Diffusion samples (model space, float32, CPU) from seed ``seed``, like
    :func:`pirf.sampling.generate`: sample ``i`` starts from the noise of
    :func:`pirf.sampling.initial_noise` for index ``i``, so the micro-batch size changes
    only the speed. The model must already be on ``device``. ``batch_size=None`` chooses a
    micro-batch size and halves it after a CUDA out-of-memory error.
    """
    _check_guidance(guidance_w, step_zeta)
    sigmas = karras_sigmas(steps, sigma_min, sigma_max, rho)
    nfe = 0

    def count(info: StepInfo) -> None:
        nonlocal nfe
        nfe = info.nfe

    def run(noise: torch.Tensor) -> torch.Tensor:
        return pg_sample(
            model,
            noise,
            sigmas,
            pde,
            normalisation,
            guidance_w=guidance_w,
            step_zeta=step_zeta,
            callback=count,
        )

    done = sample_in_batches(
        run,
        n,
        shape,
        seed,
        device=device,
        batch_size=batch_size,
        channels_last=False,
        progress=progress,
    )
    return SamplingResult(done.samples, steps, "heun", nfe, done.seconds, done.batch_size, FP32)


# --------------------------------------------------------------------------- training
@dataclass
class PGDiffusionConfig(BaselineRunConfig):
    """Arguments of :func:`pgdiffusion_train` (the base model's checkpoint: the conditional
    model starts from its EMA weights)."""

    drop_prob: float = 0.1
    """Probability per sample that the condition is replaced by zeros in training."""


def pgdiffusion_train(config: PGDiffusionConfig) -> dict[str, Any]:
    """Train the conditional denoiser from a base checkpoint; returns the run's summary.

    Writes ``OUT/checkpoint`` (the ``pg-unet`` model, no EMA; loading it needs
    ``import pirf.baselines.pgdiffusion``) and ``OUT/summary.json``. The condition block
    is initialised from ``(seed, 0)``; batches, noise, dropout and condition drops are
    keyed by ``(seed, iteration)`` as in :mod:`pirf.baselines.pidm`.
    """
    check_run(config.out, config.iters, config.batch, config.lr, config.seed, config.data)
    if not 0.0 <= config.drop_prob <= 1.0:
        raise PirfError(f"drop_prob must lie in [0, 1], got {config.drop_prob}")
    device = resolve_device(config.device)
    # Float32 and no bf16 autocast, as for PIDM (the condition is a residual gradient).
    base = load_model(config.ckpt, device=device, bf16=False, float32=True)
    data = training_data(base, config.data)
    draws = Draws(config.seed, n_data=len(data.fields), batch=config.batch)
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(draws.init_seed())
        model = pg_from_base(base.denoiser)

    def loss_fn(
        iteration: int, x: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        drop = condition_drops(config.seed, draws.positions(iteration), config.drop_prob)
        loss = pg_loss(
            model,
            x,
            sigma,
            noise,
            pde=base.pde,
            normalisation=base.normalisation,
            drop=drop,
        )
        return {"loss": loss, "dropped": drop.to(device=loss.device, dtype=loss.dtype)}

    run = optimise(
        model,
        loss_fn,
        fields=data.fields,
        iters=config.iters,
        batch=config.batch,
        lr=config.lr,
        grad_clip=GRAD_CLIP,
        seed=config.seed,
        device=device,
        progress=config.progress,
        label="pg-diffusion",
    )
    return save_baseline(
        "pg-diffusion",
        config,
        model,
        None,
        base,
        data,
        run,
        details={
            "condition": "residual gradient / (rms + eps)",
            "condition_eps": CONDITION_EPS,
        },
        summary={"drop_prob": config.drop_prob},
        device=device,
        training={"grad_clip": GRAD_CLIP},
    )


__all__ = [
    "CONDITION_EPS",
    "PG_BACKBONE",
    "PGDiffusionConfig",
    "PGUNet",
    "condition_drops",
    "generate_pg",
    "normalise_condition",
    "pg_denoise",
    "pg_from_base",
    "pg_loss",
    "pg_network_evaluations",
    "pg_sample",
    "pg_unet_from_config",
    "pgdiffusion_train",
    "physics_condition",
    "residual_gradient",
]
