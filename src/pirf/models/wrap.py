"""Any network as a pirf denoiser: :func:`wrap`.

A network written elsewhere rarely has pirf's backbone interface ``F(x, c_noise) ->
tensor``: its forward may return an object with ``.sample``, a tuple or a dict; its noise
input may be ``sigma`` itself, ``ln(sigma) / 4`` (EDM) or something else; and it may
already be a complete denoiser ``D(x, sigma)``. :func:`wrap` states these once::

    model = wrap(net, shape=(2, 32, 32), output="sample", noise_label="sigma",
                 top_modules=["head"], factory="my_package.nets:make_net",
                 config={"width": 64})

and returns an :class:`~pirf.models.EDMDenoiser` that samples, fine-tunes and saves like
pirf's own models. The wrapped network is called once with a batch of two small inputs
while wrapping, so a wrong interface fails there, with one line saying what came back and
which option fixes it, not deep inside sampling.

``factory`` and ``config`` record how to rebuild the network (``module:callable`` and JSON
keyword arguments); :func:`pirf.models.save_checkpoint` needs them, and loading imports
the factory only when allowed (``allow_import=True``, ``--allow-import``).
"""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from pirf.errors import PirfError, option
from pirf.models.backbone import build_backbone, check_architecture, named_modules_under
from pirf.models.edm import SIGMA_DATA, EDMDenoiser

KINDS = ("edm", "denoiser")
"""What the wrapped network computes: ``edm``, the raw network ``F`` of EDM's
preconditioning (pirf adds ``c_skip``, ``c_out``, ``c_in``); ``denoiser``, ``D(x, sigma)``
itself (the clean field)."""
NOISE_LABELS = ("edm", "sigma", "log_sigma")
"""Named maps from ``sigma`` to the network's noise input: ``ln(sigma) / 4`` (EDM's
``c_noise``), ``sigma``, ``ln(sigma)``. Any importable function ``f(sigma (B,)) -> (B,)``
works too."""
PROBE_SIGMAS = (0.5, 2.0)
"""Noise levels of the probe call that checks the interface while wrapping."""

OutputSpec = str | int | Callable[[Any], torch.Tensor] | None
NoiseLabel = str | Callable[[torch.Tensor], torch.Tensor]


