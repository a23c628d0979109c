"""Kolmogorov flow: spectral operators, residual, IF-RK4 solver, floor, statistics, seeding.

Tolerances are justified next to each check; the measured values behind them are in
docs/kolmogorov.md.
"""

import math

import pytest
import torch

from pirf.errors import PirfError
from pirf.models.layers import position_features
from pirf.pdes.kolmogorov import (
    PERIODIC_SQUARE,
    Kolmogorov,
    kolmogorov_forcing,
    residual_terms,
    vorticity_residual,
)
from pirf.pdes.kolmogorov_initial import mode_amplitudes, random_vorticity
from pirf.pdes.kolmogorov_solver import VorticitySolver
from pirf.pdes.kolmogorov_spectral import (
    derivative_wavenumbers,
    rfft2,
    spectral_operators,
    wavenumbers,
)
from pirf.seeding import unit_generators

F64 = torch.float64
PHYSICS = {
    "reynolds": 40.0,
    "drag": 0.1,
    "forcing_amplitude": 4.0,
    "forcing_wavenumber": 4,
    "frame_dt": 0.125,
}


def short_tiny(**overrides):
    """The tiny preset with a short spin-up and few samples (fast tests)."""
    params = {"spinup_time": 2.0, "samples_per_trajectory": 2, "sample_spacing": 1.0}
    return Kolmogorov.from_preset("tiny", **{**params, **overrides})


# --------------------------------------------------------------------------- spectral operators
@pytest.mark.parametrize("shape", [(16, 16), (15, 15), (12, 20), (17, 10)])
def test_packed_advection_matches_four_real_transforms(shape):
    """The packed complex transform gives v . grad w exactly as four real inverse FFTs do,
    also for fields with content at every mode (Nyquist included), odd and rectangular grids."""
    w = torch.randn(3, *shape, dtype=F64, generator=torch.Generator().manual_seed(0))
    w_hat = torch.fft.rfft2(w)
    k_x, k_y = wavenumbers(shape, dtype=F64)
    d_x, d_y = derivative_wavenumbers(shape, dtype=F64)
    squared = k_x**2 + k_y**2
    psi_hat = torch.where(squared > 0, w_hat / squared.clamp_min(1.0), torch.zeros_like(w_hat))
    v_x, v_y, w_x, w_y = (
        torch.fft.irfft2(1j * k * f, s=shape)
        for k, f in ((d_y, psi_hat), (-d_x, psi_hat), (d_x, w_hat), (d_y, w_hat))
    )
    direct = v_x * w_x + v_y * w_y
    operators = spectral_operators(shape, torch.device("cpu"), F64)
    packed = torch.fft.irfft2(operators.advection_hat(w_hat, dealias=False), s=shape)
    assert torch.allclose(packed, direct, rtol=0.0, atol=1e-12 * direct.abs().max())


def _modes_field(shape, modes, t=0.0, speed=0.0):
    """Analytic ``w = sum a cos(k.x + phase - speed t)`` and its exact derivatives."""
    x, y = PERIODIC_SQUARE.mesh(shape)
    out = {key: torch.zeros(shape, dtype=F64) for key in ("w", "psi_x", "psi_y", "w_x", "w_y")}
    out["laplacian"] = torch.zeros(shape, dtype=F64)
    out["w_t"] = torch.zeros(shape, dtype=F64)
    for a, kx, ky, phase in modes:
        theta = kx * x + ky * y + phase - speed * t
        k2 = kx**2 + ky**2
        out["w"] += a * torch.cos(theta)
        out["psi_x"] += -a * kx / k2 * torch.sin(theta)
        out["psi_y"] += -a * ky / k2 * torch.sin(theta)
        out["w_x"] += -a * kx * torch.sin(theta)
        out["w_y"] += -a * ky * torch.sin(theta)
        out["laplacian"] += -a * k2 * torch.cos(theta)
        out["w_t"] += a * speed * torch.sin(theta)
    return out


MODES = [(1.3, 1, 2, 0.4), (0.7, 3, -1, 1.1), (-0.5, 0, 3, 2.0)]


