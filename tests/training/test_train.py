"""End-to-end training runs on a tiny network: outputs, one step against a hand-computed
Adam step, and the failure modes (diverged loss, mismatched or conflicting resumes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import pirf.data
from pirf.errors import PirfError
from pirf.models import edm_loss, load_checkpoint, preset_denoiser, sample_training_noise
from pirf.training import loop, read_metrics, train
from pirf.training.draws import Draws
from pirf.training.ema import ema_beta
from pirf.training.schedule import learning_rate
from tests.training.conftest import TINY_NET, WITH_DROPOUT, tiny_config


def test_run_writes_checkpoints_metrics_figures_and_summary(poisson_file, tmp_path):
    out = tmp_path / "run"
    previews = {"figure_every": 12, "figure_samples": 2, "figure_steps": 3}
    summary = train(tiny_config(poisson_file, out, **previews, figure_format="pdf"))
    data = pirf.data.load(poisson_file)

    assert summary["completed"] and summary["iterations"] == 6 and summary["start_iteration"] == 0
    assert summary["parameters"] == 78322 and summary["checkpoint"] == str(out / "checkpoint")
    assert json.loads((out / "summary.json").read_text()) == summary
    checkpoint = load_checkpoint(out / "checkpoint")
    info = checkpoint.info
    assert info.pde_name == "poisson" and info.resolution == (8, 8)
    assert info.normalisation == data.normalisation
    assert info.counters["iteration"] == 6 and info.counters["samples"] == 24
    assert info.training["batch"] == 4 and info.training["model_overrides"] == TINY_NET
    assert checkpoint.ema is not None and checkpoint.optimizer_state is None
    # only the newest periodic checkpoint is kept; it carries the optimizer for resuming
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["iter-0000006"]
    assert load_checkpoint(out / "checkpoints" / "iter-0000006").optimizer_state is not None

    records = read_metrics(out / "metrics.jsonl")
    assert [r["iteration"] for r in records] == [2, 4, 6]
    for record in records:
        expected = learning_rate(
            record["iteration"] - 1, base=2e-3, warmup=2, total=6, final_ratio=0.05
        )
        assert record["lr"] == pytest.approx(expected)
        assert record["samples"] == 4 * record["iteration"] and record["grad_norm"] > 0
    assert summary["final_loss"] == pytest.approx(records[-1]["loss"])

    assert [p.split("/")[-1] for p in summary["figures"]] == [
        "samples-iter-0000003.pdf",
        "samples-iter-0000006.pdf",
    ]
    for figure in summary["figures"]:
        assert Path(figure).read_bytes()[:4] == b"%PDF"


def test_one_step_equals_a_hand_computed_adam_step(poisson_file, tmp_path):
    """The loop's first step, rebuilt from public pieces: same initial weights, batch, noise,
    warm-up rate, clipping (active here) and EMA."""
    summary = train(
        tiny_config(poisson_file, tmp_path / "run", iters=1, grad_clip=0.05, ema_rampup=0.0)
    )
    data = pirf.data.load(poisson_file)
    draws = Draws(0, n_data=len(data), batch=4)
    torch.manual_seed(draws.init_seed())
    model = preset_denoiser("tiny", channels=2, resolution=8, **TINY_NET)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    x = data.normalisation.to_model(data[draws.indices(0).tolist()])
    sigma, noise = sample_training_noise(x, draws.noise_generators(0))
    loss = edm_loss(model, x, sigma=sigma, noise=noise).mean()
    loss.backward()
    norm = torch.sqrt(sum(p.grad.square().sum() for p in model.parameters()))
    assert norm > 0.05  # so clipping really acts
    for p in model.parameters():
        p.grad *= 0.05 / norm
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3 * 1 / 2)  # warm-up step 1 of 2
    optimizer.step()

    trained = load_checkpoint(tmp_path / "run" / "checkpoint")
    assert summary["final_loss"] == pytest.approx(loss.item(), rel=1e-6)
    for name, value in model.backbone.state_dict().items():
        torch.testing.assert_close(trained.model.backbone.state_dict()[name], value)
    beta = ema_beta(4, 4, halflife=8.0, rampup=None)
    for name, value in model.state_dict().items():
        expected = beta * initial[name] + (1 - beta) * value
        torch.testing.assert_close(trained.ema.state_dict()[name], expected)


def test_stopped_and_resumed_run_ends_bitwise_equal(poisson_file, tmp_path):
    net = {"model_overrides": WITH_DROPOUT}
    straight = train(tiny_config(poisson_file, tmp_path / "a", **net))
    first = train(tiny_config(poisson_file, tmp_path / "b", stop_at=3, **net))
    assert not first["completed"] and first["checkpoint"].endswith("iter-0000003")
    assert not (tmp_path / "b" / "checkpoint").exists()
    resumed = train(tiny_config(poisson_file, tmp_path / "b", resume=True, **net))
    assert resumed["start_iteration"] == 3 and resumed["completed"]
    assert resumed["weights_sha256"] == straight["weights_sha256"]
    for name in ("model.safetensors", "ema.safetensors"):
        a = (tmp_path / "a" / "checkpoint" / name).read_bytes()
        assert a == (tmp_path / "b" / "checkpoint" / name).read_bytes()
    # the log keeps one history: lines up to the stop, then the resumed part
    log_a = read_metrics(tmp_path / "a" / "metrics.jsonl")
    log_b = read_metrics(tmp_path / "b" / "metrics.jsonl")
    assert [r["iteration"] for r in log_b] == [2, 3, 4, 6]
    assert log_b[-1]["loss"] == log_a[-1]["loss"]


def test_resume_without_options_takes_the_stored_settings(poisson_file, tmp_path):
    train(tiny_config(poisson_file, tmp_path / "run", stop_at=2))
    config = tiny_config(poisson_file, tmp_path / "run", resume=True, iters=3)
    for name in ("preset", "batch", "lr", "warmup", "ema_halflife", "model_overrides"):
        setattr(config, name, None)
    summary = train(config)
    assert summary["iterations"] == 3 and summary["batch"] == 4 and summary["lr"] == 2e-3


def test_diverged_loss_stops_and_keeps_the_last_good_checkpoint(
    poisson_file, tmp_path, monkeypatch
):
    calls = []
    honest = loop.batch_loss

    def poisoned(*args):
        calls.append(1)
        loss = honest(*args)
        return loss * float("nan") if len(calls) == 4 else loss

    monkeypatch.setattr(loop, "batch_loss", poisoned)
    out = tmp_path / "run"
    with pytest.raises(PirfError) as error:
        train(tiny_config(poisson_file, out))
    message = str(error.value)
    assert "\n" not in message and "non-finite loss nan at iteration 4" in message
    assert str(out / "checkpoints" / "iter-0000002") in message
    assert not (out / "checkpoint").exists()
    kept = load_checkpoint(out / "checkpoints" / "iter-0000002")
    assert kept.info.counters["iteration"] == 2
    assert all(torch.isfinite(p).all() for p in kept.model.parameters())


def test_new_run_refuses_a_directory_with_a_run(poisson_file, tmp_path):
    train(tiny_config(poisson_file, tmp_path / "run", iters=2))
    with pytest.raises(PirfError, match="already holds a training run; pass resume=True"):
        train(tiny_config(poisson_file, tmp_path / "run", iters=2))


def test_resume_refuses_conflicting_settings(poisson_file, tmp_path):
    train(tiny_config(poisson_file, tmp_path / "run", stop_at=4))
    with pytest.raises(PirfError, match=r"batch is 8 but the run was made with 4"):
        train(tiny_config(poisson_file, tmp_path / "run", resume=True, batch=8))
    with pytest.raises(PirfError, match=r"^iters 3 is below the 4 iterations"):
        train(tiny_config(poisson_file, tmp_path / "run", resume=True, iters=3))


def test_resume_refuses_other_data(poisson_file, tmp_path):
    train(tiny_config(poisson_file, tmp_path / "run", stop_at=2))
    other_seed = pirf.data.generate("poisson", 16, 8, 1, tmp_path / "other.h5").path
    with pytest.raises(PirfError, match="normalisation mismatch"):
        train(tiny_config(other_seed, tmp_path / "run", resume=True))
    finer = pirf.data.generate("poisson", 4, 16, 0, tmp_path / "finer.h5").path
    with pytest.raises(PirfError, match="resolution mismatch"):
        train(tiny_config(finer, tmp_path / "run", resume=True))
    with pytest.raises(PirfError, match="nothing to resume"):
        train(tiny_config(poisson_file, tmp_path / "empty", resume=True))


def test_kolmogorov_base_models_see_the_forcing_phase(tmp_path):
    # A shift-equivariant network put half of its Kolmogorov samples at the forcing's wrong
    # phase (docs/kolmogorov.md): models trained for it get the forcing's harmonic as input.
    data = tmp_path / "kolmogorov16.h5"
    pirf.data.generate("kolmogorov", 4, 16, 0, data, preset="tiny")
    train(tiny_config(data, tmp_path / "run", iters=1))
    config = load_checkpoint(tmp_path / "run" / "checkpoint").model.backbone.config
    assert config.position_harmonics == ((1, 4),) and config.periodic == (True, True)
    assert config.in_channels == 3 and config.out_channels is None


def test_translation_invariant_pdes_get_no_position_channels(poisson_file, tmp_path):
    train(tiny_config(poisson_file, tmp_path / "run", iters=1))
    assert (
        load_checkpoint(tmp_path / "run" / "checkpoint").model.backbone.config.position_harmonics
        == ()
    )
