#!/usr/bin/env bash
# GPU check for the GPU recipe, in two steps (see README, "GPU check").
#
#   scripts/gpu_check.sh prepare [DATA_DIR] [IMAGES]
#       Here, with the data and PyPI: copy a seeded subset (default 1600 images, ~4 MB) of a
#       Kaggle-layout folder and the wheels of Keras and its small dependencies into $CHECK_DIR
#       (default gpu-check/, ignored by git; carry gpu-check/data and gpu-check/wheels to the GPU machine:
#       about 10 MB, which with the ~55 MB of tracked files stays under a 64 MiB transfer).
#   scripts/gpu_check.sh run [OUT_JSON]
#       On the GPU machine (no network): install from $CHECK_DIR/wheels whatever Python lacks
#       (into $CHECK_DIR/site, nothing system-wide), then train the GPU recipe $EPOCHS epochs at
#       each of $SIZES with KERAS_BACKEND=jax and write one JSON (default
#       results/gpu-check.json). Finishes within $LIMIT seconds (default 540).
#
# Environment: CHECK_DIR, WORK_DIR (runs/gpu-check: checkpoints, logs, JAX compilation cache), PYTHON,
# WHEELS ($CHECK_DIR/wheels), SIZES ("128x96 224x168"), EPOCHS (3), BATCH (128), DEVICES (1), LIMIT (540), BACKBONE (efficientnetb0;
# "tiny" for the CPU smoke test), FASHION_EFFICIENTNET_WEIGHTS.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CHECK_DIR="${CHECK_DIR:-gpu-check}"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
SIZES="${SIZES:-128x96 224x168}"
EPOCHS="${EPOCHS:-3}"
BATCH="${BATCH:-128}"
DEVICES="${DEVICES:-1}"
LIMIT="${LIMIT:-540}"
BACKBONE="${BACKBONE:-efficientnetb0}"
WHEELS="${WHEELS:-$CHECK_DIR/wheels}"  # run: where the wheels are (a trimmed folder may be carried instead)
# package name on PyPI : module it provides. Pure-Python except optree (one wheel per Python version).
PACKAGES="keras:keras click:click tqdm:tqdm namex:namex absl-py:absl rich:rich markdown-it-py:markdown_it
mdurl:mdurl pygments:pygments packaging:packaging optree:optree"

prepare() {
  local source="${1:-${FASHION_SHARED_DATA:-../shared/datasets/fashion-product-images}}"
  local images="${2:-1600}"
  mkdir -p "$CHECK_DIR/wheels"
  "$PYTHON" -m fashion.train.gpu_check prepare --source "$source" --dest "$CHECK_DIR/data" --images "$images"
  local keras_version
  keras_version="$("$PYTHON" -c 'import keras; print(keras.__version__)' 2>/dev/null || echo 3.15.1)"
  local pure="keras==$keras_version click tqdm namex absl-py rich markdown-it-py mdurl pygments packaging"
  # shellcheck disable=SC2086
  "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: -d "$CHECK_DIR/wheels" $pure
  for version in 3.11 3.12 3.13; do  # JAX 0.7+ needs Python >= 3.11
    "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$version" \
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$CHECK_DIR/wheels" optree
  done
  du -sh "$CHECK_DIR"
}

install_missing() {
  local missing=()
  for entry in $PACKAGES; do
    local package="${entry%%:*}" module="${entry##*:}"
    if ! PYTHONPATH="$CHECK_DIR/site${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -c "import $module" 2>/dev/null; then
      missing+=("$package")
    fi
  done
  if ((${#missing[@]})); then
    echo "installing from $WHEELS: ${missing[*]}"
    "$PYTHON" -m pip install --quiet --no-index --no-deps --find-links "$WHEELS" \
      --target "$CHECK_DIR/site" "${missing[@]}"
  fi
}

run() {
  local out="${1:-results/gpu-check.json}"
  [[ -f "$CHECK_DIR/data/split.csv" ]] || { echo "Error: no $CHECK_DIR/data; run '$0 prepare' first" >&2; exit 2; }
  install_missing
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  local size_args=()
  for size in $SIZES; do size_args+=(--size "$size"); done
  KERAS_BACKEND=jax PYTHONPATH="$ROOT:$CHECK_DIR/site${PYTHONPATH:+:$PYTHONPATH}" \
    XLA_PYTHON_CLIENT_PREALLOCATE="${XLA_PYTHON_CLIENT_PREALLOCATE:-false}" \
    timeout --signal=INT "$LIMIT" "$PYTHON" -m fashion.train.cli gpu-check --data "$CHECK_DIR/data" --out "$out" \
    "${size_args[@]}" --epochs "$EPOCHS" --batch-size "$BATCH" --devices "$DEVICES" --backbone "$BACKBONE" \
    --work-dir "${WORK_DIR:-runs/gpu-check}"
}

case "${1:-}" in
  prepare) shift; prepare "$@" ;;
  run) shift; run "$@" ;;
  *) echo "usage: $0 prepare [DATA_DIR] [IMAGES] | run [OUT_JSON]" >&2; exit 2 ;;
esac
