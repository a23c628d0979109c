"""A training process killed with SIGKILL resumes to the weights of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pirf.training import train
from pirf.training.rundir import periodic_checkpoints
from tests.training.conftest import WITH_DROPOUT, tiny_config

ROOT = Path(__file__).resolve().parents[2]

# Runs the same configuration as the test, slowed down so that it is still running when
# the first checkpoint appears (the delay wraps the loss and changes no number).
SCRIPT = """
import sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
from pirf.training import loop
from tests.training.conftest import WITH_DROPOUT, tiny_config
honest = loop.batch_loss
def slow(*args):
    time.sleep(0.25)
    return honest(*args)
loop.batch_loss = slow
loop.train(
    tiny_config(Path(sys.argv[1]), Path(sys.argv[2]), iters=12, model_overrides=WITH_DROPOUT)
)
"""


def first_checkpoint(out: Path) -> bool:
    """A complete periodic checkpoint exists (not a hidden staging directory being written)."""
    return bool(periodic_checkpoints(out))


def test_killed_run_resumes_bitwise(poisson_file, tmp_path):
    out = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(poisson_file), str(out)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not first_checkpoint(out):
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint within 60 s"
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert not (out / "checkpoint").exists()  # it really died mid-run

    resumed = train(
        tiny_config(poisson_file, out, iters=12, resume=True, model_overrides=WITH_DROPOUT)
    )
    assert 2 <= resumed["start_iteration"] < 12 and resumed["completed"]
    straight = train(
        tiny_config(poisson_file, tmp_path / "straight", iters=12, model_overrides=WITH_DROPOUT)
    )
    assert resumed["weights_sha256"] == straight["weights_sha256"]
