"""``pirf.finetune.finetune`` end to end on a tiny base model: exact resume, the output
checkpoint's format, what changed in it, the refusals of resume, and the summary."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

import pirf.data
import pirf.sampling
import pirf.training
from pirf.errors import PirfError
from pirf.finetune import FinetuneConfig, finetune
from pirf.models import layers, load_checkpoint, load_model, parameters_under
from pirf.training import read_metrics, weights_fingerprint
from tests.training.conftest import tiny_config

_BASES: dict[str, Path] = {}


def make_base(factory: pytest.TempPathFactory) -> Path:
    """A 6-iteration base model of the small U-Net on 16 Poisson fields of 8 x 8, made once
    per process (also used by the command-line tests)."""
    if "base" not in _BASES:
        root = factory.mktemp("finetune-base")
        pirf.data.generate("poisson", 16, 8, 0, root / "poisson8.h5")
        pirf.training.train(tiny_config(root / "poisson8.h5", root / "base"))
        _BASES["base"] = root / "base" / "checkpoint"
    return _BASES["base"]


BOOKKEEPING: dict[str, Any] = {
    "eval_every": 3,
    "checkpoint_every": 2,
    "log_every": 1,
    "device": "cpu",
    "progress": False,
    "figures": False,
}
"""Fields that are not stored with the run: a resumed invocation passes them again."""


def config(ckpt: Path, out: Path, **changes: Any) -> FinetuneConfig:
    """6 iterations of batch 4 on 6-step trajectories, evaluated on 8 samples at 6 steps;
    a real EMA (half-life 8 trajectories) so that resuming must restore it too."""
    settings: dict[str, Any] = {
        "iters": 6,
        "batch": 4,
        "steps": 6,
        "eval_steps": (6,),
        "eval_n": 8,
        "lr": 1e-3,
        "ema_halflife": 8.0,
        **BOOKKEEPING,
    }
    settings.update(changes)
    return FinetuneConfig.of(ckpt=ckpt, out=out, **settings)


def run(ckpt: Path, out: Path, **changes: Any) -> dict[str, Any]:
    return finetune(config(ckpt, out, **changes))


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return make_base(tmp_path_factory)


@pytest.fixture(scope="module")
def straight(base, tmp_path_factory):
    """Uninterrupted 6-iteration runs by trainable set, made once: ``(out, summary)``."""
    made: dict[str, tuple[Path, dict[str, Any]]] = {}

    def get(trainable: str) -> tuple[Path, dict[str, Any]]:
        if trainable not in made:
            out = tmp_path_factory.mktemp("straight") / trainable
            made[trainable] = (out, run(base, out, trainable=trainable))
        return made[trainable]

    return get


def train_records(out: Path) -> list[dict[str, Any]]:
    """The training log lines without their timings."""
    return [
        {k: v for k, v in record.items() if "seconds" not in k}
        for record in read_metrics(out / "metrics.jsonl")
        if record["kind"] == "train"
    ]


@pytest.mark.parametrize("trainable", ["top", "lora"])
def test_resumed_run_is_bitwise_the_uninterrupted_one(base, straight, tmp_path, trainable):
    out_a, summary_a = straight(trainable)
    out_b = tmp_path / "b"
    first = run(base, out_b, trainable=trainable, stop_at=4)
    assert not first["completed"] and first["iterations"] == 4 and first["checkpoint"] is None
    assert not (out_b / "checkpoint").exists()
    assert [p.name for p in (out_b / "checkpoints").iterdir()] == ["iter-0000004"]
    # The resumed invocation names no trajectory option: sampler steps, trainable set, lr,
    # EMA, evaluation budgets, iterations all come from the stored run (the defaults, e.g.
    # 20 sampler steps and trainable 'top', would give other numbers).
    torch.manual_seed(99)  # the resumed run must not depend on the global generator
    resumed = finetune(FinetuneConfig.of(ckpt=base, out=out_b, resume=True, **BOOKKEEPING))
    assert resumed["completed"] and resumed["start_iteration"] == 4
    assert resumed["iterations"] == 6 and resumed["trainable"] == trainable

    a = load_checkpoint(out_a / "checkpoint")
    b = load_checkpoint(out_b / "checkpoint")
    start = load_checkpoint(base).ema
    # fine-tuning changed the weights, and the EMA is not a copy of them, so both
    # fingerprints below compare something that resuming has to restore
    assert weights_fingerprint(a.model) != weights_fingerprint(start)
    assert weights_fingerprint(a.ema) != weights_fingerprint(a.model)
    assert weights_fingerprint(b.model) == weights_fingerprint(a.model)
    assert weights_fingerprint(b.ema) == weights_fingerprint(a.ema)
    # CPU arithmetic in one thread: every logged number is bitwise the same
    records_a, records_b = train_records(out_a), train_records(out_b)
    assert [r["iteration"] for r in records_b] == [1, 2, 3, 4, 5, 6]
    assert records_b == records_a
    assert all(r["loss"] > 0 and r["grad_norm"] > 0 for r in records_a)
    for key in ("residual_mse", "residual_mse_median", "fidelity"):
        assert resumed["final"][key] == summary_a["final"][key]


def test_output_checkpoint_samples_unchanged_and_only_the_top_moved(base, straight):
    out, summary = straight("top")
    model = load_model(out / "checkpoint")
    result = pirf.sampling.generate(model.denoiser, 2, model.shape, 0, steps=4)
    assert result.samples.shape == (2, 2, 8, 8) and torch.isfinite(result.samples).all()
    assert model.pde.name == "poisson" and model.checkpoint.info.resolution == (8, 8)
    training = json.loads((out / "checkpoint" / "checkpoint.json").read_text())["training"]
    assert training["trainable"] == "top" and training["truncation"] == 2
    assert training["steps"] == 6 and training["iters"] == 6

    start = load_checkpoint(base).ema
    tuned = load_checkpoint(out / "checkpoint")
    top = {name for name, _ in parameters_under(start, start.top_module_names(None))}
    assert 0 < len(top) < len(list(start.parameters()))
    assert (
        sum(p.numel() for n, p in start.named_parameters() if n in top)
        == summary["trainable_parameters"]
    )
    initial = dict(start.named_parameters())
    for network in (tuned.model, tuned.ema):
        moved = set()
        for name, value in network.named_parameters():
            if name in top:
                moved |= {name} if not torch.equal(value, initial[name]) else set()
            else:
                # frozen: never written to, so bitwise the base model's EMA weights
                assert torch.equal(value, initial[name]), name
        assert moved and moved <= top
    # the buffers (none are trained) are the base model's as well
    for name, value in tuned.model.named_buffers():
        assert torch.equal(value, dict(start.named_buffers())[name])


def test_lora_checkpoint_has_the_plain_architecture(base, straight):
    out, summary = straight("lora")
    keys = json.loads((out / "checkpoint" / "checkpoint.json").read_text())["files"]
    assert "optimizer.safetensors" not in keys  # the final checkpoint carries no Adam state
    # loads strictly (names, shapes, dtypes checked) into a network built without LoRA
    tuned = load_checkpoint(out / "checkpoint")
    names = [name for name, _ in tuned.model.named_parameters()]
    assert not any("parametrizations" in n or "lora" in n for n in names)
    start = load_checkpoint(base).ema
    assert names == [name for name, _ in start.named_parameters()]
    initial = dict(start.named_parameters())
    adaptable = {
        f"{name}.weight"
        for name, module in start.named_modules()
        if isinstance(module, (layers.Conv2d, torch.nn.Conv2d, torch.nn.Linear))
    }
    moved = [n for n, p in tuned.model.named_parameters() if not torch.equal(p, initial[n])]
    # LoRA moves conv and linear weights only; biases and norms stay the base model's
    assert moved and set(moved) <= adaptable
    # and the change of each weight is the low-rank B @ A (rank 4): the fifth singular
    # value is rounding noise of W0 + BA - W0 in float32, far below the first
    for name in moved:
        delta = (tuned.model.get_parameter(name).double() - initial[name].double()).flatten(1)
        values = torch.linalg.svdvals(delta)
        if len(values) > 4:
            assert values[4] < 1e-3 * values[0], name
    assert summary["trainable"] == "lora"
    assert 0 < summary["trainable_parameters"] < summary["parameters"]


def test_resume_refuses_another_trajectory_or_base(base, tmp_path):
    out = tmp_path / "run"
    run(base, out, stop_at=2)
    with pytest.raises(PirfError, match=r"resume=True: lr is 0.002 but the run .* made with 0.001"):
        finetune(config(base, out, resume=True, lr=2e-3))
    # the same weights, but recorded as another training run (other seed): another base
    other = tmp_path / "other-base"
    shutil.copytree(base, other)
    info = json.loads((other / "checkpoint.json").read_text())
    info["training"]["seed"] = info["training"].get("seed", 0) + 1
    (other / "checkpoint.json").write_text(json.dumps(info))
    with pytest.raises(PirfError, match="is not the base checkpoint the run started from"):
        finetune(config(other, out, resume=True))
    # the refusals changed nothing: a byte-identical copy of the base, elsewhere, resumes
    copy = tmp_path / "copy-base"
    shutil.copytree(base, copy)
    summary = finetune(config(copy, out, resume=True, iters=3))
    assert summary["start_iteration"] == 2 and summary["iterations"] == 3
    assert summary["config"]["lr"] == 1e-3


def test_new_run_refuses_a_directory_with_a_run(base, straight):
    out, _ = straight("top")
    before = {p: p.read_bytes() for p in (out / "metrics.jsonl", out / "summary.json")}
    with pytest.raises(PirfError, match="already holds a training run; pass resume=True"):
        finetune(config(base, out))
    assert all(p.read_bytes() == content for p, content in before.items())


def test_summary_and_evaluation_log(base, straight, tmp_path):
    out, summary = straight("top")
    assert json.loads((out / "summary.json").read_text()) == summary
    assert summary["completed"] and summary["iterations"] == 6 and summary["stopped"] is None
    before, after = summary["base"]["residual_mse"]["6"], summary["final"]["residual_mse"]["6"]
    assert before > 0 and after > 0 and summary["base"]["reward_scales"]["residual"] > 0
    assert summary["residual_ratio"]["6"] == pytest.approx(before / after, rel=1e-12)
    assert summary["reward_scales"] == summary["base"]["reward_scales"]
    assert summary["reward"] == "residual"
    assert 0 < summary["trainable_parameters"] < summary["parameters"] == 78322
    assert summary["nonfinite_samples"] == summary["nonfinite_gradients"] == 0

    evals = [r for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "eval"]
    assert [r["iteration"] for r in evals] == [0, 3, 6]
    assert evals[0]["residual_mse"] == summary["base"]["residual_mse"]
    assert evals[-1]["residual_mse"] == summary["final"]["residual_mse"]
    # the best checkpoint: the lowest residual among the evaluations inside the band,
    # the base model's own (iteration 0) included
    band = 1.5 * evals[0]["fidelity"]["mmd"]
    inside = [r for r in evals if r["fidelity"]["mmd"] <= band]
    assert len(inside) > 1  # six small steps do not leave the band
    best = min(inside, key=lambda r: r["residual_mse"]["6"])
    assert summary["best"]["iteration"] == best["iteration"]
    assert summary["best"]["residual_mse"] == best["residual_mse"]["6"]
    assert summary["best_checkpoint"] == str(out / "best") and (out / "best").is_dir()

    everything = run(base, tmp_path / "all", trainable="all", iters=2, eval_every=0)
    assert everything["trainable_parameters"] == everything["parameters"] == 78322
    assert math.isfinite(everything["final"]["residual_mse"]["6"])
