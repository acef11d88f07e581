#!/usr/bin/env bash
# Every GPU check in one run, for a session that is lent a CUDA machine (which has torch with
# CUDA, transformers, accelerate, pytest, psutil, pyyaml and nvidia-ml-py, but no PySide6 and no
# network). The few pure-Python packages it lacks travel in build/gpu_deps, made by
# `make gpu-deps`. Prints a short table; copy it into bench/RESULTS.md with the card's name.
#   bash bench/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY=$(command -v python || command -v python3)
export HF_HUB_OFFLINE=1 PYTHONPATH="$PWD:$PWD/build/gpu_deps${PYTHONPATH:+:$PYTHONPATH}"
"$PY" - <<'PY'
import torch, pynvml
pynvml.nvmlInit()
h = pynvml.nvmlDeviceGetHandleByIndex(0)
print("card:", pynvml.nvmlDeviceGetName(h), "| torch", torch.__version__, "| CUDA", torch.version.cuda)
PY
echo "== tests/gpu and the fake-probe manager tests"
"$PY" -m pytest -q -rs -p no:cacheprovider tests/gpu tests/manager/test_eviction.py \
  tests/manager/test_lifecycle.py 2>&1 | tail -6
echo "== load overhead, 1.3 GB model"
"$PY" bench/load_overhead.py --device cuda:0 --embd 2048 --rounds 7 2>&1 | grep -v "it/s"
echo "== load overhead, 321 MiB model"
"$PY" bench/load_overhead.py --device cuda:0 --embd 1024 --rounds 9 2>&1 | grep -v "it/s"
