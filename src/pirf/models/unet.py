"""A compact U-Net of the DDPM++ family, with per-axis periodic padding.

Layout (``L`` levels, ``N`` blocks per level, level 0 = full resolution)::

    stem conv -> encoder: level 0: N blocks; level l > 0: down block + N blocks
              -> middle: 2 blocks at the coarsest level (the first with attention)
              -> decoder: level l < L-1: up block; every level: N + 1 blocks, each fed the
                 concatenation of the running features and one encoder skip
              -> output: GroupNorm -> SiLU -> conv3x3 (near-zero init)

Module names are stable and descriptive (``decoder.level0_block3``, ``out_conv``), because
layer-wise truncated fine-tuning selects the finest decoder blocks and the output layers by
name (:meth:`UNet.top_module_names`).

The network is fully convolutional: the same weights run at any resolution whose sides are
divisible by ``2 ** (L - 1)``. Attention is placed by level, so its position relative to
the image size follows the resolution the configuration was made for (see ``presets``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pirf.errors import PirfError
from pirf.models.layers import (
    Conv2d,
    Harmonic,
    NoiseEmbedding,
    Periodic,
    ResBlock,
    group_norm,
    position_features,
)


@dataclass(frozen=True)
class UNetConfig:
    """Everything that defines a :class:`UNet`; JSON round-trips through ``to_json``."""

    in_channels: int
    """Field channels of the data (the network maps them to as many outputs by default)."""
    out_channels: int | None = None
    """Output channels; ``None`` means ``in_channels``."""
    base_channels: int = 128
    """Width multiplied by ``channel_mult`` at every level; also the noise-feature width."""
    channel_mult: tuple[int, ...] = (2, 2, 2)
    """Width multiplier per level; its length is the number of levels."""
    blocks_per_level: int = 4
    """Residual blocks per encoder level (the decoder has one more per level)."""
    attention_levels: tuple[int, ...] = ()
    """Levels (0 = finest) whose blocks get self-attention: every encoder block there and
    the last decoder block there, as in DDPM++."""
    mid_attention: bool = True
    """Self-attention in the first middle block (DDPM++ always has it)."""
    attention_heads: int = 1
    dropout: float = 0.1
    embedding: str = "positional"
    """Noise-label features: ``positional`` (DDPM++) or ``fourier`` (NCSN++)."""
    emb_mult: int = 4
    """Embedding width is ``emb_mult * base_channels``."""
    adaptive_scale: bool = False
    """Noise embedding as scale and shift of a normalisation (True) or added (DDPM++)."""
    periodic: tuple[bool, bool] = (False, False)
    """Per spatial axis (dims -2, -1): circular padding if True, zeros otherwise."""
    position_harmonics: tuple[Harmonic, ...] = ()
    """``(axis, wavenumber)`` pairs whose fixed ``cos, sin`` position channels are appended
    to the input (:func:`pirf.models.layers.position_features`): the PDE's
    ``position_harmonics()``, for PDEs that are not translation-invariant on a periodic
    axis. Empty (the default) keeps the network shift-equivariant."""

    def __post_init__(self) -> None:
        checks = [
            (self.in_channels >= 1, "in_channels must be >= 1"),
            (self.out_channels is None or self.out_channels >= 1, "out_channels must be >= 1"),
            (
                self.base_channels >= 4 and self.base_channels % 2 == 0,
                "base_channels must be even and >= 4",
            ),
            (
                len(self.channel_mult) >= 1 and all(m >= 1 for m in self.channel_mult),
                "channel_mult needs at least one positive multiplier",
            ),
            (self.blocks_per_level >= 1, "blocks_per_level must be >= 1"),
            (
                all(0 <= lv < len(self.channel_mult) for lv in self.attention_levels),
                f"attention_levels must lie in 0..{len(self.channel_mult) - 1}",
            ),
            (self.attention_heads >= 1, "attention_heads must be >= 1"),
            (0.0 <= self.dropout < 1.0, "dropout must lie in [0, 1)"),
            (
                self.embedding in ("positional", "fourier"),
                "embedding must be 'positional' or 'fourier'",
            ),
            (self.emb_mult >= 1, "emb_mult must be >= 1"),
            (len(self.periodic) == 2, "periodic needs one flag per spatial axis"),
            (
                all(len(h) == 2 and h[0] in (0, 1) and h[1] >= 1 for h in self.position_harmonics),
                "position_harmonics are (axis 0 or 1, wavenumber >= 1) pairs",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise PirfError(f"invalid U-Net configuration: {message}")
        widths = {self.base_channels * m for m in self.channel_mult}
        if any(w % self.attention_heads for w in widths) and (
            self.attention_levels or self.mid_attention
        ):
            raise PirfError(
                f"invalid U-Net configuration: {self.attention_heads} attention heads do not "
                f"divide the level widths {sorted(widths)}"
            )

    @property
    def levels(self) -> int:
        return len(self.channel_mult)

    @property
    def stride(self) -> int:
        """Total down-sampling factor: sides must be multiples of it."""
        return 2 ** (self.levels - 1)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["channel_mult"] = list(self.channel_mult)
        data["attention_levels"] = list(self.attention_levels)
        data["periodic"] = list(self.periodic)
        data["position_harmonics"] = [list(h) for h in self.position_harmonics]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UNetConfig:
        """Rebuild from :meth:`to_json` output; unknown or mistyped keys raise PirfError."""
        if not isinstance(data, dict):
            raise PirfError(f"U-Net configuration must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PirfError(f"unknown U-Net configuration key(s): {', '.join(unknown)}")
        values = dict(data)
        try:
            for key in ("channel_mult", "attention_levels"):
                if key in values:
                    values[key] = tuple(int(v) for v in values[key])
            if "periodic" in values:
                values["periodic"] = tuple(bool(v) for v in values["periodic"])
            if "position_harmonics" in values:
                values["position_harmonics"] = tuple(
                    (int(axis), int(k)) for axis, k in values["position_harmonics"]
                )
            return cls(**values)
        except (TypeError, ValueError) as error:
            raise PirfError(f"invalid U-Net configuration: {error}") from None


class UNet(nn.Module):
    """DDPM++-style U-Net: ``(x (B, C, H, W), noise_labels (B,)) -> (B, C_out, H, W)``."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        base, mults, n = config.base_channels, config.channel_mult, config.blocks_per_level
        emb_channels = config.emb_mult * base
        out_channels = config.out_channels or config.in_channels
        block = {
            "emb_channels": emb_channels,
            "heads": config.attention_heads,
            "dropout": config.dropout,
            "adaptive_scale": config.adaptive_scale,
            "periodic": config.periodic,
        }

        self.embed = NoiseEmbedding(base, emb_channels, config.embedding)
        position_channels = 2 * len(config.position_harmonics)
        self.stem = Conv2d(
            config.in_channels + position_channels, base, 3, periodic=config.periodic
        )

        self.encoder = nn.ModuleDict()
        skips = [base]
        width = base
        for level, mult in enumerate(mults):
            if level > 0:
                self.encoder[f"level{level}_down"] = ResBlock(
                    width, width, resample="down", **block
                )
                skips.append(width)
            attention = level in config.attention_levels
            for index in range(n):
                self.encoder[f"level{level}_block{index}"] = ResBlock(
                    width, base * mult, attention=attention, **block
                )
                width = base * mult
                skips.append(width)

        self.middle = nn.ModuleList(
            [
                ResBlock(width, width, attention=config.mid_attention, **block),
                ResBlock(width, width, **block),
            ]
        )

        self.decoder = nn.ModuleDict()
        for level in reversed(range(config.levels)):
            if level < config.levels - 1:
                self.decoder[f"level{level}_up"] = ResBlock(width, width, resample="up", **block)
            for index in range(n + 1):
                attention = index == n and level in config.attention_levels
                self.decoder[f"level{level}_block{index}"] = ResBlock(
                    width + skips.pop(),
                    base * mults[level],
                    attention=attention,
                    takes_skip=True,
                    **block,
                )
                width = base * mults[level]

        self.out_norm = group_norm(width)
        self.out_conv = Conv2d(width, out_channels, 3, periodic=config.periodic, init_scale=1e-5)

    def architecture(self) -> dict[str, Any]:
        """The registry entry that rebuilds this network: ``{"backbone", "config"}``."""
        return {"backbone": "unet", "config": self.config.to_json()}

    def top_module_names(self, blocks: int | None = None) -> list[str]:
        """Qualified names of the last ``blocks`` decoder blocks at full resolution, followed
        by the output layers (``out_norm``, ``out_conv``).

        The full-resolution decoder blocks are, in order, the up-sampling block into level 0
        (absent with a single level) and blocks ``0 .. N``. ``None`` selects all of them;
        ``0`` only the output layers.
        """
        finest = [name for name in self.decoder if name.startswith("level0_")]
        if blocks is None:
            blocks = len(finest)
        if not 0 <= blocks <= len(finest):
            raise PirfError(
                f"the U-Net has {len(finest)} full-resolution decoder blocks; "
                f"cannot select {blocks}"
            )
        chosen = finest[len(finest) - blocks :]
        return [f"decoder.{name}" for name in chosen] + ["out_norm", "out_conv"]

    def forward(self, x: torch.Tensor, noise_labels: torch.Tensor) -> torch.Tensor:
        stride = self.config.stride
        if x.shape[-1] % stride or x.shape[-2] % stride:
            raise PirfError(
                f"this U-Net needs height and width divisible by {stride}; "
                f"got {tuple(x.shape[-2:])}"
            )
        emb = self.embed(noise_labels)
        if self.config.position_harmonics:
            x = torch.cat([x, self._positions(x)], dim=1)
        x = self.stem(x)
        skips = [x]
        for module in self.encoder.values():
            x = module(x, emb)
            skips.append(x)
        for module in self.middle:
            x = module(x, emb)
        for module in self.decoder.values():
            if module.takes_skip:
                x = torch.cat([x, skips.pop()], dim=1)
            x = module(x, emb)
        return self.out_conv(F.silu(self.out_norm(x)))

    def _positions(self, x: torch.Tensor) -> torch.Tensor:
        """The position channels for the batch ``x``, ``(B, 2 m, H, W)``, in its dtype."""
        features = position_features(
            self.config.position_harmonics,
            (x.shape[-2], x.shape[-1]),
            dtype=x.dtype,
            device=x.device,
        )
        return features.unsqueeze(0).expand(x.shape[0], -1, -1, -1)


def unet_from_config(**config: Any) -> UNet:
    """Registry factory: a :class:`UNet` from the JSON form of a :class:`UNetConfig`."""
    return UNet(UNetConfig.from_json(config))


__all__ = ["Periodic", "UNet", "UNetConfig", "unet_from_config"]
