"""Checks every entry point makes before it creates a file or starts computing.

A bad argument (an unknown device, an output directory that cannot be made, a damaged or
mismatched dataset, a checkpoint that is not one) must fail in the first second, with one
line that names the problem, and leave nothing behind: no empty run directory, no partial
data, no traceback after an hour of work. The API entry points
(:func:`pirf.training.train`, :func:`pirf.finetune.finetune`,
:func:`pirf.bench.run_bench`, the evaluation protocol, sampling to a file, data
generation) call these functions first, so Python callers get the same protection as the
command line.

The checks only read (a writability probe creates a hidden folder and removes it at once);
torch and the file readers are imported on first use.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pirf.errors import PirfError, option

if TYPE_CHECKING:
    import torch

    from pirf.finetune.config import FinetuneConfig
    from pirf.models.checkpoint import CheckpointInfo
    from pirf.pdes.base import PDE
    from pirf.training.config import TrainConfig

CHECKPOINT_INFO = "checkpoint.json"
"""The file that makes a directory a checkpoint (``pirf.models.checkpoint.INFO_FILE``)."""
EXPORT_INFO = "config.json"
"""The description of an exported model, with the same format tag (``EXPORT_INFO_FILE``)."""
BEST = "best"
FINAL = "checkpoint"
CHECKPOINT_KINDS = ("best", "final", "checkpoint")
"""What :func:`resolve_checkpoint` took: a run's ``best/``, its final ``checkpoint/``, or
the checkpoint directory it was given."""


# --------------------------------------------------------------------------- primitives
def check_device(device: torch.device | str) -> torch.device:
    """The torch device ``device`` names, refusing one this machine does not have (``cuda``
    without a CUDA GPU, ``cuda:3`` on a machine with two)."""
    from pirf.devices import resolve_device

    return resolve_device(device)


def check_count(name: str, value: Any, *, minimum: int = 1, flag: str | None = None) -> None:
    """``value`` is an integer of at least ``minimum`` (a sample count, steps, a seed);
    ``flag``: the option's name on the command line where it differs from ``--name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        bound = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise PirfError(f"{option(name, flag=flag)} must be {bound}, got {value!r}")


