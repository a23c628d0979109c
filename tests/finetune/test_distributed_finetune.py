"""Two gloo processes fine-tune like one process on the whole batch."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

import pirf.data
from pirf.finetune import FinetuneConfig, finetune
from pirf.models import load_checkpoint
from pirf.training import train
from tests.training.conftest import tiny_config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(base: Path, out: Path) -> FinetuneConfig:
    return FinetuneConfig.of(
        ckpt=base,
        out=out,
        iters=3,
        batch=4,
        steps=6,
        eval_steps=(6,),
        eval_n=8,
        eval_every=0,
        device="cpu",
        progress=False,
        figures=False,
        lr=1e-3,
    )


def _rank(rank: int, world: int, port: int, base: str, out: str, report: str) -> None:
    """One process of a torchrun-like launch (the environment torchrun would set)."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    summary = finetune(_config(Path(base), Path(out)))
    Path(report, f"rank{rank}.json").write_text(json.dumps(summary))


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("base")
    pirf.data.generate("poisson", 16, 8, 0, folder / "data.h5")
    train(tiny_config(folder / "data.h5", folder / "run"))
    return folder / "run" / "checkpoint"


def test_two_gloo_ranks_match_one_process(base, tmp_path):
    mp.spawn(
        _rank,
        args=(2, _free_port(), str(base), str(tmp_path / "ddp"), str(tmp_path)),
        nprocs=2,
        join=True,
    )
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [s["world_size"] for s in ranks] == [2, 2]
    single = finetune(_config(base, tmp_path / "one"))
    ddp = load_checkpoint(tmp_path / "ddp" / "checkpoint").model.state_dict()
    one = load_checkpoint(tmp_path / "one" / "checkpoint").model.state_dict()
    start = load_checkpoint(base).ema.state_dict()
    change = torch.cat([(one[k] - start[k]).flatten() for k in start])
    gap = torch.cat([(ddp[k] - one[k]).flatten() for k in start])
    # Each rank ran half of the same global batch of noise; the averaged gradients give the
    # one-process step up to the order of floating-point summation.
    assert change.norm() > 1e-4
    assert gap.norm() < 1e-4 * change.norm()
    # Every rank measured the same (all-reduced) losses and evaluations.
    assert ranks[0]["final"]["residual_mse"] == ranks[1]["final"]["residual_mse"]
    assert abs(ranks[0]["final"]["residual_mse"]["6"] - single["final"]["residual_mse"]["6"]) < (
        1e-4 * single["final"]["residual_mse"]["6"]
    )
