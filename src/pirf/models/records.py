"""What a run recorded about one of its checkpoints: data, recipes and measured quality.

A model card (:mod:`pirf.models.card`) states only what was recorded. This module gathers
it from the checkpoint's description (``training``, ``counters``, ``extra``) and, when the
checkpoint lies in the run directory of ``pirf train`` or ``pirf finetune``, from that
run's ``metrics.jsonl``. The evaluation reported is the one of the
exported weights (the evaluation at the checkpoint's own iteration), never another one;
when no such evaluation was recorded, :attr:`RunRecords.evaluation` is None and the card
says "not measured".

File paths are reduced to their names (:func:`public`): a published card should not show
the directories of the machine a model was made on.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pirf.models.checkpoint import CheckpointInfo

METRICS = "metrics.jsonl"
RUN_CHECKPOINTS = ("best", "checkpoint")
"""Names of the checkpoints a run directory holds (``best/`` and the final one)."""


@dataclass(frozen=True)
class Evaluation:
    """One recorded evaluation: residual MSE per sampler budget and the fidelity metrics."""

    iteration: int
    residual_mse: dict[str, float]
    """Sampler steps (as text, e.g. ``"20"``) -> mean residual MSE of the samples."""
    fidelity: dict[str, float]
    """``mmd`` and its data-vs-data floor ``mmd_floor``, ``spectrum_error``, ``diversity``..."""
    source: str
    """Where it was read: ``metrics.jsonl`` or the checkpoint's own record."""


@dataclass(frozen=True)
class RunRecords:
    """Everything recorded about a checkpoint that a model card can state."""

    finetuned: bool
    """Made by ``pirf finetune`` (its description holds the fine-tuning record)."""
    data: dict[str, Any]
    """The training data: ``path`` (a file name), ``samples``, ``seed``, ``split``."""
    training: dict[str, Any]
    """The settings of the run that trained the base model (``pirf train``)."""
    finetune: dict[str, Any] | None
    """The fine-tuning settings, or None for a model that was not fine-tuned."""
    counters: dict[str, Any]
    evaluation: Evaluation | None
    """The evaluation of these weights, or None if none was recorded."""
    base_evaluation: Evaluation | None
    """For a fine-tuned model: the base model's evaluation in the same run."""
    evaluation_settings: dict[str, Any]
    """How the run evaluated: ``eval_n``, ``eval_seed``, ``eval_steps``, ``reference``."""
    run_directory: Path | None
    base: str | None = None
    """For a fine-tuned model: its base checkpoint's name and SHA-256, as recorded."""


def public(value: Any) -> Any:
    """``value`` with every absolute file path replaced by its last component."""
    if isinstance(value, str) and os.path.isabs(value):
        return Path(value).name or value
    if isinstance(value, Mapping):
        return {key: public(item) for key, item in value.items()}
    if isinstance(value, list):
        return [public(item) for item in value]
    return value


def run_directory(checkpoint: Path) -> Path | None:
    """The run directory holding ``checkpoint`` as its ``best/`` or final checkpoint."""
    parent = checkpoint.absolute().parent
    if checkpoint.name in RUN_CHECKPOINTS and (parent / METRICS).is_file():
        return parent
    return None


def _evaluation(record: Mapping[str, Any], source: str) -> Evaluation | None:
    """An :class:`Evaluation` from an eval line or stored state; None if it holds no finite
    residual."""
    residual = record.get("residual_mse")
    if not isinstance(residual, Mapping):
        return None
    values = {str(k): float(v) for k, v in residual.items() if isinstance(v, (int, float))}
    values = {k: v for k, v in values.items() if math.isfinite(v)}
    if not values:
        return None
    fidelity = record.get("fidelity") or {}
    return Evaluation(
        iteration=int(record.get("iteration", 0)),
        residual_mse=values,
        fidelity={
            str(k): float(v)
            for k, v in fidelity.items()
            if isinstance(v, (int, float)) and math.isfinite(v)
        },
        source=source,
    )


