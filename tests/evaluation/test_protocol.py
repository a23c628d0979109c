"""The protocol on files and checkpoints, through the API and the command line."""

import json
from pathlib import Path

import pytest

import pirf.data
from pirf.cli import main
from pirf.evaluation.protocol import evaluate_checkpoint, evaluate_files
from pirf.evaluation.report import markdown_table
from tests.sampling.test_from_checkpoint import make_checkpoint


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("protocol")
    pirf.data.generate("poisson", 48, 16, 0, root / "test.h5", split="test")
    pirf.data.generate("poisson", 12, 16, 0, root / "truth.h5", split="val")
    checkpoint = make_checkpoint(root / "ckpt", "poisson")
    return root, checkpoint


def test_ground_truth_scores_at_its_floor_and_a_random_model_does_not(files):
    root, checkpoint = files
    assert (
        main(
            [
                "sample",
                "--ckpt",
                str(checkpoint),
                "--n",
                "12",
                "--steps",
                "3",
                "--out-file",
                str(root / "model.h5"),
            ]
        )
        == 0
    )
    report = evaluate_files([root / "truth.h5", root / "model.h5"], root / "test.h5")
    truth, model = (row["headline"] for row in report["rows"])
    floor = report["ground_truth"]["headline"]
    assert truth["residual_mse"] < 1e-10 and model["residual_mse"] > 1e3 * truth["residual_mse"]
    assert truth["mmd"] < 3 * floor["mmd"] < model["mmd"]
    assert model["diversity"] > 2 * truth["diversity"]  # an untrained net gives wild fields
    assert report["rows"][1]["nfe"] == 5
    table = markdown_table(report)
    assert table.count("\n") == 4 and "ground truth" in table


def test_checkpoint_rows_per_step_count(files):
    root, checkpoint = files
    report = evaluate_checkpoint(
        checkpoint, root / "test.h5", steps=(2, 3), n=6, figures=root / "figures"
    )
    assert [row["nfe"] for row in report["rows"]] == [3, 5]
    # One grid per row plus the held-out data's, the residual histogram and the spectra;
    # all real PNG files.
    names = [Path(figure).name for figure in report["figures"]]
    assert len(names) == 5 and names[0] == "reference-samples.png"
    assert names[-2:] == ["residuals.png", "spectra.png"]
    for figure in report["figures"]:
        assert Path(figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report["ground_truth"]["metrics"]["counts"]["reference"] == 48


def test_cli_json_and_errors(files, capsys, tmp_path):
    root, checkpoint = files
    code = main(
        [
            "evaluate",
            "--samples",
            str(root / "truth.h5"),
            "--reference",
            str(root / "test.h5"),
            "--json",
            "--out-file",
            str(tmp_path / "r.json"),
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["pde"] == "poisson" and json.loads((tmp_path / "r.json").read_text())
    assert main(["evaluate", "--reference", str(root / "test.h5")]) == 2
    assert "either --samples" in capsys.readouterr().err
    darcy = tmp_path / "darcy.h5"
    pirf.data.generate("darcy", 4, 16, 0, darcy)
    assert main(["evaluate", "--samples", str(darcy), "--reference", str(root / "test.h5")]) == 2
    assert "same PDE" in capsys.readouterr().err
    assert (
        main(
            [
                "evaluate",
                "--ckpt",
                str(checkpoint),
                "--reference",
                str(root / "test.h5"),
                "--steps",
                "a,b",
            ]
        )
        == 2
    )


@pytest.mark.parametrize(
    ("path", "label"),
    [
        ("runs/darcy-pirf/checkpoint", "darcy-pirf"),
        ("runs/darcy-pirf/best", "darcy-pirf (best)"),
        ("runs/darcy-pirf/checkpoints/iter-0000040", "darcy-pirf (iter-0000040)"),
        ("out/samples.h5", "samples"),
        ("some-model", "some-model"),
    ],
)
def test_rows_are_named_after_the_run(path, label):
    from pirf.evaluation.report import source_label

    assert source_label(path) == label


def test_terminal_tables_fit_80_columns_and_name_the_run(files, tmp_path):
    from rich.console import Console

    import pirf.cli.evaluate as command

    root, checkpoint = files
    report = evaluate_checkpoint(checkpoint, root / "test.h5", steps=(2,), n=6,
                                 figures=tmp_path / "figures")  # fmt: skip
    console = Console(width=80, record=True, force_terminal=False)
    original = command.console
    command.console = console
    try:
        command.print_report(report)
    finally:
        command.console = original
    text = console.export_text()
    assert "…" not in text
    assert f"{Path(checkpoint).name} @ 2 steps" in text
    assert all(len(line.rstrip()) <= 80 for line in text.splitlines())
    assert not any(".h5" in Path(figure).name for figure in report["figures"])


def test_figures_in_a_vector_format_and_a_bad_format_refused(files, tmp_path, capsys):
    root, checkpoint = files
    report = evaluate_checkpoint(checkpoint, root / "test.h5", steps=(2,), n=4,
                                 figures=tmp_path / "svg", figure_format="svg")  # fmt: skip
    assert {Path(figure).suffix for figure in report["figures"]} == {".svg"}
    for figure in report["figures"]:
        assert "<svg" in Path(figure).read_text()[:2000]
    code = main(["evaluate", "--samples", str(root / "truth.h5"), "--reference",
                 str(root / "test.h5"), "--figures", str(tmp_path / "bad"),
                 "--figure-format", "jpeg"])  # fmt: skip
    error = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in error
    assert "--figure-format 'jpeg'; use one of png, pdf, svg" in error
    assert not (tmp_path / "bad").exists()
