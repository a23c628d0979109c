"""Which weights fine-tuning trains: all of them, or only the top of the network.

Layer-wise truncation (PIRF) trains the highest-resolution decoder blocks and the output
layers and freezes the rest (``requires_grad=False``). Frozen layers stay in the graph:
the reward's gradient still flows *through* them to earlier sampler states of the
gradient window, so the gradient of the trainable weights is exact, the same as the
full-network gradient restricted to them. What is saved: weight gradients and optimizer
state of the frozen weights, and the activations autograd would keep where nothing
upstream needs a gradient (see :mod:`pirf.finetune.trajectory`).

The cheaper "stop-gradient" variant (detaching the features entering the top blocks) is
not offered: its gradient is biased across sampler steps and it diverged in every setting
tried on a prototype.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from pirf.errors import PirfError
from pirf.models.backbone import named_modules_under, parameters_under, user_network

TRAINABLE: tuple[str, ...] = ("all", "top")


def top_names(model: nn.Module, blocks: int | None = None) -> list[str]:
    """Module names (relative to ``model``) that ``top`` trains: ``model.top_module_names``
    (an :class:`~pirf.models.EDMDenoiser` or a backbone that names its top layers)."""
    method = getattr(model, "top_module_names", None)
    if method is None:
        raise PirfError(
            f"{type(model).__name__} does not name its top layers; list the modules to train"
        )
    return list(method(blocks))


def model_names(model: nn.Module, names: Sequence[str]) -> list[str]:
    """Module names given relative to the network the user wrote (names as in its
    ``named_modules()``, see :func:`pirf.models.backbone.user_network`) as names relative
    to ``model``; one PirfError naming every unknown name and listing the valid ones."""
    prefix, network = user_network(model)
    names = list(names)
    if not names:
        raise PirfError("name at least one module to train")
    named_modules_under(network, names)
    return [prefix + name if name else prefix.rstrip(".") for name in names]


def select_trainable(
    model: nn.Module,
    mode: str = "all",
    *,
    blocks: int | None = None,
    prefixes: Sequence[str] | None = None,
) -> list[tuple[str, nn.Parameter]]:
    """Mark the parameters fine-tuning trains (``requires_grad``) and freeze the rest.

    ``all``: every parameter. ``top``: the parameters under ``prefixes`` (module names
    relative to ``model``) if given, else under :func:`top_names` ``(model, blocks)``.
    Returns the trainable ``(name, parameter)`` pairs in ``named_parameters`` order.
    """
    if mode not in TRAINABLE:
        raise PirfError(f"unknown trainable set '{mode}'; use one of {', '.join(TRAINABLE)}")
    if mode == "all":
        chosen = list(model.named_parameters())
    else:
        names = list(prefixes) if prefixes is not None else top_names(model, blocks)
        chosen = parameters_under(model, names)
        if not chosen:
            raise PirfError(f"the modules {', '.join(names)} have no parameters to train")
    keep = {id(parameter) for _, parameter in chosen}
    for parameter in model.parameters():
        parameter.requires_grad_(id(parameter) in keep)
    return chosen


def trainable_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The ``(name, parameter)`` pairs of ``model`` that require grad."""
    return [(name, p) for name, p in model.named_parameters() if p.requires_grad]


__all__ = ["TRAINABLE", "model_names", "select_trainable", "top_names", "trainable_parameters"]
