"""Low-rank adaptation (LoRA): a memory-light way to fine-tune a large denoiser backbone.

Instead of training a layer's weight ``W`` ``(out, ...)``, LoRA freezes it and trains two
small factors, ``A`` ``(rank, fan_in)`` and ``B`` ``(out, rank)``; the layer then uses::

    W + (alpha / rank) * (B @ A).view_as(W)

``fan_in`` is ``in * k * k`` for a convolution and ``in`` for a linear layer. ``B`` starts
at zero, so attaching LoRA leaves the model's function unchanged, and ``A`` starts small
and random, so the gradient of ``B`` is not zero. Only ``rank * (fan_in + out)`` numbers
per layer are trained, so the optimiser state and weight gradients shrink accordingly;
the frozen weights still pass the reward's gradient on to earlier layers and sampler
states, exactly as in layer-wise truncation (:mod:`pirf.finetune.trainable`).

The factors are attached with :mod:`torch.nn.utils.parametrize`, so the layers' own
``forward`` is untouched and ``layer.weight`` is the adapted weight. The parametrisation
renames the frozen weight to ``<layer>.parametrizations.weight.original``;
:func:`merged_state` gives back the state dict of the plain architecture (``<layer>.weight``
with the factors folded in), which loads into a model built without LoRA.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize

from pirf.errors import PirfError
from pirf.models import layers
from pirf.models.backbone import named_modules_under

LORA_DEFAULT_RANK = 4
"""Rank of the factors unless the caller chooses another."""

_ADAPTABLE: tuple[type[nn.Module], ...] = (layers.Conv2d, nn.Conv2d, nn.Linear)
"""Layer types LoRA adapts (``pirf.models.layers.Linear`` is an ``nn.Linear``)."""


class LoraDelta(nn.Module):
    """The parametrisation ``W -> W + scale * (B @ A).view_as(W)`` of one layer's weight.

    ``A`` is drawn like a default PyTorch layer (uniform with bound ``1/sqrt(fan_in)``) and
    ``B`` is zero, so the weight is unchanged until ``B`` is trained.
    """

    def __init__(self, weight: torch.Tensor, rank: int, scale: float) -> None:
        super().__init__()
        out, fan_in = weight.shape[0], weight[0].numel()
        options = {"dtype": weight.dtype, "device": weight.device}
        self.scale = scale
        self.lora_a = nn.Parameter(torch.empty(rank, fan_in, **options))
        self.lora_b = nn.Parameter(torch.zeros(out, rank, **options))
        # a = sqrt(5) gives the bound 1/sqrt(fan_in), as nn.Linear's own initialisation.
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + self.scale * (self.lora_b @ self.lora_a).view_as(weight)

    def extra_repr(self) -> str:
        return f"rank={self.lora_a.shape[0]}, scale={self.scale:g}"


def _check_rank(rank: int) -> None:
    """PirfError unless ``rank`` is a positive int (a float rank has no meaning)."""
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise PirfError(f"LoRA rank must be a positive integer, got {rank!r}")


def _check_alpha(alpha: float) -> None:
    """PirfError unless ``alpha`` is a positive finite number (it scales every update)."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise PirfError(f"LoRA alpha must be a positive number, got {alpha!r}")
    if not (math.isfinite(alpha) and alpha > 0):
        raise PirfError(f"LoRA alpha must be a positive finite number, got {alpha!r}")


def _is_adaptable(module: nn.Module) -> bool:
    """Whether ``module`` is a conv or linear layer with a 2-D or 4-D weight parameter."""
    if not isinstance(module, _ADAPTABLE):
        return False
    if parametrize.is_parametrized(module, "weight"):
        return True  # checked (and refused) in attach_lora
    weight = module._parameters.get("weight")
    return isinstance(weight, nn.Parameter) and weight.dim() in (2, 4)


def _under(name: str, prefixes: Sequence[str]) -> bool:
    """Whether qualified module name ``name`` is one of ``prefixes`` or lies inside one."""
    return any(p == "" or name == p or name.startswith(p + ".") for p in prefixes)


def _candidate_layers(
    model: nn.Module, prefixes: Sequence[str] | None
) -> list[tuple[str, nn.Module]]:
    """The adaptable layers of ``model``, restricted to ``prefixes`` when given."""
    if prefixes is not None:
        prefixes = list(prefixes)
        named_modules_under(model, prefixes)
    return [
        (name, module)
        for name, module in model.named_modules()
        if _is_adaptable(module) and (prefixes is None or _under(name, prefixes))
    ]


def _deltas(module: nn.Module) -> list[LoraDelta]:
    """The LoRA parametrisations registered on ``module.weight`` (none or one)."""
    if not parametrize.is_parametrized(module, "weight"):
        return []
    return [p for p in module.parametrizations["weight"] if isinstance(p, LoraDelta)]


def _lora_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every ``(qualified name, layer)`` with LoRA on its weight, shared layers under each
    of their names (as in ``state_dict``)."""
    return [
        (name, module)
        for name, module in model.named_modules(remove_duplicate=False)
        if _deltas(module)
    ]


def _factor_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The LoRA factors of ``model`` in ``named_parameters`` order."""
    ids = {id(p) for m in model.modules() if isinstance(m, LoraDelta) for p in m.parameters()}
    return [(name, p) for name, p in model.named_parameters() if id(p) in ids]


def has_lora(model: nn.Module) -> bool:
    """Whether any layer of ``model`` carries LoRA factors."""
    return any(isinstance(module, LoraDelta) for module in model.modules())


