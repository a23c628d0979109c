"""The methods a benchmark compares, each behind one small adapter.

A method has preparation stages (training, fine-tuning, a hyperparameter sweep), each
writing one file or checkpoint that later runs find and skip, and a sampler that turns
``n`` seeds into samples at a sampler budget. Every method samples from the same noise
(``pirf.sampling.initial_noise``): the test seeds for the reported numbers, the validation
seeds for every choice a method makes (never the test seeds).

* ``base``: the pretrained model, no physics;
* ``diffusionpde``: residual-gradient guidance in the last 20 % of the steps, zeta swept;
* ``cocogen``: the same plus 1, 3 or 5 correction steps on the final sample, swept;
* ``pidm``: the base fine-tuned with the denoising loss plus the one-step residual loss;
* ``pgdiffusion``: the residual-gradient-conditioned denoiser, guidance weight and direct
  step swept;
* ``pirf``: PIRF fine-tuning (layer-wise truncation, K = 2), its best checkpoint chosen on
  validation seeds against validation data.

Sweeps score a candidate by the residual MSE of its samples, among candidates whose data
fidelity (field MMD to validation data) stays within 1.5x the base model's: the same band
PIRF's guard uses, so no method may buy its residual with samples that leave the data.
"""

from __future__ import annotations

import abc
import json
import math
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Union, get_args, get_origin, get_type_hints

import torch

from pirf.atomic import fsync_path
from pirf.baselines import guidance, pgdiffusion
from pirf.baselines.pgdiffusion import PGDiffusionConfig, pgdiffusion_train
from pirf.baselines.pidm import PIDMConfig, pidm_finetune
from pirf.errors import PirfError, option, python_words
from pirf.evaluation import evaluate_fields
from pirf.evaluation.band import DEFAULT_BAND, Fidelity, FidelityBand
from pirf.evaluation.results import headline
from pirf.finetune import FinetuneConfig, finetune
from pirf.finetune.config import resolve
from pirf.models import LoadedModel, load_model, resolve_checkpoint
from pirf.sampling import SamplingResult, generate
from pirf.settings import checked_value, flat, leaves, type_name, with_values
from pirf.training import rundir

VALIDATION_SEED = 2
"""Noise seed of every selection (sweeps, PIRF's best checkpoint); the test seed is 0."""
FIDELITY_BAND = DEFAULT_BAND
PG_GRID = tuple(
    {"guidance_w": w, "step_zeta": zeta} for w in (0.0, 1.0, 2.0) for zeta in (0.0, 1e-4)
)
"""PG-Diffusion candidates: CFG weight and direct residual-gradient step."""


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(json.dumps(payload, indent=2) + "\n")
    fsync_path(staging)
    staging.replace(path)


@dataclass
class Context:
    """What every stage of one PDE needs: where things are and how big the run is."""

    pde_name: str
    folder: Path
    train: Path
    test: Path
    val: Path
    base: Path
    preset: Any
    device: str
    progress: bool
    sweep_steps: int
    options: dict[str, dict[str, Any]] | None = None
    """Per-method settings from ``--method-option METHOD.KEY=VALUE``."""
    _models: dict[str, LoadedModel] | None = None

    def option(self, method: str) -> dict[str, Any]:
        return dict((self.options or {}).get(method, {}))

    def model(self, checkpoint: Path) -> LoadedModel:
        """A loaded checkpoint (EMA weights for sampling, when it has them), cached."""
        if self._models is None:
            self._models = {}
        key = str(checkpoint)
        if key not in self._models:
            self._models[key] = load_model(checkpoint, device=self.device)
        return self._models[key]


@dataclass
class Stage:
    """One step of preparation: ``run()`` writes ``output``; skipped when it exists."""

    name: str
    output: Path
    run: Callable[[], None]

    @property
    def done(self) -> bool:
        if self.output.suffix == ".json":
            return self.output.is_file()
        return (self.output / "checkpoint.json").is_file()


