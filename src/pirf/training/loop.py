"""Base training: the EDM-loss task of the run loop (:mod:`pirf.training.runloop`).

One step of ``train`` (the run loop has set its learning rate, a pure function of the
iteration):

1. take this process's share of the step's samples (normalised fields) and their noise
   levels and noise fields, all keyed by ``(seed, sample position)``;
2. re-seed the global generator from ``(seed, iteration, rank)`` (dropout), compute the
   mean EDM loss and back-propagate (DDP averages the gradients over processes);
3. average the loss over processes; stop with a :class:`PirfError` if the loss or the
   gradient norm is not finite (the last periodic checkpoint stays the newest);
4. clip the gradient norm, take the Adam step, update the EMA;
5. the run loop logs and checkpoints; the task draws a preview figure when due.

Nothing else draws random numbers, so a run resumed from a checkpoint (weights, EMA, Adam
state and the iteration counter) computes bitwise the same weights on the CPU as a run
that was never interrupted.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import pirf.data
from pirf.checks import check_training_run
from pirf.errors import PirfError, option
from pirf.models import (
    EDMDenoiser,
    check_matches,
    edm_loss,
    load_checkpoint,
    preset_denoiser,
    read_checkpoint_info,
    save_checkpoint,
)
from pirf.sampling import initial_noise
from pirf.settings import record
from pirf.training import distributed, rundir
from pirf.training.batches import BatchSource
from pirf.training.config import TrainConfig, check_arguments, resolve, stored_settings
from pirf.training.draws import Draws
from pirf.training.ema import EMA
from pirf.training.figures import preview_samples, save_preview
from pirf.training.runloop import LoopSettings, RunLoop, StepStats
from pirf.training.schedule import adam


class EDMLossModule(nn.Module):
    """The per-sample EDM loss as a module, so that DDP can wrap the whole computation."""

    def __init__(self, denoiser: EDMDenoiser) -> None:
        super().__init__()
        self.denoiser = denoiser

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return edm_loss(self.denoiser, x, sigma=sigma, noise=noise)


def batch_loss(
    loss_module: nn.Module, x: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    """Mean EDM loss of one process's batch (the quantity that is back-propagated)."""
    return loss_module(x, sigma, noise).mean()


