"""``pirf export`` / ``export_model``: the exported directory samples bitwise like its
source, its card states only what the run recorded, and bad inputs are refused before any
work with nothing left behind."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import pirf.data
from pirf.cli import main
from pirf.errors import PirfError
from pirf.finetune import finetune
from pirf.models import card as card_module
from pirf.models import export_model, load_model
from pirf.models.export import EXPORT_FILES
from pirf.sampling import generate
from pirf.training import read_metrics
from tests.finetune.test_run import config, make_base


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """The final checkpoint of a 6-iteration training run (``base/checkpoint``)."""
    return make_base(tmp_path_factory)


@pytest.fixture(scope="module")
def tuned(base, tmp_path_factory) -> Path:
    """The run directory of a 4-iteration fine-tuning of ``base``, evaluated every 2."""
    out = tmp_path_factory.mktemp("export-run") / "tuned"
    finetune(config(base, out, iters=4, eval_every=2))
    return out


def draws(path: Path, **options) -> torch.Tensor:
    model = load_model(path, **options)
    return generate(model.denoiser, 3, model.shape, seed=5, steps=4).samples


def front_matter(text: str) -> dict[str, object]:
    """The card's YAML front matter, read for the shapes the card writes."""
    assert text.startswith("---\n")
    block = text.split("---\n")[1]
    matter: dict[str, object] = {}
    key = None
    for line in block.splitlines():
        if line.startswith("- ") and key is not None:
            matter.setdefault(key, [])
            matter[key].append(line[2:])  # type: ignore[union-attr]
        else:
            key, _, value = line.partition(":")
            if value.strip():
                matter[key] = value.strip()
    return matter


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


def test_the_export_of_a_finetuned_run_samples_bitwise_like_the_run(tuned, tmp_path):
    summary = export_model(tuned, tmp_path / "model")
    out = tmp_path / "model"
    assert sorted(p.name for p in out.iterdir()) == sorted(EXPORT_FILES)
    assert (summary["checkpoint_kind"], summary["weights"], summary["finetuned"]) == (
        "best",
        "ema",
        True,
    )
    assert torch.equal(draws(out), draws(tuned))
    original, exported = load_model(tuned), load_model(out)
    assert exported.kind == "checkpoint" and exported.pde.name == "poisson"
    assert exported.normalisation == original.normalisation and exported.shape == original.shape
    # The weights file carries metadata and the config restates the model for readers.
    with safe_open(str(out / "model.safetensors"), "pt") as handle:
        metadata = handle.metadata()
    assert metadata["library"] == "pirf" and metadata["pde"] == "poisson"
    assert metadata["weights"] == "ema" and metadata["pirf_version"] == pirf.__version__
    text = (out / "config.json").read_text()
    settings = json.loads(text)
    assert settings["model_type"] == "pirf-edm" and settings["channels"] == ["a", "u"]
    assert settings["preconditioning"]["sigma_data"] == 0.5
    assert settings["architecture"]["backbone"] == "unet"
    assert settings["resolution"] == [8, 8] and settings["optimizer"] is None
    # No directory of the machine it was made on.
    card = (out / "README.md").read_text()
    assert str(tuned.parent) not in text and str(tuned.parent) not in card


def test_the_card_states_the_recorded_evaluation_of_the_exported_weights(tuned, tmp_path):
    summary = export_model(tuned, tmp_path / "model", license="apache-2.0")
    card = (tmp_path / "model" / "README.md").read_text()
    matter = front_matter(card)
    assert matter["library_name"] == "pirf" and matter["license"] == "apache-2.0"
    assert {"diffusion", "physics-informed", "pde", "poisson"} <= set(matter["tags"])
    iteration = load_model(tuned).checkpoint.info.counters["iteration"]
    evaluations = [r for r in read_metrics(tuned / "metrics.jsonl") if r["kind"] == "eval"]
    recorded = [r for r in evaluations if r["iteration"] == iteration][-1]
    assert summary["evaluation_iteration"] == iteration
    assert summary["residual_mse"] == recorded["residual_mse"]
    assert f"| residual MSE, 6 steps | {recorded['residual_mse']['6']:.4g} |" in card
    assert f"{evaluations[0]['residual_mse']['6']:.4g}" in card  # the base model's, beside
    for fact in ("laplacian(u) = a", "poisson8.h5", "truncation", "reward", "trainable"):
        assert fact in card
    assert "not measured" not in card


def test_a_base_model_without_an_evaluation_is_not_measured(base, tmp_path):
    summary = export_model(base.parent, tmp_path / "base-model")
    card = (tmp_path / "base-model" / "README.md").read_text()
    assert summary["residual_mse"] is None and summary["finetuned"] is False
    assert "Residual: not measured. Fidelity: not measured." in card
    assert "This model was not fine-tuned." in card
    assert "license" not in front_matter(card)
    assert re.search(r"\| residual MSE", card) is None


def test_a_finetuned_checkpoint_outside_its_run_uses_its_own_record(tuned, tmp_path):
    alone = tmp_path / "alone"
    shutil.copytree(tuned / "best", alone)
    summary = export_model(alone, tmp_path / "model")
    assert summary["residual_mse"] is not None and summary["fidelity"].keys() == {"mmd"}
    assert "(source: checkpoint)" in (tmp_path / "model" / "README.md").read_text()


