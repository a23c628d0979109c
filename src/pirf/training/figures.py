"""Training previews: a few EMA-model samples beside their PDE residual maps.

Each row is one sample: its channels in physical units (de-normalised and snapped, exactly
what the physics metrics see) and ``log10 |R|`` of every residual channel, with the
sample's residual MSE in the title. The initial noise is the same for every figure of a
run (``pirf.sampling.initial_noise`` with the run's seed: the first samples that
``pirf sample`` with that seed draws), so successive figures show the same samples
improving. Drawn with matplotlib's Agg
canvas (no display, no global pyplot state).
"""

from __future__ import annotations

from pathlib import Path

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pirf.pdes.base import PDE
from pirf.pdes.normalisation import Normalisation
from pirf.sampling import Precision, karras_sigmas, sample


def preview_samples(
    denoiser: torch.nn.Module,
    noise: torch.Tensor,
    *,
    pde: PDE,
    normalisation: Normalisation,
    steps: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample from ``noise`` with ``steps`` Heun steps (the evaluation sampler; bf16 on CUDA
    except the last two steps) and return ``(fields, residual)`` in physical units, float64
    on the CPU: the snapped fields ``(B, C, H, W)`` and ``pde.residual`` of them."""
    with torch.no_grad():
        samples = sample(
            denoiser,
            noise,
            karras_sigmas(steps),
            precision=Precision(bf16=noise.device.type == "cuda", fp32_steps=2),
        )
        fields = pde.snap(normalisation.to_physical(samples.double().cpu()))
        residual = pde.residual(fields)
    return fields, residual


def save_preview(
    path: Path,
    fields: torch.Tensor,
    residual: torch.Tensor,
    *,
    channels: tuple[str, ...],
    title: str,
) -> Path:
    """Draw the rows of ``fields`` and ``residual`` (from :func:`preview_samples`) to a PNG."""
    count, n_fields = fields.shape[0], fields.shape[1]
    n_residual = residual.shape[1]
    columns = n_fields + n_residual
    figure = Figure(figsize=(2.2 * columns, 2.0 * count + 0.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(count, columns, squeeze=False)
    mse = residual.flatten(1).square().mean(dim=1)
    log_residual = residual.abs().clamp_min(1e-30).log10()
    for row in range(count):
        for column in range(columns):
            axis = axes[row, column]
            if column < n_fields:
                image = axis.imshow(fields[row, column].numpy(), cmap="viridis")
                label = channels[column] if column < len(channels) else f"channel {column}"
            else:
                index = column - n_fields
                image = axis.imshow(log_residual[row, index].numpy(), cmap="magma")
                label = f"log10|R{index if n_residual > 1 else ''}|  mse {mse[row]:.2e}"
            if row == 0 or column >= n_fields:
                axis.set_title(label, fontsize=8)
            axis.set_xticks([])
            axis.set_yticks([])
            figure.colorbar(image, ax=axis, shrink=0.8).ax.tick_params(labelsize=6)
    figure.suptitle(title, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    return path


__all__ = ["preview_samples", "save_preview"]
