"""Base-model training: EDM loss on normalised fields, Adam, EMA, checkpoints, DDP.

>>> from pirf.training import TrainConfig, train
>>> summary = train(TrainConfig.of(data="train.h5", out="runs/poisson", preset="tiny"))
>>> summary["checkpoint"]          # runs/poisson/checkpoint: weights, EMA and metadata

Every random draw is a pure function of ``(seed, iteration)``, so ``resume=True`` continues
a stopped or killed run to exactly the weights an uninterrupted run reaches (bitwise on the
CPU). See ``docs/training.md``.
"""

from pirf._lazy import lazy_exports

__all__ = lazy_exports(
    __name__,
    {
        "config": ["PRESET_DEFAULTS", "TrainConfig", "resolve"],
        "ema": ["EMA", "ema_beta"],
        "loop": ["train", "weights_fingerprint"],
        "metrics_log": ["read_metrics"],
        "schedule": ["learning_rate"],
    },
)
