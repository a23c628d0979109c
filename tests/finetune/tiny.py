"""A tiny EDM U-Net in float64 with non-trivial weights, shared by the fine-tuning tests."""

import torch

from pirf.models import EDMDenoiser, preset_denoiser

CHANNELS = 2
RESOLUTION = 8


def tiny_model(seed: int = 0, resolution: int = RESOLUTION, dtype=torch.float64) -> EDMDenoiser:
    """``tiny`` preset with 8 base channels; the output layer (initialised near zero) is
    redrawn so that gradients reach every layer at a testable size."""
    torch.manual_seed(seed)
    model = preset_denoiser(
        "tiny", channels=CHANNELS, resolution=resolution, base_channels=8, bf16=False
    )
    with torch.no_grad():
        model.backbone.out_conv.weight.normal_(0.0, 0.05)
    return model.to(dtype).eval()


def unit_noise(batch: int = 2, seed: int = 1, resolution: int = RESOLUTION, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, CHANNELS, resolution, resolution, generator=generator, dtype=dtype)


def objective(final: torch.Tensor) -> torch.Tensor:
    """A fixed smooth scalar of the final sample (independent of the PDE code)."""
    generator = torch.Generator().manual_seed(7)
    weights = torch.randn(final.shape[1:], generator=generator, dtype=final.dtype)
    return (final * weights).sum() + 0.5 * final.square().sum()


def grads(model: torch.nn.Module) -> dict[str, torch.Tensor | None]:
    return {
        name: (None if p.grad is None else p.grad.clone()) for name, p in model.named_parameters()
    }