@pytest.mark.parametrize("shape", [(32, 32), (24, 40), (27, 27)])
@pytest.mark.parametrize("dealias", [True, False])
def test_residual_matches_analytic_derivatives_on_band_limited_fields(shape, dealias):
    """Static band-limited fields (w0 = w1 = w2, product still inside the 2/3 band): the
    spectral residual equals the analytic one to round-off, with or without de-aliasing."""
    exact = _modes_field(shape, MODES)
    v_x, v_y = exact["psi_y"], -exact["psi_x"]
    forcing = -4.0 * torch.cos(4.0 * PERIODIC_SQUARE.mesh(shape)[1])
    analytic = (
        v_x * exact["w_x"]
        + v_y * exact["w_y"]
        - exact["laplacian"] / PHYSICS["reynolds"]
        + PHYSICS["drag"] * exact["w"]
        - forcing
    )
    fields = exact["w"].expand(1, 3, *shape)
    residual = vorticity_residual(fields, **PHYSICS, dealias=dealias)
    assert residual.shape == (1, 1, *shape)
    assert torch.allclose(residual[0, 0], analytic, rtol=0.0, atol=1e-12 * analytic.abs().max())


def test_time_difference_is_second_order():
    """A travelling wave: the central difference's error falls 4x per halving of dt."""
    speed, shape = 3.0, (16, 16)
    errors = []
    for dt in (0.1, 0.05, 0.025):
        frames = torch.stack([_modes_field(shape, MODES, t, speed)["w"] for t in (-dt, 0.0, dt)])
        terms = residual_terms(frames[None], **{**PHYSICS, "frame_dt": dt})
        w_t = _modes_field(shape, MODES, 0.0, speed)["w_t"]
        errors.append(float((terms["time"][0] - w_t).abs().max()))
    # The error is (dt^2 / 6) w_ttt + O(dt^4): ratios 4 within 2 %.
    assert all(abs(errors[i] / errors[i + 1] - 4.0) < 0.08 for i in range(2)), errors


def test_residual_is_differentiable():
    fields = torch.randn(1, 3, 12, 10, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda f: vorticity_residual(f, **PHYSICS), (fields,))


# --------------------------------------------------------------------------- exact solutions
def test_modes_on_the_forcing_shell_follow_the_exact_solution():
    """w made of the |k| = 4 modes only: the advection vanishes identically, so every mode
    relaxes as w* + (w0 - w*) exp(-lambda t), lambda = 16/Re + drag, w* = f / lambda (the
    laminar shear flow). The solver advances the deviation from w* with an exact integrating
    factor, so it follows this solution, and keeps the laminar state, to round-off. The
    residual of exact frames is exactly the central difference's error
    (lambda - sinh(lambda dt) / dt) (w1 - w*) (about 1e-3 here), again to round-off."""
    shape, re, drag = (32, 32), 40.0, 0.1
    x, y = PERIODIC_SQUARE.mesh(shape)
    decay = 16.0 / re + drag
    laminar = kolmogorov_forcing(shape, 4.0, 4) / decay

    def exact(t):
        transient = 1.5 * torch.cos(4 * x) - 0.8 * torch.sin(4 * x) + 2.0 * torch.sin(4 * y)
        return laminar + (transient + 3.0 * torch.cos(4 * y)) * math.exp(-decay * t)

    pde = Kolmogorov(reynolds=re, drag=drag, frame_dt=0.125, substeps=4)
    solver = pde.solver(32)
    advanced = solver.to_grid(solver.advance(solver.project(exact(0.0)[None]), 32))[0]
    assert (advanced - exact(1.0)).abs().max() < 1e-12 * laminar.abs().max()
    still = solver.to_grid(solver.advance(solver.project(laminar[None]), 32))[0]
    assert (still - laminar).abs().max() < 1e-12 * laminar.abs().max()

    dt = 0.125
    frames = torch.stack([exact(1.0 - dt), exact(1.0), exact(1.0 + dt)])[None]
    expected = (decay - math.sinh(decay * dt) / dt) * (exact(1.0) - laminar)
    residual = pde.residual(frames)[0, 0]
    assert expected.abs().max() > 1e-4
    assert (residual - expected).abs().max() < 1e-12 * laminar.abs().max()
    assert pde.residual(laminar.expand(1, 3, *shape)).abs().max() < 1e-12 * laminar.abs().max()


