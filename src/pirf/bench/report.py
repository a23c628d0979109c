"""The benchmark report: ``report.md``, ``report.json`` and figures, from the result files.

Per PDE, one table of every method at every sampler budget (ground truth and the base
model always present): residual MSE (mean, median, p90), MAE, solver consistency, field
MMD with its data floor, spectrum error, diversity, network evaluations per sample
(forward + backward), seconds per sample and the method's preparation cost. Below it, the
PIRF bar for each PIRF variant run: at 20 steps, a lower residual than every baseline at
equal or higher sampling cost, with fidelity within 1.5x the base model's. Figures: a
sample of the held-out data and of each method beside its residual map (shared colour
scales); a histogram of every sample's residual MSE per method against the data's floor;
residual against NFE; residual against fidelity.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file

import pirf.data
from pirf.bench.methods import METHODS, PIRF_VARIANTS, Context, write_json
from pirf.evaluation.band import DEFAULT_BAND, FidelityBand
from pirf.evaluation.figures import (
    DEFAULT_FIGURE_FORMAT,
    REFERENCE_LABEL,
    agg_figure,
    log_axis,
    save_comparison,
    save_figure,
    save_residual_histogram,
)
from pirf.evaluation.results import Headline
from pirf.pdes.residuals import residual_per_sample

if TYPE_CHECKING:
    from matplotlib.figure import Figure

BAR_STEPS = 20
FIDELITY_BAND = DEFAULT_BAND


def _read(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _fmt(value: Any, spec: str = ".3g") -> str:
    return "-" if value is None else format(value, spec)


def _head(row: dict[str, Any]) -> Headline:
    """A result row's headline numbers."""
    return Headline.from_json(row["headline"])


def _cost(row: dict[str, Any]) -> int:
    """Sampling cost in network passes per sample (forward + backward)."""
    return int(row["nfe"]) + int(row.get("backward_per_sample") or 0)


def pirf_bar(
    rows: list[dict[str, Any]], base: dict[str, Any] | None, method: str = "pirf"
) -> dict[str, Any] | None:
    """Does the PIRF variant ``method`` meet the bar at :data:`BAR_STEPS` (module
    docstring)? None if it was not run."""
    at = {r["method"]: r for r in rows if r["steps"] == BAR_STEPS}
    pirf = at.get(method)
    if pirf is None or base is None:
        return None
    residual = _head(pirf).residual_mse
    beaten, not_beaten = [], []
    for name, row in at.items():
        if name in ("base", *PIRF_VARIANTS):
            continue
        if _cost(row) < _cost(pirf):
            continue  # cheaper baselines are not part of the bar
        (beaten if residual < _head(row).residual_mse else not_beaten).append(name)
    band = FidelityBand(FIDELITY_BAND, _head(base).fidelity())
    violations = band.violations(_head(pirf).fidelity())
    base_fidelity, fidelity = _head(base).mmd, _head(pirf).mmd
    base_diversity, diversity = _head(base).diversity, _head(pirf).diversity
    fidelity_ok = fidelity is not None and base_fidelity is not None and not violations
    return {
        "steps": BAR_STEPS,
        "residual_lower_than": beaten,
        "residual_not_lower_than": not_beaten,
        "fidelity_ratio": None if not base_fidelity else fidelity / base_fidelity,
        "diversity_ratio": (
            None if not base_diversity or diversity is None else diversity / base_diversity
        ),
        "fidelity_within_band": fidelity_ok,
        "fidelity_violations": violations,
        "met": not not_beaten and fidelity_ok,
    }


GOAL_FACTOR = 100.0
"""The residual goal: the base model's divided by this, unless the floor is higher."""
GOAL_FLOOR_FACTOR = 2.0
"""... or this many times the ground truth's own residual (the stencil's floor)."""


