"""Burgers: the ETDRK4 pseudo-spectral solver, its data and the central-difference residual.

The exact solutions come from the Cole-Hopf transform: if ``phi_t = nu phi_xx`` and
``phi > 0`` then ``u = -2 nu phi_x / phi`` solves ``u_t + u u_x = nu u_xx``. With
``phi = A + B exp(-4 pi^2 nu t) cos(2 pi x)`` (``A > B > 0``),

    u(t, x) = 4 pi nu B e(t) sin(2 pi x) / (A + B e(t) cos(2 pi x)),   e(t) = exp(-4 pi^2 nu t).

``A = 1, B = 0.9`` gives ``max|u| = 0.26`` (the benchmark's typical amplitude) and a front
whose Fourier coefficients decay like ``exp(-0.47 k)``.
"""

import itertools
import math

import pytest
import torch

from pirf.errors import PirfError
from pirf.pdes.burgers import (
    Burgers,
    burgers_residual,
    burgers_substeps,
    etdrk4_coefficients,
    round_up_to_smooth,
    simulate_burgers,
)
from pirf.pdes.spectral import fourier_upsample
from pirf.seeding import unit_generators

NU = 0.01


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Run these small batched FFTs on one thread: they gain nothing from intra-op threads,
    and on a busy machine every threaded call can stall for milliseconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def cole_hopf(t: torch.Tensor, x: torch.Tensor, a: float = 1.0, b: float = 0.9) -> torch.Tensor:
    decay = b * torch.exp(-4 * math.pi**2 * NU * t)
    phase = 2 * math.pi * x
    return 4 * math.pi * NU * decay * torch.sin(phase) / (a + decay * torch.cos(phase))


def points(n: int) -> torch.Tensor:
    return torch.arange(n, dtype=torch.float64) / n


def cole_hopf_error(m: int, substeps: int, duration: float = 1.0) -> float:
    """Max error at ``t = duration`` of ``m`` points and ``substeps`` steps over it."""
    x = points(m)
    start = cole_hopf(torch.tensor(0.0, dtype=torch.float64), x)
    end = simulate_burgers(
        start[None], viscosity=NU, output_step=duration, outputs=2, substeps=substeps
    )[0, -1]
    return float((end - cole_hopf(torch.tensor(duration, dtype=torch.float64), x)).abs().max())


def test_etdrk4_converges_at_fourth_order_on_cole_hopf():
    # 128 points: the spatial error at t = 1 is below 1e-12, far under the time errors.
    errors = [cole_hopf_error(128, substeps) for substeps in (8, 16, 32, 64)]
    orders = [math.log2(coarse / fine) for coarse, fine in itertools.pairwise(errors)]
    # Measured 3.70, 3.85, 3.91: the fourth order is approached from below.
    assert all(3.6 < order < 4.4 for order in orders), orders
    assert 3.85 < orders[-1] < 4.2, orders
    assert errors[-1] < 1e-9


def test_space_discretisation_is_spectrally_accurate():
    # 256 steps: the time error (~3e-12) stays below every spatial error measured here.
    errors = [cole_hopf_error(m, 256) for m in (24, 32, 48, 64)]
    assert all(coarse / fine > 20 for coarse, fine in itertools.pairwise(errors)), errors
    # Doubling the grid gains four orders of magnitude: no algebraic order would.
    assert errors[1] / errors[3] > 1e4, errors
    assert errors[3] < 1e-10


def test_mean_of_u_is_conserved():
    rows = Burgers().sample_inputs(unit_generators(3, "train", range(4)), 32)
    rows = rows + torch.tensor([0.3, -0.2, 0.0, 0.1], dtype=torch.float64)[:, None]
    internal = simulate_burgers(
        fourier_upsample(rows, 128), viscosity=NU, output_step=1 / 32, outputs=32, substeps=8
    )
    mean = internal.mean(dim=-1)
    assert (internal[:, -1] - internal[:, 0]).abs().amax() > 0.05  # the fields do evolve
    assert (mean - mean[:, :1]).abs().max() < 1e-12
    # With M = 64 < 3 R the stored nodes alias no kept mode onto the mean: exact there too.
    stored = Burgers(grid_factor=2).solve(rows)[:, 0]
    assert (stored.mean(dim=-1) - rows.mean(dim=-1, keepdim=True)).abs().max() < 1e-12


