"""How the network is called during sampling: bf16 autocast for the early steps, float32 last.

bf16 rounding of the network output puts a floor under the PDE residual of the samples, so
the last sampler steps, which decide the fine structure, run in float32. :class:`Precision`
says which steps may use bf16; :class:`NetworkCall` calls a denoiser at one precision and
counts the calls. The sampler state never leaves float32 (or float64): only the network
runs in bf16, and its output is cast back before it enters the ODE update.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch

from pirf.errors import PirfError

Denoiser = Callable[..., torch.Tensor]
"""``D(x, sigma) -> x0 estimate``; ``x`` ``(B, C, H, W)``, ``sigma`` a ``(B,)`` tensor. A
conditional denoiser also takes keyword conditioning, ``D(x, sigma, condition=g)``."""


@dataclass(frozen=True)
class Precision:
    """Which sampler steps run the network under bf16 autocast.

    With ``bf16=True`` every step but the last ``fp32_steps`` runs the network under bf16
    autocast; the last ``fp32_steps`` run it in float32. With ``bf16=False`` every step
    runs in float32, whatever the model's own default or an autocast region around the
    caller. Autocast is entered on the state's device: on CUDA it is the fast path, on the
    CPU it works but is usually slower than float32.
    """

    bf16: bool = False
    fp32_steps: int = 2

    def __post_init__(self) -> None:
        if isinstance(self.fp32_steps, bool) or not isinstance(self.fp32_steps, int):
            raise PirfError(f"fp32_steps must be an integer, got {self.fp32_steps!r}")
        if self.fp32_steps < 0:
            raise PirfError(f"fp32_steps must be non-negative, got {self.fp32_steps}")

    def low_precision(self, step: int, steps: int) -> bool:
        """Whether sampler step ``step`` (0-based) of a ``steps``-step schedule runs in bf16."""
        return self.bf16 and step < steps - self.fp32_steps


FP32 = Precision(bf16=False)
"""Float32 throughout: the default of every sampler."""


def accepts_autocast_keyword(denoiser: Denoiser) -> bool:
    """Whether ``denoiser`` takes an ``autocast`` keyword (pirf's EDM denoiser does).

    Such denoisers manage autocast themselves around their backbone (keeping their
    preconditioning in float32), so they are told the step's precision explicitly.
    """
    target = getattr(denoiser, "_orig_mod", denoiser)  # a torch.compile'd module
    if isinstance(target, torch.nn.Module):
        target = target.forward
    try:
        parameters = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return False
    parameter = parameters.get("autocast")
    return parameter is not None and parameter.kind in (
        inspect.Parameter.KEYWORD_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    )


def autocast_region(device: torch.device, low_precision: bool) -> contextlib.AbstractContextManager:
    """A bf16 autocast region on ``device``, entered also when disabled.

    A disabled region switches off an autocast region the caller may be in, so float32
    steps really are float32.
    """
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=low_precision)
    if low_precision:
        raise PirfError(f"bf16 autocast is not available on device type '{device.type}'")
    return contextlib.nullcontext()


class NetworkCall:
    """A denoiser called at a settable precision, counting its calls.

    ``NetworkCall(D, low_precision)(x, sigma)`` evaluates ``D(x, sigma)`` under bf16
    autocast when ``low_precision`` is set and in float32 otherwise, and returns the result
    in ``x``'s dtype; keyword conditioning is passed on to ``D``. Drivers set
    :attr:`low_precision` before each step; :attr:`calls` counts network evaluations. It
    holds no tensors, so it is as safe inside an autograd graph (or gradient checkpointing)
    as the denoiser itself.
    """

    def __init__(self, denoiser: Denoiser, low_precision: bool = False) -> None:
        self.denoiser = denoiser
        self.low_precision = low_precision
        self.calls = 0
        self._keyword = accepts_autocast_keyword(denoiser)

    def __call__(
        self, x: torch.Tensor, sigma: torch.Tensor, **conditioning: torch.Tensor | None
    ) -> torch.Tensor:
        self.calls += 1
        keywords = {"autocast": self.low_precision} if self._keyword else {}
        with autocast_region(x.device, self.low_precision):
            out = self.denoiser(x, sigma, **keywords, **conditioning)
        return out.to(x.dtype)