def test_the_cards_python_lines_sample_from_the_export(base, tmp_path, monkeypatch):
    export_model(base, tmp_path / "model")
    card = (tmp_path / "model" / "README.md").read_text()
    code = card.split("```python\n")[1].split("```")[0]
    monkeypatch.chdir(tmp_path)
    scope: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), scope)
    fields = scope["fields"]
    assert isinstance(fields, torch.Tensor) and fields.shape == (16, 2, 8, 8)


def test_raw_weights_on_request(base, tmp_path):
    summary = export_model(base, tmp_path / "raw", ema=False)
    assert summary["weights"] == "model"
    assert torch.equal(draws(tmp_path / "raw"), draws(base, ema=False))


def run(capsys, *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_command_samples_and_refuses_like_the_rest(tuned, tmp_path, capsys):
    out = tmp_path / "model"
    code, stdout, _ = run(capsys, "export", "--ckpt", tuned, "--out", out, "--json")
    summary = json.loads(stdout)
    assert code == 0 and summary["out"] == str(out) and summary["weights"] == "ema"
    first = {name: (out / name).read_bytes() for name in EXPORT_FILES}
    for ckpt, name in ((tuned, "a.h5"), (out, "b.h5")):
        args = ("sample", "--ckpt", ckpt, "--n", 3, "--steps", 4, "--out-file", tmp_path / name)
        assert run(capsys, *args)[0] == 0
    a, b = pirf.data.load(tmp_path / "a.h5"), pirf.data.load(tmp_path / "b.h5")
    assert torch.equal(a.fields(), b.fields())
    a.close(), b.close()
    # An existing export is replaced only with --force; the same export is the same bytes.
    code, _, err = run(capsys, "export", "--ckpt", tuned, "--out", out)
    assert code == 2 and err.count("\n") == 1 and "--force" in err
    code, stdout, _ = run(capsys, "export", "--ckpt", tuned, "--out", out, "--force")
    assert code == 0 and "residual MSE" in stdout and "pirf sample --ckpt" in stdout
    assert {name: (out / name).read_bytes() for name in EXPORT_FILES} == first
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--ckpt", "{tmp}/missing", "--out", "{tmp}/m"), "no such checkpoint directory"),
        (("--ckpt", "{tmp}", "--out", "{tmp}/m"), "neither a pirf checkpoint nor a run"),
        (("--ckpt", "{run}", "--out", "{run}"), "holds the checkpoint it would export"),
        (("--ckpt", "{run}", "--out", "{run}/best/m"), "lies inside the checkpoint"),
        (("--ckpt", "{run}", "--out", "{tmp}/full", "--force"), "is not an exported pirf model"),
        (("--ckpt", "{run}", "--out", "{tmp}/file"), "is a file"),
        (("--ckpt", "{run}", "--out", "{tmp}/m", "--license", "MIT licence"), "--license must"),
    ],
)
def test_bad_inputs_are_one_line_errors_and_leave_nothing(
    tuned, tmp_path, capsys, args, message
):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    (tmp_path / "file").write_text("a file")
    before = sorted(p.name for p in tmp_path.iterdir())
    filled = [a.format(tmp=tmp_path, run=tuned) for a in args]
    code, stdout, err = run(capsys, "export", *filled)
    assert code == 2 and stdout == "" and err.count("\n") == 1 and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert (tmp_path / "full" / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tuned.iterdir()) == sorted(
        ["best", "checkpoint", "checkpoints", "config.toml", "metrics.jsonl", "summary.json"]
    )


def test_a_failure_while_writing_leaves_nothing_and_keeps_an_earlier_export(
    base, tmp_path, monkeypatch
):
    out = tmp_path / "model"
    export_model(base, out)
    earlier = (out / "config.json").read_bytes()

    def broken(*args, **kwargs):
        raise PirfError("the card failed")

    monkeypatch.setattr(card_module, "model_card", broken)
    with pytest.raises(PirfError, match="the card failed"):
        export_model(base, out, force=True)
    with pytest.raises(PirfError, match="the card failed"):
        export_model(base, tmp_path / "new")
    assert (out / "config.json").read_bytes() == earlier
    assert not (tmp_path / "new").exists() and leftovers(tmp_path) == []


def test_an_export_is_a_base_for_finetuning(base, tmp_path):
    export_model(base, tmp_path / "model")
    summary = finetune(config(tmp_path / "model", tmp_path / "run", iters=1, eval_every=0))
    assert summary["completed"] and summary["iterations"] == 1


def test_an_export_of_an_export_is_the_same_model(base, tmp_path):
    export_model(base, tmp_path / "first")
    summary = export_model(tmp_path / "first", tmp_path / "second")
    assert summary["weights"] == "ema" and summary["checkpoint_kind"] == "checkpoint"
    assert torch.equal(draws(tmp_path / "second"), draws(base))


def test_a_best_checkpoint_at_iteration_0_is_called_the_base_weights(base, tmp_path):
    # Stopped after one iteration, before any evaluation of the fine-tuned model: best/
    # holds the base model's weights, saved at iteration 0.
    run = tmp_path / "run"
    finetune(config(base, run, iters=4, eval_every=2, stop_at=1))
    assert load_model(run / "best").checkpoint.info.counters["iteration"] == 0
    summary = export_model(run, tmp_path / "model")
    card = (tmp_path / "model" / "README.md").read_text()
    assert "base weights kept by PIRF fine-tuning" in card
    assert "Iteration 0 holds the base model's weights" in card
    assert summary["evaluation_iteration"] == 0 and "| metric | this model |\n" in card