def test_dealiased_inviscid_burgers_conserves_energy():
    # The 2/3 rule makes the scheme a Galerkin truncation, whose inviscid energy sum |u_k|^2
    # is invariant even after the front steepens past the grid (t = 0.4 > shock time 0.16):
    # only the fourth-order time error remains. Aliased products break this (and blow up).
    x = points(32)
    start = (torch.sin(2 * math.pi * x) + 0.5 * torch.cos(4 * math.pi * x + 1))[None]
    trajectory = simulate_burgers(start, viscosity=0.0, output_step=0.05, outputs=9, substeps=50)
    energy = trajectory.pow(2).mean(dim=-1)
    assert (trajectory[0, -1] - trajectory[0, 0]).abs().max() > 1.0
    assert (energy / energy[:, :1] - 1).abs().max() < 1e-8  # measured 1.8e-9


def test_residual_floor_converges_as_the_internal_step_shrinks():
    resolution, m = 32, 128
    t, x = Burgers.grid.mesh((resolution, resolution))
    exact = cole_hopf(t, x)[None, None]
    pde = Burgers()
    exact_residual = pde.residual(exact)
    floor = float(exact_residual.pow(2).mean())
    # The floor is the stencil's truncation error on the exact trajectory, not solver error.
    assert floor > 1e-4
    start = cole_hopf(torch.tensor(0.0, dtype=torch.float64), points(m))[None]
    distances, relative = [], []
    for substeps in (1, 2, 4, 8):
        fields = simulate_burgers(
            start,
            viscosity=NU,
            output_step=1 / resolution,
            outputs=resolution,
            substeps=substeps,
            stride=m // resolution,
        ).unsqueeze(1)
        residual = pde.residual(fields)
        distances.append(float((residual - exact_residual).pow(2).mean().sqrt()))
        relative.append(abs(float(residual.pow(2).mean()) / floor - 1.0))
    # Measured distance ratios 16.3, 11.9, 12.2 (fourth order); relative 6e-5 ... 1.2e-7.
    assert all(coarse / fine > 8 for coarse, fine in itertools.pairwise(distances)), distances
    assert all(coarse > fine for coarse, fine in itertools.pairwise(relative)), relative
    assert relative[-1] < 1e-6


def test_default_step_gives_a_converged_floor_on_benchmark_data():
    rows = Burgers().sample_inputs(unit_generators(0, "test", range(4)), 32)
    default = Burgers().solve(rows)
    fine = Burgers(substeps=48).solve(rows)
    floors = [float(Burgers().residual(f).pow(2).mean()) for f in (default, fine)]
    assert abs(floors[0] / floors[1] - 1.0) < 1e-5, floors
    assert (default - fine).abs().max() < 1e-6


