"""EDM preconditioning and training loss (Karras et al. 2022, "Elucidating the design space").

The denoiser ``D(x, sigma)`` estimates the clean field from ``x = y + sigma n``. A raw
network ``F`` is wrapped so that its input and its training target have unit variance at
every noise level::

    D(x, sigma) = c_skip x + c_out F(c_in x, c_noise)
    c_skip  = sd^2 / (sigma^2 + sd^2)          c_out = sigma sd / sqrt(sigma^2 + sd^2)
    c_in    = 1 / sqrt(sigma^2 + sd^2)         c_noise = ln(sigma) / 4

with ``sd = sigma_data = 0.5``, the standard deviation of normalised data. Training draws
``ln sigma ~ N(P_mean, P_std^2)`` and weights the squared error by
``(sigma^2 + sd^2) / (sigma sd)^2 = 1 / c_out^2``, which makes the loss of ``F`` itself an
unweighted mean square.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from pirf.errors import PirfError
from pirf.models.backbone import (
    build_backbone,
    check_architecture,
    named_modules_under,
    top_module_names,
    user_network,
)

SIGMA_DATA = 0.5
"""Standard deviation of the normalised data (see ``pirf.pdes.normalisation``)."""
P_MEAN = -1.2
"""Mean of ``ln sigma`` in training."""
P_STD = 1.2
"""Standard deviation of ``ln sigma`` in training."""

INTERFACES = ("edm", "edm_sigma", "denoiser")
"""What a backbone computes, by its class attribute ``denoiser_interface`` (default ``edm``):

- ``edm``: ``F(c_in x, c_noise)``, preconditioned as in the module docstring;
- ``edm_sigma``: the same ``F`` but it receives ``sigma`` itself and maps it to its own
  noise input (``pirf.models.wrap`` with a ``noise_label`` other than EDM's);
- ``denoiser``: ``D(x, sigma)`` itself, no preconditioning (a user's complete denoiser, or
  a converted epsilon-prediction model, ``pirf.models.vp``).
"""


@dataclass(frozen=True)
class EDMCoefficients:
    """The four preconditioning factors, each broadcastable against ``(B, C, H, W)``."""

    c_skip: torch.Tensor
    c_out: torch.Tensor
    c_in: torch.Tensor
    c_noise: torch.Tensor
    """Noise labels of shape ``(B,)`` (what the backbone receives)."""


def edm_coefficients(sigma: torch.Tensor, sigma_data: float = SIGMA_DATA) -> EDMCoefficients:
    """Preconditioning factors for noise levels ``sigma`` ``(B,)``.

    ``c_skip``, ``c_out`` and ``c_in`` come back as ``(B, 1, 1, 1)``; ``c_noise`` as ``(B,)``.
    """
    sigma = sigma.reshape(-1, 1, 1, 1)
    total = sigma**2 + sigma_data**2
    return EDMCoefficients(
        c_skip=sigma_data**2 / total,
        c_out=sigma * sigma_data / total.sqrt(),
        c_in=total.rsqrt(),
        c_noise=sigma.log().reshape(-1) / 4,
    )


def loss_weight(sigma: torch.Tensor, sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """EDM loss weight ``(sigma^2 + sd^2) / (sigma sd)^2`` (elementwise)."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def working_dtype(x: torch.Tensor) -> torch.dtype:
    """float32, or float64 when the caller computes in double precision: the dtype of the
    denoiser's arithmetic and of the losses built on it."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def per_sample_sigma(sigma: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """Noise levels ``(B,)`` for the batch ``x`` in its working dtype, from a number, a 0-d
    tensor or one value per sample."""
    sigma = torch.as_tensor(sigma, dtype=working_dtype(x), device=x.device).reshape(-1)
    if sigma.numel() == 1:
        return sigma.expand(x.shape[0])
    if sigma.numel() != x.shape[0]:
        raise PirfError(
            f"sigma must be a scalar or have one value per sample ({x.shape[0]}); "
            f"got {sigma.numel()} values"
        )
    return sigma


class EDMDenoiser(nn.Module):
    """Wraps a backbone ``F((B, C, H, W), (B,)) -> (B, C, H, W)`` into the denoiser ``D``.

    ``forward(x, sigma)`` accepts ``sigma`` as a number, a 0-d tensor or a ``(B,)`` tensor and
    returns float32 (float64 for float64 input). On CUDA the backbone runs under bfloat16
    autocast when ``bf16`` is set (the preconditioning arithmetic stays in float32); pass
    ``autocast=False`` to a call to force full precision, e.g. for the last sampler steps
    whose accuracy sets the residual floor. Further keyword arguments are conditioning for
    a conditional backbone, handed to it as given (not preconditioned): ``D(x, sigma,
    condition=g)`` is ``c_skip x + c_out F(c_in x, c_noise, condition=g)``.

    A backbone whose class sets ``denoiser_interface`` (see :data:`INTERFACES`) receives
    ``sigma`` instead of ``c_noise``, or computes ``D`` itself.
    """

    network_attribute = "backbone"
    """The submodule holding the wrapped network (``pirf.models.backbone.user_network``)."""

    def __init__(
        self,
        backbone: nn.Module,
        sigma_data: float = SIGMA_DATA,
        *,
        bf16: bool = True,
        architecture: dict | None = None,
    ) -> None:
        super().__init__()
        if not sigma_data > 0:
            raise PirfError(f"sigma_data must be positive, got {sigma_data}")
        self.backbone = backbone
        self.sigma_data = float(sigma_data)
        self.bf16 = bf16
        if architecture is None and hasattr(backbone, "architecture"):
            architecture = backbone.architecture()
        self.architecture = architecture
        """Registry entry that rebuilds the backbone (``pirf.models.build_backbone``), if known."""

    def forward(
        self,
        x: torch.Tensor,
        sigma: torch.Tensor | float,
        *,
        autocast: bool | None = None,
        **conditioning: torch.Tensor | None,
    ) -> torch.Tensor:
        x = x.to(working_dtype(x))
        sigma = per_sample_sigma(sigma, x)
        use_bf16 = self.bf16 if autocast is None else autocast
        # On CUDA the context is always entered: disabled, it also switches off an autocast
        # region the caller may be in, so autocast=False really means float32.
        context = (
            torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16)
            if x.device.type == "cuda"
            else contextlib.nullcontext()
        )
        interface = getattr(self.backbone, "denoiser_interface", "edm")
        if interface == "denoiser":
            with context:
                return self.backbone(x, sigma, **conditioning).to(x.dtype)
        coefficients = edm_coefficients(sigma, self.sigma_data)
        labels = sigma if interface == "edm_sigma" else coefficients.c_noise
        with context:
            raw = self.backbone(coefficients.c_in * x, labels, **conditioning)
        return coefficients.c_skip * x + coefficients.c_out * raw.to(x.dtype)

    def top_module_names(
        self, blocks: int | None = None, prefixes: list[str] | None = None
    ) -> list[str]:
        """Names (relative to this module) of the modules layer-wise fine-tuning trains.

        ``prefixes`` names them explicitly, relative to the network the user wrote
        (:func:`~pirf.models.backbone.user_network`: the backbone, or the network inside
        ``pirf.models.wrap``); otherwise the backbone's own method picks them (a pirf U-Net:
        the last ``blocks`` full-resolution decoder blocks and the output layers; a wrapped
        network: the ``top_modules`` it was wrapped with).
        """
        if prefixes is not None:
            prefix, network = user_network(self)
            names = list(prefixes)
            named_modules_under(network, names)  # one error naming every unknown name
            return [prefix + name for name in names]
        return [f"backbone.{name}" for name in top_module_names(self.backbone, blocks)]


def build_denoiser(
    architecture: dict,
    *,
    sigma_data: float = SIGMA_DATA,
    bf16: bool = True,
    allow_import: bool = False,
) -> EDMDenoiser:
    """An :class:`EDMDenoiser` around the backbone an architecture describes (fresh weights)."""
    spec = check_architecture(architecture)
    backbone = build_backbone(spec, allow_import=allow_import)
    return EDMDenoiser(backbone, sigma_data, bf16=bf16, architecture=spec)


def sample_training_noise(
    x: torch.Tensor,
    generator: torch.Generator | list[torch.Generator] | None = None,
    *,
    p_mean: float = P_MEAN,
    p_std: float = P_STD,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise levels ``(B,)`` and standard-normal noise shaped like ``x`` for the EDM loss.

    ``generator`` may be one ``torch.Generator`` on ``x``'s device for the whole batch, or
    one CPU generator per sample (``pirf.seeding.unit_generators``), which makes each
    sample's draws independent of the batch it is in; ``None`` uses the global RNG.
    """
    dtype = working_dtype(x)
    if isinstance(generator, list):
        if len(generator) != x.shape[0]:
            raise PirfError(f"need one generator per sample: {len(generator)} for {x.shape[0]}")
        normals = [torch.randn((), generator=g, dtype=torch.float64) for g in generator]
        fields = [torch.randn(x.shape[1:], generator=g, dtype=torch.float64) for g in generator]
        log_sigma = torch.stack(normals).to(device=x.device, dtype=dtype)
        noise = torch.stack(fields).to(device=x.device, dtype=dtype)
    else:
        log_sigma = torch.randn(x.shape[0], generator=generator, device=x.device, dtype=dtype)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=dtype)
    return (p_mean + p_std * log_sigma).exp(), noise


