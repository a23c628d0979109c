"""What a PIRF fine-tuning run is: :class:`FinetuneConfig`, its defaults and its checks.

The *trajectory* fields (everything that changes which numbers the run computes) are
stored in every checkpoint of the run; ``--resume`` takes them from there and refuses a
conflicting value, so resuming can never silently become a different run. Only the length
of the run and the bookkeeping fields (device, frequencies, guards) may change.

Defaults are the recipe that worked on the tiny preset (docs/finetune.md): layer-wise
truncation (the finest decoder blocks and the output layers train), K = 2 differentiable
Heun steps of N = 20, the reward normalised by the base model's residual, a small pull
toward the pretrained weights, the last two sampler steps and the reward in float32.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from pirf.errors import PirfError, option
from pirf.finetune.reward import NORMS, REWARDS
from pirf.finetune.trajectory import MODES

TRAINABLE_SETS: tuple[str, ...] = ("all", "top", "lora")

LORA_LAYER_SETS: tuple[str, ...] = ("top", "all")

RECIPES: dict[str, dict[str, Any]] = {
    "darcy": {"lr": 3e-5},
    "burgers": {"lr": 3e-5},
    "helmholtz": {"truncation": 5},
    "kolmogorov": {"lr": 3e-5, "truncation": 5, "weight_reg": 100.0},
}
"""Per-PDE changes to the defaults (docs/finetune.md): Darcy's binary coefficient makes
its residual stiff, and 1e-4 diverged where 3e-5 worked on a prototype. Burgers' residual
has a stencil floor close to the model's: at 1e-4 its samples left the data within 40
iterations, at 3e-5 the residual fell 5x with the fidelity inside the band. Kolmogorov: any
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
    that options left out by the user take (the CLI applies them; the Python API keeps
    the plain defaults). ``budgets``: the training runs' sampler step counts, which cap the
    recipe's K."""
    changes = dict(RECIPES.get(pde or "", {}))
    if trainable == "lora":
        lora = dict(LORA_RECIPE)
        changes["lr"] = changes.get("lr", FinetuneConfig.lr) * lora.pop("lr_factor")
        changes.update(lora)
    if "truncation" in changes and budgets:
        changes["truncation"] = min(changes["truncation"], *budgets)
    return changes


TRAJECTORY_FIELDS = (
    "sampler_steps",
    "truncation",
    "mode",
    "copies",
    "trainable",
    "top_blocks",
    "lora_rank",
    "lora_layers",
    "weight_reg",
    "distill_reg",
    "norm",
    "reward",
    "reward_weight",
    "reward_snap",
    "normalise_reward",
    "lr",
    "warmup",
    "lr_final_ratio",
    "batch",
    "ema_halflife",
    "grad_clip",
    "random_steps",
    "checkpointing",
    "pool",
    "pool_refresh",
    "fp32_steps",
    "bf16",
    "seed",
    "reference",
    "eval_n",
    "eval_steps",
    "eval_seed",
)
"""Fields that define the numbers a run computes and how it is judged (the evaluation
seeds and budgets that pick the best checkpoint); fixed for the lifetime of a run."""