def _named_label(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if name == "edm":
        return lambda sigma: sigma.log() / 4
    if name == "sigma":
        return lambda sigma: sigma
    return lambda sigma: sigma.log()


def _import_callable(target: str, what: str) -> Callable[..., Any]:
    """``module:name`` (``name`` may be dotted) -> the callable; one-line error otherwise."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise PirfError(f"{what} must be 'module:callable', got {target!r}")
    try:
        value: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            value = getattr(value, part)
    except (ImportError, AttributeError, ValueError) as error:
        raise PirfError(f"cannot import {what} '{target}': {error}") from None
    if not callable(value):
        raise PirfError(f"{what} '{target}' is not callable")
    return value


def importable_name(function: Any) -> str | None:
    """``module:qualname`` of a module-level function or class, or None (a lambda, a
    closure, a bound method, an instance)."""
    module = getattr(function, "__module__", None)
    qualname = getattr(function, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or "<" in qualname:
        return None
    if module == "__main__":
        return None
    return f"{module}:{qualname}"


def _describe(value: Any) -> str:
    """A short description of what a forward returned, for error messages."""
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    if isinstance(value, Mapping):
        return f"a {type(value).__name__} with keys {list(value)[:8]}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} items"
    return f"a {type(value).__name__}"


def _suggest(value: Any, shape: tuple[int, ...]) -> str:
    """The ``output=`` option that would pick a tensor of ``shape`` out of ``value``."""

    def fits(item: Any) -> bool:
        return isinstance(item, torch.Tensor) and tuple(item.shape) == shape

    if isinstance(value, Mapping):
        keys = [k for k, v in value.items() if fits(v)]
        if keys:
            return f"pass output={keys[0]!r}"
    elif isinstance(value, (tuple, list)):
        indices = [i for i, v in enumerate(value) if fits(v)]
        if indices:
            return f"pass output={indices[0]}"
    elif not isinstance(value, torch.Tensor):
        names = [n for n, v in vars(value).items() if fits(v)] if hasattr(value, "__dict__") else []
        if not names and fits(getattr(value, "sample", None)):
            names = ["sample"]
        if names:
            return f"pass output={names[0]!r}"
    return (
        "pass output= (an attribute or key name, a tuple index, or a function) that picks "
        f"a tensor of shape {shape}"
    )


def extract(value: Any, output: OutputSpec) -> Any:
    """The tensor ``output`` names in what a forward returned (see :func:`wrap`)."""
    if output is None:
        return value
    if callable(output):
        return output(value)
    if isinstance(output, int):
        return value[output]
    if isinstance(value, Mapping):
        return value[output]
    return getattr(value, output)


class ExternalNetwork(nn.Module):
    """A backbone around a network written elsewhere: how to call it, what to take from
    its result (``output``) and which of its modules are the top (``top_modules``).

    Subclasses say how ``(x, sigma)`` becomes the network's inputs
    (:meth:`network_inputs`) and what :meth:`forward` makes of its output.
    """

    network_attribute = "network"
    """``pirf.models.backbone.user_network`` descends into :attr:`network`."""

    def __init__(
        self,
        network: nn.Module,
        *,
        output: OutputSpec = None,
        top_modules: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(network, nn.Module):
            raise PirfError(f"wrap expects a torch.nn.Module, got {type(network).__name__}")
        if output is not None and not (callable(output) or isinstance(output, (str, int))):
            raise PirfError("output must be a name, a tuple index, a function or None")
        self.network = network
        self.output = output
        self.top_modules = None if top_modules is None else list(top_modules)
        if self.top_modules is not None:
            if not self.top_modules:
                raise PirfError("top_modules must name at least one module")
            named_modules_under(network, self.top_modules)

    def network_inputs(self, x: torch.Tensor, sigma: torch.Tensor) -> tuple[Any, ...]:
        """The positional arguments of the network for noisy ``x`` at ``sigma`` ``(B,)``."""
        raise NotImplementedError

    def call(self, x: torch.Tensor, sigma: torch.Tensor, **conditioning: Any) -> torch.Tensor:
        """The tensor ``output`` picks from the network's result."""
        return extract(self.network(*self.network_inputs(x, sigma), **conditioning), self.output)

    def top_module_names(self, blocks: int | None = None) -> list[str]:
        """``network.NAME`` for each declared top module (``blocks`` does not apply), or the
        wrapped network's own choice if it names its top layers."""
        if self.top_modules is not None:
            return [f"network.{name}" for name in self.top_modules]
        method = getattr(self.network, "top_module_names", None)
        if method is None:
            raise PirfError(
                f"{type(self.network).__name__} does not name its top layers; wrap it with "
                "top_modules=[...] or list them (top_prefixes, --top-modules)"
            )
        return [f"network.{name}" for name in method(blocks)]


class WrappedNetwork(ExternalNetwork):
    """The backbone :func:`wrap` builds. ``kind="edm"``: ``forward(c_in x, sigma)`` returns
    the raw ``F`` of EDM's preconditioning; ``kind="denoiser"``: ``forward(x, sigma)``
    returns ``D`` itself. Either way the network receives ``noise_label(sigma)``."""

    def __init__(
        self,
        network: nn.Module,
        *,
        kind: str = "edm",
        output: OutputSpec = None,
        noise_label: NoiseLabel = "edm",
        top_modules: Sequence[str] | None = None,
    ) -> None:
        super().__init__(network, output=output, top_modules=top_modules)
        if kind not in KINDS:
            raise PirfError(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
        if isinstance(noise_label, str):
            if noise_label not in NOISE_LABELS:
                raise PirfError(
                    f"unknown noise_label {noise_label!r}; use one of {', '.join(NOISE_LABELS)} "
                    "or a function of sigma"
                )
            self._label = _named_label(noise_label)
        elif callable(noise_label):
            self._label = noise_label
        else:
            raise PirfError("noise_label must be a name or a function of sigma")
        self.kind = kind
        self.noise_label = noise_label

    @property
    def denoiser_interface(self) -> str:
        """``edm_sigma`` (EDM preconditioning, sigma handed over) or ``denoiser``."""
        return "denoiser" if self.kind == "denoiser" else "edm_sigma"

    def network_inputs(self, x: torch.Tensor, sigma: torch.Tensor) -> tuple[Any, ...]:
        return (x, self._label(sigma))

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, **conditioning: Any) -> torch.Tensor:
        return self.call(x, sigma, **conditioning)


def probe(model: EDMDenoiser, shape: Sequence[int]) -> None:
    """Call the network inside ``model`` (an :class:`ExternalNetwork` backbone) once on two
    fields of ``shape`` ``(C, H, W)`` and check that ``output`` picks a float tensor of the
    input's shape from its result; one-line PirfError saying what came back otherwise."""
    backbone = model.backbone
    parameter = next(iter(model.parameters()), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    floating = parameter is not None and parameter.is_floating_point()
    dtype = parameter.dtype if floating else torch.float32
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise PirfError(f"shape must be (C, H, W) of positive sizes, got {shape}")
    if device.type == "meta":
        return
    batch = (len(PROBE_SIGMAS), *shape)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        x = torch.randn(batch, dtype=torch.float64).to(device=device, dtype=dtype)
    sigma = torch.tensor(PROBE_SIGMAS, device=device, dtype=dtype)
    name = type(backbone.network).__name__
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            raw = backbone.network(*backbone.network_inputs(x, sigma))
            try:
                value = extract(raw, backbone.output)
            except (AttributeError, KeyError, IndexError, TypeError) as error:
                raise PirfError(
                    f"output={backbone.output!r} does not fit what {name} returned "
                    f"({_describe(raw)}): {type(error).__name__} {error}; {_suggest(raw, batch)}"
                ) from None
    except PirfError:
        raise
    except Exception as error:
        first = str(error).splitlines()[0] if str(error) else ""
        raise PirfError(
            f"calling the wrapped {name} on input {batch} failed: {type(error).__name__} {first}"
        ) from None
    finally:
        model.train(was_training)
    if not isinstance(value, torch.Tensor) or tuple(value.shape) != batch:
        fix = (
            _suggest(raw, batch)
            if backbone.output is None
            else f"pass an output= that picks a tensor of shape {batch}"
        )
        raise PirfError(
            f"the wrapped {name} returned {_describe(value)} for input {batch}; a denoiser "
            f"needs a tensor of the input's shape: {fix}"
        )
    if not value.is_floating_point():
        raise PirfError(f"the wrapped {name} returned a {value.dtype} tensor; need floating point")


def record_option(value: Any, what: str) -> Any:
    """A wrap option as JSON: names and indices as they are, functions as ``module:name``."""
    if value is None or isinstance(value, (str, int)):
        return value
    name = importable_name(value)
    if name is None:
        raise PirfError(
            f"cannot record {what}={value!r} in a checkpoint: give a module-level function "
            "(importable as module:name) or a name"
        )
    return {"function": name}


def restore_option(value: Any, what: str, allow_import: bool) -> Any:
    if isinstance(value, Mapping) and set(value) == {"function"}:
        if not allow_import:
            raise PirfError(
                f"the checkpoint's {what} is the function '{value['function']}'; importing it "
                f"runs code outside pirf: pass {option('allow_import', True)} if you trust it"
            )
        return _import_callable(str(value["function"]), what)
    return value


def wrapped_architecture(backbone: WrappedNetwork, network: Mapping[str, Any]) -> dict:
    """The architecture JSON of a wrapped network: ``network`` (how to rebuild the user's
    network) and the wrap options. PirfError when an option cannot be recorded."""
    return {
        "backbone": "wrapped",
        "config": {
            "network": network,
            "kind": backbone.kind,
            "output": record_option(backbone.output, "output"),
            "noise_label": record_option(backbone.noise_label, "noise_label"),
            "top_modules": backbone.top_modules,
        },
    }


def build_wrapped(config: Mapping[str, Any], *, allow_import: bool = False) -> WrappedNetwork:
    """Rebuild a :class:`WrappedNetwork` from its architecture's ``config`` (the factory
    ``pirf.models.build_backbone`` uses for ``"backbone": "wrapped"``)."""
    known = {"network", "kind", "output", "noise_label", "top_modules"}
    if not isinstance(config, Mapping) or set(config) - known or config.get("network") is None:
        raise PirfError(
            "a wrapped architecture's config must hold 'network' (an architecture) and only "
            f"{', '.join(sorted(known - {'network'}))}"
        )
    network = build_backbone(check_architecture(config["network"]), allow_import=allow_import)
    return WrappedNetwork(
        network,
        kind=config.get("kind", "edm"),
        output=restore_option(config.get("output"), "output", allow_import),
        noise_label=restore_option(config.get("noise_label", "edm"), "noise_label", allow_import),
        top_modules=config.get("top_modules"),
    )


def network_spec(
    network: nn.Module, factory: str | Callable[..., nn.Module] | None, config: Any
) -> dict[str, Any] | None:
    """How to rebuild the user's network: ``{"backbone": factory, "config": config}``, the
    network's own ``architecture()``, or None (saving will then refuse)."""
    if factory is None:
        if config is not None:
            raise PirfError("config= needs factory= (the callable it is passed to)")
        describe = getattr(network, "architecture", None)
        return check_architecture(describe()) if callable(describe) else None
    if not isinstance(factory, str):
        name = importable_name(factory)
        if name is None:
            raise PirfError(
                "factory must be 'module:callable' or a module-level function or class; "
                f"got {factory!r}"
            )
        factory = name
    try:
        kwargs = json.loads(json.dumps(dict(config or {}), allow_nan=False))
    except (TypeError, ValueError) as error:
        raise PirfError(f"config must be JSON keyword arguments of the factory: {error}") from None
    return check_architecture({"backbone": factory, "config": kwargs})


def wrap(
    network: nn.Module,
    *,
    shape: Sequence[int],
    kind: str = "edm",
    output: OutputSpec = None,
    noise_label: NoiseLabel | None = None,
    top_modules: Sequence[str] | None = None,
    factory: str | Callable[..., nn.Module] | None = None,
    config: Mapping[str, Any] | None = None,
    sigma_data: float = SIGMA_DATA,
    bf16: bool = True,
) -> EDMDenoiser:
    """``network`` as a pirf denoiser ``D(x, sigma)`` (an :class:`EDMDenoiser`).

    - ``shape``: ``(C, H, W)`` of one field; the network is probed on two such fields now.
    - ``kind``: ``"edm"`` if ``network`` is the raw network ``F`` of EDM's preconditioning
      (``D = c_skip x + c_out F(c_in x, label)``), ``"denoiser"`` if it returns the clean
      field ``D(x, sigma)`` itself. (Epsilon-prediction models: :mod:`pirf.models.vp`.)
    - ``output``: what to take from the forward's result: ``None`` (it is the tensor), an
      attribute or key name (``"sample"``), a tuple index, or a function.
    - ``noise_label``: the network's noise input as a function of ``sigma``: ``"edm"``
      (``ln(sigma)/4``, the default for ``kind="edm"``), ``"sigma"`` (the default for
      ``kind="denoiser"``), ``"log_sigma"``, or a function ``f(sigma) -> (B,)``.
    - ``top_modules``: names in ``network.named_modules()`` that ``trainable="top"`` trains.
    - ``factory``, ``config``: ``"module:callable"`` (or the callable) and JSON keyword
      arguments that rebuild ``network``; needed to save a checkpoint. A name is recorded
      as given and imported only when the checkpoint is loaded (with ``allow_import``).
      Without them a network with an ``architecture()`` method describes itself.
    """
    label = noise_label if noise_label is not None else ("sigma" if kind == "denoiser" else "edm")
    backbone = WrappedNetwork(
        network, kind=kind, output=output, noise_label=label, top_modules=top_modules
    )
    if not (isinstance(sigma_data, (int, float)) and math.isfinite(sigma_data)):
        raise PirfError(f"sigma_data must be a positive number, got {sigma_data!r}")
    spec = network_spec(network, factory, config)
    return described_denoiser(
        backbone,
        shape,
        describe=None if spec is None else (lambda: wrapped_architecture(backbone, spec)),
        problem=f"pirf cannot rebuild {type(network).__name__}: wrap it with "
        "factory='module:callable' and config={...} (JSON keyword arguments of the factory)",
        sigma_data=sigma_data,
        bf16=bf16,
    )


def described_denoiser(
    backbone: nn.Module,
    shape: Sequence[int],
    *,
    describe: Callable[[], dict[str, Any]] | None,
    problem: str,
    sigma_data: float = SIGMA_DATA,
    bf16: bool = True,
) -> EDMDenoiser:
    """The denoiser around an external ``backbone``, probed on ``shape``, with the
    architecture ``describe()`` records for checkpoints. Without one, or when it raises,
    ``rebuild_problem`` says why :func:`pirf.models.save_checkpoint` cannot record the
    model (``problem``, or the error); shared by :func:`wrap` and the epsilon models."""
    model = EDMDenoiser(backbone, sigma_data, bf16=bf16)
    model.rebuild_problem = problem
    if describe is not None:
        try:
            model.architecture = describe()
            model.rebuild_problem = None
        except PirfError as error:
            model.rebuild_problem = str(error)
    probe(model, shape)
    return model


__all__ = [
    "KINDS",
    "NOISE_LABELS",
    "ExternalNetwork",
    "WrappedNetwork",
    "build_wrapped",
    "described_denoiser",
    "extract",
    "importable_name",
    "network_spec",
    "probe",
    "record_option",
    "restore_option",
    "wrap",
    "wrapped_architecture",
]