@dataclass
class Sampled:
    """Samples of one method at one budget, with their cost: forward network evaluations
    are in ``result``; ``backward_per_sample`` counts the network evaluations that
    backward passes go through (guidance)."""

    result: SamplingResult
    backward_per_sample: int = 0


class Method(abc.ABC):
    """A method of the comparison (see the module docstring)."""

    name = ""
    label = ""

    def stages(self, ctx: Context) -> list[Stage]:
        return []

    def _run(self, ctx: Context) -> Path:
        """The method's folder under the PDE's."""
        return ctx.folder / self.name

    @abc.abstractmethod
    def sample(self, ctx: Context, steps: int, n: int, seed: int) -> Sampled:
        """``n`` samples from seed ``seed`` at ``steps`` sampler steps, with their cost."""

    def cost(self, ctx: Context) -> dict[str, Any]:
        """Preparation cost (seconds of training and selection) read from its outputs."""
        return {}

    config: ClassVar[type | None] = None
    """The method's configuration dataclass, whose fields ``--method-option`` may set."""
    set_by_bench: ClassVar[tuple[str, ...]] = ()
    """Fields of ``config`` that the bench sets itself (paths, device, progress)."""
    sweep_keys: ClassVar[tuple[str, ...]] = ()
    """Settings of the method's sweep that ``--method-option`` may fix or make an axis."""

    def option_keys(self) -> set[str]:
        """The settings ``--method-option`` may give this method."""
        fields_ = {f.name for f in fields(self.config)} if self.config is not None else set()
        return (fields_ - set(self.set_by_bench)) | set(self.sweep_keys)

    def check_options(self, options: dict[str, Any], ctx: Context) -> None:
        """Refuse settings this method does not have, or values of the wrong type, before
        any stage runs (a stage hours into the bench must not be the first to read them)."""
        flag = option("method_options", flag="--method-option")
        unknown = sorted(set(options) - self.option_keys())
        if unknown:
            known = ", ".join(sorted(self.option_keys())) or "none"
            raise PirfError(
                f"{flag} {self.name} has no setting {', '.join(unknown)}; its settings: {known}"
            )
        if self.config is None:
            return
        hints = get_type_hints(self.config)
        for key, value in options.items():
            if key in hints and key not in self.sweep_keys and not _accepts(hints[key], value):
                raise PirfError(
                    f"{flag} {self.name}.{key} expects {_type_name(hints[key])}, got {value!r}"
                )


def _accepts(hint: Any, value: Any) -> bool:
    """Whether a JSON value fits a configuration field's type (numbers, strings, lists)."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        return any(_accepts(arg, value) for arg in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint in (str, Path):
        return isinstance(value, str)
    if origin in (tuple, list):
        item = args[0] if args else Any
        return isinstance(value, (list, tuple)) and all(_accepts(item, v) for v in value)
    return True


def _type_name(hint: Any) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if get_origin(hint) in (Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in get_args(hint) if arg is not type(None))
    if get_origin(hint) in (tuple, list):
        return f"a list of {_type_name(get_args(hint)[0]).removeprefix('an ').removeprefix('a ')}s"
    return names.get(hint, str(hint))


BASELINE_FIELDS = ("ckpt", "data", "out", "device", "progress")
"""What the bench sets in a trained baseline's configuration."""


def configure(kind: type, method: str, **values: Any) -> Any:
    """``kind(**values)``, with a one-line error naming an option the method lacks."""
    try:
        return kind(**values)
    except TypeError as error:
        raise PirfError(
            f"{option('method_options', flag='--method-option')} {method}: {error}"
        ) from None


def _seconds(path: Path, key: str = "seconds") -> float | None:
    if not path.is_file():
        return None
    value = json.loads(path.read_text()).get(key)
    return float(value) if value is not None else None


class Base(Method):
    name, label = "base", "base model"

    def sample(self, ctx: Context, steps: int, n: int, seed: int) -> Sampled:
        model = ctx.model(ctx.base)
        return Sampled(
            generate(model.denoiser, n, model.shape, seed, steps=steps, device=ctx.device)
        )


