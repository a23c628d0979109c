"""The backbone interface, the architecture registry and module selection by name.

A backbone is any ``nn.Module`` whose ``forward(x, noise_labels)`` maps a batch of noisy,
scaled fields ``(B, C, H, W)`` and noise labels ``(B,)`` to ``(B, C, H, W)``; the EDM
preconditioning (``pirf.models.edm``) turns it into a denoiser.

An *architecture* is the JSON that rebuilds a backbone with no other input::

    {"backbone": "unet", "config": {...keyword arguments of the factory...}}

``backbone`` is a registered name (built in: ``unet``; added by ``register_backbone`` or by an
installed package's entry point in group ``pirf.backbones``) or ``"module:factory"``. The
last form imports and calls code named by a file, so it is refused unless the caller passes
``allow_import=True``: loading a checkpoint someone sent you must not run their code.

Layer-wise truncated fine-tuning trains a named subset of the network. A backbone can name
its own (``top_module_names(blocks)``, as :class:`pirf.models.unet.UNet` does); for any
other backbone the user lists module-name prefixes.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from importlib.metadata import entry_points
from typing import Any

from torch import nn

from pirf.errors import PirfError, option

BackboneFactory = Callable[..., nn.Module]
"""``factory(**config) -> nn.Module``."""

_BUILTINS: dict[str, str] = {
    "unet": "pirf.models.unet:unet_from_config",
    "diffusers_unet2d": "pirf.models.diffusers_unet:unet2d_from_config",
}
_NESTED: dict[str, str] = {
    "wrapped": "pirf.models.wrap:build_wrapped",
    "epsilon": "pirf.models.vp:build_epsilon",
}
"""Built-in backbones around another architecture (``wrap``, epsilon conversion): called as
``factory(config, allow_import=...)`` so that the inner network obeys the same rule."""
_REGISTRY: dict[str, BackboneFactory] = {}
_ENTRY_POINT_GROUP = "pirf.backbones"


def register_backbone(name: str, factory: BackboneFactory, *, replace: bool = False) -> None:
    """Make ``{"backbone": name, "config": kwargs}`` build ``factory(**kwargs)``."""
    if not name or ":" in name:
        raise PirfError(f"backbone name must be non-empty and contain no ':', got {name!r}")
    if not callable(factory):
        raise PirfError(f"backbone factory for '{name}' is not callable")
    if (name in _REGISTRY or name in _BUILTINS or name in _NESTED) and not replace:
        raise PirfError(f"a backbone named '{name}' is already registered; pass replace=True")
    _REGISTRY[name] = factory


def _import(target: str) -> BackboneFactory:
    module_name, _, attribute = target.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as error:
        raise PirfError(f"cannot import backbone factory '{target}': {error}") from None
    if not callable(factory):
        raise PirfError(f"backbone factory '{target}' is not callable")
    return factory


def backbone_names() -> list[str]:
    """Registered backbone names (built in, registered in Python, from entry points)."""
    installed = {ep.name for ep in entry_points(group=_ENTRY_POINT_GROUP)}
    return sorted(set(_BUILTINS) | set(_NESTED) | set(_REGISTRY) | installed)


def _factory(name: str, allow_import: bool) -> BackboneFactory:
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in _BUILTINS:
        return _import(_BUILTINS[name])
    installed = {ep.name: ep for ep in entry_points(group=_ENTRY_POINT_GROUP)}
    if name in installed:
        return installed[name].load()
    if ":" in name:
        if not allow_import:
            raise PirfError(
                f"architecture names the importable factory '{name}'; loading it would run "
                "code outside pirf: register it with pirf.models.register_backbone, or pass "
                f"{option('allow_import', True)} if you trust its source"
            )
        return _import(name)
    raise PirfError(f"unknown backbone '{name}'; known: {', '.join(backbone_names())}")


def check_architecture(architecture: Any) -> dict[str, Any]:
    """Validate the shape of an architecture object; return it as a plain dict."""
    if (
        not isinstance(architecture, Mapping)
        or not isinstance(architecture.get("backbone"), str)
        or not isinstance(architecture.get("config", {}), Mapping)
        or set(architecture) - {"backbone", "config"}
    ):
        raise PirfError(
            'an architecture must be {"backbone": <name or module:factory>, "config": {...}}'
        )
    return {"backbone": architecture["backbone"], "config": dict(architecture.get("config", {}))}


def build_backbone(architecture: Mapping[str, Any], *, allow_import: bool = False) -> nn.Module:
    """Construct the backbone an architecture describes (see the module docstring)."""
    spec = check_architecture(architecture)
    if spec["backbone"] in _NESTED and spec["backbone"] not in _REGISTRY:
        backbone = _import(_NESTED[spec["backbone"]])(spec["config"], allow_import=allow_import)
        return backbone
    factory = _factory(spec["backbone"], allow_import)
    try:
        backbone = factory(**spec["config"])
    except PirfError:
        raise
    except TypeError as error:
        raise PirfError(
            f"backbone '{spec['backbone']}' rejected its configuration: {error}"
        ) from None
    if not isinstance(backbone, nn.Module):
        raise PirfError(f"backbone factory '{spec['backbone']}' did not return an nn.Module")
    return backbone


def top_module_names(backbone: nn.Module, blocks: int | None = None) -> list[str]:
    """The backbone's own choice of modules for layer-wise fine-tuning (see ``UNet``)."""
    method = getattr(backbone, "top_module_names", None)
    if method is None:
        raise PirfError(
            f"{type(backbone).__name__} does not name its top layers (no top_module_names "
            "method); list the module names to train explicitly"
        )
    names = list(method(blocks))
    named_modules_under(backbone, names)
    return names


