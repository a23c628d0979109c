"""``pirf demo``: the whole story on a laptop CPU in minutes.

1. generate the held-out Poisson data of the tiny preset with pirf's own solver;
2. take the shipped tiny base model (trained by ``pirf train --preset tiny`` on the tiny
   training set; ``--from-scratch`` generates that set and trains it again here);
3. PIRF fine-tune it: K-step truncation (the last two Heun steps carry the gradient) with
   layer-wise truncation (only the finest decoder blocks and the output layers train) and
   amortised trajectories (window starts kept in a pool, a few remade each iteration);
4. evaluate base and fine-tuned models with the evaluation protocol at 20 sampler steps on
   the same seeds (never the seeds fine-tuning watched), print a table, draw a data sample
   beside both models' samples of the same noise and a histogram of every sample's
   residual against the data's (``--figure-format``: png, pdf or svg).

Every stage writes its files under ``--out-dir``; ``--json`` prints one JSON object.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from pirf.cli._common import (
    FigureFormatOpt,
    ThreadsOpt,
    console,
    console_err,
    emit_json,
    use_threads,
)
from pirf.errors import PirfError

PDE = "poisson"
BASE = "poisson-tiny"
"""The shipped base model (src/pirf/assets)."""
TRAIN_SAMPLES, TEST_SAMPLES, DATA_SEED = 4000, 512, 0
"""The data the shipped base model was trained on, and its held-out test set."""
RUN: dict[str, Any] = {
    "batch": 8,
    "iters": 120,
    "eval_every": 40,
    "eval_n": 32,
    "eval_steps": (20,),
    "pool": 32,
    "pool_refresh": 2,
}
"""The demo's run length, watching evaluations and amortised trajectories (a pool of 32
window-start states, 2 remade per iteration: the same residual, fidelity and consistency
as fresh states in 0.55x the fine-tuning time, docs/BENCHMARKS.md); everything else is the
Poisson recipe as every fine-tuning run resolves it (:func:`pirf.finetune.config.resolve`:
K = 2 of 20 Heun steps, the top layers, lr 1e-4, weight regulariser 1e-3)."""


def _stage(quiet: bool, text: str) -> None:
    if not quiet:
        console_err.print(f"[bold]demo:[/] {text}", highlight=False)


def _metrics(row: dict[str, Any]) -> dict[str, Any]:
    head = row["headline"]
    fields = row["metrics"]["fidelity"]["distance"]["fields"]["mmd"]
    return {
        "residual_mse": head["residual_mse"],
        "residual_mse_median": head["residual_mse_median"],
        "residual_mse_p90": head["residual_mse_p90"],
        "consistency": head["consistency"],
        "fidelity": head["mmd"],
        "fidelity_floor": head["mmd_floor"],
        "fidelity_fields": fields["value"],
        "fidelity_fields_floor": fields["floor"],
        "spectrum_error": head["spectrum_error"],
        "diversity": head["diversity"],
        "seconds_per_sample": row["seconds_per_sample"],
        "nfe": row["nfe"],
    }


FIGURE_SAMPLES = 64
"""Samples per model in the demo's residual histogram (the first ones the evaluation
drew: the same seed)."""


def _figure(
    out_dir: Path, test: Path, models: dict[str, Path], steps: int, figure_format: str
) -> list[Path]:
    """Sample 0 of the held-out data beside base and fine-tuned samples of the same noise
    (shared colour scales), and the histogram of the residual MSE of the first
    :data:`FIGURE_SAMPLES` samples of each model against the data's own."""
    import torch

    import pirf.data
    from pirf.evaluation.figures import REFERENCE_LABEL, save_comparison, save_residual_histogram
    from pirf.models import load_model
    from pirf.pdes.residuals import residual_per_sample
    from pirf.sampling.from_checkpoint import to_physical
    from pirf.sampling.generate import generate

    data = pirf.data.load(test)
    try:
        pde = data.pde
        reference = data.fields().to(torch.float64)
    finally:
        data.close()
    rows = [(REFERENCE_LABEL, reference[:1])]
    per_sample = {}
    for label, checkpoint in models.items():
        model = load_model(checkpoint)
        result = generate(model.denoiser, FIGURE_SAMPLES, model.shape, 0, steps=steps)
        fields = pde.snap(to_physical(model, result.samples))
        rows.append((label, fields[:1]))
        per_sample[label] = residual_per_sample(pde, fields)[0]
    samples = save_comparison(
        out_dir / "demo",
        [(label, fields, pde.residual(fields)) for label, fields in rows],
        channels=tuple(pde.channels),
        title=f"{pde.name}: the same noise through the base and the PIRF model, {steps} Heun "
        "steps, beside a data sample",
        figure_format=figure_format,
    )
    histogram = save_residual_histogram(
        out_dir / "demo-residuals",
        per_sample,
        reference=residual_per_sample(pde, reference)[0],
        title=f"{pde.name}: residual MSE of each sample, {steps} Heun steps",
        figure_format=figure_format,
    )
    return [samples, histogram]