def _metrics_evaluations(run: Path | None) -> dict[int, Evaluation]:
    """Iteration -> the last evaluation recorded at it in the run's ``metrics.jsonl``."""
    if run is None:
        return {}
    from pirf.training.metrics_log import read_metrics

    found: dict[int, Evaluation] = {}
    try:
        records = read_metrics(run / METRICS)
    except (OSError, UnicodeDecodeError):
        return {}
    for record in records:
        if record.get("kind") != "eval" or not isinstance(record.get("iteration"), int):
            continue
        evaluation = _evaluation(record, METRICS)
        if evaluation is not None:
            found[evaluation.iteration] = evaluation
    return found


def _stored_evaluations(state: Mapping[str, Any]) -> tuple[Evaluation | None, Evaluation | None]:
    """``(best, base)`` as a fine-tuned checkpoint stores them (no run directory needed):
    the best evaluation keeps only the first budget's residual and the MMD."""
    best, base = state.get("best"), state.get("base")
    base_eval = None
    if isinstance(base, Mapping):
        base_eval = _evaluation({"iteration": 0, **base}, "checkpoint")
    best_eval = None
    if isinstance(best, Mapping) and isinstance(best.get("residual_mse"), (int, float)):
        budget = next(iter(base_eval.residual_mse)) if base_eval else "first budget"
        fidelity = {"mmd": best["mmd"]} if isinstance(best.get("mmd"), (int, float)) else {}
        best_eval = _evaluation(
            {
                "iteration": best.get("iteration", 0),
                "residual_mse": {budget: best["residual_mse"]},
                "fidelity": fidelity,
            },
            "checkpoint",
        )
    return best_eval, base_eval


def read_records(info: CheckpointInfo, checkpoint: Path) -> RunRecords:
    """Gather what was recorded about the checkpoint at ``checkpoint`` (described by
    ``info``), reading its run directory's files when it lies in one."""
    extra = info.extra or {}
    tuning = extra.get("finetune") if isinstance(extra.get("finetune"), Mapping) else None
    run = run_directory(checkpoint)
    iteration = info.counters.get("iteration")
    evaluations = _metrics_evaluations(run)
    evaluation = evaluations.get(iteration) if isinstance(iteration, int) else None
    base_evaluation = evaluations.get(0) if tuning is not None else None
    settings: dict[str, Any] = {}
    if tuning is not None:
        stored_best, stored_base = _stored_evaluations(tuning.get("state") or {})
        if evaluation is None and stored_best is not None and stored_best.iteration == iteration:
            evaluation = stored_best
        if evaluation is None and iteration == 0 and stored_base is not None:
            evaluation = stored_base
        base_evaluation = base_evaluation or stored_base
        settings = {
            key: info.training.get(key)
            for key in ("eval_n", "eval_seed", "eval_steps", "fidelity_band")
            if info.training.get(key) is not None
        }
        reference = info.training.get("reference") or tuning.get("reference")
        if reference:
            settings["reference"] = reference
    training = tuning.get("base_training") if tuning is not None else info.training
    base = None
    if tuning is not None and tuning.get("base"):
        base = f"{public(tuning['base'])}"
        if tuning.get("base_sha256"):
            base += f" (SHA-256 of its description {tuning['base_sha256']})"
    return RunRecords(
        finetuned=tuning is not None,
        data=public(dict(extra.get("data") or {})),
        training=public(dict(training or {})),
        finetune=public(dict(info.training)) if tuning is not None else None,
        counters=dict(info.counters),
        evaluation=evaluation,
        base_evaluation=base_evaluation if tuning is not None else None,
        evaluation_settings=public(settings),
        run_directory=run,
        base=base,
    )


__all__ = ["Evaluation", "RunRecords", "public", "read_records", "run_directory"]
