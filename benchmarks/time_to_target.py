"""Fine-tuning time until the residual first drops a given factor below the base model's.

Reads the ``metrics.jsonl`` of ``pirf finetune`` runs and prints, per run, the iteration
and the seconds of *training* (the logged seconds per iteration summed; evaluations left
out) at the first evaluation whose residual at the first evaluated budget is ``--factor``
times lower than the base model's, and the window starts made by then (sampler runs
without gradient from fresh noise: the cost that amortised trajectories cut). Compare
runs made side by side on the same machine: seconds are a ratio within one measurement.

Usage (numbers in docs/BENCHMARKS.md)::

    python benchmarks/time_to_target.py --factor 10 runs/recipe runs/pool
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def first_reach(records: list[dict[str, Any]], factor: float) -> dict[str, Any] | None:
    """The first evaluation ``factor`` x below the base one, with the training time and
    window starts up to it; None if never reached."""
    evals = [r for r in records if r.get("kind") == "eval"]
    if not evals:
        return None
    budget = next(iter(evals[0]["residual_mse"]))
    base = evals[0]["residual_mse"][budget]
    seconds, starts, done = 0.0, 0, 0
    trains = iter(r for r in records if r.get("kind") == "train")
    for evaluation in evals[1:]:
        for line in trains:
            count = line["iteration"] - done
            seconds += line["seconds_per_iteration"] * count
            starts += line.get("window_starts", 0)
            done = line["iteration"]
            if done >= evaluation["iteration"]:
                break
        value = evaluation["residual_mse"][budget]
        if value > 0 and base / value >= factor:
            return {
                "iteration": evaluation["iteration"],
                "train_seconds": seconds,
                "window_starts": starts,
                "ratio": base / value,
                "fidelity": evaluation.get("fidelity"),
            }
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run directories of pirf finetune")
    parser.add_argument("--factor", type=float, default=10.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = {}
    for run in args.runs:
        lines = (Path(run) / "metrics.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in lines if line.strip()]
        rows[run] = first_reach(records, args.factor)
    if args.json:
        print(json.dumps(rows))
        return
    for run, row in rows.items():
        if row is None:
            print(f"{run}: never {args.factor:g}x below the base")
        else:
            print(
                f"{run}: {row['ratio']:.1f}x at iteration {row['iteration']}, "
                f"{row['train_seconds']:.0f} s of training, {row['window_starts']} window starts"
            )


if __name__ == "__main__":
    main()
