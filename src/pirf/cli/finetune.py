"""``pirf finetune``: PIRF fine-tuning of a base checkpoint (resumable).

A thin wrapper over :func:`pirf.finetune.finetune`, its options generated from
:class:`~pirf.finetune.config.FinetuneConfig`: options left out take the recipe's values
and the defaults (or, with ``--resume``, the run's stored values); progress goes to
stderr; the summary is a table, or one JSON object with ``--json``. Several GPUs:
``torchrun --nproc-per-node N --no-python pirf finetune ...``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

from pirf.cli._common import RUN_EXTRAS, console, console_err, emit_json, use_threads
from pirf.cli.generated import command
from pirf.errors import PirfError
from pirf.finetune.config import DEFAULTS, RECIPES, FinetuneConfig


def parse_steps(text: str | None, option: str) -> tuple[int, ...] | None:
    """``"20,40,80"`` -> ``(20, 40, 80)``; one-line error for anything else."""
    if text is None:
        return None
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise PirfError(f"{option} expects comma-separated integers, got '{text}'") from None
    if not values or any(v <= 0 for v in values):
        raise PirfError(f"{option} expects positive step counts, got '{text}'")
    return values


def _fmt(value: Any, spec: str = ".4g") -> str:
    return "-" if value is None else format(value, spec)


def _best(summary: dict[str, Any]) -> str:
    """Where ``best/`` is and which evaluation it holds (saying so when it is the base)."""
    best, path = summary.get("best") or {}, summary["best_checkpoint"]
    if path is None:
        return "-"
    iteration = best.get("iteration")
    if iteration == 0:
        return (
            f"{path} (iteration 0: the base model's weights; no evaluation of the fine-tuned "
            "model beat them inside the fidelity band)"
        )
    return f"{path} (iteration {iteration}, residual {_fmt(best.get('residual_mse'))})"


def print_summary(summary: dict[str, Any]) -> None:
    """Base vs fine-tuned at each evaluated budget, then the run's facts."""
    base, final = summary["base"] or {}, summary["final"] or {}
    metric = summary["fidelity_metric"]
    table = Table(title="PIRF fine-tuning", title_justify="left")
    table.add_column("model", style="bold")
    budgets = list((base.get("residual_mse") or {}).keys())
    for budget in budgets:
        table.add_column(f"residual MSE @ {budget}", justify="right")
    table.add_column(f"fidelity ({metric})", justify="right")
    table.add_column("floor", justify="right")
    for label, row in (("base", base), ("fine-tuned", final)):
        if not row:
            continue
        fidelity = row.get("fidelity") or {}
        table.add_row(
            label,
            *[_fmt(row["residual_mse"].get(b)) for b in budgets],
            _fmt(fidelity.get(metric)),
            _fmt(fidelity.get(f"{metric}_floor")),
        )
    ratios = summary["residual_ratio"]
    table.add_row("ratio", *[_fmt(ratios.get(b), ".1f") + "x" for b in budgets], "", "")
    console.print(table)
    facts = Table(show_header=False)
    facts.add_column("key", style="bold")
    facts.add_column("value", overflow="fold")
    rows = [
        ("iterations", f"{summary['iterations']} / {summary['target_iterations']}"),
        (
            "trainable",
            f"{summary['trainable']} ({summary['trainable_parameters']:,} of "
            f"{summary['parameters']:,} parameters)",
        ),
        (
            "trajectory",
            f"{summary['mode']}, K={summary['truncation']}, N={summary['steps']}, "
            f"reward {summary['reward']}",
        ),
        ("s / iteration", _fmt(summary["seconds_per_iteration"], ".3f")),
        ("peak memory", f"{summary['peak_memory_gib']:.2f} GiB ({summary['peak_memory_kind']})"),
        ("seconds", f"{summary['seconds']:.1f} (run total {summary['total_seconds']:.1f})"),
        ("checkpoint", str(summary["checkpoint"])),
        ("best", _best(summary)),
    ]
    if summary["stopped"]:
        rows.append(("stopped", summary["stopped"]["reason"]))
    if summary.get("tracker"):
        rows.append(("tracker", summary["tracker"]))
    if summary["nonfinite_samples"] or summary["nonfinite_gradients"]:
        rows.append(
            (
                "non-finite",
                f"{summary['nonfinite_samples']} samples, "
                f"{summary['nonfinite_gradients']} gradient entries zeroed",
            )
        )
    for key, value in rows:
        facts.add_row(key, value)
    console.print(facts)
    if not summary["completed"]:
        console.print("stopped early; continue with --resume", highlight=False)


def _run(config: Any, *, threads: int | None = None, as_json: bool = False) -> None:
    from pirf.checks import checkpoint_note, resolve_checkpoint
    from pirf.finetune import finetune as run_finetune
    from pirf.settings import with_values

    use_threads(threads)
    if as_json:
        config = with_values(config, {"progress": False})
    note = None
    if config.ckpt is not None and Path(config.ckpt).is_dir():
        path, kind = resolve_checkpoint(config.ckpt)
        note = checkpoint_note(config.ckpt, path, kind)
    summary = run_finetune(config)
    if note is not None and summary.get("rank", 0) == 0:
        console_err.print(note, highlight=False, soft_wrap=True)
    if summary.get("already_complete"):
        if as_json:
            emit_json(summary)
        else:
            console.print(summary["message"], highlight=False)
        return
    if summary["rank"] != 0:
        return
    if as_json:
        emit_json(summary)
    else:
        print_summary(summary)


def recipe_notes() -> dict[str, str]:
    """Per setting, the recipes that change its default, e.g. ``darcy, burgers: 3e-05``."""
    by_value: dict[str, dict[Any, list[str]]] = {}
    for pde, changes in RECIPES.items():
        for name, value in changes.items():
            by_value.setdefault(name, {}).setdefault(value, []).append(pde)
    notes = {
        name: "; ".join(f"{', '.join(pdes)}: {value:g}" if isinstance(value, float)
                        else f"{', '.join(pdes)}: {value}" for value, pdes in values.items())
        for name, values in by_value.items()
    }  # fmt: skip
    notes["truncation"] = notes.get("truncation", "") + "; lora: 5"
    notes["lr"] = notes.get("lr", "") + "; lora: 10x"
    return notes


finetune = command(
    FinetuneConfig,
    DEFAULTS,
    _run,
    extra=RUN_EXTRAS,
    doc="PIRF fine-tune a base model: residual reward through the last sampler steps. "
    "Settings left out take the base PDE's recipe, then the defaults (docs/finetune.md).",
    notes=recipe_notes(),
)
