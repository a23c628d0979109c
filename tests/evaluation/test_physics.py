"""Physics metrics: residual MSE / MAE summaries in float64, snapping, solver consistency."""

import numpy as np
import pytest
import torch

from pirf.errors import PirfError
from pirf.evaluation import (
    consistency_per_sample,
    consistency_summary,
    residual_per_sample,
    residual_summary,
)
from pirf.pdes import define_pde
from pirf.summaries import summarise
from tests.evaluation.toy_fields import ToyDarcy, ToyPoisson, add_noise, draw


@pytest.fixture(scope="module")
def exact() -> torch.Tensor:
    return draw(ToyPoisson(), 24, seed=3, stream=1)


def test_summary_matches_numpy():
    values = torch.tensor([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0], dtype=torch.float64)
    summary = summarise(values)
    array = values.numpy()
    assert summary["mean"] == pytest.approx(array.mean())
    assert summary["median"] == pytest.approx(np.median(array))
    assert summary["p90"] == pytest.approx(np.percentile(array, 90))
    assert summary["max"] == 9.0
    assert (summary["count"], summary["nonfinite"]) == (8, 0)


def test_summary_counts_nonfinite_samples_and_keeps_json_numbers():
    summary = summarise(torch.tensor([1.0, float("nan"), 3.0, float("inf")]))
    assert (summary["count"], summary["nonfinite"]) == (4, 2)
    assert summary["mean"] == 2.0
    empty = summarise(torch.tensor([float("nan")]))
    assert empty["mean"] is None and empty["p90"] is None


def test_residual_mse_and_mae_per_sample(exact):
    pde = ToyPoisson()
    noisy = add_noise(exact, torch.tensor([0.0, 1e-4]), seed=0)
    mse, mae, points = residual_per_sample(pde, noisy, batch_size=5)
    residual = pde.residual(noisy).numpy().reshape(len(noisy), -1)
    assert points == 30 * 30
    np.testing.assert_allclose(mse.numpy(), (residual**2).mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(mae.numpy(), np.abs(residual).mean(axis=1), rtol=1e-12)
    summary = residual_summary(pde, noisy)
    assert summary["mse"]["median"] == pytest.approx(np.median((residual**2).mean(axis=1)))
    assert summary["mae"]["p90"] == pytest.approx(np.percentile(np.abs(residual).mean(axis=1), 90))
    # Noise of 1e-4 in u is amplified by the stencil (4 / h^2 ~ 4000): MSE ~ 20 * (1e-4)^2 / h^4.
    assert summary["mse"]["mean"] > 1e-3
    assert residual_summary(pde, exact)["mse"]["max"] < 1e-20


def test_residual_is_computed_in_float64_whatever_the_sample_precision(exact):
    seen = []

    def recording(fields):
        seen.append(fields.dtype)
        return fields[:, 1:] - 2 * fields[:, :1]

    pde = define_pde("recorder", ("a", "u"), recording)()
    fields = torch.cat([exact[:, :1], 2 * exact[:, :1]], dim=1)
    for dtype in (torch.float32, torch.bfloat16):
        mse, _, _ = residual_per_sample(pde, fields.to(dtype))
        # u = 2 a holds exactly after rounding to float32 / bfloat16 (a power of two).
        assert float(mse.max()) == 0.0
    assert set(seen) == {torch.float64}


def test_snapping_is_applied_unless_disabled():
    pde = ToyDarcy()
    fields = draw(pde, 8, seed=0, stream=1)
    soft = fields.clone()
    soft[:, 0] += 0.5  # still on the right side of the midpoint 7.5
    snapped_mse, _, _ = residual_per_sample(pde, soft)
    raw_mse, _, _ = residual_per_sample(pde, soft, snap=False)
    assert float(snapped_mse.max()) < 1e-20
    assert float(raw_mse.min()) == pytest.approx(0.25, rel=1e-9)  # residual -0.5 everywhere
    assert residual_summary(pde, soft, snap=False)["snapped"] is False


def test_consistency_measures_the_distance_to_the_solver_solution(exact):
    pde = ToyPoisson()
    assert float(consistency_per_sample(pde, exact).max()) < 1e-12
    scaled = exact.clone()
    scaled[:, 1] *= 1.01
    values = consistency_per_sample(pde, scaled, batch_size=7)
    assert torch.allclose(values, torch.full_like(values, 0.01), rtol=1e-9)
    summary = consistency_summary(pde, scaled)
    assert summary["median"] == pytest.approx(0.01) and summary["count"] == len(exact)


def test_consistency_is_none_without_a_solver(exact):
    pde = define_pde("no-solver", ("a", "u"), lambda f: f[:, 1:] - f[:, :1])()
    assert consistency_summary(pde, exact) is None
    with pytest.raises(PirfError, match="no solver"):
        consistency_per_sample(pde, exact)


def test_wrong_channel_count_is_a_user_error(exact):
    with pytest.raises(PirfError, match="expects fields"):
        residual_summary(ToyPoisson(), exact[:, :1])