def weights_fingerprint(module: nn.Module) -> str:
    """SHA-256 of a module's state (names and bytes, in name order): equal iff bitwise equal."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _check_resume(info: Any, data: pirf.data.PDEDataset) -> None:
    """One-line error if the checkpoint of a resumed run was not trained on this data."""
    check_matches(
        info,
        pde=data.pde.name,
        channels=data.channels,
        resolution=data.resolution,
        params=data.params,
    )
    if info.normalisation != data.normalisation:
        raise PirfError(
            f"normalisation mismatch: {data.path} is not the training set of the run "
            "(its normalisation differs from the checkpoint's)"
        )
    samples = info.extra.get("data", {}).get("samples")
    if samples is not None and samples != len(data):
        raise PirfError(
            f"dataset mismatch: {data.path} has {len(data)} samples, the run was trained on "
            f"{samples}"
        )


class EDMTraining:
    """The base-training task of the run loop (:class:`pirf.training.runloop.Task`): one
    EDM-loss step per iteration, the EMA, preview figures, checkpoints."""

    label = "train"

    def __init__(self, config: TrainConfig, context: distributed.DistContext) -> None:
        self.context = context
        self.device = context.device
        self.data = pirf.data.load(config.data)
        self.out = Path(config.run.out)
        resume_from = rundir.prepare(self.out, resume=config.run.resume, create=context.is_main)
        if context.is_main:
            rundir.write_config(self.out, config, "train")
        distributed.barrier(context)
        info = read_checkpoint_info(resume_from) if resume_from is not None else None
        self.config = config
        cfg = self.config
        if cfg.optimiser.batch % context.world:
            raise PirfError(
                f"{option('batch')} {cfg.optimiser.batch} is not divisible by the "
                f"{context.world} processes"
            )
        if info is not None:
            _check_resume(info, self.data)
            if cfg.optimiser.iters < info.counters.get("iteration", 0):
                raise PirfError(
                    f"{option('iters')} {cfg.optimiser.iters} is below the "
                    f"{info.counters['iteration']} iterations the run has already done"
                )
        self.draws = Draws(
            cfg.optimiser.seed,
            n_data=len(self.data),
            batch=cfg.optimiser.batch,
            world=context.world,
            rank=context.rank,
        )
        self._build(resume_from)
        self.batches = BatchSource(
            self.data.normalisation.to_model(self.data.fields()),
            self.draws,
            self.device,
            channels_last=self.channels_last,
        )
        start = int(self.start_counters["iteration"])
        stop = (
            min(cfg.optimiser.iters, cfg.run.stop_at)
            if cfg.run.stop_at is not None
            else cfg.optimiser.iters
        )
        self.end = max(stop, start)  # the iteration this invocation stops at
        self.figures: list[str] = []

    # ------------------------------------------------------------------------- set-up
    def _build(self, resume_from: Path | None) -> None:
        cfg = self.config
        if resume_from is None:
            torch.manual_seed(self.draws.init_seed())
            model = preset_denoiser(
                cfg.network.preset,
                channels=len(self.data.channels),
                resolution=self.data.resolution,
                periodic=tuple(self.data.pde.grid.periodic),
                bf16=cfg.network.bf16,
                **{
                    "position_harmonics": self.data.pde.position_harmonics(),
                    **cfg.network.model_overrides,
                },
            )
            self.start_counters: dict[str, Any] = {"iteration": 0, "samples": 0, "seconds": 0.0}
            ema_state = optimizer_state = None
        else:
            checkpoint = load_checkpoint(resume_from, bf16=cfg.network.bf16)
            model = checkpoint.model
            if checkpoint.ema is None or checkpoint.optimizer_state is None:
                raise PirfError(f"{resume_from} has no EMA or optimizer state; cannot resume")
            ema_state = checkpoint.ema.state_dict()
            optimizer_state = checkpoint.optimizer_state
            self.start_counters = dict(checkpoint.info.counters)
        self.channels_last = cfg.network.channels_last and self.device.type == "cuda"
        memory_format = torch.channels_last if self.channels_last else torch.preserve_format
        self.model = model.to(self.device, memory_format=memory_format).train()
        self.ema = EMA(
            self.model, halflife=cfg.optimiser.ema_halflife, rampup=cfg.optimiser.ema_rampup
        )
        if ema_state is not None:
            self.ema.model.load_state_dict(ema_state)
        self.optimizer = adam(self.model.parameters(), cfg.optimiser.lr)
        if optimizer_state is not None:
            self.optimizer.load_state_dict(optimizer_state)
        loss_module: nn.Module = EDMLossModule(self.model)
        if self.context.distributed:
            device_ids = [self.device] if self.device.type == "cuda" else None
            loss_module = DistributedDataParallel(loss_module, device_ids=device_ids)
        self.loss_module = loss_module
        self.parameters = sum(p.numel() for p in self.model.parameters())

    # ------------------------------------------------------------------------- the task
    def step(self, iteration: int, lr: float) -> StepStats:
        """One optimizer step (the loop has set the rate ``lr``)."""
        began = time.perf_counter()
        x, sigma, noise = self.batches.get(iteration, prefetch_next=iteration + 1 < self.end)
        torch.manual_seed(self.draws.dropout_seed(iteration))
        loss = batch_loss(self.loss_module, x, sigma, noise)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip = self.config.optimiser.grad_clip
        grad_norm = float(
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip if clip > 0 else math.inf)
        )
        loss_value = float(distributed.mean_over_processes(loss, self.context))
        if not (math.isfinite(loss_value) and math.isfinite(grad_norm)):
            latest = rundir.latest_checkpoint(self.out)
            kept = f"the last good checkpoint is {latest}" if latest else "no checkpoint yet"
            what = f"loss {loss_value}" if not math.isfinite(loss_value) else "gradient norm"
            raise PirfError(
                f"training diverged: non-finite {what} at iteration {iteration + 1}; stopped, "
                f"{kept} (try a lower {option('lr')})"
            )
        self.optimizer.step()
        samples = (iteration + 1) * self.config.optimiser.batch
        self.ema.update(self.model, samples_seen=samples, batch=self.config.optimiser.batch)
        return StepStats(loss_value, grad_norm, time.perf_counter() - began)

    def counters(self, done: int) -> dict[str, Any]:
        return {"samples": done * self.config.optimiser.batch}

    def begin(self, loop: RunLoop) -> None:
        """Nothing to measure before the first step of a base model."""

    def guard(self, stats: StepStats) -> str | None:
        """A non-finite loss stops training with an error in :meth:`step` instead."""
        return None

    def after_step(self, loop: RunLoop, done: int, stopping: bool) -> str | None:
        """A preview figure every ``figure_every`` samples and at the end."""
        cfg = self.config
        batch, every = cfg.optimiser.batch, cfg.preview.figure_every
        due = every and done * batch // every > (done - 1) * batch // every
        if due or (done == cfg.optimiser.iters and every):
            figure = self._figure(loop)
            if figure is not None:
                self.figures.append(str(figure))
        return None

    def save(self, path: Path, *, periodic: bool, counters: dict[str, Any]) -> None:
        cfg = self.config
        save_checkpoint(
            path,
            self.model,
            ema=self.ema.model,
            optimizer=self.optimizer if periodic else None,
            pde=self.data.pde,
            normalisation=self.data.normalisation,
            resolution=self.data.resolution,
            training={**record(cfg), "world": self.context.world},
            counters=counters,
            extra={
                **cfg.extra,
                "data": {
                    "path": str(self.data.path),
                    "samples": len(self.data),
                    "seed": self.data.seed,
                    "split": self.data.split,
                },
            },
            overwrite=True,
        )

    def summary(self, loop: RunLoop) -> dict[str, Any]:
        cfg = self.config
        done = loop.iteration - int(self.start_counters["iteration"])
        checkpoint = loop.out / rundir.FINAL
        if not checkpoint.is_dir() or loop.iteration < cfg.optimiser.iters:
            checkpoint = rundir.latest_checkpoint(self.out) or checkpoint
        return {
            "checkpoint": str(checkpoint),
            "samples_per_s": done * cfg.optimiser.batch / loop.counters["seconds"]
            if done and loop.counters["seconds"]
            else 0.0,
            "parameters": self.parameters,
            "preset": cfg.network.preset,
            "batch": cfg.optimiser.batch,
            "lr": cfg.optimiser.lr,
            "device": str(self.device),
            "threads": torch.get_num_threads(),
            "world_size": self.context.world,
            "rank": self.context.rank,
            "figures": self.figures,
            "weights_sha256": {
                "model": weights_fingerprint(self.model),
                "ema": weights_fingerprint(self.ema.model),
            },
        }

    # ------------------------------------------------------------------------- outputs
    def _figure(self, loop: RunLoop) -> Path | None:
        cfg = self.config
        wanted = cfg.run.figures and cfg.preview.figure_every and cfg.preview.figure_samples
        if not (self.context.is_main and wanted):
            return None
        shape = (len(self.data.channels), self.data.resolution, self.data.resolution)
        noise = initial_noise(cfg.preview.figure_samples, shape, cfg.optimiser.seed)
        fields, residual = preview_samples(
            self.ema.model,
            noise.to(device=self.device, dtype=torch.float32),
            pde=self.data.pde,
            normalisation=self.data.normalisation,
            steps=cfg.preview.figure_steps,
        )
        iteration = loop.iteration
        path = save_preview(
            self.out / rundir.FIGURES / f"samples-{rundir.periodic_name(iteration)}",
            fields,
            residual,
            channels=self.data.channels,
            title=f"EMA samples at iteration {iteration} ({loop.counters['samples']} samples, "
            f"{cfg.preview.figure_steps} Heun steps)",
            figure_format=str(cfg.run.figure_format),
        )
        loop.message(f"figure {path}")
        return path

    def close(self) -> None:
        """Release the data file and the batch thread."""
        self.batches.close()
        self.data.close()


def prepare(config: TrainConfig) -> TrainConfig:
    """The run's resolved configuration (:func:`pirf.training.config.resolve`), a resumed
    run's stored settings first. Checks the given settings before anything is read."""
    check_arguments(config)
    stored = None
    if config.run.resume:
        latest = rundir.latest_checkpoint(Path(config.run.out))
        if latest is not None:
            stored = stored_settings(read_checkpoint_info(latest).training)
    return resolve(config, stored)


def train(config: TrainConfig) -> dict[str, Any]:
    """Train (or resume) a base model; returns the summary (also written to ``summary.json``).

    Resuming a run that is already complete changes nothing: the stored summary comes
    back with ``"already_complete": True`` and a ``"message"``.

    Under ``torchrun`` every process calls this; rank 0 writes the files. The caller's
    random-number state is left as it was.
    """
    requested_iters = config.optimiser.iters
    check_arguments(config)
    if config.run.resume:
        finished = rundir.finished_run(Path(config.run.out), requested_iters)
        if finished is not None:
            return finished.result()
    config = prepare(config)
    check_training_run(config)
    context = distributed.setup(config.run.device)
    try:
        devices = [context.device.index or 0] if context.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            task = EDMTraining(config, context)
            try:
                loop = RunLoop(
                    task,
                    LoopSettings.of(config, task.out, main=context.is_main),
                    task.start_counters,
                )
                summary = loop.run().to_json()
                if context.is_main:
                    (task.out / rundir.SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
                return summary
            finally:
                task.close()
    finally:
        distributed.shutdown(context)


__all__ = ["EDMLossModule", "EDMTraining", "batch_loss", "prepare", "train", "weights_fingerprint"]
