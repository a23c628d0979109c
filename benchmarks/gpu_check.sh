#!/usr/bin/env bash
# The GPU measurements docs/BENCHMARKS.md still lacks, as one prepared run (about 10 minutes
# on one H100-class GPU). Run from the repository root on a machine with CUDA torch, numpy,
# h5py, safetensors, typer, rich and matplotlib installed; results go to ${OUT:-gpu-out}/.
#
#   bash benchmarks/gpu_check.sh
set -euo pipefail
out="${OUT:-gpu-out}"
mkdir -p "$out"
python3 -m pip install -q --no-deps --no-build-isolation -e . >/dev/null
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$out/gpu.txt"
# 1. The reference loop's setting: paper backbone, 128^2, batch 20, N = 20 (method.md).
python3 benchmarks/bench_finetune.py --speed --preset paper --resolution 128 --batch 20 \
    --device cuda --repeats 5 --only k2-all,k2-top,k2-top-ckpt,k2-top-compile,k1-top,k2-lora \
    | tee "$out/speed-paper-128.txt"
# 2. Solvers and the small-preset datasets on the GPU.
python3 benchmarks/bench_solvers.py --device cuda --resolutions 64,128 | tee "$out/solvers.txt"
# 3. The small preset end to end on Poisson: data, base, PIRF, evaluation at 20/40/80.
timeout 300 pirf bench --preset small --pdes poisson --methods base,diffusionpde,pirf \
    --steps 20,40,80 --device cuda --out "$out/bench-small" --base-iters 4000 \
    --tune-iters 200 --eval-n 256 | tee "$out/bench-small.txt" || true
