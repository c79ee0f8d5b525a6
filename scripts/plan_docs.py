"""bench.plan's predictions for the published decoder shapes (docs/scale.md, "Predicted peaks").

    python -m scripts.plan_docs [--out FILE.jsonl]

Each shape's config.json is written from its published architecture (below) into a temporary folder and
predicted as `model=auto model.source=FOLDER` would run it (pooling last, the uniform head, SST-2's 2
labels); methods: full finetuning (AdamW, fp32 master weights, bf16 autocast) and LoRA (r 16, alpha 32,
peft's default targets for llama/qwen2: q_proj, v_proj; bf16 frozen weights), batch 4 x 64 tokens (the
measured table's shape), then Llama-3.1-8B LoRA r 16 bf16 at batch 8 x 512 with and without checkpointing, with
`--devices 24GiB,40GiB,80GiB`. Prints markdown rows. Each prediction runs at 2 and 4 layers and is carried to
the model's depth by bench.plan.plan_by_depth (docs/scale.md checks that against full-depth runs).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import warnings
from pathlib import Path

_LLAMA3 = {"num_key_value_heads": 8, "vocab_size": 128256, "rope_theta": 500000.0, "max_position_embeddings": 131072}
_QWEN_BIG = {"num_key_value_heads": 8, "vocab_size": 152064, "tie_word_embeddings": False,
             "max_position_embeddings": 32768}
#: published architectures (each model's config.json on the hub): class, fields
SHAPES = {
    "qwen2.5-0.5b": ("Qwen2Config", {"hidden_size": 896, "num_hidden_layers": 24, "num_attention_heads": 14,
                                     "num_key_value_heads": 2, "intermediate_size": 4864, "vocab_size": 151936,
                                     "tie_word_embeddings": True, "max_position_embeddings": 32768}),
    "qwen2.5-1.5b": ("Qwen2Config", {"hidden_size": 1536, "num_hidden_layers": 28, "num_attention_heads": 12,
                                     "num_key_value_heads": 2, "intermediate_size": 8960, "vocab_size": 151936,
                                     "tie_word_embeddings": True, "max_position_embeddings": 32768}),
    "qwen2.5-3b": ("Qwen2Config", {"hidden_size": 2048, "num_hidden_layers": 36, "num_attention_heads": 16,
                                   "num_key_value_heads": 2, "intermediate_size": 11008, "vocab_size": 151936,
                                   "tie_word_embeddings": True, "max_position_embeddings": 32768}),
    "qwen2.5-7b": ("Qwen2Config", {"hidden_size": 3584, "num_hidden_layers": 28, "num_attention_heads": 28,
                                   "num_key_value_heads": 4, "intermediate_size": 18944, "vocab_size": 152064,
                                   "tie_word_embeddings": False, "max_position_embeddings": 32768}),
    "qwen2.5-14b": ("Qwen2Config", {"hidden_size": 5120, "num_hidden_layers": 48, "num_attention_heads": 40,
                                    "intermediate_size": 13824, **_QWEN_BIG}),
    "qwen2.5-32b": ("Qwen2Config", {"hidden_size": 5120, "num_hidden_layers": 64, "num_attention_heads": 40,
                                    "intermediate_size": 27648, **_QWEN_BIG}),
    "qwen2.5-72b": ("Qwen2Config", {"hidden_size": 8192, "num_hidden_layers": 80, "num_attention_heads": 64,
                                    "intermediate_size": 29568, **_QWEN_BIG}),
    "llama-3.2-1b": ("LlamaConfig", {"hidden_size": 2048, "num_hidden_layers": 16, "num_attention_heads": 32,
                                     "head_dim": 64, "intermediate_size": 8192, "tie_word_embeddings": True, **_LLAMA3}),
    "llama-3.2-3b": ("LlamaConfig", {"hidden_size": 3072, "num_hidden_layers": 28, "num_attention_heads": 24,
                                     "head_dim": 128, "intermediate_size": 8192, "tie_word_embeddings": True, **_LLAMA3}),
    "llama-3.1-8b": ("LlamaConfig", {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
                                     "intermediate_size": 14336, "tie_word_embeddings": False, **_LLAMA3}),
    "llama-3.1-70b": ("LlamaConfig", {"hidden_size": 8192, "num_hidden_layers": 80, "num_attention_heads": 64,
                                      "intermediate_size": 28672, "tie_word_embeddings": False, **_LLAMA3}),
}
METHODS = {"full": {"name": "full", "lr": 1e-5},
           "lora": {"name": "lora", "lr": 1e-4, "r": 16, "lora_alpha": 32, "lora_dropout": 0.0, "target_modules": None}}
GIB = 2 ** 30


def folder_for(name: str, root: Path) -> str:
    import transformers

    cls_name, kwargs = SHAPES[name]
    out = root / name
    if not (out / "config.json").exists():
        getattr(transformers, cls_name)(**kwargs).save_pretrained(out)
    return str(out)


def one(name, method, weights, batch, length, ckpt, root, devices=None) -> dict:
    from omegaconf import OmegaConf

    from bench.methods import build_method
    from bench.plan import fit_cell, plan_by_depth

    model_cfg = OmegaConf.create({"name": name, "source": folder_for(name, root), "tokenizer": "bundled:minilm",
                                  "pretrained": False, "pooling": "auto", "detect": True, "head_dropout": 0.1,
                                  "peft_targets": None})
    tcfg = OmegaConf.create({"batch_size": batch, "max_seq_len": length, "weight_decay": 0.01, "max_grad_norm": 1.0,
                             "seed": 0, "weights_dtype": weights, "precision": "bf16",
                             "gradient_checkpointing": ckpt})
    p = plan_by_depth(model_cfg, lambda: build_method(dict(METHODS[method])), tcfg, 2, False)
    if devices:
        p["devices"] = fit_cell(model_cfg, lambda: build_method(dict(METHODS[method])), tcfg, p, devices)
    return dict(shape=name, method=method, **{k: v for k, v in p.items()})


def row(r: dict) -> str:
    s = r["split_at_peak"]
    fits = ", ".join(f"{d['device_bytes'] // GIB} GiB: {'fits' if d['fits'] else 'no'} (max batch ~{d['largest_batch']})"
                     for d in r.get("devices", []))
    return (f"| {r['shape']} | {r['params']['total'] / 1e9:.2f}B | {r['method']} | {r['weights_dtype']} | "
            f"{'on' if r['gradient_checkpointing'] else 'off'} | {r['batch_size']} x {r['max_seq_len']} | "
            f"{r['peak_bytes'] / GIB:.2f} | {s['weights'] / GIB:.2f} | {s['gradients'] / GIB:.2f} | "
            f"{s['optimizer_states'] / GIB:.2f} | {s['activations'] / GIB:.2f} | {r['delta_bytes'] / 2**20:.1f} |"
            + (f" {fits} |" if fits else ""))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    ap.add_argument("--only", default=None)
    ap.add_argument("--grid-only", action="store_true", help="leave out the Llama-3.1-8B 8 x 512 rows")
    a = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.ERROR)
    out = open(a.out, "a") if a.out else None  # noqa: SIM115 - appended: the 8B rows and the grid run apart
    jobs = [] if a.grid_only else [("llama-3.1-8b", "lora", "bf16", 8, 512, ck, [24 * GIB, 40 * GIB, 80 * GIB])
                                   for ck in (False, True)]
    # full: fp32 master weights under bf16 autocast (every weight trains); LoRA: bf16 frozen weights (the lever)
    order = sorted(SHAPES, key=lambda s: (not s.startswith("llama"), s))
    jobs += [(s, m, w, 4, 64, False, None) for s in order for m, w in (("lora", "bf16"), ("full", "fp32"))]
    with tempfile.TemporaryDirectory() as tmp:
        for job in jobs:
            if a.only and a.only not in job[0]:
                continue
            r = one(*job[:6], Path(tmp), devices=job[6])
            print(row(r), flush=True)
            if out:
                out.write(json.dumps(r) + "\n")
                out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
