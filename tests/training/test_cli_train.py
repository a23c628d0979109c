"""``pirf train`` through the command line: JSON output, and one-line errors with exit
code 2 for bad inputs."""

from __future__ import annotations

import json

import pytest

from pirf.cli import main


def run(capsys, *args: object) -> tuple[int, str, str]:
    code = main(["train", *(str(a) for a in args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


FAST = ("--iters", 2, "--batch", 4, "--model-option", "base_channels=8", "--device", "cpu",
        "--figure-every", 0)  # fmt: skip


def test_json_summary_then_resume(poisson_file, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, _ = run(capsys, "--data", poisson_file, "--out", out, "--preset", "tiny",
                          *FAST, "--json")  # fmt: skip
    assert code == 0 and stdout.count("\n") == 1
    summary = json.loads(stdout)
    assert summary["iterations"] == 2 and summary["parameters"] == 78322
    assert summary["checkpoint"] == str(out / "checkpoint") and summary["samples_per_s"] > 0
    # resuming needs only the data, the directory and the new length
    code, stdout, _ = run(capsys, "--data", poisson_file, "--out", out, "--resume",
                          "--iters", 3, "--figure-every", 0, "--json")  # fmt: skip
    assert code == 0
    resumed = json.loads(stdout)
    assert resumed["start_iteration"] == 2 and resumed["iterations"] == 3
    code, stdout, _ = run(capsys, "--data", poisson_file, "--out", out, "--resume", "--iters", 4,
                          "--figure-every", 0)  # fmt: skip
    assert code == 0 and "final loss" in stdout and "4 / 4" in stdout


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--data": "missing.h5"}, "no such data file"),
        ({"--preset": "huge"}, "unknown model preset 'huge'"),
        ({"--iters": "0"}, "--iters must be positive, got 0"),
        ({"--out": "a-file"}, "is a file; give a directory"),
        ({"--model-option": "base_channels"}, "--model-option expects key=value"),
        ({"--preset": None}, "--preset is required to start a run"),
        ({"--figure-format": "gif"}, "unknown --figure-format 'gif'; use one of png, pdf, svg"),
    ],
)
def test_bad_inputs_are_one_line_errors(poisson_file, tmp_path, capsys, change, message):
    (tmp_path / "a-file").write_text("not a directory")
    options = {
        "--data": str(poisson_file),
        "--out": str(tmp_path / "run"),
        "--preset": "tiny",
        "--iters": "2",
        "--model-option": "base_channels=8",
    }
    for key, value in change.items():
        if value is None:
            del options[key]
        else:
            options[key] = str(tmp_path / value) if key in ("--data", "--out") else value
    args = [item for pair in options.items() for item in pair]
    code, stdout, stderr = run(capsys, *args, "--device", "cpu")
    assert code == 2 and stdout == ""
    assert stderr.startswith("error: ") and stderr.count("\n") == 1 and message in stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_resuming_a_finished_run_leaves_it_untouched(poisson_file, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, _ = run(capsys, "--data", poisson_file, "--out", out, "--preset", "tiny", *FAST)
    assert code == 0
    before = {
        str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file()
    }
    code, stdout, stderr = run(capsys, "--data", poisson_file, "--out", out, "--resume")
    assert code == 0 and stderr == ""
    assert stdout.strip() == "already complete (2/2 iterations); nothing to do"
    code, stdout, _ = run(capsys, "--data", poisson_file, "--out", out, "--resume", "--json")
    assert code == 0 and json.loads(stdout)["already_complete"]
    after = {
        str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file()
    }
    assert after == before


def test_config_file_reproduces_the_run_bitwise_and_options_override_it(
    poisson_file, tmp_path, capsys
):
    first = tmp_path / "first"
    code, stdout, _ = run(capsys, "--data", poisson_file, "--out", first, "--preset", "tiny",
                          *FAST, "--seed", 3, "--json")  # fmt: skip
    assert code == 0
    text = (first / "config.toml").read_text()
    assert "seed = 3" in text and "resume" not in text and "[optimiser]" in text
    summary = json.loads(stdout)
    code, stdout, _ = run(capsys, "--config", first / "config.toml", "--out", tmp_path / "again",
                          "--json")  # fmt: skip
    assert code == 0 and json.loads(stdout)["weights_sha256"] == summary["weights_sha256"]
    code, stdout, _ = run(capsys, "--config", first / "config.toml", "--out", tmp_path / "other",
                          "--seed", 4, "--json")  # fmt: skip
    assert code == 0 and json.loads(stdout)["weights_sha256"] != summary["weights_sha256"]
    (tmp_path / "typo.toml").write_text("[optimiser]\nlearning_rate = 1.0\n")
    code, stdout, stderr = run(capsys, "--config", tmp_path / "typo.toml", "--out",
                               tmp_path / "typo", "--data", poisson_file)  # fmt: skip
    assert code == 2 and "unknown setting 'optimiser.learning_rate'" in stderr
    assert not (tmp_path / "typo").exists()
