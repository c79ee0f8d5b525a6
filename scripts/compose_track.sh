#!/usr/bin/env bash
# The composition track on minilm (issue #17, docs/compose.md): sources with kept deltas, soups, a
# 3-task LoRA merge with three merge methods, the LoRA transfer matrix, and one report per part.
# Resumable: finished cells are skipped by config hash; soups/merges are re-made (seconds to minutes).
#   scripts/compose_track.sh [RESULTS_DIR]          (make compose; REPORTS=folder for the reports)
set -euo pipefail
cd "$(dirname "$0")/.."
R="${1:-results}"
REPORTS="${REPORTS:-reports}"
PY="${PYTHON:-.venv/bin/python}"
newest() {  # newest record file of one (task, method label, seed) in the sources sweep
  ls -t "$R"/compose/minilm__"$1"__"$2"__s"$3"__*.json 2>/dev/null | head -1
}
$PY -m bench experiment=compose_sources results_dir="$R"
for m in lora adapter; do for t in sst2 stsb; do
  $PY -m bench.compose soup "$(newest $t $m 0)" "$(newest $t $m 1)" "$(newest $t $m 2)" --task $t --kind both \
    --out "$R/compose_soups"
done; done
$PY -m bench.compose merge "$(newest sst2 lora 0)" "$(newest stsb lora 0)" "$(newest mrpc lora 0)" \
  --method linear --method ties --method dare_ties --density 0.5 --out "$R/compose_merge"
$PY -m bench.compose transfer --tasks sst2,mrpc,stsb --method lora --seeds 0,1,2 --budget 200 --min-steps 100 \
  --sweep compose experiment=compose_sources results_dir="$R"
$PY -m bench.report "$R/compose_soups" --out "$REPORTS"/compose_soups
$PY -m bench.report "$R/compose_merge" --out "$REPORTS"/compose_merge
$PY -m bench.report "$R/compose" --out "$REPORTS"/compose_transfer
