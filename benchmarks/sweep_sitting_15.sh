#!/usr/bin/env bash
# Issue #15's one-sitting check: the default sweep before and after the speed work, on one machine, one
# after the other, each into fresh results and cache folders, then whether the fp32 metrics changed.
#   before        : `python -m bench experiment=default_sweep` at BEFORE (default e2cdb97, the commit before
#                   this wave's speed changes), from a temporary git worktree
#   after         : the same command at this checkout (what `make sweep` runs)
#   parallel      : this checkout, what `make sweep-parallel` runs: two 1-thread cells at a time, no
#                   inference, then `python -m bench.sweep.cost_pass --inference` (its wall time printed apart)
#   bf16_parallel : this checkout, train.precision=bf16, two 1-thread cells at a time (rounding changes)
# Then: benchmarks/paired_arms.py after before (fp32 unchanged = identical predictions in every cell), parallel vs
# after (what 1-thread cells change) and bf16_parallel vs after (the metric cost of the fast variant).
# Needs a quiet machine: ~100 min on 2 cores.
# Usage: benchmarks/sweep_sitting_15.sh [OUT_DIR]   (BEFORE=<commit> to compare with another commit)
set -u
PY=${PY:-$(pwd)/.venv/bin/python}
OUT=${1:-/tmp/sweep-sitting-15}
BEFORE=${BEFORE:-e2cdb97}
rm -rf "$OUT"; mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export BENCH_GLUE_DIR=${BENCH_GLUE_DIR:-$(cd ../shared/data/glue 2>/dev/null && pwd)}
. "$(dirname "$0")/sitting_lib.sh"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%FT%TZ); after = $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ' (dirty)'), before = $BEFORE"
git worktree add -f "$OUT/before_tree" "$BEFORE" --detach -q || exit 1
run before "$OUT/before_tree" experiment=default_sweep
run after "$(pwd)" experiment=default_sweep
run parallel "$(pwd)" experiment=default_sweep hydra/launcher=parallel inference.enabled=false
timed parallel_cost_pass "$PY" -m bench.sweep.cost_pass "$OUT/parallel/results/default_sweep" --inference
run bf16_parallel "$(pwd)" experiment=default_sweep train.precision=bf16 hydra/launcher=parallel
git worktree remove --force "$OUT/before_tree"
"$PY" -m benchmarks.paired_arms "$OUT/after/results/default_sweep" "$OUT/before/results/default_sweep"
"$PY" -m benchmarks.paired_arms "$OUT/parallel/results/default_sweep" "$OUT/after/results/default_sweep"
"$PY" -m benchmarks.paired_arms "$OUT/bf16_parallel/results/default_sweep" "$OUT/after/results/default_sweep"
echo "done $(date -u +%FT%TZ)"
