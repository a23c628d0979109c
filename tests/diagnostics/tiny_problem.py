"""A tiny Poisson checkpoint and reference file for command tests (8 x 8, seconds)."""

from __future__ import annotations

from pathlib import Path

import torch

import pirf.data
import pirf.pdes
from pirf.models import preset_denoiser, save_checkpoint

RESOLUTION = 8


def make_problem(folder: Path, *, n: int = 6, pde_name: str = "poisson") -> tuple[Path, Path]:
    """Write ``folder/ckpt`` (a tiny U-Net with the data's normalisation) and
    ``folder/ref.h5`` (``n`` exact solutions); returns both paths."""
    reference = folder / "ref.h5"
    summary = pirf.data.generate(
        pde_name, n=n, resolution=RESOLUTION, seed=0, out=reference, split="test"
    )
    pde = pirf.pdes.get(pde_name)
    torch.manual_seed(0)
    model = preset_denoiser(
        "tiny", channels=len(pde.channels), resolution=RESOLUTION, base_channels=8, bf16=False
    )
    checkpoint = folder / "ckpt"
    save_checkpoint(
        checkpoint,
        model,
        pde=pde,
        normalisation=summary.written.normalisation,
        resolution=RESOLUTION,
    )
    return checkpoint, reference