@dataclass
class FinetuneConfig:
    """Arguments of :func:`pirf.finetune.finetune`. See docs/finetune.md for the recipe."""

    ckpt: Path | str | None = None
    """The pretrained (base) checkpoint directory; its EMA weights are the starting point.
    (Only :func:`~pirf.finetune.finetune` reads files; :class:`PIRFTrainer` needs none.)"""
    out: Path | str | None = None
    """Run directory: checkpoints (last, best, periodic), metrics, figures, summary."""
    sampler_steps: int = 20
    """Heun steps N of the training trajectories (unless ``random_steps`` draws them)."""
    truncation: int = 2
    """K: differentiable sampler steps at the end of the trajectory (``draft``), or the
    window of the random step (``refl``). K >= 2: with K = 1 the gradient reaches the
    network only through ``c_out ~ sigma_min`` and training is unstable."""
    mode: str = "draft"
    """``draft`` (DRaFT-K), ``full`` (all steps, checkpointed), ``refl``, ``draft-lv``."""
    copies: int = 2
    """Re-noised copies of the last step (``draft-lv``)."""
    trainable: str = "top"
    """``top`` (layer-wise truncation), ``all``, or ``lora``."""
    top_blocks: int | None = None
    """Full-resolution decoder blocks that ``top`` trains (None: all of them) besides the
    output layers."""
    lora_rank: int = 4
    """Rank of the LoRA factors (``trainable='lora'``)."""
    lora_layers: str = "top"
    """Which layers get LoRA factors: ``top`` (the layers ``trainable='top'`` trains, as
    ``top_blocks`` chooses them) or ``all`` (every conv and linear layer, noise embedding
    included; it degraded the model on the tiny Poisson study, docs/BENCHMARKS.md)."""
    weight_reg: float = 1e-3
    """lambda of ``lambda * ||theta - theta_pretrained||^2`` (0 disables)."""
    distill_reg: float = 0.0
    """mu of the distillation penalty on trajectory states (0 disables; costs forward
    passes of the frozen pretrained network)."""
    norm: str = "mse"
    """Residual norm of the reward: ``mse`` or ``mae``."""
    reward: str = "residual"
    """Which norm of the residual the reward takes (:mod:`pirf.finetune.reward`):
    ``residual`` (the evaluation's residual MSE), ``preconditioned`` (the residual through
    the inverse of the PDE's constant-coefficient operator: every scale of the solution's
    error alike), ``mixed`` (both) or ``multiscale`` (the residual at every dyadic
    scale)."""
    reward_weight: float = 1.0
    """Weight of the preconditioned term against the residual term in ``mixed``."""
    reward_snap: bool = False
    """The reward sees the fields projected as evaluation projects them (``PDE.snap``:
    Darcy's binary coefficient), with the gradient passed straight through."""
    normalise_reward: bool = True
    """Divide the loss by the base model's mean residual loss (measured at the start)."""
    lr: float = 1e-4
    """Peak learning rate of Adam."""
    warmup: int | None = None
    """Linear warm-up in iterations; default 5% of ``iters``."""
    lr_final_ratio: float = 0.1
    """Learning rate at the last iteration as a fraction of ``lr`` (cosine decay)."""
    iters: int = 200
    """Optimizer steps of the run (a resumed run may extend it)."""
    batch: int = 16
    """Trajectories per optimizer step (global; split across processes)."""
    ema_halflife: float = 0.0
    """EMA half-life in trajectories (0: the EMA is the current weights)."""
    grad_clip: float = 1.0
    """Clip the gradient norm of the trainable weights (0 disables)."""
    random_steps: tuple[int, ...] | None = None
    """Draw N per iteration from these (e.g. 20, 40, 80) so one model serves all budgets."""
    checkpointing: bool = False
    """Gradient checkpointing of each differentiable sampler step (``draft``,
    ``draft-lv``): activations are recomputed in the backward pass instead of kept, for
    large backbones; ``full`` always checkpoints."""
    pool: int = 0
    """Amortised trajectories (:mod:`pirf.finetune.pool`): keep this many window-start
    states (per process) made with recent weights, draw each iteration's batch from them
    and remake only ``pool_refresh`` per iteration (0: every trajectory from fresh noise,
    plain DRaFT-K). Needs ``mode='draft'`` and a fixed ``sampler_steps``."""
    pool_refresh: int | None = None
    """Window-start states remade per iteration with a pool (default: a quarter of the
    batch per process, at least one); a state lives ``pool / pool_refresh`` iterations."""
    fp32_steps: int = 2
    """Last sampler steps that run the network in float32 when ``bf16`` is on (CUDA)."""
    bf16: bool = True
    """bf16 autocast of the network in the earlier sampler steps on CUDA (ignored on CPU)."""
    compile: bool = False
    """Run the sampler steps without gradient (N - K of N) through ``torch.compile`` of the
    same network (it shares the weights, so every iteration sees the current ones). The
    first iteration pays the compilation; the numbers agree with eager to float rounding.
    The differentiable steps stay eager."""
    seed: int = 0
    """Seed of the training noise (and of ReFL / DRaFT-LV draws)."""
    reference: Path | str | None = None
    """Held-out data for the fidelity metrics; default: the base model's training set."""
    eval_every: int = 25
    """Iterations between evaluations (fixed seeds; 0: only at the start and the end)."""
    eval_n: int = 64
    """Samples per evaluation."""
    eval_steps: tuple[int, ...] = (20, 40, 80)
    """Sampler steps at which evaluations measure the residual (fidelity at the first)."""
    eval_seed: int = 1
    """Seed of the evaluation noise (never the training seed)."""
    fidelity_band: float | None = 1.5
    """Stop when the fidelity distance exceeds this many times the base model's (None: no
    guard). The best checkpoint is always chosen inside the band."""
    drift_guard: float | None = 3.0
    """Stop when the smoothed training loss exceeds this many times its minimum so far
    (the slow upward drift of a failing run; None: no guard)."""
    checkpoint_every: int = 50
    """Iterations between periodic checkpoints (for ``--resume``)."""
    keep_checkpoints: int = 1
    log_every: int = 5
    device: str = "auto"
    stop_at: int | None = None
    """End this invocation after this iteration (with a checkpoint); ``resume`` continues."""
    resume: bool = False
    progress: bool = True
    figures: bool = True
    extra: dict[str, Any] = field(default_factory=dict)
    given: tuple[str, ...] | None = None
    """Names of the fields the user set (the CLI fills it in); on ``resume`` the others
    take the stored values. None: every field counts as given."""

    def __post_init__(self) -> None:
        self.ckpt = None if self.ckpt is None else Path(self.ckpt)
        self.out = None if self.out is None else Path(self.out)
        if self.reference is not None:
            self.reference = Path(self.reference)
        if self.random_steps is not None:
            self.random_steps = tuple(int(n) for n in self.random_steps)
        self.eval_steps = tuple(int(n) for n in self.eval_steps)

    @property
    def resolved_warmup(self) -> int:
        return self.warmup if self.warmup is not None else max(1, round(0.05 * self.iters))

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("given")
        for key in ("ckpt", "out", "reference"):
            data[key] = None if data[key] is None else str(data[key])
        return json.loads(json.dumps(data))

    def trajectory(self) -> dict[str, Any]:
        """The trajectory fields as JSON values (stored in checkpoints)."""
        data = self.to_json()
        record = {name: data[name] for name in TRAJECTORY_FIELDS}
        record["warmup"] = self.resolved_warmup
        return record


