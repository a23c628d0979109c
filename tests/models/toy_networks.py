"""Small networks written "elsewhere" (not with pirf's backbone interface), importable as
``tests.models.toy_networks:NAME`` so that checkpoints can record their factories."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


class TupleNet(nn.Module):
    """An EDM raw network ``F`` that returns ``(F, aux)`` and takes its noise label as an
    extra input channel; records the last labels it received."""

    def __init__(self, channels: int = 2, width: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels + 1, width, 3, padding=1), nn.SiLU())
        self.head = nn.Conv2d(width, channels, 3, padding=1)
        self.last_labels: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.last_labels = labels.detach().clone()
        level = labels.reshape(-1, 1, 1, 1).expand(-1, 1, *x.shape[-2:]).to(x.dtype)
        out = self.head(self.body(torch.cat([x, level], 1)))
        return out, out.mean()


@dataclass
class Output:
    """What a diffusers-style forward returns."""

    sample: torch.Tensor


class SampleNet(TupleNet):
    """The same network returning an object with ``.sample``."""

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> Output:  # type: ignore[override]
        return Output(super().forward(x, labels)[0])


class DictNet(TupleNet):
    """The same network returning ``{"denoised": ...}``."""

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return {"denoised": super().forward(x, labels)[0]}


class PlainDenoiser(nn.Module):
    """A complete denoiser ``D(x, sigma)`` with its own preconditioning."""

    def __init__(self, channels: int = 2, width: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels + 1, width, 3, padding=1), nn.SiLU())
        self.head = nn.Conv2d(width, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        s = sigma.reshape(-1, 1, 1, 1).to(x.dtype)
        level = torch.log(s).expand(-1, 1, *x.shape[-2:]) / 4
        inner = self.head(self.body(torch.cat([x / (s**2 + 0.25).sqrt(), level], 1)))
        return 0.25 / (s**2 + 0.25) * x + 0.5 * s / (s**2 + 0.25).sqrt() * inner


def first_item(value: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """An importable output function: the first item of a tuple."""
    return value[0]


def half_log_sigma(sigma: torch.Tensor) -> torch.Tensor:
    """An importable noise label: ln(sigma) / 2."""
    return sigma.log() / 2


def linear_alphas_cumprod(steps: int = 1000) -> torch.Tensor:
    """DDPM's linear beta schedule (1e-4 to 0.02) as alphas_cumprod, float64."""
    betas = torch.linspace(1e-4, 0.02, steps, dtype=torch.float64)
    return torch.cumprod(1 - betas, dim=0)


class GaussianEpsilon(nn.Module):
    """The exact epsilon predictor of data ``N(0, s^2)`` under DDPM's linear schedule:
    ``x_t = a y + b n`` gives ``E[n | x_t] = b / (a^2 s^2 + b^2) x_t`` with ``a =
    sqrt(acp_t)``, ``b = sqrt(1 - acp_t)``. Integer timesteps read ``acp_t`` from the table;
    fractional ones interpolate ``ln(sigma_t)`` linearly between neighbours."""

    def __init__(self, s: float = 0.3, steps: int = 1000) -> None:
        super().__init__()
        self.s = s
        self.acp = linear_alphas_cumprod(steps)
        self.unused = nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if t.dtype == torch.int64:
            acp = self.acp[t]
        else:
            log_sigma = (((1 - self.acp) / self.acp).sqrt()).log()
            low = t.floor().long().clamp(max=len(self.acp) - 2)
            frac = t.to(torch.float64) - low
            sigma = (log_sigma[low] * (1 - frac) + log_sigma[low + 1] * frac).exp()
            acp = 1 / (1 + sigma**2)
        a, b = acp.sqrt().reshape(-1, 1, 1, 1), (1 - acp).sqrt().reshape(-1, 1, 1, 1)
        return (b / (a**2 * self.s**2 + b**2)).to(x_t.dtype) * x_t + 0 * self.unused
