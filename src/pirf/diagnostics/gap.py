"""The value gap over noise levels, on two kinds of noisy state.

For each noise level ``sigma`` the states are

* ``data``: reference fields (model space) plus ``sigma`` times unit noise, the states the
  forward process makes from data;
* ``trajectory``: the model's own deterministic Heun trajectories from seeded noise, run
  over a schedule (the sampler's Karras levels with every requested ``sigma`` inserted)
  that passes through ``sigma`` exactly, so no state is "the nearest level".

On each state it measures the one-step value ``r(D(x))``, the reward of the deterministic
continuation and the rewards of ``runs`` stochastic ones (:mod:`pirf.diagnostics.value`),
and summarises them per ``sigma`` and kind (:func:`summarise_level`): means over states
with their standard errors, the ratio of the one-step value to the reached one, the
Spearman rank correlation across states, and for data states the reward of the clean
fields (the one-step estimate against the data it came from: the Jensen gap on the data).

:func:`measure_value_gap` takes any denoiser and reward, so the same code runs on a
checkpoint (:mod:`pirf.diagnostics.value_gap`) and on Gaussian data with an exact
denoiser, where the gap is known in closed form (``tests/diagnostics``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from pirf.diagnostics.value import (
    RewardFn,
    check_sigma,
    ode_reward,
    one_step_reward,
    reward_of,
    sde_rewards,
)
from pirf.errors import PirfError, option
from pirf.sampling import Denoiser, StepInfo, initial_noise, karras_sigmas, sample
from pirf.seeding import stacked_normal, unit_generators

KINDS = ("data", "trajectory")
"""The kinds of state, in report order."""

DATA_NOISE_STREAM = 17
"""Seed stream of the noise added to the data states (the same draw at every level)."""

ProgressFn = Callable[[int, int], None]


# ------------------------------------------------------------------------------ states
def data_noise(n: int, shape: tuple[int, int, int], seed: int) -> torch.Tensor:
    """Unit noise ``(n, C, H, W)`` of the data states; field ``i``'s from its own
    generator, float64 on the CPU."""
    generators = unit_generators(seed, DATA_NOISE_STREAM, range(n))
    return stacked_normal(generators, shape, dtype=torch.float64)


def trajectory_schedule(sigmas: Sequence[float], steps: int) -> list[float]:
    """The Karras schedule of ``steps`` steps with every level of ``sigmas`` inserted: a
    sampler trajectory that passes through each of them."""
    levels = {float(level) for level in karras_sigmas(steps)} | {float(s) for s in sigmas}
    return sorted(levels, reverse=True)


def trajectory_states(
    denoiser: Denoiser, noise: torch.Tensor, sigmas: Sequence[float], *, steps: int
) -> dict[float, torch.Tensor]:
    """The states at each level of ``sigmas`` of the deterministic Heun trajectories that
    start from unit ``noise`` (scaled by ``SIGMA_MAX``) over :func:`trajectory_schedule`."""
    wanted = {float(s) for s in sigmas}
    states: dict[float, torch.Tensor] = {}

    def keep(info: StepInfo) -> None:
        if info.sigma_next in wanted:
            states[info.sigma_next] = info.x

    sample(denoiser, noise, trajectory_schedule(sigmas, steps), method="heun", callback=keep)
    return states


# ------------------------------------------------------------------------------ statistics
def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks ``1 .. n`` of ``values``, ties sharing their average rank."""
    order = torch.argsort(values, stable=True)
    _, inverse, counts = torch.unique_consecutive(
        values[order], return_inverse=True, return_counts=True
    )
    ends = counts.cumsum(0).to(torch.float64)
    averages = ends - (counts.to(torch.float64) - 1) / 2
    ranks = torch.empty(values.shape[0], dtype=torch.float64)
    ranks[order] = averages[inverse]
    return ranks


def spearman(first: torch.Tensor, second: torch.Tensor) -> float | None:
    """Spearman's rank correlation of two ``(n,)`` samples (the Pearson correlation of
    their average ranks); None when it is undefined (fewer than two values, or one side
    constant)."""
    if first.shape != second.shape or first.ndim != 1:
        raise PirfError("rank correlation needs two samples of the same length")
    if first.shape[0] < 2:
        return None
    a = average_ranks(first.double().cpu())
    b = average_ranks(second.double().cpu())
    a, b = a - a.mean(), b - b.mean()
    scale = float(a.norm() * b.norm())
    return None if scale == 0 else float((a * b).sum()) / scale


def _mean_se(values: torch.Tensor) -> tuple[float, float | None]:
    """Mean and standard error of the mean of ``(n,)`` values."""
    mean = float(values.mean())
    if values.shape[0] < 2:
        return mean, None
    return mean, float(values.std(unbiased=True)) / math.sqrt(values.shape[0])


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator != 0 else None


