#!/usr/bin/env bash
# Issue #15's one-sitting check: the default sweep before and after the speed work, on one machine, one
# after the other, each into fresh results and cache folders, then whether the fp32 metrics changed.
#   before        : `python -m bench experiment=default_sweep` at BEFORE (default e2cdb97, the commit before
#                   this wave's speed changes), from a temporary git worktree
#   after         : the same command at this checkout (what `make sweep` runs)
#   bf16_parallel : this checkout, train.precision=bf16, two 1-thread cells at a time (rounding changes)
# Then: scripts/paired_arms.py after before (fp32 unchanged = identical predictions in every cell) and
# bf16_parallel vs after (the metric cost of the fast variant). Needs a quiet machine: ~75 min on 2 cores.
# Usage: scripts/sweep_sitting_15.sh [OUT_DIR]   (BEFORE=<commit> to compare with another commit)
set -u
PY=${PY:-$(pwd)/.venv/bin/python}
OUT=${1:-/tmp/sweep-sitting-15}
BEFORE=${BEFORE:-e2cdb97}
rm -rf "$OUT"; mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export BENCH_GLUE_DIR=${BENCH_GLUE_DIR:-$(cd ../shared/data/glue 2>/dev/null && pwd)}
busy() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat; }
run() {  # name, folder to run in, then the bench arguments
  local name=$1 dir=$2; shift 2
  local b0 t0 t1 b1
  b0=$(busy); t0=$(date +%s.%N)
  (cd "$dir" && "$PY" -m bench "$@" results_dir="$OUT/$name/results" cache_dir="$OUT/$name/cache" \
      hydra.sweep.dir="$OUT/$name/hydra" progress.mode=log > "$OUT/$name.log" 2>&1)
  local rc=$?
  t1=$(date +%s.%N); b1=$(busy)
  python3 - "$name" "$rc" "$t0" "$t1" "$b0" "$b1" "$OUT" <<'PYEOF'
import glob, json, os, sys
name, rc, t0, t1, b0, b1, out = sys.argv[1:]
wall = float(t1) - float(t0)
cpu = (float(b1) - float(b0)) / os.sysconf("SC_CLK_TCK")
recs = [json.load(open(f)) for f in glob.glob(f"{out}/{name}/results/**/*.json", recursive=True)]
recs = [r for r in recs if isinstance(r, dict) and "status" in r]
ok = [r for r in recs if r.get("status") == "ok"]
part = lambda k: sum((r.get("time") or {}).get(k) or 0 for r in ok) / 60
inf = sum(((r.get("inference") or {}).get("seconds") or 0) for r in ok) / 60
print(f"{name:14s} rc {rc}  wall {wall / 60:6.2f} min  machine CPU busy {cpu / wall / os.cpu_count():5.1%}  "
      f"records ok {len(ok)}/{len(recs)}  summed train {part('train_s'):5.1f} min, eval {part('eval_s'):4.1f}, "
      f"inference {inf:4.1f}", flush=True)
PYEOF
}
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%FT%TZ); after = $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ' (dirty)'), before = $BEFORE"
git worktree add -f "$OUT/before_tree" "$BEFORE" --detach -q || exit 1
run before "$OUT/before_tree" experiment=default_sweep
run after "$(pwd)" experiment=default_sweep
run bf16_parallel "$(pwd)" experiment=default_sweep train.precision=bf16 hydra/launcher=parallel
git worktree remove --force "$OUT/before_tree"
"$PY" scripts/paired_arms.py "$OUT/after/results/default_sweep" "$OUT/before/results/default_sweep"
"$PY" scripts/paired_arms.py "$OUT/bf16_parallel/results/default_sweep" "$OUT/after/results/default_sweep"
echo "done $(date -u +%FT%TZ)"
