"""`pirf data verify` checks every benchmark's ground truth; its table and JSON say so."""

import json

from pirf.cli import main


def test_verify_json_shows_floors_far_below_perturbed_residuals(tmp_path, capsys):
    code = main(
        [
            "data",
            "verify",
            "--pdes",
            "poisson,darcy,burgers",
            "--n",
            "6",
            "--out",
            str(tmp_path),
            "--json",
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    rows = {row["pde"]: row for row in report["pdes"]}
    assert set(rows) == {"poisson", "darcy", "burgers"}
    for name in ("poisson", "darcy"):  # elliptic: float32 storage rounding only
        assert rows[name]["floor_to_perturbed"] < 1e-6
        assert rows[name]["consistency_rel_l2"] < 1e-6
    # Burgers' floor is the stencil's truncation error (2e-3 at 32^2): below that of 1 %
    # noise, but not zero; a few steep fronts make it vary with the sample count.
    assert 1e-6 < rows["burgers"]["floor_to_perturbed"] < 0.5
    assert (tmp_path / "poisson-tiny.h5").exists()


def test_verify_rejects_unknown_pdes_and_prints_a_table(tmp_path, capsys):
    assert main(["data", "verify", "--pdes", "navier", "--out", str(tmp_path)]) == 2
    assert "unknown PDE 'navier'" in capsys.readouterr().err
    assert (
        main(["data", "verify", "--pdes", "helmholtz", "--n", "3", "--out", str(tmp_path)]) == 0
    )
    assert "Ground-truth verification" in capsys.readouterr().out
