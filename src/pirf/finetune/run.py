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
from pathlib import Path
from typing import Any

import torch

import pirf.data
import pirf.pdes
from pirf.checks import check_finetune_run
from pirf.errors import PirfError, option
from pirf.evaluation import PreparedReference, prepare_reference
from pirf.finetune.config import (
    FinetuneConfig,
    check_paths,
    record,
    resolve,
    stored_settings,
)
from pirf.finetune.figures import save_curves
from pirf.finetune.monitor import (
    FIDELITY_METRIC,
    DriftGuard,
    Evaluation,
    FidelityGuard,
    evaluate_model,
)
from pirf.finetune.trainer import PIRFTrainer
from pirf.models import (
    load_checkpoint,
    load_model,
    read_checkpoint_info,
    resolve_checkpoint,
    save_checkpoint,
)
from pirf.models.checkpoint import Checkpoint
from pirf.sampling import Precision, generate
from pirf.settings import with_values
from pirf.training import distributed, rundir
from pirf.training.figures import save_preview
from pirf.training.metrics_log import read_metrics
from pirf.training.runloop import LoopSettings, RunLoop
from pirf.training.runloop import StepStats as LoopStats

BEST = "best"
REFERENCE_LIMIT = 1024
"""At most this many reference samples enter the fidelity metrics (the first ones)."""
FIGURE_SAMPLES = 4


def _reference_path(config: FinetuneConfig, base: Checkpoint) -> Path | None:
    if config.evaluation.reference is not None:
        return Path(config.evaluation.reference)
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


