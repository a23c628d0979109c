"""``pirf data``: generate, split, check, import and export HDF5 datasets of PDE fields.

Thin wrappers over :mod:`pirf.data`: parse options, show progress on stderr, print a
readable summary (or one JSON object with ``--json``). Errors are :class:`PirfError`
lines, turned into exit code 2 by :func:`pirf.cli.main`.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from pirf.cli._common import ProgressReporter, ThreadsOpt, console, emit_json, use_threads
from pirf.cli.verify import verify as verify_command
from pirf.data.defaults import DEFAULT_BATCH_SIZE
from pirf.errors import PirfError

if TYPE_CHECKING:
    from pirf.data.generate import GenerationSummary

app = typer.Typer(
    help="Generate, check, import and export PDE datasets (HDF5).", no_args_is_help=True
)
app.command("verify")(verify_command)


class Split(str, Enum):
    train = "train"
    test = "test"
    val = "val"


class Dtype(str, Enum):
    float64 = "float64"
    float32 = "float32"


class Compression(str, Enum):
    none = "none"
    lzf = "lzf"
    gzip = "gzip"


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """``["key=value", ...]`` -> dict; values parsed as JSON when they are, else strings."""
    params: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise PirfError(f"--param expects key=value, got '{item}'")
        try:
            params[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            params[key.strip()] = raw
    return params


def _compression(value: Compression) -> str | None:
    return None if value is Compression.none else value.value


def _format(value: float) -> str:
    return f"{value:.5g}"


def print_generation(summaries: dict[str, GenerationSummary]) -> None:
    """Readable summary of generated files: one table of files, one of channels per file."""
    files = Table(title="Generated", title_justify="left")
    files.add_column("split")
    files.add_column("file", overflow="fold")
    for column in ("samples", "shape", "seconds", "samples/s"):
        files.add_column(column, justify="right", no_wrap=True)
    for split, summary in summaries.items():
        files.add_row(
            split,
            str(summary.path),
            str(summary.n),
            "x".join(map(str, summary.written.shape)),
            f"{summary.seconds:.2f}",
            f"{summary.samples_per_second:.1f}",
        )
    console.print(files)
    first = next(iter(summaries.values()))
    params = json.dumps(first.pde.params)
    preset = f", preset {first.preset}" if first.preset else ""
    console.print(
        f"PDE [bold]{first.pde.name}[/] {params}{preset}; seed {first.seed}; solver "
        f"{first.dtype} on {first.device}, {first.batch_size} units per batch",
        highlight=False,
    )
    for split, summary in summaries.items():
        table = Table(
            title=f"{split}: channels; model = (physical - shift) / scale",
            title_justify="left",
        )
        for column in ("channel", "mean", "std", "min", "max", "shift", "scale"):
            table.add_column(column, justify="right", no_wrap=True)
        norm = summary.written.normalisation
        for index, (name, stats) in enumerate(summary.written.channel_stats.items()):
            table.add_row(
                name,
                *(_format(stats[key]) for key in ("mean", "std", "min", "max")),
                _format(norm.shift[index]),
                _format(norm.scale[index]),
            )
        console.print(table)


PdeArg = Annotated[str, typer.Argument(help="PDE name (see `pirf pdes`) or module:Class.")]
ResolutionOpt = Annotated[
    int | None,
    typer.Option("--resolution", help="Grid size R (R x R); default: the preset's (tiny: 32)."),
]
PresetOpt = Annotated[
    str | None,
    typer.Option(
        "--preset",
        help="Named configuration; default: the one whose resolution is R, or tiny without R.",
    ),
]
ParamOpt = Annotated[
    list[str] | None,
    typer.Option("--param", help="Parameter override key=value (value parsed as JSON); repeat."),
]
DeviceOpt = Annotated[
    str, typer.Option("--device", help="cpu, cuda, cuda:N or auto (CUDA when available).")
]
DtypeOpt = Annotated[Dtype, typer.Option("--dtype", help="Solver precision (storage: float32).")]
BatchOpt = Annotated[int, typer.Option("--batch", help="Random units solved together.")]
CompressionOpt = Annotated[
    Compression, typer.Option("--compression", help="HDF5 compression of the fields.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


@app.command()
def generate(
    pde: PdeArg,
    n: Annotated[int, typer.Option("--n", help="Number of samples.")],
    seed: Annotated[int, typer.Option("--seed", help="Seed (non-negative).")],
    out: Annotated[Path, typer.Option("--out-file", help="Output file (.h5).")],
    resolution: ResolutionOpt = None,
    split: Annotated[Split, typer.Option("--split", help="Seed stream (split).")] = Split.train,
    preset: PresetOpt = None,
    param: ParamOpt = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = Dtype.float64,
    batch_size: BatchOpt = DEFAULT_BATCH_SIZE,
    compression: CompressionOpt = Compression.none,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    threads: ThreadsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Generate N samples of a PDE with its solver into one HDF5 file."""
    import pirf.data

    use_threads(threads)
    with ProgressReporter(enabled=not as_json) as reporter:
        summary = pirf.data.generate(
            pde,
            n,
            resolution,
            seed,
            out,
            split=split.value,
            preset=preset,
            params=parse_params(param),
            device=device,
            dtype=dtype.value,
            batch_size=batch_size,
            force=force,
            compression=_compression(compression),
            progress=reporter.callback(split.value),
        )
    if as_json:
        emit_json(summary.to_json())
    else:
        print_generation({split.value: summary})


