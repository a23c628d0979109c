"""`pirf bench` end to end at CI size, resumable, with the report's promised content."""

import json

import pytest

from pirf.bench import resolve_methods, resolve_preset
from pirf.bench.report import pirf_bar
from pirf.cli import main

CI_SIZE = [
    "--eval-n",
    "8",
    "--select-n",
    "4",
    "--tune-iters",
    "2",
    "--tune-batch",
    "2",
    "--val",
    "8",
    "--test",
    "16",
]


def test_bench_poisson_base_diffusionpde_pirf_end_to_end(tmp_path, capsys):
    out = tmp_path / "bench"
    args = [
        "bench",
        "--preset",
        "tiny",
        "--pdes",
        "poisson",
        "--methods",
        "base,diffusionpde,pirf,pirf+c",
        "--steps",
        "20",
        "--out",
        str(out),
        *CI_SIZE,
    ]
    assert main([*args, "--results-json", str(tmp_path / "tiny.json")]) == 0
    report = json.loads((out / "report.json").read_text())
    rows = report["pdes"]["poisson"]["rows"]
    assert [r["method"] for r in rows] == ["base", "diffusionpde", "pirf", "pirf+c"]
    results = json.loads((tmp_path / "tiny.json").read_text())
    assert [r["method"] for r in results["pdes"]["poisson"]["rows"]] == [
        "base", "diffusionpde", "pirf", "pirf+c"
    ]  # fmt: skip
    # pirf+c sampled PIRF's own checkpoint, with its own sweep on the validation seeds
    setting = json.loads((out / "poisson" / "pirf+c" / "setting.json").read_text())
    assert setting["seed"] == 2 and len(setting["candidates"]) > 1
    assert rows[3]["cost"]["checkpoint"] == rows[2]["cost"]["checkpoint"]
    assert all(r["steps"] == 20 and r["nfe"] == 39 for r in rows)
    assert rows[1]["backward_per_sample"] > 0  # guidance pays backward passes
    assert report["pdes"]["poisson"]["ground_truth"]["residual_mse"] < 1e-9
    assert report["pdes"]["poisson"]["bar"] is not None
    markdown = (out / "report.md").read_text()
    assert "| ground truth |" in markdown and "| DiffusionPDE | 20 |" in markdown
    figures = out / "figures"
    for name in ("samples", "residuals", "tradeoffs"):
        assert (figures / f"poisson-{name}.png").read_bytes()[:4] == b"\x89PNG"
    # Every sample's residual is in the result file (the histogram's), not in the report.
    result = json.loads((out / "poisson" / "results" / "pirf-20.json").read_text())
    assert len(result["residual_mse_per_sample"]) == 8
    assert all("residual_mse_per_sample" not in row for row in rows)
    # Rerunning finds every stage done and runs none of them again.
    stamp = (out / "poisson" / "results" / "pirf-20.json").stat().st_mtime_ns
    capsys.readouterr()
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "todo" not in err
    assert (out / "poisson" / "results" / "pirf-20.json").stat().st_mtime_ns == stamp
    # --report-only runs nothing, even for a method never prepared, and reports what exists.
    with_pidm = [a if a != "base,diffusionpde,pirf,pirf+c" else "base,pidm,pirf" for a in args]
    assert main([*with_pidm, "--report-only", "--figure-format", "pdf"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert (figures / "poisson-samples.pdf").read_bytes()[:4] == b"%PDF"
    assert report["pdes"]["poisson"]["figures"][0].endswith("poisson-samples.pdf")
    assert [r["method"] for r in report["pdes"]["poisson"]["rows"]] == ["base", "pirf"]
    assert not (out / "poisson" / "pidm").exists()


def test_bench_rejects_unknown_names(tmp_path, capsys):
    for option, value in (
        ("--pdes", "navier"),
        ("--methods", "magic"),
        ("--preset", "huge"),
        ("--figure-format", "gif"),
    ):
        assert main(["bench", "--out", str(tmp_path / "x"), option, value]) == 2
        assert capsys.readouterr().err.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_base_is_always_a_row_and_presets_take_overrides():
    assert resolve_methods("pirf") == ["base", "pirf"]
    assert resolve_preset("tiny", eval_n=7).eval_n == 7


def _row(method, residual, mmd, nfe=39, backward=0, diversity=1.0, steps=20, consistency=0.1):
    return {
        "method": method,
        "steps": steps,
        "nfe": nfe,
        "backward_per_sample": backward,
        "headline": {
            "residual_mse": residual,
            "mmd": mmd,
            "diversity": diversity,
            "consistency": consistency,
        },
    }


def test_goals_hold_a_variant_to_every_costlier_baseline_at_any_budget():
    from pirf.bench.report import best_variant, goals, results_json

    base = _row("base", 1.0, 1.0)
    truth = {"headline": {"residual_mse": 1e-4}}
    rows = [
        base,
        _row("cocogen", 0.02, 0.9, backward=7),
        _row("cocogen", 0.004, 0.9, nfe=159, backward=31, steps=80),
        _row("pidm", 0.5, 1.0, nfe=79, steps=40),
        _row("pirf", 0.009, 0.95, consistency=0.09),
        _row("pirf+c", 0.001, 1.2, backward=7, consistency=0.2),
    ]
    pirf = goals(rows, base, truth, "pirf")
    assert pirf["residual_target"] == pytest.approx(0.01) and pirf["checks"]["residual_target"]
    # cocogen at 80 steps costs more and is lower: the goal fails on it alone
    assert pirf["not_lower_than"] == ["cocogen@80"] and not pirf["met"]
    assert pirf["best_baseline"]["method"] == "cocogen"
    corrected = goals(rows, base, truth, "pirf+c")
    assert corrected["checks"]["mmd_no_worse"] is False
    assert corrected["checks"]["consistency_no_worse"] is False
    assert best_variant({"pirf": pirf, "pirf+c": corrected}) == "pirf+c"  # both in the band
    # the floor caps the target: 2 x the ground truth's residual when that is larger
    assert goals(rows, base, {"headline": {"residual_mse": 0.1}}, "pirf")["residual_target"] == 0.2
    report = {
        "settings": {"preset": {"name": "tiny"}, "command": "pirf bench ..."},
        "pdes": {"poisson": {"ground_truth": truth["headline"], "rows": rows}},
    }
    table = results_json(report)
    assert table["preset"] == "tiny" and table["pdes"]["poisson"]["floor"] == 1e-4
    assert table["pdes"]["poisson"]["rows"][2] == {
        "method": "cocogen", "steps": 80, "nfe": 190, "residual_mse": 0.004,
        "consistency": 0.1, "joint_mmd": 0.9, "diversity": 1.0,
    }  # fmt: skip


def test_pirf_bar_compares_at_equal_or_higher_cost_and_checks_fidelity():
    base = _row("base", 1.0, 1.0)
    rows = [base, _row("diffusionpde", 0.5, 1.0, backward=4), _row("pirf", 0.1, 1.2)]
    assert pirf_bar(rows, base)["met"]
    rows[1] = _row("diffusionpde", 0.05, 1.0, backward=4)
    assert not pirf_bar(rows, base)["met"]
    rows[1] = _row("diffusionpde", 0.5, 1.0)
    rows[2] = _row("pirf", 0.1, 1.6)  # fidelity outside 1.5x the base's
    assert not pirf_bar(rows, base)["met"]
    # each PIRF variant is judged against the baselines only, never against the other
    rows.append(_row("pirf-full", 0.2, 1.1))
    full = pirf_bar(rows, base, "pirf-full")
    assert full["met"] and full["residual_lower_than"] == ["diffusionpde"]
    assert pirf_bar(rows, base, "nothing") is None
    # samples that collapsed (diversity below base / 1.5) fail, however low the MMD
    rows[-1] = _row("pirf-full", 0.2, 1.1, diversity=0.43)
    collapsed = pirf_bar(rows, base, "pirf-full")
    assert not collapsed["met"] and collapsed["diversity_ratio"] == pytest.approx(0.43)
    assert "diversity" in collapsed["fidelity_violations"][0]


def test_method_options_reach_the_sweeps_and_reject_unknown_keys():
    from pirf.baselines.guidance import sweep_grid
    from pirf.bench.config import parse_method_options

    options = parse_method_options(["diffusionpde.zeta=[0, 1e-4]", "pidm.residual_weight=1e-3"])
    assert options == {"diffusionpde": {"zeta": [0, 1e-4]}, "pidm": {"residual_weight": 1e-3}}
    grid = sweep_grid("diffusionpde", options["diffusionpde"])
    assert [s["zeta"] for s in grid] == [0, 1e-4]
    assert sweep_grid("cocogen", {"zeta": 1e-5, "corrections": [1, 3]}) == [
        {"zeta": 1e-5, "guide_fraction": 0.2, "corrections": 1},
        {"zeta": 1e-5, "guide_fraction": 0.2, "corrections": 3},
    ]


def test_bench_rejects_an_option_for_a_method_it_does_not_run(tmp_path, capsys):
    args = [
        "bench",
        "--out",
        str(tmp_path / "x"),
        "--pdes",
        "poisson",
        "--methods",
        "pirf",
        "--method-option",
        "pidm.residual_weight=1e-3",
    ]
    assert main(args) == 2
    assert "pidm" in capsys.readouterr().err