def _positive(name: str, value: float | None, *, zero: bool = False) -> None:
    if value is None or (zero and value == 0):
        return
    if isinstance(value, bool) or not value > 0:
        raise PirfError(f"{option(name)} must be {'>= 0' if zero else 'positive'}")


def validate(config: FinetuneConfig) -> None:
    """One-line errors for arguments that cannot work, before anything is read or written."""
    if config.mode not in MODES:
        raise PirfError(f"unknown {option('mode')} '{config.mode}'; use one of {', '.join(MODES)}")
    if config.trainable not in TRAINABLE_SETS:
        raise PirfError(
            f"unknown {option('trainable')} '{config.trainable}'; "
            f"use one of {', '.join(TRAINABLE_SETS)}"
        )
    if config.lora_layers not in LORA_LAYER_SETS:
        raise PirfError(
            f"unknown {option('lora_layers')} '{config.lora_layers}'; "
            f"use one of {', '.join(LORA_LAYER_SETS)}"
        )
    if config.norm not in NORMS:
        raise PirfError(f"unknown {option('norm')} '{config.norm}'; use one of {', '.join(NORMS)}")
    if config.reward not in REWARDS:
        raise PirfError(
            f"unknown {option('reward')} '{config.reward}'; use one of {', '.join(REWARDS)}"
        )
    for name in (
        "sampler_steps",
        "truncation",
        "copies",
        "lora_rank",
        "lr",
        "iters",
        "batch",
        "reward_weight",
    ):
        _positive(name, getattr(config, name))
    for name in ("checkpoint_every", "log_every", "eval_n"):
        _positive(name, getattr(config, name))
    for name in ("weight_reg", "distill_reg", "ema_halflife", "grad_clip", "eval_every"):
        _positive(name, getattr(config, name), zero=True)
    if config.pool:
        _positive("pool", config.pool)
        if config.mode != "draft" or config.random_steps:
            raise PirfError(
                f"{option('pool')} needs {option('mode')} draft and a fixed "
                f"{option('sampler_steps')} (no {option('random_steps')})"
            )
        if config.pool < config.batch:
            raise PirfError(
                f"{option('pool')} {config.pool} is smaller than {option('batch')} "
                f"{config.batch}; the pool must hold at least one batch"
            )
        if config.pool_refresh is not None and not 1 <= config.pool_refresh <= config.pool:
            raise PirfError(f"{option('pool_refresh')} must lie in 1..{config.pool}")
    if config.warmup is not None and config.warmup < 0:
        raise PirfError(f"{option('warmup')} must be >= 0")
    if not 0 <= config.lr_final_ratio <= 1:
        raise PirfError(f"{option('lr_final_ratio')} must lie in [0, 1]")
    if config.fp32_steps < 0 or config.seed < 0 or config.eval_seed < 0:
        raise PirfError(f"{option('fp32_steps')} and the seeds must be non-negative")
    budgets = config.random_steps or (config.sampler_steps,)
    for n in (*budgets, *config.eval_steps):
        if n < 1:
            raise PirfError(f"sampler step counts must be positive, got {n}")
    if config.mode in ("draft", "refl") and config.truncation > min(budgets):
        raise PirfError(
            f"{option('truncation')} {config.truncation} exceeds the {min(budgets)} sampler steps"
        )
    if not config.eval_steps:
        raise PirfError(f"{option('eval_steps')} needs at least one step count")
    if config.eval_n < 4:
        raise PirfError(f"{option('eval_n')} must be at least 4 (fidelity compares two halves)")
    if config.fidelity_band is not None and not config.fidelity_band > 1:
        raise PirfError(
            f"{option('fidelity_band')} must be above 1 (a factor of the base model's value)"
        )
    if config.drift_guard is not None and not config.drift_guard > 1:
        raise PirfError(f"{option('drift_guard')} must be above 1 (a factor of the lowest loss)")
    if config.stop_at is not None and config.stop_at <= 0:
        raise PirfError(f"{option('stop_at')} must be positive")
    if config.ckpt is None or config.out is None:
        raise PirfError(
            f"a fine-tuning run needs {option('ckpt')} (the base checkpoint) and {option('out')}"
        )
    if config.out.exists() and not config.out.is_dir():
        raise PirfError(f"{option('out')} {config.out} is a file; give a directory for the run")
    if not config.ckpt.is_dir():
        raise PirfError(f"no such checkpoint directory: {config.ckpt}")
    if config.reference is not None and not Path(config.reference).is_file():
        raise PirfError(f"no such reference data file: {config.reference}")