class PIRFRun:
    """The fine-tuning task of the run loop (:class:`pirf.training.runloop.Task`): PIRF
    steps of :class:`PIRFTrainer`, fixed-seed evaluations that keep ``best/`` and guard
    the run, and checkpoints in the base model's format."""

    def __init__(self, config: FinetuneConfig, context: distributed.DistContext) -> None:
        self.context = context
        self.device = context.device
        self.out = Path(config.run.out)
        resume_from = rundir.prepare(self.out, resume=config.run.resume, create=context.is_main)
        if context.is_main:
            rundir.write_config(self.out, config, "finetune")
        distributed.barrier(context)
        self.resumed: Checkpoint | None = None
        if resume_from is not None:
            done = read_checkpoint_info(resume_from).counters.get("iteration", 0)
            if config.optimiser.iters < done:
                raise PirfError(
                    f"{option('iters')} {config.optimiser.iters} is below the {done} "
                    "iterations done"
                )
            self.resumed = load_checkpoint(
                resume_from,
                device=self.device,
                bf16=config.trajectory.bf16,
                allow_import=bool(config.allow_import),
            )
        self.config = config
        base = load_model(
            config.ckpt,
            device=self.device,
            bf16=config.trajectory.bf16,
            float32=True,
            allow_import=bool(config.allow_import),
        )
        self.base, start_model = base.checkpoint, base.denoiser
        self.pde, self.normalisation, self.shape = base.pde, base.normalisation, base.shape
        self.base_sha = base.sha256
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
            bf16=config.trajectory.bf16 and self.device.type == "cuda",
            fp32_steps=config.trajectory.fp32_steps,
        )
        self.start_counters: dict[str, Any] = {"iteration": 0, "seconds": 0.0}
        self.state: dict[str, Any] = {"base": None, "best": None, "stopped": None}
        self.drift = DriftGuard(config.evaluation.drift_guard or None)
        self.totals = {"nonfinite_samples": 0, "nonfinite_gradients": 0, "skipped": 0}
        self.window_starts = 0
        self.last_eval: Evaluation | None = None
        self.guard_reason: str | None = None
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
        self.start_counters = dict(checkpoint.info.counters)
        self.window_starts = int(self.start_counters.get("window_starts", 0))
        self.state = dict(recorded.get("state", self.state))
        self.drift.load(recorded.get("drift", {}))

    def _save(self, path: Path, *, periodic: bool, counters: dict[str, Any]) -> None:
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
            training=record(self.config),
            counters=counters,
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
    def _evaluate(self, model: torch.nn.Module, loop: RunLoop) -> Evaluation:
        """Evaluate ``model`` at the fixed seeds, saying so above the progress bar."""
        cfg = self.config
        budgets = ", ".join(map(str, cfg.evaluation.eval_steps))
        loop.message(f"evaluating: {cfg.evaluation.eval_n} samples at {budgets} steps")
        return evaluate_model(
            model,
            self.pde,
            self.normalisation,
            self.shape,
            steps=cfg.evaluation.eval_steps,
            n=cfg.evaluation.eval_n,
            seed=cfg.evaluation.eval_seed,
            device=self.device,
            precision=self.eval_precision,
            reference=self.reference,
            progress=loop.message,
        )

    def _base_evaluation(self, loop: RunLoop) -> None:
        """Evaluate the base model; its residual loss at the training budget is the scale."""
        cfg = self.config
        evaluation = self._evaluate(self.trainer.ema, loop)
        samples = evaluation.samples
        if cfg.trajectory.random_steps or cfg.trajectory.steps != cfg.evaluation.eval_steps[0]:
            samples = generate(
                self.trainer.ema,
                cfg.evaluation.eval_n,
                self.shape,
                cfg.evaluation.eval_seed,
                steps=cfg.trajectory.steps,
                device=self.device,
                precision=self.eval_precision,
            ).samples
        scales = self.trainer.calibrate(samples) if cfg.objective.normalise_reward else None
        self.state["base"] = {**evaluation.record(), "reward_scales": scales}
        # The base model is the first candidate for best/: a run that never improves on it
        # leaves the base weights there, never a worse fine-tuned model.
        self.state["best"] = {
            "iteration": 0,
            "residual_mse": evaluation.residual[cfg.evaluation.eval_steps[0]],
            FIDELITY_METRIC: evaluation.fidelity.get(FIDELITY_METRIC),
        }
        if self.context.is_main:
            self._save(self.out / BEST, periodic=False, counters=loop.counters)
        loop.log({"kind": "eval", "iteration": 0, **evaluation.record()})

    def _after_evaluation(
        self, evaluation: Evaluation, iteration: int, loop: RunLoop
    ) -> str | None:
        """Log, keep the best checkpoint, draw the samples; returns a guard's reason to stop."""
        cfg = self.config
        base = self.state["base"]
        budget = str(cfg.evaluation.eval_steps[0])
        value = evaluation.residual[cfg.evaluation.eval_steps[0]]
        fidelity = evaluation.fidelity.get(FIDELITY_METRIC)
        guard = FidelityGuard(cfg.evaluation.fidelity_band or None, base["fidelity"])
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
                self._save(self.out / BEST, periodic=False, counters=loop.counters)
        ratio = base["residual_mse"][budget] / value if value > 0 else math.inf
        relation = f"{ratio:.1f}x below" if ratio >= 1 else f"{1 / ratio:.1f}x above"
        message = f"eval @ {iteration}: residual {value:.4g} ({relation} base)"
        if fidelity is not None:
            base_value = guard.base[FIDELITY_METRIC]
            message += f", {FIDELITY_METRIC} {fidelity:.4g} (base {base_value:.4g})"
        diversity = evaluation.fidelity.get("diversity")
        if diversity is not None and guard.base.get("diversity") is not None:
            message += f", diversity {diversity:.3g} (base {guard.base['diversity']:.3g})"
        loop.message(message + (", best" if improved else ""))
        if cfg.run.figures and self.context.is_main:
            fields = self.normalisation.to_physical(evaluation.samples[:FIGURE_SAMPLES].double())
            fields = self.pde.snap(fields)
            save_preview(
                self.out / rundir.FIGURES / f"samples-{rundir.periodic_name(iteration)}",
                fields,
                self.pde.residual(fields),
                channels=tuple(self.pde.channels),
                title=f"PIRF iteration {iteration}: {cfg.evaluation.eval_steps[0]} Heun steps "
                f"(residual {value:.3g}, base {base['residual_mse'][budget]:.3g})",
                figure_format=str(cfg.run.figure_format),
            )
        return guard.check(evaluation.fidelity)

    # ------------------------------------------------------------------------- the task
    label = "finetune"

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.trainer.optimizer

    def begin(self, loop: RunLoop) -> None:
        """Evaluate the base model first: the reference point of the run."""
        loop.message("the base model first (the reference point of the run):")
        self._base_evaluation(loop)

    def step(self, iteration: int, lr: float) -> LoopStats:
        stats = self.trainer.step(iteration, lr=lr)
        self.totals["nonfinite_samples"] += stats.nonfinite_samples
        self.totals["nonfinite_gradients"] += stats.nonfinite_gradients
        self.totals["skipped"] += int(stats.skipped)
        self.window_starts += stats.starts * self.context.world
        return LoopStats(
            stats.loss,
            stats.grad_norm,
            stats.seconds,
            values={
                "reward_loss": stats.reward_loss,
                "regulariser": stats.regulariser,
                "pool_age": stats.pool_age,
            },
            counts={
                "nonfinite_samples": stats.nonfinite_samples,
                "nonfinite_gradients": stats.nonfinite_gradients,
                "skipped": int(stats.skipped),
                "window_starts": stats.starts * self.context.world,
            },
            lists={"steps": stats.steps},
        )

    def counters(self, done: int) -> dict[str, Any]:
        return {
            "trajectories": done * self.config.optimiser.batch,
            "window_starts": self.window_starts,
        }

    def guard(self, stats: LoopStats) -> str | None:
        """The drift guard on the smoothed reward loss."""
        self.guard_reason = self.drift.update(stats.values["reward_loss"])
        return self.guard_reason

    def after_step(self, loop: RunLoop, done: int, stopping: bool) -> str | None:
        """Evaluate every ``eval_every`` iterations, at the end of the run and when it
        stops: an invocation cut short by ``stop_at`` evaluates only where the
        uninterrupted run would, so resuming changes no choice of the best checkpoint."""
        cfg = self.config
        due = cfg.evaluation.eval_every and done % cfg.evaluation.eval_every == 0
        if not (due or done == cfg.optimiser.iters or stopping):
            return None
        self.last_eval = self._evaluate(self.trainer.ema, loop)
        loop.log({"kind": "eval", "iteration": done, **self.last_eval.record()})
        reason = self._after_evaluation(self.last_eval, done, loop)
        stopped = self.guard_reason or reason
        if stopped is not None:
            self.state["stopped"] = {"iteration": done, "reason": stopped}
        return reason

    def save(self, path: Path, *, periodic: bool, counters: dict[str, Any]) -> None:
        self._save(path, periodic=periodic, counters=counters)

    def summary(self, loop: RunLoop) -> dict[str, Any]:
        cfg = self.config
        base = self.state["base"]
        last = self.last_eval
        final = last.record() if last is not None else None
        budget = str(cfg.evaluation.eval_steps[0])
        ratios = {}
        if final is not None:
            for key, value in final["residual_mse"].items():
                before = base["residual_mse"].get(key)
                ratios[key] = before / value if before and value else None
        median = loop.summary_median()
        best = self.state["best"]
        return {
            "best_checkpoint": str(self.out / BEST) if best is not None else None,
            "base_checkpoint": str(self.config.ckpt),
            "trajectories_per_s": cfg.optimiser.batch / median if median else None,
            "window_starts": int(self.window_starts),
            **_peak_memory(self.device),
            "trainable": cfg.layers.trainable,
            "trainable_parameters": self.trainer.parameter_count,
            "parameters": sum(p.numel() for p in self.plain.parameters()),
            "mode": cfg.trajectory.mode,
            "truncation": cfg.trajectory.truncation,
            "steps": cfg.trajectory.steps,
            "reward": cfg.objective.reward,
            "reward_scales": None if self.trainer.reward is None else self.trainer.reward.scales,
            "eval_budget": int(budget),
            "base": base,
            "final": final,
            "best": best,
            "residual_ratio": ratios,
            "fidelity_metric": FIDELITY_METRIC,
            "reference": None if self.reference_path is None else str(self.reference_path),
            **self.totals,
            "device": str(self.device),
            "threads": torch.get_num_threads(),
            "world_size": self.context.world,
            "rank": self.context.rank,
            "config": record(cfg),
        }