def test_time_stepping_converges_at_fourth_order():
    """IF-RK4 from a smooth random field over a short horizon (t = 0.5, nonlinear term
    active), against a 256-step reference: errors fall ~16x per halving (measured 15.5, 15.9)."""
    w0 = random_vorticity(unit_generators(0, "test", range(2)), 32, rms=3.0)
    forcing = kolmogorov_forcing((32, 32), 4.0, 4)

    def run(steps):
        solver = VorticitySolver(32, viscosity=1 / 40, drag=0.1, forcing=forcing, step=0.5 / steps)
        return solver.to_grid(solver.advance(solver.project(w0), steps))

    reference = run(256)
    errors = [float((run(n) - reference).norm() / reference.norm()) for n in (4, 8, 16)]
    orders = [math.log2(errors[i] / errors[i + 1]) for i in range(2)]
    assert all(3.7 < order < 4.3 for order in orders), (errors, orders)


# --------------------------------------------------------------------------- ground truth
def test_floor_converges_with_the_internal_step_and_scales_with_frame_dt():
    """The ground-truth residual is a floor: as the internal step shrinks the residual field
    converges at the solver's order (differences fall ~16x per halving) to the floor of the
    exact trajectory; that floor is the central difference's O(frame_dt^2) error."""
    w0 = random_vorticity(unit_generators(0, "test", range(2)), 32, rms=3.0)
    residuals = {}
    for substeps in (2, 4, 8, 32):
        pde = short_tiny(substeps=substeps)
        residuals[substeps] = pde.residual(pde.solve(w0))
    reference = residuals[32]
    gaps = [float((residuals[s] - reference).norm() / reference.norm()) for s in (2, 4, 8)]
    assert gaps[0] > 10.0 * gaps[1] > 100.0 * gaps[2], gaps
    floors = {s: float(r.pow(2).mean().sqrt()) for s, r in residuals.items()}
    assert abs(floors[2] - floors[32]) < 1e-3 * floors[32]

    floor_by_dt = []
    for frame_dt, substeps in ((0.125, 4), (0.0625, 2), (0.03125, 1)):
        pde = short_tiny(frame_dt=frame_dt, substeps=substeps)
        floor_by_dt.append(float(pde.residual(pde.solve(w0)).pow(2).mean().sqrt()))
    ratios = [floor_by_dt[i] / floor_by_dt[i + 1] for i in range(2)]
    assert all(3.6 < ratio < 4.4 for ratio in ratios), ratios


def test_ground_truth_is_consistent_and_far_below_noisy_fields():
    """Solver output re-simulates to round-off; a 1e-3 perturbation does not. The floor is
    well below the residual of the same frames with 1 % noise (measured ratio 0.085 at the
    tiny preset), and de-aliasing matters: without it the floor is ~40x larger."""
    pde = Kolmogorov.from_preset("tiny", samples_per_trajectory=3)
    fields = pde.generate(unit_generators(1, "test", range(2)), 32)
    assert fields.shape == (6, 3, 32, 32)
    assert float(pde.consistency(fields).max()) < 1e-12
    scale = float(fields.pow(2).mean().sqrt())
    noise = torch.randn(fields.shape, dtype=F64, generator=torch.Generator().manual_seed(3))
    assert float(pde.consistency(fields + 1e-3 * scale * noise).min()) > 3e-4

    floor = float(pde.residual(fields).pow(2).mean().sqrt())
    noisy = float(pde.residual(fields + 1e-2 * scale * noise).pow(2).mean().sqrt())
    assert floor < 0.2 * noisy
    assert float(pde.reference_residual(fields).pow(2).mean().sqrt()) > 5.0 * floor


def test_energy_reaches_a_statistically_steady_level_at_the_tiny_preset():
    """After the tiny preset's spin-up (30 time units), the mean kinetic energy over
    [30, 60] and [60, 90] agrees within 10 %: with 8 trajectories, energy fluctuations of
    ~12 % rms and a correlation time of a few units, the two means differ by ~2.5 % rms.
    The flow is turbulent: its energy is far below the laminar shear flow's and it varies."""
    pde = Kolmogorov.from_preset("tiny")
    solver = pde.solver(32)
    w_hat = solver.project(pde.sample_inputs(unit_generators(0, "val", range(8)), 32))
    spinup = round(pde.params["spinup_time"] / solver.step)
    w_hat = solver.advance(w_hat, spinup)
    energies = []
    for _ in range(2 * 30 * 2):  # two windows of 30 time units, sampled every 1/2
        w_hat = solver.advance(w_hat, 8)
        v_x, v_y = solver.operators.velocity(w_hat)
        energies.append(0.5 * (v_x**2 + v_y**2).mean(dim=(-2, -1)))
    energy = torch.stack(energies)
    first, second = float(energy[:60].mean()), float(energy[60:].mean())
    assert abs(first - second) < 0.1 * 0.5 * (first + second), (first, second)
    laminar = 0.5 * 0.5 * (4.0 / (4.0 * (16.0 / 40.0 + 0.1))) ** 2  # 0.5 <u^2>, u = A/4 sin
    assert second < 0.6 * laminar
    assert float(energy.std(dim=0).mean()) > 0.02 * second


