"""The thread count a command computes with (pirf.threads)."""

from __future__ import annotations

import pytest
import torch

import pirf.threads as threads
from pirf.cli import main
from pirf.errors import PirfError


@pytest.fixture(autouse=True)
def _restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    ("cores", "physical", "load", "expected"),
    [(2, 2, 0.0, 2), (2, 2, 0.9, 1), (2, 2, 1.6, 1), (2, 2, 5.0, 1), (8, 8, 2.2, 6),
     (8, 4, 0.0, 4)],
)  # fmt: skip
def test_default_is_one_thread_per_free_core_up_to_torch_default(
    monkeypatch, cores, physical, load, expected
):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "usable_cores", lambda: cores)
    monkeypatch.setattr(threads, "busy_cores", lambda: load)
    monkeypatch.setattr(threads, "_TORCH_DEFAULT", physical)
    assert threads.default_threads() == expected


def test_omp_num_threads_is_respected(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr(threads, "busy_cores", lambda: 0.0)
    torch.set_num_threads(1)
    assert threads.default_threads() == 1


def test_explicit_count_wins_and_is_checked():
    assert threads.use_threads(1) == 1 and torch.get_num_threads() == 1
    for bad in (0, -2, 1.5, True):
        with pytest.raises(PirfError, match="threads must be a positive integer"):
            threads.use_threads(bad)


def test_cli_threads_option_is_checked_before_work(tmp_path, capsys):
    code = main(["data", "generate", "poisson", "--n", "2", "--seed", "0", "--threads", "0",
                 "--out-file", str(tmp_path / "x.h5")])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 2 and "--threads must be a positive integer" in captured.err
    assert list(tmp_path.iterdir()) == []
