"""The evaluation protocol end to end: each metric separates ground truth from corruptions.

Ground truth: exact solutions of a toy Poisson problem (GRF source, DST solver), 32 x 32.
The reference holds 256 held-out samples, the "model" 128 fresh draws, so each metric
compares 128 samples with a reference subset of 128, and its floor compares two disjoint
reference subsets of 128 (5 seeded splits).

Margins. Over 12 independent reference/sample draws of this setup, fresh ground truth
stayed within 1.45x the floor for every distance (MMD and energy, every feature block)
and within 1.35x for the spectrum error, and its diversity ratio within 0.94-1.06. So
ground truth is asserted below 2x the floor, corruptions above 5x (measured: 25x to 100x
for the joint MMD; 12x to 200x for the spectrum error).
"""

import json

import pytest
import torch

from pirf.errors import PirfError
from pirf.evaluation import (
    evaluate_fields,
    ground_truth_floor,
    prepare_reference,
    register_statistic,
)
from pirf.pdes import Normalisation, define_pde
from tests.evaluation.toy_fields import (
    ToyDarcy,
    ToyPoisson,
    add_noise,
    blur,
    collapse,
    draw,
    mispair,
    shuffle_pixels,
)

FLOOR_BAND = 2.0
"""Ground truth must lie below this multiple of the floor."""
CLEARLY_ABOVE = 5.0
"""Corruptions must lie above this multiple of the floor."""
COUNTS = {"samples": 128, "reference": 256, "subset": 128, "repeats": 5, "seed": 0}


@pytest.fixture(scope="module")
def setup():
    pde = ToyPoisson()
    train = draw(pde, 256, seed=0, stream=0)
    normalisation = Normalisation.from_fields(train)
    reference = draw(pde, 256, seed=0, stream=1)
    fresh = draw(pde, 128, seed=0, stream=2)
    noise_std = 0.005 * torch.tensor(normalisation.scale, dtype=torch.float64)
    cases = {
        "ground truth": fresh,
        "smoothed": blur(fresh, 0.7),
        "noised": add_noise(fresh, noise_std, seed=1),  # 1 % of sigma_data
        "shuffled": shuffle_pixels(fresh, seed=2),
        "mispaired": mispair(fresh),
        "collapsed": collapse(fresh),
        "shrunk": 0.8 * fresh,  # still an exact solution: only fidelity can see it
    }
    reports = {
        name: evaluate_fields(pde, fields, reference, normalisation)
        for name, fields in cases.items()
    }
    floor = ground_truth_floor(pde, reference, normalisation, n_samples=len(fresh))
    return pde, normalisation, reference, cases, reports, floor


def joint_mmd(report):
    return report["fidelity"]["distance"]["joint"]["mmd"]


def test_residual_separates_ground_truth_from_corruptions(setup):
    *_, reports, floor = setup
    mse = {name: report["physics"]["residual"]["mse"]["mean"] for name, report in reports.items()}
    assert mse["ground truth"] < 1e-20 and floor["physics"]["residual"]["mse"]["p90"] < 1e-20
    for name in ("smoothed", "noised", "shuffled", "mispaired"):
        assert mse[name] > 1e-4, name
    # A linear problem: a scaled solution is still a solution, and collapse keeps one.
    assert mse["shrunk"] < 1e-20 and mse["collapsed"] < 1e-20


def test_solver_consistency_separates_ground_truth(setup):
    *_, reports, floor = setup
    consistency = {name: r["physics"]["consistency"]["median"] for name, r in reports.items()}
    assert consistency["ground truth"] < 1e-12
    assert floor["physics"]["consistency"]["max"] < 1e-12
    for name in ("smoothed", "noised", "shuffled", "mispaired"):
        assert consistency[name] > 1e-3, name


def test_distance_puts_ground_truth_at_its_floor_and_every_corruption_above(setup):
    *_, reports, _ = setup
    for block in ("joint", "fields", "spectral"):
        for statistic in ("mmd", "energy"):
            entry = reports["ground truth"]["fidelity"]["distance"][block][statistic]
            assert entry["value"] < FLOOR_BAND * entry["floor"], (block, statistic, entry)
    for name, report in reports.items():
        if name == "ground truth":
            continue
        for statistic in ("mmd", "energy"):
            entry = report["fidelity"]["distance"]["joint"][statistic]
            assert entry["ratio"] > CLEARLY_ABOVE, (name, statistic, entry)


