"""Evaluation: physics and data-fidelity metrics of generated PDE fields.

Pure tensor functions (no files): the protocol of the project's evaluation specification.

* :func:`evaluate_fields`: every metric of samples against held-out reference data, with
  the fidelity floors beside them; :func:`ground_truth_floor`: the same metrics of held-out
  ground truth. Both return JSON-ready nested dicts. :func:`prepare_reference` computes the
  reference side once, to score several sample sets against the same data.
* Physics (:mod:`~pirf.evaluation.physics`): residual MSE / MAE per sample in float64 and
  solver consistency, summarised by mean, median and 90th percentile.
* Fidelity (:mod:`~pirf.evaluation.fidelity`): MMD and energy distance on raw and
  per-scale features, the log-spectrum error, diversity, PDE-specific statistics
  (:mod:`~pirf.evaluation.statistics`).
* Building blocks: :mod:`~pirf.evaluation.distances` (two-sample distances),
  :mod:`~pirf.evaluation.spectra` (windowed power spectra).

``docs/evaluation.md`` explains each metric, its floor and how to read it.
"""

from pirf._lazy import lazy_exports

__all__ = lazy_exports(
    __name__,
    {
        "distances": ["energy_distance", "mmd", "pairwise_sq_distances"],
        "metrics": [
            "PreparedReference",
            "evaluate_fields",
            "ground_truth_floor",
            "prepare_reference",
        ],
        "physics": [
            "consistency_per_sample",
            "consistency_summary",
            "residual_per_sample",
            "residual_summary",
        ],
        "results": ["Headline", "RunSummary", "headline"],
        "spectra": ["log_spectrum_error", "radial_power_spectrum", "spectra"],
        "statistics": ["register_statistic", "statistics_for"],
    },
)
