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

from pirf._lazy import lazy_exports

__all__ = lazy_exports(
    __name__,
    {
        "config": ["TRAINABLE_SETS", "FinetuneConfig", "resolve"],
        "lora": [
            "attach_lora",
            "has_lora",
            "load_lora_factors",
            "lora_factors",
            "lora_parameter_count",
            "merged_state",
        ],
        "monitor": ["DriftGuard", "Evaluation", "FidelityGuard", "evaluate_model"],
        "regularisers": ["distillation_regulariser", "pretrained_snapshot", "weight_regulariser"],
        "pool": ["StatePool"],
        "reward": [
            "COEFFICIENT_FLOOR",
            "NORMS",
            "REWARDS",
            "Reward",
            "admissible_fields",
            "residual_loss",
            "residual_reward",
            "residual_scale",
            "reward_terms",
        ],
        "run": ["BEST", "PIRFRun", "finetune", "prepare"],
        "safety": ["sanitise_gradients"],
        "trainable": ["TRAINABLE", "select_trainable", "top_names", "trainable_parameters"],
        "trainer": ["LossFn", "PIRFTrainer", "StepStats"],
        "trajectory": [
            "MODES",
            "GradientTrajectory",
            "truncated_trajectory",
            "window_start",
            "window_trajectory",
        ],
    },
)
