"""The model card (``README.md``) of an exported model.

Hugging Face reads a model repository's ``README.md``: YAML front matter (``library_name``,
``license``, ``tags``) and then Markdown. The card states the PDE, the data, the training
and fine-tuning recipes and the measured residual and fidelity of the exported weights,
only as the run recorded them (:mod:`pirf.models.records`): what was not recorded is said
to be so, and no number is ever filled in. It ends with the command and the Python lines
that sample from the exported directory.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from pirf.errors import PirfError, option
from pirf.models.checkpoint import CheckpointInfo
from pirf.models.records import Evaluation, RunRecords
from pirf.pdes.base import PDE

BASE_TAGS = ("pirf", "diffusion", "edm", "physics-informed", "pde")
NOT_MEASURED = "not measured"
BOOKKEEPING = frozenset(
    {
        "out", "ckpt", "device", "progress", "tracker", "figures", "figure_every",
        "figure_samples", "figure_steps", "log_every", "checkpoint_every",
        "keep_checkpoints", "stop_at", "resume", "compile", "world",
    }
)  # fmt: skip
"""Settings of where and how a run was executed, not of the model it made."""
_LICENSE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+-]*$")
_TAG = re.compile(r"[^a-z0-9]+")


def check_license(license: str | None) -> str | None:
    """A licence identifier as the hub's front matter takes it (``mit``, ``apache-2.0``,
    ``cc-by-4.0``, ``other``); PirfError for anything that is not one word."""
    if license is None:
        return None
    if not _LICENSE.match(license):
        raise PirfError(
            f"{option('license')} must be an identifier such as mit, apache-2.0 or cc-by-4.0, "
            f"got {license!r}"
        )
    return license.lower()


def tags(pde_name: str) -> list[str]:
    """The card's tags: pirf's own, then the PDE's name as a tag."""
    pde_tag = _TAG.sub("-", pde_name.lower()).strip("-")
    return [*BASE_TAGS, *([pde_tag] if pde_tag and pde_tag not in BASE_TAGS else [])]


def _value(value: Any) -> str:
    """A setting as the card shows it (JSON for containers, ``g`` format for floats)."""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value)
    return str(value)


def _cell(value: Any) -> str:
    return _value(value).replace("|", "\\|")


def _table(rows: Iterable[tuple[str, Any]], header: tuple[str, str] = ("", "")) -> list[str]:
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    lines += [f"| {_cell(key)} | {_cell(value)} |" for key, value in rows]
    return lines