def attach_lora(
    model: nn.Module,
    rank: int = LORA_DEFAULT_RANK,
    alpha: float | None = None,
    prefixes: Sequence[str] | None = None,
) -> list[tuple[str, nn.Parameter]]:
    """Give every conv and linear layer of ``model`` (under ``prefixes`` if given) LoRA
    factors of ``rank``, freeze all original weights and train only the factors.

    ``prefixes`` are qualified module names relative to ``model``; a layer is adapted if
    its name equals a prefix or starts with ``prefix + "."``. ``alpha`` (default ``rank``)
    sets the scale ``alpha / rank`` of the update, the same for every layer; a layer too
    small for ``rank`` gets factors of rank ``min(out, fan_in)``, which is already full.
    Returns the trainable ``(name, parameter)`` pairs in ``named_parameters`` order.
    """
    _check_rank(rank)
    prefixes = None if prefixes is None else list(prefixes)
    alpha = float(rank) if alpha is None else alpha
    _check_alpha(alpha)
    if has_lora(model):
        raise PirfError("the model already has LoRA factors; attach LoRA once, to a plain model")
    chosen = _candidate_layers(model, prefixes)
    if not chosen:
        where = (
            "" if prefixes is None else f" under {', '.join(map(repr, prefixes)) or 'no prefix'}"
        )
        raise PirfError(f"no conv or linear layer{where} to attach LoRA to; check the prefixes")
    for name, module in chosen:
        if parametrize.is_parametrized(module, "weight"):
            raise PirfError(
                f"the weight of '{name}' is already parametrised; LoRA needs a plain weight"
            )
    for _, module in chosen:
        weight = module.weight
        layer_rank = min(rank, weight.shape[0], weight[0].numel())
        delta = LoraDelta(weight, layer_rank, alpha / rank)
        parametrize.register_parametrization(module, "weight", delta)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    factors = _factor_parameters(model)
    for _, parameter in factors:
        parameter.requires_grad_(True)
    return factors


def lora_parameter_count(model: nn.Module) -> int:
    """Number of trainable LoRA factor elements of ``model`` (zero without LoRA)."""
    return sum(p.numel() for _, p in _factor_parameters(model) if p.requires_grad)


def _merged_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """``{layer key prefix: merged weight}`` for every LoRA layer of ``model``."""
    with torch.no_grad():
        return {
            (f"{name}." if name else ""): module.weight.detach()
            for name, module in _lora_layers(model)
        }


def _owner(key: str, prefixes: Iterable[str]) -> str | None:
    """The LoRA layer (by key prefix) whose own entry or parametrisation ``key`` is, if any."""
    for prefix in prefixes:
        rest = key[len(prefix) :] if key.startswith(prefix) else None
        if rest is not None and ("." not in rest or rest.startswith("parametrizations.")):
            return prefix
    return None


def _replace_lora_entries(
    state: Mapping[str, torch.Tensor], merged: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Drop the weight parametrisation entries of the LoRA layers and put each merged
    ``weight`` where the plain layer has it: before the layer's first other entry."""
    result: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        owner = _owner(key, merged)
        if owner is not None and owner + "weight" not in result:
            result[owner + "weight"] = merged[owner]
        if owner is None or not key.startswith(owner + "parametrizations.weight."):
            result[key] = value
    return result


def merged_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of ``model`` as if it had been built without LoRA, factors folded in.

    The keys are those of the model's ``state_dict()`` before :func:`attach_lora`
    (``<layer>.weight``, not ``<layer>.parametrizations.weight.original``) and the weights
    are the adapted ``W + scale * B @ A``; all tensors are detached. It loads with
    ``strict=True`` into a model of the same architecture without LoRA, e.g. to save a
    fine-tuned checkpoint that the rest of pirf reads as usual.
    """
    state = model.state_dict()
    merged = _merged_weights(model)
    if not merged:
        return {key: value.detach() for key, value in state.items()}
    return _replace_lora_entries(state, merged)


def lora_factors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached copies of the LoRA factors of ``model`` by their ``named_parameters`` names."""
    return {name: p.detach().clone() for name, p in _factor_parameters(model)}


def _check_factors(
    expected: Mapping[str, nn.Parameter], factors: Mapping[str, torch.Tensor]
) -> None:
    """PirfError naming the first missing, extra or mis-shaped factor."""
    for name in expected:
        if name not in factors:
            raise PirfError(f"LoRA factor '{name}' is missing; pass all of lora_factors(model)")
    for name, value in factors.items():
        if name not in expected:
            raise PirfError(f"'{name}' is not a LoRA factor of this model; check the LoRA layers")
        if not isinstance(value, torch.Tensor) or value.shape != expected[name].shape:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise PirfError(
                f"LoRA factor '{name}' has shape {shape}, the model's is "
                f"{tuple(expected[name].shape)}; check the rank and the layers"
            )


def load_lora_factors(model: nn.Module, factors: Mapping[str, torch.Tensor]) -> None:
    """Copy ``factors`` (as from :func:`lora_factors`) into the LoRA factors of ``model``
    in place, so optimisers holding the parameters keep working."""
    expected = dict(_factor_parameters(model))
    if not expected:
        raise PirfError("the model has no LoRA factors to load into; call attach_lora first")
    _check_factors(expected, factors)
    with torch.no_grad():
        for name, parameter in expected.items():
            parameter.copy_(factors[name])


__all__ = [
    "LORA_DEFAULT_RANK",
    "attach_lora",
    "has_lora",
    "load_lora_factors",
    "lora_factors",
    "lora_parameter_count",
    "merged_state",
]
