#!/usr/bin/env python3
"""The cost-at-scale table and plot (docs/scale.md) from benchmarks/bench_scale.py's rows.

Reads DIR/scale.jsonl, writes DIR/table.md (one row per measured point) and DIR/scale.png (peak
memory and step time against parameter count, one line per method and weight dtype), and prints
the 24 GiB projection: for every (method, weights, checkpointing) measured at two or more sizes, the
least-squares line of peak memory against total parameters, and where it crosses 24 GiB, beside the
parameter counts of the published Qwen2.5 shapes (counted by building each on the meta device). A
projection, labelled so: the measured points end where this machine's memory and cores do.

Usage: python -m scripts.scale_docs [DIR]   (default docs/scale)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scripts.bench_scale import GIB, SHAPES

BUDGET = 24 * GIB
ORDER = ["full", "lora", "ia3", "prompt_tuning", "head_only"]


def shape_params() -> dict[str, int]:
    """Total parameters of each published shape (backbone only), counted on the meta device."""
    import torch
    import transformers

    out = {}
    for name, (cls_name, kwargs) in SHAPES.items():
        config = getattr(transformers, cls_name)(**kwargs)
        with torch.device("meta"):
            model = transformers.AutoModel.from_config(config)
        out[name] = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    return out


def table(rows: list[dict]) -> str:
    lines = ["| shape | params | method | weights | ckpt | trainable | peak memory (GiB) | s / step | foreign CPU |",
             "|---|---|---|---|---|---|---|---|---|"]
    key = lambda r: (r["params"], ORDER.index(r["method"]), r["weights"], r["checkpointing"])
    for r in sorted((r for r in rows if "error" not in r), key=key):
        load = f"{r['foreign_cpu_frac']:.0%}" if r.get("foreign_cpu_frac") is not None else "n/a"
        lines.append(f"| {r['size']} | {r['params'] / 1e6:,.1f}M | {r['method']} | {r['weights']} | "
                     f"{'on' if r['checkpointing'] else 'off'} | {r['trainable']:,} | {r['peak_bytes'] / GIB:.2f} | "
                     f"{r['step_s']:.2f} | {load} |")
    for r in (r for r in rows if "error" in r):
        lines.append(f"| {r['size']} | - | {r['method']} | {r['weights']} | {'on' if r['checkpointing'] else 'off'} "
                     f"| - | failed: {r['error'][:80]} | - | - |")
    return "\n".join(lines) + "\n"


def fits(rows: list[dict], counts: dict[str, int]) -> str:
    groups: dict[tuple, list] = {}
    for r in rows:
        if "error" not in r:
            groups.setdefault((r["method"], r["weights"], r["checkpointing"]), []).append(r)
    lines = ["| method | weights | ckpt | sizes fitted | GiB per 1B params | crosses 24 GiB at | largest Qwen2.5 shape under it |",
             "|---|---|---|---|---|---|---|"]
    for (method, weights, ckpt), pts in sorted(groups.items(), key=lambda kv: (ORDER.index(kv[0][0]), kv[0][1:])):
        xs = [p["params"] for p in pts]
        if len(set(xs)) < 2:
            continue
        n, mx, my = len(xs), sum(xs) / len(xs), sum(p["peak_bytes"] for p in pts) / len(xs)
        b = sum((x - mx) * (p["peak_bytes"] - my) for x, p in zip(xs, pts)) / sum((x - mx) ** 2 for x in xs)
        a = my - b * mx
        cross = (BUDGET - a) / b if b > 0 else float("inf")
        under = [s for s, c in counts.items() if s.startswith("qwen") and c <= cross]
        lines.append(f"| {method} | {weights} | {'on' if ckpt else 'off'} | {n} ({', '.join(sorted({p['size'] for p in pts}))}) "
                     f"| {b * 1e9 / GIB:.2f} | {cross / 1e9:.2f}B params | {max(under, key=counts.get) if under else 'none'} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for method in ORDER:
        for weights, style in (("fp32", "-"), ("bf16", "--")):
            pts = sorted((r for r in rows if "error" not in r and r["method"] == method and r["weights"] == weights
                          and not r["checkpointing"]), key=lambda r: r["params"])
            if not pts:
                continue
            xs = [r["params"] / 1e6 for r in pts]
            line, = axes[0].plot(xs, [r["peak_bytes"] / GIB for r in pts], style, marker="o", label=f"{method} {weights}")
            axes[1].plot(xs, [r["step_s"] for r in pts], style, marker="o", color=line.get_color())
    axes[0].axhline(24, color="grey", lw=0.8)
    axes[0].text(1.1, 24.3, "24 GiB", color="grey", fontsize=8)
    for ax, label in ((axes[0], "peak memory (GiB, peak RSS)"), (axes[1], "seconds per optimizer step")):
        ax.set_xscale("log")
        ax.set_xlabel("total parameters (millions, log)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    fig.suptitle("Cost at scale: random-weight decoders, batch 4 x 64 tokens, CPU (benchmarks/bench_scale.py)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/scale")
    rows = [json.loads(x) for x in (folder / "scale.jsonl").read_text().splitlines() if x.strip()]
    (folder / "table.md").write_text(table(rows))
    counts = shape_params()
    (folder / "fits.md").write_text(fits(rows, counts))
    plot(rows, folder / "scale.png")
    print(table(rows))
    print("shapes (backbone parameters):", {k: f"{v / 1e6:,.1f}M" for k, v in counts.items()})
    print(fits(rows, counts))


if __name__ == "__main__":
    main()
