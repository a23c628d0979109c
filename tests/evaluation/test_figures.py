"""Figures for papers: shared colour scales, honest labels, the residual histogram, decade
ticks on log axes and the file formats."""

from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.colors import LogNorm
from matplotlib.ticker import LogFormatterMathtext

from pirf.errors import PirfError
from pirf.evaluation.figures import (
    FIGURE_FORMATS,
    FLOOR_LABEL,
    REFERENCE_LABEL,
    colour_scales,
    comparison_rows,
    field_limits,
    figure_texts,
    histograms,
    log_axis,
    residual_histogram_figure,
    residual_limits,
    rows_figure,
    save_comparison,
    save_figure,
    spectra_figure,
    wrapped_title,
)


def _rows() -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """A data sample and two models, whose fields and residuals differ by orders of
    magnitude (so per-row scales would differ)."""
    generator = torch.Generator().manual_seed(0)

    def draw(scale: float, shape: tuple[int, ...]) -> torch.Tensor:
        return scale * torch.randn(shape, generator=generator, dtype=torch.float64)

    return [
        (REFERENCE_LABEL, draw(1.0, (1, 2, 16, 16)), draw(1e-8, (1, 1, 16, 16))),
        ("base model", draw(3.0, (1, 2, 16, 16)), draw(1e-1, (1, 1, 16, 16))),
        ("PIRF", draw(0.5, (1, 2, 16, 16)), draw(1e-3, (1, 1, 16, 16))),
    ]


def _images_by_column(figure) -> dict[int, list]:
    """The images of a sample figure's grid, per column (colour-bar axes left out)."""
    columns: dict[int, list] = {}
    for axis in figure.axes:
        if axis.images and hasattr(axis, "get_subplotspec") and axis.get_subplotspec():
            column = axis.get_subplotspec().colspan.start
            columns.setdefault(column, []).extend(axis.images)
    return columns


def test_every_row_shares_one_colour_range_per_channel_and_one_log_residual_scale():
    rows = _rows()
    figure = rows_figure(comparison_rows(rows), channels=("a", "u"), title="poisson")
    columns = _images_by_column(figure)
    expected = field_limits([fields for _, fields, _ in rows])
    low, high = residual_limits([residual for _, _, residual in rows])
    assert sorted(columns) == [0, 1, 2]
    for channel in (0, 1):
        limits = {image.get_clim() for image in columns[channel]}
        assert len(limits) == 1 and limits.pop() == pytest.approx(expected[channel])
    residual_images = columns[2]
    assert len(residual_images) == 3
    assert all(isinstance(image.norm, LogNorm) for image in residual_images)
    assert {image.get_clim() for image in residual_images} == {(low, high)}
    # The shared range covers the bulk of every model's maps, the data's floor included.
    for _, _, residual in rows:
        assert low <= float(residual.abs().median()) <= high
    assert low < 1e-7 and high > 1e-2
    # The range is robust: over all rows, from percentiles, so it is wider than the
    # quietest row's and narrower than the extremes of the loudest.
    values = torch.cat([fields[:, 0].flatten() for _, fields, _ in rows])
    assert values.min() < expected[0][0] < expected[0][1] < values.max()
    # One colour bar per column, not one per image.
    assert len(figure.axes) == 9 + 3


def test_colour_scales_of_several_figures_are_computed_once():
    rows = _rows()
    fields = [f for _, f, _ in rows]
    residuals = [r for _, _, r in rows]
    scales = colour_scales(fields, residuals)
    assert scales.fields == field_limits(fields)
    assert scales.residual == residual_limits(residuals)
    # A figure of one model given the shared scales uses them, not its own.
    figure = rows_figure(comparison_rows(rows[1:2]), channels=("a", "u"), title="t", scales=scales)
    columns = _images_by_column(figure)
    assert columns[0][0].get_clim() == pytest.approx(scales.fields[0])
    assert columns[2][0].get_clim() == pytest.approx(scales.residual)
    # A constant channel still gets a non-empty range.
    assert field_limits([torch.zeros(1, 1, 4, 4)]) == ((-0.5, 0.5),)


def test_the_data_sample_is_a_reference_sample_never_ground_truth():
    figure = rows_figure(comparison_rows(_rows()), channels=("a", "u"), title="poisson")
    texts = figure_texts(figure)
    assert any(REFERENCE_LABEL in text for text in texts)
    assert not any("ground truth" in text.lower() for text in texts)
    assert any("base model" in text and "residual MSE" in text for text in texts)


