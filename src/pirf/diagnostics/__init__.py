"""Diagnostics of the method's assumptions, measured on a model.

* :mod:`~pirf.diagnostics.value`: the value of a noisy state two ways, the reward of the
  one-step denoised estimate ``r(D(x_sigma))`` that DPS-style guidance uses, and the reward
  the sampler actually reaches from ``x_sigma`` (deterministically and stochastically);
* :mod:`~pirf.diagnostics.gap`: both over noise levels, on data states and on the model's
  own trajectories, summarised per level;
* :mod:`~pirf.diagnostics.value_gap`: the same on a checkpoint and a reference file, with
  the report files ``pirf diagnose value-gap`` writes.
"""

from pirf.diagnostics.gap import measure_value_gap, spearman, summarise_level
from pirf.diagnostics.value import ode_reward, one_step_reward, sde_rewards

__all__ = [
    "measure_value_gap",
    "ode_reward",
    "one_step_reward",
    "sde_rewards",
    "spearman",
    "summarise_level",
]
