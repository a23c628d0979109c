"""What a PIRF fine-tuning run is: :class:`FinetuneConfig`, its defaults, recipes and checks.

A configuration is a few small sections (:mod:`pirf.settings`): the sampler trajectory and
its truncation, the trainable layers, the objective (reward and regularisers), the
optimiser, the evaluation that watches the run, and the run's files. A setting left at
``None`` was not given; :func:`resolve` fills it, from the stored run when resuming, else
from the per-PDE recipe, else from :data:`DEFAULTS`. The command line, the Python API, the
demo and the bench all resolve through that one function, so the same request gives the
same run from each.

Every resolved setting is stored in the run's checkpoints and ``config.toml``. A resumed
run takes them from there and refuses a conflicting value, so resuming can never silently
become a different run; only the length of the run and its bookkeeping
(:data:`pirf.training.sections.RESUMABLE`) may change.

The defaults are the recipe that worked on the tiny preset (docs/finetune.md): layer-wise
truncation (the finest decoder blocks and the output layers train), K = 2 differentiable
Heun steps of N = 20, the reward normalised by the base model's residual, a small pull
toward the pretrained weights, the last two sampler steps and the reward in float32.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pirf.errors import PirfError, option
from pirf.settings import (
    build,
    fill,
    flat,
    parse_ints,
    record,
    refuse_changes,
    section,
    setting,
    stored_values,
    with_values,
)
from pirf.training.sections import (
    INVOCATION,
    RESUMABLE,
    RUN_DEFAULTS,
    Optimiser,
    RunFiles,
    default_warmup,
)

MODES: tuple[str, ...] = ("draft", "full", "refl", "draft-lv")
"""Trajectory modes (:mod:`pirf.finetune.trajectory`)."""
TRAINABLE_SETS: tuple[str, ...] = ("all", "top", "lora")
LORA_LAYER_SETS: tuple[str, ...] = ("top", "all")
NORMS: tuple[str, ...] = ("mse", "mae")
REWARDS: tuple[str, ...] = ("residual", "preconditioned", "mixed", "multiscale")
REWARD_INPUTS: tuple[str, ...] = ("free", "held")
DISTILL_ON: tuple[str, ...] = ("all", "inputs")
"""Reward norms (:mod:`pirf.finetune.reward`)."""


def _steps(text: str) -> tuple[int, ...]:
    return parse_ints(text, "eval_steps")


def _random_steps(text: str) -> tuple[int, ...]:
    return parse_ints(text, "random_steps")


def _module_names(text: str) -> tuple[str, ...]:
    """``"head,out_norm"`` -> ``("head", "out_norm")``; one-line error for an empty list."""
    names = tuple(part.strip() for part in text.split(","))
    if not names or any(not name or any(c.isspace() for c in name) for name in names):
        raise PirfError(
            f"{option('top_modules')} expects comma-separated module names, got '{text}'"
        )
    return names


@dataclass
class Trajectory:
    """The sampler runs whose final samples are rewarded, and where the gradient flows."""

    steps: int | None = setting("Heun steps N of the training trajectories.")
    truncation: int | None = setting(
        "K: differentiable sampler steps at the end of the trajectory (draft), or the "
        "window of the random step (refl)."
    )
    mode: str | None = setting(
        "draft (the last K steps), full (all steps, checkpointed), refl or draft-lv."
    )
    copies: int | None = setting("Re-noised copies of the last step (draft-lv).")
    random_steps: tuple[int, ...] | None = setting(
        "Draw N per iteration from these (e.g. 20,40,80) so one model serves all budgets.",
        parse=_random_steps,
        metavar="LIST",
    )
    checkpointing: bool | None = setting(
        "Recompute each differentiable step's activations in the backward pass (less memory)."
    )
    pool: int | None = setting(
        "Amortised trajectories: keep this many window-start states (per process) made with "
        "recent weights and remake only --pool-refresh per iteration (0: off)."
    )
    pool_refresh: int | None = setting(
        "Window-start states remade per iteration with a pool.",
        shown_default="a quarter of the batch per process",
    )
    fp32_steps: int | None = setting("Last sampler steps that run the network in float32.")
    bf16: bool | None = setting("bf16 autocast of the network in earlier steps (CUDA only).")
    compile: bool | None = setting(
        "torch.compile the network for the sampler steps without gradient."
    )


@dataclass
class Layers:
    """Which weights train (layer-wise truncation, all, or LoRA adapters)."""

    trainable: str | None = setting(
        "top (the finest decoder blocks and the output layers), all, or lora."
    )
    top_blocks: int | None = setting(
        "Full-resolution decoder blocks that top trains besides the output layers.",
        shown_default="all of them",
    )
    top_modules: tuple[str, ...] | None = setting(
        "Modules that top (and lora on top) trains: names in the network as written "
        "(its own named_modules(), inside pirf's wrappers), comma-separated.",
        parse=_module_names,
        metavar="NAME[,NAME]",
        shown_default="the network's own choice",
    )
    lora_rank: int | None = setting("Rank of the LoRA factors.")
    lora_layers: str | None = setting(
        "LoRA on: top (as --top-blocks or --top-modules pick them) or all."
    )


@dataclass
class Objective:
    """The reward and the regularisers."""

    reward: str | None = setting(
        "Residual norm the reward takes: residual (the evaluation's), preconditioned "
        "(every scale of the solution's error alike), mixed (both) or multiscale."
    )
    reward_weight: float | None = setting(
        "With --reward mixed: the preconditioned term's weight against the residual's."
    )
    reward_snap: bool | None = setting(
        "The reward sees the fields snapped as evaluation snaps them (straight-through)."
    )
    reward_relative: bool | None = setting(
        "Divide each sample's reward by its own size (model space), so that shrinking a "
        "sample cannot lower its loss."
    )
    reward_inputs: str | None = setting(
        "What the reward may move: free (every entry, as published) or held (the gradient "
        "stops at the PDE's inputs, so only the solution moves toward their solve)."
    )
    norm: str | None = setting("mse or mae of the residual.")
    normalise_reward: bool | None = setting(
        "Divide the reward by the base model's value, so that it starts near 1."
    )
    weight_reg: float | None = setting("lambda of lambda ||theta - theta_pretrained||^2 (0: off).")
    distill_reg: float | None = setting(
        "mu of the distillation penalty on trajectory states (0: off)."
    )
    distill_on: str | None = setting(
        "Entries the distillation penalty compares: all, or inputs (the PDE's inputs only, "
        "so that the prior keeps drawing them while the reward reshapes the solution)."
    )


@dataclass
class Evaluation:
    """The fixed-seed evaluations that watch the run, pick its best checkpoint and stop it."""

    reference: Path | None = setting(
        "Held-out data for the fidelity metrics.", shown_default="the base model's training set"
    )
    eval_every: int | None = setting(
        "Iterations between evaluations (0: only at the start and the end)."
    )
    eval_n: int | None = setting("Samples per evaluation.")
    eval_steps: tuple[int, ...] | None = setting(
        "Sampler budgets evaluated (the first also for fidelity and the best checkpoint).",
        parse=_steps,
        metavar="LIST",
    )
    eval_seed: int | None = setting("Seed of the evaluation noise (never the training seed).")
    fidelity_band: float | None = setting(
        "Stop when the fidelity leaves this factor of the base model's (0: no guard)."
    )
    drift_guard: float | None = setting(
        "Stop when the smoothed loss exceeds this factor of its lowest (0: no guard)."
    )


@dataclass
class FinetuneConfig:
    """Arguments of :func:`pirf.finetune.finetune` (and of :class:`PIRFTrainer`, which uses
    the trajectory, layers, objective and optimiser sections). See docs/finetune.md."""

    ckpt: Path | None = setting(
        "Base checkpoint (a checkpoint folder or a run directory); its EMA weights start the run."
    )
    allow_import: bool | None = setting(
        "Let the base checkpoint import and run the Python factory its architecture names "
        "(a wrapped network's module:callable); only for checkpoints you trust."
    )
    trajectory: Trajectory = section(Trajectory)
    layers: Layers = section(Layers)
    objective: Objective = section(Objective)
    optimiser: Optimiser = section(Optimiser)
    evaluation: Evaluation = section(Evaluation)
    run: RunFiles = section(RunFiles)
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form JSON stored with the checkpoints (not used by fine-tuning)."""

    @classmethod
    def of(cls, **values: Any) -> FinetuneConfig:
        """A configuration from flat setting names: ``FinetuneConfig.of(ckpt=..., out=...,
        truncation=5)``; ``extra`` may be given too."""
        extra = values.pop("extra", None) or {}
        config = build(cls, **values)
        config.extra = dict(extra)
        return config


