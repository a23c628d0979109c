"""Baselines PIRF is compared with, on the same EDM backbone, sampler and residual.

* :mod:`~pirf.baselines.guidance`: DiffusionPDE (residual-gradient guidance in the last
  steps) and CoCoGen (the same plus correction steps on the final sample), as wrappers of
  the one sampler, :func:`pirf.sampling.generate`;
* :mod:`~pirf.baselines.pidm`: PIDM, fine-tuning with the denoising loss plus a residual
  loss on the denoiser's estimate;
* :mod:`~pirf.baselines.pgdiffusion`: PG-Diffusion, a denoiser conditioned on the residual
  gradient, sampled with classifier-free-guidance mixing (wrappers again);
* :mod:`~pirf.baselines.common`: what the two trained baselines share around their
  training loops (data checks, run checks, saving).
"""
