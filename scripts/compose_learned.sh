#!/usr/bin/env bash
# Learned composition on minilm (issue #29, docs/compose.md "Learned composition"): for each family
# (LoRA -> lora_moe, adapter -> adapter_fusion, prompt tuning -> attempt), the frozen sources (seed 0,
# 1,000 examples, deltas kept: experiment=compose_sources), then for each target task, target size K
# and seed the five arms at the same K: scratch, transfer from each source (train.init_from, fresh head),
# the static merge (gate=uniform: fixed 1/n weights, only the head trains) and the learned combination.
# Resumable: every cell is skipped when its ok record exists (config hash). Report: reports/compose_learned.
#   scripts/compose_learned.sh [RESULTS_DIR]     (make compose-learned)
# The grid is set by the environment (defaults: the full grid of issue #29):
#   FAMILIES="lora adapter prompt_tuning" TARGETS="rte mrpc" KS="100 300 1000" SEEDS="0 1 2"
#   TASKS="sst2 stsb mrpc" (source tasks; a target is never its own source) NICE=19
#   TARGET_TRAIN="train.batch_size=8" (target arms: 38 optimizer steps at K=100 in 3 epochs; docs/decisions.md)
#   JOBS=2 (cells in parallel, one thread each: the seeds of an arm are one multirun; inference timing is
#   off in the cells and measured alone at the end by the cost pass, one record per target, K and arm)
set -euo pipefail
cd "$(dirname "$0")/.."
R="${1:-results}"
REPORTS="${REPORTS:-reports}"
PY="${PYTHON:-.venv/bin/python}"
FAMILIES="${FAMILIES:-lora adapter prompt_tuning}"
TARGETS="${TARGETS:-rte mrpc}"
KS="${KS:-100 300 1000}"
SEEDS="${SEEDS:-0 1 2}"
TASKS="${TASKS:-sst2 stsb mrpc}"
TARGET_TRAIN="${TARGET_TRAIN:-train.batch_size=8}"
JOBS="${JOBS:-2}"
RUN=(cell nice -n "${NICE:-19}" "$PY" -m bench)
# the target arms: every seed in one invocation, JOBS cells at a time (1 thread each), no timing beside a neighbour
PAR=(-m hydra/launcher=parallel "hydra.launcher.n_jobs=$JOBS" train.threads=1 inference.enabled=false)
FAILED=0
cell() {  # one invocation; a failed cell is recorded (status failed) and the grid goes on
  "$@" || { echo "compose_learned: failed (exit $?): ${*: -1}" >&2; FAILED=$((FAILED + 1)); }
}
declare -A COMBO=([lora]=lora_moe [adapter]=adapter_fusion [prompt_tuning]=attempt)

newest() {  # newest source record of one (task, method) at seed 0 in the sources sweep
  ls -t "$R"/compose/minilm__"$1"__"$2"__s0__*.json 2>/dev/null | head -1
}
sources_of() {  # the source tasks of a target: TASKS without the target
  for t in $TASKS; do if [ "$t" != "$1" ]; then echo "$t"; fi; done
}

for fam in $FAMILIES; do
  need=""
  for tgt in $TARGETS; do need="$need $(sources_of "$tgt")"; done
  need=$(echo $need | tr ' ' '\n' | sort -u | paste -sd, -)
  "${RUN[@]}" experiment=compose_sources "task=$need" "method=$fam" train.seed=0 results_dir="$R"
  combo=${COMBO[$fam]}
  for tgt in $TARGETS; do
    srcs=(); paths=()
    for s in $(sources_of "$tgt"); do srcs+=("$s"); paths+=("$(newest "$s" "$fam")"); done
    list=$(IFS=,; echo "${paths[*]}")
    seeds=$(echo $SEEDS | tr ' ' ',')
    for k in $KS; do
      base=("${PAR[@]}" model=minilm "task=$tgt" "train.max_train_samples=$k" "train.seed=$seeds"
            sweep_name=compose_learned results_dir="$R" save_delta=false $TARGET_TRAIN)
      "${RUN[@]}" "${base[@]}" "method=$fam" "label=${fam}_n$k"
      for i in "${!srcs[@]}"; do
        "${RUN[@]}" "${base[@]}" "method=$fam" "train.init_from=${paths[$i]}" ++train.init_head=never \
          "label=${fam}_n${k}_from_${srcs[$i]}"
      done
      "${RUN[@]}" "${base[@]}" "method=$combo" "method.sources=[$list]" method.gate=uniform \
        "label=${combo}_n${k}_uniform"
      "${RUN[@]}" "${base[@]}" "method=$combo" "method.sources=[$list]" "label=${combo}_n$k"
    done
  done
done
# inference cost (the learned combination runs every source) of the scratch and learned arms, alone:
# one record per target, K and arm (a structure property; bench/sweep/cost_pass.py)
cell nice -n "${NICE:-19}" "$PY" -m bench.sweep.cost_pass "$R/compose_learned" --inference-only --one-per-method \
  --steps 5 --warmup 1
"$PY" -m bench.report "$R/compose_learned" --out "$REPORTS"/compose_learned
[ "$FAILED" -eq 0 ] || { echo "compose_learned: $FAILED invocation(s) failed; rerun to retry them" >&2; exit 1; }