# --------------------------------------------------------------------------- data
def test_generation_is_deterministic_whatever_the_batch():
    pde = short_tiny()
    together = pde.generate(unit_generators(5, "train", range(3)), 32)
    apart = torch.cat(
        [
            pde.generate(unit_generators(5, "train", [0]), 32),
            pde.generate(unit_generators(5, "train", [1, 2]), 32),
        ]
    )
    assert together.shape == (3 * pde.samples_per_unit(32), 3, 32, 32)
    assert torch.equal(together, apart)
    assert not torch.equal(together[:2], together[2:4])


def test_random_vorticity_has_the_intended_spectrum():
    """E|w_hat(k)|^2 / N^4 = c^2 a(|k|)^2 per mode, and E mean(w^2) = rms^2. With 200 draws,
    a shell of M modes has a relative standard error 1/sqrt(200 M) <= 3.6 %: tolerance 15 %."""
    draws, n, rms = 200, 32, 2.5
    w = random_vorticity(unit_generators(0, "test", range(draws)), n, rms=rms)
    assert abs(float(w.pow(2).mean()) / rms**2 - 1.0) < 0.1
    power = (rfft2(w).abs() ** 2).mean(0) / n**4
    amplitude = mode_amplitudes(4.0)
    modes = (amplitude.shape[0] - 1) // 2
    scale2 = rms**2 / float((amplitude**2).sum())
    k_x, k_y = wavenumbers((n, n), dtype=F64)
    ix = (k_x.long() + modes).clamp(0, 2 * modes).expand(n, n // 2 + 1)
    iy = (k_y.long() + modes).clamp(0, 2 * modes).expand(n, n // 2 + 1)
    inside = (k_x.abs() <= modes) & (k_y.abs() <= modes)
    expected = torch.where(inside, scale2 * amplitude[ix, iy] ** 2, torch.zeros_like(power))
    shell = (k_x**2 + k_y**2).sqrt().round().long().expand(n, n // 2 + 1)
    for radius in range(2, 10):
        selected = (shell == radius) & (k_y > 0)  # one of each +-k pair
        ratio = power[selected].sum() / expected[selected].sum()
        assert abs(float(ratio) - 1.0) < 0.15, (radius, float(ratio))
    assert float(power[~inside].max()) < 1e-20 * float(power.max())


def test_float32_follows_float64_over_a_short_horizon():
    pde = short_tiny(spinup_time=1.0, samples_per_trajectory=1)
    generators = unit_generators(2, "test", range(2))
    single = pde.generate(generators, 32, dtype=torch.float32)
    double = pde.generate(unit_generators(2, "test", range(2)), 32)
    assert single.dtype == torch.float32
    assert float((single.double() - double).norm() / double.norm()) < 1e-5
    assert pde.residual(single).dtype == torch.float32


def test_parameters_are_validated():
    with pytest.raises(PirfError, match="sample_spacing"):
        Kolmogorov(sample_spacing=0.05)
    with pytest.raises(PirfError, match="spinup_time"):
        Kolmogorov(spinup_time=1.01)
    with pytest.raises(PirfError, match="forcing wavenumber"):
        Kolmogorov(forcing_wavenumber=6).solver(16)
    assert Kolmogorov.from_preset("paper").params == Kolmogorov().params


@pytest.mark.parametrize("wavenumber", [4, 2])
def test_position_harmonic_is_the_forcing(wavenumber):
    # The base model's extra input channel must be the forcing's own shape, cos(k_f y).
    pde = Kolmogorov(forcing_wavenumber=wavenumber)
    (harmonic,) = pde.position_harmonics()
    features = position_features((harmonic,), (24, 24), dtype=torch.float64)
    forcing = kolmogorov_forcing((24, 24), 4.0, wavenumber, dtype=torch.float64)
    torch.testing.assert_close(-4.0 * features[0], forcing, rtol=0, atol=1e-12)
