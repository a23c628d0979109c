"""Noise schedules and deterministic EDM samplers (Heun, Euler).

>>> from pirf.sampling import generate
>>> result = generate(denoiser, n=64, shape=(2, 32, 32), seed=0, steps=20)
>>> result.samples.shape, result.nfe_per_sample
(torch.Size([64, 2, 32, 32]), 39)

Sampling-time physics (guidance, corrections, classifier-free mixing) enters the same
sampler as wrappers (:mod:`pirf.sampling.wrappers`).
"""

from pirf._lazy import lazy_exports

__all__ = lazy_exports(
    __name__,
    {
        "generate": ["ProgressFn", "SamplingResult", "default_batch_size", "generate"],
        "noise": ["SAMPLING_STREAM", "initial_noise"],
        "precision": ["FP32", "Denoiser", "NetworkCall", "Precision"],
        "samplers": [
            "STEPS",
            "StepInfo",
            "Trajectory",
            "euler_step",
            "heun_step",
            "integrate",
            "network_evaluations",
            "sample",
            "step_function",
        ],
        "schedule": ["RHO", "SIGMA_MAX", "SIGMA_MIN", "karras_sigmas", "noise_levels"],
        "stochastic": ["Churn", "NoiseDraw", "churn_level", "seeded_draws"],
        "wrappers": [
            "DenoiserWrapper",
            "Finisher",
            "SamplerWrappers",
            "SamplingCost",
            "StepFn",
            "StepWrapper",
        ],
    },
)
