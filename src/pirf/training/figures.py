"""Training previews: a few EMA-model samples beside their PDE residual maps.

Each row is one sample: its channels in physical units (de-normalised and snapped, exactly
what the physics metrics see) and ``|R|`` of every residual channel, with the sample's
residual MSE beside it; the colour scales are shared by the rows (a log scale for ``|R|``;
:mod:`pirf.evaluation.figures`), and the run's ``figure_format`` sets the file format.
The initial noise is the same for every figure of a run (``pirf.sampling.initial_noise``
with the run's seed: the first samples that ``pirf sample`` with that seed draws), so
successive figures show the same samples improving. Drawn with matplotlib's Agg canvas (no
display, no global pyplot state).
"""

from __future__ import annotations

import torch

from pirf.evaluation.figures import save_sample_grid as save_preview
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


__all__ = ["preview_samples", "save_preview"]
