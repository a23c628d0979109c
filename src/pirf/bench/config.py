"""What a benchmark run is: :class:`BenchConfig`, resolved from its preset.

The sizes (data, training, evaluation) default to the preset's (:data:`PRESETS`); every
one can be given. Like every run, the resolved configuration is written to
``OUT/config.toml``, and ``pirf bench --config OUT/config.toml`` runs the same bench.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pirf.errors import PirfError, option
from pirf.settings import (
    FIGURE_FORMAT_HELP,
    FIGURE_FORMAT_METAVAR,
    build,
    fill,
    flat,
    parse_ints,
    section,
    setting,
)

PRESET_NAMES: tuple[str, ...] = ("tiny", "small", "paper")


def parse_method_options(items: list[str] | str) -> dict[str, dict[str, Any]]:
    """``["pidm.residual_weight=1e-3", ...]`` -> ``{"pidm": {"residual_weight": 0.001}}``
    (values parsed as JSON when they are; a list is a sweep axis)."""
    options: dict[str, dict[str, Any]] = {}
    for item in [items] if isinstance(items, str) else items:
        name, sep, raw = item.partition("=")
        method, dot, key = name.partition(".")
        if not (sep and dot and method and key):
            flag = option("method_options", flag="--method-option")
            raise PirfError(f"{flag} expects METHOD.KEY=VALUE, got '{item}'")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        options.setdefault(method.strip(), {})[key.strip()] = value
    return options


def _steps(text: str) -> tuple[int, ...]:
    return parse_ints(text, "steps")


@dataclass
class Sizes:
    """How much data, training and evaluation; each defaults to the preset's."""

    train: int | None = setting("Training samples per PDE.")
    val: int | None = setting("Validation samples (every choice is made on them).")
    test: int | None = setting("Test samples (the reported numbers).")
    eval_n: int | None = setting("Samples per method and sampler budget (test seeds).")
    select_n: int | None = setting("Samples per candidate of a sweep (validation seeds).")
    base_iters: int | None = setting(
        "Base-model training iterations.", shown_default="the model preset's"
    )
    tune_iters: int | None = setting("PIRF fine-tuning iterations.")
    tune_batch: int | None = setting("PIRF trajectories per iteration.")
    baseline_iters: int | None = setting("PIDM / PG-Diffusion training iterations.")
    baseline_batch: int | None = setting("PIDM / PG-Diffusion batch.")


@dataclass
class BenchConfig:
    """Arguments of :func:`pirf.bench.bench` (docs/bench.md)."""

    out: Path | None = setting("Output directory (resumable; runs into it add up).")
    preset: str | None = setting("tiny, small or paper: the sizes below.")
    pdes: str | None = setting("'all' or a comma-separated list of the five PDEs.")
    methods: str | None = setting(
        "'all' or a list of base, diffusionpde, cocogen, pidm, pgdiffusion, pirf, "
        "pirf-full, pirf+c (base is always included)."
    )
    steps: tuple[int, ...] | None = setting(
        "Sampler budgets of the evaluation.", parse=_steps, metavar="LIST"
    )
    device: str | None = setting("cpu, cuda, cuda:N or auto (CUDA when available).")
    method_options: dict[str, dict[str, Any]] | None = setting(
        "METHOD.KEY=VALUE (JSON value; a list is a sweep axis), e.g. "
        "pidm.residual_weight=1e-3; repeat.",
        flag="--method-option",
        metavar="METHOD.KEY=VALUE",
        parse=parse_method_options,
    )
    report_only: bool | None = setting("Run nothing; report what is already done.")
    results_json: Path | None = setting(
        "Also write the compact results file (per PDE: the floor and every method's "
        "residual, consistency, joint MMD, diversity and NFE) here."
    )
    figure_format: str | None = setting(FIGURE_FORMAT_HELP, metavar=FIGURE_FORMAT_METAVAR)
    progress: bool | None = setting("Show progress on stderr.", cli=False)
    sizes: Sizes = section(Sizes)

    @classmethod
    def of(cls, **values: Any) -> BenchConfig:
        """A configuration from flat setting names."""
        return build(cls, **values)


DEFAULTS: dict[str, Any] = {
    "preset": "tiny",
    "pdes": "all",
    "methods": "all",
    "steps": (20, 40, 80),
    "device": "auto",
    "method_options": {},
    "report_only": False,
    "figure_format": "png",
    "progress": True,
}
"""Defaults of a bench; the sizes come from the preset (:data:`PRESETS`)."""


def resolve(config: BenchConfig) -> BenchConfig:
    """Every setting filled: given, then :data:`DEFAULTS`, then the preset's sizes."""
    from pirf.bench.presets import PRESETS

    config = fill(config, DEFAULTS)
    if config.preset not in PRESETS:
        raise PirfError(f"unknown bench preset '{config.preset}'; use one of {', '.join(PRESETS)}")
    preset = PRESETS[config.preset].to_json()
    sizes = {name: preset[name] for name in flat(Sizes()) if preset.get(name) is not None}
    return fill(config, sizes)


__all__ = [
    "DEFAULTS",
    "PRESET_NAMES",
    "BenchConfig",
    "Sizes",
    "parse_method_options",
    "resolve",
]
