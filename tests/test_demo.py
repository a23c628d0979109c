"""`pirf demo` runs the whole story; here with a CI-sized fine-tuning budget."""

import json
from pathlib import Path

import pytest

import pirf.cli.demo as demo_module
from pirf.assets import shipped_checkpoint
from pirf.cli import main
from pirf.models import read_checkpoint_info


def test_shipped_base_model_is_a_complete_tiny_poisson_checkpoint():
    info = read_checkpoint_info(shipped_checkpoint("poisson-tiny"))
    assert info.pde_name == "poisson" and info.resolution == (32, 32)
    assert info.training["preset"] == "tiny" and info.counters["iteration"] == 1200
    assert info.extra["data"]["samples"] == demo_module.TRAIN_SAMPLES


def test_demo_json_has_the_promised_keys(tmp_path, capsys, monkeypatch):
    # The real recipe takes minutes; two iterations and tiny evaluations exercise every stage.
    monkeypatch.setitem(demo_module.RUN, "eval_n", 8)
    monkeypatch.setitem(demo_module.RUN, "eval_every", 0)
    monkeypatch.setitem(demo_module.RUN, "batch", 2)
    monkeypatch.setitem(demo_module.RUN, "pool", 4)  # the demo's amortised trajectories, small
    monkeypatch.setattr(demo_module, "FIGURE_SAMPLES", 4)
    code = main(["demo", "--out", str(tmp_path), "--iters", "2", "--eval-n", "8", "--json",
                 "--figure-format", "svg"])  # fmt: skip
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    for model in ("base", "pirf"):
        assert payload[model]["residual_mse"] > 0
        assert payload[model]["fidelity"] > 0
        assert payload[model]["nfe"] == 39  # 20 Heun steps
    assert payload["seconds"] > 0
    assert payload["finetune"]["iterations"] == 2
    # both models' residual is far above the ground truth's (exact solutions)
    assert payload["ground_truth"]["residual_mse"] < 1e-9 < payload["base"]["residual_mse"]
    # Every figure in the format asked for: the samples, the histogram, the run's curves.
    figures = [payload["figure"], payload["histogram"], *payload["curves"]]
    assert [Path(f).name for f in figures[:2]] == ["demo.svg", "demo-residuals.svg"]
    assert len(figures) == 3 and figures[2].endswith("curves.svg")
    assert all("<svg" in Path(figure).read_text()[:2000] for figure in figures)
    assert (tmp_path / "pirf" / "checkpoint" / "checkpoint.json").is_file()


@pytest.mark.parametrize(
    "args", [["--iters", "0"], ["--eval-n", "2"], ["--figure-format", "tiff"]]
)
def test_demo_rejects_bad_sizes_and_formats(tmp_path, capsys, args):
    assert main(["demo", "--out", str(tmp_path / "out"), *args]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert not (tmp_path / "out").exists()
