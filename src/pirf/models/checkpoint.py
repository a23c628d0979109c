"""Model checkpoints: a directory of safetensors weights and one JSON description.

Layout::

    NAME/
      checkpoint.json          format, versions, architecture, sigma_data, PDE metadata,
                               normalisation, resolution, training arguments, counters,
                               optimizer structure, and the SHA-256 of every weight file
      model.safetensors        backbone state dict
      ema.safetensors          EMA backbone state dict (optional)
      optimizer.safetensors    optimizer tensors (optional; the rest of its state is JSON)

An exported model (``pirf export``, :mod:`pirf.models.export`) is a checkpoint too: its
``config.json`` holds the same description (and a ``model.safetensors`` of the weights a
sampler uses), and a directory without ``checkpoint.json`` is read from its ``config.json``
when that carries the pirf format tag (:func:`info_file`).

Nothing is pickled, so loading never runs code from the file. A checkpoint is written into
a temporary directory beside its destination and renamed into place when complete, so a
crash never leaves a half-written checkpoint under the final name. Loading verifies the
hashes, then the tensor names, shapes and dtypes against the rebuilt network; every failure
is a one-line :class:`PirfError`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

import pirf
from pirf.atomic import fsync_path
from pirf.errors import PirfError
from pirf.models.backbone import check_architecture
from pirf.models.edm import SIGMA_DATA, EDMDenoiser, build_denoiser
from pirf.pdes.normalisation import Normalisation

FORMAT = "pirf-checkpoint"
FORMAT_VERSION = 1
INFO_FILE = "checkpoint.json"
EXPORT_INFO_FILE = "config.json"
"""The description of an exported model (the name the Hugging Face hub expects)."""
MODEL_FILE = "model.safetensors"
EMA_FILE = "ema.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
_HASH_CHUNK = 1 << 20


@dataclass
class CheckpointInfo:
    """Everything ``checkpoint.json`` says (read without touching the weights)."""

    architecture: dict[str, Any]
    """``{"backbone": name, "config": {...}}``: rebuilds the backbone."""
    sigma_data: float = SIGMA_DATA
    pde: dict[str, Any] | None = None
    """``PDE.metadata()``: ``pde`` (the name), ``channels``, ``params``, ``grid``, ...."""
    normalisation: Normalisation | None = None
    resolution: tuple[int, int] | None = None
    """Grid ``(H, W)`` the model was trained on."""
    training: dict[str, Any] = field(default_factory=dict)
    """Arguments of the run that made the checkpoint (JSON values)."""
    counters: dict[str, Any] = field(default_factory=dict)
    """Progress counters (``step``, ``iteration``, ``samples_seen``, ...)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form JSON for later stages (e.g. the parent checkpoint of a fine-tuned model)."""
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Weight file name -> ``{"sha256", "bytes"}``; filled in by :func:`save_checkpoint`."""
    optimizer: Any = None
    """JSON structure of the optimizer state (tensors by reference); filled in on save."""
    pirf_version: str = ""
    format_version: int = FORMAT_VERSION

    @property
    def pde_name(self) -> str | None:
        return None if self.pde is None else self.pde.get("pde")

    @property
    def channels(self) -> list[str] | None:
        return None if self.pde is None else list(self.pde.get("channels", []))

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": self.format_version,
            "pirf_version": self.pirf_version,
            "architecture": self.architecture,
            "sigma_data": self.sigma_data,
            "pde": self.pde,
            "normalisation": None if self.normalisation is None else self.normalisation.to_json(),
            "resolution": None if self.resolution is None else list(self.resolution),
            "training": self.training,
            "counters": self.counters,
            "extra": self.extra,
            "files": self.files,
            "optimizer": self.optimizer,
        }

    @classmethod
    def from_json(cls, data: Any, source: str = "checkpoint") -> CheckpointInfo:
        """Validate and decode ``checkpoint.json``; PirfError says what is wrong."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise PirfError(f"{source} is not a pirf checkpoint ({INFO_FILE} lacks the format tag)")
        version = data.get("format_version")
        if not isinstance(version, int) or version < 1:
            raise PirfError(f"{source}: invalid format_version {version!r}")
        if version > FORMAT_VERSION:
            raise PirfError(
                f"{source} has checkpoint format {version}; this pirf reads up to "
                f"{FORMAT_VERSION}: upgrade pirf"
            )
        try:
            architecture = check_architecture(data.get("architecture"))
            sigma_data = float(data.get("sigma_data", SIGMA_DATA))
            if not sigma_data > 0:
                raise ValueError(f"sigma_data must be positive, got {sigma_data}")
            pde = data.get("pde")
            if pde is not None and not (
                isinstance(pde, dict)
                and isinstance(pde.get("pde"), str)
                and isinstance(pde.get("channels"), list)
            ):
                raise ValueError("pde must hold a name ('pde') and a channel list")
            normalisation = data.get("normalisation")
            resolution = data.get("resolution")
            files = data.get("files", {})
            if not isinstance(files, dict) or MODEL_FILE not in files:
                raise ValueError(f"the file list lacks {MODEL_FILE}")
            for name, entry in files.items():
                if name not in (MODEL_FILE, EMA_FILE, OPTIMIZER_FILE):
                    raise ValueError(f"unexpected file {name!r}")
                if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
                    raise ValueError(f"file {name} has no sha256")
            for key in ("training", "counters", "extra"):
                if not isinstance(data.get(key, {}), dict):
                    raise ValueError(f"{key} must be a JSON object")
            return cls(
                architecture=architecture,
                sigma_data=sigma_data,
                pde=pde,
                normalisation=None
                if normalisation is None
                else Normalisation.from_json(normalisation),
                resolution=None if resolution is None else _resolution_pair(resolution),
                training=data.get("training", {}),
                counters=data.get("counters", {}),
                extra=data.get("extra", {}),
                files=files,
                optimizer=data.get("optimizer"),
                pirf_version=str(data.get("pirf_version", "")),
                format_version=version,
            )
        except PirfError as error:
            raise PirfError(f"{source}: {error}") from None
        except (KeyError, TypeError, ValueError) as error:
            raise PirfError(f"{source} has an invalid {INFO_FILE}: {error}") from None


@dataclass
class Checkpoint:
    """A loaded checkpoint: description, denoiser, optional EMA denoiser and optimizer state."""

    path: Path
    info: CheckpointInfo
    model: EDMDenoiser
    ema: EDMDenoiser | None = None
    optimizer_state: dict[str, Any] | None = None
    """Pass to ``optimizer.load_state_dict`` (same parameter order as when saved)."""


def _resolution_pair(resolution: Any) -> tuple[int, int]:
    """``R`` or ``(H, W)`` -> ``(H, W)`` of positive ints."""
    if isinstance(resolution, int):
        values = [resolution, resolution]
    elif isinstance(resolution, (list, tuple)):
        values = list(resolution)
    else:
        values = []
    if len(values) != 2 or not all(isinstance(v, int) and v > 0 for v in values):
        raise PirfError(f"resolution must be a positive int or (H, W), got {resolution!r}")
    return int(values[0]), int(values[1])


# --------------------------------------------------------------------------- optimizer state
def flatten_state(obj: Any, tensors: dict[str, torch.Tensor], path: str = "") -> Any:
    """JSON form of a nested structure; each tensor moves to ``tensors`` under its path.

    Dicts become ``{"__dict__": [[key, value], ...]}`` (keeps int keys and order), tuples
    ``{"__tuple__": [...]}``, tensors ``{"__tensor__": key}``.
    """
    if isinstance(obj, torch.Tensor):
        key = path or "tensor"
        if key in tensors:
            raise PirfError(f"two optimizer state entries share the name '{key}'")
        tensors[key] = obj.detach().to("cpu", copy=True).contiguous()
        return {"__tensor__": key}
    if isinstance(obj, Mapping):
        items = []
        for key, value in obj.items():
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                raise PirfError(f"cannot store state key {key!r} of type {type(key).__name__}")
            items.append(
                [key, flatten_state(value, tensors, f"{path}/{key}" if path else str(key))]
            )
        return {"__dict__": items}
    if isinstance(obj, (list, tuple)):
        values = [flatten_state(v, tensors, f"{path}/{i}") for i, v in enumerate(obj)]
        return {"__tuple__": values} if isinstance(obj, tuple) else values
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {"__float__": repr(obj)}
    raise PirfError(f"cannot store optimizer state value of type {type(obj).__name__} at {path}")


def unflatten_state(data: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    """Inverse of :func:`flatten_state`."""
    if isinstance(data, list):
        return [unflatten_state(v, tensors) for v in data]
    if isinstance(data, dict):
        if set(data) == {"__tensor__"}:
            if data["__tensor__"] not in tensors:
                raise PirfError(f"optimizer tensor '{data['__tensor__']}' is missing")
            return tensors[data["__tensor__"]]
        if set(data) == {"__tuple__"}:
            return tuple(unflatten_state(v, tensors) for v in data["__tuple__"])
        if set(data) == {"__float__"}:
            return float(data["__float__"])
        if set(data) == {"__dict__"}:
            return {key: unflatten_state(value, tensors) for key, value in data["__dict__"]}
        raise PirfError(f"unrecognised optimizer state entry with keys {sorted(data)}")
    return data


# --------------------------------------------------------------------------- files
def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _state_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    return {
        name: tensor.detach().to("cpu", copy=True).contiguous()
        for name, tensor in module.state_dict().items()
    }


def _write_tensors(directory: Path, name: str, tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    path = directory / name
    save_file(tensors, str(path))
    fsync_path(path)
    return {"sha256": file_sha256(path), "bytes": path.stat().st_size}


def _apply_umask(directory: Path) -> None:
    """Give a ``mkdtemp`` directory (created 0700) the permissions a plain mkdir would."""
    mask = os.umask(0)
    os.umask(mask)
    directory.chmod(0o777 & ~mask)


def info_file(directory: str | Path) -> Path | None:
    """The file that describes the checkpoint ``directory``: its ``checkpoint.json``, else
    the ``config.json`` of an exported model (one carrying the pirf format tag); None if
    neither is there."""
    directory = Path(directory)
    if (directory / INFO_FILE).is_file():
        return directory / INFO_FILE
    exported = directory / EXPORT_INFO_FILE
    try:
        if exported.is_file() and json.loads(exported.read_text()).get("format") == FORMAT:
            return exported
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        pass
    return None


def _is_checkpoint(path: Path) -> bool:
    try:
        return json.loads((path / INFO_FILE).read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _json_safe(value: Any, what: str) -> Any:
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as error:
        raise PirfError(f"{what} must be JSON-serialisable: {error}") from None


# --------------------------------------------------------------------------- save
def save_checkpoint(
    path: str | Path,
    model: EDMDenoiser,
    *,
    ema: nn.Module | None = None,
    optimizer: torch.optim.Optimizer | Mapping[str, Any] | None = None,
    pde: Any = None,
    normalisation: Normalisation | None = None,
    resolution: int | Sequence[int] | None = None,
    training: Mapping[str, Any] | None = None,
    counters: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    architecture: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> CheckpointInfo:
    """Write a checkpoint directory atomically and return what ``checkpoint.json`` says.

    ``model`` and ``ema`` are :class:`EDMDenoiser` s (or, for ``ema``, its backbone) of the
    same architecture (``pirf.models.wrap`` and ``from_diffusers`` make one of any network;
    the architecture then records the network's ``module:callable`` factory and its JSON
    keyword arguments, and saving refuses, saying what to provide, when it cannot);
    ``optimizer`` an optimizer or its ``state_dict()``; ``pde`` a
    ``pirf.pdes.PDE`` or its ``metadata()``. ``architecture`` is needed only when the
    model's backbone cannot describe itself. An existing checkpoint is replaced only with
    ``overwrite=True``; anything else at ``path`` is never replaced.
    """
    destination = Path(path)
    if destination.exists():
        if not overwrite:
            raise PirfError(f"{destination} already exists; pass overwrite=True to replace it")
        if not (destination.is_dir() and _is_checkpoint(destination)):
            raise PirfError(f"refusing to replace {destination}: it is not a pirf checkpoint")
    if not isinstance(model, EDMDenoiser):
        raise PirfError(
            f"save_checkpoint expects a pirf denoiser, got {type(model).__name__}: wrap it "
            "first, e.g. pirf.models.wrap(net, shape=..., kind='denoiser', "
            "factory='module:callable', config={...}) for a plain D(x, sigma) module"
        )
    spec = architecture if architecture is not None else model.architecture
    if spec is None:
        problem = getattr(model, "rebuild_problem", None)
        raise PirfError(
            problem
            or f"cannot describe the architecture of {type(model.backbone).__name__}; "
            'pass architecture={"backbone": ..., "config": {...}}'
        )
    if pde is not None and not isinstance(pde, Mapping):
        pde = pde.metadata()
    info = CheckpointInfo(
        architecture=_json_safe(check_architecture(spec), "the architecture"),
        sigma_data=model.sigma_data,
        pde=_json_safe(dict(pde), "the PDE metadata") if pde is not None else None,
        normalisation=normalisation,
        resolution=None if resolution is None else _resolution_pair(resolution),
        training=_json_safe(dict(training or {}), "the training arguments"),
        counters=_json_safe(dict(counters or {}), "the counters"),
        extra=_json_safe(dict(extra or {}), "extra"),
        pirf_version=pirf.__version__,
    )
    optimizer_tensors: dict[str, torch.Tensor] = {}
    if optimizer is not None:
        state = optimizer.state_dict() if hasattr(optimizer, "state_dict") else optimizer
        info.optimizer = flatten_state(state, optimizer_tensors)

    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.tmp-", dir=destination.parent))
    try:
        _apply_umask(staging)
        info.files[MODEL_FILE] = _write_tensors(staging, MODEL_FILE, _state_tensors(model.backbone))
        if ema is not None:
            ema_backbone = ema.backbone if isinstance(ema, EDMDenoiser) else ema
            info.files[EMA_FILE] = _write_tensors(staging, EMA_FILE, _state_tensors(ema_backbone))
        if optimizer is not None:
            info.files[OPTIMIZER_FILE] = _write_tensors(staging, OPTIMIZER_FILE, optimizer_tensors)
        (staging / INFO_FILE).write_text(json.dumps(info.to_json(), indent=2) + "\n")
        fsync_path(staging / INFO_FILE)
        _replace_directory(staging, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return info


def _replace_directory(staging: Path, destination: Path) -> None:
    """Move ``staging`` to ``destination``; an old checkpoint there is removed only after the
    new one has taken its name."""
    if not destination.exists():
        os.replace(staging, destination)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{destination.name}.old-", dir=destination.parent))
    os.replace(destination, retired / destination.name)
    try:
        os.replace(staging, destination)
    except OSError:
        os.replace(retired / destination.name, destination)
        raise
    finally:
        shutil.rmtree(retired, ignore_errors=True)


# --------------------------------------------------------------------------- load
def read_checkpoint_info(path: str | Path) -> CheckpointInfo:
    """Read and validate ``checkpoint.json`` (weights are not read)."""
    directory = Path(path)
    if not directory.exists():
        raise PirfError(f"checkpoint {directory} does not exist")
    if not directory.is_dir():
        raise PirfError(f"{directory} is not a pirf checkpoint (a checkpoint is a directory)")
    info_path = info_file(directory)
    if info_path is None:
        raise PirfError(f"{directory} is not a pirf checkpoint: it has no {INFO_FILE}")
    try:
        data = json.loads(info_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise PirfError(f"cannot read {info_path}: {error}".splitlines()[0]) from None
    return CheckpointInfo.from_json(data, str(directory))


def verify_checkpoint(path: str | Path) -> CheckpointInfo:
    """Check that every weight file exists and has the recorded SHA-256."""
    directory = Path(path)
    info = read_checkpoint_info(directory)
    for name, entry in info.files.items():
        file = directory / name
        if not file.is_file():
            raise PirfError(f"checkpoint {directory} is incomplete: {name} is missing")
        size = file.stat().st_size
        if isinstance(entry.get("bytes"), int) and size != entry["bytes"]:
            raise PirfError(
                f"checkpoint {directory}: {name} has {size} bytes, {entry['bytes']} were written "
                "(truncated or modified; its SHA-256 cannot match)"
            )
        if file_sha256(file) != entry["sha256"]:
            raise PirfError(
                f"checkpoint {directory}: {name} does not match its recorded SHA-256 "
                "(truncated or modified)"
            )
    return info


def _read_tensors(file: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(file))
    except (SafetensorError, OSError, ValueError) as error:
        raise PirfError(f"cannot read {file}: {error}".splitlines()[0]) from None


def _load_weights(module: nn.Module, file: Path) -> None:
    """Load a state dict after checking names, shapes and dtypes against ``module``."""
    tensors = _read_tensors(file)
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        detail = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        raise PirfError(
            f"{file} does not fit the architecture: {detail} "
            f"({len(missing)} missing, {len(unexpected)} unexpected tensors)"
        )
    for name, reference in expected.items():
        tensor = tensors[name]
        if tensor.shape != reference.shape or tensor.dtype != reference.dtype:
            raise PirfError(
                f"{file} does not fit the architecture: {name} is {tuple(tensor.shape)} "
                f"{tensor.dtype}, expected {tuple(reference.shape)} {reference.dtype}"
            )
    module.load_state_dict(tensors, strict=True)


def load_checkpoint(
    path: str | Path,
    *,
    device: torch.device | str = "cpu",
    ema: bool = True,
    optimizer: bool = True,
    allow_import: bool = False,
    bf16: bool = True,
) -> Checkpoint:
    """Verify and load a checkpoint; the denoisers are put on ``device`` in eval mode.

    ``ema``/``optimizer`` = False skip those files. ``allow_import`` permits an
    architecture of the form ``"module:factory"`` (it imports and runs that code).
    """
    directory = Path(path)
    info = verify_checkpoint(directory)

    def build(file: str) -> EDMDenoiser:
        denoiser = build_denoiser(
            info.architecture, sigma_data=info.sigma_data, bf16=bf16, allow_import=allow_import
        )
        _load_weights(denoiser.backbone, directory / file)
        return denoiser.to(device).eval()

    model = build(MODEL_FILE)
    ema_model = build(EMA_FILE) if ema and EMA_FILE in info.files else None
    optimizer_state = None
    if optimizer and OPTIMIZER_FILE in info.files:
        tensors = _read_tensors(directory / OPTIMIZER_FILE)
        optimizer_state = unflatten_state(info.optimizer, tensors)
    return Checkpoint(directory, info, model, ema_model, optimizer_state)


def check_matches(
    info: CheckpointInfo,
    *,
    pde: str,
    channels: Sequence[str],
    resolution: int | Sequence[int],
    params: Mapping[str, Any] | None = None,
) -> None:
    """Raise PirfError naming the first difference between a checkpoint and a dataset.

    Compares the PDE name, the channel names (in order), the grid and, if given, the PDE
    parameters.
    """
    if info.pde is None:
        raise PirfError("the checkpoint records no PDE; it cannot be matched to a dataset")
    if info.pde_name != pde:
        raise PirfError(f"PDE mismatch: checkpoint is for '{info.pde_name}', dataset is '{pde}'")
    if list(info.channels or []) != list(channels):
        raise PirfError(
            f"channel mismatch: checkpoint has {info.channels}, dataset has {list(channels)}"
        )
    wanted = _resolution_pair(resolution)
    if info.resolution is not None and info.resolution != wanted:
        raise PirfError(
            f"resolution mismatch: checkpoint was trained at {info.resolution[0]}x"
            f"{info.resolution[1]}, dataset is {wanted[0]}x{wanted[1]}"
        )
    if params is not None:
        stored = info.pde.get("params", {})
        for key in sorted(set(stored) | set(params)):
            if stored.get(key) != params.get(key):
                raise PirfError(
                    f"PDE parameter mismatch: {key} is {stored.get(key)!r} in the checkpoint, "
                    f"{params.get(key)!r} in the dataset"
                )


__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "Checkpoint",
    "CheckpointInfo",
    "check_matches",
    "file_sha256",
    "flatten_state",
    "info_file",
    "load_checkpoint",
    "read_checkpoint_info",
    "save_checkpoint",
    "unflatten_state",
    "verify_checkpoint",
]
