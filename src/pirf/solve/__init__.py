"""Solving PDE problems from partial observations with a diffusion prior.

* :mod:`~pirf.solve.observe`: what is observed (``a=all``, ``u=500``) and its mask;
* :mod:`~pirf.solve.guidance`: observation guidance, and optionally PDE guidance, as a
  step wrapper of the one sampler (DiffusionPDE's method);
* :mod:`~pirf.solve.solver`: the ``pirf solve`` stage, reference fields in, solutions file
  and errors out.
"""

from pirf.solve.guidance import SolverGuidance, observation_loss
from pirf.solve.observe import Observation, observation_mask, parse_observations
from pirf.solve.solver import solve

__all__ = [
    "Observation",
    "SolverGuidance",
    "observation_loss",
    "observation_mask",
    "parse_observations",
    "solve",
]
