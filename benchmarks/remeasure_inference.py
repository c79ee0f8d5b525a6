"""Measure the inference section again on the deltas a sweep kept, and print both runs side by side.

    python -m benchmarks.remeasure_inference results/default_sweep [--tasks sst2] [--methods lora full] [--out FILE]

Why: one run of a latency ratio on a shared 2-core machine is one draw; the issue asks for the
run-to-run spread. The sweep must have run with `save_delta=true`. The second run rebuilds each
finetuned model from its delta (bench.predict), the reference from the same model config, and
calls the same bench.inference.cost.measure with the record's own settings, so the two runs differ only
in when they ran.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf

from bench.inference.cost import measure, settings_from
from bench.models.backbones import build_model
from bench.predict import load_delta
from bench.records import schema as R
from bench.records.results import kept_delta


def second_run(rec: dict) -> dict | None:
    kept = kept_delta(rec)
    if kept is None:
        return None
    cfg = OmegaConf.create(rec["config"])
    settings = settings_from(cfg.get("inference"))
    pred = load_delta(kept)
    torch.set_num_threads(int(settings["threads"] or torch.get_num_threads()))
    def fresh():
        return build_model(cfg.model, int(pred.task["num_labels"]), int(rec["seed"])).model.eval()

    return measure(pred.model, fresh(), settings, torch.device("cpu"), "fp32", fresh)


def row(label: str, inf: dict) -> list[str]:
    out = []
    for variant in ("method", "merged"):
        o = (inf.get("overhead") or {}).get(variant)
        if not o:
            out += ["-", "-"]
            continue
        b1 = o.get("batch1_by_length") or {}
        out += [" / ".join(f"{b1[k]:.3f}" for k in sorted(b1, key=int)), f"{o['batched']:.3f}" if o.get("batched") else "-"]
    aa = (inf.get("overhead") or {}).get("aa") or {}
    b1 = aa.get("batch1_by_length") or {}
    out.append(" / ".join(f"{b1[k]:.3f}" for k in sorted(b1, key=int)) if b1 else "-")
    return [label, *out]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--tasks", nargs="*")
    ap.add_argument("--methods", nargs="*")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    recs, _ = R.load_records(args.results)
    recs = [r for r in recs if r["status"] == "ok" and r.get("inference") and (not args.tasks or r["task"] in args.tasks)
            and (not args.methods or r["method"] in args.methods)]
    if not recs:
        sys.exit(f"{args.results}: no ok record with an inference section")
    lengths = None
    lines = []
    for rec in sorted(recs, key=lambda r: (r["task"], r["method_label"])):
        again = second_run(rec)
        if again is None:
            print(f"skip {rec['run_id']}: no kept delta (run the sweep with save_delta=true)", file=sys.stderr)
            continue
        lengths = lengths or sorted((rec["inference"]["overhead"]["method"].get("batch1_by_length") or {}), key=int)
        for n, inf in (("run 1 (in the cell)", rec["inference"]), ("run 2 (from the delta)", again)):
            lines.append(row(f"{rec['task']} {rec['method_label']} {n}", inf))
        print(" | ".join(lines[-1]), flush=True)
    head = ["cell, run", f"unmerged batch-1 ratio at {'/'.join(lengths or [])} tokens", "unmerged batched",
            f"merged batch-1 at {'/'.join(lengths or [])}", "merged batched", "A/A batch-1 (floor)"]
    text = "| " + " | ".join(head) + " |\n|" + "---|" * len(head) + "\n" + "\n".join("| " + " | ".join(r) + " |" for r in lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