def _existing_ancestor(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (the working directory at worst)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path.cwd()


def writable_error(directory: Path) -> str | None:
    """Why no file can be made in the existing ``directory`` (None if one can): probed by
    making a hidden folder there and removing it at once, since permission bits alone
    mislead (root, read-only mounts, ACLs). The directory's modification time is put back,
    so the probe leaves no trace."""
    try:
        before = os.stat(directory)
        os.rmdir(tempfile.mkdtemp(prefix=".pirf-probe-", dir=directory))
    except OSError as error:
        return error.strerror or str(error)
    with contextlib.suppress(OSError):
        os.utime(directory, ns=(before.st_atime_ns, before.st_mtime_ns))
    return None


def check_writable_dir(path: str | Path, name: str, *, flag: str | None = None) -> Path:
    """``path`` is a directory that exists and can be written, or can be created.

    Nothing is created: the nearest existing ancestor must be a directory in which a
    folder can be made (:func:`writable_error`).
    """
    path = Path(path)
    named = option(name, flag=flag)
    if path.exists() and not path.is_dir():
        raise PirfError(f"{named} {path} is a file; give a directory")
    ancestor = _existing_ancestor(path)
    if not ancestor.is_dir():
        raise PirfError(f"{named} {path}: {ancestor} is a file, not a directory")
    reason = writable_error(ancestor)
    if reason is not None:
        where = "" if ancestor == path else f" (to create {path} in it)"
        raise PirfError(
            f"{named}: cannot write to {ancestor}{where}: {reason}; "
            "choose a writable location"
        )
    return path


def checkpoint_containing(path: str | Path) -> Path | None:
    """The checkpoint directory ``path`` is, or lies inside, if any."""
    for candidate in (Path(path), *Path(path).parents):
        for name in (CHECKPOINT_INFO, EXPORT_INFO):
            info = candidate / name
            if info.is_file():
                try:
                    if json.loads(info.read_text()).get("format") == "pirf-checkpoint":
                        return candidate
                except (OSError, ValueError, AttributeError):
                    continue
    return None


def check_not_inside_checkpoint(path: str | Path, name: str, *, flag: str | None = None) -> None:
    """``path`` is neither a checkpoint directory nor inside one: a checkpoint is replaced
    as a whole when it is saved again, which would delete whatever else lies in it."""
    found = checkpoint_containing(Path(path).absolute())
    if found is not None:
        where = "is" if found == Path(path).absolute() else "lies inside"
        raise PirfError(
            f"{option(name, flag=flag)} {path} {where} the checkpoint {found}; choose a "
            "location outside it"
        )


def check_output_dir(path: str | Path, name: str, *, flag: str | None = None) -> Path:
    """An output directory a command will create or write into (a run, a bench, figures):
    not a file, not inside a checkpoint, and creatable or writable."""
    check_not_inside_checkpoint(path, name, flag=flag)
    return check_writable_dir(path, name, flag=flag)


def check_output_file(
    path: str | Path, name: str, *, force: bool = False, flag: str | None = None
) -> Path:
    """An output file a command will write at its end (samples, a report): its folder
    exists and is writable, it is not a directory, not inside a checkpoint, and not an
    existing file unless ``force``."""
    from pirf.atomic import check_destination

    check_not_inside_checkpoint(path, name, flag=flag)
    return check_destination(path, force=force, name=name, flag=flag)


# --------------------------------------------------------------------------- checkpoints
def resolve_checkpoint(path: str | Path) -> tuple[Path, str]:
    """The checkpoint ``path`` means and its kind (:func:`pirf.models.resolve_checkpoint`)."""
    from pirf.models.loaded import resolve_checkpoint as resolve

    return resolve(path)


def checkpoint_note(given: str | Path, path: Path, kind: str) -> str | None:
    """The line a command prints when a run directory stood for one of its checkpoints."""
    if kind == "checkpoint":
        return None
    what = "best checkpoint" if kind == "best" else "final checkpoint"
    return f"{option('ckpt')} {given} is a run directory: took its {what} {path}"


def check_model_checkpoint(
    path: str | Path, *, verify: bool = False
) -> tuple[Path, str, CheckpointInfo, PDE]:
    """Resolve ``path`` (:func:`resolve_checkpoint`) to a checkpoint that sampling can use:
    readable, recording its PDE (rebuilt from the registry), normalisation and resolution,
    with every weight file present at its recorded size (``verify``: and SHA-256).
    Returns the checkpoint, its kind, its description and the PDE."""
    import pirf.pdes
    from pirf.models.checkpoint import read_checkpoint_info, verify_checkpoint

    resolved, kind = resolve_checkpoint(path)
    info = verify_checkpoint(resolved) if verify else read_checkpoint_info(resolved)
    if info.pde is None or info.normalisation is None or info.resolution is None:
        raise PirfError(
            f"{resolved}: the checkpoint lacks its PDE, normalisation or resolution; make it "
            "with pirf train or pirf finetune"
        )
    for name, entry in info.files.items():
        file = resolved / name
        if not file.is_file():
            raise PirfError(f"checkpoint {resolved} is incomplete: {name} is missing")
        if isinstance(entry.get("bytes"), int) and file.stat().st_size != entry["bytes"]:
            raise PirfError(
                f"checkpoint {resolved}: {name} has {file.stat().st_size} bytes, "
                f"{entry['bytes']} were written (truncated or modified)"
            )
    pde = pirf.pdes.from_metadata(info.pde, source=str(resolved))
    return resolved, kind, info, pde


# --------------------------------------------------------------------------- datasets
def check_dataset(
    path: str | Path,
    name: str,
    *,
    minimum: int = 1,
    scan: int | None = None,
) -> Any:
    """Open a fields file, check it holds at least ``minimum`` samples and read its first
    ``scan`` samples (all with ``scan=None``; 0 for none) so that a damaged or non-finite
    sample fails now. Returns the closed :class:`~pirf.data.PDEDataset` (its header, PDE
    and normalisation stay available)."""
    import pirf.data

    path = Path(path)
    if not path.exists():
        raise PirfError(f"no such {option(name)} file: {path}")
    data = pirf.data.load(path)
    try:
        if len(data) < minimum:
            raise PirfError(
                f"{option(name)} {path} holds {len(data)} samples; at least {minimum} needed"
            )
        count = len(data) if scan is None else min(scan, len(data))
        for start in range(0, count, 256):  # reading checks checksums and finiteness
            data[start : min(start + 256, count)]
    finally:
        data.close()
    return data


def check_same_problem(
    data: Any, name: str, pde: PDE, resolution: tuple[int, int], source: str
) -> None:
    """A dataset holds fields of ``pde`` (name, channels) at ``resolution`` (the model's)."""
    if data.pde.name != pde.name or list(data.channels) != list(pde.channels):
        raise PirfError(
            f"{option(name)} {data.path} holds '{data.pde.name}' {list(data.channels)}; "
            f"{source} is for '{pde.name}' {list(pde.channels)}"
        )
    if tuple(data.shape[-2:]) != tuple(resolution):
        size = "x".join(map(str, data.shape[-2:]))
        raise PirfError(
            f"{option(name)} {data.path} is {size}; {source} is "
            f"{'x'.join(map(str, resolution))}: use data of the same resolution"
        )


# --------------------------------------------------------------------------- runs
def check_training_run(config: TrainConfig) -> None:
    """Everything :func:`pirf.training.train` needs, checked before the run directory is
    made, on the resolved configuration (:func:`pirf.training.loop.prepare`): the device,
    the output directory, every sample of the data, and the network the preset and
    ``model_overrides`` describe for that data (a resumed run: that the data fits the
    stored run)."""
    from pirf.evaluation.figures import check_figure_format
    from pirf.models.checkpoint import read_checkpoint_info
    from pirf.models.presets import unet_config
    from pirf.training import rundir
    from pirf.training.loop import _check_resume  # the run's own check, made earlier here
    from pirf.training.tracking import check_tracker

    out = Path(config.run.out)
    check_device(config.run.device)
    check_tracker(config.run.tracker)
    check_figure_format(str(config.run.figure_format))
    check_output_dir(out, "out")
    resume_from = rundir.prepare(out, resume=bool(config.run.resume), create=False)
    data = check_dataset(config.data, "data")
    if resume_from is not None:
        _check_resume(read_checkpoint_info(resume_from), data)
        return
    unet_config(
        config.network.preset,
        channels=len(data.channels),
        resolution=data.resolution,
        periodic=tuple(data.pde.grid.periodic),
        **{
            "position_harmonics": data.pde.position_harmonics(),
            **config.network.model_overrides,
        },
    )


def check_finetune_run(config: FinetuneConfig) -> None:
    """Everything :func:`pirf.finetune.finetune` needs, checked before the run directory is
    made, on the resolved configuration (:func:`pirf.finetune.run.prepare`): the device,
    the output directory, the base checkpoint (verified), the trainable layers and the
    reward for its network and PDE, the reference data, and that a resumed run continues
    from the same base."""
    import torch

    from pirf.evaluation.figures import check_figure_format
    from pirf.finetune.reward import Reward
    from pirf.finetune.run import REFERENCE_LIMIT
    from pirf.finetune.trainable import model_names, top_names
    from pirf.models.checkpoint import file_sha256, info_file, read_checkpoint_info
    from pirf.models.edm import build_denoiser
    from pirf.training import rundir
    from pirf.training.tracking import check_tracker

    out = Path(config.run.out)
    check_device(config.run.device)
    check_tracker(config.run.tracker)
    check_figure_format(str(config.run.figure_format))
    check_output_dir(out, "out")
    resume_from = rundir.prepare(out, resume=bool(config.run.resume), create=False)
    ckpt, _, info, pde = check_model_checkpoint(config.ckpt, verify=True)
    if resume_from is not None:
        resumed = read_checkpoint_info(resume_from)
        recorded = resumed.extra.get("finetune", {}).get("base_sha256")
        description = info_file(ckpt) or ckpt / CHECKPOINT_INFO
        if recorded is not None and recorded != file_sha256(description):
            raise PirfError(
                f"{option('resume', True)}: {ckpt} is not the base checkpoint the run started "
                "from"
            )
    assert info.normalisation is not None and info.resolution is not None
    objective, layers = config.objective, config.layers
    Reward(
        pde,
        info.normalisation,
        reward=objective.reward,
        norm=objective.norm,
        snap=objective.reward_snap,
        weight=objective.reward_weight,
        relative=objective.reward_relative,
        inputs=objective.reward_inputs,
    )
    if objective.distill_on == "inputs" and not pde.has_inputs:
        raise PirfError(
            f"{option('distill_on')} inputs needs a PDE that marks inputs (PDE.input_mask), "
            f"and '{pde.name}' marks none; use all"
        )
    with torch.device("meta"):  # the structure only: no memory, no initialisation cost
        model = build_denoiser(
            info.architecture, sigma_data=info.sigma_data, allow_import=bool(config.allow_import)
        )
    if layers.trainable == "top" or (layers.trainable == "lora" and layers.lora_layers == "top"):
        if layers.top_modules is not None:
            model_names(model, layers.top_modules)
        else:
            top_names(model, layers.top_blocks)
    reference = config.evaluation.reference
    if reference is None:  # the run's default: the base model's training set, if present
        training_set = info.extra.get("data", {}).get("path")
        reference = training_set if training_set and Path(training_set).is_file() else None
    if reference is not None:
        data = check_dataset(reference, "reference", minimum=4, scan=REFERENCE_LIMIT)
        check_same_problem(data, "reference", pde, info.resolution, f"the model {ckpt}")


__all__ = [
    "CHECKPOINT_KINDS",
    "check_count",
    "check_dataset",
    "check_device",
    "check_finetune_run",
    "check_model_checkpoint",
    "check_not_inside_checkpoint",
    "check_output_dir",
    "check_output_file",
    "check_same_problem",
    "check_training_run",
    "check_writable_dir",
    "checkpoint_containing",
    "checkpoint_note",
    "resolve_checkpoint",
    "writable_error",
]