def goals(
    rows: list[dict[str, Any]],
    base: dict[str, Any] | None,
    truth: dict[str, Any] | None,
    method: str,
) -> dict[str, Any] | None:
    """The goals a PIRF variant is held to at :data:`BAR_STEPS` (docs/BENCHMARKS.md):

    * residual MSE at most ``max(base / 100, 2 x the ground truth's)``;
    * a lower residual than every baseline row, at any step count, whose sampling cost
      (network passes per sample, forward and backward) is at least its own;
    * solver consistency and joint MMD no worse than the base model's;
    * fidelity inside the band (as :func:`pirf_bar`).

    None when the variant or the base model was not run at that budget."""
    at = {r["method"]: r for r in rows if r["steps"] == BAR_STEPS}
    mine = at.get(method)
    if mine is None or base is None:
        return None
    head, base_head = _head(mine), _head(base)
    residual = head.residual_mse
    floor = _head(truth).residual_mse if truth else 0.0
    target = max(base_head.residual_mse / GOAL_FACTOR, GOAL_FLOOR_FACTOR * floor)
    baselines = [r for r in rows if r["method"] not in ("base", *PIRF_VARIANTS)]
    costlier = [r for r in baselines if _cost(r) >= _cost(mine)]
    not_beaten = [
        f"{r['method']}@{r['steps']}" for r in costlier if not residual < _head(r).residual_mse
    ]
    in_band = not FidelityBand(FIDELITY_BAND, base_head.fidelity()).violations(head.fidelity())

    def no_worse(key: str) -> bool | None:
        mine_value, base_value = getattr(head, key), getattr(base_head, key)
        if mine_value is None or base_value is None:
            return None
        return bool(mine_value <= base_value)

    best_baseline = min(
        (r for r in baselines if r["steps"] == BAR_STEPS),
        key=lambda r: _head(r).residual_mse,
        default=None,
    )
    checks = {
        "residual_target": residual <= target,
        "lowest_at_equal_or_higher_cost": not not_beaten,
        "consistency_no_worse": no_worse("consistency"),
        "mmd_no_worse": no_worse("mmd"),
        "in_band": in_band,
    }
    return {
        "method": method,
        "steps": BAR_STEPS,
        "residual_mse": residual,
        "residual_target": target,
        "residual_ratio": base_head.residual_mse / residual if residual else None,
        "not_lower_than": not_beaten,
        "consistency": head.consistency,
        "base_consistency": base_head.consistency,
        "mmd": head.mmd,
        "base_mmd": base_head.mmd,
        "best_baseline": None
        if best_baseline is None
        else {
            "method": best_baseline["method"],
            "residual_mse": _head(best_baseline).residual_mse,
            "mmd": _head(best_baseline).mmd,
            "consistency": _head(best_baseline).consistency,
        },
        "checks": checks,
        "met": all(value is not False for value in checks.values()),
    }


def best_variant(goal_rows: dict[str, dict[str, Any]]) -> str | None:
    """The PIRF variant with the lowest residual inside the fidelity band (None: none)."""
    inside = [g for g in goal_rows.values() if g["checks"]["in_band"]]
    return min(inside, key=lambda g: g["residual_mse"])["method"] if inside else None


