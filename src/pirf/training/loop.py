"""The training loop: EDM loss, Adam with warm-up and cosine decay, EMA, clipping, DDP.

One step of ``train``:

1. set the learning rate of the step (a pure function of the iteration);
2. take this process's share of the step's samples (normalised fields) and their noise
   levels and noise fields, all keyed by ``(seed, sample position)``;
3. re-seed the global generator from ``(seed, iteration, rank)`` (dropout), compute the
   mean EDM loss and back-propagate (DDP averages the gradients over processes);
4. average the loss over processes; stop with a :class:`PirfError` if the loss or the
   gradient norm is not finite (the last periodic checkpoint stays the newest);
5. clip the gradient norm, take the Adam step, update the EMA;
6. log, preview and checkpoint on the main process.

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
from pirf.training import distributed, rundir
from pirf.training.batches import BatchSource
from pirf.training.config import (
    TrainConfig,
    resolve_config,
    trajectory_record,
    validate_arguments,
)
from pirf.training.draws import Draws
from pirf.training.ema import EMA
from pirf.training.figures import preview_samples, save_preview
from pirf.training.metrics_log import MetricsLog
from pirf.training.progress import TrainingProgress
from pirf.training.schedule import learning_rate

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


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


class _Run:
    """State of one invocation of :func:`train` on one process."""

    def __init__(self, config: TrainConfig, context: distributed.DistContext) -> None:
        self.context = context
        self.device = context.device
        self.data = pirf.data.load(config.data)
        self.out = Path(config.out)
        resume_from = rundir.prepare(self.out, resume=config.resume, create=context.is_main)
        distributed.barrier(context)
        info = read_checkpoint_info(resume_from) if resume_from is not None else None
        self.config = resolve_config(config, info.training if info is not None else None)
        cfg = self.config
        if cfg.batch % context.world:
            raise PirfError(
                f"{option('batch')} {cfg.batch} is not divisible by the {context.world} processes"
            )
        if info is not None:
            _check_resume(info, self.data)
            if cfg.iters < info.counters.get("iteration", 0):
                raise PirfError(
                    f"{option('iters')} {cfg.iters} is below the {info.counters['iteration']} "
                    "iterations the run has already done"
                )
        self.draws = Draws(
            cfg.seed,
            n_data=len(self.data),
            batch=cfg.batch,
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
        start = int(self.counters["iteration"])
        stop = min(cfg.iters, cfg.stop_at) if cfg.stop_at is not None else cfg.iters
        self.end = max(stop, start)  # the iteration this invocation stops at

    # ------------------------------------------------------------------------- set-up
    def _build(self, resume_from: Path | None) -> None:
        cfg = self.config
        if resume_from is None:
            torch.manual_seed(self.draws.init_seed())
            model = preset_denoiser(
                cfg.preset,
                channels=len(self.data.channels),
                resolution=self.data.resolution,
                periodic=tuple(self.data.pde.grid.periodic),
                bf16=cfg.bf16,
                **{
                    "position_harmonics": self.data.pde.position_harmonics(),
                    **cfg.model_overrides,
                },
            )
            self.counters: dict[str, Any] = {"iteration": 0, "samples": 0, "seconds": 0.0}
            ema_state = optimizer_state = None
        else:
            checkpoint = load_checkpoint(resume_from, bf16=cfg.bf16)
            model = checkpoint.model
            if checkpoint.ema is None or checkpoint.optimizer_state is None:
                raise PirfError(f"{resume_from} has no EMA or optimizer state; cannot resume")
            ema_state = checkpoint.ema.state_dict()
            optimizer_state = checkpoint.optimizer_state
            self.counters = dict(checkpoint.info.counters)
        self.channels_last = cfg.channels_last and self.device.type == "cuda"
        memory_format = torch.channels_last if self.channels_last else torch.preserve_format
        self.model = model.to(self.device, memory_format=memory_format).train()
        self.ema = EMA(self.model, halflife=cfg.ema_halflife, rampup=cfg.ema_rampup)
        if ema_state is not None:
            self.ema.model.load_state_dict(ema_state)
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=cfg.lr, betas=ADAM_BETAS, eps=ADAM_EPS
        )
        if optimizer_state is not None:
            self.optimizer.load_state_dict(optimizer_state)
        loss_module: nn.Module = EDMLossModule(self.model)
        if self.context.distributed:
            device_ids = [self.device] if self.device.type == "cuda" else None
            loss_module = DistributedDataParallel(loss_module, device_ids=device_ids)
        self.loss_module = loss_module
        self.parameters = sum(p.numel() for p in self.model.parameters())

    # ------------------------------------------------------------------------- one step
    def _step(self, iteration: int, lr: float) -> tuple[float, float]:
        """One optimizer step; returns the (process-averaged) loss and the gradient norm."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x, sigma, noise = self.batches.get(iteration, prefetch_next=iteration + 1 < self.end)
        torch.manual_seed(self.draws.dropout_seed(iteration))
        loss = batch_loss(self.loss_module, x, sigma, noise)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        limit = self.config.grad_clip if self.config.grad_clip > 0 else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), limit))
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
        samples = (iteration + 1) * self.config.batch
        self.ema.update(self.model, samples_seen=samples, batch=self.config.batch)
        return loss_value, grad_norm

    # ------------------------------------------------------------------------- outputs
    def _save_periodic(self, progress: TrainingProgress) -> Path:
        path = self.out / rundir.PERIODIC / rundir.periodic_name(self.counters["iteration"])
        if self.context.is_main:
            self._save(path, optimizer=True)
            rundir.prune(self.out, self.config.keep_checkpoints)
            progress.message(f"checkpoint {path}")
        return path

    def _save(self, path: Path, *, optimizer: bool) -> None:
        save_checkpoint(
            path,
            self.model,
            ema=self.ema.model,
            optimizer=self.optimizer if optimizer else None,
            pde=self.data.pde,
            normalisation=self.data.normalisation,
            resolution=self.data.resolution,
            training={**trajectory_record(self.config), "world": self.context.world},
            counters=self.counters,
            extra={
                **self.config.extra,
                "data": {
                    "path": str(self.data.path),
                    "samples": len(self.data),
                    "seed": self.data.seed,
                    "split": self.data.split,
                },
            },
            overwrite=True,
        )

    def _figure(self, progress: TrainingProgress) -> Path | None:
        cfg = self.config
        if not (self.context.is_main and cfg.figure_every and cfg.figure_samples):
            return None
        shape = (len(self.data.channels), self.data.resolution, self.data.resolution)
        noise = initial_noise(cfg.figure_samples, shape, cfg.seed)
        fields, residual = preview_samples(
            self.ema.model,
            noise.to(device=self.device, dtype=torch.float32),
            pde=self.data.pde,
            normalisation=self.data.normalisation,
            steps=cfg.figure_steps,
        )
        iteration = self.counters["iteration"]
        path = self.out / rundir.FIGURES / f"samples-{rundir.periodic_name(iteration)}.png"
        save_preview(
            path,
            fields,
            residual,
            channels=self.data.channels,
            title=f"EMA samples at iteration {iteration} ({self.counters['samples']} samples, "
            f"{cfg.figure_steps} Heun steps)",
        )
        progress.message(f"figure {path}")
        return path

    # ------------------------------------------------------------------------- the loop
    def run(self) -> dict[str, Any]:
        cfg = self.config
        start, end = int(self.counters["iteration"]), self.end
        metrics = None
        if self.context.is_main:
            metrics = MetricsLog(
                self.out / rundir.METRICS, resume_from=start if cfg.resume else None
            )
        figures: list[str] = []
        logged: tuple[float, int] | None = None  # the last metrics line: mean loss, iterations
        interval: list[tuple[float, float, float]] = []  # loss, gradient norm, step seconds
        seconds_before = float(self.counters.get("seconds", 0.0))
        began = time.perf_counter()
        lr: float | None = None
        with TrainingProgress(
            enabled=cfg.progress and self.context.is_main,
            start=start,
            total=cfg.iters,
            label="train",
        ) as progress:
            for iteration in range(start, end):
                lr = learning_rate(
                    iteration,
                    base=cfg.lr,
                    warmup=cfg.warmup,
                    total=cfg.iters,
                    final_ratio=cfg.lr_final_ratio,
                )
                step_began = time.perf_counter()
                loss, grad_norm = self._step(iteration, lr)
                now = time.perf_counter()
                interval.append((loss, grad_norm, now - step_began))
                done = iteration + 1
                self.counters = {
                    "iteration": done,
                    "samples": done * cfg.batch,
                    "seconds": seconds_before + now - began,
                }
                speed = len(interval) * cfg.batch / max(sum(v[2] for v in interval), 1e-9)
                interval_loss = sum(v[0] for v in interval) / len(interval)
                progress.update(done, interval_loss)
                if done % cfg.log_every == 0 or done == end:
                    logged = (interval_loss, len(interval))
                    if metrics is not None:
                        metrics.append(
                            {
                                "iteration": done,
                                "samples": done * cfg.batch,
                                "loss": interval_loss,
                                "lr": lr,
                                "grad_norm": sum(v[1] for v in interval) / len(interval),
                                "samples_per_s": speed,
                                "seconds": self.counters["seconds"],
                            }
                        )
                    interval = []
                figure_due = cfg.figure_every and (
                    done * cfg.batch // cfg.figure_every > iteration * cfg.batch // cfg.figure_every
                )
                if figure_due or (done == cfg.iters and cfg.figure_every):
                    figure = self._figure(progress)
                    if figure is not None:
                        figures.append(str(figure))
                if done % cfg.checkpoint_every == 0 or done == end:
                    self._save_periodic(progress)
            completed = self.counters["iteration"] >= cfg.iters
            final = self.out / rundir.FINAL
            if completed and self.context.is_main:
                self._save(final, optimizer=False)
                progress.message(f"final checkpoint {final}")
        elapsed = time.perf_counter() - began
        checkpoint = final if completed else rundir.latest_checkpoint(self.out)
        summary = {
            "out": str(self.out),
            "checkpoint": str(checkpoint),
            "completed": completed,
            "start_iteration": start,
            "iterations": int(self.counters["iteration"]),
            "target_iterations": cfg.iters,
            "final_loss": None if logged is None else logged[0],
            "final_loss_iterations": None if logged is None else logged[1],
            "final_lr": lr,
            "seconds": elapsed,
            "total_seconds": seconds_before + elapsed,
            "samples_per_s": (end - start) * cfg.batch / elapsed if end > start else 0.0,
            "parameters": self.parameters,
            "preset": cfg.preset,
            "batch": cfg.batch,
            "lr": cfg.lr,
            "device": str(self.device),
            "threads": torch.get_num_threads(),
            "world_size": self.context.world,
            "rank": self.context.rank,
            "metrics": str(self.out / rundir.METRICS),
            "figures": figures,
            "weights_sha256": {
                "model": weights_fingerprint(self.model),
                "ema": weights_fingerprint(self.ema.model),
            },
        }
        if self.context.is_main:
            (self.out / rundir.SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
        return summary

    def close(self) -> None:
        """Release the data file and the batch thread."""
        self.batches.close()
        self.data.close()


def train(config: TrainConfig) -> dict[str, Any]:
    """Train (or resume) a base model; returns the summary (also written to ``summary.json``).

    Resuming a run that is already complete changes nothing: the stored summary comes
    back with ``"already_complete": True`` and a ``"message"``.

    Under ``torchrun`` every process calls this; rank 0 writes the files. The caller's
    random-number state is left as it was.
    """
    check_training_run(config)
    validate_arguments(config)
    if config.resume:
        finished = rundir.finished_run(Path(config.out), config.iters)
        if finished is not None:
            return finished.result()
    context = distributed.setup(config.device)
    try:
        devices = [context.device.index or 0] if context.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            run = _Run(config, context)
            try:
                return run.run()
            finally:
                run.close()
    finally:
        distributed.shutdown(context)


__all__ = ["EDMLossModule", "batch_loss", "train", "weights_fingerprint"]
