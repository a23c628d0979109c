"""Denoisers: backbones, EDM preconditioning, size presets and checkpoint files.

Typical use::

    from pirf.models import (
        export_model, load_checkpoint, load_model, preset_denoiser, save_checkpoint
    )

    model = preset_denoiser("tiny", channels=2, resolution=32)
    denoised = model(noisy, sigma)                      # D(x, sigma), float32
    save_checkpoint("run/base", model, pde=pde, normalisation=norm, resolution=32)
    checkpoint = load_checkpoint("run/base")            # verified; never runs code
    loaded = load_model("runs/poisson")                 # a checkpoint or a run directory
    export_model("runs/poisson", "poisson-model")       # hub layout: weights, config, card

Any ``nn.Module`` mapping ``(x (B, C, H, W), noise_labels (B,))`` to ``(B, C, H, W)`` can be
wrapped in :class:`EDMDenoiser`; any other network with :func:`wrap` (output extraction,
noise labels, top modules, how to rebuild it), an epsilon-prediction network with
:func:`epsilon_denoiser`, a ``diffusers`` U-Net with :func:`from_diffusers`; see
``docs/models.md``.
"""

from pirf._lazy import lazy_exports

__all__ = lazy_exports(
    __name__,
    {
        "backbone": [
            "backbone_names",
            "build_backbone",
            "named_modules_under",
            "parameters_under",
            "register_backbone",
            "top_module_names",
            "user_network",
        ],
        "checkpoint": [
            "Checkpoint",
            "CheckpointInfo",
            "check_matches",
            "load_checkpoint",
            "read_checkpoint_info",
            "save_checkpoint",
            "verify_checkpoint",
        ],
        "edm": [
            "SIGMA_DATA",
            "EDMDenoiser",
            "build_denoiser",
            "edm_coefficients",
            "edm_loss",
            "loss_weight",
            "sample_training_noise",
        ],
        "export": ["export_model"],
        "loaded": ["LoadedModel", "load_model", "resolve_checkpoint"],
        "presets": ["PRESETS", "preset_denoiser", "unet_config"],
        "unet": ["UNet", "UNetConfig"],
        "wrap": ["WrappedNetwork", "wrap"],
        "vp": ["EpsilonNetwork", "epsilon_denoiser"],
        "diffusers_unet": ["from_diffusers"],
    },
)
