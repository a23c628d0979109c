"""Solving PDE problems from partial observations with a diffusion prior.

* :mod:`~pirf.solve.observe`: what is observed (``a=all``, ``u=500``) and its mask;
* :mod:`~pirf.solve.guidance`: observation guidance, and optionally PDE guidance, as a
  step wrapper of the one sampler (DiffusionPDE's method);
* :mod:`~pirf.solve.solver`: the ``pirf solve`` stage, reference fields in, solutions file
  and errors out.
"""

from pirf._lazy import lazy_exports

__all__ = lazy_exports(
    __name__,
    {
        "guidance": ["SolverGuidance", "observation_loss"],
        "observe": ["Observation", "observation_mask", "parse_observations"],
        "solver": ["solve"],
    },
)
