#!/usr/bin/env bash
# The default `make sweep` (20 cells), timed before and after the speed work, in one sitting on
# one machine (issue 7). Each variant writes into its own fresh results and tokenisation-cache
# folder, so none profits from another's work.
#   before   : optimisations off: no length grouping, no tokenisation cache, head_only runs the
#              backbone every step (cache_features=false); serial. (head_only needs its own
#              invocation because only that method has the cache_features setting.)
#   after    : exactly `make sweep`'s command (serial, defaults)
#   parallel : the same with hydra/launcher=parallel (2 joblib workers, threads split 1+1)
# Usage: benchmarks/sweep_sitting.sh [OUT_DIR]   (about 80 minutes on 2 cores)
set -u
PY=${PY:-.venv/bin/python}
OUT=${1:-/tmp/sweep-sitting}
rm -rf "$OUT"; mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
. "$(dirname "$0")/sitting_lib.sh"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%FT%TZ); commit $(git rev-parse --short HEAD)"
SLOW="train.group_by_length=false"
CACHE=null run before_4methods "$(pwd)" -m task=cola,sst2,stsb,mrpc method=full,adapter,lora,prompt_tuning $SLOW
CACHE=null run before_head_only "$(pwd)" -m task=cola,sst2,stsb,mrpc method=head_only method.cache_features=false $SLOW
run after "$(pwd)" experiment=default_sweep
run parallel "$(pwd)" experiment=default_sweep hydra/launcher=parallel
echo "done $(date -u +%FT%TZ)"