NETWORK_ATTRIBUTE = "network_attribute"
"""Class attribute of a pirf wrapper naming the submodule that holds the network it wraps
(``EDMDenoiser``: ``backbone``; ``WrappedNetwork`` and the epsilon converters: ``network``)."""


def user_network(model: nn.Module) -> tuple[str, nn.Module]:
    """The network the user wrote inside pirf's wrappers, and its name prefix in ``model``.

    Module names given for layer-wise fine-tuning (``top_prefixes``, ``--top-modules``,
    ``wrap(top_modules=...)``) are relative to this network, i.e. names as in its own
    ``named_modules()``: ``("backbone.network.", net)`` for ``wrap(net)``, ``("backbone.",
    unet)`` for a pirf U-Net, ``("", model)`` for a plain ``D(x, sigma)`` module.
    """
    prefix = ""
    while isinstance(getattr(type(model), NETWORK_ATTRIBUTE, None), str):
        attribute = getattr(type(model), NETWORK_ATTRIBUTE)
        model = getattr(model, attribute)
        prefix += attribute + "."
    return prefix, model


def _valid_names(module: nn.Module, depth: int = 2, limit: int = 40) -> str:
    """Module names of ``module`` up to ``depth`` components, shortened to ``limit``."""
    names = [n for n, _ in module.named_modules() if n and n.count(".") < depth]
    shown = ", ".join(names[:limit])
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return (shown + more) or "none (it has no submodules)"


def named_modules_under(module: nn.Module, prefixes: Iterable[str]) -> dict[str, nn.Module]:
    """The submodules with the given qualified names; one PirfError naming every name that
    is missing and listing the valid ones (to two levels)."""
    modules = dict(module.named_modules())
    prefixes = list(prefixes)
    missing = [name for name in prefixes if name not in modules]
    if missing:
        raise PirfError(
            f"{type(module).__name__} has no module named {', '.join(map(repr, missing))}; "
            f"valid names: {_valid_names(module)}"
        )
    return {name: modules[name] for name in prefixes}


def parameters_under(module: nn.Module, prefixes: Iterable[str]) -> list[tuple[str, nn.Parameter]]:
    """Named parameters of ``module`` that lie in the submodules named by ``prefixes``.

    A parameter belongs to prefix ``p`` if its qualified name is ``p`` or starts with
    ``p + "."``. Each parameter appears once, in ``named_parameters`` order.
    """
    prefixes = list(prefixes)
    named_modules_under(module, prefixes)
    return [
        (name, parameter)
        for name, parameter in module.named_parameters()
        if any(name == p or name.startswith(p + ".") or p == "" for p in prefixes)
    ]


__all__ = [
    "BackboneFactory",
    "backbone_names",
    "build_backbone",
    "check_architecture",
    "named_modules_under",
    "parameters_under",
    "register_backbone",
    "top_module_names",
    "user_network",
]