def test_the_histogram_holds_every_sample_on_shared_log_bins():
    base = torch.tensor([1e-2, 3e-2, 1e-1, 5e-1, float("nan")], dtype=torch.float64)
    tuned = torch.tensor([1e-4, 2e-4, 1e-3, 4e-3], dtype=torch.float64)
    floor = torch.tensor([1e-12, 2e-12, 5e-13], dtype=torch.float64)
    drawn = histograms({FLOOR_LABEL: floor, "base": base, "PIRF": tuned})
    assert drawn["base"].counts.sum() == 4 and drawn["base"].left_out == 1
    assert np.array_equal(np.sort(drawn["PIRF"].values), tuned.numpy())
    assert drawn[FLOOR_LABEL].counts.sum() == 3
    # Every histogram's edges are a run of one shared lattice of log-spaced edges.
    step = np.diff(np.log10(drawn["base"].edges))[0]
    origin = np.log10(drawn[FLOOR_LABEL].edges[0])
    for histogram in drawn.values():
        offsets = (np.log10(histogram.edges) - origin) / step
        assert np.allclose(offsets, np.round(offsets)) and np.all(np.diff(offsets) > 0.5)
    for histogram in drawn.values():
        assert histogram.edges[0] <= histogram.values.min()
        assert histogram.values.max() <= histogram.edges[-1]

    figure = residual_histogram_figure(
        {"base": base, "PIRF": tuned}, reference=floor, title="poisson: residual per sample"
    )
    (axis,) = figure.axes
    assert axis.get_xscale() == "log"
    assert isinstance(axis.xaxis.get_major_formatter(), LogFormatterMathtext)
    texts = figure_texts(figure)
    assert any(text.startswith(f"{FLOOR_LABEL}, 3 samples") for text in texts)
    assert "base, 4 samples (1 not finite)" in texts and "PIRF, 4 samples" in texts
    assert any(text.startswith("floor mean") for text in texts)


def test_log_axes_label_decades_as_powers_of_ten():
    figure = spectra_figure([0, 1, 2, 3], {"data": {"u": [1.0, 1e-1, 1e-3, 1e-5]}}, title="t")
    (axis,) = figure.axes
    for scaled in (axis.xaxis, axis.yaxis):
        assert isinstance(scaled.get_major_formatter(), LogFormatterMathtext)
    figure.canvas.draw()
    labels = [label.get_text() for label in axis.yaxis.get_ticklabels() if label.get_text()]
    assert labels and all(label.startswith("$\\mathdefault{10^{") for label in labels)
    other = spectra_figure([0, 1], {"data": {"u": [1.0, 1.0]}}, title="t")
    log_axis(other.axes[0], "y")
    assert isinstance(other.axes[0].yaxis.get_major_formatter(), LogFormatterMathtext)


@pytest.mark.parametrize("figure_format", FIGURE_FORMATS)
def test_figures_are_written_in_each_format(tmp_path, figure_format):
    path = save_comparison(
        tmp_path / "samples.png",
        _rows(),
        channels=("a", "u"),
        title="poisson",
        figure_format=figure_format,
    )
    assert path == tmp_path / f"samples.{figure_format}"
    data = path.read_bytes()
    signature = {
        "png": data[:8] == b"\x89PNG\r\n\x1a\n",
        "pdf": data[:4] == b"%PDF",
        "svg": b"<svg" in data[:2000],
    }
    assert signature[figure_format]


def test_an_unknown_format_is_refused_and_nothing_is_written(tmp_path):
    figure = spectra_figure([0, 1], {"data": {"u": [1.0, 1.0]}}, title="t")
    with pytest.raises(PirfError, match="figure_format 'jpeg'; use one of png, pdf, svg"):
        save_figure(figure, tmp_path / "out" / "x", "jpeg")
    assert not (tmp_path / "out").exists()
    assert Path(save_figure(figure, tmp_path / "x", "svg")).suffix == ".svg"


def _log_axes(figure) -> list:
    """Every logarithmic x or y axis of a figure."""
    found = []
    for axis in figure.axes:
        if axis.get_xscale() == "log":
            found.append(axis.xaxis)
        if axis.get_yscale() == "log":
            found.append(axis.yaxis)
    return found


def test_every_curve_figure_labels_its_log_decades_alike():
    from pirf.bench.report import tradeoff_figure
    from pirf.diagnostics.figures import value_gap_figure
    from pirf.finetune.figures import curves_figure

    records = [
        {"kind": "train", "iteration": 1, "reward_loss": 0.5, "regulariser": 1e-3},
        {"kind": "train", "iteration": 2, "reward_loss": 0.1, "regulariser": 2e-3},
        {"kind": "eval", "iteration": 2, "residual_mse": {"20": 1e-3}, "fidelity": {"mmd": 0.2}},
    ]
    summary = {"base": {"residual_mse": {"20": 1e-2}, "fidelity": {"mmd": 0.1}}}
    row = {"method": "base", "label": "base model", "steps": 20, "nfe": 39,
           "headline": {"residual_mse": 1e-2, "mmd": 0.1}}  # fmt: skip
    gap = [{"kind": kind, "sigma": sigma, "one_step": -1.0, "ode": -0.1, "sde": -0.2,
            "clean": -1e-9} for kind in ("data", "trajectory") for sigma in (0.1, 1.0)]  # fmt: skip
    figures = {
        "curves": (curves_figure(records, summary), 2),
        "trade-offs": (tradeoff_figure("poisson", [row, {**row, "steps": 40, "nfe": 79}]), 3),
        "value gap": (value_gap_figure(gap, title="t"), 4),
    }
    for name, (figure, count) in figures.items():
        axes = _log_axes(figure)
        assert len(axes) >= count, name
        for axis in axes:
            assert isinstance(axis.get_major_formatter(), LogFormatterMathtext), name


def test_long_titles_are_wrapped_to_the_figure_width_and_short_ones_kept():
    from pirf.evaluation.figures import agg_figure

    figure = agg_figure((4.0, 3.0))  # 288 points: 53 characters of 9 points
    title = "poisson: sample 0 of each method at 20 steps (same noise; " * 3
    lines = wrapped_title(title, figure).split("\n")
    assert len(lines) >= 3 and all(len(line) <= 53 for line in lines)
    assert " ".join(lines) == title.strip()
    assert wrapped_title("short", figure) == "short"