def _fidelity_score(
    ctx: Context, samples: torch.Tensor, reference: Any, base_fidelity: Fidelity | None
) -> tuple[float, dict[str, float | None]]:
    """``(residual MSE, or inf outside the fidelity band, fidelity)`` of model-space
    samples; the fidelity holds the band's metrics (``mmd``, ``diversity``)."""
    model = ctx.model(ctx.base)
    physical = model.normalisation.to_physical(samples.to(torch.float64))
    metrics = evaluate_fields(
        model.pde, physical, reference, reference.normalisation, consistency=False
    )
    row = headline(metrics)
    residual = row.residual_mse
    fidelity = row.fidelity()
    if residual is None or not math.isfinite(residual):
        return math.inf, fidelity
    if base_fidelity is not None and not FidelityBand(FIDELITY_BAND, base_fidelity).inside(
        fidelity
    ):
        return math.inf, fidelity
    return residual, fidelity


def _validation_reference(ctx: Context) -> Any:
    import pirf.data
    from pirf.evaluation import prepare_reference

    data = pirf.data.load(ctx.val)
    try:
        fields = data.fields().to(torch.float64)
        return prepare_reference(data.pde, fields, data.normalisation, device=ctx.device)
    finally:
        data.close()


def _sweep(
    ctx: Context, grid: list[dict[str, Any]], sample: Callable[[dict[str, Any]], torch.Tensor]
) -> dict[str, Any]:
    """Score every candidate on validation seeds; the base model sets the fidelity band."""
    began = time.perf_counter()
    reference = _validation_reference(ctx)
    model = ctx.model(ctx.base)
    base_samples = generate(
        model.denoiser,
        ctx.preset.select_n,
        model.shape,
        VALIDATION_SEED,
        steps=ctx.sweep_steps,
        device=ctx.device,
    ).samples
    _, base_fidelity = _fidelity_score(ctx, base_samples, reference, None)
    rows = []
    for setting in grid:
        score, fidelity = _fidelity_score(ctx, sample(setting), reference, base_fidelity)
        rows.append({"setting": setting, "residual_mse": score, "fidelity": fidelity})
    finite = [r for r in rows if math.isfinite(r["residual_mse"])]
    if not finite:
        raise PirfError(f"{ctx.pde_name}: no candidate setting gave finite residuals in the band")
    best = min(finite, key=lambda r: r["residual_mse"])
    for row in rows:
        if not math.isfinite(row["residual_mse"]):
            row["residual_mse"] = None
    return {
        "best": best["setting"],
        "candidates": rows,
        "base_fidelity": base_fidelity,
        "band": FIDELITY_BAND,
        "seed": VALIDATION_SEED,
        "n": ctx.preset.select_n,
        "steps": ctx.sweep_steps,
        "seconds": time.perf_counter() - began,
    }


class Guided(Method):
    """DiffusionPDE or CoCoGen: guided sampling of the base model, setting swept.

    ``grid`` names the sweep of :data:`pirf.baselines.guidance.METHODS` (default: the
    method's own name)."""

    def __init__(self, name: str, label: str, grid: str | None = None) -> None:
        self.name, self.label = name, label
        self.grid = grid or name

    def _setting_file(self, ctx: Context) -> Path:
        return ctx.folder / self.name / "setting.json"

    def _checkpoint(self, ctx: Context) -> Path:
        """The model that is sampled with guidance."""
        return ctx.base

    def _generate(self, ctx: Context, setting: dict, steps: int, n: int, seed: int):
        model = ctx.model(self._checkpoint(ctx))

        def loss(samples: torch.Tensor) -> torch.Tensor:
            return guidance.residual_norm(model.pde, model.normalisation, samples)

        return generate(
            model.denoiser,
            n,
            model.shape,
            seed,
            steps=steps,
            device=ctx.device,
            **guidance.wrappers(loss, **setting),
        )

    def stages(self, ctx: Context) -> list[Stage]:
        path = self._setting_file(ctx)

        def run() -> None:
            grid = guidance.sweep_grid(self.grid, ctx.option(self.name))
            result = _sweep(
                ctx,
                grid,
                lambda s: (
                    self._generate(
                        ctx, s, ctx.sweep_steps, ctx.preset.select_n, VALIDATION_SEED
                    ).samples
                ),
            )
            write_json(path, result)

        return [Stage(f"{self.name}: sweep on validation seeds", path, run)]

    def sample(self, ctx: Context, steps: int, n: int, seed: int) -> Sampled:
        setting = json.loads(self._setting_file(ctx).read_text())["best"]
        result = self._generate(ctx, setting, steps, n, seed)
        return Sampled(result, result.backward_nfe_per_sample)

    def cost(self, ctx: Context) -> dict[str, Any]:
        path = self._setting_file(ctx)
        setting = json.loads(path.read_text())["best"] if path.is_file() else None
        return {"selection_seconds": _seconds(path), "setting": setting}

    def check_options(self, options: dict[str, Any], ctx: Context) -> None:
        try:
            guidance.sweep_grid(self.grid, options)
        except PirfError as error:
            raise PirfError(
                f"{option('method_options', flag='--method-option')} {self.name}: {error}"
            ) from None