def test_raw_fields_alone_miss_fine_scale_corruptions(setup):
    """Why per-scale features: pixel distances cannot see faint noise or blur."""
    *_, reports, _ = setup
    for name in ("noised", "smoothed"):
        fields = reports[name]["fidelity"]["distance"]["fields"]["mmd"]
        spectral = reports[name]["fidelity"]["distance"]["spectral"]["mmd"]
        assert fields["ratio"] < FLOOR_BAND < CLEARLY_ABOVE < spectral["ratio"], name
    collapsed = reports["collapsed"]["fidelity"]["distance"]["fields"]["mmd"]
    assert collapsed["ratio"] > CLEARLY_ABOVE


def test_spectrum_error_flags_smoothing_noise_and_shuffling(setup):
    *_, reports, _ = setup
    truth = reports["ground truth"]["fidelity"]["spectrum"]["log10_error"]
    for channel in ("a", "u", "mean"):
        assert truth[channel]["value"] < FLOOR_BAND * truth[channel]["floor"], channel
    for name in ("smoothed", "noised", "shuffled"):
        error = reports[name]["fidelity"]["spectrum"]["log10_error"]["mean"]
        assert error["value"] > CLEARLY_ABOVE * error["floor"], name
    # Smoothing removes power at high wavenumbers; noise adds it.
    spectrum = reports["smoothed"]["fidelity"]["spectrum"]
    samples, reference = (spectrum["mean_power"][kind]["u"] for kind in ("samples", "reference"))
    assert samples[-1] < 0.2 * reference[-1]
    noisy = reports["noised"]["fidelity"]["spectrum"]["mean_power"]["samples"]["u"]
    assert noisy[-1] > 10 * reference[-1]
    assert spectrum["wavenumbers"] == list(range(17))


def test_diversity_flags_collapse(setup):
    *_, reports, _ = setup
    truth = reports["ground truth"]["fidelity"]["diversity"]["ratio"]
    assert 0.85 < truth["value"] < 1.15 and 0.9 < truth["floor"] < 1.1
    assert reports["collapsed"]["fidelity"]["diversity"]["ratio"]["value"] < 0.05
    assert reports["collapsed"]["fidelity"]["diversity"]["mean_distance"]["samples"] < 1e-5
    assert reports["shrunk"]["fidelity"]["diversity"]["ratio"]["value"] < 0.85


def test_ground_truth_floor_reproduces_the_floors_beside_the_model(setup):
    *_, reports, floor = setup
    model = reports["noised"]["fidelity"]
    gt = floor["fidelity"]
    for block in ("joint", "fields", "spectral"):
        for statistic in ("mmd", "energy"):
            ours, theirs = model["distance"][block][statistic], gt["distance"][block][statistic]
            assert ours["floor"] == theirs["floor"] == theirs["value"]
            assert ours["floor_std"] == theirs["floor_std"]
    ours_u, theirs_u = (m["spectrum"]["log10_error"]["u"] for m in (model, gt))
    assert ours_u["floor"] == theirs_u["value"]
    assert model["diversity"]["ratio"]["floor"] == gt["diversity"]["ratio"]["value"]
    assert "samples" not in gt["spectrum"]["mean_power"]
    assert floor["counts"] == {**COUNTS, "samples": 256}


def test_reports_are_deterministic_and_json(setup):
    pde, normalisation, reference, cases, reports, _ = setup
    again = evaluate_fields(pde, cases["ground truth"], reference, normalisation)
    assert again == reports["ground truth"]
    text = json.dumps(reports["collapsed"], allow_nan=False)
    assert json.loads(text) == reports["collapsed"]
    assert reports["ground truth"]["counts"] == COUNTS
    other_seed = evaluate_fields(pde, cases["ground truth"], reference, normalisation, seed=1)
    assert other_seed["fidelity"]["distance"] != again["fidelity"]["distance"]


def test_more_samples_than_half_the_reference_are_subsampled(setup):
    pde, normalisation, reference, cases, _, _ = setup
    many = torch.cat([cases["ground truth"], draw(pde, 72, seed=1, stream=2)])
    report = evaluate_fields(pde, many, reference, normalisation, consistency=False, repeats=2)
    assert report["counts"]["subset"] == 128 and report["counts"]["samples"] == 200
    assert report["physics"]["residual"]["mse"]["count"] == 200
    assert report["physics"]["consistency"] is None
    entry = report["fidelity"]["distance"]["joint"]["mmd"]
    assert entry["value"] < FLOOR_BAND * entry["floor"]


