"""``pirf finetune`` through the command line: help, one-line errors with exit code 2 that
leave no run directory behind, and the JSON summary of a tiny run."""

from __future__ import annotations

import json

import pytest

from pirf.cli import main
from pirf.finetune.config import recipe
from tests.finetune.test_run import make_base


def run(capsys, *args: object) -> tuple[int, str, str]:
    code = main(["finetune", *(str(a) for a in args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return make_base(tmp_path_factory)


def test_help_names_the_options(capsys):
    code, stdout, _ = run(capsys, "--help")
    assert code == 0
    for option in ("--truncation", "--trainable", "--weight-reg", "--distill-reg",
                   "--random-steps", "--resume", "--mode", "--eval-steps", "--reward-inputs",
                   "--distill-on"):  # fmt: skip
        assert option in stdout, option


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("--mode", "drift"), "unknown --mode 'drift'"),
        (("--trainable", "some"), "unknown --trainable 'some'"),
        (("--truncation", "0"), "--truncation must be positive"),
        (("--ckpt", "missing"), "no such checkpoint directory"),
        (("--random-steps", "a,b"), "--random-steps expects comma-separated integers"),
        (("--eval-steps", ""), "--eval-steps expects positive integers"),
        (("--figure-format", "jpg"), "unknown --figure-format 'jpg'; use one of png, pdf, svg"),
        (("--reward-inputs", "some"), "unknown --reward-inputs 'some'; use one of free, held"),
        (("--distill-on", "inputs"), "--distill-on inputs needs a distillation penalty"),
    ],
)
def test_bad_inputs_are_one_line_errors(base, tmp_path, capsys, change, message):
    options = {"--ckpt": str(base), "--out": str(tmp_path / "run"), "--iters": "2"}
    key, value = change
    options[key] = str(tmp_path / value) if key == "--ckpt" else value
    args = [item for pair in options.items() for item in pair]
    code, stdout, stderr = run(capsys, *args, "--device", "cpu", "--no-figures")
    assert code == 2 and stdout == ""
    assert stderr.startswith("error: ") and stderr.count("\n") == 1 and message in stderr
    assert not (tmp_path / "run").exists()


def test_json_summary_of_a_tiny_run(base, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, _ = run(capsys, "--ckpt", base, "--out", out, "--iters", 2, "--batch", 4,
                          "--steps", 4, "--eval-steps", "4", "--eval-n", 4,
                          "--eval-every", 0, "--device", "cpu", "--no-figures",
                          "--json")  # fmt: skip
    assert code == 0 and stdout.count("\n") == 1
    summary = json.loads(stdout)
    assert {"base", "final", "residual_ratio", "seconds_per_iteration"} <= set(summary)
    assert summary["completed"] and summary["iterations"] == 2
    assert summary["seconds_per_iteration"] > 0
    assert summary["base"]["residual_mse"]["4"] > 0 and summary["final"]["residual_mse"]["4"] > 0
    assert summary["residual_ratio"]["4"] == pytest.approx(
        summary["base"]["residual_mse"]["4"] / summary["final"]["residual_mse"]["4"], rel=1e-12
    )
    assert summary["config"]["steps"] == 4 and summary["config"]["trainable"] == "top"
    assert (out / "checkpoint" / "checkpoint.json").is_file()


def test_recipe_fills_in_per_pde_and_for_lora():
    assert recipe("poisson") == {}
    assert recipe("darcy") == {"lr": 3e-5}
    assert recipe("poisson", "lora") == {"truncation": 5, "lr": pytest.approx(1e-3)}
    assert recipe("darcy", "lora") == {"truncation": 5, "lr": pytest.approx(3e-4)}
    assert recipe(None, "top") == {}
    assert recipe("poisson", "lora", (20, 3))["truncation"] == 3  # K fits every budget
    assert recipe("kolmogorov") == {"lr": 3e-5, "truncation": 5, "weight_reg": 100.0}
    assert recipe("kolmogorov", "top", (20, 4))["truncation"] == 4
    assert recipe("helmholtz") == {"truncation": 5}


@pytest.mark.parametrize(
    ("extra", "truncation", "lr"),
    [
        (("--steps", "6"), 5, 1e-3),
        (("--steps", "4"), 4, 1e-3),
        (("--steps", "6", "--truncation", "2", "--lr", "2e-4"), 2, 2e-4),
    ],
)
def test_lora_takes_its_recipe_unless_told_otherwise(base, tmp_path, capsys, extra, truncation, lr):
    code, stdout, stderr = run(capsys, "--ckpt", base, "--out", tmp_path / "run", "--iters", 1,
                          "--batch", 2, "--eval-n", 4, "--eval-every", 0,
                          "--eval-steps", "4", "--trainable", "lora", "--device", "cpu",
                          "--no-figures", "--json", *extra)  # fmt: skip
    assert code == 0, stderr
    config = json.loads(stdout)["config"]
    assert config["trainable"] == "lora" and config["truncation"] == truncation
    assert config["lr"] == pytest.approx(lr)


def _tree(root):
    """Every file under ``root`` with its bytes and modification time."""
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_resuming_a_finished_run_leaves_it_untouched(base, tmp_path, capsys):
    out = tmp_path / "run"
    common = ("--ckpt", base, "--out", out, "--device", "cpu", "--no-figures")
    code, _, _ = run(capsys, *common, "--iters", 2, "--batch", 2, "--steps", 4,
                     "--eval-steps", "4", "--eval-n", 4, "--eval-every", 0)  # fmt: skip
    assert code == 0
    before = _tree(out)
    code, stdout, stderr = run(capsys, *common, "--resume")
    assert code == 0 and stderr == ""
    assert stdout.strip() == "already complete (2/2 iterations); nothing to do"
    code, stdout, _ = run(capsys, *common, "--resume", "--json")
    summary = json.loads(stdout)
    assert code == 0 and summary["already_complete"] and summary["final"] is not None
    assert summary["residual_ratio"]["4"] > 0
    assert _tree(out) == before
    # asking for more iterations continues the run
    code, stdout, _ = run(capsys, *common, "--resume", "--iters", 3, "--json")
    assert code == 0 and json.loads(stdout)["iterations"] == 3


def test_api_errors_name_the_api_arguments(base, tmp_path):
    from pirf.errors import PirfError
    from pirf.finetune import FinetuneConfig, finetune

    with pytest.raises(PirfError, match=r"start the run without resume=True$"):
        finetune(FinetuneConfig.of(ckpt=base, out=tmp_path / "none", resume=True))
    with pytest.raises(PirfError, match=r"^unknown mode 'drift'"):
        finetune(FinetuneConfig.of(ckpt=base, out=tmp_path / "x", mode="drift"))
