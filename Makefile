# peft-bench. Two commands for a newcomer: `make sweep` and `make test` (see README.md).
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export BENCH_GLUE_DIR ?= $(abspath ../shared/data/glue)
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
RESULTS ?= results
SWEEP ?= default_sweep
# Extra Hydra overrides for `make sweep`, e.g. SWEEP_ARGS=hydra/launcher=parallel (two cells at once:
# faster wall time, but each cell's throughput is then measured beside another cell; docs/performance.md)
SWEEP_ARGS ?=

.PHONY: help test-slow test-all setup sweep sweep-parallel study budget catalogue compose compose-learned smoke test report reproduce reproduce-params baseline regress bench lint clean

## The targets and what each does (from the `## ` comment above each target in this Makefile).
help:
	@awk '/^## /{doc = doc (doc ? " " : "") substr($$0, 4); next} /^([A-Z_]+ \?=|#)/{next} \
	  /^[a-z][a-z-]*:/{if (doc) {split($$0, t, ":"); n = index(doc, ". "); if (n) doc = substr(doc, 1, n); \
	  printf "  make %-16s %s\n", t[1], doc}; doc = ""; next} {doc = ""}' $(MAKEFILE_LIST)

## Create .venv and install peft-bench with the versions CI tested (constraints.txt; docs/install.md).
setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

## The main job: five methods x four GLUE tasks on the bundled MiniLM, then the comparison report.
sweep: setup
	$(BIN)/python -m bench experiment=default_sweep results_dir=$(RESULTS) $(SWEEP_ARGS); status=$$?; \
	  if [ $$status -ne 130 ]; then $(BIN)/python -m bench.report $(RESULTS)/default_sweep --out reports/default_sweep; fi; \
	  exit $$status

## The same sweep with its cells in parallel (one per core, 1 thread each) for the metrics, then the cost
## pass (bench/sweep/cost_pass.py) times every cell's training, evaluation and inference alone. Metrics differ
## from `make sweep`'s in the last bits (thread count changes float sums; docs/performance.md section 11).
sweep-parallel: setup
	$(BIN)/python -m bench experiment=default_sweep sweep_name=default_sweep_parallel results_dir=$(RESULTS) \
	  hydra/launcher=parallel hydra.launcher.n_jobs=$$(nproc) inference.enabled=false $(SWEEP_ARGS); status=$$?; \
	  if [ $$status -eq 0 ]; then $(BIN)/python -m bench.sweep.cost_pass $(RESULTS)/default_sweep_parallel --inference; status=$$?; fi; \
	  if [ $$status -ne 130 ]; then $(BIN)/python -m bench.report $(RESULTS)/default_sweep_parallel --out reports/default_sweep_parallel; fi; \
	  exit $$status

## The tuning protocol (docs/protocol.md): 5 methods x 3 tasks, 6 learning rates each chosen on the
## selection split, the chosen rate rerun with 3 seeds; report with intervals, pairwise tests and budget curves.
STUDY_ARGS ?=
study: setup
	$(BIN)/python -m bench experiment=study results_dir=$(RESULTS) $(STUDY_ARGS); status=$$?; \
	  if [ $$status -ne 130 ]; then $(BIN)/python -m bench.report $(RESULTS)/study --out reports/study; fi; \
	  exit $$status

## Data-budget curves (docs/budget.md): 5 methods x sst2, mrpc x K = 100, 300, 1000, 3000 (nested, stratified),
## the rate chosen per K on the selection split, 3 seeds; report with curves, crossover table and rank agreement.
BUDGET_ARGS ?=
budget: setup
	$(BIN)/python -m bench experiment=budget results_dir=$(RESULTS) $(BUDGET_ARGS); status=$$?; \
	  if [ $$status -ne 130 ]; then $(BIN)/python -m bench.report $(RESULTS)/budget --out reports/budget; fi; \
	  exit $$status

