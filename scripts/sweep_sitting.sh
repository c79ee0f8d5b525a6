#!/usr/bin/env bash
# The default `make sweep` (20 cells), timed before and after the speed work, in one sitting on
# one machine (issue 7). Each variant writes into its own fresh results and tokenisation-cache
# folder, so none profits from another's work.
#   before   : optimisations off: no length grouping, no tokenisation cache, head_only runs the
#              backbone every step (cache_features=false); serial. (head_only needs its own
#              invocation because only that method has the cache_features setting.)
#   after    : exactly `make sweep`'s command (serial, defaults)
#   parallel : the same with hydra/launcher=parallel (2 joblib workers, threads split 1+1)
# Usage: scripts/sweep_sitting.sh [OUT_DIR]   (about 80 minutes on 2 cores)
set -u
PY=${PY:-.venv/bin/python}
OUT=${1:-/tmp/sweep-sitting}
rm -rf "$OUT"; mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
busy() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat; }
run() {  # name, then the bench arguments
  local name=$1; shift
  local b0 t0 t1 b1
  b0=$(busy); t0=$(date +%s.%N)
  "$PY" -m bench "$@" results_dir="$OUT/$name/results" cache_dir="${CACHE:-$OUT/$name/cache}" \
      hydra.sweep.dir="$OUT/$name/hydra" > "$OUT/$name.log" 2>&1
  local rc=$?
  t1=$(date +%s.%N); b1=$(busy)
  python3 - "$name" "$rc" "$t0" "$t1" "$b0" "$b1" "$OUT" <<'PYEOF'
import glob, json, os, sys
name, rc, t0, t1, b0, b1, out = sys.argv[1:]
wall = float(t1) - float(t0)
cpu = (float(b1) - float(b0)) / os.sysconf("SC_CLK_TCK")
recs = [json.load(open(f)) for f in glob.glob(f"{out}/{name}/results/**/*.json", recursive=True)]
ok = sum(r.get("status") == "ok" for r in recs)
print(f"{name:22s} rc {rc}  wall {wall / 60:6.2f} min  machine CPU busy {cpu / wall / os.cpu_count():5.1%}  "
      f"records ok {ok}/{len(recs)}  sum of cell train_s {sum(r['time']['train_s'] for r in recs if r.get('status') == 'ok') / 60:5.1f} min",
      flush=True)
PYEOF
}
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%FT%TZ); commit $(git rev-parse --short HEAD)"
SLOW="train.group_by_length=false"
CACHE=null run before_4methods -m task=cola,sst2,stsb,mrpc method=full,adapter,lora,prompt_tuning $SLOW
CACHE=null run before_head_only -m task=cola,sst2,stsb,mrpc method=head_only method.cache_features=false $SLOW
run after experiment=default_sweep
run parallel experiment=default_sweep hydra/launcher=parallel
echo "done $(date -u +%FT%TZ)"
