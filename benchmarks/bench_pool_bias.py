"""What amortised trajectories cost in gradient direction: stale window starts vs fresh.

With a state pool (``pirf finetune --pool``) the differentiable window of an iteration
starts from a state made by the weights of up to ``pool / pool_refresh`` iterations ago,
while the window itself runs with the current weights. This script measures that bias
directly, on a real fine-tuning run of the recipe:

1. fine-tune the checkpoint for ``--iters`` iterations (plain DRaFT-K, the recipe's
   settings), keeping the trainable weights of every iteration;
2. at iterations ``--at``, for each age ``a`` in ``--ages``: make window starts from fixed
   noise with the weights of iteration ``t - a``, run the window with the weights of
   iteration ``t`` and take the gradient of the reward (the same noise every time);
3. compare each with the fresh gradient (``a = 0``: what DRaFT-K computes) and with the
   exact gradient of the objective (back-propagation through all ``N`` steps).

Printed per ``(t, a)``: ``cos(stale, fresh)``, ``cos(stale, exact)`` and the norm ratio
stale / fresh, medians over ``--batches`` noise batches.

Usage (numbers in docs/BENCHMARKS.md)::

    OMP_NUM_THREADS=1 python benchmarks/bench_pool_bias.py --ckpt src/pirf/assets/poisson-tiny \\
        --iters 40 --at 20,40 --ages 0,1,2,4,8,16 --batches 4 --batch 8
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics

import torch

from pirf.finetune import FinetuneConfig
from pirf.finetune.reward import Reward
from pirf.finetune.trainer import PIRFTrainer
from pirf.finetune.trajectory import truncated_trajectory, window_start, window_trajectory
from pirf.models import load_model
from pirf.sampling import generate, karras_sigmas


def flat_gradient(loss: torch.Tensor, params: list[torch.nn.Parameter]) -> torch.Tensor:
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    pairs = zip(params, grads, strict=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).flatten() for p, g in pairs])


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True, help="base checkpoint directory")
    parser.add_argument("--iters", type=int, default=40, help="fine-tuning iterations")
    parser.add_argument("--at", default="20,40", help="iterations t to measure at")
    parser.add_argument("--ages", default="0,1,2,4,8,16", help="ages a of the window starts")
    parser.add_argument("--truncation", type=int, default=2, help="K")
    parser.add_argument("--steps", type=int, default=20, help="sampler steps N")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--batches", type=int, default=4, help="noise batches (medians)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    base = load_model(args.ckpt, device="cpu")
    config = FinetuneConfig.of(
        steps=args.steps,
        truncation=args.truncation,
        lr=args.lr,
        batch=args.batch,
        iters=args.iters,
    )
    trainer = PIRFTrainer(
        copy.deepcopy(base.denoiser).float(),
        config,
        shape=base.shape,
        pde=base.pde,
        normalisation=base.normalisation,
    )
    reward = Reward(base.pde, base.normalisation)
    sigmas = karras_sigmas(args.steps)
    noises = [
        torch.randn((args.batch, *base.shape), generator=torch.Generator().manual_seed(900 + i))
        for i in range(args.batches)
    ]
    base_samples = generate(trainer.model, 64, base.shape, 1, steps=args.steps).samples
    trainer.calibrate(base_samples)
    reward.scales = trainer.reward.scales
    ages = sorted({0, *(int(v) for v in args.ages.split(","))})

    def snapshot() -> dict[str, torch.Tensor]:
        return {name: p.detach().clone() for name, p in trainer.named_trainable}

    history = [snapshot()]
    for iteration in range(args.iters):
        trainer.step(iteration)
        history.append(snapshot())

    model = trainer.model
    params = trainer.trainable
    own = dict(model.named_parameters())

    def load(weights: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, value in weights.items():
                own[name].copy_(value)

    rows = []
    for t in (int(v) for v in args.at.split(",")):
        measured: dict[int, list[dict[str, float]]] = {}
        for noise in noises:
            load(history[t])
            exact_run = truncated_trajectory(model, noise, sigmas, 1, mode="full")
            exact = flat_gradient(reward(exact_run.final).mean(), params)
            starts = {}
            for age in ages:  # 0 first: the fresh gradient
                load(history[max(t - age, 0)])
                starts[age] = window_start(model, noise, sigmas, args.truncation)
            load(history[t])
            fresh = None
            for age, state in starts.items():
                run = window_trajectory(model, state, sigmas, args.truncation)
                gradient = flat_gradient(reward(run.final).mean(), params)
                if fresh is None:
                    fresh = gradient
                measured.setdefault(age, []).append(
                    {
                        "cos_fresh": cosine(gradient, fresh),
                        "cos_exact": cosine(gradient, exact),
                        "norm_fresh": float(gradient.norm() / fresh.norm()),
                    }
                )
        for age, values in measured.items():
            row = {"iteration": t, "age": age}
            for key in ("cos_fresh", "cos_exact", "norm_fresh"):
                row[key] = statistics.median(v[key] for v in values)
            rows.append(row)
            if not args.json:
                print(
                    f"t={t:<4d} age {age:<3d} cos(stale, fresh) {row['cos_fresh']:+.3f}  "
                    f"cos(stale, exact) {row['cos_exact']:+.3f}  "
                    f"norm stale/fresh {row['norm_fresh']:.3f}",
                    flush=True,
                )
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
