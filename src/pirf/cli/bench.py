"""``pirf bench``: every method on every PDE under one protocol, resumable, with a report."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from pirf.bench.harness import resolve_methods, resolve_pdes, run_bench
from pirf.bench.presets import resolve_preset
from pirf.bench.report import results_json as results_file
from pirf.cli._common import ThreadsOpt, console, console_err, emit_json, use_threads
from pirf.cli.finetune import parse_steps
from pirf.data.atomic import atomic_output
from pirf.errors import PirfError


def parse_method_options(items: list[str] | None) -> dict[str, dict[str, Any]]:
    """``["pidm.residual_weight=1e-3", ...]`` -> ``{"pidm": {"residual_weight": 0.001}}``."""
    options: dict[str, dict[str, Any]] = {}
    for item in items or []:
        name, sep, raw = item.partition("=")
        method, dot, key = name.partition(".")
        if not (sep and dot and method and key):
            raise PirfError(f"--method-option expects METHOD.KEY=VALUE, got '{item}'")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        options.setdefault(method.strip(), {})[key.strip()] = value
    return options


def bench(
    out: Annotated[Path, typer.Option("--out", help="Output directory (resumable).")],
    preset: Annotated[str, typer.Option("--preset", help="tiny, small or paper.")] = "tiny",
    pdes: Annotated[
        str, typer.Option("--pdes", help="'all' or a comma-separated list of the five PDEs.")
    ] = "all",
    methods: Annotated[
        str,
        typer.Option(
            "--methods",
            help="'all' or a list of base, diffusionpde, cocogen, pidm, "
            "pgdiffusion, pirf, pirf-full, pirf+c (base is always included).",
        ),
    ] = "all",
    steps: Annotated[str, typer.Option("--steps", help="Sampler budgets.")] = "20,40,80",
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or auto.")] = "cpu",
    n_eval: Annotated[
        int | None, typer.Option("--n-eval", help="Samples per method and budget.")
    ] = None,
    n_select: Annotated[
        int | None, typer.Option("--n-select", help="Samples per sweep candidate.")
    ] = None,
    n_train: Annotated[int | None, typer.Option("--n-train", help="Training samples.")] = None,
    n_val: Annotated[int | None, typer.Option("--n-val", help="Validation samples.")] = None,
    n_test: Annotated[int | None, typer.Option("--n-test", help="Test samples.")] = None,
    base_iters: Annotated[
        int | None, typer.Option("--base-iters", help="Base-model training iterations.")
    ] = None,
    tune_iters: Annotated[
        int | None, typer.Option("--tune-iters", help="PIRF fine-tuning iterations.")
    ] = None,
    tune_batch: Annotated[
        int | None, typer.Option("--tune-batch", help="PIRF trajectories per iteration.")
    ] = None,
    baseline_iters: Annotated[
        int | None, typer.Option("--baseline-iters", help="PIDM / PG-Diffusion iterations.")
    ] = None,
    baseline_batch: Annotated[
        int | None, typer.Option("--baseline-batch", help="PIDM / PG-Diffusion batch.")
    ] = None,
    method_option: Annotated[
        list[str] | None,
        typer.Option(
            "--method-option",
            help="METHOD.KEY=VALUE (JSON value; a list is a sweep "
            "axis), e.g. pidm.residual_weight=1e-3; repeat.",
        ),
    ] = None,
    report_only: Annotated[
        bool,
        typer.Option("--report-only", help="Run nothing; report what is already done."),
    ] = False,
    results_json: Annotated[
        Path | None,
        typer.Option(
            "--results-json",
            help="Also write the compact results file (per PDE: the floor and every "
            "method's residual, consistency, joint MMD, diversity and NFE) here.",
        ),
    ] = None,
    threads: ThreadsOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Run the baselines and PIRF on the benchmarks; write report.md, report.json, figures."""
    use_threads(threads)
    chosen = resolve_preset(
        preset,
        n_eval=n_eval,
        n_select=n_select,
        n_train=n_train,
        n_val=n_val,
        n_test=n_test,
        base_iters=base_iters,
        tune_iters=tune_iters,
        tune_batch=tune_batch,
        baseline_iters=baseline_iters,
        baseline_batch=baseline_batch,
    )
    if results_json is not None and not results_json.parent.is_dir():
        raise PirfError(
            f"--results-json {results_json}: its folder does not exist; create it first"
        )
    budgets = parse_steps(steps, "--steps")
    if budgets is None:
        raise PirfError("--steps needs at least one step count")
    report = run_bench(
        out,
        preset=chosen,
        pdes=resolve_pdes(pdes),
        methods=resolve_methods(methods),
        steps=budgets,
        device=device,
        progress=not as_json,
        say=None if as_json else lambda text: console_err.print(text, highlight=False),
        command="pirf " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["bench"] else "",
        options=parse_method_options(method_option),
        report_only=report_only,
    )
    if results_json is not None:
        with atomic_output(results_json, force=True) as temporary:
            temporary.write_text(json.dumps(results_file(report), indent=1) + "\n")
    if as_json:
        emit_json(report)
        return
    table = Table(title=f"pirf bench ({chosen.name}): residual MSE", title_justify="left")
    table.add_column("PDE", style="bold")
    table.add_column("method")
    for count in budgets:
        table.add_column(f"@ {count}", justify="right")
    table.add_column("bar", justify="left")
    for pde, entry in report["pdes"].items():
        rows = entry["rows"]
        for method in dict.fromkeys(r["method"] for r in rows):
            values = {
                r["steps"]: r["headline"]["residual_mse"] for r in rows if r["method"] == method
            }
            bar = ""
            if entry["bars"].get(method) is not None:
                bar = "met" if entry["bars"][method]["met"] else "not met"
            table.add_row(
                pde,
                report["methods"][method],
                *[f"{values[c]:.3g}" if c in values else "-" for c in budgets],
                bar,
            )
    console.print(table)
    console.print(f"report: {out / 'report.md'} (and report.json, figures/)", highlight=False)