DEFAULTS: dict[str, Any] = {
    "steps": 20,
    "truncation": 2,
    "mode": "draft",
    "copies": 2,
    "checkpointing": False,
    "pool": 0,
    "fp32_steps": 2,
    "bf16": True,
    "compile": False,
    "trainable": "top",
    "lora_rank": 4,
    "lora_layers": "top",
    "allow_import": False,
    "reward": "residual",
    "reward_weight": 1.0,
    "reward_snap": False,
    "reward_relative": False,
    "reward_inputs": "free",
    "norm": "mse",
    "normalise_reward": True,
    "weight_reg": 1e-3,
    "distill_reg": 0.0,
    "distill_on": "all",
    "lr": 1e-4,
    "iters": 200,
    "batch": 16,
    "lr_final_ratio": 0.1,
    "grad_clip": 1.0,
    "ema_halflife": 0.0,
    "ema_rampup": 0.05,
    "seed": 0,
    "eval_every": 25,
    "eval_n": 64,
    "eval_steps": (20, 40, 80),
    "eval_seed": 1,
    "fidelity_band": 1.5,
    "drift_guard": 3.0,
    "checkpoint_every": 50,
    "log_every": 5,
    **RUN_DEFAULTS,
}
"""Every default of a fine-tuning run, in one place (a per-PDE recipe comes first)."""

