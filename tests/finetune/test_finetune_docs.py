"""The example of docs/finetune-your-own.md runs as written and trains only the head."""

import re
from pathlib import Path

import torch

DOC = Path(__file__).resolve().parents[2] / "docs" / "finetune-your-own.md"


def test_own_denoiser_and_own_pde_example_runs(capsys):
    (block,) = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
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
