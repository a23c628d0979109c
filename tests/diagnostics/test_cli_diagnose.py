"""``pirf diagnose value-gap`` end to end on a tiny model: files, JSON, table, errors."""

from __future__ import annotations

import json

import pytest

from pirf.cli import main
from pirf.errors import PirfError
from pirf.models.reference import check_with_reference
from tests.diagnostics.tiny_problem import make_problem


def run(capsys, *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def problem(tmp_path_factory):
    return make_problem(tmp_path_factory.mktemp("value-gap"))


def test_value_gap_writes_its_report_and_figure(problem, tmp_path, capsys):
    checkpoint, reference = problem
    out = tmp_path / "gap"
    args = ["diagnose", "value-gap", "--ckpt", checkpoint, "--reference", reference]
    args += ["--out", out, "--sigmas", "2,0.1", "--n", 3, "--runs", 2, "--steps", 3]
    code, stdout, _ = run(capsys, *args, "--json", "--device", "cpu")
    assert code == 0
    printed = json.loads(stdout)
    stored = json.loads((out / "value-gap.json").read_text())
    assert (out / "value-gap.png").stat().st_size > 1000
    assert printed["sigmas"] == stored["sigmas"] == [2.0, 0.1]
    assert "per_state" in stored and "per_state" not in printed
    assert printed["checkpoint_kind"] == "checkpoint" and printed["pde"] == "poisson"
    rows = printed["rows"]
    assert [(r["kind"], r["sigma"]) for r in rows] == [
        ("data", 2.0),
        ("data", 0.1),
        ("trajectory", 2.0),
        ("trajectory", 0.1),
    ]
    for row in rows:
        assert row["one_step"] < 0 and row["ode"] < 0 and row["sde"] < 0
        assert row["n"] == 3 and row["runs"] == 2
    # The clean reference fields are exact solutions: (almost) zero residual.
    assert -rows[0]["clean"] < 1e-8
    assert len(stored["per_state"]["data"]["0.1"]["sde"]) == 3
    # The readable table names the kinds and the files.
    code, stdout, _ = run(capsys, *args, "--device", "cpu")
    assert code == 0 and "model trajectories" in stdout and "value-gap.png" in stdout
    # A vector figure when asked for, with the same log axes.
    code, stdout, _ = run(capsys, *args, "--device", "cpu", "--figure-format", "pdf")
    assert code == 0 and (out / "value-gap.pdf").read_bytes()[:4] == b"%PDF"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--sigmas", "1,abc"], "--sigmas"),
        (["--sigmas", "500"], "outside"),
        (["--n", 50], "fewer than --n"),
        (["--runs", 0], "--runs"),
        (["--steps", 0], "--steps"),
        (["--figure-format", "eps"], "--figure-format 'eps'; use one of png, pdf, svg"),
    ],
)
def test_value_gap_refuses_bad_input_in_one_line(problem, tmp_path, capsys, extra, message):
    checkpoint, reference = problem
    args = ["diagnose", "value-gap", "--ckpt", checkpoint, "--reference", reference]
    code, stdout, stderr = run(capsys, *args, "--out", tmp_path / "gap", *extra)
    assert code == 2 and stdout == ""
    assert message in stderr and len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "gap").exists()


def test_a_reference_of_another_problem_is_refused_before_loading(problem, tmp_path):
    checkpoint, _ = problem
    _, darcy = make_problem(tmp_path, n=2, pde_name="darcy")
    with pytest.raises(PirfError, match=r"PDE mismatch.*reference"):
        check_with_reference(checkpoint, darcy, n=1)
    with pytest.raises(PirfError, match="positive integer"):
        check_with_reference(checkpoint, darcy, n=0)


def test_the_command_defaults_are_the_library_defaults():
    import inspect

    from pirf.cli import diagnose
    from pirf.diagnostics.value_gap import DEFAULT_SIGMAS, diagnose_value_gap

    command = inspect.signature(diagnose.value_gap).parameters
    library = inspect.signature(diagnose_value_gap).parameters
    assert diagnose.parse_sigmas(command["sigmas"].default) == list(DEFAULT_SIGMAS)
    for name in ("n", "runs", "steps", "seed"):
        assert command[name].default == library[name].default
