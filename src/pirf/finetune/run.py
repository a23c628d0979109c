"""``finetune``: a PIRF run from a base checkpoint to a fine-tuned checkpoint on disk.

Run directory::

    OUT/
      checkpoint/              the last weights (same format as a base model's: pirf sample
                               and pirf evaluate read it unchanged)
      best/                    the evaluation with the lowest residual inside the fidelity
                               band (chosen on the evaluation seeds; the base model's
                               weights until a fine-tuned evaluation beats it)
      checkpoints/iter-...     periodic checkpoints with Adam's state; --resume continues
      metrics.jsonl            one line per log interval ("kind": "train") and per
                               evaluation ("kind": "eval")
      figures/                 samples beside residual maps at each evaluation; curves
      summary.json             the final summary

The starting point is the base checkpoint's EMA weights. Before the first step the base
model is evaluated (the reference point of every guard and ratio) and its residual loss
at the training budget becomes the reward's scale.
"""

from __future__ import annotations

import copy
import json
import math
import resource
import time
from pathlib import Path
from typing import Any

import torch

import pirf.data
import pirf.pdes
from pirf.checks import check_finetune_run
from pirf.errors import PirfError, option
from pirf.evaluation import PreparedReference, prepare_reference
from pirf.finetune.config import FinetuneConfig, check_resume, from_stored, validate
from pirf.finetune.figures import save_curves
from pirf.finetune.monitor import (
    FIDELITY_METRIC,
    DriftGuard,
    Evaluation,
    FidelityGuard,
    evaluate_model,
)
from pirf.finetune.trainer import PIRFTrainer, StepStats
from pirf.models import EDMDenoiser, load_checkpoint, read_checkpoint_info, save_checkpoint
from pirf.models.checkpoint import Checkpoint, file_sha256
from pirf.sampling import Precision, generate
from pirf.training import distributed, rundir
from pirf.training.figures import save_preview
from pirf.training.metrics_log import MetricsLog, read_metrics
from pirf.training.progress import TrainingProgress

BEST = "best"
REFERENCE_LIMIT = 1024
"""At most this many reference samples enter the fidelity metrics (the first ones)."""
FIGURE_SAMPLES = 4


def _base_model(config: FinetuneConfig, device: torch.device) -> tuple[Checkpoint, EDMDenoiser]:
    base = load_checkpoint(config.ckpt, device=device, optimizer=False, bf16=config.bf16)
    info = base.info
    if info.pde is None or info.normalisation is None or info.resolution is None:
        raise PirfError(
            f"{config.ckpt}: the checkpoint lacks its PDE, normalisation or resolution; "
            "make it with pirf train (or save_checkpoint with pde, normalisation, resolution)"
        )
    start = base.ema if base.ema is not None else base.model
    return base, start.float()


def _reference_path(config: FinetuneConfig, base: Checkpoint) -> Path | None:
    if config.reference is not None:
        return Path(config.reference)
    recorded = base.info.extra.get("data", {}).get("path")
    return Path(recorded) if recorded and Path(recorded).is_file() else None


def _prepare_reference(
    path: Path | None, pde: pirf.pdes.PDE, base: Checkpoint, device: torch.device
) -> PreparedReference | None:
    if path is None:
        return None
    data = pirf.data.load(path)
    try:
        if data.pde.name != pde.name or list(data.channels) != list(pde.channels):
            raise PirfError(
                f"reference {path} is '{data.pde.name}' data; the model is for '{pde.name}'"
            )
        if tuple(data.shape[-2:]) != tuple(base.info.resolution or ()):
            raise PirfError(f"reference {path} has another resolution than the model")
        fields = data.fields()[:REFERENCE_LIMIT].to(torch.float64)
        return prepare_reference(pde, fields, data.normalisation, device=device)
    finally:
        data.close()


def _peak_memory(device: torch.device) -> dict[str, Any]:
    if device.type == "cuda":
        return {
            "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30,
            "peak_memory_kind": "cuda max_memory_allocated",
        }
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"peak_memory_gib": rss_kib / 2**20, "peak_memory_kind": "process peak RSS"}


