"""PG-Diffusion baseline: exact initialisation from the base model, the physics condition,
condition dropout, guided sampling, checkpoints and a short training run."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

import pirf.data
import pirf.pdes
from pirf.baselines.pgdiffusion import (
    PG_BACKBONE,
    PGDiffusionConfig,
    condition_drops,
    normalise_condition,
    pg_denoise,
    pg_from_base,
    pg_loss,
    pg_network_evaluations,
    pgdiffusion_train,
    physics_condition,
    residual_gradient,
    wrappers,
)
from pirf.errors import PirfError
from pirf.finetune.reward import residual_loss
from pirf.models import (
    EDMDenoiser,
    edm_loss,
    load_checkpoint,
    load_model,
    preset_denoiser,
    read_checkpoint_info,
    save_checkpoint,
)
from pirf.pdes.normalisation import Normalisation
from pirf.sampling import generate, karras_sigmas, sample

PDE = pirf.pdes.get("poisson")
NORMALISATION = Normalisation((0.1, -0.2), (2.0, 0.5))


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def base_model(dtype: torch.dtype = torch.float32) -> EDMDenoiser:
    """A tiny 2-channel U-Net denoiser whose near-zero output layer is redrawn, so that its
    output depends visibly on every layer."""
    torch.manual_seed(0)
    model = preset_denoiser("tiny", channels=2, resolution=8, base_channels=8, bf16=False)
    with torch.no_grad():
        model.backbone.out_conv.weight.normal_(0.0, 0.05)
    return model.to(dtype).eval()


def conditioned(model: EDMDenoiser) -> EDMDenoiser:
    """The PG model of ``model`` with its condition inputs switched on (non-zero stem
    weights for the condition channels), as training would make them."""
    torch.manual_seed(1)
    pg = pg_from_base(model)
    with torch.no_grad():
        pg.backbone.unet.stem.weight[:, 2:].normal_(0.0, 0.3)
    return pg.eval()


def draw(shape: tuple[int, ...], seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize(("dtype", "atol"), [(torch.float32, 1e-6), (torch.float64, 1e-12)])
def test_initial_model_equals_the_base_for_any_condition(dtype, atol):
    base = base_model(dtype)
    torch.manual_seed(5)
    pg = pg_from_base(base).eval()
    assert pg.backbone.unet.stem.weight.shape[1] == 4
    x = draw((3, 2, 8, 8), 1, dtype)
    sigma = torch.tensor([0.05, 1.0, 20.0], dtype=dtype)
    with torch.no_grad():
        expected = base(x, sigma)
        for condition in (draw((3, 2, 8, 8), 2, dtype) * 100, None):
            got = pg_denoise(pg, x, sigma, condition)
            torch.testing.assert_close(got, expected, rtol=0, atol=atol)
        torch.testing.assert_close(pg(x, sigma), expected, rtol=0, atol=atol)
    with pytest.raises(PirfError, match="U-Net"):
        pg_from_base(EDMDenoiser(torch.nn.Identity()))


def test_initial_model_keeps_the_base_models_position_channels():
    # A Kolmogorov-like base model sees cos, sin of a position harmonic after its fields:
    # the PG stem must keep those weights behind the new condition channels.
    torch.manual_seed(0)
    base = preset_denoiser(
        "tiny",
        channels=3,
        resolution=8,
        base_channels=8,
        bf16=False,
        periodic=(True, True),
        position_harmonics=((1, 2),),
    )
    with torch.no_grad():
        base.backbone.out_conv.weight.normal_(0.0, 0.05)
    base.eval()
    pg = pg_from_base(base).eval()
    assert pg.backbone.unet.stem.weight.shape[1] == 3 + 3 + 2
    x, sigma = draw((2, 3, 8, 8), 1), torch.tensor([0.3, 3.0])
    with torch.no_grad():
        got = pg_denoise(pg, x, sigma, draw((2, 3, 8, 8), 2) * 100)
        torch.testing.assert_close(got, base(x, sigma), rtol=0, atol=1e-6)


def test_condition_is_the_residual_gradient_normalised_per_sample():
    x = draw((2, 2, 8, 8), 3, torch.float64) * 0.5
    gradient = residual_gradient(x, PDE, NORMALISATION)

    def loss(state: torch.Tensor) -> float:
        return float(residual_loss(PDE, NORMALISATION, state, dtype=torch.float64).sum())

    eps = 1e-4
    for seed in range(3):
        direction = draw(x.shape, 10 + seed, torch.float64)
        finite = (loss(x + eps * direction) - loss(x - eps * direction)) / (2 * eps)
        assert float((gradient * direction).sum()) == pytest.approx(finite, rel=1e-7)
    condition, raw = physics_condition(x, PDE, NORMALISATION)
    assert torch.equal(raw, gradient)
    rms = condition.flatten(1).square().mean(dim=1).sqrt()
    torch.testing.assert_close(rms, torch.ones(2, dtype=torch.float64))
    # Residuals in other units (a gradient k times larger) give the same condition.
    torch.testing.assert_close(normalise_condition(1e6 * raw), condition, rtol=1e-12, atol=0)
    # A field with zero residual gets a zero condition, not NaN.
    zero_state = NORMALISATION.to_model(torch.zeros(1, 2, 8, 8, dtype=torch.float64))
    condition, _ = physics_condition(zero_state, PDE, NORMALISATION)
    assert torch.equal(condition, torch.zeros_like(condition))


def test_dropping_every_condition_gives_the_unconditional_loss():
    pg = conditioned(base_model())
    x = draw((4, 2, 8, 8), 4) * 0.5
    sigma = torch.tensor([0.02, 0.3, 2.0, 40.0])
    noise = draw((4, 2, 8, 8), 5)
    drop = condition_drops(0, range(4), 1.0)
    assert drop.all() and not condition_drops(0, range(4), 0.0).any()
    kwargs = {"pde": PDE, "normalisation": NORMALISATION}
    with torch.no_grad():
        dropped = pg_loss(pg, x, sigma, noise, drop=drop, **kwargs)
        unconditional = edm_loss(pg, x, sigma=sigma, noise=noise)
        conditional = pg_loss(pg, x, sigma, noise, **kwargs)
    assert torch.equal(dropped, unconditional)
    assert not torch.allclose(conditional, unconditional)
    # Drops are keyed by sample position, not by batch.
    whole = condition_drops(3, range(8), 0.5)
    halves = torch.cat([condition_drops(3, range(4), 0.5), condition_drops(3, range(4, 8), 0.5)])
    assert torch.equal(whole, halves)


def test_unguided_sampling_is_sampling_the_conditional_model():
    pg = conditioned(base_model())
    noise = draw((2, 2, 8, 8), 6)
    sigmas = karras_sigmas(4)
    steps: list[int] = []
    got = sample(
        pg,
        noise,
        sigmas,
        callback=lambda info: steps.append(info.nfe),
        **wrappers(pg, PDE, NORMALISATION, guidance_w=0.0, step_zeta=0.0),
    )

    def conditional(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        condition, _ = physics_condition(x, PDE, NORMALISATION)
        return pg_denoise(pg, x, sigma, condition, autocast=False)

    torch.testing.assert_close(got, sample(conditional, noise, sigmas), rtol=0, atol=0)
    assert steps[-1] == pg_network_evaluations(4, 0.0) == 7


def explicit_pg_heun(pg, noise, sigmas, guidance_w: float, step_zeta: float) -> torch.Tensor:
    """PG-Diffusion's sampler written out: Heun steps on the guided denoiser
    ``(w + 1) D(x | g) - w D(x | 0)``, then the direct step along the raw residual gradient
    of the state each step started from."""

    def guided(x: torch.Tensor, sigma: float) -> torch.Tensor:
        condition, _ = physics_condition(x, PDE, NORMALISATION)
        level = torch.full((x.shape[0],), sigma)
        conditional = pg_denoise(pg, x, level, condition, autocast=False)
        unconditional = pg_denoise(pg, x, level, None, autocast=False)
        return (guidance_w + 1) * conditional - guidance_w * unconditional

    levels = [float(level) for level in sigmas]
    with torch.no_grad():
        x = noise * levels[0]
        for sigma, sigma_next in itertools.pairwise(levels):
            slope = (x - guided(x, sigma)) / sigma
            predicted = x + (sigma_next - sigma) * slope
            if sigma_next == 0:
                x_next = predicted
            else:
                slope_next = (predicted - guided(predicted, sigma_next)) / sigma_next
                x_next = x + (sigma_next - sigma) * 0.5 * (slope + slope_next)
            x = x_next - step_zeta * residual_gradient(x, PDE, NORMALISATION)
    return x


def test_guided_sampling_is_the_written_out_sampler():
    pg = conditioned(base_model())
    noise = draw((2, 2, 8, 8), 6)
    sigmas = karras_sigmas(4)
    for guidance_w, step_zeta in ((1.0, 1e-4), (2.0, 0.0)):
        steps: list[int] = []
        got = sample(
            pg,
            noise,
            sigmas,
            callback=lambda info, steps=steps: steps.append(info.nfe),
            **wrappers(pg, PDE, NORMALISATION, guidance_w=guidance_w, step_zeta=step_zeta),
        )
        expected = explicit_pg_heun(pg, noise, sigmas, guidance_w, step_zeta)
        assert torch.equal(got, expected)
        assert steps[-1] == pg_network_evaluations(4, guidance_w) == 14
    unguided = sample(pg, noise, sigmas, **wrappers(pg, PDE, NORMALISATION, guidance_w=0.0))
    assert torch.isfinite(got).all() and not torch.allclose(got, unguided)


def test_generation_does_not_depend_on_the_batch_size():
    pg = conditioned(base_model())
    physics = wrappers(pg, PDE, NORMALISATION, step_zeta=1e-4)
    one = generate(pg, 3, (2, 8, 8), 7, steps=3, batch_size=1, **physics)
    two = generate(pg, 3, (2, 8, 8), 7, steps=3, batch_size=2, **physics)
    # Convolutions may group work differently per batch size: equal up to float32 rounding,
    # carried through the steps (measured: 3e-5 at most), as for pirf.sampling.generate.
    torch.testing.assert_close(one.samples, two.samples, rtol=1e-4, atol=1e-4)
    again = generate(pg, 3, (2, 8, 8), 7, steps=3, batch_size=2, **physics)
    assert torch.equal(again.samples, two.samples)
    assert one.samples.shape == (3, 2, 8, 8) and one.samples.dtype == torch.float32
    assert one.nfe_per_sample == pg_network_evaluations(3, 1.0) == 10
    assert one.backward_per_sample == one.backward_nfe_per_sample == 0
    assert one.method == "heun" and two.batch_size == 2


def test_checkpoint_round_trip_gives_the_same_outputs(tmp_path):
    pg = conditioned(base_model())
    save_checkpoint(tmp_path / "pg", pg, pde=PDE, normalisation=NORMALISATION, resolution=8)
    info = read_checkpoint_info(tmp_path / "pg")
    assert info.architecture["backbone"] == PG_BACKBONE
    loaded = load_checkpoint(tmp_path / "pg", bf16=False).model
    x = draw((2, 2, 8, 8), 8)
    condition = draw((2, 2, 8, 8), 9)
    with torch.no_grad():
        for given in (condition, None):
            assert torch.equal(pg_denoise(loaded, x, 0.7, given), pg_denoise(pg, x, 0.7, given))


@pytest.fixture(scope="module")
def base_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """8 x 8 Poisson data and an (untrained) base checkpoint for it."""
    root = tmp_path_factory.mktemp("pg")
    data = root / "poisson8.h5"
    pirf.data.generate("poisson", 8, 8, 0, data)
    with pirf.data.load(data) as opened:
        normalisation = opened.normalisation
    base = base_model()
    save_checkpoint(
        root / "base", base, ema=base, pde=PDE, normalisation=normalisation, resolution=8
    )
    return data, root / "base"


def test_training_run_writes_a_loadable_conditional_checkpoint(base_files, tmp_path):
    data, ckpt = base_files
    config = PGDiffusionConfig(ckpt, data, tmp_path / "run", iters=3, batch=4, lr=1e-3)
    summary = pgdiffusion_train(config)
    assert summary["iterations"] == 3 and summary["final_loss"] > 0
    assert 0 <= summary["final_dropped"] <= 1
    path = Path(summary["checkpoint"])
    info = read_checkpoint_info(path)
    assert info.extra["baseline"] == "pg-diffusion" and info.training["drop_prob"] == 0.1
    model = load_model(path)
    assert model.shape == (2, 8, 8) and model.denoiser.architecture["backbone"] == PG_BACKBONE
    stem = model.denoiser.backbone.unet.stem.weight.detach()
    assert float(stem[:, 2:].abs().max()) > 0  # training switched the condition on
    result = generate(
        model.denoiser,
        2,
        model.shape,
        0,
        steps=2,
        **wrappers(model.denoiser, model.pde, model.normalisation),
    )
    assert torch.isfinite(result.samples).all()
    dropped = pgdiffusion_train(
        PGDiffusionConfig(ckpt, data, tmp_path / "dropped", iters=2, batch=4, drop_prob=1.0)
    )
    assert dropped["final_dropped"] == 1.0


def test_bad_arguments_raise(base_files, tmp_path):
    data, ckpt = base_files
    with pytest.raises(PirfError, match="drop_prob"):
        pgdiffusion_train(PGDiffusionConfig(ckpt, data, tmp_path / "run", drop_prob=1.5))
    other = tmp_path / "poisson16.h5"
    pirf.data.generate("poisson", 2, 16, 0, other)
    with pytest.raises(PirfError, match="resolution mismatch"):
        pgdiffusion_train(PGDiffusionConfig(ckpt, other, tmp_path / "run", iters=1, batch=2))
    pg = conditioned(base_model())
    with pytest.raises(PirfError, match="step_zeta"):
        wrappers(pg, PDE, NORMALISATION, step_zeta=-1.0)
    with pytest.raises(PirfError, match="guidance_w"):
        wrappers(pg, PDE, NORMALISATION, guidance_w=float("nan"))
    with pytest.raises(PirfError, match="PG-Diffusion denoiser"):
        wrappers(base_model(), PDE, NORMALISATION)