class PIDM(Method):
    name, label = "pidm", "PIDM"

    def stages(self, ctx: Context) -> list[Stage]:
        out = self._run(ctx)

        def run() -> None:
            settings = {
                "iters": ctx.preset.baseline_iters,
                "batch": ctx.preset.baseline_batch,
                **ctx.option(self.name),
            }
            pidm_finetune(
                configure(
                    PIDMConfig,
                    self.name,
                    ckpt=ctx.base,
                    data=ctx.train,
                    out=out,
                    device=ctx.device,
                    progress=ctx.progress,
                    **settings,
                )
            )

        return [Stage("pidm: fine-tune (denoising + residual loss)", out / "checkpoint", run)]

    def sample(self, ctx: Context, steps: int, n: int, seed: int) -> Sampled:
        model = ctx.model(self._run(ctx) / "checkpoint")
        return Sampled(
            generate(model.denoiser, n, model.shape, seed, steps=steps, device=ctx.device)
        )

    def cost(self, ctx: Context) -> dict[str, Any]:
        return {"training_seconds": _seconds(self._run(ctx) / "summary.json")}

    config, set_by_bench = PIDMConfig, BASELINE_FIELDS


class PGDiffusion(Method):
    name, label = "pgdiffusion", "PG-Diffusion"

    def _train_options(self, ctx: Context) -> dict[str, Any]:
        return {k: v for k, v in ctx.option(self.name).items() if k not in PG_GRID[0]}

    def _grid(self, ctx: Context) -> list[dict[str, Any]]:
        """:data:`PG_GRID`, with ``guidance_w`` / ``step_zeta`` options as values or axes."""
        chosen = {k: v for k, v in ctx.option(self.name).items() if k in PG_GRID[0]}
        axes = {
            key: sorted({s[key] for s in PG_GRID}) if key not in chosen else chosen[key]
            for key in PG_GRID[0]
        }
        axes = {k: v if isinstance(v, list | tuple) else [v] for k, v in axes.items()}
        return [
            {"guidance_w": w, "step_zeta": z} for w in axes["guidance_w"] for z in axes["step_zeta"]
        ]

    def _generate(self, ctx: Context, setting: dict, steps: int, n: int, seed: int):
        base = ctx.model(ctx.base)
        model = ctx.model(self._run(ctx) / "checkpoint").denoiser
        return generate(
            model,
            n,
            base.shape,
            seed,
            steps=steps,
            device=ctx.device,
            channels_last=False,
            **pgdiffusion.wrappers(model, base.pde, base.normalisation, **setting),
        )

    def stages(self, ctx: Context) -> list[Stage]:
        out = self._run(ctx)

        def train() -> None:
            pgdiffusion_train(
                configure(
                    PGDiffusionConfig,
                    self.name,
                    ckpt=ctx.base,
                    data=ctx.train,
                    out=out,
                    device=ctx.device,
                    progress=ctx.progress,
                    **{
                        "iters": ctx.preset.baseline_iters,
                        "batch": ctx.preset.baseline_batch,
                        **self._train_options(ctx),
                    },
                )
            )

        def sweep() -> None:
            grid = self._grid(ctx)
            result = _sweep(
                ctx,
                grid,
                lambda s: (
                    self._generate(
                        ctx, s, ctx.sweep_steps, ctx.preset.select_n, VALIDATION_SEED
                    ).samples
                ),
            )
            write_json(out / "setting.json", result)

        return [
            Stage("pgdiffusion: train the conditional denoiser", out / "checkpoint", train),
            Stage("pgdiffusion: sweep on validation seeds", out / "setting.json", sweep),
        ]

    def sample(self, ctx: Context, steps: int, n: int, seed: int) -> Sampled:
        setting = json.loads((self._run(ctx) / "setting.json").read_text())["best"]
        # The condition is a gradient of the residual operator alone (no network pass);
        # the second (unconditional) network call per evaluation is counted in the NFE.
        return Sampled(self._generate(ctx, setting, steps, n, seed))

    def cost(self, ctx: Context) -> dict[str, Any]:
        out = self._run(ctx)
        setting = out / "setting.json"
        return {
            "training_seconds": _seconds(out / "summary.json"),
            "selection_seconds": _seconds(setting),
            "setting": json.loads(setting.read_text())["best"] if setting.is_file() else None,
        }

    config, set_by_bench, sweep_keys = PGDiffusionConfig, BASELINE_FIELDS, tuple(PG_GRID[0])