def prepare(config: FinetuneConfig) -> FinetuneConfig:
    """The run's resolved configuration (:func:`pirf.finetune.config.resolve`): a run
    directory as ``ckpt`` stands for its best or final checkpoint
    (:func:`pirf.models.resolve_checkpoint`), the base checkpoint's PDE picks the recipe,
    and a resumed run's stored settings come before it. Reads only the checkpoints' JSON;
    checks every setting and path first."""
    check_paths(config)
    ckpt, _ = resolve_checkpoint(config.ckpt)
    config = with_values(config, {"ckpt": ckpt})
    pde = read_checkpoint_info(ckpt).pde_name
    stored = None
    if config.run.resume:
        latest = rundir.latest_checkpoint(Path(config.run.out))
        if latest is not None:
            stored = stored_settings(read_checkpoint_info(latest).training)
    return resolve(config, pde=pde, stored=stored)


def finetune(config: FinetuneConfig) -> dict[str, Any]:
    """PIRF fine-tune a base checkpoint (or resume a run); returns the summary (also in
    ``OUT/summary.json``). Under ``torchrun`` every process calls it; rank 0 writes files.
    The caller's random-number state is left as it was. Resuming a run that is already
    complete changes nothing: the stored summary comes back with ``"already_complete":
    True`` and a ``"message"``."""
    requested_iters = config.optimiser.iters
    check_paths(config)
    if config.run.resume:
        finished = rundir.finished_run(Path(config.run.out), requested_iters)
        if finished is not None:
            return finished.result()
    config = prepare(config)
    check_finetune_run(config)
    context = distributed.setup(config.run.device)
    try:
        devices = [context.device.index or 0] if context.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            task = PIRFRun(config, context)
            loop = RunLoop(
                task,
                LoopSettings.of(config, task.out, main=context.is_main),
                task.start_counters,
            )
            summary = loop.run(fresh=lambda: task.state["base"] is None).to_json()
            if context.is_main:
                if config.run.figures:
                    summary["figures"] = save_curves(
                        task.out / rundir.FIGURES,
                        read_metrics(task.out / rundir.METRICS),
                        summary,
                        figure_format=str(config.run.figure_format),
                    )
                (task.out / rundir.SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
            return summary
    finally:
        distributed.shutdown(context)


__all__ = ["BEST", "PIRFRun", "finetune", "prepare"]
