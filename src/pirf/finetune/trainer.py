"""One PIRF optimisation on an in-memory denoiser: :class:`PIRFTrainer`.

This is the method without files: any denoiser ``D(x, sigma)`` (an
:class:`~pirf.models.EDMDenoiser` or a user's own module), any PDE (its residual is the
reward) or any per-sample loss function. :func:`pirf.finetune.finetune` wraps it with
checkpoints, evaluation, guards, logs and figures.

One :meth:`PIRFTrainer.step`:

1. draw the iteration's sampler budget ``N`` (fixed, or from ``random_steps``) and its
   unit noise, both keyed by ``(seed, iteration)``, so a resumed run draws the same;
2. run the truncated trajectory (:func:`truncated_trajectory`): the first steps without
   gradient (bf16 on CUDA), the last ``K`` with it, the last ``fp32_steps`` in float32;
3. the loss: the residual loss of the final samples in float32 (divided by the base
   model's, so that it starts near one), samples whose loss is not finite left out and
   counted, plus the weight regulariser toward the *pretrained* weights and the optional
   distillation penalty;
4. back-propagate, average gradients over processes, zero non-finite gradient entries
   (counted), clip, Adam step at the iteration's learning rate, EMA update.

Nothing else draws random numbers, so on the CPU a resumed run computes bitwise the same
weights as an uninterrupted one.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.utils import parametrize

from pirf.errors import PirfError, option
from pirf.finetune.config import FinetuneConfig, resolve
from pirf.finetune.lora import attach_lora, load_lora_factors, lora_factors, merged_state
from pirf.finetune.pool import StatePool
from pirf.finetune.regularisers import distillation_regulariser
from pirf.finetune.reward import Reward
from pirf.finetune.safety import sanitise_gradients
from pirf.finetune.trainable import model_names, select_trainable, top_names
from pirf.finetune.trajectory import (
    GradientTrajectory,
    truncated_trajectory,
    window_start,
    window_trajectory,
)
from pirf.pdes.base import PDE
from pirf.pdes.normalisation import Normalisation
from pirf.sampling import Precision, karras_sigmas
from pirf.seeding import unit_seed
from pirf.training.ema import ema_beta
from pirf.training.schedule import adam, scheduled_rate, set_learning_rate

LossFn = Callable[[torch.Tensor], torch.Tensor]
"""Per-sample loss ``(B,)`` of model-space samples ``(B, C, H, W)``; differentiable."""

NOISE_STREAM = 32
"""Seed stream of fine-tuning noise (disjoint from data and evaluation streams); the next
stream draws each process's trajectory randomness (ReFL step, DRaFT-LV noise)."""
LORA_STREAM = 34
"""Seed stream of the LoRA factors' initialisation."""


@dataclass(frozen=True)
class StepStats:
    """What one optimizer step measured (averaged over processes where it matters)."""

    iteration: int
    steps: int
    """Sampler steps ``N`` of this iteration's trajectories."""
    loss: float
    """Total loss (reward loss + regularisers)."""
    reward_loss: float
    """Residual loss of the final samples divided by the scale (1 = the base model)."""
    regulariser: float
    grad_norm: float
    lr: float
    nonfinite_samples: int
    nonfinite_gradients: int
    skipped: bool
    """No finite sample in the batch: no optimizer step was taken."""
    seconds: float
    starts: int = 0
    """Window-start states this process made (sampler steps without gradient from fresh
    noise): the batch share for plain DRaFT-K, the refresh with a state pool."""
    pool_age: float = 0.0
    """Mean age in iterations of the pool's states (0 without a pool)."""


