"""``pirf finetune``: PIRF fine-tuning of a base checkpoint (resumable).

A thin wrapper over :func:`pirf.finetune.finetune`: options left out take the recipe's
defaults (or, with ``--resume``, the run's stored values); progress goes to stderr; the
summary is a table, or one JSON object with ``--json``. Several GPUs:
``torchrun --nproc-per-node N --no-python pirf finetune ...``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from pirf.cli._common import ThreadsOpt, console, emit_json, use_threads
from pirf.errors import PirfError
from pirf.finetune import FinetuneConfig
from pirf.finetune import finetune as run_finetune
from pirf.finetune.config import recipe
from pirf.models import read_checkpoint_info


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
            f"{summary['mode']}, K={summary['truncation']}, N={summary['sampler_steps']}",
        ),
        ("s / iteration", _fmt(summary["seconds_per_iteration"], ".3f")),
        ("peak memory", f"{summary['peak_memory_gib']:.2f} GiB ({summary['peak_memory_kind']})"),
        ("seconds", f"{summary['seconds']:.1f} (run total {summary['total_seconds']:.1f})"),
        ("checkpoint", str(summary["checkpoint"])),
        ("best", _best(summary)),
    ]
    if summary["stopped"]:
        rows.append(("stopped", summary["stopped"]["reason"]))
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


def finetune(
    ckpt: Annotated[Path, typer.Option("--ckpt", help="Base checkpoint directory.")],
    out: Annotated[Path, typer.Option("--out", help="Run directory.")],
    sampler_steps: Annotated[
        int | None, typer.Option("--sampler-steps", help="Heun steps N per trajectory; 20.")
    ] = None,
    truncation: Annotated[
        int | None,
        typer.Option(
            "--truncation",
            help="K: differentiable last steps; 2 (helmholtz, kolmogorov, lora: 5).",
        ),
    ] = None,
    mode: Annotated[
        str | None,
        typer.Option(
            "--mode", help="draft (last K steps), full (all, checkpointed), refl, draft-lv; draft."
        ),
    ] = None,
    trainable: Annotated[
        str | None,
        typer.Option("--trainable", help="top (layer-wise truncation), all or lora; top."),
    ] = None,
    top_blocks: Annotated[
        int | None,
        typer.Option("--top-blocks", help="Full-resolution decoder blocks 'top' trains; all."),
    ] = None,
    lora_rank: Annotated[int | None, typer.Option("--lora-rank", help="LoRA rank; 4.")] = None,
    lora_layers: Annotated[
        str | None,
        typer.Option("--lora-layers", help="LoRA on: top (as --top-blocks) or all layers; top."),
    ] = None,
    weight_reg: Annotated[
        float | None,
        typer.Option(
            "--weight-reg",
            help="lambda of ||theta - theta_pretrained||^2; 1e-3 (kolmogorov: 100).",
        ),
    ] = None,
    distill_reg: Annotated[
        float | None,
        typer.Option("--distill-reg", help="mu of the distillation penalty; 0 (off)."),
    ] = None,
    norm: Annotated[str | None, typer.Option("--norm", help="Residual norm: mse or mae.")] = None,
    reward: Annotated[
        str | None,
        typer.Option(
            "--reward",
            help="Which residual norm the reward takes: residual (the evaluation's), "
            "preconditioned (every scale of the solution's error alike), mixed (both) or "
            "multiscale; residual.",
        ),
    ] = None,
    reward_weight: Annotated[
        float | None,
        typer.Option(
            "--reward-weight",
            help="With --reward mixed: the preconditioned term's weight against the "
            "residual term's; 1.",
        ),
    ] = None,
    reward_snap: Annotated[
        bool,
        typer.Option(
            "--reward-snap",
            help="The reward sees the fields snapped as evaluation snaps them "
            "(straight-through gradient).",
        ),
    ] = False,
    lr: Annotated[
        float | None,
        typer.Option(
            "--lr",
            help="Peak learning rate; 1e-4 (darcy, burgers, kolmogorov: 3e-5; "
            "--trainable lora: 10x that).",
        ),
    ] = None,
    batch: Annotated[
        int | None, typer.Option("--batch", help="Trajectories per iteration; 16.")
    ] = None,
    iters: Annotated[int | None, typer.Option("--iters", help="Iterations; 200.")] = None,
    warmup: Annotated[
        int | None, typer.Option("--warmup", help="Warm-up iterations; 5% of --iters.")
    ] = None,
    ema_halflife: Annotated[
        float | None,
        typer.Option("--ema-halflife", help="EMA half-life in trajectories; 0 (no averaging)."),
    ] = None,
    grad_clip: Annotated[
        float | None, typer.Option("--grad-clip", help="Gradient-norm clip (0: off); 1.")
    ] = None,
    pool: Annotated[
        int | None,
        typer.Option(
            "--pool",
            help="Amortised trajectories: keep this many window-start states and remake "
            "only --pool-refresh per iteration; 0 (off).",
        ),
    ] = None,
    pool_refresh: Annotated[
        int | None,
        typer.Option("--pool-refresh", help="States remade per iteration; a quarter of --batch."),
    ] = None,
    random_steps: Annotated[
        str | None,
        typer.Option("--random-steps", help="Draw N per iteration from these, e.g. 20,40,80."),
    ] = None,
    checkpointing: Annotated[
        bool,
        typer.Option(
            "--checkpointing",
            help="Recompute each differentiable step's activations "
            "in the backward pass (less memory).",
        ),
    ] = False,
    compile_steps: Annotated[
        bool,
        typer.Option(
            "--compile",
            help="torch.compile the network for the sampler steps without gradient.",
        ),
    ] = False,
    fp32_steps: Annotated[
        int | None,
        typer.Option("--fp32-steps", help="Last sampler steps in float32 under bf16; 2."),
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the run; 0.")] = None,
    reference: Annotated[
        Path | None,
        typer.Option(
            "--reference",
            help="Held-out data for fidelity; default: the base model's training set.",
        ),
    ] = None,
    eval_every: Annotated[
        int | None, typer.Option("--eval-every", help="Iterations between evaluations; 25.")
    ] = None,
    eval_n: Annotated[
        int | None, typer.Option("--eval-n", help="Samples per evaluation; 64.")
    ] = None,
    eval_steps: Annotated[
        str | None, typer.Option("--eval-steps", help="Budgets evaluated; 20,40,80.")
    ] = None,
    fidelity_band: Annotated[
        float | None,
        typer.Option("--fidelity-band", help="Stop when fidelity exceeds this x the base's; 1.5."),
    ] = None,
    no_fidelity_guard: Annotated[
        bool, typer.Option("--no-fidelity-guard", help="Never stop on fidelity.")
    ] = False,
    drift_guard: Annotated[
        float | None,
        typer.Option(
            "--drift-guard", help="Stop when the smoothed loss exceeds this x its lowest; 3."
        ),
    ] = None,
    no_drift_guard: Annotated[
        bool, typer.Option("--no-drift-guard", help="Never stop on a drifting loss.")
    ] = False,
    checkpoint_every: Annotated[
        int | None, typer.Option("--checkpoint-every", help="Iterations between checkpoints.")
    ] = None,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N or auto.")] = "auto",
    bf16: Annotated[
        bool, typer.Option("--bf16/--no-bf16", help="bf16 in early sampler steps on CUDA.")
    ] = True,
    stop_at: Annotated[
        int | None, typer.Option("--stop-at", help="Stop this invocation after this iteration.")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --out from its checkpoint.")
    ] = False,
    no_figures: Annotated[bool, typer.Option("--no-figures", help="Draw no figures.")] = False,
    threads: ThreadsOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """PIRF fine-tune a base model: residual reward through the last sampler steps."""
    use_threads(threads)
    options: dict[str, Any] = {
        "sampler_steps": sampler_steps,
        "truncation": truncation,
        "mode": mode,
        "trainable": trainable,
        "top_blocks": top_blocks,
        "lora_rank": lora_rank,
        "lora_layers": lora_layers,
        "weight_reg": weight_reg,
        "distill_reg": distill_reg,
        "norm": norm,
        "reward": reward,
        "reward_weight": reward_weight,
        "lr": lr,
        "batch": batch,
        "iters": iters,
        "warmup": warmup,
        "ema_halflife": ema_halflife,
        "grad_clip": grad_clip,
        "random_steps": parse_steps(random_steps, "--random-steps"),
        "pool": pool,
        "pool_refresh": pool_refresh,
        "fp32_steps": fp32_steps,
        "seed": seed,
        "reference": reference,
        "eval_every": eval_every,
        "eval_n": eval_n,
        "eval_steps": parse_steps(eval_steps, "--eval-steps"),
        "fidelity_band": fidelity_band,
        "drift_guard": drift_guard,
        "checkpoint_every": checkpoint_every,
        "stop_at": stop_at,
    }
    given = {key: value for key, value in options.items() if value is not None}
    if no_fidelity_guard:
        given["fidelity_band"] = None
    if no_drift_guard:
        given["drift_guard"] = None
    if not bf16:
        given["bf16"] = False
    if checkpointing:
        given["checkpointing"] = True
    if reward_snap:
        given["reward_snap"] = True
    if compile_steps:
        given["compile"] = True
    if not resume and (ckpt / "checkpoint.json").is_file():
        # The recipe (per PDE, and for LoRA) fills in what the user left out
        # (docs/finetune.md).
        pde = read_checkpoint_info(ckpt).pde_name
        budgets = given.get("random_steps") or (
            given.get("sampler_steps", FinetuneConfig.sampler_steps),
        )
        given = {**recipe(pde, trainable, tuple(budgets)), **given}
    config = FinetuneConfig(
        ckpt=ckpt,
        out=out,
        device=device,
        resume=resume,
        progress=not as_json,
        figures=not no_figures,
        given=tuple(given),
        **given,
    )
    summary = run_finetune(config)
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
