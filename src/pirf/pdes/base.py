"""The contract every PDE benchmark fulfils, built-in or user-defined.

A PDE is a small object that knows

* its channels (``a``, ``u``, ...), which of them are inputs, and the grid they live on;
* its physical parameters (JSON-serialisable, stored with every dataset and model);
* its **residual**: a differentiable operator from fields in physical units
  ``(B, C, H, W)`` to the residual at the points where it is defined, ``(B, Cr, H', W')``.
  This is the reward of fine-tuning and the physics metric of evaluation;

and optionally how to make data: random inputs, a batched solver, and a solver-consistency
check. Only :meth:`PDE.residual` is required to fine-tune on a user's own PDE.

Subclasses set the class attributes and implement what they support::

    class Heat(PDE):
        name = "heat"
        channels = ("u",)
        def residual(self, fields):
            ...
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import torch

from pirf.errors import PirfError
from pirf.pdes.grid import UNIT_SQUARE_NODES, Grid


class PDE(abc.ABC):
    """Base class of a PDE benchmark. See the module docstring for the contract."""

    name: ClassVar[str]
    """Registry name (lower case)."""
    channels: ClassVar[tuple[str, ...]]
    """Channel names of a sample, in storage order."""
    input_channels: ClassVar[tuple[str, ...]] = ()
    """Channels that are the problem's data (e.g. the coefficient ``a``); the rest is solution."""
    description: ClassVar[str] = ""
    """One line for listings."""
    default_params: ClassVar[dict[str, Any]] = {}
    """Physical and numerical parameters with their defaults; instances may override them."""
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    """Named configurations: ``{"tiny": {"resolution": 32, "params": {...}}, ...}``."""
    min_resolution: ClassVar[int] = 8
    """The smallest grid the residual stencil (and the solver) accepts."""
    grid: Grid = UNIT_SQUARE_NODES
    """Where the field values live; override as a class attribute or property."""

    def __init__(self, **params: Any) -> None:
        unknown = sorted(set(params) - set(self.default_params))
        if unknown:
            known = ", ".join(sorted(self.default_params)) or "none"
            raise PirfError(
                f"unknown parameter(s) {', '.join(unknown)} for PDE '{self.name}'; known: {known}"
            )
        self._params = {**self.default_params, **params}

    # ----------------------------------------------------------------------------- identity
    @property
    def params(self) -> dict[str, Any]:
        """A copy of the instance's parameters (JSON-serialisable)."""
        return dict(self._params)

    @classmethod
    def from_preset(cls, preset: str, **overrides: Any) -> PDE:
        """An instance configured by a named preset, with optional parameter overrides."""
        if preset not in cls.presets:
            known = ", ".join(cls.presets) or "none"
            raise PirfError(f"PDE '{cls.name}' has no preset '{preset}'; known: {known}")
        return cls(**{**cls.presets[preset].get("params", {}), **overrides})

    @classmethod
    def preset_for_resolution(cls, resolution: int) -> str | None:
        """The first preset whose resolution is ``resolution``, if any."""
        for preset, config in cls.presets.items():
            if config.get("resolution") == resolution:
                return preset
        return None

    def metadata(self) -> dict[str, Any]:
        """Everything a file needs to describe this PDE (stored as JSON)."""
        return {
            "pde": self.name,
            "channels": list(self.channels),
            "input_channels": list(self.input_channels),
            "params": self.params,
            "grid": self.grid.to_json(),
            "pde_class": f"{type(self).__module__}:{type(self).__qualname__}",
        }

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params.items())
        return f"{type(self).__name__}({args})"

    # ----------------------------------------------------------------------------- physics
    @abc.abstractmethod
    def residual(self, fields: torch.Tensor) -> torch.Tensor:
        """Residual of ``fields`` ``(B, C, H, W)`` in physical units, where it is defined.

        Returns ``(B, Cr, H', W')`` (for example the interior nodes of a Dirichlet problem).
        Must be differentiable by autograd and work at any resolution >= ``min_resolution``.
        """

    def reference_residual(self, fields: torch.Tensor) -> torch.Tensor:
        """The residual as the reference (paper's) code defines it, for comparison only:
        its own grid, boundary handling, spacing and stencils (docs/evaluation.md).

        Unlike :meth:`residual` it need not vanish on this PDE's exact discrete solutions;
        report it beside its own ground-truth floor. Not every PDE has one: see
        :attr:`has_reference_residual`.
        """
        raise PirfError(
            f"PDE '{self.name}' has no reference residual; only pirf's own residual is "
            "available for it"
        )

    @property
    def has_reference_residual(self) -> bool:
        """Whether :meth:`reference_residual` is implemented."""
        return type(self).reference_residual is not PDE.reference_residual

    def snap(self, fields: torch.Tensor) -> torch.Tensor:
        """Project generated fields onto the admissible set (e.g. a binary coefficient).

        Applied to model samples before any physics metric; identity by default.
        """
        return fields

    def reward_fields(self, fields: torch.Tensor) -> torch.Tensor:
        """Generated fields made safe for a *differentiable* residual (the fine-tuning reward
        and residual guidance); identity by default.

        :meth:`snap` is piecewise constant, so its gradient is zero almost everywhere and it
        cannot sit inside a reward. Override this where the raw fields can make the residual
        undefined (Darcy clamps its coefficient away from zero).
        """
        return fields

    def precondition(self, residual: torch.Tensor, fields: torch.Tensor) -> torch.Tensor:
        """The residual mapped through the inverse of the PDE's constant-coefficient
        operator, ``P^-1 R``, shaped like ``residual``; differentiable.

        A residual stencil weighs the error at wavenumber ``k`` by about ``|k|^p`` (``p = 2``
        for a Laplacian); ``P^-1`` undoes that, so a norm of ``P^-1 R`` weighs every scale
        of the solution's error alike. For a linear problem with ``P`` its exact operator,
        ``P^-1 R`` is exactly the solution's error against a re-solve from the inputs.
        ``fields`` are the fields the residual came from (for variable coefficients).
        Not every PDE has one: see :attr:`has_preconditioner`.
        """
        raise PirfError(
            f"PDE '{self.name}' has no preconditioner; use the residual or multiscale reward"
        )

    @property
    def has_preconditioner(self) -> bool:
        """Whether :meth:`precondition` is implemented."""
        return type(self).precondition is not PDE.precondition

    def input_mask(self, height: int, width: int) -> torch.Tensor:
        """Which entries of a sample ``(C, H, W)`` are the problem's data: a boolean mask,
        ``True`` where the value is an input the solution is made from (the part solver
        consistency re-solves from). Default: every entry of :attr:`input_channels`.
        Evolution problems override it (the initial row or frame). Used by the reward's
        ``--reward-inputs held``, which lets the reward move the solution only.
        """
        mask = torch.zeros((len(self.channels), height, width), dtype=torch.bool)
        for name in self.input_channels:
            mask[self.channels.index(name)] = True
        return mask

    @property
    def has_inputs(self) -> bool:
        """Whether :meth:`input_mask` marks anything (on an ``8 x 8`` grid)."""
        return bool(self.input_mask(self.min_resolution, self.min_resolution).any())

    def position_harmonics(self) -> tuple[tuple[int, int], ...]:
        """Position harmonics ``(axis, cycles per field)`` a denoiser of this PDE must see.

        A convolutional network with circular padding cannot tell a field from its copy
        shifted by a multiple of its total stride. Declare here the harmonics of any known
        term that breaks translation invariance on a periodic axis (a forcing, a
        coefficient that is fixed across samples); base models trained for this PDE get
        their ``cos, sin`` as extra input channels (``UNetConfig.position_harmonics``).
        Empty by default: fine for translation-invariant problems and for non-periodic
        axes, where zero padding already tells position.
        """
        return ()

    def check_fields(self, fields: torch.Tensor) -> None:
        """Raise :class:`PirfError` unless ``fields`` is ``(B, C, H, W)`` for this PDE."""
        if fields.ndim != 4 or fields.shape[1] != len(self.channels):
            raise PirfError(
                f"PDE '{self.name}' expects fields (B, {len(self.channels)}, H, W) with channels "
                f"{', '.join(self.channels)}; got shape {tuple(fields.shape)}"
            )
        self.check_resolution(min(fields.shape[-2:]))

    def check_resolution(self, resolution: int) -> None:
        """Raise :class:`PirfError` if ``resolution`` is below what the schemes need."""
        if resolution < self.min_resolution:
            raise PirfError(
                f"resolution {resolution} is too small for PDE '{self.name}'; "
                f"use at least {self.min_resolution}"
            )

    # ----------------------------------------------------------------------------- data
    @property
    def can_generate(self) -> bool:
        """Whether this PDE can make its own data (it overrides :meth:`generate`,
        or both :meth:`sample_inputs` and :meth:`solve`)."""
        cls = type(self)
        if cls.generate is not PDE.generate:
            return True
        return cls.sample_inputs is not PDE.sample_inputs and cls.solve is not PDE.solve

    def samples_per_unit(self, resolution: int) -> int:
        """How many samples one random unit (one generator) yields; 1 unless overridden.

        Time-dependent PDEs may take several samples from one trajectory.
        """
        return 1

    def sample_inputs(self, generators: list[torch.Generator], resolution: int) -> torch.Tensor:
        """Random inputs, one unit per generator, as float64 on the CPU.

        The shape is the PDE's business (``solve`` consumes it). Drawing on the CPU with one
        generator per unit makes data identical for any batch size and device.
        """
        raise PirfError(f"PDE '{self.name}' has no input sampler; it cannot generate data")

    def solve(self, inputs: torch.Tensor) -> torch.Tensor:
        """Solve for a batch of inputs; returns fields ``(B, C, H, W)`` in the inputs' dtype
        and device."""
        raise PirfError(f"PDE '{self.name}' has no solver; it cannot generate data")

    def generate(
        self,
        generators: list[torch.Generator],
        resolution: int,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float64,
    ) -> torch.Tensor:
        """Fields for one unit per generator: ``(len(generators) * samples_per_unit, C, R, R)``.

        Default: draw inputs on the CPU, move them to ``device`` and ``dtype``, solve.
        """
        self.check_resolution(resolution)
        inputs = self.sample_inputs(generators, resolution)
        return self.solve(inputs.to(device=device, dtype=dtype))

    def consistency(self, fields: torch.Tensor) -> torch.Tensor:
        """Relative L2 distance, per sample, between the solution part of ``fields`` and what
        the solver makes from their input part: "is this sample a solution?" in the
        solution's own norm. Returns ``(B,)``."""
        raise PirfError(f"PDE '{self.name}' has no solver; solver consistency is unavailable")


def relative_l2(estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-sample ``||estimate - reference|| / ||reference||`` over all but the first dim."""
    difference = (estimate - reference).flatten(1).norm(dim=1)
    scale = reference.flatten(1).norm(dim=1).clamp_min(torch.finfo(reference.dtype).tiny)
    return difference / scale
