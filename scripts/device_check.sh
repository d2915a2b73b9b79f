#!/usr/bin/env bash
# One device-machine call (GPU + 16 CPU cores), prepared and smoke-tested here first:
#   1. the GPU recipe check (scripts/gpu_check.sh run; JSON rewritten after each size),
#   2. predict_batch scaling with cores on real photos (fashion-bench cores),
#   3. fashion-bench of the shipped bundle's ONNX rows on that machine's CPU.
# Usage there: WHEELS=gpu-check/wheels312 scripts/device_check.sh OUT_DIR [TAG]  (WHEELS: see gpu_check.sh)
# Each step has its own time limit, and each writes into OUT_DIR as soon as it ends. STEPS picks steps
# ("gpu scaling bench" by default).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT_DIR="${1:?usage: $0 OUT_DIR [TAG]}"
TAG="${2:-device}"
PYTHON="${PYTHON:-python3}"
DATA="${CHECK_DIR:-gpu-check}/data"
STEPS=" ${STEPS:-gpu scaling bench} "
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1
  lscpu 2>&1 | grep -E "Model name|^CPU\(s\)|Flags" | cut -c1-2000
  "$PYTHON" -c "import sys, numpy, PIL, onnxruntime; print(sys.version.split()[0], numpy.__version__, PIL.__version__, onnxruntime.__version__)"
} >"$OUT_DIR/machine-$TAG.txt" 2>&1
cat "$OUT_DIR/machine-$TAG.txt"

if [[ "$STEPS" == *" gpu "* ]]; then
echo "== 1. GPU recipe check"
CHECK_DIR="${CHECK_DIR:-gpu-check}" PYTHON="$PYTHON" LIMIT="${GPU_LIMIT:-270}" \
  bash scripts/gpu_check.sh run "$OUT_DIR/gpu-check-$TAG.json" 2>&1 | tail -n 40
fi
if [[ "$STEPS" == *" scaling "* ]]; then
echo "== 2. predict_batch scaling with cores"
PYTHONPATH="$ROOT" timeout "${SCALING_LIMIT:-150}" "$PYTHON" -m fashion.benchmarks.cli cores models/fashion-effnetb0 \
  --cores "${CORES:-1,2,4,8,16}" --data "$DATA" --split val --split-file "$DATA/split.csv" \
  --json "$OUT_DIR/scaling-$TAG.json" --markdown "$OUT_DIR/scaling-$TAG.md" 2>&1 | tail -n 20
fi
if [[ "$STEPS" == *" bench "* ]]; then
echo "== 3. fashion-bench ONNX rows on this CPU (2 threads)"
PYTHONPATH="$ROOT" timeout "${BENCH_LIMIT:-120}" "$PYTHON" -m fashion.benchmarks.cli models/fashion-effnetb0 \
  --backends onnx-fp32,onnx-int8 --threads 2 --data "$DATA" --split val --split-file "$DATA/split.csv" \
  --iters "${ITERS:-200}" --json "$OUT_DIR/bench-$TAG.json" --markdown "$OUT_DIR/bench-$TAG.md" --quiet 2>&1 | tail -n 20
fi
ls -la "$OUT_DIR"
