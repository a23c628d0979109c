"""Building blocks of the U-Net: padded convolutions, resampling, noise embedding, blocks.

Every spatial operation knows which axes of the field are periodic. A periodic axis is
padded circularly, so features wrap around exactly as the physical field does (Kolmogorov
flow on a torus, Burgers' periodic ``x``); other axes are zero-padded. Resampling uses the
2 x 2 box filter of DDPM++ (average pooling down, nearest-neighbour up), which needs no
padding at all, so the down/up path is correct for either kind of axis by construction.

All layers are written for GPU training: no ``.view`` on tensors that may be
non-contiguous (``channels_last``), no data-dependent Python control flow in ``forward``
(``torch.compile``), and group normalisation that autocast runs in float32.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

Periodic = tuple[bool, bool]
"""Periodicity of the two spatial axes ``(H, W)`` = dims ``(-2, -1)``."""

SKIP_SCALE = 1.0 / math.sqrt(2.0)
"""Scale of a residual sum ``(branch + skip)``: keeps the variance of unit-variance
inputs at one, as in DDPM++."""


def xavier_uniform_(weight: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """In-place Xavier-uniform initialisation, multiplied by ``scale``.

    ``scale`` well below one makes a layer start near zero (the last layer of a residual
    branch, the output layer), so that an untrained network is close to the identity map
    of its skips and the preconditioned denoiser starts near ``c_skip x``.
    """
    return nn.init.xavier_uniform_(weight, gain=scale)


def periodic_pad(x: torch.Tensor, pad: int, periodic: Periodic) -> torch.Tensor:
    """Pad the periodic axes of ``x`` ``(B, C, H, W)`` circularly by ``pad`` on each side.

    Non-periodic axes are left alone (the convolution zero-pads them).
    """
    pad_h = pad if periodic[0] else 0
    pad_w = pad if periodic[1] else 0
    if pad_h == 0 and pad_w == 0:
        return x
    return F.pad(x, (pad_w, pad_w, pad_h, pad_h), mode="circular")


Harmonic = tuple[int, int]
"""``(axis, wavenumber)``: the position harmonic ``cos, sin(2 pi k i / n)`` along spatial axis
``axis`` (0: dim -2, 1: dim -1) with ``k`` cycles per field (see :func:`position_features`)."""


def position_features(
    harmonics: tuple[Harmonic, ...],
    shape: tuple[int, int],
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Fixed position channels ``(2 m, H, W)``: ``cos`` and ``sin`` of ``2 pi k i / n`` for
    each of the ``m`` harmonics ``(axis, k)``, constant along the other axis.

    Why: a convolutional network with circular padding is equivariant under shifts by
    multiples of its total stride, so it cannot tell a field from its shifted copy. Where
    the PDE is not translation-invariant (Kolmogorov's forcing ``cos(4 y)``), that symmetry
    is wrong: on the 32^2 grid a shift by 4 cells flips the forcing's sign, and a model
    with 4x down-sampling put half of its samples at that wrong phase. These channels break
    exactly the missing symmetry and keep the PDE's own (shifts by a full period of the
    harmonic). Wavenumbers are in cycles per field, so the features follow the resolution.
    """
    channels = []
    for axis, wavenumber in harmonics:
        n = shape[axis]
        phase = (2.0 * math.pi * wavenumber / n) * torch.arange(n, dtype=torch.float64)
        for values in (torch.cos(phase), torch.sin(phase)):
            line = values.to(dtype=dtype, device=device)
            channels.append(
                line[:, None].expand(shape) if axis == 0 else line[None, :].expand(shape)
            )
    if not channels:
        return torch.zeros((0, *shape), dtype=dtype, device=device)
    return torch.stack(channels)


