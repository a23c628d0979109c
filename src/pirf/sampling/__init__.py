"""Noise schedules and EDM samplers: deterministic (Heun, Euler) and churned (stochastic).

>>> from pirf.sampling import generate
>>> result = generate(denoiser, n=64, shape=(2, 32, 32), seed=0, steps=20)
>>> result.samples.shape, result.nfe_per_sample
(torch.Size([64, 2, 32, 32]), 39)

Sampling-time physics (guidance, corrections, classifier-free mixing) enters the same
sampler as wrappers (:mod:`pirf.sampling.wrappers`).
"""

from pirf.sampling.generate import ProgressFn, SamplingResult, default_batch_size, generate
from pirf.sampling.noise import SAMPLING_STREAM, initial_noise
from pirf.sampling.precision import FP32, Denoiser, NetworkCall, Precision
from pirf.sampling.samplers import (
    STEPS,
    StepInfo,
    Trajectory,
    euler_step,
    heun_step,
    integrate,
    network_evaluations,
    sample,
    step_function,
)
from pirf.sampling.schedule import RHO, SIGMA_MAX, SIGMA_MIN, karras_sigmas, noise_levels
from pirf.sampling.stochastic import Churn, NoiseDraw, churn_level, seeded_draws
from pirf.sampling.wrappers import (
    DenoiserWrapper,
    Finisher,
    SamplerWrappers,
    SamplingCost,
    StepFn,
    StepWrapper,
)

__all__ = [
    "FP32",
    "RHO",
    "SAMPLING_STREAM",
    "SIGMA_MAX",
    "SIGMA_MIN",
    "STEPS",
    "Churn",
    "Denoiser",
    "DenoiserWrapper",
    "Finisher",
    "NetworkCall",
    "NoiseDraw",
    "Precision",
    "ProgressFn",
    "SamplerWrappers",
    "SamplingCost",
    "SamplingResult",
    "StepFn",
    "StepInfo",
    "StepWrapper",
    "Trajectory",
    "churn_level",
    "default_batch_size",
    "euler_step",
    "generate",
    "heun_step",
    "initial_noise",
    "integrate",
    "karras_sigmas",
    "network_evaluations",
    "noise_levels",
    "sample",
    "seeded_draws",
    "step_function",
]
