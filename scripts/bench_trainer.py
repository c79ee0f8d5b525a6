#!/usr/bin/env python3
"""Benchmark: one `bench` cell end to end versus the transformers Trainer + peft script a user
would write for the same cell.

Same cell on both sides: SST-2, the same training rows (bench.tasks.subsample with the same seed,
first N by that seeded choice), the whole dev split, bundled MiniLM, LoRA r=8 alpha=16 dropout 0.1
on query,value, 3 epochs, batch 32 (eval 128), lr 1e-3 (bench's LoRA default), warm-up 6 % then
linear decay, weight decay 0.01 (not on biases/LayerNorm on either side), clipping 1.0, max length
128, dynamic padding, fp32 on CPU, the same torch thread count. Differences that remain, by design:

* the head: bench trains dropout + linear on mean-pooled states; AutoModelForSequenceClassification
  (BERT) puts dropout + linear on the pooler output ([CLS] -> pretrained dense -> tanh; the pooler
  stays frozen, peft's SEQ_CLS task type only adds `classifier` to modules_to_save), so both train
  the same number of parameters (LoRA + H*C + C) but the metrics differ somewhat;
* batching: bench groups by length by default (train.group_by_length=true); the plain Trainer
  script uses a random sampler with DataCollatorWithPadding. The variant `trainer_grouped` sets
  `train_sampling_strategy="group_by_length"` to separate that effect from the loop itself.

Each side runs as its own process (`python -m bench ...` and `python scripts/bench_trainer.py
--child trainer ...`); variants alternate within each repeat (order rotates between repeats).
Reported: whole wall time (process start to exit), the in-process part (bench: the record's
time.total_s = run_cell from config to storage; Trainer: from data loading to the end of
evaluation, imports excluded), the training-loop time (bench time.train_s; Trainer
train_runtime), and the dev metric of each.

Usage: python scripts/bench_trainer.py [--samples 1000] [--repeats 2] [--variants bench,trainer,trainer_grouped]
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
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from machine_load import ForeignCPU

# Cell settings shared by both sides (bench reads its own from conf/; these mirror them and are
# checked against the bench record after each run).
TASK = "sst2"
EPOCHS, BATCH, EVAL_BATCH, LR, WARMUP, WD, CLIP, MAXLEN, SEED = 3, 32, 128, 1e-3, 0.06, 0.01, 1.0, 128, 0
LORA = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.1, "target_modules": ["query", "value"]}


def child_env() -> dict:
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("HF_DATASETS_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


# --------------------------------------------------------------------------------------------------
# The Trainer side: what a user would write (run as a child process).


def trainer_child(samples: int, grouped: bool, out: str, max_eval: int | None = None) -> None:
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

    from bench import tasks as T
    from bench.models import bundled_model_path

    tlog.set_verbosity_error()
    t0 = time.perf_counter()
    # the same rows as bench: its task file and loader, its seeded subsample
    import yaml

    task_cfg = yaml.safe_load((ROOT / "conf" / "task" / f"{TASK}.yaml").read_text())
    task_cfg["root"] = os.environ["BENCH_GLUE_DIR"]
    spec = T.task_spec(task_cfg)
    train_ex = T.subsample(T.load_split(spec, "train"), samples, SEED)
    dev_ex = T.subsample(T.load_split(spec, "dev"), max_eval, SEED)  # None: the whole split, as bench

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


def run_bench(samples: int, work: Path, tag: str, max_eval: int | None) -> dict:
    res_dir = work / tag
    cmd = [sys.executable, "-m", "bench", f"task={TASK}", "method=lora", f"train.max_train_samples={samples}",
           f"results_dir={res_dir}", "sweep_name=cmp", "cache_dir=null", "hydra.run.dir=" + str(work / "hydra" / tag)]
    if max_eval:
        cmd.insert(-4, f"train.max_eval_samples={max_eval}")
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, env=child_env(), capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"bench failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    rec = json.loads(next((res_dir / "cmp").glob("*.json")).read_text())
    tr = rec["train"]
    assert (tr["epochs"], tr["batch_size"], tr["lr"]) == (EPOCHS, BATCH, LR), tr
    c = rec["config"]["train"]
    assert (c["weight_decay"], c["warmup_ratio"], c["max_grad_norm"], c["max_seq_len"]) == (WD, WARMUP, CLIP, MAXLEN), c
    return {"wall_s": wall, "in_process_s": rec["time"]["total_s"], "train_s": rec["time"]["train_s"],
            "eval_s": rec["time"]["eval_s"], "accuracy": rec["metrics"]["accuracy"], "steps": tr["steps"],
            "threads": rec["env"]["torch_threads"], "trainable": rec["params"]["trainable"],
            "train_examples": rec["data"]["train_examples"],
            "cmd": "python " + " ".join(x for x in cmd[1:] if not x.startswith(("results_dir=", "hydra.run.dir=")))}


def run_trainer(samples: int, grouped: bool, work: Path, tag: str, max_eval: int | None) -> dict:
    out = work / f"{tag}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "trainer", "--samples", str(samples), "--out", str(out)]
    if grouped:
        cmd.append("--grouped")
    if max_eval:
        cmd += ["--max-eval", str(max_eval)]
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

    from bench.env import cpu_model

    return (f"machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}; "
            f"date {datetime.now(UTC).isoformat(timespec='seconds')}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--variants", default="bench,trainer,trainer_grouped")
    ap.add_argument("--max-eval", type=int, default=None, help="dev rows (default: all; smaller only for a smoke test)")
    ap.add_argument("--child", choices=["trainer"], help=argparse.SUPPRESS)
    ap.add_argument("--grouped", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        trainer_child(args.samples, args.grouped, args.out, args.max_eval)
        return 0
    variants = args.variants.split(",")
    print("== bench_trainer: a bench cell vs the transformers Trainer + peft script for the same cell")
    print(machine_line())
    print(f"cell: {TASK}, lora r=8 alpha=16 on query,value, {args.samples} train rows (bench.tasks.subsample seed "
          f"{SEED}), {EPOCHS} epochs, batch {BATCH}, lr {LR}, warm-up {WARMUP}, wd {WD}, clip {CLIP}, max len {MAXLEN}; "
          f"{'whole dev split' if not args.max_eval else f'{args.max_eval} dev rows'}; {args.repeats} repeats, variants alternate (order rotates)")
    print("cmd: python scripts/bench_trainer.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    results: dict[str, list[dict]] = {v: [] for v in variants}
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-trainer-cmp-") as tmp:
        work = Path(tmp)
        for rep in range(args.repeats):
            order = variants[rep % len(variants):] + variants[:rep % len(variants)]
            for v in order:
                tag = f"{v}-{rep}"
                with ForeignCPU() as fc:
                    if v == "bench":
                        r = run_bench(args.samples, work, tag, args.max_eval)
                    else:
                        r = run_trainer(args.samples, v == "trainer_grouped", work, tag, args.max_eval)
                r["foreign"] = fc.frac
                results[v].append(r)
                print(f"  rep {rep} {v:16s} wall {r['wall_s']:6.1f} s, in-process {r['in_process_s']:6.1f} s, "
                      f"train {r['train_s']:6.1f} s, eval {r['eval_s']:5.1f} s, steps {r['steps']}, "
                      f"threads {r['threads']}, accuracy {r['accuracy']:.4f}; other processes used {r['foreign']:.0%} of the CPU"
                      f"{' (!)' if r['foreign'] > 0.05 else ''}", flush=True)
    med = {v: {k: statistics.median(x[k] for x in rs) for k in ("wall_s", "in_process_s", "train_s", "eval_s", "accuracy")}
           for v, rs in results.items()}
    print()
    print(f"{'variant':16s} {'wall s':>8s} {'in-proc s':>10s} {'train s':>8s} {'eval s':>7s} {'accuracy':>9s} "
          f"{'trainable':>10s}")
    for v in variants:
        m = med[v]
        print(f"{v:16s} {m['wall_s']:8.1f} {m['in_process_s']:10.1f} {m['train_s']:8.1f} {m['eval_s']:7.1f} "
              f"{m['accuracy']:9.4f} {results[v][0]['trainable']:10d}")
    if "bench" in med:
        for v in variants:
            if v == "bench":
                continue
            ratios = [b["wall_s"] / t["wall_s"] for b, t in zip(results["bench"], results[v])]
            print(f"bench / {v}: wall {med['bench']['wall_s'] / med[v]['wall_s']:.3f} (per repeat "
                  f"{', '.join(f'{x:.3f}' for x in ratios)}), in-process "
                  f"{med['bench']['in_process_s'] / med[v]['in_process_s']:.3f}, training loop "
                  f"{med['bench']['train_s'] / med[v]['train_s']:.3f}, eval {med['bench']['eval_s'] / med[v]['eval_s']:.3f}; "
                  f"accuracy {med['bench']['accuracy']:.4f} vs {med[v]['accuracy']:.4f}")
        w = med["bench"]["wall_s"] / med["trainer"]["wall_s"] if "trainer" in med else None
        if w is not None:
            print(f"goal bench faster (wall ratio < 1.0 vs the plain Trainer script): {'met' if w < 1.0 else 'NOT met'}")
    print("metrics differ by design: bench's head is mean pooling + dropout + linear; the Trainer model's is "
          "dropout + linear on BERT's pooler ([CLS] -> pretrained dense -> tanh, frozen); same trainable count. "
          f"bench command: {results['bench'][0]['cmd'] if 'bench' in results else ''} results_dir=<tmp>")
    print(f"total {time.perf_counter() - t_all:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