@app.command()
def splits(
    pde: PdeArg,
    train: Annotated[int, typer.Option("--train", help="Training samples.")],
    test: Annotated[int, typer.Option("--test", help="Test samples.")],
    seed: Annotated[int, typer.Option("--seed", help="Seed (non-negative) of all splits.")],
    out_dir: Annotated[
        Path, typer.Option("--out", help="Directory for train.h5, test.h5 (and val.h5).")
    ],
    val: Annotated[int | None, typer.Option("--val", help="Validation samples.")] = None,
    resolution: ResolutionOpt = None,
    preset: PresetOpt = None,
    param: ParamOpt = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = Dtype.float64,
    batch_size: BatchOpt = DEFAULT_BATCH_SIZE,
    compression: CompressionOpt = Compression.none,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
    threads: ThreadsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Generate train/test (and val) files from one seed, on disjoint seed streams."""
    import pirf.data

    use_threads(threads)
    sizes = {"train": train, "test": test, **({"val": val} if val is not None else {})}
    with ProgressReporter(enabled=not as_json) as reporter:
        summaries = pirf.data.generate_splits(
            pde,
            sizes,
            resolution,
            seed,
            out_dir,
            preset=preset,
            params=parse_params(param),
            device=device,
            dtype=dtype.value,
            batch_size=batch_size,
            force=force,
            compression=_compression(compression),
            progress=reporter.callback,
        )
    if as_json:
        emit_json(
            {
                "out_dir": str(out_dir),
                "files": {split: summary.to_json() for split, summary in summaries.items()},
            }
        )
    else:
        print_generation(summaries)


def print_check(report: dict[str, Any]) -> None:
    """Readable check report: file facts, channel statistics, residual statistics."""
    facts = Table(title=f"Dataset {report['path']}", title_justify="left", show_header=False)
    facts.add_column("key", style="bold")
    facts.add_column("value")
    facts.add_row("pde", f"{report['pde']} {json.dumps(report['params'])}")
    facts.add_row("samples", str(report["n"]))
    facts.add_row("shape", "x".join(map(str, report["shape"])) + " (N, C, H, W)")
    facts.add_row("channels", ", ".join(report["channels"]))
    facts.add_row("split / seed", f"{report['split']} / {report['seed']}")
    facts.add_row("source", str(report["source"]))
    facts.add_row("grid", "\n".join(report["grid"]))
    if report.get("imported"):
        origin = report["imported"]
        channels = origin.get("channels") or {}
        mapping = ", ".join(f"{name} <- {where}" for name, where in channels.items())
        facts.add_row("imported", f"{origin['format']} file {origin['source']}: {mapping}")
    console.print(facts)
    channels = Table(
        title="Channels (physical units); model = (physical - shift) / scale", title_justify="left"
    )
    for column in ("channel", "mean", "std", "min", "max", "shift", "scale"):
        channels.add_column(column, justify="right", no_wrap=True)
    norm = report["normalisation"]
    for index, (name, stats) in enumerate(report["channel_stats"].items()):
        channels.add_row(
            name,
            *(_format(stats[key]) for key in ("mean", "std", "min", "max")),
            _format(norm["shift"][index]),
            _format(norm["scale"][index]),
        )
    console.print(channels)
    residual = report["residual"]
    table = Table(
        title=f"Residual per sample ({residual['points']} points, float64)",
        title_justify="left",
    )
    for column in ("", "mean", "median", "p90"):
        table.add_column(column, justify="right", no_wrap=True)
    for key in ("mse", "mae"):
        table.add_row(
            key.upper(),
            _format(residual[key]),
            _format(residual[f"{key}_median"]),
            _format(residual[f"{key}_p90"]),
        )
    console.print(table)
    if report.get("imported"):
        print_import_grid(report["imported"])
    console.print(f"checked in {report['seconds']:.2f} s", highlight=False)


def print_import_grid(origin: dict[str, Any]) -> None:
    """How an imported file's source coordinates compare with pirf's grid, and what that
    means for the residual above."""
    for axis in origin["grid"]:
        if axis["matches"] is None:
            state = "the source gives no coordinates"
        else:
            state = "matches pirf's" if axis["matches"] else "DIFFERS from pirf's"
        console.print(f"{axis['axis']}: source {axis['source'] or '-'}; {state}", highlight=False)
    if origin["grid_matches"] is False:
        console.print(
            "The source's grid is not pirf's: the residual above applies pirf's stencils to "
            "points they were not made for, so it measures the mismatch as well as the data.",
            highlight=False,
        )
    elif origin["grid_matches"] is None:
        console.print(
            "The source gives no coordinates: pirf assumed its own grid (see 'grid' above).",
            highlight=False,
        )


@app.command()
def check(
    file: Annotated[Path, typer.Argument(help="A pirf HDF5 file (dataset or samples).")],
    batch_size: Annotated[int, typer.Option("--batch", help="Samples per residual batch.")] = 64,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify a file (readable, finite) and report its statistics and PDE residual."""
    import pirf.data

    use_threads(threads)
    report = pirf.data.check(file, batch_size=batch_size, device=device)
    if as_json:
        emit_json(report)
    else:
        print_check(report)


class ImportFormat(str, Enum):
    pdebench = "pdebench"
    the_well = "the-well"
    npy = "npy"


class ExportFormat(str, Enum):
    the_well = "the-well"
    pdebench = "pdebench"


def parse_channels(items: list[str] | None) -> dict[str, str]:
    """``["a=coef.npy", ...]`` -> ``{"a": "coef.npy"}``; each channel at most once."""
    mapping: dict[str, str] = {}
    for item in items or []:
        name, sep, where = item.partition("=")
        name, where = name.strip(), where.strip()
        if not sep or not name or not where:
            raise PirfError(f"--channel expects CHANNEL=SOURCE, got '{item}'")
        if name in mapping:
            raise PirfError(f"--channel maps '{name}' twice")
        mapping[name] = where
    return mapping


@app.command("import")
def import_(
    source: Annotated[
        Path,
        typer.Argument(
            help="PDEBench or The Well HDF5 file; for npy a directory of CHANNEL.npy files "
            "or one (N, C, H, W) .npy file."
        ),
    ],
    format: Annotated[ImportFormat, typer.Option("--format", help="Layout of the source.")],
    out: Annotated[Path, typer.Option("--out-file", help="Output pirf file (.h5).")],
    pde: Annotated[
        str | None,
        typer.Option("--pde", help="PDE of the fields; default: the one a pirf export names."),
    ] = None,
    param: ParamOpt = None,
    channel: Annotated[
        list[str] | None,
        typer.Option(
            "--channel",
            help="CHANNEL=SOURCE: a .npy file in the directory (npy) or a field (the-well, "
            "e.g. u=tracer or v=t1_fields/velocity:1); repeat.",
        ),
    ] = None,
    n: Annotated[int | None, typer.Option("--n", help="Import only the first N samples.")] = None,
    compression: CompressionOpt = Compression.none,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Import a PDEBench, The Well or .npy dataset as a pirf file, checked before writing."""
    import pirf.data

    with ProgressReporter(enabled=not as_json) as reporter:
        summary = pirf.data.import_fields(
            source,
            out,
            format=format.value,
            pde=pde,
            params=parse_params(param),
            channels=parse_channels(channel),
            n=n,
            force=force,
            compression=_compression(compression),
            progress=reporter.callback("import"),
        )
    if as_json:
        emit_json(summary.to_json())
        return
    console.print(
        f"Imported {summary.written.n} samples of [bold]{summary.pde.name}[/] "
        f"{json.dumps(summary.pde.params)} from {format.value} file {source} into "
        f"{summary.written.path} ({'x'.join(map(str, summary.written.shape))}, "
        f"{summary.seconds:.2f} s)",
        highlight=False,
    )
    for name, where in summary.channels.items():
        console.print(f"  {name} <- {where}", highlight=False)
    if summary.restored:
        console.print("pirf's metadata restored from the source's attributes", highlight=False)
    for axis in summary.grid:
        state = {None: "no coordinates in the source", True: "matches", False: "DIFFERS"}
        console.print(
            f"  {axis['pirf']}; source: {axis['source'] or '-'} ({state[axis['matches']]})",
            highlight=False,
        )
    console.print(f"Check the residual: pirf data check {summary.written.path}", highlight=False)


@app.command("export")
def export(
    file: Annotated[Path, typer.Argument(help="A pirf HDF5 file (dataset or samples).")],
    format: Annotated[ExportFormat, typer.Option("--format", help="Layout to write.")],
    out: Annotated[Path, typer.Option("--out-file", help="Output file (.hdf5).")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Export a pirf file as PDEBench or The Well HDF5, with pirf's metadata in attributes."""
    import pirf.data

    with ProgressReporter(enabled=not as_json) as reporter:
        summary = pirf.data.export_fields(
            file, out, format=format.value, force=force, progress=reporter.callback("export")
        )
    if as_json:
        emit_json(summary.to_json())
        return
    console.print(
        f"Exported {summary.n} samples of {file} to {summary.path} ({summary.format}, "
        f"{summary.layout} layout, {summary.seconds:.2f} s)",
        highlight=False,
    )
    for name, shape in summary.datasets.items():
        console.print(f"  {name}: {'x'.join(map(str, shape))}", highlight=False)
