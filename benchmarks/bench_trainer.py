#!/usr/bin/env python3
"""Benchmark: one `bench` cell end to end versus the transformers Trainer + peft script a user
would write for the same cell.

Same cell on both sides: SST-2, the same training rows (bench.data.sampling.subsample with the same seed,
first N by that seeded choice), the whole dev split, bundled MiniLM, LoRA r=8 alpha=16 dropout 0.1
on query,value, 3 epochs, batch 32 (eval 128), bench's LoRA default rate (read from
conf/method/lora.yaml, as are the other settings from conf/train/default.yaml), warm-up 6 % then
linear decay, weight decay 0.01 (not on biases/LayerNorm on either side), clipping 1.0, max length
128, dynamic padding, fp32 on CPU, the same torch thread count. Differences that remain, by design:

* the head: bench trains dropout + linear on mean-pooled states; AutoModelForSequenceClassification
  (BERT) puts dropout + linear on the pooler output ([CLS] -> pretrained dense -> tanh; the pooler
  stays frozen, peft's SEQ_CLS task type only adds `classifier` to modules_to_save), so both train
  the same number of parameters (LoRA + H*C + C) but the metrics differ somewhat;
* batching: bench groups by length by default (train.group_by_length=true); the plain Trainer
  script uses a random sampler with DataCollatorWithPadding. The variant `trainer_grouped` sets
  `train_sampling_strategy="group_by_length"` to separate that effect from the loop itself.

Each side runs as its own process (`python -m bench ...` and `python -m benchmarks.bench_trainer
--child trainer ...`); variants alternate within each repeat (order rotates between repeats).
Reported: whole wall time (process start to exit), the in-process part (bench: the record's
time.total_s = run_cell from config to storage; Trainer: from data loading to the end of
evaluation, imports excluded), the training-loop time (bench time.train_s; Trainer
train_runtime), and the dev metric of each.

Usage: python -m benchmarks.bench_trainer [--samples 1000] [--repeats 2] [--variants bench,bench_noinf,trainer,trainer_grouped]
       [--cache shared|fresh|none] [--threads N] [--bench-root OTHER_CHECKOUT]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from benchmarks.machine_load import ForeignCPU

# Cell settings shared by both sides, read from bench's own defaults (conf/train/default.yaml,
# conf/method/lora.yaml) so the Trainer side follows them when they change (the LoRA rate did:
# 1e-3 -> the tuned 1.58e-3); checked against the bench record after each run.
TASK = "sst2"


def _conf(name: str) -> dict:
    """A config file as an encoder run resolves it (method/lora.yaml reads `model.peft_targets`: #27)."""
    from omegaconf import OmegaConf

    node = OmegaConf.create({"model": {}, "it": OmegaConf.load(ROOT / "conf" / f"{name}.yaml")})
    return OmegaConf.to_container(node.it, resolve=True)


_TRAIN, _LORA = _conf("train/default"), _conf("method/lora")
EPOCHS, BATCH, EVAL_BATCH = int(_TRAIN["epochs"]), int(_TRAIN["batch_size"]), int(_TRAIN["eval_batch_size"])
LR = float(_TRAIN["lr"] if _TRAIN.get("lr") is not None else _LORA["lr"])
WARMUP, WD, CLIP = float(_TRAIN["warmup_ratio"]), float(_TRAIN["weight_decay"]), float(_TRAIN["max_grad_norm"])
MAXLEN, SEED = int(_TRAIN["max_seq_len"]), int(_TRAIN["seed"])
LORA = {"r": int(_LORA["r"]), "lora_alpha": int(_LORA["lora_alpha"]), "lora_dropout": float(_LORA["lora_dropout"]),
        "target_modules": list(_LORA["target_modules"])}


def child_env() -> dict:
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("HF_DATASETS_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


# --------------------------------------------------------------------------------------------------
# The Trainer side: what a user would write (run as a child process).


def trainer_child(samples: int, grouped: bool, out: str, max_eval: int | None = None,
                  threads: int | None = None) -> None:
    import numpy as np
    import torch
    from datasets import Dataset
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )
    from transformers.utils import logging as tlog

    from bench.data import loading, sampling
    from bench.data import tasks as T
    from bench.models.backbones import bundled_model_path

    tlog.set_verbosity_error()
    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    # the same rows as bench: its task file and loader, its seeded subsample
    import yaml

    task_cfg = yaml.safe_load((ROOT / "conf" / "task" / f"{TASK}.yaml").read_text())
    task_cfg["root"] = os.environ["BENCH_GLUE_DIR"]
    spec = T.task_spec(task_cfg)
    train_ex = sampling.subsample(loading.load_split(spec, "train"), samples, SEED)
    dev_ex = sampling.subsample(loading.load_split(spec, "dev"), max_eval, SEED)  # None: the whole split, as bench

    path = bundled_model_path()
    tok = AutoTokenizer.from_pretrained(path)

    def to_ds(examples):
        ds = Dataset.from_dict({"sentence": [e.text_a for e in examples], "label": [int(e.label) for e in examples]})
        return ds.map(lambda b: tok(b["sentence"], truncation=True, max_length=MAXLEN), batched=True,
                      remove_columns=["sentence"])

    train_ds, dev_ds = to_ds(train_ex), to_ds(dev_ex)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    model = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, **LORA))
    with tempfile.TemporaryDirectory(prefix="bench-trainer-") as tmp:
        args = TrainingArguments(
            output_dir=tmp, num_train_epochs=EPOCHS, per_device_train_batch_size=BATCH,
            per_device_eval_batch_size=EVAL_BATCH, learning_rate=LR, weight_decay=WD, warmup_steps=WARMUP,
            lr_scheduler_type="linear", max_grad_norm=CLIP, eval_strategy="no", save_strategy="no",
            logging_strategy="no", report_to="none", seed=SEED, use_cpu=True, disable_tqdm=True,
            dataloader_num_workers=0, train_sampling_strategy="group_by_length" if grouped else "random")
        trainer = Trainer(model=model, args=args, train_dataset=train_ds, processing_class=tok,
                          data_collator=DataCollatorWithPadding(tok))
        t_train = time.perf_counter()
        out_train = trainer.train()
        train_s = time.perf_counter() - t_train
        t_eval = time.perf_counter()
        pred = trainer.predict(dev_ds)
        eval_s = time.perf_counter() - t_eval
    acc = float((np.asarray(pred.predictions).argmax(-1) == np.asarray(dev_ds["label"])).mean())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    Path(out).write_text(json.dumps({
        "in_process_s": time.perf_counter() - t0, "train_s": train_s, "train_runtime": out_train.metrics["train_runtime"],
        "eval_s": eval_s, "accuracy": acc, "steps": out_train.global_step, "threads": torch.get_num_threads(),
        "trainable": trainable, "train_examples": len(train_ds), "eval_examples": len(dev_ds)}))


