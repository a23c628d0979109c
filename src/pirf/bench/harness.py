"""``run_bench``: the whole comparison, as a graph of stages that each leave a file.

For each PDE, under ``OUT/<pde>/``::

    data/{train,val,test}.h5       the preset's data, from pirf's solver
    base/checkpoint                the base model (pirf train; for tiny Poisson the shipped
                                   model, which was trained on exactly this data)
    <method>/...                   each method's training, fine-tuning or sweep
    results/<method>-<steps>.json  the evaluation protocol's numbers on the test seeds
    results/<method>-<steps>.safetensors   the first samples, for the figures
    results/ground-truth.json      the held-out data's own numbers and the floors

Every stage is skipped when its file exists, so an interrupted bench resumes where it
stopped: base training and PIRF continue from their periodic checkpoints, the short PIDM
and PG-Diffusion trainings and the sweeps run again from their start. The
stage graph is printed at the start; ``OUT/report.md``, ``OUT/report.json`` and
``OUT/figures/`` are written at the end from the result files.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

import pirf.data
import pirf.pdes
from pirf.assets import shipped_checkpoint
from pirf.bench.config import BenchConfig
from pirf.bench.methods import METHODS, Context, Stage, write_json
from pirf.bench.presets import BenchPreset, resolve_preset
from pirf.bench.report import PER_SAMPLE, write_report
from pirf.checks import check_count, check_device, check_output_dir
from pirf.errors import PirfError, option
from pirf.evaluation import evaluate_fields, ground_truth_floor, prepare_reference
from pirf.evaluation.figures import DEFAULT_FIGURE_FORMAT, check_figure_format
from pirf.evaluation.results import headline
from pirf.models import read_checkpoint_info
from pirf.pdes.residuals import residual_per_sample
from pirf.training import TrainConfig, rundir, train

TEST_SEED = 0
DATA_SEED = 0
FIGURE_SAMPLES = 4
Say = Callable[[str], None]


def _names(text: str, known: Sequence[str], what: str) -> list[str]:
    names = list(known) if text == "all" else [p.strip() for p in text.split(",") if p.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise PirfError(
            f"unknown {what} '{','.join(unknown)}'; use 'all' or some of {', '.join(known)}"
        )
    return names


def resolve_methods(text: str) -> list[str]:
    """``all`` or a comma-separated list; ``base`` is always included (every table has it)."""
    names = _names(text, list(METHODS), "method")
    return ["base", *[n for n in names if n != "base"]]


BENCHMARKS = ("darcy", "poisson", "helmholtz", "burgers", "kolmogorov")
"""The five benchmark PDEs of the paper."""


def resolve_pdes(text: str) -> list[str]:
    """``all`` (the five benchmarks) or a comma-separated list of them."""
    return _names(text, list(BENCHMARKS), "PDE")


def _data_stage(ctx: Context) -> Stage:
    sizes = {"train": ctx.preset.train, "val": ctx.preset.val, "test": ctx.preset.test}

    def run() -> None:
        pirf.data.generate_splits(
            ctx.pde_name,
            sizes,
            None,
            DATA_SEED,
            ctx.train.parent,
            preset=ctx.preset.name,
            device=ctx.device,
            force=True,
        )

    return Stage(
        f"data: {sizes['train']} train, {sizes['val']} val, {sizes['test']} test",
        ctx.test.parent / "complete.json",
        lambda: (run(), _mark(ctx)),
    )


def _mark(ctx: Context) -> None:
    write_json(ctx.test.parent / "complete.json", {"files": ["train.h5", "val.h5", "test.h5"]})


def _shipped_base(ctx: Context) -> Path | None:
    """The shipped tiny model when it was trained on exactly this training set."""
    if ctx.preset.name != "tiny" or ctx.preset.base_iterations(ctx.pde_name) is not None:
        return None
    try:
        shipped = shipped_checkpoint(f"{ctx.pde_name}-tiny")
    except PirfError:
        return None
    info = read_checkpoint_info(shipped)
    data = pirf.data.load(ctx.train)
    try:
        same = info.normalisation == data.normalisation and info.extra.get("data", {}).get(
            "samples"
        ) == len(data)
    finally:
        data.close()
    return shipped if same else None


def _base_stage(ctx: Context) -> Stage:
    out = ctx.base.parent

    def run() -> None:
        shipped = _shipped_base(ctx)
        if shipped is not None:
            shutil.copytree(shipped, out / ".shipped-tmp", dirs_exist_ok=True)
            (out / ".shipped-tmp").replace(ctx.base)
            return
        train(
            TrainConfig.of(
                data=ctx.train,
                out=out,
                preset=ctx.preset.name,
                iters=ctx.preset.base_iterations(ctx.pde_name),
                device=ctx.device,
                progress=ctx.progress,
                figure_every=0,
                resume=rundir.latest_checkpoint(out) is not None,
            )
        )

    return Stage("base: train the EDM base model (or take the shipped one)", ctx.base, run)


def _result_path(ctx: Context, method: str, steps: int) -> Path:
    return ctx.folder / "results" / f"{method}-{steps}.json"


def _evaluation_stage(ctx: Context, method: str, steps: int, reference: Callable) -> Stage:
    path = _result_path(ctx, method, steps)
    adapter = METHODS[method]

    def run() -> None:
        sampled = adapter.sample(ctx, steps, ctx.preset.eval_n, TEST_SEED)
        result = sampled.result
        model = ctx.model(ctx.base)
        physical = model.normalisation.to_physical(result.samples.to(torch.float64))
        prepared = reference()
        metrics = evaluate_fields(
            model.pde, physical, prepared, prepared.normalisation, seed=TEST_SEED
        )
        save_file(
            {"samples": physical[:FIGURE_SAMPLES].float().contiguous()},
            str(path.with_suffix(".safetensors")),
        )
        write_json(
            path,
            {
                "method": method,
                "label": adapter.label,
                "steps": steps,
                "n": ctx.preset.eval_n,
                "seed": TEST_SEED,
                "nfe": result.nfe_per_sample,
                "backward_per_sample": sampled.backward_per_sample,
                "seconds_per_sample": result.seconds_per_sample,
                "cost": adapter.cost(ctx),
                "headline": headline(metrics).to_json(),
                "metrics": metrics,
                # Every sample's residual MSE: the report's histogram of them.
                PER_SAMPLE: residual_per_sample(model.pde, physical)[0].tolist(),
            },
        )

    return Stage(f"evaluate {method} at {steps} steps", path, run)


def _ground_truth_stage(ctx: Context, reference: Callable) -> Stage:
    path = ctx.folder / "results" / "ground-truth.json"

    def run() -> None:
        model = ctx.model(ctx.base)
        floor = ground_truth_floor(
            model.pde,
            reference(),
            reference().normalisation,
            n_samples=ctx.preset.eval_n,
            seed=TEST_SEED,
        )
        data = pirf.data.load(ctx.test)
        try:
            first = data.fields()[:FIGURE_SAMPLES].float().contiguous()
        finally:
            data.close()
        save_file({"samples": first}, str(path.with_suffix(".safetensors")))
        write_json(path, {"headline": headline(floor).to_json(), "metrics": floor, "n": len(first)})

    return Stage("ground truth: residual floor and fidelity floors", path, run)


def _context(
    out: Path,
    pde: str,
    preset: BenchPreset,
    device: str,
    progress: bool,
    steps: Sequence[int],
    options: dict[str, dict[str, Any]],
) -> Context:
    folder = out / pde
    data = folder / "data"
    return Context(
        pde_name=pde,
        folder=folder,
        train=data / "train.h5",
        test=data / "test.h5",
        val=data / "val.h5",
        base=folder / "base" / "checkpoint",
        preset=preset,
        device=device,
        progress=progress,
        sweep_steps=20 if 20 in steps else steps[0],
        options=options,
    )


def plan(ctx: Context, methods: list[str], steps: Sequence[int]) -> list[Stage]:
    """The stages of one PDE, in order: data, base model, ground truth, then one method
    after the other (base and PIRF first), each prepared and evaluated before the next, so
    an interrupted or partial bench already holds complete rows."""
    cache: dict[str, Any] = {}

    def reference() -> Any:
        if "prepared" not in cache:
            data = pirf.data.load(ctx.test)
            try:
                fields = data.fields().to(torch.float64)
                cache["prepared"] = prepare_reference(
                    data.pde, fields, data.normalisation, device=ctx.device
                )
            finally:
                data.close()
        return cache["prepared"]

    stages = [_data_stage(ctx), _base_stage(ctx), _ground_truth_stage(ctx, reference)]
    first = [m for m in ("base", "pirf") if m in methods]
    for method in first + [m for m in methods if m not in first]:
        stages.extend(METHODS[method].stages(ctx))
        stages.extend(_evaluation_stage(ctx, method, count, reference) for count in steps)
    return stages


def run_bench(
    out: str | Path,
    *,
    preset: BenchPreset,
    pdes: list[str],
    methods: list[str],
    steps: Sequence[int],
    device: str = "cpu",
    progress: bool = True,
    say: Say | None = None,
    command: str = "",
    options: dict[str, dict[str, Any]] | None = None,
    report_only: bool = False,
    config: Any = None,
    figure_format: str = DEFAULT_FIGURE_FORMAT,
) -> dict[str, Any]:
    """Run (or resume) the comparison; returns the report (also ``OUT/report.json``).

    Every argument (the method options included) is checked before ``out`` is made or any
    stage runs.

    ``options`` maps a method to settings of its configuration or sweep (e.g.
    ``{"pidm": {"residual_weight": 1e-3}}``); a stage already done is not rerun when they
    change, so give changed settings a new ``out``. ``report_only`` runs no stage and
    writes the report from the results already on disk. ``figure_format``: png, pdf or
    svg, the format of the report's figures.
    """
    options = options or {}
    check_figure_format(figure_format)
    _names(",".join(methods), list(METHODS), "method")
    _names(",".join(pdes), list(BENCHMARKS), "PDE")
    for method in options:
        if method not in methods or method == "base":
            raise PirfError(
                f"{option('method_options', flag='--method-option')} names '{method}', "
                "which this bench does not run"
            )
    out = Path(out)
    say = say or (lambda text: None)
    steps = list(steps)
    if not steps:
        raise PirfError(f"{option('steps')} needs at least one step count")
    for count in steps:
        check_count("steps", count)
    contexts = [_context(out, pde, preset, device, progress, steps, options) for pde in pdes]
    for method, settings in options.items():
        for ctx in contexts:
            METHODS[method].check_options(settings, ctx)
    check_device(device)
    if report_only and not out.is_dir():
        raise PirfError(f"{option('report_only', True)}: {out} holds no bench to report on")
    check_output_dir(out, "out")
    graph = {ctx.pde_name: plan(ctx, methods, steps) for ctx in contexts}
    out.mkdir(parents=True, exist_ok=True)
    if config is not None and not report_only:
        rundir.write_config(out, config, "bench")
    say(f"stage graph ({sum(len(s) for s in graph.values())} stages; done ones are skipped):")
    for pde, stages in graph.items():
        for stage in stages:
            say(f"  {'done' if stage.done else 'todo'}  {pde}: {stage.name}")
    began = time.perf_counter()
    for pde, stages in graph.items():
        for stage in stages:
            if stage.done or report_only:
                continue
            say(f"{pde}: {stage.name}")
            mark = time.perf_counter()
            stage.output.parent.mkdir(parents=True, exist_ok=True)
            stage.run()
            say(f"{pde}: {stage.name} done in {time.perf_counter() - mark:.1f} s")
    settings = {
        "out": str(out),
        "preset": preset.to_json(),
        "pdes": pdes,
        "methods": methods,
        "steps": list(steps),
        "device": device,
        "seconds": time.perf_counter() - began,
        "command": command,
        "test_seed": TEST_SEED,
        "data_seed": DATA_SEED,
        "method_options": options,
        "report_only": report_only,
        "figure_format": figure_format,
    }
    return write_report(out, contexts, methods, list(steps), settings)


def bench(config: BenchConfig, *, say: Say | None = None, command: str = "") -> dict[str, Any]:
    """The benchmark a :class:`~pirf.bench.config.BenchConfig` describes, as ``pirf bench``
    runs it: resolve the settings (the preset's sizes), check them, run or resume every
    stage (:func:`run_bench`), write ``OUT/config.toml`` and, if asked, the compact results
    file; returns the report."""
    from pirf.bench.config import resolve
    from pirf.bench.report import results_json
    from pirf.checks import check_output_file
    from pirf.devices import resolve_device
    from pirf.settings import flat

    config = resolve(config)
    check_figure_format(str(config.figure_format))
    if config.out is None:
        raise PirfError(f"a bench needs {option('out')} (its output directory)")
    results = config.results_json
    if results is not None:  # written after the whole bench: it must be writable now
        check_output_file(results, "results_json", force=True)
    sizes = {name: value for name, value in flat(config.sizes).items()}
    preset = resolve_preset(config.preset, **sizes)
    methods = resolve_methods(config.methods)
    report = run_bench(
        config.out,
        preset=preset,
        pdes=resolve_pdes(config.pdes),
        methods=methods,
        steps=config.steps,
        device=str(resolve_device(config.device)),
        progress=bool(config.progress),
        say=say,
        command=command,
        options=config.method_options,
        report_only=bool(config.report_only),
        config=config,
        figure_format=str(config.figure_format),
    )
    if results is not None:
        staging = Path(results).with_name(f".{Path(results).name}.tmp")
        staging.write_text(json.dumps(results_json(report), indent=1) + "\n")
        staging.replace(results)
    return report


__all__ = ["bench", "plan", "resolve_methods", "resolve_pdes", "run_bench"]
