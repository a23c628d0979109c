"""Base prior against PIRF prior on forward and inverse problems (the table of docs/solve.md).

For one PDE, two priors (``--base``, ``--pirf``) and two problems (forward: the coefficient
``a`` observed wholly; inverse: ``--points`` random points of the solution ``u``):

1. the guidance steps are chosen per prior and problem on *validation* fields (the first
   ``--tune-n`` fields of ``--val``), at the first step count: first ``zeta_obs`` over
   :data:`ZETA_OBS_GRID` with observation guidance alone (below 2: on the last steps the
   denoiser is nearly the identity and a step of ``zeta_obs`` multiplies the misfit of the
   estimate by ``1 - zeta_obs``), then PDE guidance added at that
   ``zeta_obs`` with each ``zeta_pde`` of :data:`ZETA_PDE_GRID`, kept only if it lowers the
   score; the score is the mean relative L2 error of the channels not observed wholly;
2. with the chosen steps, the first ``--n`` fields of ``--test`` are solved at each step
   count of ``--steps`` and the errors and residual reported, with the ``pirf solve``
   command of each row.

Usage (numbers in docs/solve.md)::

    python benchmarks/solve_table.py --pde poisson --base BASE --pirf PIRF \\
        --val val.h5 --test test.h5 --n 16 --tune-n 8 --steps 20,100 --out solve-poisson
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path
from typing import Any

from pirf.solve.observe import parse_observations
from pirf.solve.solver import solve

ZETA_OBS_GRID = (0.5, 1.0, 1.5, 1.9)
ZETA_PDE_GRID = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


def score(summary: dict[str, Any], problem: str) -> float:
    """Mean relative L2 error of the channels that ``problem`` does not observe wholly."""
    wholly = {o.channel for o in parse_observations([problem]) if o.points is None}
    free = [e for channel, e in summary["relative_l2"].items() if channel not in wholly]
    return sum(free) / len(free)


def command(prior: str, reference: str, problem: str, setting: dict, out: str, n: int) -> str:
    words = ["pirf", "solve", "--ckpt", prior, "--reference", reference, "--observe", problem]
    words += ["--steps", str(setting["steps"]), "--n", str(n)]
    words += ["--zeta-obs", f"{setting['zeta_obs']:g}"]
    if setting.get("zeta_pde"):
        words += ["--guidance", "obs,pde", "--zeta-pde", f"{setting['zeta_pde']:g}"]
    return shlex.join([*words, "--out-file", out, "--json"])


def run(prior: str, reference: str, problem: str, setting: dict, out: Path, n: int) -> dict:
    pde_step = setting.get("zeta_pde") or 0.0
    summary = solve(
        prior,
        reference,
        parse_observations([problem]),
        out,
        n=n,
        steps=setting["steps"],
        guidance=("obs", "pde") if pde_step else ("obs",),
        zeta_obs=setting["zeta_obs"],
        zeta_pde=pde_step,
        force=True,
    )
    summary["score"] = score(summary, problem)
    print(
        f"  {problem:>8} {setting} -> score {summary['score']:.4g}, "
        f"residual {summary['residual_mse']:.3g} ({summary['seconds']:.0f} s)",
        flush=True,
    )
    return summary


def tune(prior: str, val: str, problem: str, steps: int, n: int, folder: Path) -> dict:
    """The chosen setting and every score, on validation fields."""
    trials = []
    for zeta_obs in ZETA_OBS_GRID:
        setting = {"steps": steps, "zeta_obs": zeta_obs}
        trials.append((setting, run(prior, val, problem, setting, folder / "tune.h5", n)))
    best = min(trials, key=lambda t: t[1]["score"])[0]
    for zeta_pde in ZETA_PDE_GRID:
        setting = {**best, "zeta_pde": zeta_pde}
        trials.append((setting, run(prior, val, problem, setting, folder / "tune.h5", n)))
    chosen, summary = min(trials, key=lambda t: t[1]["score"])
    return {
        "chosen": {k: v for k, v in chosen.items() if k != "steps"},
        "val_score": summary["score"],
        "trials": [
            {**s, "score": r["score"], "residual_mse": r["residual_mse"]} for s, r in trials
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pde", required=True)
    parser.add_argument("--base", required=True)
    parser.add_argument("--pirf", required=True)
    parser.add_argument("--val", required=True)
    parser.add_argument("--test", required=True)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--tune-n", type=int, default=8)
    parser.add_argument("--points", type=int, default=500)
    parser.add_argument("--steps", default="20,100")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    problems = {"forward": "a=all", "inverse": f"u={args.points}"}
    results: dict[str, Any] = {"pde": args.pde, "n": args.n, "tune_n": args.tune_n, "rows": []}
    for label, prior in (("base", args.base), ("pirf", args.pirf)):
        for kind, problem in problems.items():
            print(f"{args.pde} {label} {kind}: tuning on {args.val}", flush=True)
            tuned = tune(prior, args.val, problem, steps[0], args.tune_n, args.out)
            for count in steps:
                setting = {"steps": count, **tuned["chosen"]}
                out = args.out / f"{label}-{kind}-{count}.h5"
                summary = run(prior, args.test, problem, setting, out, args.n)
                results["rows"].append(
                    {
                        **summary,
                        "prior": label,
                        "problem": kind,
                        "observe": problem,
                        "tuning": tuned,
                        "command": command(prior, args.test, problem, setting, str(out), args.n),
                    }
                )
                (args.out / "table.json").write_text(json.dumps(results, indent=1))
    print(
        "| problem | steps | prior | zeta_obs | zeta_pde | rel. L2 a | rel. L2 u | residual MSE |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in results["rows"]:
        errors = row["relative_l2"]
        print(
            f"| {row['problem']} ({row['observe']}) | {row['steps']} | {row['prior']} | "
            f"{row['zeta_obs']:g} | {row['zeta_pde']:g} | {errors['a']:.4f} | "
            f"{errors['u']:.4f} | {row['residual_mse']:.3g} |"
        )


if __name__ == "__main__":
    main()
