"""Export a checkpoint as a self-describing model directory (Hugging Face hub layout).

::

    OUT/
      model.safetensors    the weights a sampler uses (EMA when recorded), with metadata
      config.json          architecture, EDM preconditioning, PDE, grid, normalisation,
                           recorded settings, the weights' SHA-256 (the pirf checkpoint
                           description, plus keys for readers)
      README.md            model card: YAML front matter and what the run recorded

``config.json`` carries the pirf checkpoint format tag, so the exported directory is itself
a checkpoint: ``pirf.models.load_model(OUT)`` and ``pirf sample --ckpt OUT`` open it and
sample exactly what the source checkpoint samples. Nothing is uploaded.

Every input is checked before any work; the directory is written beside its destination
under a temporary name and renamed when complete, so an interrupted export leaves nothing
under the final name. An existing ``OUT`` is replaced only with ``force`` and only when it
is empty or an earlier export.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

import pirf
from pirf.atomic import _terminate_as_exit, fsync_path
from pirf.errors import PirfError, option
from pirf.models.checkpoint import (
    EXPORT_INFO_FILE,
    INFO_FILE,
    MODEL_FILE,
    CheckpointInfo,
    _apply_umask,
    _replace_directory,
    file_sha256,
    info_file,
    verify_checkpoint,
)
from pirf.models.records import public, read_records

CARD_FILE = "README.md"
EXPORT_FILES = (MODEL_FILE, EXPORT_INFO_FILE, CARD_FILE)
MODEL_TYPE = "pirf-edm"
"""``model_type`` of ``config.json``: an EDM-preconditioned denoiser of pirf."""


def _is_export(directory: Path) -> bool:
    """``directory`` holds an earlier export (a pirf ``config.json``, no ``checkpoint.json``)."""
    found = info_file(directory)
    return found is not None and found.name == EXPORT_INFO_FILE


def check_export_destination(out: str | Path, source: Path, *, force: bool) -> Path:
    """Refuse an ``out`` that export must not write: a file, the source checkpoint or a
    directory holding it, a place inside a checkpoint, an existing non-empty directory
    (unless ``force`` and it is an earlier export), or an unwritable location. Returns
    ``out`` made absolute (``.`` and ``..`` resolved), where the export is staged beside."""
    from pirf.checks import check_writable_dir, checkpoint_containing

    out = Path(out)
    named = option("out")
    target, origin = Path(os.path.abspath(out)), Path(os.path.abspath(source))
    if out.exists() and not out.is_dir():
        raise PirfError(f"{named} {out} is a file; give a directory")
    if target == origin or target in origin.parents:
        raise PirfError(f"{named} {out} holds the checkpoint it would export; choose another")
    found = checkpoint_containing(target)
    if found is not None and not (found == target and _is_export(out)):
        where = "is" if found == target else "lies inside"
        raise PirfError(f"{named} {out} {where} the checkpoint {found}; choose another location")
    if out.is_dir() and any(out.iterdir()):
        if not _is_export(out):
            raise PirfError(
                f"{named} {out} exists, is not empty and is not an exported pirf model; "
                "choose a new directory"
            )
        if not force:
            raise PirfError(
                f"{named} {out} holds an earlier export; pass {option('force', True)} to "
                "replace it"
            )
    check_writable_dir(target.parent, "out")  # staged and renamed there
    return target


def export_config(
    info: CheckpointInfo,
    *,
    weights_entry: dict[str, Any],
    weights: str,
    kind: str,
    source_sha256: str,
) -> dict[str, Any]:
    """The content of ``config.json``: the checkpoint description (read back by
    :func:`pirf.models.load_model`) with file paths reduced to names, no optimizer, and
    keys that restate the model for readers (``model_type``, ``preconditioning``,
    ``channels``) and say where it came from (``export``)."""
    description = info.to_json()
    description.update(
        training=public(info.training),
        extra=public(info.extra),
        files={MODEL_FILE: weights_entry},
        optimizer=None,
    )
    readable = {
        "library_name": "pirf",
        "model_type": MODEL_TYPE,
        "preconditioning": {
            "kind": "edm",
            "sigma_data": info.sigma_data,
            "c_noise": "ln(sigma) / 4",
        },
        "channels": info.channels,
        "export": {
            "pirf_version": pirf.__version__,
            "weights": weights,
            "source_kind": kind,
            "source_sha256": source_sha256,
        },
    }
    first = ("format", "format_version", "pirf_version")
    return {
        **{key: description[key] for key in first},
        **readable,
        **{key: value for key, value in description.items() if key not in first},
    }


def _exported_weights(directory: Path) -> str | None:
    """Which weights an earlier export holds (``export.weights`` of its ``config.json``);
    None for a checkpoint that is not an export."""
    if not _is_export(directory):
        return None
    try:
        recorded = json.loads((directory / EXPORT_INFO_FILE).read_text()).get("export", {})
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    weights = recorded.get("weights") if isinstance(recorded, dict) else None
    return weights if weights in ("ema", "model") else None


def _backbone_tensors(directory: Path, ema: bool) -> tuple[dict[str, torch.Tensor], str]:
    """The backbone tensors a sampler uses (EMA when asked for and recorded), checked
    against the architecture by loading them, and which they are (``ema`` or ``model``;
    an export of an export keeps what the first one said)."""
    from pirf.models.loaded import load_model

    loaded = load_model(directory, ema=ema)
    weights = "ema" if ema and loaded.checkpoint.ema is not None else "model"
    if loaded.checkpoint.ema is None:
        weights = _exported_weights(directory) or weights
    tensors = {
        name: tensor.detach().to("cpu", copy=True).contiguous()
        for name, tensor in loaded.denoiser.backbone.state_dict().items()
    }
    return tensors, weights


def _canonical_header(path: Path) -> None:
    """Rewrite a safetensors header with sorted keys, in place and at the same length.

    The safetensors writer orders the metadata entries differently from run to run, so
    the same weights would get a different SHA-256 each time; sorted, an export of the same
    checkpoint is the same file. The data offsets do not depend on the header's key order;
    should the sorted header not have the original length, the file is left as it is.
    """
    with path.open("r+b") as handle:
        size = int.from_bytes(handle.read(8), "little")
        header = handle.read(size)
        text = json.dumps(json.loads(header), sort_keys=True, separators=(",", ":"))
        encoded = text.encode("utf-8")
        if len(encoded) > size or len(header.rstrip(b" ")) != len(encoded):
            return
        handle.seek(8)
        handle.write(encoded.ljust(size, b" "))


def _write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    fsync_path(path)


def _readable(directory: Path) -> None:
    """Give every file the permissions a plain file gets (safetensors writes 0600): an
    export is made to be shared."""
    mask = os.umask(0)
    os.umask(mask)
    for file in directory.iterdir():
        file.chmod(0o666 & ~mask)


def export_model(
    ckpt: str | Path,
    out: str | Path,
    *,
    force: bool = False,
    license: str | None = None,
    ema: bool = True,
) -> dict[str, Any]:
    """Write the checkpoint ``ckpt`` names (a checkpoint or a run directory: its ``best/``,
    else its final ``checkpoint/``) to ``out`` as ``model.safetensors``, ``config.json``
    and a ``README.md`` model card, and return a summary of what was written.

    ``ema=False`` exports the raw instead of the EMA weights; ``license`` (an identifier
    such as ``mit``) goes into the card's front matter, which otherwise leaves it to the
    user. ``force`` replaces an earlier export at ``out``.
    """
    from pirf.checks import check_model_checkpoint
    from pirf.models.card import check_license, model_card

    license = check_license(license)
    given = out
    # The hashes are verified when the weights are loaded, still before anything is written.
    source, kind, info, pde = check_model_checkpoint(ckpt)
    out = check_export_destination(out, source, force=force)
    source_info = info_file(source) or source / INFO_FILE
    source_sha256 = file_sha256(source_info)
    tensors, weights = _backbone_tensors(source, ema)
    parameters = sum(tensor.numel() for tensor in tensors.values())
    records = read_records(info, source)

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        with _terminate_as_exit():
            _apply_umask(staging)
            metadata = {
                "format": "pt",
                "library": "pirf",
                "pirf_version": pirf.__version__,
                "pde": pde.name,
                "backbone": str(info.architecture.get("backbone")),
                "weights": weights,
                "source_sha256": source_sha256,
            }
            save_file(tensors, str(staging / MODEL_FILE), metadata=metadata)
            _canonical_header(staging / MODEL_FILE)
            fsync_path(staging / MODEL_FILE)
            entry = {
                "sha256": file_sha256(staging / MODEL_FILE),
                "bytes": (staging / MODEL_FILE).stat().st_size,
            }
            config = export_config(
                info, weights_entry=entry, weights=weights, kind=kind, source_sha256=source_sha256
            )
            _write(staging / EXPORT_INFO_FILE, json.dumps(config, indent=2) + "\n")
            card = model_card(
                info,
                records,
                pde,
                kind=kind,
                weights=weights,
                parameters=parameters,
                license=license,
                directory=out.name,
                source_sha256=source_sha256,
            )
            _write(staging / CARD_FILE, card)
            _readable(staging)
            verify_checkpoint(staging)  # the export reads back as a checkpoint
            if out.is_dir() and not any(out.iterdir()):
                os.rmdir(out)
            _replace_directory(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    evaluation = records.evaluation
    return {
        "out": str(given),
        "checkpoint": str(source),
        "checkpoint_kind": kind,
        "pde": pde.name,
        "weights": weights,
        "parameters": parameters,
        "finetuned": records.finetuned,
        "license": license,
        "files": {name: (out / name).stat().st_size for name in EXPORT_FILES},
        "weights_sha256": entry["sha256"],
        "source_sha256": source_sha256,
        "residual_mse": None if evaluation is None else evaluation.residual_mse,
        "fidelity": None if evaluation is None else evaluation.fidelity,
        "evaluation_iteration": None if evaluation is None else evaluation.iteration,
    }


__all__ = ["CARD_FILE", "EXPORT_FILES", "MODEL_TYPE", "check_export_destination", "export_model"]