RECIPES: dict[str, dict[str, Any]] = {
    "darcy": {"lr": 3e-5},
    "burgers": {"lr": 3e-5, "weight_reg": 10.0},
    "helmholtz": {"truncation": 5},
    "kolmogorov": {"lr": 3e-5, "truncation": 5, "weight_reg": 100.0},
}
"""Per-PDE changes to the defaults (docs/finetune.md): Darcy's binary coefficient makes
its residual stiff, and 1e-4 diverged where 3e-5 worked on a prototype. Burgers' residual
has a stencil floor close to the model's: at 1e-4 its samples left the data within 40
iterations, at 3e-5 the residual fell 5x with the fidelity inside the band; lambda = 10
holds the samples at the data (validation seeds: 3.4x lower residual, at twice the floor,
with joint MMD 0.67x and consistency 0.84x the base model's, where lambda = 1e-3 left the
band at 80 iterations). Kolmogorov: any
run left the band within 20 iterations (its spectral fidelity features are sensitive to
the finest scales the reward acts on) unless the weight regulariser held it; lambda sets
where a run settles (K = 5: lambda 10 -> 2.7x lower residual at 3.0x the base's fidelity
distance, 30 -> 2.1x at 1.6x, 100 -> 1.65x at 1.07x), and K = 5 settles lower than K = 2
at the same distance (docs/BENCHMARKS.md). Helmholtz: K = 5 lowered the residual 28.8x
where K = 2 reached 13.9x in the same 120 iterations, with the fidelity distance at the
base model's and the diversity at the data's."""

LORA_RECIPE: dict[str, Any] = {"truncation": 5, "lr_factor": 10.0}
"""Changes for ``trainable='lora'`` (docs/BENCHMARKS.md, "The truncated gradient against
the exact one"): K = 5 differentiable steps and a learning rate 10x the full-weight one
(the factors start at zero and move the weights more slowly). At K = 2 the LoRA factors'
truncated gradient has a negative cosine with the exact one and every run made the
residual worse; at K = 5 the cosine is 0.68. The exact gradient (``mode='full'``) trains
LoRA faster but shrank the samples (diversity 0.58) within 40 iterations."""


