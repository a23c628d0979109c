"""Two gloo processes train like one process on the whole batch."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp

from pirf.models import load_checkpoint, preset_denoiser
from pirf.training import train
from pirf.training.draws import Draws
from tests.training.conftest import TINY_NET, tiny_config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, world: int, port: int, data: str, out: str, report: str) -> None:
    """One process of a torchrun-like launch (the environment torchrun would set)."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    summary = train(tiny_config(Path(data), Path(out), iters=3))
    Path(report, f"rank{rank}.json").write_text(json.dumps(summary))


def test_two_gloo_ranks_match_one_process(poisson_file, tmp_path):
    mp.spawn(
        _rank,
        args=(2, _free_port(), str(poisson_file), str(tmp_path / "ddp"), str(tmp_path)),
        nprocs=2,
        join=True,
    )
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [s["world_size"] for s in ranks] == [2, 2]
    # both ranks hold bitwise the same model and EMA after the all-reduced steps
    assert ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"]

    single = train(tiny_config(poisson_file, tmp_path / "single", iters=3))
    assert single["world_size"] == 1
    # each rank trained on half of the same global batch of 4 with the same per-sample noise;
    # averaging their gradients reproduces the one-process step up to summation order
    ddp = load_checkpoint(tmp_path / "ddp" / "checkpoint")
    one = load_checkpoint(tmp_path / "single" / "checkpoint")
    assert ddp.info.training["world"] == 2 and one.info.training["world"] == 1
    torch.manual_seed(Draws(0, n_data=16, batch=4).init_seed())
    initial = preset_denoiser("tiny", channels=2, resolution=8, **TINY_NET).state_dict()
    for trained_ddp, trained_one in ((ddp.model, one.model), (ddp.ema, one.ema)):
        one_state, ddp_state = trained_one.state_dict(), trained_ddp.state_dict()
        change = torch.cat([(one_state[k] - initial[k]).flatten() for k in initial])
        gap = torch.cat([(ddp_state[k] - one_state[k]).flatten() for k in initial])
        assert change.norm() > 1e-2  # the weights did move
        assert gap.norm() < 1e-4 * change.norm()
    assert ranks[0]["final_loss"] == ranks[1]["final_loss"]
    assert abs(ranks[0]["final_loss"] - single["final_loss"]) < 1e-5 * single["final_loss"]
    assert ddp.info.counters["samples"] == one.info.counters["samples"] == 12
