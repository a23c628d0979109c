"""Diagnostics of the method's assumptions, measured on a model.

* :mod:`~pirf.diagnostics.value`: the value of a noisy state two ways, the reward of the
  one-step denoised estimate ``r(D(x_sigma))`` that DPS-style guidance uses, and the reward
  the sampler actually reaches from ``x_sigma`` (deterministically and stochastically);
* :mod:`~pirf.diagnostics.gap`: both over noise levels, on data states and on the model's
  own trajectories, summarised per level;
* :mod:`~pirf.diagnostics.value_gap`: the same on a checkpoint and a reference file, with
  the report files ``pirf diagnose value-gap`` writes.
"""

from pirf._lazy import lazy_exports

__all__ = lazy_exports(
    __name__,
    {
        "gap": ["measure_value_gap", "spearman", "summarise_level"],
        "value": ["ode_reward", "one_step_reward", "sde_rewards"],
    },
)
