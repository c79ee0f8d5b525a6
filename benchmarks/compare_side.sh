#!/bin/bash
# usage: benchmarks/compare_side.sh SRC_DIR OUT_DIR   (SRC_DIR: a checkout, e.g. a worktree of an older commit)
# The two sides of benchmarks/compare_records.py: the smoke experiment and 4 minilm cells, lr pinned.
# Learning rates are pinned (train.lr=1e-3) so that retuned method defaults do not count as a difference.
set -x
PY="${PY:-$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/python}"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 BENCH_GLUE_DIR="${BENCH_GLUE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)/shared/data/glue}"
cd "$1" || exit 1
"$PY" -c "import bench; print('bench from', bench.__file__)"
time "$PY" -m bench experiment=smoke train.lr=1e-3 train.threads=1 results_dir="$2"
time "$PY" -m bench -m model=minilm task=sst2,stsb method=lora,adapter train=quick train.max_train_samples=200 train.lr=1e-3 train.threads=1 inference.enabled=false results_dir="$2" sweep_name=minilm4
