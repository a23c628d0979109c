"""The examples of docs/custom-pde.md run as written and give correct residuals."""

import re
from pathlib import Path

import torch

import pirf.pdes

DOC = Path(__file__).resolve().parents[2] / "docs" / "custom-pde.md"


def run_examples() -> dict:
    namespace: dict = {}
    for block in re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S):
        exec(compile(block, str(DOC), "exec"), namespace)
    return namespace


def test_documented_examples_work():
    namespace = run_examples()
    heat = pirf.pdes.get("heat")
    # u = sin(pi x) sin(pi y) solves -lap u = 2 pi^2 u; the five-point residual is O(h^2).
    x, y = heat.grid.mesh((33, 33))
    u = torch.sin(torch.pi * x) * torch.sin(torch.pi * y)
    fields = torch.stack([2 * torch.pi**2 * u, u])[None]
    relative = heat.residual(fields).abs().max() / (2 * torch.pi**2)
    assert relative < 1e-2
    allen_cahn = namespace["AllenCahn"](epsilon=0.1)
    assert allen_cahn.params == {"epsilon": 0.1}
    constant = torch.ones(1, 1, 16, 16)  # u = 1 is a stationary state: residual 0
    assert allen_cahn.residual(constant).abs().max() == 0
