# Shared by benchmarks/sweep_sitting*.sh (source it): `run NAME DIR bench-args...` runs `python -m bench` in
# DIR with fresh results and cache folders under $OUT/NAME (CACHE=null: no tokenisation cache) and prints
# one line: wall time, how busy the machine was, records ok, summed train / eval / inference minutes.
busy() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat; }
run() {
  local name=$1 dir=$2; shift 2
  local b0 t0 t1 b1
  b0=$(busy); t0=$(date +%s.%N)
  (cd "$dir" && "$PY" -m bench "$@" results_dir="$OUT/$name/results" cache_dir="${CACHE:-$OUT/$name/cache}" \
      hydra.sweep.dir="$OUT/$name/hydra" > "$OUT/$name.log" 2>&1)
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
print(f"{name:22s} rc {rc}  wall {wall / 60:6.2f} min  machine CPU busy {cpu / wall / os.cpu_count():5.1%}  "
      f"records ok {len(ok)}/{len(recs)}  summed train {part('train_s'):5.1f} min, eval {part('eval_s'):4.1f}, "
      f"inference {inf:4.1f}", flush=True)
PYEOF
}
# `timed NAME command...`: any other command (a cost pass), its wall time and machine CPU share.
timed() {
  local name=$1; shift
  local b0 t0 t1 b1
  b0=$(busy); t0=$(date +%s.%N)
  "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  t1=$(date +%s.%N); b1=$(busy)
  awk -v n="$name" -v rc=$rc -v w="$(echo "$t1 - $t0" | bc)" -v c="$(echo "($b1 - $b0) / $(getconf CLK_TCK)" | bc -l)" \
      -v k="$(nproc)" 'BEGIN { printf "%-22s rc %d  wall %6.2f min  machine CPU busy %5.1f%%\n", n, rc, w / 60, 100 * c / w / k }'
}
