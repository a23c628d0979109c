"""Cost and effect of each PIRF truncation mode, measured side by side.

For every configuration (K = 1, K = 2, full back-propagation with checkpointing; all
layers, the top layers, LoRA; weight vs distillation regulariser) one fine-tuning run of a
fixed budget from the same base checkpoint, in a fresh process, reporting:

* seconds per iteration (median over the run's iterations),
* peak memory: on CUDA ``max_memory_allocated``; on the CPU the bytes autograd saves for
  the backward pass in one iteration (saved-tensor hooks; the activation memory that
  truncation is about) and the process's peak RSS,
* residual MSE and fidelity (joint MMD) of the final weights at the evaluation budget, and
  their ratios to the base model (same fixed seeds for every configuration), and the
  diversity of the samples (final / base; shrunken samples show as a drop).

``--speed`` measures only the cost of an iteration, on a freshly initialised network of a
model preset (``--preset paper --resolution 128 --batch 20`` is the reference loop's
setting; the reward is a plain quadratic, whose cost is negligible): median seconds per
iteration over ``--repeats`` iterations after one warm-up, and peak memory.

Usage (numbers in docs/BENCHMARKS.md)::

    python benchmarks/bench_finetune.py --speed --preset tiny --resolution 32 --batch 8
    python benchmarks/bench_finetune.py --speed --preset paper --resolution 128 --batch 20 \
        --device cuda --only k2-all,k2-top,k2-top-ckpt

    python benchmarks/bench_finetune.py --ckpt BASE/checkpoint --reference test.h5 \\
        --iters 40 --batch 8 --out bench-finetune [--device cuda] [--only k2-top,k1-top]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

CONFIGS: dict[str, dict] = {
    "k1-top": {"truncation": 1, "trainable": "top"},
    "k2-top": {"truncation": 2, "trainable": "top"},
    "k2-all": {"truncation": 2, "trainable": "all"},
    "k2-lora": {"truncation": 2, "trainable": "lora", "lr_factor": 10.0},
    "k2-lora-lr1x": {"truncation": 2, "trainable": "lora"},
    "k2-lora-lr3x": {"truncation": 2, "trainable": "lora", "lr_factor": 3.0},
    "k2-lora-all": {"truncation": 2, "trainable": "lora", "lora_layers": "all", "lr_factor": 10.0},
    "k2-lora-all-lr1x": {"truncation": 2, "trainable": "lora", "lora_layers": "all"},
    "full-top": {"mode": "full", "trainable": "top"},
    "full-all": {"mode": "full", "trainable": "all"},
    "full-lora": {"mode": "full", "trainable": "lora"},
    "full-lora-lr10x": {"mode": "full", "trainable": "lora", "lr_factor": 10.0},
    "k2-top-ckpt": {"truncation": 2, "trainable": "top", "checkpointing": True},
    "k2-top-compile": {"truncation": 2, "trainable": "top", "compile": True},
    "k2-top1": {"truncation": 2, "trainable": "top", "top_blocks": 1},
    "k2-top-lr3e-5": {"truncation": 2, "trainable": "top", "lr_factor": 0.3},
    "k2-top-lr3e-4": {"truncation": 2, "trainable": "top", "lr_factor": 3.0},
    "k3-top": {"truncation": 3, "trainable": "top"},
    "k5-top": {"truncation": 5, "trainable": "top"},
    "k5-lora": {"truncation": 5, "trainable": "lora", "lr_factor": 10.0},
    "k2-top-distill": {"truncation": 2, "trainable": "top", "weight_reg": 0.0, "distill_reg": 1.0},
    "k2-all-distill": {"truncation": 2, "trainable": "all", "weight_reg": 0.0, "distill_reg": 1.0},
}
"""Name -> FinetuneConfig changes; ``lr_factor`` multiplies ``--lr``. LoRA's factors start
at zero and move more slowly, so its learning rate is 10x (a usual LoRA setting); LoRA
adapts the top layers unless the row says ``all`` (every conv and linear layer). The
``top1`` / ``lr`` / ``k3`` rows study the recipe's knobs one at a time."""


def saved_bytes(config_kwargs: dict, ckpt: str, device: str) -> int:
    """Bytes autograd saves for one iteration's backward pass (CPU-meaningful memory)."""
    import torch

    from pirf.finetune import FinetuneConfig, PIRFTrainer
    from pirf.models import load_model

    model = load_model(ckpt, device=device)
    config = FinetuneConfig.of(**config_kwargs)
    trainer = PIRFTrainer(
        model.denoiser.float(),
        config,
        shape=model.shape,
        pde=model.pde,
        normalisation=model.normalisation,
        device=device,
    )
    total = 0
    seen: set[int] = set()

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal total
        key = tensor.untyped_storage().data_ptr()
        if key not in seen and not isinstance(tensor, torch.nn.Parameter):
            seen.add(key)
            total += tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        trainer.step(0)
    return total


