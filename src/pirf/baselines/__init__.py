"""Baselines PIRF is compared with, on the same EDM backbone, sampler and residual.

* :mod:`~pirf.baselines.guidance`: DiffusionPDE (residual-gradient guidance in the last
  steps) and CoCoGen (the same plus correction steps on the final sample);
* :mod:`~pirf.baselines.pidm`: PIDM, fine-tuning with the denoising loss plus a residual
  loss on the denoiser's estimate;
* :mod:`~pirf.baselines.pgdiffusion`: PG-Diffusion, a denoiser conditioned on the residual
  gradient, sampled with classifier-free-guidance mixing.
"""
