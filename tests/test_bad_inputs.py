"""Every command refuses a bad input before it creates a file or starts computing.

Each case runs one command line against a shared folder of good and damaged inputs and
asserts the contract of the command line for a user's mistake: exit code 2, one line on
stderr that starts with ``error:``, nothing on stdout, no traceback, and not a single
file or directory created, removed or modified (modification times included).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import pirf.data
import pirf.pdes
from pirf.checks import writable_error
from pirf.cli import main
from pirf.models import preset_denoiser, save_checkpoint
from pirf.pdes import Normalisation


def _checkpoint(path: Path, pde_name: str = "poisson", resolution: int = 8) -> Path:
    """An untrained tiny checkpoint that records its PDE, normalisation and resolution."""
    torch.manual_seed(0)
    pde = pirf.pdes.get(pde_name)
    model = preset_denoiser("tiny", channels=len(pde.channels), resolution=resolution,
                            base_channels=8)  # fmt: skip
    normalisation = Normalisation((0.0, 0.0), (1.0, 0.1))
    save_checkpoint(path, model, ema=model, pde=pde, normalisation=normalisation,
                    resolution=resolution)  # fmt: skip
    return path


def _damaged_copy(source: Path, target: Path, damage) -> Path:
    shutil.copytree(source, target)
    damage(target)
    return target


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def _rename_pde(folder: Path) -> None:
    info = json.loads((folder / "checkpoint.json").read_text())
    info["pde"]["pde"] = "warp-drive"
    (folder / "checkpoint.json").write_text(json.dumps(info))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Good and damaged inputs of every kind, in one folder that no case may change."""
    root = tmp_path_factory.mktemp("inputs")
    pirf.data.generate("poisson", 16, 8, 0, root / "train.h5")
    pirf.data.generate("poisson", 8, 8, 1, root / "test.h5", split="test")
    pirf.data.generate("poisson", 2, 8, 2, root / "two.h5", split="test")
    pirf.data.generate("poisson", 8, 16, 1, root / "p16.h5", split="test")
    pirf.data.generate("darcy", 8, 8, 1, root / "darcy.h5", split="test")
    shutil.copy(root / "test.h5", root / "nan.h5")
    with h5py.File(root / "nan.h5", "r+") as file:
        file["fields"][3, 0, 0, 0] = np.nan
    shutil.copy(root / "test.h5", root / "truncated.h5")
    _truncate(root / "truncated.h5")
    with h5py.File(root / "foreign.h5", "w") as file:
        file["x"] = np.arange(3)
    (root / "notes.h5").write_text("not a dataset\n")
    (root / "a-file").write_text("a file where a directory is expected\n")
    (root / "empty-dir").mkdir()
    base = _checkpoint(root / "run" / "checkpoint")
    (root / "run" / "checkpoints").mkdir()
    (root / "unfinished" / "checkpoints").mkdir(parents=True)
    _damaged_copy(base, root / "bad-json", lambda d: (d / "checkpoint.json").write_text("{"))
    _damaged_copy(base, root / "half-weights", lambda d: _truncate(d / "model.safetensors"))
    _damaged_copy(base, root / "bad-weights", lambda d: _flip_byte(d / "model.safetensors"))
    _damaged_copy(base, root / "no-ema", lambda d: (d / "ema.safetensors").unlink())
    _damaged_copy(base, root / "unknown-pde", _rename_pde)
    return root


