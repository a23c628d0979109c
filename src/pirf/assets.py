"""Files shipped inside the package: the tiny base model the demo starts from.

``assets/poisson-tiny`` is a pirf checkpoint (safetensors + JSON, no pickle) made with::

    pirf data splits poisson --preset tiny --train 4000 --test 512 --seed 0 --out-dir data
    pirf train --data data/train.h5 --preset tiny --out runs/poisson --device cpu

and saved with its EMA weights as the model weights (docs/finetune.md has its quality:
field MMD within the diffusion-core bar of the data-vs-data floor).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from pirf.errors import PirfError

CHECKPOINTS = ("poisson-tiny",)


def shipped_checkpoint(name: str) -> Path:
    """The directory of a checkpoint shipped with pirf."""
    if name not in CHECKPOINTS:
        raise PirfError(f"no shipped checkpoint '{name}'; shipped: {', '.join(CHECKPOINTS)}")
    path = Path(str(resources.files("pirf") / "assets" / name))
    if not (path / "checkpoint.json").is_file():
        raise PirfError(f"the shipped checkpoint {name} is missing from this installation")
    return path


__all__ = ["CHECKPOINTS", "shipped_checkpoint"]