def _table(pde: str, truth: dict[str, Any] | None, rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        f"### {pde}",
        "",
        "| method | steps | residual MSE | median | p90 | MAE | consistency | joint MMD (floor) "
        "| spectrum err. | diversity | NFE fwd+bwd | s/sample | preparation s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    if truth is not None:
        h = _head(truth)
        lines.append(
            f"| ground truth | - | {_fmt(h.residual_mse)} | {_fmt(h.residual_mse_median)} "
            f"| {_fmt(h.residual_mse_p90)} | {_fmt(h.residual_mae)} "
            f"| {_fmt(h.consistency)} | {_fmt(h.mmd)} | - | - | - | - | - |"
        )
    for row in rows:
        h, cost = _head(row), row.get("cost") or {}
        preparation = sum(
            v for k, v in cost.items() if k.endswith("_seconds") and isinstance(v, (int, float))
        )
        lines.append(
            f"| {row['label']} | {row['steps']} | {_fmt(h.residual_mse)} "
            f"| {_fmt(h.residual_mse_median)} | {_fmt(h.residual_mse_p90)} "
            f"| {_fmt(h.residual_mae)} | {_fmt(h.consistency)} "
            f"| {_fmt(h.mmd)} ({_fmt(h.mmd_floor, '.2g')}) | {_fmt(h.spectrum_error)} "
            f"| {_fmt(h.diversity, '.3f')} | {row['nfe']}+{row.get('backward_per_sample', 0)} "
            f"| {_fmt(row['seconds_per_sample'], '.3f')} | {_fmt(preparation or None, '.0f')} |"
        )
    return lines


PER_SAMPLE = "residual_mse_per_sample"
"""Key of a result file's per-sample residual MSE (the histogram's values; results written
before it was kept have none, and their histograms leave them out)."""


def _sample_figure(
    ctx: Context, rows: list[dict[str, Any]], folder: Path, steps: int, figure_format: str
) -> str | None:
    """Sample 0 of the held-out data and of every method at ``steps`` (the same noise),
    beside their residual maps on shared colour scales."""
    pde = ctx.model(ctx.base).pde
    labelled = []
    truth = ctx.folder / "results" / "ground-truth.safetensors"
    if truth.is_file():
        labelled.append((REFERENCE_LABEL, load_file(str(truth))["samples"][:1].double()))
    for row in rows:
        path = ctx.folder / "results" / f"{row['method']}-{steps}.safetensors"
        if row["steps"] == steps and path.is_file():
            labelled.append((row["label"], pde.snap(load_file(str(path))["samples"][:1].double())))
    if not labelled:
        return None
    path = save_comparison(
        folder / f"{ctx.pde_name}-samples",
        [(label, fields, pde.residual(fields)) for label, fields in labelled],
        channels=tuple(pde.channels),
        title=f"{ctx.pde_name}: sample 0 of each method at {steps} steps (same noise; "
        "generated samples are not paired with the data sample)",
        figure_format=figure_format,
    )
    return str(path)


def _histogram_figure(
    ctx: Context, rows: list[dict[str, Any]], folder: Path, steps: int, figure_format: str
) -> str | None:
    """Per-sample residual MSE of every method at ``steps`` (results that keep them),
    against the held-out test data's own (the floor)."""
    per_sample = {
        row["label"]: row[PER_SAMPLE] for row in rows if row["steps"] == steps and PER_SAMPLE in row
    }
    if not per_sample:
        return None
    floor = None
    if ctx.test.is_file():
        data = pirf.data.load(ctx.test)
        try:
            floor = residual_per_sample(data.pde, data.fields().to(torch.float64))[0]
        finally:
            data.close()
    path = save_residual_histogram(
        folder / f"{ctx.pde_name}-residuals",
        per_sample,
        reference=floor,
        title=f"{ctx.pde_name}: residual MSE of each sample at {steps} steps",
        figure_format=figure_format,
    )
    return str(path)


def _tradeoff_figure(
    ctx: Context, rows: list[dict[str, Any]], folder: Path, figure_format: str
) -> str:
    figure = tradeoff_figure(ctx.pde_name, rows)
    return str(save_figure(figure, folder / f"{ctx.pde_name}-tradeoffs", figure_format))


def tradeoff_figure(pde_name: str, rows: list[dict[str, Any]]) -> Figure:
    """Residual against network passes per sample and against fidelity, per method; every
    log axis labels its decades ``10^k``."""
    figure = agg_figure((10, 3.8))
    nfe_axis, fidelity_axis = figure.subplots(1, 2)
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = sorted((r for r in rows if r["method"] == method), key=lambda r: r["steps"])
        label = mine[0]["label"]
        nfe_axis.plot(
            [_cost(r) for r in mine],
            [_head(r).residual_mse for r in mine],
            marker="o",
            label=label,
        )
        fidelity_axis.scatter(
            [_head(r).mmd for r in mine],
            [_head(r).residual_mse for r in mine],
            label=label,
        )
    for axis in (nfe_axis, fidelity_axis):
        log_axis(axis, "y")
        axis.set_ylabel("residual MSE", fontsize=8)
        axis.legend(fontsize=7)
    log_axis(nfe_axis, "x")
    nfe_axis.set_xlabel("network passes per sample (forward + backward)", fontsize=8)
    fidelity_axis.set_xlabel("joint MMD to held-out data (lower is closer)", fontsize=8)
    figure.suptitle(f"{pde_name}: residual against sampling cost and against fidelity", fontsize=9)
    return figure


def _figures(
    ctx: Context, rows: list[dict[str, Any]], folder: Path, figure_format: str
) -> list[str]:
    """The PDE's figures: samples, the residual histogram (both at the lowest budget) and
    the trade-offs; returns the paths written."""
    steps = min(r["steps"] for r in rows)
    drawn = [
        _sample_figure(ctx, rows, folder, steps, figure_format),
        _histogram_figure(ctx, rows, folder, steps, figure_format),
        _tradeoff_figure(ctx, rows, folder, figure_format),
    ]
    return [path for path in drawn if path is not None]


def write_report(
    out: Path,
    contexts: list[Context],
    methods: list[str],
    steps: list[int],
    settings: dict[str, Any],
) -> dict[str, Any]:
    """Write ``report.md``, ``report.json`` and ``figures/``; returns the JSON report."""
    folder = out / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    preset = settings["preset"]
    lines = [
        "# pirf benchmark report",
        "",
        f"Preset `{preset['name']}`; {preset['eval_n']} samples per method and budget on the "
        f"test seeds ({settings['test_seed']}); selections on validation seeds; "
        + (
            "written from the results on disk."
            if settings.get("report_only")
            else f"{settings['seconds']:.0f} s for this invocation on {settings['device']}."
        ),
        "",
    ]
    if settings.get("command"):
        lines += ["```", settings["command"], "```", ""]
    pdes: dict[str, Any] = {}
    for ctx in contexts:
        results = ctx.folder / "results"
        truth = _read(results / "ground-truth.json")
        rows = [
            row
            for method in methods
            for count in steps
            if (row := _read(results / f"{method}-{count}.json")) is not None
        ]
        base = next((r for r in rows if r["method"] == "base" and r["steps"] == BAR_STEPS), None)
        bars = {
            variant: bar
            for variant in PIRF_VARIANTS
            if (bar := pirf_bar(rows, base, variant)) is not None
        }
        lines += _table(ctx.pde_name, truth, rows)
        lines.append("")
        goal_rows = {
            variant: entry
            for variant in PIRF_VARIANTS
            if (entry := goals(rows, base, truth, variant)) is not None
        }
        best = best_variant(goal_rows)
        if best is not None:
            goal = goal_rows[best]
            failed = [name for name, ok in goal["checks"].items() if ok is False]
            lines.append(
                f"Goals of the best PIRF variant in the band ({METHODS[best].label}, "
                f"{goal['residual_ratio']:.1f}x below the base): "
                + ("**all met**." if goal["met"] else f"**not met**: {', '.join(failed)}.")
                + (
                    f" Not lower than: {', '.join(goal['not_lower_than'])}."
                    if goal["not_lower_than"]
                    else ""
                )
            )
            lines.append("")
        for variant, bar in bars.items():
            verdict = "met" if bar["met"] else "NOT met"
            lines.append(
                f"{METHODS[variant].label} bar at {bar['steps']} steps: **{verdict}**. "
                f"Residual lower than: {', '.join(bar['residual_lower_than']) or '-'}; "
                f"not lower than: {', '.join(bar['residual_not_lower_than']) or '-'}; "
                f"fidelity {_fmt(bar['fidelity_ratio'], '.2f')}x and diversity "
                f"{_fmt(bar['diversity_ratio'], '.2f')}x the base model's"
                + (
                    f" ({'; '.join(bar['fidelity_violations'])})."
                    if bar["fidelity_violations"]
                    else "."
                )
            )
            lines.append("")
        figure_format = settings.get("figure_format", DEFAULT_FIGURE_FORMAT)
        figures = _figures(ctx, rows, folder, figure_format) if rows else []
        lines += [f"![{Path(f).name}](figures/{Path(f).name})" for f in figures] + [""]
        pdes[ctx.pde_name] = {
            "ground_truth": truth["headline"] if truth else None,
            "rows": [
                {k: v for k, v in r.items() if k not in ("metrics", PER_SAMPLE)} for r in rows
            ],
            "bar": bars.get("pirf"),
            "bars": bars,
            "goals": goal_rows,
            "best_pirf": best,
            "figures": figures,
        }
    report = {"settings": settings, "methods": {m: METHODS[m].label for m in methods}, "pdes": pdes}
    write_json(out / "report.json", report)
    staging = out / ".report.md.tmp"
    staging.write_text("\n".join(lines) + "\n")
    staging.replace(out / "report.md")
    return report


RESULT_NAMES = {"pgdiffusion": "pg-diffusion"}
"""Method names in the results file where they differ from the bench's."""


def results_json(report: dict[str, Any]) -> dict[str, Any]:
    """The compact results file of a bench report (``docs/results/<preset>.json``): per PDE
    the ground truth's residual (the floor) and one row per method and budget with the
    residual, consistency, joint MMD, diversity and network passes per sample (forward
    plus backward)."""
    settings = report["settings"]
    pdes = {}
    for pde, entry in report["pdes"].items():
        truth = entry.get("ground_truth") or {}
        pdes[pde] = {
            "floor": truth.get("residual_mse"),
            "rows": [
                {
                    "method": RESULT_NAMES.get(row["method"], row["method"]),
                    "steps": row["steps"],
                    "nfe": _cost(row),
                    "residual_mse": _head(row).residual_mse,
                    "consistency": _head(row).consistency,
                    "joint_mmd": _head(row).mmd,
                    "diversity": _head(row).diversity,
                }
                for row in entry["rows"]
            ],
        }
    return {"preset": settings["preset"]["name"], "command": settings["command"], "pdes": pdes}


__all__ = [
    "BAR_STEPS",
    "RESULT_NAMES",
    "best_variant",
    "goals",
    "pirf_bar",
    "results_json",
    "write_report",
]

_ = torch  # figures load tensors through safetensors; torch is needed at import time