# --------------------------------------------------------------------------------------------------
# The parent: runs the variants as processes and compares.


#: bench variants: the overrides each adds to the cell's command
BENCH_VARIANTS = {"bench": [], "bench_noinf": ["inference.enabled=false"]}


def run_bench(samples: int, work: Path, tag: str, max_eval: int | None, variant: str = "bench",
              cache_dir: Path | None = None, root: Path = ROOT, threads: int | None = None) -> dict:
    """One `python -m bench` cell as its own process. `cache_dir`: the tokenisation and inference
    caches (bench/data/batching.py, bench/inference/cache.py); None = none (`cache_dir=null`), so every
    run tokenises and measures anew. `root`: the checkout whose bench runs (another commit's tree for
    a before/after comparison)."""
    # a shared cache_dir comes with a shared results folder (the inference cache lives at its root,
    # <results_dir>/.inference_cache/); otherwise each run has its own
    res_dir, sweep = (work / "results", tag) if cache_dir is not None and cache_dir.name == "cache" else (work / tag, "cmp")
    cmd = [sys.executable, "-m", "bench", f"task={TASK}", "method=lora", f"train.max_train_samples={samples}",
           *BENCH_VARIANTS[variant], *([f"train.max_eval_samples={max_eval}"] if max_eval else []),
           *([f"train.threads={threads}"] if threads else []),
           f"cache_dir={cache_dir if cache_dir is not None else 'null'}",
           f"results_dir={res_dir}", f"sweep_name={sweep}", "hydra.run.dir=" + str(work / "hydra" / tag)]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=root, env=child_env(), capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"bench failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    rec = json.loads(next((res_dir / sweep).glob("*.json")).read_text())
    tr = rec["train"]
    assert (tr["epochs"], tr["batch_size"]) == (EPOCHS, BATCH) and abs(tr["lr"] - LR) <= 1e-12 * LR, (tr, LR)
    c = rec["config"]["train"]
    assert (c["weight_decay"], c["warmup_ratio"], c["max_grad_norm"], c["max_seq_len"]) == (WD, WARMUP, CLIP, MAXLEN), c
    inf = rec.get("inference") or {}
    reused = (inf.get("shared") or {}).get("from") is not None
    return {"wall_s": wall, "in_process_s": rec["time"]["total_s"], "train_s": rec["time"]["train_s"],
            "eval_s": rec["time"]["eval_s"], "accuracy": rec["metrics"]["accuracy"], "steps": tr["steps"],
            "threads": rec["env"]["torch_threads"], "trainable": rec["params"]["trainable"],
            "train_examples": rec["data"]["train_examples"], "phases_s": rec["time"].get("phases_s"),
            "caches": (f"tokens {'cached' if rec['data'].get('tokenized_cache_hit') else 'encoded'}, inference "
                       f"{'off' if not inf else 'reused' if reused else 'measured'}"),
            "inference_rounds": (inf.get("precision_reached") or {}).get("rounds"),
            "inference_halfwidth": (inf.get("precision_reached") or {}).get("halfwidth_max"),
            "cmd": "python " + " ".join(x for x in cmd[1:] if not x.startswith(("results_dir=", "hydra.run.dir=", "cache_dir=")))}


