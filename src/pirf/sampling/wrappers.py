"""How physics enters the sampler without a sampler of its own: three kinds of wrapper.

The sampling-time baselines change the deterministic EDM sampler in three places, each
served by one kind of wrapper that :func:`pirf.sampling.sample` and
:func:`pirf.sampling.generate` accept (the k-diffusion way: wrap the model or the step,
keep one loop):

* a :data:`DenoiserWrapper` changes what a step sees as the denoiser: given the network as
  the sampler calls it (at the step's precision, each evaluation counted), it returns the
  denoiser the step calls, e.g. PG-Diffusion's classifier-free mixing of a conditional and
  an unconditional evaluation;
* a :class:`StepWrapper` changes steps: given a step function and the step's index, it
  returns the step function to run there, e.g. DiffusionPDE's guidance, which runs the step
  with the state requiring grad and moves the result against a loss gradient;
* a :data:`Finisher` changes the final state, e.g. CoCoGen's correction steps.

What they add to the cost of a trajectory beyond its forward network evaluations
(backward passes, corrections) they count in the trajectory's :class:`SamplingCost`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypedDict

import torch

from pirf.sampling.precision import Denoiser

StepFn = Callable[[Denoiser, torch.Tensor, float, float], torch.Tensor]
"""``step(denoiser, x, sigma, sigma_next) -> the state at sigma_next``."""


@dataclass
class SamplingCost:
    """What one trajectory cost, counted as it runs; every sample of a batch costs the same,
    so these are per-sample counts."""

    nfe: int = 0
    """Forward network evaluations."""
    backward: int = 0
    """Backward passes through the network."""
    backward_nfe: int = 0
    """Network evaluations those backward passes go through."""
    guided_steps: int = 0
    """Sampler steps that applied guidance."""
    corrections: int = 0
    """Correction steps applied to the final state (no network involved)."""


DenoiserWrapper = Callable[[Denoiser], Denoiser]
"""``wrapper(network) -> denoiser``: the denoiser the steps call, built around the network
as the sampler calls it (precision set, evaluations counted, keyword conditioning passed
on)."""


class StepWrapper(Protocol):
    """Changes some steps of a trajectory."""

    def __call__(self, step: StepFn, index: int, steps: int, cost: SamplingCost) -> StepFn:
        """The step function to run as step ``index`` (0-based) of ``steps`` in place of
        ``step`` (``step`` itself where this wrapper leaves the step alone); what the
        returned step adds to the cost it counts in ``cost``."""
        ...

    def full_precision(self, index: int, steps: int) -> bool:
        """Whether step ``index`` must run the network in float32 whatever the precision
        policy says (a gradient taken through it would carry bf16 rounding)."""
        ...


Finisher = Callable[[torch.Tensor, SamplingCost], torch.Tensor]
"""``finish(x, cost) -> x``: applied to the final state of a trajectory; counts what it
adds in ``cost``."""


class SamplerWrappers(TypedDict, total=False):
    """Keyword arguments of :func:`pirf.sampling.generate` that make a physics baseline,
    as the baselines' ``wrappers`` functions return them."""

    denoiser_wrapper: DenoiserWrapper | None
    step_wrapper: StepWrapper | None
    finish: Finisher | None


__all__ = [
    "DenoiserWrapper",
    "Finisher",
    "SamplerWrappers",
    "SamplingCost",
    "StepFn",
    "StepWrapper",
]