def _settings(settings: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The recorded settings that describe the model (no bookkeeping, no unset values)."""
    return [
        (key, value)
        for key, value in settings.items()
        if key not in BOOKKEEPING and value is not None
    ]


def _front_matter(pde_name: str, license: str | None) -> list[str]:
    lines = ["---", "library_name: pirf"]
    if license is not None:
        lines.append(f"license: {license}")
    lines.append("tags:")
    lines += [f"- {tag}" for tag in tags(pde_name)]
    return [*lines, "---", ""]


def _pde_section(info: CheckpointInfo, pde: PDE) -> list[str]:
    metadata = info.pde or {}
    grid = metadata.get("grid") or {}
    height, width = info.resolution or (None, None)
    lines = ["## The PDE", ""]
    lines.append(f"**{pde.name}**: {pde.description or 'no description recorded'}.")
    lines.append("")
    rows: list[tuple[str, Any]] = [
        ("channels", ", ".join(metadata.get("channels", []))),
        ("input channels", ", ".join(metadata.get("input_channels", [])) or "none"),
    ]
    params = metadata.get("params") or {}
    rows += [(f"parameter {key}", value) for key, value in params.items()]
    if not params:
        rows.append(("parameters", "none"))
    axes = grid.get("axes") or []
    for index, axis in enumerate(axes):
        lower = (grid.get("lower") or [None] * len(axes))[index]
        upper = (grid.get("upper") or [None] * len(axes))[index]
        periodic = (grid.get("periodic") or [False] * len(axes))[index]
        rows.append((f"axis {axis}", f"[{lower}, {upper}]" + (", periodic" if periodic else "")))
    rows.append(("grid", f"{height} x {width} points"))
    if info.normalisation is not None:
        rows.append(
            (
                "normalisation",
                f"shift {list(info.normalisation.shift)}, scale {list(info.normalisation.scale)} "
                "(physical = model x scale + shift)",
            )
        )
    return [*lines, *_table(rows, ("", "")), ""]


def _data_section(records: RunRecords) -> list[str]:
    lines = ["## The data", ""]
    if not records.data:
        return [*lines, "The checkpoint records no training data file.", ""]
    data = records.data
    rows = [
        ("file", data.get("path", "not recorded")),
        ("split", data.get("split", "not recorded")),
        ("samples", data.get("samples", "not recorded")),
        ("seed recorded in the file", data.get("seed", "not recorded")),
    ]
    shown = {"path", "split", "samples", "seed"}
    rows += [(key, value) for key, value in data.items() if key not in shown]
    return [*lines, *_table(rows, ("", "")), ""]


def _training_section(records: RunRecords) -> list[str]:
    lines = ["## Training", ""]
    settings = _settings(records.training)
    if not settings:
        return [*lines, "No training settings were recorded.", ""]
    if not records.finetuned:
        done = records.counters.get("iteration")
        if done is not None:
            lines += [f"Trained for {done} iterations (`pirf train`).", ""]
    else:
        lines += ["The base model was trained (`pirf train`) with:", ""]
    return [*lines, *_table(settings, ("setting", "value")), ""]


def _finetune_section(records: RunRecords, kind: str) -> list[str]:
    lines = ["## Fine-tuning", ""]
    if records.finetune is None:
        return [*lines, "This model was not fine-tuned.", ""]
    done = records.counters.get("iteration")
    target = records.finetune.get("iters")
    which = {
        "best": "the run's best checkpoint (lowest residual inside the fidelity band)",
        "final": "the run's final weights",
    }.get(kind, "the checkpoint given")
    lines += [
        f"PIRF fine-tuning (`pirf finetune`): the physics residual as reward, back-propagated "
        f"through the last sampler steps. These weights are {which}, at iteration {done}"
        + (f" of {target}" if target is not None else "")
        + ".",
        "",
    ]
    if done == 0:
        lines += [
            "Iteration 0 holds the base model's weights: no evaluation of the fine-tuned "
            "model beat them inside the fidelity band.",
            "",
        ]
    if records.base:
        lines += [f"Base model: {records.base}.", ""]
    return [*lines, *_table(_settings(records.finetune), ("setting", "value")), ""]


def _evaluation_rows(evaluation: Evaluation, base: Evaluation | None) -> list[str]:
    with_base = base is not None and base is not evaluation
    header = "| metric | this model |" + (" base model |" if with_base else "")
    lines = [header, "|---|---|" + ("---|" if with_base else "")]

    def row(label: str, value: float | None, reference: float | None) -> None:
        cells = [label, NOT_MEASURED if value is None else f"{value:.4g}"]
        if with_base:
            cells.append(NOT_MEASURED if reference is None else f"{reference:.4g}")
        lines.append("| " + " | ".join(cells) + " |")

    for budget, value in evaluation.residual_mse.items():
        row(f"residual MSE, {budget} steps", value, base.residual_mse.get(budget) if base else None)
    for key, value in evaluation.fidelity.items():
        row(key, value, base.fidelity.get(key) if base else None)
    if not evaluation.fidelity:
        lines.append("| fidelity | " + NOT_MEASURED + " |" + (" |" if with_base else ""))
    return lines


def _evaluation_section(records: RunRecords, directory: str) -> list[str]:
    lines = ["## Measured residual and fidelity", ""]
    evaluation = records.evaluation
    if evaluation is None:
        return [
            *lines,
            f"Residual: {NOT_MEASURED}. Fidelity: {NOT_MEASURED}. The run recorded no "
            "evaluation of these weights; measure them with",
            "",
            "```bash",
            f"pirf evaluate --ckpt {directory} --reference HELD_OUT.h5",
            "```",
            "",
        ]
    settings = records.evaluation_settings
    how = [f"recorded by the fine-tuning run at iteration {evaluation.iteration}"]
    if "eval_n" in settings:
        how.append(f"{settings['eval_n']} samples")
    if "eval_seed" in settings:
        how.append(f"noise seed {settings['eval_seed']}")
    if "reference" in settings:
        how.append(f"fidelity against {settings['reference']}")
    lines += [
        "Residual MSE of the samples' PDE residual (as `pirf evaluate` computes it), and "
        "data fidelity at the first budget (MMD with its data-vs-data floor `mmd_floor`, "
        "spectrum error, diversity); " + ", ".join(how) + f" (source: {evaluation.source}).",
        "",
    ]
    return [*lines, *_evaluation_rows(evaluation, records.base_evaluation), ""]


def _usage_section(directory: str) -> list[str]:
    return [
        "## Sampling",
        "",
        "With pirf installed:",
        "",
        "```bash",
        f"pirf sample --ckpt {directory} --n 16 --out-file samples.h5",
        "```",
        "",
        "```python",
        "from pirf.models import load_model",
        "from pirf.sampling import generate",
        "",
        f'model = load_model("{directory}")  # device="cuda" for a GPU',
        "result = generate(model.denoiser, 16, model.shape, seed=0, steps=20)",
        "fields = model.pde.snap(model.normalisation.to_physical(result.samples.double()))",
        "```",
        "",
    ]


def model_card(
    info: CheckpointInfo,
    records: RunRecords,
    pde: PDE,
    *,
    kind: str,
    weights: str,
    parameters: int,
    license: str | None,
    directory: str,
    source_sha256: str,
) -> str:
    """The text of ``README.md`` for an exported model.

    ``kind``: which checkpoint of the run was exported (``best``, ``final``,
    ``checkpoint``); ``weights``: ``ema`` or ``model``; ``directory``: the name the
    sampling examples use for the exported folder; ``source_sha256``: the SHA-256 of the
    source checkpoint's description, which identifies it.
    """
    what = "trained"
    if records.finetuned:
        unchanged = records.counters.get("iteration") == 0
        what = "base weights kept by PIRF fine-tuning" if unchanged else "PIRF fine-tuned"
    height, width = info.resolution or (None, None)
    backbone = info.architecture.get("backbone")
    lines = _front_matter(pde.name, license)
    lines += [
        f"# {pde.name}: EDM diffusion model ({what}, pirf)",
        "",
        f"An EDM denoiser ({backbone} backbone, {parameters:,} parameters, sigma_data "
        f"{info.sigma_data:g}) that samples {pde.name} fields of {height} x {width} points, "
        f"made with pirf {info.pirf_version or '(version not recorded)'}. The weights are "
        f"the {'EMA' if weights == 'ema' else 'raw (not EMA)'} weights.",
        "",
    ]
    lines += _pde_section(info, pde)
    lines += _data_section(records)
    lines += _training_section(records)
    lines += _finetune_section(records, kind)
    lines += _evaluation_section(records, directory)
    lines += _usage_section(directory)
    lines += [
        "## Files",
        "",
        "- `model.safetensors`: the weights of the backbone (safetensors; never pickled).",
        "- `config.json`: the architecture, EDM preconditioning, PDE, grid, normalisation, "
        "the recorded settings and the SHA-256 of the weights; `pirf.models.load_model` "
        "reads it.",
        f"- source checkpoint: SHA-256 of its description `{source_sha256}`.",
        "",
        "## License",
        "",
    ]
    if license is None:
        lines += [
            "Not stated. Add `license: <identifier>` to the front matter above before "
            "publishing (or export with `pirf export --license`).",
        ]
    else:
        lines.append(f"`{license}`.")
    return "\n".join(lines) + "\n"


__all__ = ["BASE_TAGS", "NOT_MEASURED", "check_license", "model_card", "tags"]
