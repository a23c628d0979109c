"""Regularisers that keep a fine-tuned denoiser near its pretrained self.

* :func:`weight_regulariser` (PIRF): ``lam * sum ||theta - theta_pre||^2`` over the
  trainable weights. ``theta_pre`` must be a snapshot of the *pretrained* weights, taken
  after they are loaded (:func:`pretrained_snapshot`); a copy made before loading would
  pull toward the random initialisation.
* :func:`distillation_regulariser` (DRaFT+-style, the costlier alternative): the squared
  difference between the fine-tuned and the frozen pretrained denoiser outputs on
  trajectory states, which costs one extra forward pass per state. With a ``mask`` it
  compares only some entries: the PDE's inputs (``--distill-on inputs``), so that the
  prior keeps drawing the inputs it drew while the reward reshapes the solution.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from pirf.errors import PirfError


def pretrained_snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached copies of ``model``'s current (pretrained) parameters, by name."""
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def weight_regulariser(
    model: nn.Module, pretrained_state: Mapping[str, torch.Tensor], lam: float
) -> torch.Tensor:
    """``lam * sum ||theta - theta_pre||^2`` over the parameters that require grad.

    Its gradient is ``2 lam (theta - theta_pre)``: a pull toward the pretrained weights,
    zero at them. Frozen parameters do not take part (they cannot move).
    """
    terms = []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        if name not in pretrained_state:
            raise PirfError(f"the pretrained state has no parameter '{name}'")
        reference = pretrained_state[name].to(parameter.device, parameter.dtype)
        terms.append((parameter - reference).square().sum())
    if not terms:
        raise PirfError("the model has no trainable parameters to regularise")
    return lam * torch.stack(terms).sum()


def distillation_regulariser(
    model: nn.Module,
    frozen_pretrained: nn.Module,
    states: Sequence[torch.Tensor],
    sigmas: Sequence[float],
    mu: float,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """``mu * mean over states of mean((D_theta(x, s) - D_pre(x, s))^2)``.

    ``states`` are sampler states (detached: the penalty acts on the weights, not on the
    trajectory) at noise levels ``sigmas``; the pretrained denoiser runs without gradient.
    ``mask`` (boolean ``(C, H, W)``): the mean is over the entries it marks only.
    """
    if mask is not None and not bool(mask.any()):
        raise PirfError("the distillation mask marks no entry")
    if len(states) != len(sigmas) or not states:
        raise PirfError("distillation needs one noise level per state, and at least one state")
    terms = []
    for state, sigma in zip(states, sigmas, strict=True):
        x = state.detach()
        level = torch.full((x.shape[0],), float(sigma), dtype=x.dtype, device=x.device)
        with torch.no_grad():
            target = frozen_pretrained(x, level)
        squared = (model(x, level) - target).square()
        if mask is not None:
            squared = squared[:, mask.to(x.device)]
        terms.append(squared.mean())
    return mu * torch.stack(terms).mean()


__all__ = ["distillation_regulariser", "pretrained_snapshot", "weight_regulariser"]