def summarise_level(
    sigma: float,
    kind: str,
    one_step: torch.Tensor,
    ode: torch.Tensor,
    sde: torch.Tensor,
    clean: torch.Tensor | None = None,
) -> dict[str, Any]:
    """One row of the report: the per-state rewards ``one_step (n,)``, ``ode (n,)``,
    ``sde (n, runs)`` (and ``clean (n,)`` for data states) summarised.

    ``ratio_*`` divide the mean one-step reward by the reached one: with a reward that is
    minus a residual, how many times the one-step estimate's residual exceeds the
    residual the sampler reaches. ``gap_sde`` is the mean of ``E[r | x] - r(D(x))``
    (estimated by the run mean), the quantity Jensen's inequality bounds; ``sde_run_se``
    is the mean over states of the standard error of each state's run mean.
    """
    value = sde.mean(dim=1)
    row: dict[str, Any] = {"sigma": sigma, "kind": kind, "n": int(one_step.shape[0])}
    row["runs"] = int(sde.shape[1])
    for name, values in (("one_step", one_step), ("ode", ode), ("sde", value)):
        row[name], row[f"{name}_se"] = _mean_se(values)
    row["ratio_ode"] = _ratio(row["one_step"], row["ode"])
    row["ratio_sde"] = _ratio(row["one_step"], row["sde"])
    row["spearman_ode"] = spearman(one_step, ode)
    row["spearman_sde"] = spearman(one_step, value)
    row["gap_sde"], row["gap_sde_se"] = _mean_se(value - one_step)
    row["sde_run_se"] = (
        float((sde.std(dim=1, unbiased=True) / math.sqrt(sde.shape[1])).mean())
        if sde.shape[1] > 1
        else None
    )
    if clean is not None:
        row["clean"], row["clean_se"] = _mean_se(clean)
        row["ratio_clean"] = _ratio(row["one_step"], row["clean"])
        row["spearman_clean"] = spearman(one_step, clean)
    return row


# ------------------------------------------------------------------------------ measure
def check_request(sigmas: Sequence[float], *, steps: int, runs: int) -> list[float]:
    """The noise levels, checked and in decreasing order, after checking the counts."""
    for name, value in (("steps", steps), ("runs", runs)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise PirfError(f"{option(name)} must be a positive integer, got {value!r}")
    levels = sorted({check_sigma(s) for s in sigmas}, reverse=True)
    if not levels:
        raise PirfError(f"give at least one noise level in {option('sigmas')}")
    return levels


def measure_value_gap(
    denoiser: Denoiser,
    reward: RewardFn,
    clean: torch.Tensor,
    sigmas: Sequence[float],
    *,
    steps: int = 20,
    runs: int = 8,
    seed: int = 0,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """The value gap of ``denoiser`` under ``reward`` at each level of ``sigmas``.

    ``clean (n, C, H, W)`` are model-space reference fields: the data states are
    ``clean + sigma * noise`` (:func:`data_noise` of ``seed``), and ``n`` trajectory states
    start from the sampler's seeded noise (:func:`pirf.sampling.initial_noise`). Each state
    is continued by ``steps`` Heun steps, deterministically and in ``runs`` stochastic runs.
    The states are processed ``batch_size`` trajectories at a time (a stochastic batch
    holds ``batch_size // runs`` states, at least one); the numbers do not depend on it.

    Returns ``{"rows": [summarise_level rows, data then trajectory, sigma decreasing],
    "per_state": {kind: {sigma: {"one_step", "ode", "sde", ["clean"]}: lists}}}``.
    """
    levels = check_request(sigmas, steps=steps, runs=runs)
    if clean.ndim != 4 or clean.shape[0] < 1:
        raise PirfError(f"the reference fields must be (n, C, H, W), got {tuple(clean.shape)}")
    n, shape = clean.shape[0], tuple(int(side) for side in clean.shape[1:])
    device = torch.device(device)
    dtype = clean.dtype if clean.dtype == torch.float64 else torch.float32
    states_per_batch = max(1, batch_size // runs)
    noise = data_noise(n, shape, seed)
    starts = initial_noise(n, shape, seed)
    names = ("one_step", "ode", "sde")
    values: dict[str, dict[float, dict[str, list[torch.Tensor]]]] = {
        kind: {s: {name: [] for name in names} for s in levels} for kind in KINDS
    }
    clean_rewards: list[torch.Tensor] = []
    if progress is not None:
        progress(0, n)
    for first in range(0, n, states_per_batch):
        last = min(n, first + states_per_batch)
        x0 = clean[first:last].to(device, dtype)
        clean_rewards.append(reward_of(reward, x0))
        on_trajectory = trajectory_states(
            denoiser, starts[first:last].to(device, dtype), levels, steps=steps
        )
        for sigma in levels:
            states = {
                "data": x0 + sigma * noise[first:last].to(device, dtype),
                "trajectory": on_trajectory[sigma],
            }
            for kind, x in states.items():
                record = values[kind][sigma]
                record["one_step"].append(one_step_reward(denoiser, reward, x, sigma))
                record["ode"].append(ode_reward(denoiser, reward, x, sigma, steps=steps))
                record["sde"].append(
                    sde_rewards(
                        denoiser, reward, x, sigma, steps=steps, runs=runs, seed=seed, first=first
                    )
                )
        if progress is not None:
            progress(last, n)
    clean_values = torch.cat(clean_rewards)
    rows, per_state = [], {}
    for kind in KINDS:
        per_state[kind] = {}
        for sigma in levels:
            joined = {name: torch.cat(parts) for name, parts in values[kind][sigma].items()}
            extra = clean_values if kind == "data" else None
            rows.append(summarise_level(sigma, kind, **joined, clean=extra))
            listed = {name: tensor.tolist() for name, tensor in joined.items()}
            if extra is not None:
                listed["clean"] = extra.tolist()
            per_state[kind][str(sigma)] = listed
    return {"rows": rows, "per_state": per_state}


__all__ = [
    "DATA_NOISE_STREAM",
    "KINDS",
    "average_ranks",
    "check_request",
    "data_noise",
    "measure_value_gap",
    "spearman",
    "summarise_level",
    "trajectory_schedule",
    "trajectory_states",
]
