"""Fine-tuning networks written elsewhere: ``top_prefixes`` / ``top_modules`` are names in the
user's network for every kind of model, a wrapped network fine-tunes from Python, and
``pirf finetune --ckpt`` runs on a wrapped checkpoint with ``--top-modules``, refusing
unknown modules (and an unallowed import) in one line before any work."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch

import pirf.pdes
from pirf.cli import main
from pirf.errors import PirfError
from pirf.finetune import FinetuneConfig, PIRFTrainer
from pirf.models import load_model, save_checkpoint, wrap
from pirf.pdes.normalisation import Normalisation
from pirf.settings import load_config
from tests.finetune.tiny import tiny_model
from tests.models.toy_networks import PlainDenoiser, TupleNet, first_item

SHAPE = (2, 8, 8)


def settings(**changes: Any) -> FinetuneConfig:
    values: dict[str, Any] = {"ckpt": ".", "out": ".", "steps": 4, "truncation": 2,
                              "batch": 4, "lr": 1e-2, "warmup": 0, "iters": 3}  # fmt: skip
    values.update(changes)
    return FinetuneConfig.of(**values)


def energy(samples: torch.Tensor) -> torch.Tensor:
    return samples.square().mean((1, 2, 3))


def wrapped() -> torch.nn.Module:
    torch.manual_seed(0)
    return wrap(TupleNet(), shape=SHAPE, output=0, bf16=False)


def trained_names(model: torch.nn.Module, **options: Any) -> list[str]:
    prefixes = options.pop("top_prefixes", None)
    trainer = PIRFTrainer(model, settings(**options), shape=SHAPE, loss_fn=energy,
                          top_prefixes=prefixes)  # fmt: skip
    return [name for name, _ in trainer.named_trainable]


@pytest.mark.parametrize(
    ("make", "names", "expected"),
    [
        (wrapped, ["head"], ["backbone.network.head.weight", "backbone.network.head.bias"]),
        (lambda: tiny_model(dtype=torch.float32), ["out_conv"],
         ["backbone.out_conv.weight", "backbone.out_conv.bias"]),
        (lambda: PlainDenoiser(), ["head"], ["head.weight", "head.bias"]),
    ],
)  # fmt: skip
def test_module_names_are_relative_to_the_users_network(make, names, expected):
    assert trained_names(make(), top_prefixes=names) == expected
    assert trained_names(make(), top_modules=tuple(names)) == expected
    lora = trained_names(make(), top_modules=tuple(names), trainable="lora")
    assert lora and all(name.startswith(expected[0].rsplit(".", 1)[0]) for name in lora)


def test_unknown_modules_are_named_with_the_valid_ones():
    with pytest.raises(PirfError) as error:
        trained_names(wrapped(), top_modules=("head", "tail", "neck"))
    assert str(error.value) == (
        "TupleNet has no module named 'tail', 'neck'; valid names: body, body.0, body.1, head"
    )


def test_a_wrapped_network_finetunes_its_top_modules_only():
    model = wrapped()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = PIRFTrainer(model, settings(), shape=SHAPE, loss_fn=energy, top_prefixes=["head"])
    losses = [trainer.step(i).reward_loss for i in range(3)]
    assert all(torch.isfinite(torch.tensor(losses)))
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"backbone.network.head.weight", "backbone.network.head.bias"}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A random wrapped TupleNet saved as a Poisson model at 8 x 8."""
    path = tmp_path_factory.mktemp("wrapped") / "base"
    torch.manual_seed(0)
    model = wrap(TupleNet(), shape=SHAPE, output=first_item, top_modules=["head"],
                 factory="tests.models.toy_networks:TupleNet", config={"width": 8})  # fmt: skip
    save_checkpoint(path, model, pde=pirf.pdes.get("poisson"), resolution=8,
                    normalisation=Normalisation(shift=(0.0, 0.0), scale=(2.0, 2.0)))  # fmt: skip
    return path


