"""Seeded, micro-batched generation: noise and samples independent of micro-batching,
out-of-memory halving, progress and cost reports."""

import pytest
import torch

from pirf.errors import PirfError
from pirf.sampling import (
    SAMPLING_STREAM,
    Precision,
    SamplingCost,
    StepFn,
    default_batch_size,
    generate,
    initial_noise,
)
from pirf.seeding import stacked_normal, unit_generators
from tests.sampling.gaussian import S, gaussian_denoiser


class SmallNet(torch.nn.Module):
    """A nonlinear convolutional denoiser with fixed random weights."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x, sigma):
        scale = 1 / (1 + sigma.reshape(-1, 1, 1, 1) ** 2)
        return scale * torch.tanh(self.conv(x * scale))


def test_noise_is_per_sample_and_seeded():
    noise = initial_noise(5, (2, 4, 4), seed=3)
    assert noise.dtype == torch.float32 and noise.device.type == "cpu"
    pieces = torch.cat([initial_noise(2, (2, 4, 4), 3), initial_noise(3, (2, 4, 4), 3, start=2)])
    assert torch.equal(noise, pieces)
    assert torch.equal(noise[4], initial_noise(1, (2, 4, 4), 3, start=4)[0])
    generators = unit_generators(3, SAMPLING_STREAM, range(5))
    assert torch.equal(noise, stacked_normal(generators, (2, 4, 4)).float())
    assert not torch.equal(noise, initial_noise(5, (2, 4, 4), seed=4))
    large = initial_noise(64, (1, 16, 16), seed=0)
    assert abs(float(large.mean())) < 0.02 and float(large.std()) == pytest.approx(1, abs=0.02)


def test_samples_do_not_depend_on_micro_batching():
    whole = generate(gaussian_denoiser, 7, (1, 4, 4), seed=1, steps=6, batch_size=7)
    pieces = generate(gaussian_denoiser, 7, (1, 4, 4), seed=1, steps=6, batch_size=3)
    assert torch.equal(whole.samples, pieces.samples)
    assert not torch.equal(whole.samples, generate(gaussian_denoiser, 7, (1, 4, 4), 2).samples)
    net = SmallNet()
    one = generate(net, 6, (2, 8, 8), seed=5, steps=4, batch_size=6).samples
    two = generate(net, 6, (2, 8, 8), seed=5, steps=4, batch_size=1).samples
    # Convolutions may group work differently per batch size: equal up to float32 rounding,
    # carried through the steps (measured: 2e-5 at most).
    torch.testing.assert_close(one, two, rtol=1e-4, atol=1e-4)
    assert torch.equal(one, generate(net, 6, (2, 8, 8), seed=5, steps=4, batch_size=6).samples)


def test_a_set_can_be_sampled_in_pieces_from_its_first_index():
    whole = generate(gaussian_denoiser, 7, (1, 4, 4), seed=1, steps=6)
    head = generate(gaussian_denoiser, 3, (1, 4, 4), seed=1, steps=6)
    tail = generate(gaussian_denoiser, 4, (1, 4, 4), seed=1, steps=6, start=3, batch_size=2)
    assert torch.equal(whole.samples, torch.cat([head.samples, tail.samples]))
    for bad in (-1, 1.5, True):
        with pytest.raises(PirfError, match="first sample index"):
            generate(gaussian_denoiser, 2, (1, 4, 4), seed=0, start=bad)


def test_result_reports_shape_cost_and_precision():
    result = generate(gaussian_denoiser, 7, (1, 4, 4), seed=1, steps=6, method="euler")
    assert result.samples.shape == (7, 1, 4, 4) and result.samples.dtype == torch.float32
    assert result.nfe_per_sample == 6 and result.steps == 6 and result.method == "euler"
    assert generate(gaussian_denoiser, 2, (1, 4, 4), seed=1, steps=6).nfe_per_sample == 11
    assert result.seconds > 0 and result.batch_size == default_batch_size(
        (1, 4, 4), torch.device("cpu")
    )
    assert result.samples_per_second == pytest.approx(7 / result.seconds)
    assert result.seconds_per_sample == pytest.approx(result.seconds / 7)
    low = generate(SmallNet(), 2, (2, 4, 4), seed=0, steps=3, precision=Precision(True, 1))
    assert low.precision == Precision(True, 1) and low.samples.dtype == torch.float32


class LastStepDoubled:
    """A step wrapper that doubles the result of the last step, runs it in float32 and
    counts it as a guided step with one backward pass."""

    def full_precision(self, index: int, steps: int) -> bool:
        return index == steps - 1

    def __call__(self, step: StepFn, index: int, steps: int, cost: SamplingCost) -> StepFn:
        if not self.full_precision(index, steps):
            return step

        def doubled(denoiser, x, sigma, sigma_next):
            cost.guided_steps += 1
            cost.backward += 1
            return 2 * step(denoiser, x, sigma, sigma_next)

        return doubled


def test_wrappers_change_the_denoiser_the_steps_and_the_final_state():
    plain = generate(gaussian_denoiser, 5, (1, 4, 4), seed=1, steps=6, batch_size=2)

    def mixed(network):
        # 2 D - D is D exactly, at two network evaluations per call.
        return lambda x, sigma: 2 * network(x, sigma) - network(x, sigma)

    def finish(x: torch.Tensor, cost: SamplingCost) -> torch.Tensor:
        cost.corrections += 1
        return 3 * x

    result = generate(
        gaussian_denoiser,
        5,
        (1, 4, 4),
        seed=1,
        steps=6,
        batch_size=2,
        denoiser_wrapper=mixed,
        step_wrapper=LastStepDoubled(),
        finish=finish,
    )
    # The last step lands on D(x, sigma_min), linear in x: doubling it doubles the sample.
    assert torch.equal(result.samples, 6 * plain.samples)
    # Counts are per sample: every micro-batch's trajectory costs the same.
    assert result.nfe_per_sample == 2 * plain.nfe_per_sample == 22
    assert (result.guided_steps, result.backward_per_sample, result.corrections) == (1, 1, 1)
    assert plain.guided_steps == plain.backward_per_sample == plain.corrections == 0
    # The wrapper's float32 step overrides the precision policy.
    flags = []

    def recording(x, sigma, *, autocast=None):
        flags.append(autocast)
        return gaussian_denoiser(x, sigma)

    generate(
        recording,
        1,
        (1, 4, 4),
        0,
        steps=4,
        precision=Precision(True, 0),
        step_wrapper=LastStepDoubled(),
    )
    assert flags == [True] * 6 + [False]


def test_progress_is_reported_per_micro_batch():
    seen = []
    generate(
        gaussian_denoiser,
        10,
        (1, 2, 2),
        0,
        steps=2,
        batch_size=4,
        progress=lambda *a: seen.append(a),
    )
    assert seen == [(0, 10), (4, 10), (8, 10), (10, 10)]


def test_out_of_memory_halves_the_micro_batch():
    sizes = []

    def limited(x, sigma):
        sizes.append(len(x))
        if len(x) > 5:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return gaussian_denoiser(x, sigma)

    result = generate(limited, 23, (1, 4, 4), seed=2, steps=3)
    reference = generate(gaussian_denoiser, 23, (1, 4, 4), seed=2, steps=3, batch_size=5)
    assert torch.equal(result.samples, reference.samples)
    # 23 -> 11 -> 5 (the default size exceeds n), then 5 kept for the rest.
    assert result.batch_size == 5 and sizes[0] == 23 and sizes[1] == 11
    assert set(sizes[2:]) <= {5, 3}
    with pytest.raises(PirfError, match="smaller batch size"):
        generate(limited, 8, (1, 4, 4), seed=2, steps=3, batch_size=8)


def test_default_batch_size_scales_with_the_field():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert default_batch_size((2, 32, 32), cpu) == 64
    assert default_batch_size((1, 512, 512), cpu) == 1
    assert default_batch_size((2, 64, 64), cuda) == 1024
    assert default_batch_size((3, 256, 256), cuda) == 42


def test_generated_gaussian_samples_have_the_data_variance():
    result = generate(gaussian_denoiser, 256, (1, 8, 8), seed=0, steps=40)
    # 16,384 values: the standard error of the std is about 0.6 %; the 40-step Heun bias
    # is below 0.1 % (test_samplers measures it).
    assert float(result.samples.std()) == pytest.approx(S, rel=0.025)


def test_bad_requests_fail_clearly():
    with pytest.raises(PirfError, match="positive integer"):
        generate(gaussian_denoiser, 0, (1, 4, 4), seed=0)
    with pytest.raises(PirfError, match="batch size"):
        generate(gaussian_denoiser, 2, (1, 4, 4), seed=0, batch_size=0)
    with pytest.raises(PirfError, match="batch size"):
        generate(gaussian_denoiser, 2, (1, 4, 4), seed=0, batch_size=1.5)
    with pytest.raises(PirfError, match="shape"):
        generate(gaussian_denoiser, 2, (4, 4), seed=0)
    with pytest.raises(PirfError, match="unknown sampler"):
        generate(gaussian_denoiser, 2, (1, 4, 4), seed=0, method="ddim")
