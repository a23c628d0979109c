"""The diffusers example of docs/models.md runs as written, its checkpoint loads bit for
bit, and ``pirf finetune --top-modules conv_out`` runs on it (tiny settings)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from pirf.cli import main

pytest.importorskip("diffusers")

DOC = Path(__file__).resolve().parents[2] / "docs" / "models.md"


def test_the_diffusers_example_runs_and_finetunes(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    (block,) = [b for b in blocks if "from_diffusers(unet, scheduler)" in b]
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    torch.manual_seed(0)
    exec(compile(block, str(DOC), "exec"), namespace)
    model, loaded = namespace["model"].eval(), namespace["loaded"]
    assert namespace["samples"].shape == (4, 2, 16, 16)
    x = torch.randn(2, 2, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(loaded.denoiser(x, torch.tensor([0.05, 5.0])),
                           model(x, torch.tensor([0.05, 5.0])))  # fmt: skip
    capsys.readouterr()
    code = main(["finetune", "--ckpt", "runs/ddpm-poisson", "--out", "runs/ddpm-poisson-pirf",
                 "--top-modules", "conv_out", "--iters", "1", "--batch", "2", "--steps", "3",
                 "--eval-steps", "3", "--eval-n", "4", "--eval-every", "0", "--device", "cpu",
                 "--no-figures", "--json"])  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["completed"] and summary["trainable_parameters"] == sum(
        p.numel() for p in model.backbone.network.conv_out.parameters()
    )
