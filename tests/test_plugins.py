"""A user's own PDE, defined with ``define_pde`` in a module of their own, reaches every
command through ``PIRF_PLUGINS`` or ``pirf --plugin``: data made with it reads back, and
the whole pipeline (generate, check, train, fine-tune, evaluate) runs on it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import h5py
import pytest
import torch

import pirf.pdes
from pirf.cli import main
from pirf.errors import PirfError
from pirf.pdes import define_pde
from pirf.plugins import plugin_names

ROOT = Path(__file__).resolve().parents[1]

USER_MODULE = '''
"""lap(u) - c u = a on the unit square, u = 0 on the boundary: a user's own PDE."""
import torch

from pirf.pdes import define_pde
from pirf.pdes.base import relative_l2
from pirf.pdes.dirichlet import solve_dirichlet
from pirf.pdes.elliptic import interior, laplacian_5pt


def residual(fields, params):
    a, u = fields[:, 0], fields[:, 1]
    return (laplacian_5pt(u) - params["c"] * interior(u) - interior(a)).unsqueeze(1)


def sample_inputs(generators, resolution):
    return torch.stack(
        [torch.randn(1, resolution, resolution, generator=g, dtype=torch.float64)
         for g in generators]
    )


def solve(inputs, params):
    a = inputs[:, 0]
    return torch.stack([a, solve_dirichlet(a, -params["c"])], dim=1)


def consistency(fields, pde):
    return relative_l2(fields[:, 1], pde.solve(fields[:, :1])[:, 1])


