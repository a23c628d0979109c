"""Epsilon-prediction models of discrete variance-preserving diffusion as EDM denoisers.

A DDPM-style model predicts the noise ``eps(x_t, t)`` of ``x_t = sqrt(acp_t) y +
sqrt(1 - acp_t) n`` at integer timesteps ``t`` (``acp``: the scheduler's
``alphas_cumprod``). Dividing by ``sqrt(acp_t)`` gives EDM's ``x = y + sigma n`` with::

    sigma_t = sqrt((1 - acp_t) / acp_t)

so such a model is an EDM denoiser with (Karras et al. 2022, table 1, "VP")::

    x_vp = x / sqrt(1 + sigma^2)          the model's input scale
    t    = the timestep whose sigma_t is nearest to sigma (in ln sigma), or the
           fractional timestep interpolated linearly in ln sigma_t ("interpolate")
    D(x, sigma) = x - sigma eps(x_vp, t)

``D`` is also what a DDPM scheduler calls the "predicted original sample". Samplers should
stay inside ``[sigma_0, sigma_{T-1}]``; outside it the timestep is clamped to the ends.

:func:`epsilon_denoiser` converts any such network (a plain ``torch.nn.Module``);
:func:`pirf.models.from_diffusers` a ``diffusers`` ``UNet2DModel`` with its scheduler.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from pirf.errors import PirfError
from pirf.models.backbone import build_backbone, check_architecture
from pirf.models.edm import EDMDenoiser
from pirf.models.wrap import (
    ExternalNetwork,
    OutputSpec,
    described_denoiser,
    network_spec,
    record_option,
    restore_option,
)

TIMESTEPS = ("nearest", "interpolate")
"""How ``sigma`` becomes a timestep: the nearest discrete one, or a fractional one."""


def vp_sigmas(alphas_cumprod: torch.Tensor | Sequence[float]) -> torch.Tensor:
    """``sigma_t = sqrt((1 - acp_t) / acp_t)`` in float64, one per timestep."""
    acp = torch.as_tensor(alphas_cumprod, dtype=torch.float64, device="cpu").reshape(-1)
    if acp.numel() < 2 or not bool(((acp > 0) & (acp < 1)).all()):
        raise PirfError("alphas_cumprod must hold at least two values, each in (0, 1)")
    if not bool((acp[1:] < acp[:-1]).all()):
        raise PirfError("alphas_cumprod must decrease strictly with the timestep")
    return ((1 - acp) / acp).sqrt()


class EpsilonNetwork(ExternalNetwork):
    """The backbone of a converted epsilon-prediction network (see the module docstring):
    ``forward(x, sigma)`` returns ``D(x, sigma) = x - sigma eps(x / sqrt(1 + sigma^2), t)``.
    """

    denoiser_interface = "denoiser"
    """:class:`~pirf.models.EDMDenoiser` hands ``(x, sigma)`` over and applies nothing."""

    def __init__(
        self,
        network: nn.Module,
        alphas_cumprod: torch.Tensor | Sequence[float],
        *,
        timesteps: str = "nearest",
        output: OutputSpec = None,
        top_modules: Sequence[str] | None = None,
    ) -> None:
        super().__init__(network, output=output, top_modules=top_modules)
        if timesteps not in TIMESTEPS:
            raise PirfError(f"unknown timesteps {timesteps!r}; use one of {', '.join(TIMESTEPS)}")
        self.timesteps = timesteps
        # Plain float64 tensors, not buffers: neither in the state dict (the architecture
        # records the schedule) nor cast by ``.float()`` / ``.half()``.
        # On the CPU even under ``torch.device("meta")`` (checks build networks there).
        self.alphas_cumprod = torch.as_tensor(
            alphas_cumprod, dtype=torch.float64, device="cpu"
        ).reshape(-1)
        self.log_sigmas = vp_sigmas(self.alphas_cumprod).log()
        self._tables: dict[torch.device, torch.Tensor] = {}

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """The timesteps ``(B,)`` for noise levels ``sigma`` ``(B,)``: int64 (``nearest``)
        or float in ``[0, T - 1]`` (``interpolate``)."""
        table = self._tables.get(sigma.device)
        if table is None:
            table = self._tables[sigma.device] = self.log_sigmas.to(sigma.device)
        log_sigma = sigma.to(torch.float64).log().clamp(table[0], table[-1])
        if self.timesteps == "nearest":
            return (log_sigma[:, None] - table[None, :]).abs().argmin(dim=1)
        upper = torch.searchsorted(table, log_sigma).clamp(1, table.numel() - 1)
        low, high = table[upper - 1], table[upper]
        fraction = (log_sigma - low) / (high - low)
        return (upper - 1).to(torch.float64) + fraction

    def network_inputs(self, x: torch.Tensor, sigma: torch.Tensor) -> tuple[Any, ...]:
        scale = (1 + sigma.reshape(-1, 1, 1, 1) ** 2).rsqrt()
        t = self.timestep(sigma)
        return (x * scale, t if t.dtype == torch.int64 else t.to(x.dtype))

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, **conditioning: Any) -> torch.Tensor:
        eps = self.call(x, sigma, **conditioning)
        return x - sigma.reshape(-1, 1, 1, 1) * eps.to(x.dtype)


def build_epsilon(config: Mapping[str, Any], *, allow_import: bool = False) -> EpsilonNetwork:
    """Rebuild an :class:`EpsilonNetwork` from its architecture's ``config`` (what
    ``pirf.models.build_backbone`` calls for ``"backbone": "epsilon"``)."""
    known = {"network", "alphas_cumprod", "timesteps", "output", "top_modules"}
    if (
        not isinstance(config, Mapping)
        or set(config) - known
        or config.get("network") is None
        or not isinstance(config.get("alphas_cumprod"), list)
    ):
        raise PirfError(
            "an epsilon architecture's config must hold 'network' (an architecture), "
            "'alphas_cumprod' (a list) and only timesteps, output, top_modules"
        )
    network = build_backbone(check_architecture(config["network"]), allow_import=allow_import)
    return EpsilonNetwork(
        network,
        config["alphas_cumprod"],
        timesteps=config.get("timesteps", "nearest"),
        output=restore_option(config.get("output"), "output", allow_import),
        top_modules=config.get("top_modules"),
    )


def epsilon_architecture(backbone: EpsilonNetwork, network: Mapping[str, Any]) -> dict[str, Any]:
    """The architecture JSON of a converted epsilon network (``network`` rebuilds it)."""
    return {
        "backbone": "epsilon",
        "config": {
            "network": dict(network),
            "alphas_cumprod": backbone.alphas_cumprod.tolist(),
            "timesteps": backbone.timesteps,
            "output": record_option(backbone.output, "output"),
            "top_modules": backbone.top_modules,
        },
    }


def finish(
    backbone: EpsilonNetwork,
    spec: Mapping[str, Any] | None,
    shape: Sequence[int],
    *,
    bf16: bool,
    what: str,
) -> EDMDenoiser:
    """The denoiser around ``backbone``, its architecture (or why there is none) and the
    probe call (shared by :func:`epsilon_denoiser` and :func:`pirf.models.from_diffusers`)."""
    return described_denoiser(
        backbone,
        shape,
        describe=None if spec is None else (lambda: epsilon_architecture(backbone, spec)),
        problem=f"pirf cannot rebuild {what}: pass factory='module:callable' and "
        "config={...} (JSON keyword arguments of the factory)",
        bf16=bf16,
    )


def epsilon_denoiser(
    network: nn.Module,
    alphas_cumprod: torch.Tensor | Sequence[float],
    *,
    shape: Sequence[int],
    timesteps: str = "nearest",
    output: OutputSpec = None,
    top_modules: Sequence[str] | None = None,
    factory: str | Callable[..., nn.Module] | None = None,
    config: Mapping[str, Any] | None = None,
    bf16: bool = True,
) -> EDMDenoiser:
    """An epsilon-prediction ``network(x_t, t)`` of a discrete VP schedule as an EDM
    denoiser ``D(x, sigma)`` (see the module docstring).

    ``alphas_cumprod`` is the schedule's ``acp_t``, one per timestep; ``timesteps`` maps
    ``sigma`` to the nearest timestep or a fractional one. ``shape``, ``output``,
    ``top_modules``, ``factory`` and ``config`` mean what they mean for
    :func:`pirf.models.wrap`.
    """
    backbone = EpsilonNetwork(
        network, alphas_cumprod, timesteps=timesteps, output=output, top_modules=top_modules
    )
    spec = network_spec(network, factory, config)
    return finish(backbone, spec, shape, bf16=bf16, what=type(network).__name__)


__all__ = [
    "TIMESTEPS",
    "EpsilonNetwork",
    "build_epsilon",
    "epsilon_architecture",
    "epsilon_denoiser",
    "vp_sigmas",
]