class PIRFTrainer:
    """PIRF fine-tuning of ``denoiser`` (modified in place; see the module docstring).

    ``denoiser`` should hold the pretrained weights (for a pirf checkpoint: its EMA
    weights). The reward is ``pde``'s residual of the samples mapped to physical units by
    ``normalisation``, or ``loss_fn`` when given. ``shape`` is ``(C, H, W)``. Of ``config``
    the trajectory fields are used (``sampler_steps``, ``truncation``, ``mode``,
    ``trainable``, ``weight_reg``, ``lr``, ...). ``scale`` divides the loss (the base
    model's residual loss; :meth:`set_scale`). ``top_prefixes`` (else the configuration's
    ``top_modules``) names the modules that ``trainable='top'`` (or ``'lora'``) trains, as
    names in the network the user wrote (:func:`pirf.models.backbone.user_network`: the
    network given to ``pirf.models.wrap``, a pirf U-Net, or ``denoiser`` itself when it is
    a plain module); without them a network that names its top layers chooses.
    """

    def __init__(
        self,
        denoiser: nn.Module,
        config: FinetuneConfig,
        *,
        shape: tuple[int, int, int],
        pde: PDE | None = None,
        normalisation: Normalisation | None = None,
        loss_fn: LossFn | None = None,
        scale: float = 1.0,
        device: torch.device | str = "cpu",
        rank: int = 0,
        world: int = 1,
        top_prefixes: list[str] | None = None,
    ) -> None:
        config = resolve(config, pde=None if pde is None else pde.name)
        self.reward: Reward | None = None
        if loss_fn is None:
            if pde is None or normalisation is None:
                raise PirfError("give a PDE and its normalisation, or a loss function")
            self.reward = Reward(
                pde,
                normalisation,
                reward=config.objective.reward,
                norm=config.objective.norm,
                snap=config.objective.reward_snap,
                weight=config.objective.reward_weight,
                relative=config.objective.reward_relative,
                inputs=config.objective.reward_inputs,
            )
            loss_fn = self.reward
        if config.optimiser.batch % world:
            raise PirfError(
                f"{option('batch')} {config.optimiser.batch} is not divisible by {world} processes"
            )
        self.config = config
        self.shape = tuple(int(s) for s in shape)
        self.loss_fn = loss_fn
        self.device = torch.device(device)
        self.rank, self.world = rank, world
        self.channels_last = self.device.type == "cuda"
        layout = torch.channels_last if self.channels_last else torch.preserve_format
        self.model = denoiser.to(self.device, memory_format=layout).eval()
        self.scale = float(scale)
        # A float64 network (tests, references) samples in float64 throughout.
        self._float64 = any(p.dtype == torch.float64 for p in self.model.parameters())
        self.pretrained = {k: v.clone() for k, v in merged_state(self.model).items()}
        # The PDE's inputs, for a held reward and for distilling the inputs only.
        inputs = None if pde is None else pde.input_mask(*self.shape[-2:]).to(self.device)
        held = self.reward is not None and self.reward.inputs == "held"
        self.hold: torch.Tensor | None = inputs if held else None
        self.frozen = None
        self.distill_mask: torch.Tensor | None = None
        if config.objective.distill_reg > 0:
            self.frozen = copy.deepcopy(self.model).eval().requires_grad_(False)
            if config.objective.distill_on == "inputs":
                if inputs is None or not bool(inputs.any()):
                    raise PirfError(
                        f"{option('distill_on')} inputs needs a PDE that marks inputs "
                        "(PDE.input_mask); use all"
                    )
                self.distill_mask = inputs
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.named_trainable = self._select(top_prefixes)
        self.trainable = [p for _, p in self.named_trainable]
        self.optimizer = adam(self.trainable, config.optimiser.lr)
        self.precision = Precision(
            bf16=config.trajectory.bf16 and self.device.type == "cuda",
            fp32_steps=config.trajectory.fp32_steps,
        )
        # The steps without gradient are most of an iteration; a compiled view of the same
        # module (weights shared, so always current) runs them when asked.
        self.fast = torch.compile(self.model) if config.trajectory.compile else None
        self.pool: StatePool | None = None
        if config.trajectory.pool:
            share = config.optimiser.batch // world
            refresh = config.trajectory.pool_refresh or max(1, share // 4)
            self.pool = StatePool(
                config.trajectory.pool, refresh, self.shape, seed=config.optimiser.seed, rank=rank
            )

    # ------------------------------------------------------------------------- set-up
    def _select(self, prefixes: list[str] | None) -> list[tuple[str, nn.Parameter]]:
        cfg = self.config
        declared = prefixes if prefixes is not None else cfg.layers.top_modules
        names = None if declared is None else model_names(self.model, declared)
        if cfg.layers.trainable == "lora":
            for parameter in self.model.parameters():
                parameter.requires_grad_(False)
            # The factors' random start is part of the run: drawn from the run's seed, not
            # from whatever state the caller's global generator is in.
            if prefixes is None and cfg.layers.lora_layers == "top" and names is None:
                if not hasattr(self.model, "top_module_names"):
                    raise PirfError(
                        f"{type(self.model).__name__} does not name its top layers; pass "
                        "top_prefixes, or lora_layers='all' to adapt every layer"
                    )
                names = top_names(self.model, cfg.layers.top_blocks)
            elif prefixes is None and cfg.layers.lora_layers == "all":
                names = None
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(unit_seed(cfg.optimiser.seed, LORA_STREAM, 0))
                return attach_lora(self.model, rank=cfg.layers.lora_rank, prefixes=names)
        if cfg.layers.trainable == "top":
            if names is None and hasattr(self.model, "top_module_names"):
                return select_trainable(self.model, "top", blocks=cfg.layers.top_blocks)
            if names is None:
                raise PirfError(
                    f"{type(self.model).__name__} does not name its top layers; pass "
                    "top_prefixes (the module names to train)"
                )
            return select_trainable(self.model, "top", prefixes=names)
        return select_trainable(self.model, "all")

    def calibrate(self, samples: torch.Tensor) -> dict[str, float]:
        """Divide the loss by its value on ``samples`` (the base model's) from now on: each
        term of pirf's reward by its own mean (:meth:`Reward.calibrate`), a user's loss by
        its mean. Returns the scales."""
        samples = samples.to(self.device)
        if self.reward is not None:
            self.scale = 1.0
            return self.reward.calibrate(samples)
        with torch.no_grad():
            value = float(self.loss_fn(samples).double().mean())
        self.set_scale(value)
        return {"loss": value}

    def set_scale(self, scale: float) -> None:
        """Divide the reward loss by ``scale`` from now on (the base model's residual)."""
        if not (scale > 0 and math.isfinite(scale)):
            raise PirfError(f"the reward scale must be positive and finite, got {scale}")
        self.scale = float(scale)

    @property
    def parameter_count(self) -> int:
        """Trainable parameters."""
        return sum(p.numel() for p in self.trainable)

    # ------------------------------------------------------------------------- draws
    def _generator(self, iteration: int) -> torch.Generator:
        return torch.Generator().manual_seed(
            unit_seed(self.config.optimiser.seed, NOISE_STREAM, iteration)
        )

    def draws(self, iteration: int) -> tuple[int, torch.Tensor, torch.Generator]:
        """The iteration's step count, this process's unit noise and a generator for the
        trajectory's own draws (ReFL step, DRaFT-LV noise), all keyed by the iteration."""
        cfg = self.config
        generator = self._generator(iteration)
        if cfg.trajectory.random_steps:
            pick = int(torch.randint(len(cfg.trajectory.random_steps), (), generator=generator))
            steps = cfg.trajectory.random_steps[pick]
        else:
            steps = cfg.trajectory.steps
        noise = torch.randn((cfg.optimiser.batch, *self.shape), generator=generator)
        share = cfg.optimiser.batch // self.world
        noise = noise[self.rank * share : (self.rank + 1) * share]
        trajectory = torch.Generator(device=self.device)
        key = iteration * self.world + self.rank
        trajectory.manual_seed(unit_seed(cfg.optimiser.seed, NOISE_STREAM + 1, key))
        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        dtype = torch.float64 if self._float64 else torch.float32
        return steps, noise.to(self.device, dtype, memory_format=layout), trajectory

    # ------------------------------------------------------------------------- losses
    def weight_penalty(self) -> torch.Tensor:
        """``lambda * ||theta - theta_pretrained||^2`` over the weights that can move.

        For LoRA the moving weights are the merged ones, ``W0 + B A``, so the penalty is
        the squared norm of the low-rank updates.
        """
        terms = []
        if self.config.layers.trainable == "lora":
            for module in self.model.modules():
                if parametrize.is_parametrized(module, "weight"):
                    original = module.parametrizations.weight.original
                    terms.append((module.weight - original).square().sum())
        else:
            for name, parameter in self.named_trainable:
                reference = self.pretrained[name].to(parameter.device, parameter.dtype)
                terms.append((parameter - reference).square().sum())
        return self.config.objective.weight_reg * torch.stack(terms).sum()

    def _trajectory(
        self, iteration: int, steps: int, noise: torch.Tensor, generator: torch.Generator
    ) -> tuple[GradientTrajectory, int]:
        """The iteration's differentiable trajectories, and the window starts made for
        them (fresh ones, or from the pool)."""
        cfg = self.config
        sigmas = karras_sigmas(steps)
        k = min(cfg.trajectory.truncation, steps)
        if self.pool is None:
            run = truncated_trajectory(
                self.model,
                noise,
                sigmas,
                k=k,
                mode=cfg.trajectory.mode,
                precision=self.precision,
                generator=generator,
                copies=cfg.trajectory.copies,
                checkpoint=True if cfg.trajectory.checkpointing else None,
                fast=self.fast,
                hold=self.hold,
            )
            return run, noise.shape[0]
        ahead = self.model if self.fast is None else self.fast
        layout = torch.channels_last if self.channels_last else torch.contiguous_format

        def make(fresh: torch.Tensor) -> torch.Tensor:
            fresh = fresh.to(self.device, noise.dtype, memory_format=layout)
            return window_start(ahead, fresh, sigmas, k, precision=self.precision)

        states, made = self.pool.draw(iteration, noise.shape[0], make)
        run = window_trajectory(
            self.model,
            states,
            sigmas,
            k,
            precision=self.precision,
            checkpoint=cfg.trajectory.checkpointing,
            hold=self.hold,
        )
        return run, made

    def _loss(
        self, run: GradientTrajectory
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        cfg = self.config
        final = run.final if self._float64 else run.final.float()
        per_sample = self.loss_fn(final) / self.scale
        finite = torch.isfinite(per_sample)
        bad = int((~finite).sum())
        if bad and final.requires_grad:
            # A sample whose loss is not finite can still send NaN back through its own
            # final state into every shared weight; cut its gradient at the state.
            keep = finite.view(-1, *([1] * (final.dim() - 1)))
            final.register_hook(lambda grad: torch.where(keep, grad, torch.zeros_like(grad)))
        reward = per_sample[finite].mean() if bad < per_sample.numel() else None
        regulariser = torch.zeros((), device=self.device)
        if cfg.objective.weight_reg > 0:
            regulariser = regulariser + self.weight_penalty()
        if cfg.objective.distill_reg > 0 and self.frozen is not None:
            regulariser = regulariser + distillation_regulariser(
                self.model,
                self.frozen,
                run.states,
                run.sigmas,
                cfg.objective.distill_reg,
                mask=self.distill_mask,
            )
        if reward is None:
            reward = torch.full((), math.nan, device=self.device)
            total = regulariser
        else:
            total = reward + regulariser
        return total, reward.detach(), regulariser.detach(), bad

    # ------------------------------------------------------------------------- one step
    def _average_gradients(self) -> None:
        if self.world == 1:
            return
        for parameter in self.trainable:
            if parameter.grad is None:
                parameter.grad = torch.zeros_like(parameter)
            dist.all_reduce(parameter.grad, op=dist.ReduceOp.SUM)
            parameter.grad /= self.world

    def _mean(self, value: float) -> float:
        if self.world == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return float(tensor) / self.world

    def lr_at(self, iteration: int) -> float:
        """The scheduled learning rate of ``iteration``."""
        return scheduled_rate(self.config.optimiser, iteration)

    def step(self, iteration: int, lr: float | None = None) -> StepStats:
        """One optimizer step of iteration ``iteration`` (0-based), at rate ``lr`` (default:
        the run's schedule, :meth:`lr_at`; the run loop passes it)."""
        began = time.perf_counter()
        cfg = self.config
        lr = self.lr_at(iteration) if lr is None else lr
        set_learning_rate(self.optimizer, lr)
        steps, noise, generator = self.draws(iteration)
        run, starts = self._trajectory(iteration, steps, noise, generator)
        total, reward, regulariser, bad = self._loss(run)
        self.optimizer.zero_grad(set_to_none=True)
        skipped = bad * self.world >= cfg.optimiser.batch * (
            cfg.trajectory.copies if cfg.trajectory.mode == "draft-lv" else 1
        )
        if total.requires_grad:
            total.backward()
        self._average_gradients()
        nonfinite = sanitise_gradients(self.trainable)
        limit = cfg.optimiser.grad_clip if cfg.optimiser.grad_clip > 0 else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.trainable, limit))
        skipped = bool(self._mean(float(skipped)) > 0.5)
        if not skipped:
            self.optimizer.step()
            self._update_ema(iteration)
        return StepStats(
            iteration=iteration + 1,
            steps=steps,
            loss=self._mean(float(total.detach())),
            reward_loss=self._mean(float(reward)),
            regulariser=float(regulariser),
            grad_norm=grad_norm,
            lr=lr,
            nonfinite_samples=round(self._mean(float(bad)) * self.world),
            nonfinite_gradients=nonfinite,
            skipped=skipped,
            seconds=time.perf_counter() - began,
            starts=starts,
            pool_age=0.0 if self.pool is None else self.pool.age(iteration),
        )

    @torch.no_grad()
    def _update_ema(self, iteration: int) -> None:
        cfg = self.config
        seen = (iteration + 1) * cfg.optimiser.batch
        beta = ema_beta(
            seen,
            cfg.optimiser.batch,
            halflife=cfg.optimiser.ema_halflife,
            rampup=cfg.optimiser.ema_rampup,
        )
        averages = dict(self.ema.named_parameters())
        if self.config.layers.trainable == "lora":
            current = merged_state(self.model)
        else:
            current = {name: p.detach() for name, p in self.named_trainable}
        for name, value in current.items():
            if name in averages:
                averages[name].lerp_(value.to(averages[name].dtype), 1.0 - beta)

    # ------------------------------------------------------------------------- state
    def weights(self) -> dict[str, torch.Tensor]:
        """The fine-tuned weights under their plain names (LoRA merged)."""
        return merged_state(self.model)

    def extra_state(self) -> dict[str, Any]:
        """What :meth:`load_extra_state` needs besides the weights to resume exactly."""
        state: dict[str, Any] = {"adam": self.optimizer.state_dict(), "scale": self.scale}
        if self.reward is not None:
            state["reward_scales"] = self.reward.scales
        if self.config.layers.trainable == "lora":
            state["lora"] = lora_factors(self.model)
        if self.pool is not None:
            state["pool"] = self.pool.state()
        return state

    def load_state(
        self,
        weights: dict[str, torch.Tensor] | None,
        ema: dict[str, torch.Tensor],
        extra: dict[str, Any],
    ) -> None:
        """Restore a run: the model's weights (not for LoRA: its factors are in ``extra``),
        the EMA weights, Adam's state and the reward scale."""
        with torch.no_grad():
            if self.config.layers.trainable == "lora":
                load_lora_factors(self.model, extra["lora"])
            elif weights is not None:
                own = dict(self.model.named_parameters())
                for name, value in weights.items():
                    if name in own:
                        own[name].copy_(value)
            for name, average in self.ema.named_parameters():
                average.copy_(ema[name])
        self.optimizer.load_state_dict(extra["adam"])
        self.scale = float(extra["scale"])
        if self.pool is not None:
            self.pool.load(extra["pool"], self.device)
        if self.reward is not None:
            scales = extra.get("reward_scales")
            if scales is None and self.scale != 1.0:
                # a run saved before per-term scales: one residual term, scaled outside
                scales, self.scale = {"residual": self.scale}, 1.0
            self.reward.scales = scales


__all__ = ["NOISE_STREAM", "LossFn", "PIRFTrainer", "StepStats"]
