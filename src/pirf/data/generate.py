"""Generate datasets with a PDE's own sampler and solver.

Sample ``i`` belongs to random unit ``k = i // samples_per_unit`` (one sample, or one
trajectory that yields several), and unit ``k`` draws only from
``pirf.seeding.unit_generators(seed, split, [k])``. Units are solved in chunks of
``batch_size``; since the draws are per unit and solvers are per-sample, the file's bytes do
not depend on the batch size. Splits use disjoint seed streams (train, test, val).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import pirf.pdes
from pirf.atomic import check_destination
from pirf.checks import check_not_inside_checkpoint, check_writable_dir
from pirf.data.defaults import DEFAULT_BATCH_SIZE
from pirf.data.writer import COMPRESSIONS, WriteSummary, open_writer
from pirf.devices import resolve_device
from pirf.errors import PirfError, option
from pirf.pdes.base import PDE
from pirf.seeding import STREAMS, unit_generators

DTYPES: dict[str, torch.dtype] = {"float64": torch.float64, "float32": torch.float32}
"""Solver precisions by name (storage is always float32)."""

Progress = Callable[[int, int], None]
"""``progress(done, total)`` in samples: called once with 0, then after each written chunk."""


@dataclass(frozen=True)
class GenerationSummary:
    """A generated file: what :class:`WriteSummary` says, plus how it was made."""

    written: WriteSummary
    pde: PDE
    resolution: int
    seed: int
    split: str
    preset: str | None
    device: str
    dtype: str
    batch_size: int
    seconds: float

    @property
    def path(self) -> Path:
        return self.written.path

    @property
    def n(self) -> int:
        return self.written.n

    @property
    def samples_per_second(self) -> float:
        return self.n / self.seconds if self.seconds > 0 else float("inf")

    def to_json(self) -> dict[str, Any]:
        return {
            **self.written.to_json(),
            "pde": self.pde.name,
            "params": self.pde.params,
            "preset": self.preset,
            "resolution": self.resolution,
            "seed": self.seed,
            "split": self.split,
            "device": self.device,
            "dtype": self.dtype,
            "batch_size": self.batch_size,
            "seconds": self.seconds,
            "samples_per_second": self.samples_per_second,
        }


DEFAULT_PRESET = "tiny"
"""The preset a request without a resolution or a preset takes."""


def resolve_pde(
    pde: PDE | str,
    *,
    resolution: int | None = None,
    preset: str | None = None,
    params: Mapping[str, Any] | None = None,
) -> tuple[PDE, int, str | None]:
    """The PDE instance, resolution and preset name that a request means.

    A name is looked up in the registry; its parameters come from ``preset`` if given, else
    from the preset whose resolution is ``resolution`` (Kolmogorov's Reynolds number depends
    on the grid), else the defaults; ``params`` override them. Without ``resolution`` the
    preset's is used, and without either the ``tiny`` preset (where the PDE has one).
    """
    if isinstance(pde, PDE):
        if preset is not None or params:
            raise PirfError("give a PDE name, not an instance, together with a preset or params")
        if resolution is None:
            raise PirfError("a resolution is required")
        return pde, resolution, None
    pde_class = pirf.pdes.get_class(pde)
    if preset is None and resolution is not None:
        preset = pde_class.preset_for_resolution(resolution)
    if preset is None and resolution is None and DEFAULT_PRESET in pde_class.presets:
        preset = DEFAULT_PRESET
    if preset is not None:
        instance = pde_class.from_preset(preset, **dict(params or {}))
        if resolution is None:
            resolution = pde_class.presets[preset].get("resolution")
    else:
        instance = pde_class(**dict(params or {}))
    if resolution is None:
        raise PirfError(f"give a {option('resolution')} or a {option('preset')} that has one")
    return instance, resolution, preset


def check_request(
    pde: PDE, n: int, resolution: int, seed: int, split: str, batch_size: int
) -> None:
    """Raise :class:`PirfError` for anything that would make generation fail or mislead."""
    if not pde.can_generate:
        raise PirfError(
            f"PDE '{pde.name}' cannot generate data: it has no input sampler and solver "
            "(see docs/custom-pde.md)"
        )
    _check_int("the number of samples", n)
    _check_int("the resolution", resolution)
    pde.check_resolution(resolution)
    _check_int("the seed", seed, minimum=0)
    if seed >= 2**63:
        raise PirfError(f"the seed must be below 2**63 (it is stored as int64), got {seed}")
    _check_int("the batch size", batch_size)
    if split not in STREAMS:
        raise PirfError(f"unknown split '{split}'; use one of {', '.join(STREAMS)}")


def _check_int(what: str, value: Any, *, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        bound = "positive" if minimum == 1 else f"an integer >= {minimum}"
        raise PirfError(f"{what} must be {bound}, got {value!r}")


def solver_dtype(dtype: torch.dtype | str) -> tuple[torch.dtype, str]:
    """A solver precision and its name; float64 or float32."""
    for name, value in DTYPES.items():
        if dtype in (name, value):
            return value, name
    raise PirfError(f"unsupported solver dtype {dtype!r}; use float64 or float32")


def generate_chunks(
    pde: PDE,
    n: int,
    resolution: int,
    seed: int,
    split: str,
    *,
    device: torch.device,
    dtype: torch.dtype,
    batch_size: int,
) -> Iterator[torch.Tensor]:
    """Yield the ``n`` samples in order as float32 CPU chunks of ``batch_size`` units.

    The last unit may be used only in part. NaN or inf in a chunk raises :class:`PirfError`.
    """
    per_unit = pde.samples_per_unit(resolution)
    units = math.ceil(n / per_unit)
    produced = 0
    for start in range(0, units, batch_size):
        stop = min(start + batch_size, units)
        generators = unit_generators(seed, split, range(start, stop))
        with torch.no_grad():
            fields = pde.generate(generators, resolution, device=device, dtype=dtype)
        expected = ((stop - start) * per_unit, len(pde.channels), resolution, resolution)
        if tuple(fields.shape) != expected:
            raise PirfError(
                f"PDE '{pde.name}' generated shape {tuple(fields.shape)} for units "
                f"{start}..{stop - 1}, expected {expected}"
            )
        fields = fields.detach().to(device="cpu", dtype=torch.float32)
        if not bool(torch.isfinite(fields).all()):
            raise PirfError(
                f"PDE '{pde.name}' produced NaN or inf in units {start}..{stop - 1} (seed "
                f"{seed}, split {split}); nothing was written. Try float64 or other parameters"
            )
        take = min(fields.shape[0], n - produced)
        produced += take
        yield fields[:take]


def generate(
    pde: PDE | str,
    n: int,
    resolution: int | None,
    seed: int,
    out: str | Path,
    *,
    split: str = "train",
    preset: str | None = None,
    params: Mapping[str, Any] | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | str = torch.float64,
    batch_size: int = DEFAULT_BATCH_SIZE,
    force: bool = False,
    compression: str | None = None,
    progress: Progress | None = None,
) -> GenerationSummary:
    """Generate ``n`` samples of ``pde`` at ``resolution``^2 from ``seed`` into ``out``.

    ``pde`` is a name (with optional ``preset``/``params``, see :func:`resolve_pde`) or an
    instance. The solver runs on ``device`` in ``dtype``; fields are stored as float32 with
    their normalisation. Everything is validated before any work starts; the file appears
    only when complete.
    """
    instance, resolution, preset = resolve_pde(
        pde, resolution=resolution, preset=preset, params=params
    )
    check_request(instance, n, resolution, seed, split, batch_size)
    settings = _settings(device, dtype, batch_size, compression, preset)
    check_not_inside_checkpoint(out, "out")
    destination = check_destination(out, force=force, name="out", flag="--out-file")
    return _generate_file(
        instance, n, resolution, seed, split, destination, settings, force, progress
    )


def generate_splits(
    pde: PDE | str,
    sizes: Mapping[str, int],
    resolution: int | None,
    seed: int,
    out_dir: str | Path,
    *,
    preset: str | None = None,
    params: Mapping[str, Any] | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | str = torch.float64,
    batch_size: int = DEFAULT_BATCH_SIZE,
    force: bool = False,
    compression: str | None = None,
    progress: Callable[[str], Progress | None] | None = None,
) -> dict[str, GenerationSummary]:
    """Generate ``out_dir/<split>.h5`` for each ``{split: n}`` in ``sizes`` from one seed.

    The splits draw from disjoint seed streams, so no sample appears in two of them.
    ``out_dir`` and its missing parents are created if needed (after every check has
    passed) and removed again if a failure leaves them empty. ``progress(split)`` may
    return a per-file progress callback.
    """
    if not sizes:
        raise PirfError("give at least one split size")
    instance, resolution, preset = resolve_pde(
        pde, resolution=resolution, preset=preset, params=params
    )
    for split, n in sizes.items():
        check_request(instance, n, resolution, seed, split, batch_size)
    settings = _settings(device, dtype, batch_size, compression, preset)
    directory = Path(out_dir)
    if directory.exists() and not directory.is_dir():
        raise PirfError(f"{directory} exists and is not a directory")
    for ancestor in directory.parents:
        if ancestor.exists() and not ancestor.is_dir():
            raise PirfError(f"{ancestor} exists and is not a directory")
    check_not_inside_checkpoint(directory, "out_dir", flag="--out")
    check_writable_dir(directory, "out_dir", flag="--out")
    # Like mkdir -p: every missing folder is made, and removed again if nothing is written.
    created = [p for p in (directory, *directory.parents) if not p.exists()]
    if not created:
        for split in sizes:
            check_destination(
                directory / f"{split}.h5", force=force, name="out_dir", flag="--out"
            )
    directory.mkdir(parents=True, exist_ok=True)
    summaries: dict[str, GenerationSummary] = {}
    try:
        for split, n in sizes.items():
            summaries[split] = _generate_file(
                instance,
                n,
                resolution,
                seed,
                split,
                directory / f"{split}.h5",
                settings,
                force,
                progress(split) if progress is not None else None,
            )
    finally:
        for folder in created:  # innermost first
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
    return summaries


@dataclass(frozen=True)
class _Settings:
    """How to generate, validated."""

    device: torch.device
    dtype: torch.dtype
    dtype_name: str
    batch_size: int
    compression: str | None
    preset: str | None


def _settings(
    device: torch.device | str,
    dtype: torch.dtype | str,
    batch_size: int,
    compression: str | None,
    preset: str | None,
) -> _Settings:
    """Validated generation settings."""
    if compression not in COMPRESSIONS:
        raise PirfError(f"unknown compression {compression!r}; use none, lzf or gzip")
    torch_dtype, dtype_name = solver_dtype(dtype)
    return _Settings(
        resolve_device(device), torch_dtype, dtype_name, batch_size, compression, preset
    )


def _generate_file(
    pde: PDE,
    n: int,
    resolution: int,
    seed: int,
    split: str,
    destination: Path,
    settings: _Settings,
    force: bool,
    progress: Progress | None,
) -> GenerationSummary:
    """Generate one validated request into ``destination`` (atomically)."""
    attrs = {
        "source": "solver",
        "seed": seed,
        "split": split,
        "preset": settings.preset,
        "solver_dtype": settings.dtype_name,
        "device": str(settings.device),
        "batch_size": settings.batch_size,
        "samples_per_unit": pde.samples_per_unit(resolution),
    }
    start = time.perf_counter()
    with open_writer(
        destination, pde, n=n, attrs=attrs, force=force, compression=settings.compression
    ) as writer:
        chunks = generate_chunks(
            pde,
            n,
            resolution,
            seed,
            split,
            device=settings.device,
            dtype=settings.dtype,
            batch_size=settings.batch_size,
        )
        if progress is not None:
            progress(0, n)
        for chunk in chunks:
            writer.append(chunk)
            if progress is not None:
                progress(writer.count, n)
        seconds = time.perf_counter() - start
        writer.set_attrs(seconds=seconds)
    assert writer.summary is not None  # set by open_writer on success
    return GenerationSummary(
        written=writer.summary,
        pde=pde,
        resolution=resolution,
        seed=seed,
        split=split,
        preset=settings.preset,
        device=str(settings.device),
        dtype=settings.dtype_name,
        batch_size=settings.batch_size,
        seconds=seconds,
    )
