"""The examples of docs/finetune-your-own.md run as written: the program trains only the
head after calibrating the reward's scale, the evaluation compares base and fine-tuned
residuals on fresh seeds, and the saved wrapped model reloads bit for bit."""

import re
import sys
import types
from pathlib import Path

import pytest
import torch

from pirf.errors import PirfError
from pirf.models import load_checkpoint

DOC = Path(__file__).resolve().parents[2] / "docs" / "finetune-your-own.md"


def test_own_denoiser_and_own_pde_example_runs(capsys, tmp_path, monkeypatch):
    block, evaluation, saving = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    code_lines = [line for line in block.splitlines() if line.strip()]
    assert len(code_lines) <= 50  # the promise: under 50 lines of user code
    namespace: dict = {}
    torch.manual_seed(0)
    exec(compile(block, str(DOC), "exec"), namespace)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and all("residual loss" in line for line in lines)
    trainer = namespace["trainer"]
    assert [name for name, _ in trainer.named_trainable] == ["head.weight", "head.bias"]
    tuned, pretrained = namespace["tuned_weights"], trainer.pretrained
    assert not torch.equal(tuned["head.weight"], pretrained["head.weight"])
    for name in ("body.0.weight", "body.2.weight"):  # frozen: bitwise unchanged
        assert torch.equal(tuned[name], pretrained[name])
    # The Allen-Cahn residual of the documented operator vanishes on u = +-1 and on u = 0.
    residual = namespace["allen_cahn_residual"]
    for value in (-1.0, 0.0, 1.0):
        assert residual(torch.full((1, 1, 8, 8), value)).abs().max() == 0
    # The reward scale is the base model's mean loss on its own samples.
    base = namespace["base_samples"]
    expected = float(residual(base).square().flatten(1).mean(1).double().mean())
    assert trainer.scale == pytest.approx(expected, rel=1e-12)

    exec(compile(evaluation, str(DOC), "exec"), namespace)
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["N = 20", "N = 40"]

    monkeypatch.chdir(tmp_path)
    exec(compile(saving, str(DOC), "exec"), namespace)
    with pytest.raises(PirfError, match="allow_import=True"):
        load_checkpoint("runs/allen-cahn-tuned")
    nets = types.ModuleType("my_project.nets")
    nets.MyDenoiser = namespace["MyDenoiser"]
    monkeypatch.setitem(sys.modules, "my_project", types.ModuleType("my_project"))
    monkeypatch.setitem(sys.modules, "my_project.nets", nets)
    loaded = load_checkpoint("runs/allen-cahn-tuned", allow_import=True).model
    x, sigma = torch.randn(2, 1, 8, 8), torch.tensor([0.1, 3.0])
    with torch.no_grad():
        assert torch.equal(loaded(x, sigma), namespace["model"](x, sigma))
    assert loaded.top_module_names() == ["backbone.network.head"]