def run(capsys, *args: object) -> tuple[int, str, str]:
    code = main(["finetune", *(str(a) for a in args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


TINY = ("--iters", 2, "--batch", 4, "--steps", 4, "--eval-steps", "4", "--eval-n", 4,
        "--eval-every", 0, "--device", "cpu", "--no-figures")  # fmt: skip


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--allow-import", "--top-modules", "head,tail"),
         "TupleNet has no module named 'tail'; valid names: body, body.0, body.1, head"),
        (("--allow-import", "--top-modules", "head,,body"),
         "--top-modules expects comma-separated module names, got 'head,,body'"),
        (("--top-modules", "head"), "pass --allow-import if you trust its source"),
        (("--allow-import", "--top-modules", "head", "--top-blocks", "1"),
         "give --top-blocks (a pirf U-Net's finest blocks) or --top-modules (module names), "
         "not both"),
    ],
)  # fmt: skip
def test_bad_modules_and_unallowed_imports_fail_before_any_work(base, tmp_path, capsys,
                                                                 options, message):  # fmt: skip
    code, stdout, stderr = run(capsys, "--ckpt", base, "--out", tmp_path / "run", *TINY, *options)
    assert code == 2 and stdout == ""
    assert stderr.startswith("error: ") and stderr.count("\n") == 1 and message in stderr
    assert not (tmp_path / "run").exists()


def test_pirf_finetune_runs_on_a_wrapped_checkpoint(base, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, _ = run(capsys, "--ckpt", base, "--out", out, *TINY, "--allow-import",
                          "--top-modules", "head,body.0", "--json")  # fmt: skip
    assert code == 0
    summary = json.loads(stdout)
    assert summary["completed"] and summary["iterations"] == 2
    assert summary["config"]["top_modules"] == ["head", "body.0"]
    stored = load_config(FinetuneConfig, out / "config.toml")  # what --config starts from
    assert stored.layers.top_modules == ("head", "body.0") and stored.allow_import is True
    tuned = load_model(out / "checkpoint", allow_import=True)
    start = load_model(base, allow_import=True)
    tuned_state, start_state = tuned.denoiser.state_dict(), start.denoiser.state_dict()
    changed = {k for k in start_state if not torch.equal(tuned_state[k], start_state[k])}
    assert changed and all(k.startswith(("backbone.network.head", "backbone.network.body.0"))
                           for k in changed)  # fmt: skip


def test_commands_load_a_wrapped_checkpoint_only_when_allowed(base, tmp_path, capsys):
    import pirf.data

    reference = tmp_path / "test.h5"
    pirf.data.generate("poisson", 4, 8, 0, reference)
    sample = ["sample", "--ckpt", str(base), "--n", "2", "--steps", "2", "--device", "cpu",
              "--out-file", str(tmp_path / "s.h5")]  # fmt: skip
    evaluate = ["evaluate", "--ckpt", str(base), "--reference", str(reference), "--n", "4",
                "--steps", "2", "--device", "cpu", "--no-consistency", "--json"]  # fmt: skip
    solve = ["solve", "--ckpt", str(base), "--reference", str(reference), "--observe", "u=8",
             "--n", "2", "--steps", "2", "--out-file", str(tmp_path / "solved.h5"),
             "--json"]  # fmt: skip
    value_gap = ["diagnose", "value-gap", "--ckpt", str(base), "--reference", str(reference),
                 "--n", "2", "--runs", "1", "--steps", "2", "--sigmas", "0.5",
                 "--out", str(tmp_path / "gap"), "--json"]  # fmt: skip
    for command in (sample, evaluate, solve, value_gap):
        capsys.readouterr()
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "pass --allow-import if you trust its source" in err
        assert main([*command, "--allow-import"]) == 0
    assert (tmp_path / "s.h5").is_file() and (tmp_path / "solved.h5").is_file()
    assert (tmp_path / "gap").is_dir()
