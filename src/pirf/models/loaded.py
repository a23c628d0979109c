"""A checkpoint opened for use: the denoiser with its PDE, normalisation and sample shape.

Every stage that uses a trained model (sampling, evaluation, fine-tuning, the trained
baselines, the benchmark) opens it with :func:`load_model`, which also accepts the run
directory of ``pirf train`` or ``pirf finetune`` (:func:`resolve_checkpoint` says which of
its checkpoints that means)::

    model = load_model("runs/darcy-pirf")            # best/ if there, else checkpoint/
    samples = generate(model.denoiser, 64, model.shape, seed=0).samples
    fields = model.normalisation.to_physical(samples)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

import pirf.pdes
from pirf.errors import PirfError
from pirf.models.checkpoint import (
    INFO_FILE,
    Checkpoint,
    file_sha256,
    info_file,
    load_checkpoint,
)
from pirf.models.edm import EDMDenoiser
from pirf.pdes.base import PDE
from pirf.pdes.normalisation import Normalisation

BEST = "best"
"""The checkpoint a fine-tuning run chose (``pirf.finetune.BEST``): the evaluation with the
lowest residual inside the fidelity band, on its evaluation seeds."""
FINAL = "checkpoint"
"""The last weights of a training or fine-tuning run (``pirf.training.rundir.FINAL``)."""


@dataclass(frozen=True)
class LoadedModel:
    """A checkpoint opened for use, with everything needed to sample it and read the
    samples in physical units."""

    checkpoint: Checkpoint
    denoiser: EDMDenoiser
    """The EMA weights when the checkpoint has them and they were asked for, else the
    trained weights; in eval mode, on the device it was loaded to."""
    pde: PDE
    normalisation: Normalisation
    """Maps the model's space to physical units (``to_physical``) and back."""
    shape: tuple[int, int, int]
    """``(C, H, W)`` of one sample."""
    sha256: str
    """SHA-256 of ``checkpoint.json`` (of ``config.json`` for an exported model): identifies
    this checkpoint in what is made from it."""
    kind: str
    """Which checkpoint :func:`resolve_checkpoint` took: ``"best"`` or ``"final"`` of a run
    directory, or ``"checkpoint"`` for a checkpoint folder given as such."""

    @property
    def path(self) -> Path:
        """The checkpoint folder that was loaded."""
        return self.checkpoint.path

    @property
    def resolution(self) -> tuple[int, int]:
        """``(H, W)`` of one sample."""
        return (self.shape[1], self.shape[2])


def _holds_checkpoint(directory: Path) -> bool:
    return info_file(directory) is not None


def resolve_checkpoint(path: str | Path) -> tuple[Path, str]:
    """The checkpoint folder ``path`` names, and which one it is.

    A checkpoint folder (an exported model's folder included) is itself
    (``"checkpoint"``). A run directory of ``pirf finetune`` or ``pirf train`` means its
    ``best/`` checkpoint if it holds one (``"best"``: fine-tuning chooses it on validation
    seeds inside the fidelity band), else its final ``checkpoint/`` (``"final"``). Anything
    else is a one-line :class:`PirfError` saying what is missing.
    """
    directory = Path(path)
    if not directory.exists():
        raise PirfError(f"no such checkpoint directory: {directory}")
    if not directory.is_dir():
        raise PirfError(f"{directory} is not a pirf checkpoint (a checkpoint is a directory)")
    if _holds_checkpoint(directory):
        return directory, "checkpoint"
    for name, kind in ((BEST, "best"), (FINAL, "final")):
        if _holds_checkpoint(directory / name):
            return directory / name, kind
    if (directory / "checkpoints").is_dir():
        raise PirfError(
            f"the run {directory} has no final or best checkpoint yet; resume it, or give "
            f"one of its periodic checkpoints ({directory / 'checkpoints'}/iter-...)"
        )
    raise PirfError(
        f"{directory} is neither a pirf checkpoint nor a run directory: it has no {INFO_FILE} "
        f"and no {BEST}/ or {FINAL}/ checkpoint"
    )


def load_model(
    path: str | Path,
    *,
    device: torch.device | str = "cpu",
    ema: bool = True,
    bf16: bool = True,
    float32: bool = False,
    allow_import: bool = False,
) -> LoadedModel:
    """Open the checkpoint ``path`` names (a checkpoint or a run directory, see
    :func:`resolve_checkpoint`) for use on ``device``.

    The denoiser holds the EMA weights when the checkpoint has them and ``ema`` is set.
    ``bf16`` is the denoiser's own autocast default on CUDA (samplers tell it each step's
    precision anyway); ``float32`` casts its weights to float32, for training from them.
    The checkpoint must record its PDE, normalisation and resolution, as every checkpoint
    ``pirf train``, ``pirf finetune`` and the trained baselines write does.
    ``allow_import`` lets an architecture that names a ``module:callable`` factory (a
    network saved through ``pirf.models.wrap``) import and run it.
    """
    directory, kind = resolve_checkpoint(path)
    checkpoint = load_checkpoint(
        directory,
        device=device,
        ema=ema,
        optimizer=False,
        bf16=bf16,
        allow_import=allow_import,
    )
    info = checkpoint.info
    if info.pde is None or info.normalisation is None or info.resolution is None:
        raise PirfError(
            f"{directory}: the checkpoint lacks its PDE, normalisation or resolution; make it "
            "with pirf train or pirf finetune (or save_checkpoint with pde, normalisation and "
            "resolution)"
        )
    pde = pirf.pdes.from_metadata(info.pde, source=str(directory))
    denoiser = checkpoint.ema if (ema and checkpoint.ema is not None) else checkpoint.model
    if float32:
        denoiser = denoiser.float()
    return LoadedModel(
        checkpoint=checkpoint,
        denoiser=denoiser,
        pde=pde,
        normalisation=info.normalisation,
        shape=(len(pde.channels), *info.resolution),
        sha256=file_sha256(info_file(directory) or directory / INFO_FILE),
        kind=kind,
    )


__all__ = ["BEST", "FINAL", "LoadedModel", "load_model", "resolve_checkpoint"]
