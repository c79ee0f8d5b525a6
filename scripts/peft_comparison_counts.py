"""Trainable counts of peft's method_comparison experiments on Llama-3.2-3B, ours against peft's recorded ones.

    python -m scripts.peft_comparison_counts PEFT_CHECKOUT [--out FILE.jsonl]

PEFT_CHECKOUT: a clone of github.com/huggingface/peft (method_comparison/MetaMathQA/experiments/*/*/adapter_config.json
and results/<method>--<experiment>.json, whose train_info.num_trainable_params peft recorded). Each experiment's file
runs as `model=auto model.source=tests/data/llama-3.2-3b method=peft method.config_file=FILE` through the run's own
builder on the meta device (as `python -m bench.params`); the count compared is trainable excl. head. A file the
harness refuses prints the reason. Writes one JSON line per experiment (docs/any_model.md holds the table).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from pathlib import Path

LLAMA_3B = Path(__file__).resolve().parents[1] / "tests" / "data" / "llama-3.2-3b"


def count(config_file: Path) -> dict:
    from bench.data import tasks as T
    from bench.errors import ConfigError
    from bench.models.build import build_cell, method_from_config
    from bench.params import compose_config

    cfg = compose_config(["model=auto", f"model.source={LLAMA_3B}", "method=peft", f"method.config_file={config_file}",
                          "model.pretrained=false"])
    spec = T.task_spec(cfg.task)
    try:
        method = method_from_config(cfg, where=str(config_file))
        try:
            cell = build_cell(cfg.model, method, spec.num_labels, 0, 512, meta=True)
        except NotImplementedError as exc:  # an initialisation that reads the weights: not on the meta device
            return {"status": "needs weights", "reason": str(exc)[:200]}
    except ConfigError as exc:
        return {"status": "refused", "reason": str(exc)[:300]}
    except Exception as exc:  # noqa: BLE001 - reported per experiment, the table goes on
        return {"status": "error", "reason": f"{type(exc).__name__}: {str(exc)[:300]}"}
    return {"status": "ok", "ours": int(cell.params["trainable_excl_head"])}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("peft_checkout")
    ap.add_argument("--out", default=None)
    ap.add_argument("--only", default=None, help="a substring of the experiment names to run")
    a = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.ERROR)
    root = Path(a.peft_checkout) / "method_comparison" / "MetaMathQA"
    out = open(a.out, "w") if a.out else None  # noqa: SIM115
    for file in sorted(root.glob("experiments/*/*/adapter_config.json")):
        method, exp = file.parent.parent.name, file.parent.name
        if a.only and a.only not in f"{method}--{exp}":
            continue
        res = root / "results" / f"{method}--{exp}.json"
        peft = json.loads(res.read_text())["train_info"].get("num_trainable_params") if res.is_file() else None
        t0 = time.perf_counter()
        row = {"experiment": f"{method}--{exp}", "peft_type": json.loads(file.read_text()).get("peft_type"),
               "peft_recorded": peft, **count(file), "seconds": round(time.perf_counter() - t0, 1)}
        row["agrees"] = row.get("ours") == peft if row["status"] == "ok" and peft is not None else None
        print(json.dumps(row), flush=True)
        if out:
            out.write(json.dumps(row) + "\n")
            out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
