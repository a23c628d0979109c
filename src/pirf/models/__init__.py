"""Denoisers: backbones, EDM preconditioning, size presets and checkpoint files.

Typical use::

    from pirf.models import load_checkpoint, load_model, preset_denoiser, save_checkpoint

    model = preset_denoiser("tiny", channels=2, resolution=32)
    denoised = model(noisy, sigma)                      # D(x, sigma), float32
    save_checkpoint("run/base", model, pde=pde, normalisation=norm, resolution=32)
    checkpoint = load_checkpoint("run/base")            # verified; never runs code
    loaded = load_model("runs/poisson")                 # a checkpoint or a run directory

Any ``nn.Module`` mapping ``(x (B, C, H, W), noise_labels (B,))`` to ``(B, C, H, W)`` can be
wrapped in :class:`EDMDenoiser`; see ``docs/models.md``.
"""

from pirf.models.backbone import (
    backbone_names,
    build_backbone,
    named_modules_under,
    parameters_under,
    register_backbone,
    top_module_names,
)
from pirf.models.checkpoint import (
    Checkpoint,
    CheckpointInfo,
    check_matches,
    load_checkpoint,
    read_checkpoint_info,
    save_checkpoint,
    verify_checkpoint,
)
from pirf.models.edm import (
    SIGMA_DATA,
    EDMDenoiser,
    build_denoiser,
    edm_coefficients,
    edm_loss,
    loss_weight,
    sample_training_noise,
)
from pirf.models.loaded import LoadedModel, load_model, resolve_checkpoint
from pirf.models.presets import PRESETS, preset_denoiser, unet_config
from pirf.models.unet import UNet, UNetConfig

__all__ = [
    "PRESETS",
    "SIGMA_DATA",
    "Checkpoint",
    "CheckpointInfo",
    "EDMDenoiser",
    "LoadedModel",
    "UNet",
    "UNetConfig",
    "backbone_names",
    "build_backbone",
    "build_denoiser",
    "check_matches",
    "edm_coefficients",
    "edm_loss",
    "load_checkpoint",
    "load_model",
    "loss_weight",
    "named_modules_under",
    "parameters_under",
    "preset_denoiser",
    "read_checkpoint_info",
    "register_backbone",
    "resolve_checkpoint",
    "sample_training_noise",
    "save_checkpoint",
    "top_module_names",
    "unet_config",
    "verify_checkpoint",
]
