"""The catalogue's capabilities table for docs/catalogue.md, from the methods themselves.

    python -m scripts.capabilities_docs [--model tiny_bert] > table.md

For every method of experiment=catalogue: the record's `capabilities` as the method declares them
(delta format, peft type, loop hooks, whether it rewrites the base, the composition operations) and
whether it merges, measured here: each method is built on the model (default tiny-bert, seconds)
and bench.inference.variants.merged_variant folds it, checked against the unmerged logits (at
initialisation; tests/test_catalogue.py checks the merge of trained weights for every tuner). Never
typed by hand, so the table follows the code.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def catalogue_methods() -> list[str]:
    """The methods whose YAML declares the catalogue (what experiment=catalogue runs)."""
    from bench.config.method_tags import search_dirs, tagged

    return tagged("catalogue", search_dirs())


def row(name: str, model: str) -> dict:
    from bench.inference.variants import check_merged, merged_variant
    from bench.models.backbones import build_model
    from bench.models.build import build_cell, method_from_config
    from bench.params import compose_config

    cfg = compose_config([f"model={model}", f"method={name}", "task=sst2"])
    method = method_from_config(cfg)
    cell = build_cell(cfg.model, method, 2, seed=0, max_seq_len=64)
    model_ = cell.model.eval()
    reference = build_model(cfg.model, 2, 0).model.eval()  # the untouched backbone + head, as the measurement's
    merged, how = merged_variant(model_, reference)
    if merged is not None:
        check = check_merged(model_, merged, int(cell.backbone_config.vocab_size), torch.device("cpu"), "fp32", 1e-4)
        merge = "yes" if check["equal_within_atol"] else f"no (logits differ by {check['max_abs_logit_diff']:.1e})"
    elif how["status"] == "native":
        merge = "native"
    else:
        merge = "no: " + how["why"].split(";")[0].replace("|", "/")
    caps = method.capabilities()
    comp = caps["composition"]
    merges = comp["merge"]
    return {"method": name, "delta": caps["delta_format"], "peft": caps["peft_type"] or "(harness)",
            "hooks": ", ".join(caps["loop_hooks"]) or "-", "rewrites": "yes" if caps["rewrites_base"] else "",
            "merge": merge, "soup": "yes" if comp["soup"] else "no",
            "combos": ("peft's " + str(len(merges)) + " (linear, ties, dare_ties, ...)") if len(merges) > 1
            else (", ".join(merges) or "-"),
            "transfer": "yes" if comp["transfer"] else "no", "learned": ", ".join(comp["learned"]) or "-"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scripts.capabilities_docs", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="tiny_bert", help="the model config the methods are built on")
    a = ap.parse_args(argv)
    from bench.logs import quiet_libraries

    quiet_libraries()
    print("| method | delta | peft type | loop hooks | rewrites base | merges (measured) | seed soup | "
          "multi-task merges | transfer | learned combinations |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in sorted(catalogue_methods()):
        r = row(name, a.model)
        print(f"| {r['method']} | {r['delta']} | {r['peft']} | {r['hooks']} | {r['rewrites']} | {r['merge']} | "
              f"{r['soup']} | {r['combos']} | {r['transfer']} | {r['learned']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