def speed(args: argparse.Namespace, name: str) -> dict:
    """Seconds per iteration and peak memory of one configuration on a fresh network."""
    import statistics
    import time

    import torch

    from pirf.finetune import FinetuneConfig, PIRFTrainer
    from pirf.models import preset_denoiser

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    changes = dict(CONFIGS[name])
    changes.pop("lr_factor", None)
    torch.manual_seed(0)
    model = preset_denoiser(args.preset, channels=2, resolution=args.resolution)
    config = FinetuneConfig.of(batch=args.batch, steps=args.steps, iters=10**6, **changes)
    trainer = PIRFTrainer(
        model,
        config,
        shape=(2, args.resolution, args.resolution),
        device=device,
        loss_fn=lambda x: x.square().flatten(1).mean(1),
    )
    times = []
    for iteration in range(args.repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            if iteration == 1:
                torch.cuda.reset_peak_memory_stats(device)
        began = time.perf_counter()
        trainer.step(iteration)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if iteration:
            times.append(time.perf_counter() - began)
    peak = (
        torch.cuda.max_memory_allocated(device) / 2**30
        if device.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    )
    return {
        "config": name,
        "seconds_per_iteration": statistics.median(times),
        "peak_memory_gib": peak,
        "trainable_parameters": trainer.parameter_count,
        "parameters": sum(p.numel() for p in trainer.ema.parameters()),
    }


def child(args: argparse.Namespace) -> None:
    """One configuration in this process; prints one JSON line."""
    import torch

    from pirf.finetune import FinetuneConfig, finetune

    torch.set_num_threads(args.threads)
    changes = dict(CONFIGS[args.child])
    lr = args.lr * changes.pop("lr_factor", 1.0)
    common = {
        "ckpt": args.ckpt,
        "reference": args.reference,
        "iters": args.iters,
        "batch": args.batch,
        "lr": lr,
        "device": args.device,
        "eval_every": 0,
        "eval_n": args.eval_n,
        "eval_steps": (args.steps,),
        "steps": args.steps,
        "fidelity_band": 0,
        "drift_guard": 0,
        "progress": False,
        "figures": False,
        "checkpoint_every": 10**9,
        **changes,
    }
    with tempfile.TemporaryDirectory() as folder:
        summary = finetune(FinetuneConfig.of(out=Path(folder) / "run", **common))
    saved = None
    if args.device == "cpu":
        saved = saved_bytes({**common, "ckpt": None, "reference": None}, args.ckpt, args.device)
    base, final = summary["base"], summary["final"]
    key = str(args.steps)
    print(
        json.dumps(
            {
                "config": args.child,
                "seconds_per_iteration": summary["seconds_per_iteration"],
                "peak_memory_gib": summary["peak_memory_gib"],
                "peak_memory_kind": summary["peak_memory_kind"],
                "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                "saved_activation_mib": None if saved is None else saved / 2**20,
                "trainable_parameters": summary["trainable_parameters"],
                "base_residual": base["residual_mse"][key],
                "residual": final["residual_mse"][key],
                "residual_ratio": base["residual_mse"][key] / final["residual_mse"][key],
                "base_fidelity": base["fidelity"]["mmd"],
                "fidelity": final["fidelity"]["mmd"],
                "fidelity_ratio": final["fidelity"]["mmd"] / base["fidelity"]["mmd"],
                "base_diversity": base["fidelity"].get("diversity"),
                "diversity": final["fidelity"].get("diversity"),
                "nonfinite_gradients": summary["nonfinite_gradients"],
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", help="base checkpoint (quality runs)")
    parser.add_argument("--reference", help="held-out data (quality runs)")
    parser.add_argument("--speed", action="store_true", help="cost only, fresh network")
    parser.add_argument("--preset", default="tiny", help="model preset (--speed)")
    parser.add_argument("--resolution", type=int, default=32, help="grid side (--speed)")
    parser.add_argument("--repeats", type=int, default=5, help="timed iterations (--speed)")
    parser.add_argument("--iters", type=int, default=40)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--eval-n", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", default=None, help="comma-separated configuration names")
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child and args.speed:
        print(json.dumps(speed(args, args.child)))
        return
    if args.child:
        child(args)
        return
    if args.speed:
        print(f"{'config':16} {'s/iter':>8} {'peak GiB':>9} {'trainable':>11} {'parameters':>11}")
        for name in args.only.split(",") if args.only else list(CONFIGS):
            command = [sys.executable, __file__, *sys.argv[1:], "--child", name]
            result = subprocess.run(command, capture_output=True, text=True, env=os.environ)
            if result.returncode != 0:
                print(f"{name}: failed\n{result.stderr[-2000:]}", flush=True)
                continue
            row = json.loads(result.stdout.strip().splitlines()[-1])
            print(
                f"{name:16} {row['seconds_per_iteration']:8.3f} {row['peak_memory_gib']:9.2f} "
                f"{row['trainable_parameters']:11d} {row['parameters']:11d}",
                flush=True,
            )
        return
    if not (args.ckpt and args.reference):
        parser.error("quality runs need --ckpt and --reference (or pass --speed)")
    names = args.only.split(",") if args.only else list(CONFIGS)
    rows = []
    header = (
        f"{'config':16} {'s/iter':>7} {'peak':>9} {'saved MiB':>9} {'params':>9} "
        f"{'residual':>9} {'x base':>7} {'fidelity':>9} {'x base':>7} {'diversity':>9}"
    )
    print(header, flush=True)
    for name in names:
        command = [sys.executable, __file__, *sys.argv[1:], "--child", name]
        result = subprocess.run(command, capture_output=True, text=True, env=os.environ)
        if result.returncode != 0:
            print(f"{name}: failed\n{result.stderr[-2000:]}", flush=True)
            continue
        row = json.loads(result.stdout.strip().splitlines()[-1])
        rows.append(row)
        saved = row["saved_activation_mib"]
        diversity = "-"
        if row.get("diversity") is not None and row.get("base_diversity") is not None:
            diversity = f"{row['diversity']:.2f}/{row['base_diversity']:.2f}"
        print(
            f"{name:16} {row['seconds_per_iteration']:7.3f} {row['peak_memory_gib']:8.2f}G "
            f"{'-' if saved is None else format(saved, '9.1f'):>9} "
            f"{row['trainable_parameters']:9d} {row['residual']:9.3g} "
            f"{1 / row['residual_ratio']:7.3f} {row['fidelity']:9.3g} "
            f"{row['fidelity_ratio']:7.3f} {diversity}",
            flush=True,
        )
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
