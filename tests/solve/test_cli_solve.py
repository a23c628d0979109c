"""``pirf solve`` end to end on a tiny model: with everything observed and the full step
the solutions are the reference fields; files readable by the data tools; one-line errors."""

from __future__ import annotations

import inspect
import json

import pytest
import torch

import pirf.data
from pirf.cli import main
from pirf.cli import solve as solve_command
from pirf.evaluation.protocol import evaluate_files
from pirf.solve.solver import DEFAULT_ZETA_OBS, DEFAULT_ZETA_PDE
from tests.diagnostics.tiny_problem import make_problem


def run(capsys, *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def problem(tmp_path_factory):
    return make_problem(tmp_path_factory.mktemp("solve"))


def base_args(problem, out):
    checkpoint, reference = problem
    return ["solve", "--ckpt", checkpoint, "--reference", reference, "--out-file", out]


def test_everything_observed_gives_back_the_reference(problem, tmp_path, capsys):
    out = tmp_path / "solved.h5"
    args = [*base_args(problem, out), "--observe", "a=all", "--observe", "u=all"]
    args += ["--zeta-obs", 1]
    code, stdout, _ = run(capsys, *args, "--n", 3, "--steps", 6, "--json", "--device", "cpu")
    assert code == 0
    summary = json.loads(stdout)
    # Guidance at zeta_obs = 1 removes the whole misfit on the last step: what is left is
    # O(sigma_min) of the misfit before it and float32 rounding (see tests/solve/test_guidance).
    assert set(summary["relative_l2"]) == {"a", "u"}
    assert max(summary["relative_l2"].values()) < 1e-3
    assert summary["observed_points"] == {"a": 64, "u": 64}
    assert (summary["steps"], summary["nfe_per_sample"], summary["guided_steps"]) == (6, 11, 6)
    assert summary["guidance"] == ["obs"] and summary["zeta_obs"] == 1
    solved = pirf.data.load(out)
    assert solved.shape == (3, 2, 8, 8) and solved.attrs["source"] == "solve"
    assert json.loads(solved.attrs["observe"]) == ["a=all", "u=all"]
    assert pirf.data.check(out)["n"] == 3
    report = evaluate_files(out, problem[1], consistency=False)
    assert report["rows"][0]["metrics"]["physics"]["residual"]["mse"]["count"] == 3


def test_sparse_observations_and_pde_guidance(problem, tmp_path, capsys):
    out = tmp_path / "inverse.h5"
    args = [*base_args(problem, out), "--observe", "u=20", "--guidance", "obs,pde"]
    args += ["--zeta-pde", "1e-4", "--n", 2, "--steps", 5, "--device", "cpu"]
    code, stdout, _ = run(capsys, *args, "--json", "--batch", 1)
    assert code == 0
    summary = json.loads(stdout)
    assert summary["observed_points"] == {"a": 0, "u": 20}
    assert summary["guidance"] == ["obs", "pde"] and summary["zeta_pde"] == 1e-4
    assert summary["backward_per_sample"] == 5
    code, stdout, _ = run(capsys, *args[:-2], "--device", "cpu", "--force")
    assert code == 0 and "relative L2 a" in stdout and "20 values observed" in stdout


def test_the_command_default_steps_are_the_library_defaults(problem, tmp_path, capsys):
    parameters = inspect.signature(solve_command.solve).parameters
    assert parameters["zeta_obs"].default == DEFAULT_ZETA_OBS
    out = tmp_path / "defaults.h5"
    args = [*base_args(problem, out), "--observe", "u=10", "--guidance", "obs,pde", "--n", 1]
    code, stdout, _ = run(capsys, *args, "--steps", 2, "--json", "--device", "cpu")
    summary = json.loads(stdout)
    assert code == 0 and summary["zeta_pde"] == DEFAULT_ZETA_PDE
    assert summary["zeta_obs"] == DEFAULT_ZETA_OBS


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--observe", "u=x"], "--observe expects"),
        (["--observe", "v=all", "--n", 2], "no channel 'v'"),
        (["--observe", "u=65", "--n", 2], "only 64 points"),
        (["--observe", "u=5", "--guidance", "pde"], "--guidance takes obs"),
        (["--observe", "u=5", "--zeta-obs", "-1"], "--zeta-obs"),
        (["--observe", "u=5", "--n", 99], "fewer than --n"),
        (["--observe", "u=5", "--steps", 0], "--steps"),
    ],
)
def test_bad_input_is_refused_in_one_line(problem, tmp_path, capsys, extra, message):
    out = tmp_path / "bad.h5"
    code, stdout, stderr = run(capsys, *base_args(problem, out), *extra)
    assert code == 2 and stdout == ""
    assert message in stderr and len(stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_an_existing_file_is_kept(problem, tmp_path, capsys):
    out = tmp_path / "kept.h5"
    out.write_text("x")
    code, _, stderr = run(capsys, *base_args(problem, out), "--observe", "u=5")
    assert code == 2 and "already exists" in stderr and out.read_text() == "x"


def test_solutions_do_not_depend_on_the_batch(problem, tmp_path):
    # Each field keeps its own noise and its own observations whatever the micro-batch;
    # convolutions may group work differently per batch size (float32 rounding only).
    from pirf.solve import parse_observations, solve

    checkpoint, reference = problem
    observe = parse_observations(["u=20"])
    for size in (1, 3):
        solve(
            checkpoint, reference, observe, tmp_path / f"{size}.h5", n=3, steps=4, batch_size=size
        )
    one, three = (pirf.data.load(tmp_path / f"{size}.h5")[:] for size in (1, 3))
    torch.testing.assert_close(one, three, rtol=1e-4, atol=1e-5)
