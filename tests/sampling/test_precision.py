"""The bf16 policy: which network calls run under autocast, and that the state stays float32.

Runs on the CPU, whose bf16 autocast follows the same rules as CUDA's: inside an enabled
region a convolution returns bfloat16.
"""

import pytest
import torch

from pirf.errors import PirfError
from pirf.sampling import FP32, NetworkCall, Precision, karras_sigmas, sample
from pirf.sampling.precision import accepts_autocast_keyword
from tests.sampling.gaussian import S


class Recorder(torch.nn.Module):
    """Gaussian denoiser through a 1x1 convolution; records each call's precision."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 1, 1, bias=False)
        torch.nn.init.ones_(self.conv.weight)
        self.calls: list[tuple[torch.dtype, bool, torch.dtype]] = []

    def forward(self, x, sigma):
        out = self.conv(x)
        self.calls.append((x.dtype, torch.is_autocast_enabled("cpu"), out.dtype))
        return S**2 / (S**2 + sigma.reshape(-1, 1, 1, 1) ** 2) * out


def run(precision, method="heun", steps=5):
    recorder, states = Recorder(), []
    out = sample(
        recorder,
        torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0)),
        karras_sigmas(steps),
        method=method,
        precision=precision,
        callback=lambda info: states.append((info.low_precision, info.x.dtype)),
    )
    return recorder.calls, states, out


BF16 = (torch.float32, True, torch.bfloat16)
F32 = (torch.float32, False, torch.float32)


def test_last_steps_run_in_float32():
    calls, states, out = run(Precision(bf16=True, fp32_steps=2))
    # Heun evaluates twice per step, once on the last: steps 0-2 (six calls) in bf16, then
    # steps 3 and 4 (two calls and one) in float32.
    assert calls == [BF16] * 6 + [F32] * 3
    assert states == [(True, torch.float32)] * 3 + [(False, torch.float32)] * 2
    assert out.dtype == torch.float32
    calls, _, _ = run(Precision(bf16=True, fp32_steps=1), method="euler")
    assert calls == [BF16] * 4 + [F32]
    assert run(Precision(bf16=True, fp32_steps=0))[0] == [BF16] * 9
    assert run(Precision(bf16=True, fp32_steps=9))[0] == [F32] * 9
    assert run(FP32)[0] == [F32] * 9


def test_bf16_changes_the_numbers_and_float32_steps_are_exact():
    _, _, reference = run(FP32)
    _, _, low = run(Precision(bf16=True, fp32_steps=2))
    difference = float((low - reference).abs().max() / reference.abs().max())
    assert 1e-4 < difference < 2e-2  # bf16 keeps 8 significant bits


def test_float32_steps_leave_an_enclosing_autocast_region():
    with torch.autocast("cpu", dtype=torch.bfloat16):
        calls, _, _ = run(Precision(bf16=True, fp32_steps=1), steps=3)
    assert calls == [BF16] * 4 + [F32]


def test_denoisers_with_an_autocast_keyword_are_told_the_precision():
    flags = []

    def denoiser(x, sigma, *, autocast=None):
        flags.append((autocast, torch.is_autocast_enabled("cpu")))
        return x * 0.5

    sample(denoiser, torch.zeros(1, 1, 2, 2), karras_sigmas(4), precision=Precision(True, 1))
    assert flags == [(True, True)] * 6 + [(False, False)]
    assert accepts_autocast_keyword(denoiser) and accepts_autocast_keyword(Recorder()) is False
    assert not accepts_autocast_keyword(lambda x, sigma: x)


def test_network_call_returns_the_state_dtype_and_counts():
    recorder = Recorder()
    call = NetworkCall(recorder, low_precision=True)
    out = call(torch.ones(1, 1, 2, 2), torch.tensor([1.0]))
    assert recorder.calls == [BF16] and out.dtype == torch.float32 and call.calls == 1
    to_float32 = NetworkCall(lambda x, sigma: x.float())
    assert to_float32(torch.ones(1, dtype=torch.float64), torch.ones(1)).dtype == torch.float64


def test_precision_is_validated():
    assert Precision(bf16=True, fp32_steps=2).low_precision(17, 20)
    assert not Precision(bf16=True, fp32_steps=2).low_precision(18, 20)
    assert not Precision(bf16=False).low_precision(0, 20)
    for bad in (-1, 1.5, True):
        with pytest.raises(PirfError, match="fp32_steps"):
            Precision(bf16=True, fp32_steps=bad)