def recipe(
    pde: str | None, trainable: str | None = None, budgets: tuple[int, ...] | None = None
) -> dict[str, Any]:
    """The recipe's changes to the defaults for ``pde`` and the trainable set: the values
    that settings left out take (:func:`resolve`). ``budgets``: the training runs' sampler
    step counts, which cap the recipe's K."""
    changes = dict(RECIPES.get(pde or "", {}))
    if trainable == "lora":
        lora = dict(LORA_RECIPE)
        changes["lr"] = changes.get("lr", DEFAULTS["lr"]) * lora.pop("lr_factor")
        changes.update(lora)
    if "truncation" in changes and budgets:
        changes["truncation"] = min(changes["truncation"], *budgets)
    return changes


STORED_ALIASES = {"sampler_steps": "steps"}
"""Names of stored settings in checkpoints written before the sections existed."""


def stored_settings(stored: Mapping[str, Any]) -> dict[str, Any]:
    """A run's settings as its checkpoints store them (``training``), as values of
    :class:`FinetuneConfig`."""
    return stored_values(FinetuneConfig, stored, STORED_ALIASES)


def resolve(
    config: FinetuneConfig, *, pde: str | None = None, stored: Mapping[str, Any] | None = None
) -> FinetuneConfig:
    """Every setting filled: given values first, then (resuming) the stored run's, then the
    recipe of ``pde`` for the trainable set and budgets, then :data:`DEFAULTS`; the warm-up
    defaults to 5 % of ``iters``. Checked (:func:`validate`)."""
    if stored is not None:
        refuse_changes(config, stored, RESUMABLE)
        config = fill(config, {k: v for k, v in stored.items() if k not in INVOCATION})
    given = flat(config)
    trainable = given["trainable"] or DEFAULTS["trainable"]
    budgets = given["random_steps"] or (given["steps"] or DEFAULTS["steps"],)
    config = fill(config, recipe(pde, trainable, tuple(budgets)), DEFAULTS)
    if config.optimiser.warmup is None:
        config = with_values(config, {"warmup": default_warmup(config.optimiser.iters)})
    validate(config)
    return config


def _positive(name: str, value: float | None, *, zero: bool = False) -> None:
    if value is None or (zero and value == 0):
        return
    if isinstance(value, bool) or not value > 0:
        raise PirfError(f"{option(name)} must be {'>= 0' if zero else 'positive'}")


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise PirfError(f"unknown {option(name)} '{value}'; use one of {', '.join(choices)}")