def test_darcy_fraction_flags_a_wrong_coefficient_distribution():
    pde = ToyDarcy()
    normalisation = Normalisation.from_fields(draw(pde, 128, seed=0, stream=0))
    reference = draw(pde, 256, seed=0, stream=1)
    truth = draw(pde, 128, seed=0, stream=2)
    # a = 12 where the GRF exceeds 0.1 (about a third of its std): 37 % instead of 50 %.
    wrong = draw(ToyDarcy(level=0.1), 128, seed=0, stream=2)
    soft = add_noise(truth, torch.tensor([0.5, 0.0]), seed=3)  # 9 std from 7.5: never crosses

    def fraction(fields, **options):
        report = evaluate_fields(pde, fields, reference, normalisation, **options)
        return report["fidelity"]["statistics"]["a_high_fraction"], report

    good, _ = fraction(truth)
    bad, _ = fraction(wrong)
    snapped, soft_report = fraction(soft)
    assert abs(good["samples"] - 0.5) < 0.03 and abs(good["reference"] - 0.5) < 0.03
    assert good["abs_error"]["value"] < 0.03
    assert bad["abs_error"]["value"] > max(0.1, 10 * bad["abs_error"]["floor"])
    # The statistic is taken after snapping: a soft coefficient snaps back to the truth.
    assert snapped == good
    # Fidelity judges the samples as generated: the soft coefficient is far from the data,
    # unless fidelity is asked to snap too.
    assert joint_mmd(soft_report)["ratio"] > CLEARLY_ABOVE
    _, snapped_report = fraction(soft, snap_fidelity=True)
    assert joint_mmd(snapped_report)["ratio"] < FLOOR_BAND


def test_user_statistics_are_reported(setup):
    _, normalisation, reference, cases, _, _ = setup
    pde = type("PeakPoisson", (ToyPoisson,), {"name": "toy-poisson-with-peak"})()
    register_statistic(pde.name, "u_peak", lambda _, f: f[:, 1].amax(dim=(-2, -1)), replace=True)
    report = evaluate_fields(pde, cases["shrunk"], reference, normalisation, repeats=1)
    peak = report["fidelity"]["statistics"]["u_peak"]
    truth = cases["ground truth"][:, 1].amax(dim=(-2, -1)).mean()
    assert peak["samples"] == pytest.approx(0.8 * float(truth))
    assert peak["abs_error"]["floor_std"] == 0.0  # one split
    with pytest.raises(PirfError, match="already has"):
        register_statistic(pde.name, "u_peak", lambda _, f: f[:, 1].mean(dim=(-2, -1)))


def test_bad_inputs_are_user_errors(setup):
    pde, normalisation, reference, cases, _, _ = setup
    fresh = cases["ground truth"]
    with pytest.raises(PirfError, match="at least 2 samples and 4 reference"):
        evaluate_fields(pde, fresh, reference[:3], normalisation)
    with pytest.raises(PirfError, match="differ in shape"):
        evaluate_fields(pde, fresh[..., :16, :16], reference, normalisation)
    with pytest.raises(PirfError, match="expects fields"):
        evaluate_fields(pde, fresh[:, :1], reference, normalisation)
    constant = define_pde("flat", ("a", "u"), lambda f: f[:, 1:])()
    with pytest.raises(PirfError, match="all identical"):
        evaluate_fields(constant, fresh, torch.zeros(8, 2, 32, 32), normalisation)


def test_benchmark_poisson_ground_truth_sits_at_its_floor():
    poisson = pytest.importorskip("pirf.pdes.poisson")
    from pirf.seeding import unit_generators

    pde = poisson.Poisson()
    reference = pde.generate(unit_generators(0, "test", range(128)), 32)
    fresh = pde.generate(unit_generators(0, "val", range(64)), 32)
    normalisation = Normalisation.from_fields(reference)
    report = evaluate_fields(pde, fresh, reference, normalisation, repeats=2)
    assert report["physics"]["residual"]["mse"]["p90"] < 1e-12
    entry = report["fidelity"]["distance"]["joint"]["mmd"]
    assert entry["value"] < FLOOR_BAND * entry["floor"]


def test_a_prepared_reference_gives_the_same_reports(setup):
    pde, normalisation, reference, cases, reports, floor = setup
    prepared = prepare_reference(pde, reference, normalisation)
    for name in ("ground truth", "noised"):
        assert evaluate_fields(pde, cases[name], prepared, normalisation) == reports[name]
    assert ground_truth_floor(pde, prepared, normalisation, n_samples=128) == floor
    with pytest.raises(PirfError, match="prepare it again"):
        evaluate_fields(pde, cases["noised"], prepared, normalisation, snap_fidelity=True)
    other = Normalisation(normalisation.shift, tuple(2 * s for s in normalisation.scale))
    with pytest.raises(PirfError, match="prepare it again"):
        ground_truth_floor(pde, prepared, other)
