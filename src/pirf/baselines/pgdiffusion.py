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
``model(x, sigma)`` evaluates. Sampling is EDM's deterministic sampler
(:func:`pirf.sampling.generate`) with two wrappers (:func:`wrappers`): the guided denoiser
``(w + 1) D(x | g) - w D(x | 0)`` (:class:`ClassifierFreeGuidance`), the EDM form of
classifier-free guidance ``eps = (w + 1) eps_cond - w eps_uncond`` (``D`` and ``eps`` are
affine in each other at a fixed ``x`` and ``sigma``, so mixing either is the same), and a
direct step ``x_next -= step_zeta * grad`` along the raw residual gradient
(:class:`ResidualGradientStep`).

Importing this module registers the ``"pg-unet"`` backbone; a checkpoint written by
:func:`pgdiffusion_train` loads (:func:`pirf.models.load_model`) only after
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
from pirf.sampling.precision import Denoiser
from pirf.sampling.wrappers import SamplerWrappers, SamplingCost, StepFn
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
def pg_network_evaluations(steps: int, guidance_w: float) -> int:
    """Network evaluations of one PG-Diffusion Heun trajectory over a schedule of ``steps``
    ending in 0: ``2N - 1`` guided denoiser calls, each 2 evaluations (conditional and
    unconditional), or 1 when ``guidance_w`` is 0 (the unconditional term vanishes and is
    not computed)."""
    return (2 * steps - 1) * (1 if guidance_w == 0 else 2)


@dataclass(frozen=True)
class ClassifierFreeGuidance:
    """PG-Diffusion's guided denoiser as a denoiser wrapper
    (:data:`pirf.sampling.wrappers.DenoiserWrapper`).

    Around the network of a conditional model it evaluates, at a state ``x``, the condition
    there (:func:`physics_condition`) and returns ``(w + 1) D(x | g) - w D(x | 0)``: two
    network evaluations, or one when ``guidance_w`` is 0. The condition is computed outside
    the network's autocast region, in the state's precision.
    """

    pde: PDE
    normalisation: Normalisation
    guidance_w: float = 1.0

    def __post_init__(self) -> None:
        if not math.isfinite(self.guidance_w):
            raise PirfError(f"guidance_w must be finite, got {self.guidance_w}")

    def __call__(self, network: Denoiser) -> Denoiser:
        def guided(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            condition, _ = physics_condition(x, self.pde, self.normalisation)
            denoised = network(x, sigma, condition=condition)
            if self.guidance_w == 0:
                return denoised
            unconditional = network(x, sigma)
            return (self.guidance_w + 1) * denoised - self.guidance_w * unconditional

        return guided


@dataclass(frozen=True)
class ResidualGradientStep:
    """PG-Diffusion's direct step as a step wrapper
    (:class:`pirf.sampling.wrappers.StepWrapper`): after every step the state moves by
    ``-step_zeta`` times the raw :func:`residual_gradient` of the state the step started
    from. The gradient is of the residual operator alone, no network pass."""

    pde: PDE
    normalisation: Normalisation
    step_zeta: float

    def __post_init__(self) -> None:
        check_positive("step_zeta", self.step_zeta, allow_zero=True)

    def full_precision(self, index: int, steps: int) -> bool:
        """The direct step does not differentiate the network: any precision will do."""
        return False

    def __call__(self, step: StepFn, index: int, steps: int, cost: SamplingCost) -> StepFn:
        if self.step_zeta == 0:
            return step

        def stepped(
            denoiser: Denoiser, x: torch.Tensor, sigma: float, sigma_next: float
        ) -> torch.Tensor:
            x_next = step(denoiser, x, sigma, sigma_next)
            return x_next - self.step_zeta * residual_gradient(x, self.pde, self.normalisation)

        return stepped


def wrappers(
    model: EDMDenoiser,
    pde: PDE,
    normalisation: Normalisation,
    *,
    guidance_w: float = 1.0,
    step_zeta: float = 0.0,
) -> SamplerWrappers:
    """The sampler wrappers that sample the conditional ``model`` as PG-Diffusion does, as
    keyword arguments of :func:`pirf.sampling.generate`: :class:`ClassifierFreeGuidance`
    with weight ``guidance_w`` and, unless ``step_zeta`` is 0, :class:`ResidualGradientStep`.

    Sample with full-precision steps (the default :data:`pirf.sampling.FP32`);
    :func:`pg_network_evaluations` gives the NFE.
    """
    _pg_backbone(model)
    guidance = ClassifierFreeGuidance(pde, normalisation, guidance_w)
    direct = ResidualGradientStep(pde, normalisation, step_zeta)
    return {"denoiser_wrapper": guidance, "step_wrapper": direct if step_zeta != 0 else None}


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

    save = baseline_saver(
        "pg-diffusion",
        config,
        model,
        None,
        base,
        data,
        details={
            "condition": "residual gradient / (rms + eps)",
            "condition_eps": CONDITION_EPS,
        },
        training={"grad_clip": GRAD_CLIP},
    )
    run = optimise(
        model,
        loss_fn,
        fields=data.fields,
        config=config,
        grad_clip=GRAD_CLIP,
        device=device,
        save=save,
        label="pg-diffusion",
    )
    return baseline_summary(
        "pg-diffusion",
        config,
        model,
        run,
        summary={"drop_prob": config.drop_prob},
        device=device,
    )


__all__ = [
    "CONDITION_EPS",
    "PG_BACKBONE",
    "ClassifierFreeGuidance",
    "PGDiffusionConfig",
    "PGUNet",
    "ResidualGradientStep",
    "condition_drops",
    "normalise_condition",
    "pg_denoise",
    "pg_from_base",
    "pg_loss",
    "pg_network_evaluations",
    "pg_unet_from_config",
    "pgdiffusion_train",
    "physics_condition",
    "residual_gradient",
    "wrappers",
]