class PIRF(Method):
    """PIRF fine-tuning with the recipe (K = 2 differentiable steps, top layers)."""

    name, label = "pirf", "PIRF"
    changes: ClassVar[dict[str, Any]] = {}
    """Changes to the recipe that make this variant."""
    iteration_divisor: ClassVar[int] = 1
    """The variant runs ``tune_iters // iteration_divisor`` iterations."""

    config = FinetuneConfig
    set_by_bench: ClassVar[tuple[str, ...]] = (
        "ckpt",
        "out",
        "reference",
        "eval_steps",
        "eval_seed",
        "device",
        "progress",
        "resume",
        "extra",
    )
    """What the bench sets in the fine-tuning configuration itself."""

    def _config(self, ctx: Context) -> FinetuneConfig:
        out = self._run(ctx)
        iters = max(1, ctx.preset.tune_iters // self.iteration_divisor)
        given = {
            "ckpt": ctx.base,
            "out": out,
            "reference": ctx.val,
            "eval_steps": (ctx.sweep_steps,),
            "eval_seed": VALIDATION_SEED,
            "device": ctx.device,
            "progress": ctx.progress,
            "iters": iters,
            "batch": ctx.preset.tune_batch,
            "eval_every": max(1, iters // 3),
            # The guard and the best checkpoint compare biased MMDs, whose ratios shrink
            # toward 1 on few samples: judge the run on as many (validation) samples as
            # the report's test evaluation uses.
            "eval_n": ctx.preset.eval_n,
            **self.changes,
            **ctx.option(self.name),
        }
        try:
            return FinetuneConfig.of(**given)
        except PirfError as error:
            flag = option("method_options", flag="--method-option")
            raise PirfError(f"{flag} {self.name}: {error}") from None

    def option_keys(self) -> set[str]:
        """Every fine-tuning setting but those the bench sets itself."""
        return set(flat(FinetuneConfig())) - set(self.set_by_bench)

    def check_options(self, options: dict[str, Any], ctx: Context) -> None:
        super().check_options(options, ctx)
        flag = option("method_options", flag="--method-option")
        leaves_by_name = {leaf.name: leaf for leaf in leaves(FinetuneConfig)}
        for key, value in options.items():
            try:
                checked_value(leaves_by_name[key], value)
            except PirfError:
                expected = type_name(leaves_by_name[key].annotation)
                raise PirfError(
                    f"{flag} {self.name}.{key} expects {expected}, got {value!r}"
                ) from None
        # The values are resolved and checked as the run will resolve them (the base
        # checkpoint and the validation data need not exist yet).
        try:
            with python_words():
                resolve(self._config(ctx), pde=ctx.pde_name)
        except PirfError as error:
            raise PirfError(
                f"{option('method_options', flag='--method-option')} {self.name}: {error}"
            ) from None

    def stages(self, ctx: Context) -> list[Stage]:
        out = self._run(ctx)
        config = self._config(ctx)
        # The recipe of the PDE, as every fine-tuning run resolves it (labels need it now).
        resolved = resolve(config, pde=ctx.pde_name)

        def run() -> None:
            resume = rundir.latest_checkpoint(out) is not None
            finetune(with_values(config, {"resume": resume}))

        trajectory = resolved.trajectory
        steps = f"K={trajectory.truncation}" if trajectory.mode != "full" else "all steps"
        label = f"pirf: fine-tune ({trajectory.mode}, {steps}, {resolved.layers.trainable} layers)"
        return [Stage(label, out / "summary.json", run)]

    def checkpoint(self, ctx: Context) -> Path:
        """The run's best checkpoint (chosen on validation seeds), else its final one."""
        path, _ = resolve_checkpoint(self._run(ctx))
        return path

    def sample(self, ctx: Context, steps: int, n: int, seed: int) -> Sampled:
        model = ctx.model(self.checkpoint(ctx))
        return Sampled(
            generate(model.denoiser, n, model.shape, seed, steps=steps, device=ctx.device)
        )

    def cost(self, ctx: Context) -> dict[str, Any]:
        summary = self._run(ctx) / "summary.json"
        if not summary.is_file():
            return {}
        data = json.loads(summary.read_text())
        return {
            "training_seconds": data.get("total_seconds"),
            "seconds_per_iteration": data.get("seconds_per_iteration"),
            "peak_memory_gib": data.get("peak_memory_gib"),
            "checkpoint": str(self.checkpoint(ctx)),
        }


class PIRFAllSteps(PIRF):
    """PIRF with back-propagation through every sampler step (each checkpointed), top
    layers, for a third of the iterations: an iteration costs about 3.4x one of K = 2 on a
    CPU (docs/BENCHMARKS.md), so the fine-tuning time is about the same."""

    name, label = "pirf-full", "PIRF, all steps"
    changes: ClassVar[dict[str, Any]] = {"mode": "full"}
    iteration_divisor: ClassVar[int] = 3


class PIRFCorrected(Guided):
    """PIRF's fine-tuned model sampled with CoCoGen's physics: guidance in the last 20 %
    of the steps and correction steps on the final sample, its setting swept on the
    validation seeds over CoCoGen's grid (the fine-tuned model is sampled, so the sweep
    starts from PIRF's residual). Reported at its true cost, backward passes included."""

    def __init__(self) -> None:
        super().__init__("pirf+c", "PIRF + correction", grid="cocogen")

    def _checkpoint(self, ctx: Context) -> Path:
        return METHODS["pirf"].checkpoint(ctx)  # type: ignore[attr-defined]

    def stages(self, ctx: Context) -> list[Stage]:
        # PIRF's own run first (skipped when done, e.g. when the bench also runs pirf).
        return [*METHODS["pirf"].stages(ctx), *super().stages(ctx)]

    def cost(self, ctx: Context) -> dict[str, Any]:
        """PIRF's fine-tuning and this method's sweep: both are its preparation."""
        return {**METHODS["pirf"].cost(ctx), **super().cost(ctx)}


PIRF_VARIANTS: tuple[str, ...] = ("pirf", "pirf-full", "pirf+c")
"""The PIRF rows of the benchmark; the bar is checked for each."""

METHODS: dict[str, Method] = {
    method.name: method
    for method in (
        Base(),
        Guided("diffusionpde", "DiffusionPDE"),
        Guided("cocogen", "CoCoGen"),
        PIDM(),
        PGDiffusion(),
        PIRF(),
        PIRFAllSteps(),
        PIRFCorrected(),
    )
}


__all__ = [
    "METHODS",
    "PIRF_VARIANTS",
    "VALIDATION_SEED",
    "Context",
    "Method",
    "Sampled",
    "Stage",
    "write_json",
]