@pytest.fixture(scope="module")
def locked(world: Path):
    """A directory in which nothing can be created."""
    if os.geteuid() != 0:
        folder = world / "locked"
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    for candidate in (Path("/sys"), Path("/proc")):
        if candidate.is_dir() and writable_error(candidate) is not None:
            yield candidate
            return
    pytest.skip("no directory here refuses writes to root")


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``folder`` with its size and modification time."""
    entries = {".": (0, folder.stat().st_mtime_ns)}
    for path in folder.rglob("*"):
        info = path.lstat()
        entries[str(path.relative_to(folder))] = (info.st_size, info.st_mtime_ns)
    return entries


NO_CUDA = "no CUDA GPU"
TRAIN = ["train", "--preset", "tiny", "--iters", "2", "--batch", "4", "--device", "cpu",
         "--model-option", "base_channels=8", "--figure-every", "0"]  # fmt: skip
FINETUNE = ["finetune", "--iters", "1", "--batch", "2", "--eval-n", "4", "--eval-steps", "4",
            "--steps", "4", "--device", "cpu", "--no-figures"]  # fmt: skip
SAMPLE = ["sample", "--n", "2", "--steps", "2"]
EVALUATE = ["evaluate", "--steps", "2", "--n", "4", "--no-consistency"]
GENERATE = ["data", "generate", "poisson", "--n", "2", "--resolution", "8", "--seed", "0"]
SPLITS = ["data", "splits", "poisson", "--train", "2", "--test", "2", "--resolution", "8",
          "--seed", "0"]  # fmt: skip
BENCH = ["bench", "--pdes", "poisson", "--methods", "pirf,pidm,cocogen,pgdiffusion"]
DEMO = ["demo"]

CASES: dict[str, tuple[list[str], str]] = {
    # ----------------------------------------------------------------------- usage
    "usage: not a number": ([*SAMPLE, "--ckpt", "{w}/run", "--out-file", "{w}/s.h5", "--n", "abc"],
                            "Invalid value for '--n'"),
    "usage: missing option": (["sample", "--ckpt", "{w}/run"], "Missing option '--n'; see "
                              "'pirf sample --help'"),
    "usage: unknown option": ([*SAMPLE, "--ckpt", "{w}/run", "--out-file", "{w}/s.h5", "--nn", "3"],
                              "No such option: --nn"),
    "usage: unknown choice": ([*SAMPLE, "--ckpt", "{w}/run", "--out-file", "{w}/s.h5", "--sampler",
                               "rk4"], "Invalid value for '--sampler'"),
    "usage: unknown command": (["trian"], "No such command 'trian'"),
    "usage: option without its value": (["evaluate", "--samples"], "requires an argument"),
    # ----------------------------------------------------------------------- train
    "train: missing data": ([*TRAIN, "--data", "{w}/missing.h5", "--out", "{w}/new"],
                            "no such data file"),
    "train: data is a directory": ([*TRAIN, "--data", "{w}/empty-dir", "--out", "{w}/new"],
                                   "is a directory"),
    "train: data is not HDF5": ([*TRAIN, "--data", "{w}/notes.h5", "--out", "{w}/new"],
                                "is not an HDF5 file"),
    "train: data truncated": ([*TRAIN, "--data", "{w}/truncated.h5", "--out", "{w}/new"],
                              "corrupt or truncated"),
    "train: data not pirf": ([*TRAIN, "--data", "{w}/foreign.h5", "--out", "{w}/new"],
                             "not a pirf dataset"),
    "train: data with NaN": ([*TRAIN, "--data", "{w}/nan.h5", "--out", "{w}/new"],
                             "sample 3 holds NaN or inf"),
    "train: unknown preset": ([*TRAIN, "--data", "{w}/train.h5", "--out", "{w}/new",
                               "--preset", "huge"], "unknown model preset 'huge'"),
    "train: unknown model option": ([*TRAIN, "--data", "{w}/train.h5", "--out", "{w}/new",
                                     "--model-option", "nonsense=1"], "no setting nonsense"),
    "train: bad model option value": ([*TRAIN, "--data", "{w}/train.h5", "--out", "{w}/new",
                                       "--model-option", "channel_mult=5"],
                                      "channel_mult must be a list of integers"),
    "train: network too deep for the data": (
        [*TRAIN, "--data", "{w}/train.h5", "--out", "{w}/new", "--model-option",
         "channel_mult=[1,2,2,2,2]"], "needs a resolution divisible by 16; got 8"),
    "train: zero iterations": ([*TRAIN, "--data", "{w}/train.h5", "--out", "{w}/new",
                                "--iters", "0"], "--iters must be positive"),
    "train: negative batch": ([*TRAIN, "--data", "{w}/train.h5", "--out", "{w}/new",
                               "--batch", "-4"], "--batch must be positive"),
    "train: out is a file": ([*TRAIN, "--data", "{w}/train.h5", "--out", "{w}/a-file"],
                             "is a file"),
    "train: out under a file": ([*TRAIN, "--data", "{w}/train.h5", "--out", "{w}/a-file/run"],
                                "a-file is a file, not a directory"),
    "train: out not writable": ([*TRAIN, "--data", "{w}/train.h5", "--out", "{locked}/run"],
                                "cannot write to"),
    "train: out inside a checkpoint": (
        [*TRAIN, "--data", "{w}/train.h5", "--out", "{w}/run/checkpoint/new"],
        "lies inside the checkpoint"),
    "train: out holds a run": ([*TRAIN, "--data", "{w}/train.h5", "--out", "{w}/run"],
                               "already holds a training run"),
    "train: nothing to resume": ([*TRAIN, "--data", "{w}/train.h5", "--out", "{w}/unfinished",
                                  "--resume"], "nothing to resume"),
    "train: no cuda": ([*TRAIN, "--data", "{w}/train.h5", "--out", "{w}/new", "--device",
                        "cuda"], NO_CUDA),
    "train: unknown device": ([*TRAIN, "--data", "{w}/train.h5", "--out", "{w}/new",
                               "--device", "tpu"], "unknown device 'tpu'"),
    # ----------------------------------------------------------------------- finetune
    "finetune: missing checkpoint": ([*FINETUNE, "--ckpt", "{w}/missing", "--out", "{w}/new"],
                                     "no such checkpoint directory"),
    "finetune: checkpoint is a file": ([*FINETUNE, "--ckpt", "{w}/test.h5", "--out",
                                        "{w}/new"], "is not a pirf checkpoint"),
    "finetune: checkpoint is an empty folder": (
        [*FINETUNE, "--ckpt", "{w}/empty-dir", "--out", "{w}/new"],
        "neither a pirf checkpoint"),
    "finetune: run without a checkpoint yet": (
        [*FINETUNE, "--ckpt", "{w}/unfinished", "--out", "{w}/new"],
        "has no final or best checkpoint yet"),
    "finetune: checkpoint.json corrupt": ([*FINETUNE, "--ckpt", "{w}/bad-json", "--out",
                                           "{w}/new"], "cannot read"),
    "finetune: weights truncated": ([*FINETUNE, "--ckpt", "{w}/half-weights", "--out",
                                     "{w}/new"], "truncated or modified"),
    "finetune: weights modified": ([*FINETUNE, "--ckpt", "{w}/bad-weights", "--out",
                                    "{w}/new"], "does not match its recorded SHA-256"),
    "finetune: weights missing": ([*FINETUNE, "--ckpt", "{w}/no-ema", "--out", "{w}/new"],
                                  "ema.safetensors is missing"),
    "finetune: checkpoint of an unknown PDE": (
        [*FINETUNE, "--ckpt", "{w}/unknown-pde", "--out", "{w}/new"],
        "unknown PDE 'warp-drive'"),
    "finetune: reference of another PDE": (
        [*FINETUNE, "--ckpt", "{w}/run", "--out", "{w}/new", "--reference", "{w}/darcy.h5"],
        "holds 'darcy'"),
    "finetune: reference of another resolution": (
        [*FINETUNE, "--ckpt", "{w}/run", "--out", "{w}/new", "--reference", "{w}/p16.h5"],
        "is 16x16"),
    "finetune: reference with NaN": (
        [*FINETUNE, "--ckpt", "{w}/run", "--out", "{w}/new", "--reference", "{w}/nan.h5"],
        "holds NaN or inf"),
    "finetune: reference too small": (
        [*FINETUNE, "--ckpt", "{w}/run", "--out", "{w}/new", "--reference", "{w}/two.h5"],
        "at least 4 needed"),
    "finetune: reference missing": (
        [*FINETUNE, "--ckpt", "{w}/run", "--out", "{w}/new", "--reference", "{w}/no.h5"],
        "no such reference data file"),
    "finetune: reference not HDF5": (
        [*FINETUNE, "--ckpt", "{w}/run", "--out", "{w}/new", "--reference", "{w}/notes.h5"],
        "is not an HDF5 file"),
    "finetune: out inside the checkpoint": (
        [*FINETUNE, "--ckpt", "{w}/run/checkpoint", "--out", "{w}/run/checkpoint/tuned"],
        "lies inside the checkpoint"),
    "finetune: out holds a run": ([*FINETUNE, "--ckpt", "{w}/run", "--out", "{w}/run"],
                                  "already holds a training run"),
    "finetune: out is a file": ([*FINETUNE, "--ckpt", "{w}/run", "--out", "{w}/a-file"],
                                "is a file"),
    "finetune: out not writable": ([*FINETUNE, "--ckpt", "{w}/run", "--out", "{locked}/t"],
                                   "cannot write to"),
    "finetune: too many top blocks": ([*FINETUNE, "--ckpt", "{w}/run", "--out", "{w}/new",
                                       "--top-blocks", "99"], "cannot select 99"),
    "finetune: unknown mode": ([*FINETUNE, "--ckpt", "{w}/run", "--out", "{w}/new",
                                "--mode", "magic"], "unknown --mode 'magic'"),
    "finetune: zero iterations": ([*FINETUNE, "--ckpt", "{w}/run", "--out", "{w}/new",
                                   "--iters", "0"], "--iters must be positive"),
    "finetune: truncation beyond the steps": (
        [*FINETUNE, "--ckpt", "{w}/run", "--out", "{w}/new", "--truncation", "9"],
        "exceeds the 4 sampler steps"),
    "finetune: bad step list": ([*FINETUNE, "--ckpt", "{w}/run", "--out", "{w}/new",
                                 "--eval-steps", "a,b"], "--eval-steps expects"),
    "finetune: no cuda": ([*FINETUNE, "--ckpt", "{w}/run", "--out", "{w}/new", "--device",
                           "cuda"], NO_CUDA),
    # ----------------------------------------------------------------------- sample
    "sample: zero samples": ([*SAMPLE, "--ckpt", "{w}/run", "--out-file", "{w}/s.h5", "--n", "0"],
                             "--n must be a positive integer"),
    "sample: negative samples": ([*SAMPLE, "--ckpt", "{w}/run", "--out-file", "{w}/s.h5", "--n",
                                  "-3"], "--n must be a positive integer"),
    "sample: zero steps": ([*SAMPLE, "--ckpt", "{w}/run", "--out-file", "{w}/s.h5", "--steps", "0"],
                           "--steps must be a positive integer"),
    "sample: negative seed": ([*SAMPLE, "--ckpt", "{w}/run", "--out-file", "{w}/s.h5", "--seed",
                               "-1"], "--seed must be an integer >= 0"),
    "sample: zero batch": ([*SAMPLE, "--ckpt", "{w}/run", "--out-file", "{w}/s.h5", "--batch",
                            "0"], "--batch must be a positive integer"),
    "sample: negative fp32 steps": ([*SAMPLE, "--ckpt", "{w}/run", "--out-file", "{w}/s.h5",
                                     "--fp32-steps", "-1"], "--fp32-steps must be"),
    "sample: out exists": ([*SAMPLE, "--ckpt", "{w}/run", "--out-file", "{w}/test.h5"],
                           "already exists; pass --force"),
    "sample: out is a directory": ([*SAMPLE, "--ckpt", "{w}/run", "--out-file", "{w}/empty-dir"],
                                   "is a directory"),
    "sample: out folder missing": ([*SAMPLE, "--ckpt", "{w}/run", "--out-file", "{w}/no/s.h5"],
                                   "does not exist; create it first"),
    "sample: out folder not writable": ([*SAMPLE, "--ckpt", "{w}/run", "--out-file",
                                         "{locked}/s.h5"], "is not writable"),
    "sample: out inside a checkpoint": ([*SAMPLE, "--ckpt", "{w}/run", "--out-file",
                                         "{w}/run/checkpoint/s.h5"], "inside the checkpoint"),
    "sample: missing checkpoint": ([*SAMPLE, "--ckpt", "{w}/missing", "--out-file", "{w}/s.h5"],
                                   "no such checkpoint directory"),
    "sample: dataset as checkpoint": ([*SAMPLE, "--ckpt", "{w}/test.h5", "--out-file", "{w}/s.h5"],
                                      "is not a pirf checkpoint"),
    "sample: checkpoint.json corrupt": ([*SAMPLE, "--ckpt", "{w}/bad-json", "--out-file",
                                         "{w}/s.h5"], "cannot read"),
    "sample: weights modified": ([*SAMPLE, "--ckpt", "{w}/bad-weights", "--out-file", "{w}/s.h5"],
                                 "does not match its recorded SHA-256"),
    "sample: no cuda": ([*SAMPLE, "--ckpt", "{w}/run", "--out-file", "{w}/s.h5", "--device",
                         "cuda"], NO_CUDA),
    "sample: a GPU index without CUDA": ([*SAMPLE, "--ckpt", "{w}/run", "--out-file", "{w}/s.h5",
                                          "--device", "cuda:3"], NO_CUDA),
    "sample: unknown device": ([*SAMPLE, "--ckpt", "{w}/run", "--out-file", "{w}/s.h5", "--device",
                                "abacus"], "unknown device 'abacus'"),
    # ----------------------------------------------------------------------- evaluate
    "evaluate: neither samples nor checkpoint": (["evaluate", "--reference", "{w}/test.h5"],
                                                 "give either --samples"),
    "evaluate: missing reference": ([*EVALUATE, "--ckpt", "{w}/run", "--reference",
                                     "{w}/no.h5"], "no such --reference file"),
    "evaluate: reference not HDF5": ([*EVALUATE, "--ckpt", "{w}/run", "--reference",
                                      "{w}/notes.h5"], "is not an HDF5 file"),
    "evaluate: reference truncated": ([*EVALUATE, "--ckpt", "{w}/run", "--reference",
                                       "{w}/truncated.h5"], "corrupt or truncated"),
    "evaluate: reference too small": ([*EVALUATE, "--ckpt", "{w}/run", "--reference",
                                       "{w}/two.h5"], "at least 4 needed"),
    "evaluate: reference of another PDE": ([*EVALUATE, "--ckpt", "{w}/run", "--reference",
                                            "{w}/darcy.h5"], "holds 'darcy'"),
    "evaluate: reference of another resolution": (
        [*EVALUATE, "--ckpt", "{w}/run", "--reference", "{w}/p16.h5"], "is 16x16"),
    "evaluate: samples of another PDE": (["evaluate", "--samples", "{w}/darcy.h5",
                                          "--reference", "{w}/test.h5"], "same PDE"),
    "evaluate: samples of another resolution": (["evaluate", "--samples", "{w}/p16.h5",
                                                 "--reference", "{w}/test.h5"],
                                                "same resolution"),
    "evaluate: samples with NaN": (["evaluate", "--samples", "{w}/nan.h5", "--reference",
                                    "{w}/test.h5"], "holds NaN or inf"),
    "evaluate: missing samples": (["evaluate", "--samples", "{w}/no.h5", "--reference",
                                   "{w}/test.h5"], "no such --samples file"),
    "evaluate: bad steps": ([*EVALUATE, "--ckpt", "{w}/run", "--reference", "{w}/test.h5",
                             "--steps", "a,b"], "--steps expects integers"),
    "evaluate: zero steps": ([*EVALUATE, "--ckpt", "{w}/run", "--reference", "{w}/test.h5",
                              "--steps", "0"], "--steps expects positive integers"),
    "evaluate: one sample": ([*EVALUATE, "--ckpt", "{w}/run", "--reference", "{w}/test.h5",
                              "--n", "1"], "--n must be an integer >= 2"),
    "evaluate: figures is a file": ([*EVALUATE, "--ckpt", "{w}/run", "--reference",
                                     "{w}/test.h5", "--figures", "{w}/a-file"], "is a file"),
    "evaluate: figures not writable": ([*EVALUATE, "--ckpt", "{w}/run", "--reference",
                                        "{w}/test.h5", "--figures", "{locked}/f"],
                                       "cannot write to"),
    "evaluate: report folder missing": ([*EVALUATE, "--ckpt", "{w}/run", "--reference",
                                         "{w}/test.h5", "--out-file", "{w}/no/r.json"],
                                        "does not exist; create it first"),
    "evaluate: report folder not writable": ([*EVALUATE, "--ckpt", "{w}/run", "--reference",
                                              "{w}/test.h5", "--out-file", "{locked}/r.json"],
                                             "is not writable"),
    "evaluate: report is a directory": ([*EVALUATE, "--ckpt", "{w}/run", "--reference",
                                         "{w}/test.h5", "--out-file", "{w}/empty-dir"],
                                        "is a directory"),
    "evaluate: report over the reference": ([*EVALUATE, "--ckpt", "{w}/run", "--reference",
                                             "{w}/test.h5", "--out-file", "{w}/test.h5"],
                                            "is an input of this evaluation"),
    "evaluate: checkpoint corrupt": ([*EVALUATE, "--ckpt", "{w}/bad-json", "--reference",
                                      "{w}/test.h5"], "cannot read"),
    "evaluate: no cuda": ([*EVALUATE, "--ckpt", "{w}/run", "--reference", "{w}/test.h5",
                           "--device", "cuda"], NO_CUDA),
    # ----------------------------------------------------------------------- data
    "generate: zero samples": ([*GENERATE, "--out-file", "{w}/d.h5", "--n", "0"],
                               "number of samples must be positive"),
    "generate: unknown PDE": (["data", "generate", "nope", "--n", "2", "--seed", "0",
                               "--out-file", "{w}/d.h5"], "unknown PDE 'nope'"),
    "generate: out folder not writable": ([*GENERATE, "--out-file", "{locked}/d.h5"],
                                          "is not writable"),
    "generate: out inside a checkpoint": ([*GENERATE, "--out-file", "{w}/run/checkpoint/d.h5"],
                                          "inside the checkpoint"),
    "generate: out under a file": ([*GENERATE, "--out-file", "{w}/a-file/d.h5"],
                                   "is not a directory"),
    "generate: no cuda": ([*GENERATE, "--out-file", "{w}/d.h5", "--device", "cuda"], NO_CUDA),
    "splits: zero training samples": ([*SPLITS, "--out", "{w}/set", "--train", "0"],
                                      "number of samples must be positive"),
    "splits: negative validation samples": ([*SPLITS, "--out", "{w}/set", "--val", "-1"],
                                            "number of samples must be positive"),
    "splits: out is a file": ([*SPLITS, "--out", "{w}/a-file"], "is not a directory"),
    "splits: out not writable": ([*SPLITS, "--out", "{locked}/set"], "cannot write to"),
    "splits: out inside a checkpoint": ([*SPLITS, "--out", "{w}/run/checkpoint/set"],
                                        "inside the checkpoint"),
    "splits: files exist": ([*SPLITS, "--out", "{w}"], "train.h5 already exists"),
    "splits: no cuda": ([*SPLITS, "--out", "{w}/set", "--device", "cuda"], NO_CUDA),
    "verify: zero samples": (["data", "verify", "--out", "{w}/v", "--n", "0"],
                             "--n must be positive"),
    "verify: unknown PDE": (["data", "verify", "--out", "{w}/v", "--pdes", "nope"],
                            "unknown PDE 'nope'"),
    "verify: unknown preset": (["data", "verify", "--out", "{w}/v", "--pdes", "poisson",
                                "--preset", "huge"], "has no preset 'huge'"),
    "verify: out is a file": (["data", "verify", "--pdes", "poisson", "--out",
                               "{w}/a-file"], "is a file"),
    "verify: out not writable": (["data", "verify", "--pdes", "poisson", "--out",
                                  "{locked}/v"], "cannot write to"),
    "verify: no cuda": (["data", "verify", "--pdes", "poisson", "--out", "{w}/v",
                         "--device", "cuda"], NO_CUDA),
    "check: zero batch": (["data", "check", "{w}/test.h5", "--batch", "0"],
                          "batch size must be positive"),
    # ----------------------------------------------------------------------- bench
    "bench: unknown option of pirf": ([*BENCH, "--out", "{w}/b", "--method-option",
                                       "pirf.nonsense=1"], "pirf has no setting nonsense"),
    "bench: option the bench sets": ([*BENCH, "--out", "{w}/b", "--method-option",
                                      "pirf.ckpt=x"], "pirf has no setting ckpt"),
    "bench: bad value for pirf": ([*BENCH, "--out", "{w}/b", "--method-option",
                                   "pirf.lr=-1"], "--method-option pirf: lr must be positive"),
    "bench: value of the wrong type": ([*BENCH, "--out", "{w}/b", "--method-option",
                                        "pidm.residual_weight=x"],
                                       "pidm.residual_weight expects a number, got 'x'"),
    "bench: list where a number goes": ([*BENCH, "--out", "{w}/b", "--method-option",
                                         "pirf.random_steps=5"],
                                        "pirf.random_steps expects a list of integers"),
    "bench: unknown option of pidm": ([*BENCH, "--out", "{w}/b", "--method-option",
                                       "pidm.foo=1"], "pidm has no setting foo"),
    "bench: unknown option of pgdiffusion": ([*BENCH, "--out", "{w}/b", "--method-option",
                                              "pgdiffusion.nope=2"],
                                             "pgdiffusion has no setting nope"),
    "bench: unknown option of cocogen": ([*BENCH, "--out", "{w}/b", "--method-option",
                                          "cocogen.bar=1"], "cocogen has no setting 'bar'"),
    "bench: option of a method not run": ([*BENCH, "--out", "{w}/b", "--method-option",
                                           "diffusionpde.zeta=1"], "does not run"),
    "bench: malformed option": ([*BENCH, "--out", "{w}/b", "--method-option", "pirf=1"],
                                "expects METHOD.KEY=VALUE"),
    "bench: unknown method": (["bench", "--out", "{w}/b", "--methods", "magic"],
                              "unknown method 'magic'"),
    "bench: unknown PDE": (["bench", "--out", "{w}/b", "--pdes", "toy"], "unknown PDE 'toy'"),
    "bench: unknown preset": ([*BENCH, "--out", "{w}/b", "--preset", "huge"],
                              "unknown bench preset"),
    "bench: zero steps": ([*BENCH, "--out", "{w}/b", "--steps", "0"], "expects positive integers"),
    "bench: too few evaluation samples": ([*BENCH, "--out", "{w}/b", "--eval-n", "1"],
                                          "--eval-n must be at least 4"),
    "bench: out is a file": ([*BENCH, "--out", "{w}/a-file"], "is a file"),
    "bench: out not writable": ([*BENCH, "--out", "{locked}/b"], "cannot write to"),
    "bench: out inside a checkpoint": ([*BENCH, "--out", "{w}/run/checkpoint/b"],
                                       "inside the checkpoint"),
    "bench: report of nothing": ([*BENCH, "--out", "{w}/b", "--report-only"],
                                 "holds no bench to report on"),
    "bench: results file folder missing": ([*BENCH, "--out", "{w}/b", "--results-json",
                                            "{w}/no/r.json"], "does not exist"),
    "bench: results file folder not writable": ([*BENCH, "--out", "{w}/b", "--results-json",
                                                 "{locked}/r.json"], "is not writable"),
    "bench: no cuda": ([*BENCH, "--out", "{w}/b", "--device", "cuda"], NO_CUDA),
    # ----------------------------------------------------------------------- demo
    "demo: out is a file": ([*DEMO, "--out", "{w}/a-file"], "is a file"),
    "demo: out not writable": ([*DEMO, "--out", "{locked}/demo"], "cannot write to"),
    "demo: out inside a checkpoint": ([*DEMO, "--out", "{w}/run/checkpoint/demo"],
                                      "inside the checkpoint"),
    "demo: zero iterations": ([*DEMO, "--out", "{w}/demo", "--iters", "0"],
                              "--iters must be positive"),
    "demo: too few samples": ([*DEMO, "--out", "{w}/demo", "--eval-n", "2"],
                              "--eval-n at least 4"),
    "demo: no cuda": ([*DEMO, "--out", "{w}/demo", "--device", "cuda"], NO_CUDA),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_leaves_everything_as_it_was(world, request, capsys, case):
    args, message = CASES[case]
    if message == NO_CUDA and torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    places = {"w": str(world)}
    if any("{locked}" in arg for arg in args):
        places["locked"] = str(request.getfixturevalue("locked"))
    before = snapshot(world)
    code = main([arg.format(**places) for arg in args])
    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert captured.out == ""
    assert "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: ") and message in lines[0], lines[0]
    assert snapshot(world) == before