## The PEFT catalogue (docs/catalogue.md): every method whose YAML declares tags: [catalogue] x sst2, stsb under the
## tuning protocol (6 rates per method on the selection split: 4 over the range, 2 placed by the search; pruned; 5 seeds)
## into $(RESULTS)/catalogue_v2 (results/catalogue: the 3-seed protocol's records); resumes; then the catalogue report
## (every method vs LoRA, Pareto frontiers, rank agreement). Two 1-thread cells at a time; then the inference
## cost and mergeability of each method's structure, measured alone (one record per task and method, cost pass).
CATALOGUE_ARGS ?=
catalogue: setup
	$(BIN)/python -m bench experiment=catalogue results_dir=$(RESULTS) inference.enabled=false hydra/launcher=parallel \
	  hydra.launcher.n_jobs=$$(nproc) train.threads=1 $(CATALOGUE_ARGS); status=$$?; \
	  if [ $$status -eq 0 ]; then $(BIN)/python -m bench.sweep.cost_pass $(RESULTS)/catalogue_v2 --inference-only \
	    --one-per-method --steps 5 --warmup 1; status=$$?; fi; \
	  if [ $$status -ne 130 ]; then $(BIN)/python -m bench.report.catalogue $(RESULTS)/catalogue_v2 --out reports/catalogue; fi; \
	  exit $$status

## Composition track (docs/compose.md): soups of LoRA/adapter seeds, a 3-task LoRA merge (linear, TIES,
## DARE-TIES), the LoRA transfer matrix at 200 examples; reports in reports/compose_*.
compose: setup
	scripts/compose_track.sh $(RESULTS)

## Learned composition (issue #29, docs/compose.md): AdapterFusion, ATTEMPT and a LoRA mixture over frozen
## sources vs scratch, best transfer and the static merge; targets RTE, MRPC at K = 100, 300, 1,000, 3 seeds;
## resumable; report in reports/compose_learned. A subset: FAMILIES=... TARGETS=... KS=... SEEDS=... make compose-learned
compose-learned: setup
	scripts/compose_learned.sh $(RESULTS)

## A seconds-long sweep of every method on a tiny random-weight model.
smoke: setup
	$(BIN)/python -m bench experiment=smoke results_dir=$(RESULTS)

## The test suite without the slow tests, on two workers: under 8 minutes on 2 cores (what CI runs).
# A module's tests stay on one worker, so module fixtures are built once.
test: setup
	$(BIN)/python -m pytest -q -m "not slow" -n 2 --dist loadfile --no-loadscope-reorder

## The slow tests alone (whole sweeps in subprocesses, fault tolerance, tuning studies): minutes each.
test-slow: setup
	$(BIN)/python -m pytest -q -m slow

## Every test, slow ones included.
test-all: setup
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder

## ruff, and the import contract of docs/structure.md (layers; the report reads records only), checked by import-linter
lint: setup
	$(BIN)/ruff check bench tests
	$(BIN)/lint-imports

## Remove Hydra's and pytest's scratch folders (logs, outputs, multirun, .pytest_cache).
clean:
	rm -rf logs outputs multirun .pytest_cache

## Comparison report of a results folder (default: the main sweep) into reports/<name>/.
report: setup
	$(BIN)/python -m bench.report $(RESULTS)/$(SWEEP) --out reports/$(SWEEP)

## Published trainable-parameter counts next to the harness's counts (seconds, no training).
reproduce-params: setup
	$(BIN)/python -m bench.reproduce params

## Runs the published configurations this machine can run + the scaled-down MiniLM reproduction, as
## `python -m bench -m` sweeps (bench/reproduce/runner.py). REPRODUCE_ARGS, e.g. "-o train.threads=1", adds
## overrides to every cell.
REPRODUCE_ARGS ?=
reproduce: setup
	$(BIN)/python -m bench.reproduce all $(REPRODUCE_ARGS)

## Re-record the regression gate's baseline; commit results/baselines/ci_gate.json with the change that moved it.
baseline: setup
	rm -rf $(RESULTS)/ci_gate
	$(BIN)/python -m bench experiment=ci_gate results_dir=$(RESULTS)
	$(BIN)/python -m bench.regress save $(RESULTS)/ci_gate --name ci_gate --direction both

## Run the ci_gate sweep afresh and gate it against results/baselines/ci_gate.json (exit 1 names the regressed cells).
regress: setup
	rm -rf $(RESULTS)/ci_gate_candidate
	-$(BIN)/python -m bench experiment=ci_gate results_dir=$(RESULTS) sweep_name=ci_gate_candidate
	$(BIN)/python -m bench.regress check --baseline ci_gate $(RESULTS)/ci_gate_candidate --report-only throughput

## Benchmarks of the harness itself (overhead, vs a Trainer script, measurement accuracy); ~25 min.
bench: setup
	benchmarks/run_benchmarks.sh