def edm_loss(
    denoiser: EDMDenoiser,
    x: torch.Tensor,
    *,
    sigma: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | list[torch.Generator] | None = None,
    p_mean: float = P_MEAN,
    p_std: float = P_STD,
) -> torch.Tensor:
    """Per-sample EDM loss ``(B,)``: ``weight(sigma) * mean((D(x + sigma n, sigma) - x)^2)``.

    The mean runs over channels and pixels, so the loss's scale does not depend on the
    resolution. ``sigma`` and ``noise`` may be given (both or neither); otherwise they are
    drawn by :func:`sample_training_noise` from ``generator``.
    """
    if (sigma is None) != (noise is None):
        raise PirfError("give both sigma and noise to edm_loss, or neither")
    x = x.to(working_dtype(x))
    if sigma is None or noise is None:
        sigma, noise = sample_training_noise(x, generator, p_mean=p_mean, p_std=p_std)
    sigma = per_sample_sigma(sigma, x)
    noisy = x + sigma.reshape(-1, 1, 1, 1) * noise.to(x.dtype)
    error = (denoiser(noisy, sigma) - x).square().flatten(1).mean(dim=1)
    return loss_weight(sigma, denoiser.sigma_data) * error


__all__ = [
    "INTERFACES",
    "P_MEAN",
    "P_STD",
    "SIGMA_DATA",
    "EDMCoefficients",
    "EDMDenoiser",
    "build_denoiser",
    "edm_coefficients",
    "edm_loss",
    "loss_weight",
    "per_sample_sigma",
    "sample_training_noise",
    "working_dtype",
]
