"""Base-model training: EDM loss on normalised fields, Adam, EMA, checkpoints, DDP.

>>> from pirf.training import TrainConfig, train
>>> summary = train(TrainConfig.of(data="train.h5", out="runs/poisson", preset="tiny"))
>>> summary["checkpoint"]          # runs/poisson/checkpoint: weights, EMA and metadata

Every random draw is a pure function of ``(seed, iteration)``, so ``resume=True`` continues
a stopped or killed run to exactly the weights an uninterrupted run reaches (bitwise on the
CPU). See ``docs/training.md``.
"""

from pirf.training.config import PRESET_DEFAULTS, TrainConfig, resolve
from pirf.training.ema import EMA, ema_beta
from pirf.training.loop import train, weights_fingerprint
from pirf.training.metrics_log import read_metrics
from pirf.training.schedule import learning_rate

__all__ = [
    "EMA",
    "PRESET_DEFAULTS",
    "TrainConfig",
    "ema_beta",
    "learning_rate",
    "read_metrics",
    "resolve",
    "train",
    "weights_fingerprint",
]