def smooth_field(t: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``u = sin(2 pi x - 2 t) + cos(4 pi x) exp(-t) / 2`` and its exact Burgers residual."""
    wave, bump = 2 * math.pi * x - 2 * t, 4 * math.pi * x
    decay = torch.exp(-t)
    u = torch.sin(wave) + 0.5 * torch.cos(bump) * decay
    u_t = -2 * torch.cos(wave) - 0.5 * torch.cos(bump) * decay
    u_x = 2 * math.pi * torch.cos(wave) - 2 * math.pi * torch.sin(bump) * decay
    u_xx = -4 * math.pi**2 * torch.sin(wave) - 8 * math.pi**2 * torch.cos(bump) * decay
    return u, u_t + u * u_x - NU * u_xx


@pytest.mark.parametrize("time_ratio", [1, 2])
def test_residual_matches_analytic_derivatives_at_second_order(time_ratio):
    pde = Burgers()
    errors = []
    for resolution in (32, 64, 128):
        t, x = pde.grid.mesh((time_ratio * resolution, resolution))
        u, exact = smooth_field(t, x)
        residual = pde.residual(u[None, None])
        assert residual.shape == (1, 1, time_ratio * resolution - 2, resolution)
        errors.append(float((residual[0, 0] - exact[1:-1]).abs().max()))
    orders = [math.log2(coarse / fine) for coarse, fine in itertools.pairwise(errors)]
    assert all(1.9 < order < 2.1 for order in orders), orders


def test_residual_is_differentiable():
    u = torch.randn(2, 1, 6, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda f: burgers_residual(f, NU, 0.2, 0.125), (u,))
    residual = Burgers().residual(torch.randn(3, 1, 16, 16, requires_grad=True))
    residual.pow(2).mean().backward()
    with pytest.raises(PirfError):
        Burgers().residual(torch.zeros(1, 2, 16, 16))


def test_generation_is_deterministic_whatever_the_batch_and_works_in_float32():
    pde = Burgers()
    whole = pde.generate(unit_generators(7, "train", range(6)), 32)
    assert whole.shape == (6, 1, 32, 32) and whole.dtype == torch.float64
    parts = torch.cat(
        [pde.generate(unit_generators(7, "train", chunk), 32) for chunk in ([0, 1], [2], [3, 4, 5])]
    )
    # Same algorithm for every sample; FFT libraries may round differently by batch size
    # and thread count (seen: 6e-17 with two threads), never more.
    assert (whole - parts).abs().max() < 1e-14
    single = pde.generate(unit_generators(7, "train", range(6)), 32, dtype=torch.float32)
    assert single.dtype == torch.float32
    distance = (single.double() - whole).flatten(1).norm(dim=1) / whole.flatten(1).norm(dim=1)
    assert distance.max() < 1e-5  # measured 2.6e-6: float32 rounding over ~300 steps
    assert pde.consistency(single).max() < 1e-5


def test_ground_truth_is_consistent_and_perturbed_fields_are_not():
    pde = Burgers()
    fields = pde.generate(unit_generators(2, "test", range(3)), 32)
    exact = pde.consistency(fields)
    noise = 1e-3 * fields.pow(2).mean().sqrt() * torch.randn(fields.shape, dtype=fields.dtype)
    noisy = pde.consistency(fields + noise)
    assert exact.shape == (3,)
    assert exact.max() < 1e-12
    assert noisy.min() > 5e-4


def test_initial_condition_has_the_intended_spectrum_at_every_resolution():
    pde = Burgers()
    samples = 1000
    rows = pde.sample_inputs(unit_generators(0, "train", range(samples)), 32)
    k = torch.arange(1, 17, dtype=torch.float64)
    target = (49.0 * (4 * math.pi**2 * k**2 + 49.0) ** -1.25) ** 2
    target[-1] = 0.0  # 15 modes: nothing at k = 16
    # Each rfft coefficient is 32 a_k (xi - i eta) / sqrt(2): E|c_k|^2 / 32^2 = a_k^2.
    power = torch.fft.rfft(rows).abs().pow(2).mean(dim=0)[1:] / 32**2
    # 1000 chi-square(2) draws: 3.2% standard error per mode; 12% is ~4 sigma.
    assert ((power[:15] / target[:15]) - 1).abs().max() < 0.12
    assert power[15] < 1e-20
    assert torch.fft.rfft(rows)[:, 0].abs().max() < 1e-12  # zero mean
    finer = pde.sample_inputs(unit_generators(0, "train", range(3)), 64)
    assert (finer[:, ::2] - rows[:3]).abs().max() < 1e-13


def test_same_seed_gives_the_same_trajectory_at_every_resolution():
    pde = Burgers()
    coarse = pde.generate(unit_generators(4, "val", range(2)), 32)
    fine = pde.generate(unit_generators(4, "val", range(2)), 64)
    assert (fine[:, :, ::2, ::2] - coarse).abs().max() < 1e-6


def test_etdrk4_coefficients_match_closed_forms():
    step = 0.1
    linear = torch.tensor([0.0, -50.0, -200.0, -1000.0], dtype=torch.float64)
    e, e2, q, f1, f2, f3 = etdrk4_coefficients(linear, step)
    # L = 0 is classical RK4: weights h/6, h/3 (= 2 f2), h/6 and half step h/2.
    assert torch.allclose(
        torch.stack([q[0], f1[0], f2[0], f3[0]]),
        torch.tensor([step / 2, step / 6, step / 6, step / 6], dtype=torch.float64),
        rtol=1e-13,
        atol=0,
    )
    z = step * linear[1:]  # |z| >= 5: the closed forms do not cancel
    ez = torch.exp(z)
    expected = [
        step * (torch.exp(z / 2) - 1) / z,
        step * (-4 - z + ez * (4 - 3 * z + z**2)) / z**3,
        step * (2 + z + ez * (-2 + z)) / z**3,
        step * (-4 - 3 * z - z**2 + ez * (4 - z)) / z**3,
    ]
    for got, want in zip((q, f1, f2, f3), expected, strict=True):
        assert torch.allclose(got[1:], want, rtol=1e-12, atol=0)
    assert torch.allclose(e, torch.exp(step * linear)) and torch.allclose(e2**2, e)


def test_substeps_follow_the_viscous_courant_bound_per_sample():
    assert round_up_to_smooth(torch.arange(1, 14)).tolist() == [
        1,
        2,
        3,
        4,
        6,
        6,
        8,
        8,
        12,
        12,
        12,
        12,
        16,
    ]
    u0 = torch.zeros(3, 64, dtype=torch.float64)
    u0[1, 5] = 1.0
    u0[2, 7] = -0.5
    counts = burgers_substeps(u0, output_step=1 / 32, viscosity=NU, cfl=0.15, max_step=1 / 192)
    # zero field: max_step alone (6); |u| = 1: h <= 1.5e-3 -> 21 -> 24; |u| = 0.5: 6 -> 6.
    assert counts.tolist() == [6, 24, 6]
    alone = burgers_substeps(u0[1:2], output_step=1 / 32, viscosity=NU, cfl=0.15, max_step=1 / 192)
    assert alone.tolist() == [24]


def test_fourier_upsample_interpolates_band_limited_rows_exactly():
    def signal(x):
        return (
            torch.cos(2 * math.pi * 3 * x)
            + 0.3 * torch.sin(2 * math.pi * 5 * x)
            + 0.2 * torch.cos(2 * math.pi * 8 * x)  # the Nyquist mode of 16 points
        )

    coarse = signal(points(16))[None]
    fine = fourier_upsample(coarse, 48)
    assert (fine - signal(points(48))).abs().max() < 1e-13
    assert (fine[:, ::3] - coarse).abs().max() < 1e-14
    with pytest.raises(PirfError):
        fourier_upsample(coarse, 8)


def test_bad_inputs_and_parameters_are_clear_errors():
    with pytest.raises(PirfError, match="viscosity"):
        Burgers(viscosity=0.0)
    with pytest.raises(PirfError, match="substeps"):
        Burgers(substeps=0)
    with pytest.raises(PirfError, match="initial rows"):
        Burgers().solve(torch.zeros(2, 1, 32, 32))
    with pytest.raises(PirfError, match="too small"):
        Burgers().solve(torch.zeros(2, 4))
    meta = Burgers.from_preset("tiny").metadata()
    assert meta["grid"]["axes"] == ["t", "x"] and meta["channels"] == ["u"]
