"""A ``diffusers`` ``UNet2DModel`` (built from a config; nothing is downloaded) as a pirf
denoiser: ``D`` equals the DDPM scheduler's own predicted original sample, checkpoints
round-trip bitwise, and wrong schedulers are refused."""

from __future__ import annotations

import pytest
import torch

from pirf.errors import PirfError
from pirf.models import from_diffusers, load_checkpoint, save_checkpoint
from pirf.models.edm import build_denoiser

diffusers = pytest.importorskip("diffusers")


def tiny_unet(seed: int = 0):
    torch.manual_seed(seed)
    return diffusers.UNet2DModel(
        sample_size=8,
        in_channels=2,
        out_channels=2,
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
    ).eval()


def scheduler(**options):
    return diffusers.DDPMScheduler(num_train_timesteps=100, clip_sample=False, **options)


def test_denoiser_is_the_schedulers_predicted_original_sample():
    unet, ddpm = tiny_unet(), scheduler()
    model = from_diffusers(unet, ddpm)
    acp = ddpm.alphas_cumprod.double()
    generator = torch.Generator().manual_seed(1)
    for t in (0, 7, 50, 99):
        sigma = float(((1 - acp[t]) / acp[t]).sqrt())
        x = torch.randn(2, 2, 8, 8, generator=generator)  # EDM space: y + sigma n
        x_t = x / (1 + sigma**2) ** 0.5  # the same state in the scheduler's variables
        with torch.no_grad():
            eps = unet(x_t, t).sample
            expected = ddpm.step(eps, t, x_t).pred_original_sample
            got = model(x, sigma)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * max(1.0, sigma))


def test_checkpoint_round_trip_is_bitwise_and_needs_no_import(tmp_path):
    model = from_diffusers(tiny_unet(), scheduler(), timesteps="interpolate")
    info = save_checkpoint(tmp_path / "ckpt", model)
    assert info.architecture["config"]["network"]["backbone"] == "diffusers_unet2d"
    loaded = load_checkpoint(tmp_path / "ckpt").model  # a built-in backbone: no import
    x = torch.randn(3, 2, 8, 8, generator=torch.Generator().manual_seed(2))
    sigma = torch.tensor([0.02, 0.9, 30.0])
    with torch.no_grad():
        assert torch.equal(loaded(x, sigma), model.eval()(x, sigma))
    with torch.device("meta"):  # what pirf finetune's checks build
        meta = build_denoiser(info.architecture)
    assert meta.top_module_names() == loaded.top_module_names()


def test_default_top_modules_and_shape():
    model = from_diffusers(tiny_unet(), scheduler())
    assert model.top_module_names() == [
        "backbone.network.up_blocks.1",
        "backbone.network.conv_norm_out",
        "backbone.network.conv_out",
    ]
    custom = from_diffusers(tiny_unet(), alphas_cumprod=scheduler().alphas_cumprod,
                            top_modules=["conv_out"], shape=(2, 16, 16))  # fmt: skip
    assert custom.top_module_names() == ["backbone.network.conv_out"]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: from_diffusers(tiny_unet(), scheduler(prediction_type="v_prediction")),
         "prediction_type is 'v_prediction'; from_diffusers converts epsilon-prediction"),
        (lambda: from_diffusers(tiny_unet()), "give the scheduler or its alphas_cumprod"),
        (lambda: from_diffusers(tiny_unet(), scheduler(), shape=(3, 8, 8)),
         "calling the wrapped UNet2DModel on input (2, 3, 8, 8) failed"),
        (lambda: from_diffusers(tiny_unet(), scheduler(), top_modules=["head"]),
         "UNet2DModel has no module named 'head'; valid names: conv_in, time_proj"),
    ],
)  # fmt: skip
def test_refusals_are_one_line(call, message):
    with pytest.raises(PirfError) as error:
        call()
    assert message in str(error.value) and "\n" not in str(error.value)