Screened = define_pde(
    "NAME",
    ("a", "u"),
    residual,
    input_channels=("a",),
    default_params={"c": 2.0},
    presets={"tiny": {"resolution": 8}},
    sample_inputs=sample_inputs,
    solve=solve,
    consistency=consistency,
    class_name="Screened",
)
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A fresh user module on sys.path defining the PDE; returns (module, PDE name)."""
    tag = uuid.uuid4().hex[:8]
    module, name = f"user_pdes_{tag}", f"screened-{tag}"
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / f"{module}.py").write_text(USER_MODULE.replace('"NAME"', repr(name)))
    monkeypatch.syspath_prepend(str(folder))
    return module, name, folder


def cli(capsys, *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_define_pde_records_an_importable_class_and_registers_it():
    def residual(fields, params):
        return fields[:, 1:] - params["scale"] * fields[:, :1]

    Scaling = define_pde(
        "scaling-plugin-test",
        ("a", "u"),
        residual,
        input_channels=("a",),
        default_params={"scale": 2.0},
        snap=lambda fields: fields.round(),
        reference_residual=lambda fields, pde: pde.residual(fields) * 0.5,
    )
    assert Scaling.__module__ == __name__ and Scaling.__qualname__ == "ScalingPluginTest"
    assert pirf.pdes.get("scaling-plugin-test", scale=3.0).params == {"scale": 3.0}
    pde = Scaling(scale=3.0)
    assert pde.metadata()["pde_class"] == f"{__name__}:ScalingPluginTest"
    fields = torch.tensor([[[[1.0]], [[4.0]]]]).expand(1, 2, 8, 8)
    assert float(pde.residual(fields).max()) == 1.0  # 4 - 3 * 1
    assert float(pde.reference_residual(fields).max()) == 0.5
    assert float(pde.snap(fields + 0.3).max()) == 4.0
    assert pde.has_reference_residual and not pde.can_generate
    again = define_pde("scaling-plugin-test", ("a", "u"), residual)  # same module:Class again
    assert pirf.pdes.get_class("scaling-plugin-test") is again


def test_define_pde_refuses_clashing_names_and_bad_declarations():
    with pytest.raises(PirfError, match="'poisson' is a built-in PDE"):
        define_pde("poisson", ("a", "u"), lambda f: f)
    define_pde("clash-plugin-test", ("u",), lambda f: f)
    with pytest.raises(PirfError, match="already registered"):
        define_pde("clash-plugin-test", ("u",), lambda f: f, class_name="Other")
    with pytest.raises(PirfError, match="input channels"):
        define_pde("bad-plugin-test", ("u",), lambda f: f, input_channels=("a",))
    with pytest.raises(PirfError, match="JSON values"):
        define_pde("bad-plugin-test", ("u",), lambda f: f, default_params={"x": object()})
    with pytest.raises(PirfError, match="unknown parameter"):
        define_pde("bad-plugin-test", ("u",), lambda f: f, presets={"tiny": {"params": {"x": 1}}})
    with pytest.raises(PirfError, match="no reference residual"):
        pirf.pdes.get("clash-plugin-test").reference_residual(torch.zeros(1, 1, 8, 8))


def test_plugin_names_split_at_commas():
    assert plugin_names(" a.b , c,,") == ["a.b", "c"]
    assert plugin_names(None) == []


def test_a_plugin_that_fails_is_one_line_and_nothing_is_made(tmp_path, capsys, monkeypatch):
    (tmp_path / "broken_plugin_mod.py").write_text("raise RuntimeError('oops\\nmore')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "d.h5"
    args = ["data", "generate", "poisson", "--n", 2, "--seed", 0, "--out-file", out]
    code, stdout, stderr = cli(capsys, "--plugin", "broken_plugin_mod", *args)
    assert code == 2 and stdout == "" and stderr.count("\n") == 1
    assert "plugin module 'broken_plugin_mod' (from --plugin): RuntimeError: oops" in stderr
    monkeypatch.setenv("PIRF_PLUGINS", "no_such_plugin_module_x")
    code, _, stderr = cli(capsys, *args)
    assert code == 2 and "'no_such_plugin_module_x' (from PIRF_PLUGINS)" in stderr
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == [
        "broken_plugin_mod.py"
    ]


def test_the_pipeline_runs_on_a_plugin_pde(user_module, tmp_path, capsys, monkeypatch):
    module, name, folder = user_module
    work = tmp_path / "work"
    work.mkdir()
    device = ("--device", "cpu")
    for split, n in (("train", 16), ("test", 8)):
        code, _, err = cli(capsys, "--plugin", module, "data", "generate", name, "--n", n,
                           "--resolution", 8, "--seed", 0, "--split", split,
                           "--out-file", work / f"{split}.h5", *device, "--json")  # fmt: skip
        assert code == 0, err
    with h5py.File(work / "train.h5") as file:
        assert file.attrs["pde"] == name
        assert file.attrs["pde_class"] == f"{module}:Screened"

    monkeypatch.setenv("PIRF_PLUGINS", module)
    code, out, err = cli(capsys, "data", "check", work / "train.h5", *device, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["pde"] == name and report["params"] == {"c": 2.0}
    assert report["residual"]["mse"] < 1e-10  # float32 storage rounding

    code, out, err = cli(capsys, "train", "--data", work / "train.h5", "--preset", "tiny",
                         "--model-option", "base_channels=8", "--iters", 2, "--batch", 4,
                         "--out", work / "base", *device, "--no-figures", "--json")  # fmt: skip
    assert code == 0, err
    code, out, err = cli(capsys, "--plugin", module, "finetune", "--ckpt", work / "base",
                         "--out", work / "ft", "--iters", 2, "--batch", 2, "--steps", 4,
                         "--eval-steps", "4", "--eval-n", 4, "--reference", work / "test.h5",
                         *device, "--no-figures", "--json")  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["iterations"] == 2
    code, out, err = cli(capsys, "evaluate", "--ckpt", work / "ft", "--reference",
                         work / "test.h5", "--steps", "4", "--n", 4, *device, "--json")  # fmt: skip
    assert code == 0, err
    evaluation = json.loads(out)
    assert evaluation["pde"] == name
    row = evaluation["rows"][0]["metrics"]["physics"]
    assert row["residual"]["mse"]["mean"] > 0 and row["consistency"]["mean"] > 0

    # A fresh process finds the PDE through PIRF_PLUGINS alone.
    env = {
        **os.environ,
        "PIRF_PLUGINS": module,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(folder)]),
    }
    done = subprocess.run(
        [sys.executable, "-c", "from pirf.cli import run; run()", "data", "check",
         str(work / "test.h5"), "--device", "cpu", "--json"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["pde"] == name


def test_without_the_plugin_a_file_names_its_module(user_module, tmp_path, capsys):
    module, name, _ = user_module
    source = textwrap.dedent(
        f"""
        import pirf.data
        try:
            pirf.data.load({str(tmp_path / "x.h5")!r})
        except Exception as error:
            print(error)
        """
    )
    code, _, _ = cli(capsys, "--plugin", module, "data", "generate",
                     name, "--n", 2, "--resolution", 8, "--seed", 0, "--out-file",
                     tmp_path / "x.h5", "--device", "cpu", "--json")  # fmt: skip
    assert code == 0
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    env.pop("PIRF_PLUGINS", None)
    done = subprocess.run(
        [sys.executable, "-c", source], capture_output=True, text=True, env=env, timeout=120
    )
    assert f"made with {module}:Screened, which does not import here" in done.stdout
    assert "--plugin MODULE" in done.stdout