class Conv2d(nn.Module):
    """A square convolution with "same" padding: circular on periodic axes, zeros elsewhere.

    Odd kernel sizes only, so that the output grid coincides with the input grid.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        *,
        periodic: Periodic = (False, False),
        init_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if kernel % 2 != 1:
            raise ValueError(f"kernel size must be odd, got {kernel}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel = kernel
        self.periodic: Periodic = (bool(periodic[0]), bool(periodic[1]))
        half = kernel // 2
        self.circular_pad = half if any(self.periodic) else 0
        # The convolution itself zero-pads exactly the axes that are not periodic.
        self.zero_pad = (0 if self.periodic[0] else half, 0 if self.periodic[1] else half)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        xavier_uniform_(self.weight, init_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.circular_pad:
            x = periodic_pad(x, self.circular_pad, self.periodic)
        return F.conv2d(x, self.weight, self.bias, padding=self.zero_pad)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel={self.kernel}, "
            f"periodic={self.periodic}"
        )


class Linear(nn.Linear):
    """``nn.Linear`` with Xavier-uniform weights (times ``init_scale``) and zero bias."""

    def __init__(self, in_features: int, out_features: int, *, init_scale: float = 1.0) -> None:
        super().__init__(in_features, out_features)
        xavier_uniform_(self.weight, init_scale)
        nn.init.zeros_(self.bias)


def group_norm(channels: int, eps: float = 1e-6) -> nn.GroupNorm:
    """Group normalisation with up to 32 groups of at least 4 channels each (DDPM++)."""
    groups = max(1, min(32, channels // 4))
    while channels % groups:
        groups -= 1
    return nn.GroupNorm(groups, channels, eps=eps)


def downsample(x: torch.Tensor) -> torch.Tensor:
    """Halve both spatial sizes with a 2 x 2 box filter (no padding, any boundary)."""
    return F.avg_pool2d(x, kernel_size=2)


def upsample(x: torch.Tensor) -> torch.Tensor:
    """Double both spatial sizes by nearest-neighbour repetition (the box filter's adjoint
    up to a factor 4)."""
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


class NoiseEmbedding(nn.Module):
    """Noise label ``c_noise`` ``(B,)`` -> embedding vector ``(B, emb_channels)``.

    A bank of sinusoids of the label (``positional``: geometric frequencies from 1 down to
    1/10000, as in DDPM++; ``fourier``: fixed random frequencies, as in NCSN++) followed by
    a two-layer SiLU MLP.
    """

    def __init__(self, channels: int, emb_channels: int, kind: str = "positional") -> None:
        super().__init__()
        if channels % 2 or channels < 4:
            raise ValueError(f"noise embedding needs an even channel count >= 4, got {channels}")
        half = channels // 2
        if kind == "positional":
            frequencies = (1.0 / 10000.0) ** (torch.arange(half, dtype=torch.float64) / (half - 1))
        elif kind == "fourier":
            generator = torch.Generator().manual_seed(0)
            frequencies = 2 * math.pi * 16.0 * torch.randn(half, generator=generator)
        else:
            raise ValueError(f"unknown noise embedding {kind!r}; use 'positional' or 'fourier'")
        # Deterministic from the configuration, so not part of the saved weights.
        self.register_buffer("frequencies", frequencies.float(), persistent=False)
        self.layer0 = Linear(channels, emb_channels)
        self.layer1 = Linear(emb_channels, emb_channels)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        phases = labels.to(self.frequencies.dtype).reshape(-1, 1) * self.frequencies.reshape(1, -1)
        features = torch.cat([phases.cos(), phases.sin()], dim=1)
        return F.silu(self.layer1(F.silu(self.layer0(features))))


class SelfAttention(nn.Module):
    """Multi-head self-attention over all pixels, as a residual branch's extra stage.

    Attention is permutation-equivariant over pixels, so it is compatible with circular
    shifts of a periodic field and needs no padding.
    """

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"{channels} channels cannot be split into {heads} heads")
        self.heads = heads
        self.norm = group_norm(channels)
        self.qkv = Conv2d(channels, 3 * channels, 1, init_scale=math.sqrt(0.2))
        self.proj = Conv2d(channels, channels, 1, init_scale=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        qkv = self.qkv(self.norm(x)).reshape(
            batch, 3, self.heads, channels // self.heads, height * width
        )
        # (B, heads, pixels, head_dim) each; reshape copies if x is channels_last.
        q, k, v = (t.transpose(-1, -2) for t in qkv.unbind(1))
        attended = F.scaled_dot_product_attention(q, k, v)
        attended = attended.transpose(-1, -2).reshape(batch, channels, height, width)
        return self.proj(attended)


class ResBlock(nn.Module):
    """A DDPM++ residual block conditioned on the noise embedding.

    ``GroupNorm -> SiLU -> [resample] -> conv3x3 -> + embedding -> GroupNorm -> SiLU ->
    dropout -> conv3x3 (near-zero init)``, added to the (resampled, 1x1-projected where the
    shape changes) input and scaled by 1/sqrt(2); optionally followed by self-attention,
    added and scaled the same way. The embedding enters either additively (DDPM++) or as an
    adaptive scale and shift of the second normalisation (``adaptive_scale``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        emb_channels: int,
        *,
        resample: str = "none",
        attention: bool = False,
        heads: int = 1,
        dropout: float = 0.0,
        adaptive_scale: bool = False,
        periodic: Periodic = (False, False),
        takes_skip: bool = False,
    ) -> None:
        super().__init__()
        if resample not in ("none", "down", "up"):
            raise ValueError(f"resample must be 'none', 'down' or 'up', got {resample!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.resample = resample
        self.adaptive_scale = adaptive_scale
        self.takes_skip = takes_skip
        """Whether the U-Net concatenates an encoder skip to this block's input."""
        self.norm0 = group_norm(in_channels)
        self.conv0 = Conv2d(in_channels, out_channels, 3, periodic=periodic)
        self.emb = Linear(emb_channels, out_channels * (2 if adaptive_scale else 1))
        self.norm1 = group_norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv1 = Conv2d(out_channels, out_channels, 3, periodic=periodic, init_scale=1e-5)
        self.skip = (
            Conv2d(in_channels, out_channels, 1)
            if in_channels != out_channels or resample != "none"
            else None
        )
        self.attention = SelfAttention(out_channels, heads) if attention else None

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.resample == "down":
            return downsample(x)
        if self.resample == "up":
            return upsample(x)
        return x

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv0(self._resample(F.silu(self.norm0(x))))
        params = self.emb(emb).unsqueeze(-1).unsqueeze(-1)
        if self.adaptive_scale:
            scale, shift = params.chunk(2, dim=1)
            h = F.silu(torch.addcmul(shift, self.norm1(h), scale + 1))
        else:
            h = F.silu(self.norm1(h + params))
        h = self.conv1(self.dropout(h))
        skip = self._resample(x)
        if self.skip is not None:
            skip = self.skip(skip)
        x = (h + skip) * SKIP_SCALE
        if self.attention is not None:
            x = (x + self.attention(x)) * SKIP_SCALE
        return x
