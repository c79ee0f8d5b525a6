#!/usr/bin/env bash
# `make bench`: the harness's per-step overhead, a cell vs a Trainer script, and the accuracy of the
# harness's measurements (+ optimisation A/B runs), in sequence. Output goes to stdout and is also
# appended to $BENCH_LOG (default reports/bench/bench.log). ~30 min on 2 CPU cores; the figures are
# timings, so run nothing else heavy meanwhile. What the figures mean: docs/performance.md.
#   benchmarks/run_benchmarks.sh
#   BENCH_ARGS_MEASUREMENTS="--sections memory,known,throughput" benchmarks/run_benchmarks.sh   # no A/B runs
#   BENCH_ARGS_OVERHEAD="--steps 100" BENCH_ARGS_TRAINER="--repeats 1" benchmarks/run_benchmarks.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} HF_DATASETS_OFFLINE=${HF_DATASETS_OFFLINE:-1}
export TRANSFORMERS_OFFLINE=${TRANSFORMERS_OFFLINE:-1} TOKENIZERS_PARALLELISM=false
export BENCH_GLUE_DIR=${BENCH_GLUE_DIR:-$(cd .. && pwd)/shared/data/glue}
LOG=${BENCH_LOG:-reports/bench/bench.log}
mkdir -p "$(dirname "$LOG")"
if [ ! -x /usr/bin/time ]; then
  echo "error: /usr/bin/time is missing (Debian/Ubuntu: apt-get install -y time); bench_measurements needs it" >&2
  exit 2
fi
{
  echo "# make bench: $(date -u +%Y-%m-%dT%H:%M:%SZ), host $(hostname), git $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo ' (dirty tree)')"
} | tee -a "$LOG"
status=0
for script in bench_overhead bench_optimizer bench_trainer bench_measurements; do
  case $script in
    bench_overhead) extra=${BENCH_ARGS_OVERHEAD:-} ;;
    bench_optimizer) extra=${BENCH_ARGS_OPTIMIZER:-} ;;
    bench_trainer) extra=${BENCH_ARGS_TRAINER:-} ;;
    bench_measurements) extra=${BENCH_ARGS_MEASUREMENTS:-} ;;
  esac
  echo | tee -a "$LOG"
  # shellcheck disable=SC2086
  "$PY" -m "benchmarks.$script" $extra 2>&1 | tee -a "$LOG"
  rc=${PIPESTATUS[0]}
  if [ "$rc" -ne 0 ]; then
    echo "!! benchmarks/$script.py exited with $rc" | tee -a "$LOG"
    status=1
  fi
done
echo "log: $LOG"
exit $status
