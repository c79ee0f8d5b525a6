"""bench.plan's predictions against docs/scale.md's measured CPU peaks (docs/scale/scale.jsonl).

    python -m scripts.plan_scale_check [--out docs/scale/plan_check.jsonl]

Each measured row is rebuilt as benchmarks/bench_scale.py built it (its shapes and method settings, batch x
length, weights dtype, checkpointing, precision as recorded) and predicted by bench.plan.plan_cell. The measured
figure is the peak RSS above the baseline read just before training (`peak_rss_bytes - baseline_rss_bytes`:
the weights are already resident then); the prediction compared with it is the predicted peak less what is
resident before training (parameters and buffers). Prints a markdown table (docs/scale.md holds it).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MIB = 2 ** 20


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", default=str(ROOT / "docs" / "scale" / "scale.jsonl"))
    ap.add_argument("--out", default=None)
    ap.add_argument("--by-depth", action="store_true", help="bench.plan.plan_by_depth (2 and 4 layers) instead of "
                    "the full depth: minutes instead of hours on a loaded machine")
    a = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.ERROR)
    from omegaconf import OmegaConf

    from bench.methods import build_method
    from bench.plan import plan_by_depth, plan_cell
    from benchmarks.bench_scale import METHODS, config_folder

    rows = [json.loads(line) for line in Path(a.scale).read_text().splitlines() if line.strip()]
    key = ("size", "method", "weights", "checkpointing", "batch", "length")
    done = [json.loads(x) for x in Path(a.out).read_text().splitlines()] if a.out and Path(a.out).exists() else []
    seen = {tuple(d[k] for k in key) for d in done}
    out = open(a.out, "a") if a.out else None  # noqa: SIM115 - rows appended: a rerun resumes
    print("| shape | method | weights | ckpt | measured above baseline (MiB) | predicted (MiB) | error |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for d in done:
            print(f"| {d['size']} | {d['method']} | {d['weights']} | {'on' if d['checkpointing'] else 'off'} | "
                  f"{d['measured_above_baseline'] / MIB:.0f} | {d['predicted_above_resident'] / MIB:.0f} | {d['error']:+.0%} |")
        for r in rows:
            if tuple(r[k] for k in key) in seen:
                continue
            folder = config_folder(r["size"], Path(tmp))
            model_cfg = OmegaConf.create({"name": r["size"], "source": folder, "tokenizer": "bundled:minilm",
                                          "pretrained": False, "pooling": "mean", "head_dropout": 0.0})
            tcfg = OmegaConf.create({"batch_size": r["batch"], "max_seq_len": r["length"], "weight_decay": 0.01,
                                     "max_grad_norm": 1.0, "seed": 0, "weights_dtype": r["weights"],
                                     "precision": r["precision"], "gradient_checkpointing": r["checkpointing"]})
            if a.by_depth:
                p = plan_by_depth(model_cfg, lambda r=r: build_method(dict(METHODS[r["method"]])), tcfg, 2, False,
                                  target="cpu")
            else:
                p = plan_cell(model_cfg, build_method(dict(METHODS[r["method"]])), tcfg, 2, False, target="cpu")
            measured = r["peak_rss_bytes"] - r["baseline_rss_bytes"]
            predicted = p["peak_bytes"] - p["resident_before_bytes"]
            err = (predicted - measured) / measured
            row = {k: r[k] for k in ("size", "method", "weights", "checkpointing", "batch", "length")}
            row.update(depth=p.get("depth", {"extrapolated_from": None}), measured_above_baseline=measured, predicted_above_resident=predicted, error=err,
                       predicted_peak=p["peak_bytes"], resident=p["resident_before_bytes"], split=p["split_at_peak"])
            print(f"| {r['size']} | {r['method']} | {r['weights']} | {'on' if r['checkpointing'] else 'off'} | "
                  f"{measured / MIB:.0f} | {predicted / MIB:.0f} | {err:+.0%} |", flush=True)
            if out:
                out.write(json.dumps(row) + "\n")
                out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
