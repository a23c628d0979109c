"""How far the truncated (DRaFT-K) gradient is from the exact one, per K and trainable set.

PIRF back-propagates through the last K sampler steps only: the state entering the
window is treated as a constant, although every earlier step also depended on the
weights. This script measures what that costs, on a base checkpoint and fixed noise
batches, against the exact gradient of the same objective (back-propagation through all
N steps, one checkpoint per step):

* ``cos``: cosine between the truncated and the exact gradient;
* ``norm``: their norm ratio, truncated / exact;
* ``sign``: the fraction of coordinates whose signs agree;
* ``adam``: how good Adam's first step (``-lr * sign(g_K)``; Adam normalises every
  coordinate) is for the exact objective, to first order, relative to the best step of
  that size (``-lr * sign(g)``): ``<g, sign(g_K)> / ||g||_1``. 1 is as good as the
  exact gradient's own sign step; below zero the step *raises* the residual. (For a plain
  gradient step along ``-g_K`` the same ratio is the cosine.)

Medians over ``--batches`` noise batches. The reward is the PDE residual loss of the
checkpoint's PDE, as in fine-tuning, with the checkpoint's EMA weights.

Usage (numbers in docs/BENCHMARKS.md)::

    python benchmarks/bench_gradient_bias.py --ckpt src/pirf/assets/poisson-tiny \\
        --truncations 1,2,3,5,10 --trainable top,all,lora --batches 4 --batch 8
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics

import torch

from pirf.finetune.lora import attach_lora
from pirf.finetune.reward import residual_loss
from pirf.finetune.trainable import select_trainable, top_names
from pirf.finetune.trajectory import truncated_trajectory
from pirf.models import load_model
from pirf.sampling import karras_sigmas


def gradient(model, params, loss_of, noise, sigmas, k: int | None) -> torch.Tensor:
    """The flattened gradient of the residual loss: last ``k`` steps, or exact if None."""
    mode = "full" if k is None else "draft"
    run = truncated_trajectory(
        model, noise, sigmas, k=k or 1, mode=mode, checkpoint=True if k is None else None
    )
    grads = torch.autograd.grad(loss_of(run.final).mean(), params, allow_unused=True)
    pairs = zip(params, grads, strict=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).flatten() for p, g in pairs])


def compare(truncated: torch.Tensor, exact: torch.Tensor) -> dict[str, float]:
    """The four agreement numbers of the module docstring."""
    moving = exact != 0
    t, e = truncated, exact
    return {
        "cos": float(t @ e / (t.norm() * e.norm())),
        "norm": float(t.norm() / e.norm()),
        "sign": float((t.sign() == e.sign())[moving].float().mean()),
        "adam": float((e * t.sign()).sum() / e.abs().sum()),
    }


def trainable(model: torch.nn.Module, kind: str, rank: int) -> list[torch.nn.Parameter]:
    """Mark and return the parameters of trainable set ``kind`` (``top``, ``all``, ``lora``)."""
    if kind == "lora":
        torch.manual_seed(0)
        return [p for _, p in attach_lora(model, rank=rank, prefixes=top_names(model))]
    return [p for _, p in select_trainable(model, kind)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True, help="base checkpoint directory")
    parser.add_argument("--truncations", default="1,2,3,5,10", help="values of K")
    parser.add_argument("--trainable", default="top,all,lora", help="trainable sets")
    parser.add_argument("--steps", type=int, default=20, help="sampler steps N")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--batches", type=int, default=4, help="noise batches (medians)")
    parser.add_argument("--lora-rank", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    base = load_model(args.ckpt, device="cpu")
    sigmas = karras_sigmas(args.steps)
    truncations = [int(k) for k in args.truncations.split(",")]

    def loss_of(samples: torch.Tensor) -> torch.Tensor:
        return residual_loss(base.pde, base.normalisation, samples, dtype=torch.float32)

    rows = []
    for kind in args.trainable.split(","):
        model = copy.deepcopy(base.denoiser).float().eval()
        params = trainable(model, kind, args.lora_rank)
        # LoRA's A factors get no gradient at the start (B = 0): compare on the B factors.
        measured: dict[int, list[dict[str, float]]] = {k: [] for k in truncations}
        for index in range(args.batches):
            generator = torch.Generator().manual_seed(1000 + index)
            noise = torch.randn((args.batch, *base.shape), generator=generator)
            exact = gradient(model, params, loss_of, noise, sigmas, None)
            for k in truncations:
                truncated = gradient(model, params, loss_of, noise, sigmas, k)
                measured[k].append(compare(truncated, exact))
        for k in truncations:
            row = {"trainable": kind, "K": k}
            for key in ("cos", "norm", "sign", "adam"):
                row[key] = statistics.median(m[key] for m in measured[k])
            rows.append(row)
            if not args.json:
                print(
                    f"{kind:5} K={k:<3d} cos {row['cos']:+.3f}  norm {row['norm']:.3f}  "
                    f"sign {row['sign']:.3f}  adam {row['adam']:+.3f}",
                    flush=True,
                )
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
