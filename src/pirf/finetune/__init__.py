"""Physics-informed reward fine-tuning (PIRF): reward, truncated trajectories, trainable
weights and regularisers.

A fine-tuning iteration, in outline::

    from pirf.finetune import residual_loss, select_trainable, truncated_trajectory
    from pirf.finetune import pretrained_snapshot, sanitise_gradients, weight_regulariser

    pretrained = pretrained_snapshot(model)                # after loading the weights
    params = [p for _, p in select_trainable(model, "top", blocks=2)]
    run = truncated_trajectory(model, noise, karras_sigmas(20), k=2)
    loss = residual_loss(pde, norm, run.final, scale=base_mse).mean()
    loss = loss + weight_regulariser(model, pretrained, lam)
    loss.backward(); sanitise_gradients(params); optimizer.step()
"""

from pirf.finetune.config import TRAINABLE_SETS, FinetuneConfig
from pirf.finetune.lora import (
    attach_lora,
    has_lora,
    load_lora_factors,
    lora_factors,
    lora_parameter_count,
    merged_state,
)
from pirf.finetune.monitor import DriftGuard, Evaluation, FidelityGuard, evaluate_model
from pirf.finetune.regularisers import (
    distillation_regulariser,
    pretrained_snapshot,
    weight_regulariser,
)
from pirf.finetune.reward import (
    COEFFICIENT_FLOOR,
    NORMS,
    admissible_fields,
    residual_loss,
    residual_reward,
    residual_scale,
)
from pirf.finetune.run import BEST, finetune
from pirf.finetune.safety import sanitise_gradients
from pirf.finetune.trainable import TRAINABLE, select_trainable, top_names, trainable_parameters
from pirf.finetune.trainer import LossFn, PIRFTrainer, StepStats
from pirf.finetune.trajectory import MODES, GradientTrajectory, truncated_trajectory

__all__ = [
    "BEST",
    "COEFFICIENT_FLOOR",
    "MODES",
    "NORMS",
    "TRAINABLE",
    "TRAINABLE_SETS",
    "DriftGuard",
    "Evaluation",
    "FidelityGuard",
    "FinetuneConfig",
    "GradientTrajectory",
    "LossFn",
    "PIRFTrainer",
    "StepStats",
    "admissible_fields",
    "attach_lora",
    "distillation_regulariser",
    "evaluate_model",
    "finetune",
    "has_lora",
    "load_lora_factors",
    "lora_factors",
    "lora_parameter_count",
    "merged_state",
    "pretrained_snapshot",
    "residual_loss",
    "residual_reward",
    "residual_scale",
    "sanitise_gradients",
    "select_trainable",
    "top_names",
    "trainable_parameters",
    "truncated_trajectory",
    "weight_regulariser",
]
