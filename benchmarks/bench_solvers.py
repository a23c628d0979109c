"""Data-generation speed of every PDE solver: samples per second by resolution and device.

Usage:
    python benchmarks/bench_solvers.py [--pdes all|darcy,poisson] [--resolutions 32,64,128]
        [--device cpu|cuda|all] [--dtype float64|float32] [--repeats 3] [--json]
    python benchmarks/bench_solvers.py --tiny-set 4000     # time a whole tiny training set

Each measurement generates one batch (random inputs + solve) ``--repeats`` times after a
warm-up run and reports the median. Kolmogorov yields several samples per trajectory; its
batch is counted in samples, not trajectories.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import torch

import pirf.pdes
from pirf.seeding import unit_generators


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _pde_for(name: str, resolution: int) -> pirf.pdes.PDE:
    pde_class = pirf.pdes.get_class(name)
    preset = pde_class.preset_for_resolution(resolution)
    return pde_class.from_preset(preset) if preset else pde_class()


def time_generation(
    name: str,
    resolution: int,
    samples: int,
    device: torch.device,
    dtype: torch.dtype,
    repeats: int,
) -> dict:
    """Median seconds to generate ``samples`` samples of PDE ``name`` in one batch."""
    pde = _pde_for(name, resolution)
    units = math.ceil(samples / pde.samples_per_unit(resolution))
    produced = units * pde.samples_per_unit(resolution)
    timings = []
    for repeat in range(repeats + 1):  # the first run warms up caches and kernels
        generators = unit_generators(repeat, "train", range(units))
        _sync(device)
        start = time.perf_counter()
        pde.generate(generators, resolution, device=device, dtype=dtype)
        _sync(device)
        if repeat:
            timings.append(time.perf_counter() - start)
    seconds = statistics.median(timings)
    return {
        "pde": name,
        "resolution": resolution,
        "device": str(device),
        "dtype": str(dtype),
        "batch": produced,
        "seconds": seconds,
        "samples_per_s": produced / seconds,
        "params": pde.params,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pdes", default="all")
    parser.add_argument("--resolutions", default="32,64,128")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "all"])
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=0, help="samples per batch (0: by size)")
    parser.add_argument("--tiny-set", type=int, default=0, help="time a whole N-sample 32^2 set")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    names = pirf.pdes.names() if args.pdes == "all" else args.pdes.split(",")
    names = [n for n in names if pirf.pdes.get_class(n)().can_generate]
    devices = {"cpu": ["cpu"], "cuda": ["cuda"], "all": ["cpu", "cuda"]}[args.device]
    devices = [torch.device(d) for d in devices if d == "cpu" or torch.cuda.is_available()]
    dtype = getattr(torch, args.dtype)
    rows = []
    if args.tiny_set:
        for name in names:
            rows.append(time_generation(name, 32, args.tiny_set, devices[0], dtype, 1))
    else:
        for device in devices:
            for resolution in (int(r) for r in args.resolutions.split(",")):
                default_batch = {"cpu": max(8, 2**15 // resolution**2 * 16)}.get(device.type, 512)
                batch = args.batch or min(default_batch, 256)
                for name in names:
                    rows.append(
                        time_generation(name, resolution, batch, device, dtype, args.repeats)
                    )
    if args.json:
        print(json.dumps({"threads": torch.get_num_threads(), "rows": rows}, indent=1))
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, dtype {args.dtype}")
    print(f"{'pde':<11} {'res':>4} {'device':<7} {'batch':>6} {'seconds':>9} {'samples/s':>10}")
    for row in rows:
        print(
            f"{row['pde']:<11} {row['resolution']:>4} {row['device']:<7} {row['batch']:>6} "
            f"{row['seconds']:>9.3f} {row['samples_per_s']:>10.1f}"
        )


if __name__ == "__main__":
    main()