def validate(config: FinetuneConfig) -> None:
    """One-line errors for settings that cannot work, before anything is read or written.
    Needs a resolved configuration (:func:`resolve`)."""
    values = flat(config)
    _choice("mode", values["mode"], MODES)
    _choice("trainable", values["trainable"], TRAINABLE_SETS)
    _choice("lora_layers", values["lora_layers"], LORA_LAYER_SETS)
    if values["top_modules"] is not None and values["top_blocks"] is not None:
        raise PirfError(
            f"give {option('top_blocks')} (a pirf U-Net's finest blocks) or "
            f"{option('top_modules')} (module names), not both"
        )
    _choice("norm", values["norm"], NORMS)
    _choice("reward", values["reward"], REWARDS)
    _choice("reward_inputs", values["reward_inputs"], REWARD_INPUTS)
    _choice("distill_on", values["distill_on"], DISTILL_ON)
    if values["distill_on"] != "all" and not values["distill_reg"]:
        raise PirfError(
            f"{option('distill_on')} {values['distill_on']} needs a distillation penalty: "
            f"give {option('distill_reg')} above 0"
        )
    for name in (
        "steps",
        "truncation",
        "copies",
        "lora_rank",
        "lr",
        "iters",
        "batch",
        "reward_weight",
        "checkpoint_every",
        "log_every",
        "eval_n",
        "keep_checkpoints",
    ):
        _positive(name, values[name])
    for name in (
        "weight_reg",
        "distill_reg",
        "ema_halflife",
        "grad_clip",
        "eval_every",
        "fidelity_band",
        "drift_guard",
        "warmup",
    ):
        _positive(name, values[name], zero=True)
    if not 0 <= values["lr_final_ratio"] <= 1:
        raise PirfError(f"{option('lr_final_ratio')} must lie in [0, 1]")
    for name in ("fp32_steps", "seed", "eval_seed"):
        if values[name] < 0:
            raise PirfError(f"{option(name)} must be non-negative")
    budgets = values["random_steps"] or (values["steps"],)
    for n in (*budgets, *values["eval_steps"]):
        if n < 1:
            raise PirfError(f"sampler step counts must be positive, got {n}")
    if values["mode"] in ("draft", "refl") and values["truncation"] > min(budgets):
        raise PirfError(
            f"{option('truncation')} {values['truncation']} exceeds the {min(budgets)} "
            "sampler steps"
        )
    if values["eval_n"] < 4:
        raise PirfError(f"{option('eval_n')} must be at least 4 (fidelity compares two halves)")
    if values["fidelity_band"] and not values["fidelity_band"] > 1:
        raise PirfError(
            f"{option('fidelity_band')} must be above 1 (a factor of the base model's value), "
            "or 0 for no guard"
        )
    if values["drift_guard"] and not values["drift_guard"] > 1:
        raise PirfError(
            f"{option('drift_guard')} must be above 1 (a factor of the lowest loss), "
            "or 0 for no guard"
        )
    if values["stop_at"] is not None and values["stop_at"] <= 0:
        raise PirfError(f"{option('stop_at')} must be positive")
    if values["pool"]:
        _positive("pool", values["pool"])
        if values["mode"] != "draft" or values["random_steps"]:
            raise PirfError(
                f"{option('pool')} needs {option('mode')} draft and a fixed "
                f"{option('steps')} (no {option('random_steps')})"
            )
        if values["pool"] < values["batch"]:
            raise PirfError(
                f"{option('pool')} {values['pool']} is smaller than {option('batch')} "
                f"{values['batch']}; the pool must hold at least one batch"
            )
        refresh = values["pool_refresh"]
        if refresh is not None and not 1 <= refresh <= values["pool"]:
            raise PirfError(f"{option('pool_refresh')} must lie in 1..{values['pool']}")


def check_paths(config: FinetuneConfig) -> None:
    """The files a run needs: the base checkpoint and the run directory (one-line errors
    before anything is read or written)."""
    if config.ckpt is None or config.run.out is None:
        raise PirfError(
            f"a fine-tuning run needs {option('ckpt')} (the base checkpoint) and {option('out')}"
        )
    out = Path(config.run.out)
    if out.exists() and not out.is_dir():
        raise PirfError(f"{option('out')} {out} is a file; give a directory for the run")
    ckpt = Path(config.ckpt)
    if ckpt.exists() and not ckpt.is_dir():
        raise PirfError(f"{ckpt} is not a pirf checkpoint (a checkpoint is a directory)")
    if not ckpt.is_dir():
        raise PirfError(f"no such checkpoint directory: {ckpt}")
    reference = config.evaluation.reference
    if reference is not None and not Path(reference).is_file():
        raise PirfError(f"no such reference data file: {reference}")


__all__ = [
    "DEFAULTS",
    "DISTILL_ON",
    "LORA_LAYER_SETS",
    "LORA_RECIPE",
    "MODES",
    "NORMS",
    "RECIPES",
    "REWARDS",
    "REWARD_INPUTS",
    "TRAINABLE_SETS",
    "Evaluation",
    "FinetuneConfig",
    "Layers",
    "Objective",
    "Trajectory",
    "check_paths",
    "recipe",
    "record",
    "resolve",
    "stored_settings",
    "validate",
]