class _Run:
    """State of one invocation of :func:`finetune` on one process."""

    def __init__(self, config: FinetuneConfig, context: distributed.DistContext) -> None:
        self.context = context
        self.device = context.device
        self.out = Path(config.out)
        resume_from = rundir.prepare(self.out, resume=config.resume, create=context.is_main)
        distributed.barrier(context)
        self.resumed: Checkpoint | None = None
        if resume_from is not None:
            stored = read_checkpoint_info(resume_from).training
            check_resume(config, stored)
            config = from_stored(config, stored)
            validate(config)
            done = read_checkpoint_info(resume_from).counters.get("iteration", 0)
            if config.iters < done:
                raise PirfError(
                    f"{option('iters')} {config.iters} is below the {done} iterations done"
                )
            self.resumed = load_checkpoint(resume_from, device=self.device, bf16=config.bf16)
        self.config = config
        self.base, start_model = _base_model(config, self.device)
        info = self.base.info
        self.pde = pirf.pdes.from_metadata(info.pde, source=str(config.ckpt))
        self.normalisation = info.normalisation
        self.shape = (len(self.pde.channels), *info.resolution)
        self.base_sha = file_sha256(Path(config.ckpt) / "checkpoint.json")
        self.reference_path = _reference_path(config, self.base)
        self.reference = _prepare_reference(self.reference_path, self.pde, self.base, self.device)
        self.plain = copy.deepcopy(start_model).requires_grad_(False)
        self.trainer = PIRFTrainer(
            start_model,
            config,
            shape=self.shape,
            pde=self.pde,
            normalisation=self.normalisation,
            device=self.device,
            rank=context.rank,
            world=context.world,
        )
        self.eval_precision = Precision(
            bf16=config.bf16 and self.device.type == "cuda", fp32_steps=config.fp32_steps
        )
        self.counters: dict[str, Any] = {"iteration": 0, "trajectories": 0, "seconds": 0.0}
        self.state: dict[str, Any] = {"base": None, "best": None, "stopped": None}
        self.drift = DriftGuard(config.drift_guard)
        if self.resumed is not None:
            self._restore(self.resumed)

    # ------------------------------------------------------------------------- state
    def _restore(self, checkpoint: Checkpoint) -> None:
        if checkpoint.ema is None or checkpoint.optimizer_state is None:
            raise PirfError(f"{checkpoint.path} has no EMA or optimizer state; cannot resume")
        recorded = checkpoint.info.extra.get("finetune", {})
        if recorded.get("base_sha256") != self.base_sha:
            raise PirfError(
                f"{option('resume', True)}: {self.config.ckpt} is not the base checkpoint the run "
                "started from"
            )
        weights = dict(checkpoint.model.named_parameters())
        ema = dict(checkpoint.ema.named_parameters())
        self.trainer.load_state(weights, ema, checkpoint.optimizer_state)
        self.counters = dict(checkpoint.info.counters)
        self.state = dict(recorded.get("state", self.state))
        self.drift.load(recorded.get("drift", {}))

    def _save(self, path: Path, *, periodic: bool) -> None:
        """A checkpoint in the base model's format: model = the fine-tuned weights (LoRA
        merged), ema = their EMA; periodic ones also hold Adam's state for ``--resume``."""
        with torch.no_grad():
            self.plain.load_state_dict(self.trainer.weights())
        save_checkpoint(
            path,
            self.plain,
            ema=self.trainer.ema,
            optimizer=self.trainer.extra_state() if periodic else None,
            pde=self.base.info.pde,
            normalisation=self.normalisation,
            resolution=self.base.info.resolution,
            training={**self.config.trajectory(), "iters": self.config.iters},
            counters=self.counters,
            extra={
                **self.base.info.extra,
                **self.config.extra,
                "finetune": {
                    "base": str(self.config.ckpt),
                    "base_sha256": self.base_sha,
                    "base_training": self.base.info.training,
                    "reference": None if self.reference_path is None else str(self.reference_path),
                    "state": self.state,
                    "drift": self.drift.state(),
                    "world": self.context.world,
                },
            },
            overwrite=True,
        )

    # ------------------------------------------------------------------------- evaluation
    def _evaluate(self, model: torch.nn.Module, progress: Any = None) -> Evaluation:
        """Evaluate ``model`` at the fixed seeds; ``progress`` (the bar) shows each budget."""
        cfg = self.config
        if progress is not None:
            progress.message(
                f"evaluating: {cfg.eval_n} samples at {', '.join(map(str, cfg.eval_steps))} steps"
            )
        return evaluate_model(
            model,
            self.pde,
            self.normalisation,
            self.shape,
            steps=cfg.eval_steps,
            n=cfg.eval_n,
            seed=cfg.eval_seed,
            device=self.device,
            precision=self.eval_precision,
            reference=self.reference,
            progress=None if progress is None else progress.message,
        )

    def _base_evaluation(self, metrics: MetricsLog | None, progress: Any = None) -> None:
        """Evaluate the base model; its residual loss at the training budget is the scale."""
        cfg = self.config
        evaluation = self._evaluate(self.trainer.ema, progress)
        samples = evaluation.samples
        if cfg.random_steps or cfg.sampler_steps != cfg.eval_steps[0]:
            samples = generate(
                self.trainer.ema,
                cfg.eval_n,
                self.shape,
                cfg.eval_seed,
                steps=cfg.sampler_steps,
                device=self.device,
                precision=self.eval_precision,
            ).samples
        scales = self.trainer.calibrate(samples) if cfg.normalise_reward else None
        self.state["base"] = {**evaluation.record(), "reward_scales": scales}
        # The base model is the first candidate for best/: a run that never improves on it
        # leaves the base weights there, never a worse fine-tuned model.
        self.state["best"] = {
            "iteration": 0,
            "residual_mse": evaluation.residual[cfg.eval_steps[0]],
            FIDELITY_METRIC: evaluation.fidelity.get(FIDELITY_METRIC),
        }
        if self.context.is_main:
            self._save(self.out / BEST, periodic=False)
        if metrics is not None:
            metrics.append({"kind": "eval", "iteration": 0, **evaluation.record()})

    def _after_evaluation(
        self, evaluation: Evaluation, iteration: int, progress: Any
    ) -> str | None:
        """Log, keep the best checkpoint, draw the samples; returns a guard's reason to stop."""
        cfg = self.config
        base = self.state["base"]
        budget = str(cfg.eval_steps[0])
        value = evaluation.residual[cfg.eval_steps[0]]
        fidelity = evaluation.fidelity.get(FIDELITY_METRIC)
        guard = FidelityGuard(cfg.fidelity_band, base["fidelity"])
        best = self.state["best"]
        improved = guard.inside(evaluation.fidelity) and (
            best is None or value < best["residual_mse"]
        )
        if improved:
            self.state["best"] = {
                "iteration": iteration,
                "residual_mse": value,
                FIDELITY_METRIC: fidelity,
            }
            if self.context.is_main:
                self._save(self.out / BEST, periodic=False)
        ratio = base["residual_mse"][budget] / value if value > 0 else math.inf
        relation = f"{ratio:.1f}x below" if ratio >= 1 else f"{1 / ratio:.1f}x above"
        message = f"eval @ {iteration}: residual {value:.4g} ({relation} base)"
        if fidelity is not None:
            base_value = guard.base[FIDELITY_METRIC]
            message += f", {FIDELITY_METRIC} {fidelity:.4g} (base {base_value:.4g})"
        diversity = evaluation.fidelity.get("diversity")
        if diversity is not None and guard.base.get("diversity") is not None:
            message += f", diversity {diversity:.3g} (base {guard.base['diversity']:.3g})"
        progress.message(message + (", best" if improved else ""))
        if cfg.figures and self.context.is_main:
            fields = self.normalisation.to_physical(evaluation.samples[:FIGURE_SAMPLES].double())
            fields = self.pde.snap(fields)
            save_preview(
                self.out / rundir.FIGURES / f"samples-{rundir.periodic_name(iteration)}.png",
                fields,
                self.pde.residual(fields),
                channels=tuple(self.pde.channels),
                title=f"PIRF iteration {iteration}: {cfg.eval_steps[0]} Heun steps "
                f"(residual {value:.3g}, base {base['residual_mse'][budget]:.3g})",
            )
        return guard.check(evaluation.fidelity)

    # ------------------------------------------------------------------------- the loop
    def _log(self, metrics: MetricsLog | None, interval: list[StepStats]) -> None:
        if metrics is None or not interval:
            return
        count = len(interval)
        metrics.append(
            {
                "kind": "train",
                "iteration": interval[-1].iteration,
                "loss": sum(s.loss for s in interval) / count,
                "reward_loss": sum(s.reward_loss for s in interval) / count,
                "regulariser": sum(s.regulariser for s in interval) / count,
                "grad_norm": sum(s.grad_norm for s in interval) / count,
                "lr": interval[-1].lr,
                "steps": [s.steps for s in interval],
                "nonfinite_samples": sum(s.nonfinite_samples for s in interval),
                "nonfinite_gradients": sum(s.nonfinite_gradients for s in interval),
                "skipped": sum(s.skipped for s in interval),
                "window_starts": sum(s.starts for s in interval) * self.context.world,
                "pool_age": interval[-1].pool_age,
                "seconds_per_iteration": sum(s.seconds for s in interval) / count,
                "seconds": self.counters["seconds"],
            }
        )

    def run(self) -> dict[str, Any]:
        cfg = self.config
        main = self.context.is_main
        start = int(self.counters["iteration"])
        end = min(cfg.iters, cfg.stop_at) if cfg.stop_at is not None else cfg.iters
        end = max(end, start)
        metrics = None
        if main:
            resume_from = start if cfg.resume else None
            metrics = MetricsLog(self.out / rundir.METRICS, resume_from=resume_from)
        began = time.perf_counter()
        seconds_before = float(self.counters.get("seconds", 0.0))
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        interval: list[StepStats] = []
        totals = {"nonfinite_samples": 0, "nonfinite_gradients": 0, "skipped": 0}
        step_seconds: list[float] = []
        stopped = self.state.get("stopped")
        last_eval: Evaluation | None = None
        with TrainingProgress(
            enabled=cfg.progress and main, start=start, total=cfg.iters, label="finetune"
        ) as bar:
            if self.state["base"] is None:
                bar.message("the base model first (the reference point of the run):")
                self._base_evaluation(metrics, bar)
                bar.restart()
            iteration = start
            while iteration < end and stopped is None:
                stats = self.trainer.step(iteration)
                iteration += 1
                interval.append(stats)
                step_seconds.append(stats.seconds)
                for key in totals:
                    totals[key] += int(getattr(stats, key))
                self.counters = {
                    "iteration": iteration,
                    "trajectories": iteration * cfg.batch,
                    "window_starts": self.counters.get("window_starts", 0)
                    + stats.starts * self.context.world,
                    "seconds": seconds_before + time.perf_counter() - began,
                }
                bar.update(iteration, sum(s.reward_loss for s in interval) / len(interval))
                stopped = self.drift.update(stats.reward_loss)
                if iteration % cfg.log_every == 0 or iteration == end or stopped:
                    self._log(metrics, interval)
                    interval = []
                due = cfg.eval_every and iteration % cfg.eval_every == 0
                # An invocation cut short by --stop-at evaluates only where the
                # uninterrupted run would, so resuming changes no choice of the best.
                if due or iteration == cfg.iters or stopped:
                    last_eval = self._evaluate(self.trainer.ema, bar)
                    if metrics is not None:
                        metrics.append(
                            {"kind": "eval", "iteration": iteration, **last_eval.record()}
                        )
                    reason = self._after_evaluation(last_eval, iteration, bar)
                    stopped = stopped or reason
                if stopped:
                    self.state["stopped"] = {"iteration": iteration, "reason": stopped}
                    bar.message(f"stopped: {stopped}")
                due = iteration % cfg.checkpoint_every == 0 or iteration == end or stopped
                if due and main:
                    path = self.out / rundir.PERIODIC / rundir.periodic_name(iteration)
                    self._save(path, periodic=True)
                    rundir.prune(self.out, cfg.keep_checkpoints)
            completed = iteration >= cfg.iters or stopped is not None
            if completed and main:
                self._save(self.out / rundir.FINAL, periodic=False)
        elapsed = time.perf_counter() - began
        self.counters["seconds"] = seconds_before + elapsed
        summary = self._summary(start, elapsed, completed, step_seconds, totals, last_eval)
        if main:
            if cfg.figures:
                summary["figures"] = save_curves(
                    self.out / rundir.FIGURES, read_metrics(self.out / rundir.METRICS), summary
                )
            (self.out / rundir.SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
        return summary

    def _summary(
        self,
        start: int,
        elapsed: float,
        completed: bool,
        step_seconds: list[float],
        totals: dict[str, int],
        last: Evaluation | None,
    ) -> dict[str, Any]:
        cfg = self.config
        base = self.state["base"]
        final = last.record() if last is not None else None
        budget = str(cfg.eval_steps[0])
        ratios = {}
        if final is not None:
            for key, value in final["residual_mse"].items():
                before = base["residual_mse"].get(key)
                ratios[key] = before / value if before and value else None
        median = sorted(step_seconds)[len(step_seconds) // 2] if step_seconds else None
        best = self.state["best"]
        return {
            "out": str(self.out),
            "checkpoint": str(self.out / rundir.FINAL) if completed else None,
            "best_checkpoint": str(self.out / BEST) if best is not None else None,
            "base_checkpoint": str(self.config.ckpt),
            "completed": completed,
            "stopped": self.state.get("stopped"),
            "start_iteration": start,
            "iterations": int(self.counters["iteration"]),
            "target_iterations": cfg.iters,
            "seconds": elapsed,
            "total_seconds": float(self.counters["seconds"]),
            "seconds_per_iteration": median,
            "trajectories_per_s": cfg.batch / median if median else None,
            "window_starts": int(self.counters.get("window_starts", 0)),
            **_peak_memory(self.device),
            "trainable": cfg.trainable,
            "trainable_parameters": self.trainer.parameter_count,
            "parameters": sum(p.numel() for p in self.plain.parameters()),
            "mode": cfg.mode,
            "truncation": cfg.truncation,
            "sampler_steps": cfg.sampler_steps,
            "reward": cfg.reward,
            "reward_scales": None if self.trainer.reward is None else self.trainer.reward.scales,
            "eval_budget": int(budget),
            "base": base,
            "final": final,
            "best": best,
            "residual_ratio": ratios,
            "fidelity_metric": FIDELITY_METRIC,
            "reference": None if self.reference_path is None else str(self.reference_path),
            **totals,
            "device": str(self.device),
            "threads": torch.get_num_threads(),
            "world_size": self.context.world,
            "rank": self.context.rank,
            "metrics": str(self.out / rundir.METRICS),
            "config": cfg.to_json(),
        }


def finetune(config: FinetuneConfig) -> dict[str, Any]:
    """PIRF fine-tune a base checkpoint (or resume a run); returns the summary (also in
    ``OUT/summary.json``). Under ``torchrun`` every process calls it; rank 0 writes files.
    The caller's random-number state is left as it was. Resuming a run that is already
    complete changes nothing: the stored summary comes back with ``"already_complete":
    True`` and a ``"message"``."""
    config = check_finetune_run(config)
    validate(config)
    if config.resume:
        given = config.given is None or "iters" in config.given
        finished = rundir.finished_run(Path(config.out), config.iters if given else None)
        if finished is not None:
            return finished.result()
    context = distributed.setup(config.device)
    try:
        devices = [context.device.index or 0] if context.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            return _Run(config, context).run()
    finally:
        distributed.shutdown(context)


__all__ = ["BEST", "finetune"]