def run_trainer(samples: int, grouped: bool, work: Path, tag: str, max_eval: int | None,
                threads: int | None = None) -> dict:
    out = work / f"{tag}.json"
    cmd = [sys.executable, "-m", "benchmarks.bench_trainer", "--child", "trainer", "--samples", str(samples), "--out", str(out)]
    if grouped:
        cmd.append("--grouped")
    if max_eval:
        cmd += ["--max-eval", str(max_eval)]
    if threads:
        cmd += ["--threads", str(threads)]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, env=child_env(), capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"trainer script failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    r = json.loads(out.read_text())
    r["wall_s"] = wall
    return r


def machine_line() -> str:
    import torch

    from bench.records.environment import cpu_model

    return (f"machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}; "
            f"date {datetime.now(UTC).isoformat(timespec='seconds')}")


KEYS = ("wall_s", "in_process_s", "train_s", "eval_s", "accuracy")


def _median(runs: list[dict]) -> dict:
    return {k: statistics.median(x[k] for x in runs) for k in KEYS}


def _rounds_note(r: dict) -> str:
    """The inference measurement's rounds and the widest half-width it reached (a measuring run)."""
    if not r.get("inference_rounds") or "measured" not in r.get("caches", ""):
        return ""
    hw = r.get("inference_halfwidth")
    return f" (rounds {r['inference_rounds']}, widest half-width {hw:.3f})" if hw is not None else ""


