"""Where merged LoRA's 16-token overhead came from (docs/inference.md): time, interleaved at 1 thread,
the reference (a fresh build), a second fresh build (A/A), a deep copy of the reference, the merged
deep copy (what the harness timed before), the merged weights loaded into a fresh build (what it times
now: a served merged checkpoint's layout) and the unmerged model.

    python -m benchmarks.inference_aa results/default_sweep/deltas/minilm__sst2__lora__s0__<hash> [ROUNDS]

The delta must be a LoRA (or IA3) delta kept with `save_delta=true`; minilm only (its model config).
"""
from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch
from omegaconf import OmegaConf

from bench.config.confdir import conf_dir
from bench.inference.cost import summarize, time_interleaved
from bench.inference.variants import forward, merged_variant, synthetic_inputs
from bench.models.backbones import build_model
from bench.models.delta import INFO_FILE
from bench.predict import load_delta


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("delta", type=Path, help="a LoRA (or IA3) delta folder kept with save_delta=true (minilm)")
    ap.add_argument("rounds", type=int, nargs="?", default=150, help="interleaved timing rounds per length")
    args = ap.parse_args(argv)
    if not (args.delta / INFO_FILE).is_file():
        ap.error(f"{args.delta}: no {INFO_FILE}; expected a delta folder kept with save_delta=true")
    rounds = args.rounds
    torch.set_num_threads(1)
    pred = load_delta(str(args.delta))
    cfg = OmegaConf.load(conf_dir() / "model" / "minilm.yaml")
    labels = int(pred.task["num_labels"])

    def fresh():
        return build_model(cfg, labels, 0).model.eval()

    ref = fresh()
    merged_copy, how = merged_variant(pred.model, ref)  # no builder: the deep copy, as timed before
    merged_fresh, how_fresh = merged_variant(pred.model, ref, fresh)
    print(how["how"], "|", how_fresh["how"])
    variants = {"reference": ref, "A/A (second fresh build)": fresh(), "deep copy of the reference": copy.deepcopy(ref),
                "merged deep copy": merged_copy, "merged, loaded into a fresh build": merged_fresh,
                "unmerged": pred.model.eval()}
    device = torch.device("cpu")
    for length in (16, 64):
        x = synthetic_inputs(1, length, int(ref.backbone.config.vocab_size), device)
        fns = {n: (lambda m=m, x=x: forward(m, x, device, "fp32")) for n, m in variants.items()}
        times = time_interleaved(fns, rounds, 10, device)
        for n in variants:
            s = summarize(times[n], None if n == "reference" else times["reference"])
            q = s.get("ratio_per_round_quartiles")
            print(f"{length:4d} tokens  {n:36s} {s['median_ms']:8.3f} ms  ratio {s.get('ratio_vs_reference', 1.0):.3f}"
                  + (f"  [{q[0]:.3f}, {q[2]:.3f}]" if q else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