def demo(
    out_dir: Annotated[
        Path, typer.Option("--out", help="Directory the demo writes its files into.")
    ] = Path("demo-output"),
    from_scratch: Annotated[
        bool,
        typer.Option(
            "--from-scratch",
            help="Generate the training set and train the base "
            "model here (about 10 more minutes on 2 cores) instead of the shipped one.",
        ),
    ] = False,
    iters: Annotated[int, typer.Option("--iters", help="Fine-tuning iterations.")] = RUN["iters"],
    n_eval: Annotated[
        int, typer.Option("--eval-n", help="Samples per model in the final evaluation.")
    ] = 128,
    device: Annotated[
        str, typer.Option("--device", help="cpu, cuda, cuda:N or auto (CUDA when available).")
    ] = "auto",
    figure_format: FigureFormatOpt = "png",
    threads: ThreadsOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Base model -> PIRF fine-tuning -> evaluation at 20 steps, with a table and figures."""
    import torch

    import pirf.data
    from pirf.assets import shipped_checkpoint
    from pirf.checks import check_device, check_output_dir
    from pirf.evaluation.figures import check_figure_format
    from pirf.evaluation.protocol import evaluate_checkpoint
    from pirf.finetune import FinetuneConfig, finetune
    from pirf.models import resolve_checkpoint
    from pirf.training import TrainConfig, train

    use_threads(threads)
    if iters <= 0 or n_eval < 4:
        raise PirfError("--iters must be positive and --eval-n at least 4")
    check_figure_format(figure_format)
    device = str(check_device(device))
    check_output_dir(out_dir, "out")
    if not from_scratch:
        shipped_checkpoint(BASE)
    began = time.perf_counter()
    seconds: dict[str, float] = {}
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PirfError(f"cannot create {out_dir}: {error.strerror}") from None
    data_dir = out_dir / "data"
    data_dir.mkdir(exist_ok=True)

    _stage(as_json, f"generating {TEST_SAMPLES} held-out {PDE} fields (tiny preset)")
    test = data_dir / "test.h5"
    pirf.data.generate(
        PDE, TEST_SAMPLES, None, DATA_SEED, test, preset="tiny", split="test", force=True
    )
    seconds["data"] = time.perf_counter() - began

    if from_scratch:
        _stage(as_json, f"generating {TRAIN_SAMPLES} training fields and training the base model")
        mark = time.perf_counter()
        train_file = data_dir / "train.h5"
        pirf.data.generate(
            PDE, TRAIN_SAMPLES, None, DATA_SEED, train_file, preset="tiny", force=True
        )
        shutil.rmtree(out_dir / "base", ignore_errors=True)
        train(
            TrainConfig.of(
                data=train_file,
                out=out_dir / "base",
                preset="tiny",
                device=device,
                progress=not as_json,
                figure_every=0,
                figure_format=figure_format,
            )
        )
        base = out_dir / "base" / "checkpoint"
        seconds["base_training"] = time.perf_counter() - mark
    else:
        base = shipped_checkpoint(BASE)
        _stage(as_json, f"base model: the shipped {BASE} checkpoint")

    _stage(as_json, "PIRF fine-tuning (last 2 of 20 Heun steps, finest decoder blocks)")
    mark = time.perf_counter()
    run_dir = out_dir / "pirf"
    shutil.rmtree(run_dir, ignore_errors=True)
    summary = finetune(
        FinetuneConfig.of(
            ckpt=base,
            out=run_dir,
            reference=test,
            device=device,
            progress=not as_json,
            figure_format=figure_format,
            **{**RUN, "iters": iters},
        )
    )
    seconds["finetune"] = time.perf_counter() - mark
    # The run directory's checkpoint, as every command takes it: best/ (chosen on the
    # evaluation seeds inside the fidelity band), which the bench reports too.
    tuned, kind = resolve_checkpoint(run_dir)
    _stage(as_json, f"fine-tuned model: {tuned} ({kind})")

    _stage(as_json, f"evaluating both models on {n_eval} samples at 20 steps (seed 0)")
    mark = time.perf_counter()
    rows = {}
    for label, checkpoint in (("base", base), ("pirf", tuned)):
        report = evaluate_checkpoint(checkpoint, test, steps=(20,), n=n_eval, seed=0, device=device)
        rows[label] = _metrics(report["rows"][0])
        ground_truth = report["ground_truth"]["headline"]
    seconds["evaluation"] = time.perf_counter() - mark
    figures = _figure(out_dir, test, {"base": base, "PIRF": tuned}, 20, figure_format)
    seconds["total"] = time.perf_counter() - began

    payload = {
        "pde": PDE,
        "steps": 20,
        "n_eval": n_eval,
        "base": rows["base"],
        "pirf": rows["pirf"],
        "ground_truth": {
            "residual_mse": ground_truth["residual_mse"],
            "fidelity": ground_truth["mmd"],
        },
        "residual_reduction": rows["base"]["residual_mse"] / rows["pirf"]["residual_mse"],
        "fidelity_ratio": rows["pirf"]["fidelity"] / rows["base"]["fidelity"],
        "consistency_ratio": rows["pirf"]["consistency"] / rows["base"]["consistency"],
        "finetune": {
            key: summary[key]
            for key in (
                "iterations",
                "seconds_per_iteration",
                "trainable_parameters",
                "parameters",
                "peak_memory_gib",
                "stopped",
            )
        },
        "base_checkpoint": str(base),
        "pirf_checkpoint": str(tuned),
        "figure": str(figures[0]),
        "histogram": str(figures[1]),
        "curves": summary.get("figures", []),
        "seconds": seconds["total"],
        "stage_seconds": seconds,
        "threads": torch.get_num_threads(),
    }
    if as_json:
        emit_json(payload)
        return
    _print(payload)


def _print(payload: dict[str, Any]) -> None:
    table = Table(
        title=f"{payload['pde']}, {payload['steps']} Heun steps, {payload['n_eval']} samples "
        "each (fidelity: field MMD to held-out data, lower is closer)",
        title_justify="left",
    )
    for column in (
        "model",
        "residual MSE",
        "median",
        "p90",
        "consistency",
        "fidelity",
        "spectrum err.",
        "diversity",
    ):
        table.add_column(column, justify="left" if column == "model" else "right")
    truth = payload["ground_truth"]
    table.add_row("ground truth", f"{truth['residual_mse']:.3g}", "", "", "", "", "", "")
    for label in ("base", "pirf"):
        row = payload[label]
        table.add_row(
            "base model" if label == "base" else "PIRF",
            f"{row['residual_mse']:.3g}",
            f"{row['residual_mse_median']:.3g}",
            f"{row['residual_mse_p90']:.3g}",
            f"{row['consistency']:.3g}",
            f"{row['fidelity']:.3g} (floor {row['fidelity_floor']:.2g})",
            f"{row['spectrum_error']:.3g}",
            f"{row['diversity']:.3f}",
        )
    console.print(table)
    tune = payload["finetune"]
    console.print(
        f"residual {payload['residual_reduction']:.1f}x lower, fidelity "
        f"{payload['fidelity_ratio']:.2f}x the base model's; fine-tuning: "
        f"{tune['iterations']} iterations, {tune['seconds_per_iteration']:.2f} s each, "
        f"{tune['trainable_parameters']:,} of {tune['parameters']:,} parameters trained",
        highlight=False,
    )
    before, after = payload["base"]["consistency"], payload["pirf"]["consistency"]
    verdict = "worse" if after > before else "better" if after < before else "unchanged"
    console.print(
        f"solver consistency {verdict}: {before:.3g} -> {after:.3g} (relative L2 distance "
        "between the generated u and a re-solve from the generated a; lower is better)",
        highlight=False,
    )
    console.print(
        f"figures {payload['figure']}, {payload['histogram']}; curves "
        f"{', '.join(payload['curves'])}; "
        f"{payload['seconds']:.0f} s in all on {payload['threads']} thread(s)",
        highlight=False,
    )