def summarize(results: dict[str, list[dict]], variants: list[str]) -> None:
    """Medians per variant; bench's runs also split by whether the inference measurement was taken
    (cold cache) or reused (warm cache), since the two cost differently; bench's phases."""
    groups = {v: rs for v, rs in results.items()}
    bench_runs = results.get("bench", [])
    for state in ("measured", "reused"):
        rs = [r for r in bench_runs if r["caches"].endswith(f"inference {state}")]
        if rs and len(rs) < len(bench_runs):
            groups[f"bench ({'cold' if state == 'measured' else 'warm'})"] = rs
    med = {g: _median(rs) for g, rs in groups.items()}
    print()
    print(f"{'variant':16s} {'runs':>4s} {'wall s':>8s} {'in-proc s':>10s} {'train s':>8s} {'eval s':>7s} {'accuracy':>9s} "
          f"{'trainable':>10s}")
    for g, m in med.items():
        print(f"{g:16s} {len(groups[g]):4d} {m['wall_s']:8.1f} {m['in_process_s']:10.1f} {m['train_s']:8.1f} {m['eval_s']:7.1f} "
              f"{m['accuracy']:9.4f} {groups[g][0]['trainable']:10d}")
    trainers = [x for x in variants if not x.startswith("bench")]
    for b in [g for g in med if g.startswith("bench")]:  # bench_noinf too: like-for-like with a Trainer
        for v in trainers + (["bench_noinf"] if "bench_noinf" in med and b != "bench_noinf" else []):
            print(f"{b} / {v}: wall {med[b]['wall_s'] / med[v]['wall_s']:.3f}, in-process "
                  f"{med[b]['in_process_s'] / med[v]['in_process_s']:.3f}, training loop "
                  f"{med[b]['train_s'] / med[v]['train_s']:.3f}, eval {med[b]['eval_s'] / med[v]['eval_s']:.3f}; "
                  f"accuracy {med[b]['accuracy']:.4f} vs {med[v]['accuracy']:.4f}")
    phased = [r for v in BENCH_VARIANTS for r in results.get(v, []) if r.get("phases_s")]
    if phased:
        print("bench phases (s, record time.phases_s): " + "; ".join(
            f"{v} run {i} ({r['caches']}): " + ", ".join(f"{k} {x:.1f}" for k, x in r["phases_s"].items())
            + f", outside run_cell {r['wall_s'] - r['in_process_s']:.1f}"
            for v in BENCH_VARIANTS for i, r in enumerate(results.get(v, [])) if r.get("phases_s")))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--variants", default="bench,bench_noinf,trainer,trainer_grouped",
                    help="bench (the defaults), bench_noinf (inference.enabled=false), trainer, trainer_grouped")
    ap.add_argument("--cache", choices=["shared", "fresh", "none"], default="shared",
                    help="bench's cache_dir: shared = one folder for the whole comparison (a cell's first run fills "
                         "it: cold; later runs reuse it: warm, as a user's repeated cells do); fresh = an empty one "
                         "per run (always cold); none = cache_dir=null")
    ap.add_argument("--max-eval", type=int, default=None, help="dev rows (default: all; smaller only for a smoke test)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads on both sides (default: bench's train.threads=auto, the Trainer's torch default)")
    ap.add_argument("--bench-root", default=str(ROOT),
                    help="checkout whose `python -m bench` runs the bench side (default: this one)")
    ap.add_argument("--child", choices=["trainer"], help=argparse.SUPPRESS)
    ap.add_argument("--grouped", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        trainer_child(args.samples, args.grouped, args.out, args.max_eval, args.threads)
        return 0
    variants = args.variants.split(",")
    print("== bench_trainer: a bench cell vs the transformers Trainer + peft script for the same cell")
    print(machine_line())
    print(f"cell: {TASK}, lora r=8 alpha=16 on query,value, {args.samples} train rows (bench.data.sampling.subsample seed "
          f"{SEED}), {EPOCHS} epochs, batch {BATCH}, lr {LR}, warm-up {WARMUP}, wd {WD}, clip {CLIP}, max len {MAXLEN}; "
          f"{'whole dev split' if not args.max_eval else f'{args.max_eval} dev rows'}; {args.repeats} repeats, variants alternate (order rotates)")
    print("cmd: python -m benchmarks.bench_trainer " + " ".join(argv if argv is not None else sys.argv[1:]))
    results: dict[str, list[dict]] = {v: [] for v in variants}
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-trainer-cmp-") as tmp:
        work = Path(tmp)
        for rep in range(args.repeats):
            order = variants[rep % len(variants):] + variants[:rep % len(variants)]
            for v in order:
                tag = f"{v}-{rep}"
                with ForeignCPU() as fc:
                    if v in BENCH_VARIANTS:
                        cache = (work / "cache" if args.cache == "shared" else work / f"cache-{tag}") if args.cache != "none" else None
                        r = run_bench(args.samples, work, tag, args.max_eval, v, cache, Path(args.bench_root), args.threads)
                    else:
                        r = run_trainer(args.samples, v == "trainer_grouped", work, tag, args.max_eval, args.threads)
                r["foreign"] = fc.frac
                results[v].append(r)
                print(f"  rep {rep} {v:16s} wall {r['wall_s']:6.1f} s, in-process {r['in_process_s']:6.1f} s, "
                      f"train {r['train_s']:6.1f} s, eval {r['eval_s']:5.1f} s, steps {r['steps']}, "
                      f"threads {r['threads']}, accuracy {r['accuracy']:.4f}{'; ' + r['caches'] if 'caches' in r else ''}"
                      f"{_rounds_note(r)}; "
                      f"other processes used {r['foreign']:.0%} of the CPU"
                      f"{' (!)' if r['foreign'] > 0.05 else ''}", flush=True)
    summarize(results, variants)
    print("metrics differ by design: bench's head is mean pooling + dropout + linear; the Trainer model's is "
          "dropout + linear on BERT's pooler ([CLS] -> pretrained dense -> tanh, frozen); same trainable count. "
          f"bench command: {results['bench'][0]['cmd'] if results.get('bench') else ''} cache_dir=<{args.cache}> results_dir=<tmp>")
    print(f"total {time.perf_counter() - t_all:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
