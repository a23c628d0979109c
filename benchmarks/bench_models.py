"""Denoiser cost: training samples/s, sampling samples/s, peak memory (and TFLOP/s on GPU).

Usage:
    python benchmarks/bench_models.py [--presets tiny,small] [--resolution 32] [--channels 2]
        [--batch 32] [--device cpu|cuda] [--bf16] [--repeats 5] [--json]

Training step: EDM loss forward + backward + Adam step, median of ``--repeats`` after one
warm-up. Sampling: the deterministic Heun sampler at 20 steps (39 network evaluations).
Peak memory: CUDA's allocator peak on a GPU; on the CPU the growth of the process's
maximum resident set during the measurements (a coarse upper bound). On a GPU the training
step's FLOPs come from torch's FLOP counter and are divided by the measured time and by
``--peak-tflops`` (default 989: H100 SXM dense bf16).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import torch

from pirf.models import edm_loss, preset_denoiser
from pirf.sampling import generate


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _median_seconds(fn, repeats: int, device: torch.device) -> float:
    fn()
    _sync(device)
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def measure(preset: str, args: argparse.Namespace, device: torch.device) -> dict:
    torch.manual_seed(0)
    model = preset_denoiser(
        preset, channels=args.channels, resolution=args.resolution, bf16=args.bf16
    ).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    parameters = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    shape = (args.batch, args.channels, args.resolution, args.resolution)
    data = torch.randn(shape, device=device) * 0.5
    rss_before = _rss_mib()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        edm_loss(model, data).mean().backward()
        optimizer.step()

    model.train()
    train_seconds = _median_seconds(train_step, args.repeats, device)
    flops = None
    if device.type == "cuda":
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with counter:
            train_step()
        flops = counter.get_total_flops()
    train_peak = (
        torch.cuda.max_memory_allocated(device) / 2**20
        if device.type == "cuda"
        else _rss_mib() - rss_before
    )
    model.eval()
    n_sample = max(args.batch, 8)
    sample_seconds = _median_seconds(
        lambda: generate(
            model, n_sample, shape[1:], 0, steps=20, device=device, batch_size=n_sample
        ),
        max(1, args.repeats // 2),
        device,
    )
    row = {
        "preset": preset,
        "parameters": parameters,
        "resolution": args.resolution,
        "channels": args.channels,
        "batch": args.batch,
        "device": str(device),
        "bf16": args.bf16,
        "train_step_s": train_seconds,
        "train_samples_per_s": args.batch / train_seconds,
        "train_peak_mib": train_peak,
        "sample_samples_per_s": n_sample / sample_seconds,
        "sample_batch": n_sample,
    }
    if flops is not None:
        achieved = flops / train_seconds / 1e12
        row.update(train_tflops=achieved, peak_fraction=achieved / args.peak_tflops)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", default="tiny")
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--channels", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = [measure(p, args, device) for p in args.presets.split(",")]
    if args.json:
        print(json.dumps({"threads": torch.get_num_threads(), "rows": rows}, indent=1))
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}")
    print(
        f"{'preset':<7} {'params':>10} {'res':>4} {'batch':>5} {'step s':>8} "
        f"{'train/s':>8} {'peak MiB':>9} {'sample/s':>9} {'TFLOP/s':>8}"
    )
    for r in rows:
        tflops = f"{r['train_tflops']:.1f}" if "train_tflops" in r else "-"
        print(
            f"{r['preset']:<7} {r['parameters']:>10,} {r['resolution']:>4} {r['batch']:>5} "
            f"{r['train_step_s']:>8.3f} {r['train_samples_per_s']:>8.1f} "
            f"{r['train_peak_mib']:>9.0f} {r['sample_samples_per_s']:>9.2f} {tflops:>8}"
        )


if __name__ == "__main__":
    main()