def check_resume(config: FinetuneConfig, stored: dict[str, Any]) -> None:
    """Refuse a resumed run whose (given) trajectory fields differ from the stored ones."""
    given = config.trajectory()
    for name in TRAJECTORY_FIELDS:
        if config.given is not None and name not in config.given:
            continue
        if name in stored and given[name] != stored[name]:
            raise PirfError(
                f"{option('resume', True)}: {option(name)} is {given[name]!r} but the run in "
                f"{config.out} was made with {stored[name]!r}; drop the option or start a new "
                f"run in another {option('out')} directory"
            )


def from_stored(config: FinetuneConfig, stored: dict[str, Any]) -> FinetuneConfig:
    """``config`` with the trajectory fields of a stored run (for ``--resume`` without
    repeating every option); fields the user changed are refused by :func:`check_resume`."""
    values = {
        name: (tuple(value) if isinstance(value, list) else value)
        for name, value in stored.items()
        if name in {f.name for f in fields(FinetuneConfig)} and name in TRAJECTORY_FIELDS
    }
    if "iters" in stored and (config.given is not None and "iters" not in config.given):
        values["iters"] = int(stored["iters"])
    return replace(config, **values)


__all__ = [
    "LORA_LAYER_SETS",
    "LORA_RECIPE",
    "RECIPES",
    "TRAINABLE_SETS",
    "TRAJECTORY_FIELDS",
    "FinetuneConfig",
    "check_resume",
    "from_stored",
    "recipe",
    "validate",
]
