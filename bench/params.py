"""`python -m bench.params model=M method=X [method.*=...] [task=T]`: parameter counts, no training.

Composes the project's Hydra config (conf/, same overrides as `python -m bench`), builds the model
from its config (`model.pretrained=false`: shipped configs, no download, no weights needed), applies
the method exactly as a run does (`validate`, `apply`, `finalize`) and prints the counts a run's
record would hold (`bench.measure.counts.count_params`): trainable, total, head, trainable excl. head, and
which head (`model.head=uniform`: dropout + linear; `native`: the architecture's own head).

By default the model is built on PyTorch's `meta` device (accelerate's `init_empty_weights`): shapes
without storage, so roberta-large or DeBERTa-v2-XXL (1.5B) take seconds and no memory. Counts are
identical to a materialised model (tests/test_params.py checks that); `--materialize` builds real
random weights instead.

For peft methods (lora, ia3, prompt_tuning, prefix_tuning and every generic peft tuner) it also prints peft's own
`get_nb_trainable_parameters()` of the wrapped backbone, which must equal trainable excl. head, and what
peft prints for its own SEQ_CLS model of the same configuration (the published setup); with
`model.head=native` that equals `trainable` (tests/test_native_head.py builds peft's model and compares).

Exit status: 0, or 2 on a configuration error (unknown model/method, impossible settings).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from bench.config.confdir import PACKAGED, find_conf_dir

CONF_DIR = str(find_conf_dir() or PACKAGED)  # a clone's conf/ or the wheel's bench/conf/

# Trainable parameters by kind, from parameter names (first match wins; display only).
KINDS = (
    ("head", lambda n: n.startswith("head.")),
    ("lora", lambda n: ".lora_" in n),
    ("adapter", lambda n: ".adapter." in n),
    ("prompt/prefix", lambda n: "prompt_encoder" in n),
    ("ia3", lambda n: ".ia3_" in n),
    ("embeddings", lambda n: ".embeddings." in n and "LayerNorm" not in n),
    ("layernorm", lambda n: "LayerNorm" in n or "layer_norm" in n or ".norm." in n or "layernorm" in n or ".ln_" in n),
    ("bias", lambda n: n.endswith(".bias")),
    ("weight", lambda n: True),
)


def compose_config(overrides: list[str]):
    """The resolved job config for `overrides`, as `python -m bench` composes it (conf/ through Hydra's compose
    API: the same defaults, the same open method node, bench/config/store.py; no run dir, no callbacks), old
    method setting names moved to peft's (bench.config.renamed). Raises hydra's errors for unknown groups/keys;
    what the method accepts is judged when it is built (bench.methods.validate.check_method)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from bench.config.renamed import rename_settings

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    rename_settings(cfg)
    return cfg


def _kind(name: str) -> str:
    return next(k for k, test in KINDS if test(name))


def count_by_kind(model) -> dict[str, int]:
    out: dict[str, int] = {}
    seen: set[int] = set()
    for n, p in model.named_parameters():
        if id(p) in seen or not p.requires_grad:
            continue
        seen.add(id(p))
        k = _kind(n)
        out[k] = out.get(k, 0) + p.numel()
    return out


def _numel(params) -> int:
    return sum(p.numel() for p in params)


def reference_quantities(model, config, num_labels: int) -> dict[str, int]:
    """Sizes papers add or leave out when they print a count, measured on this backbone:
    the BERT/RoBERTa pooler (dense H*H+H; built by transformers' *ForSequenceClassification for BERT,
    not built here unless pooling=pooler), RoBERTa's classification head (dense H*H+H + out_proj
    H*C+C), every LayerNorm of the backbone, and the position/token-type embedding tables."""
    H = int(config.hidden_size)
    backbone = model.backbone.get_base_model() if hasattr(model.backbone, "get_base_model") else model.backbone
    norms = [p for n, p in backbone.named_parameters()  # decoders: ln_1/ln_f, *_layernorm, norm
             if "LayerNorm" in n or "layer_norm" in n or "layernorm" in n or n.startswith(("ln_", "norm."))
             or ".ln_" in n]
    pos = [p for n, p in backbone.named_parameters()
           if "position_embeddings" in n or "token_type_embeddings" in n]
    has_pooler_arch = getattr(config, "model_type", "") in ("bert", "roberta")
    return {
        "hidden_size": H,
        "num_layers": int(getattr(config, "num_hidden_layers", getattr(config, "n_layers", 0))),
        "intermediate_size": int(getattr(config, "intermediate_size", getattr(config, "hidden_dim", 0))),
        "vocab_size": int(config.vocab_size),
        "pooler": (H * H + H) if has_pooler_arch else 0,
        "roberta_classifier": H * H + H + H * num_labels + num_labels,
        "backbone_layernorm": _numel(norms),
        "position_and_type_embeddings": _numel(pos),
    }


def peft_seq_cls_count(method, config, num_labels: int, meta: bool = True) -> dict:
    """What peft prints for the published setup: `get_nb_trainable_parameters()` of peft's own SEQ_CLS model
    (`AutoModelForSequenceClassification` from the same config, the method's peft config with task_type SEQ_CLS,
    so peft adds the classifier to modules_to_save), built on the meta device."""
    import contextlib
    import copy

    from accelerate import init_empty_weights
    from peft import TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification

    cfg = copy.deepcopy(config)
    cfg.num_labels = num_labels
    peft_cfg = method.wrap_config(cfg)  # CorDA/LoRA-GA: the same shapes without the data pass their init needs
    peft_cfg.task_type = TaskType.SEQ_CLS
    with init_empty_weights(include_buffers=False) if meta else contextlib.nullcontext():
        model = get_peft_model(AutoModelForSequenceClassification.from_config(cfg), peft_cfg)
    if getattr(method, "optimizer", None) == "lorafa":  # peft's LoRA-FA factory freezes A before training
        from peft.optimizers import create_lorafa_optimizer

        create_lorafa_optimizer(model, r=peft_cfg.r, lora_alpha=peft_cfg.lora_alpha, lr=1e-3)
    trainable, total = model.get_nb_trainable_parameters()
    return {"trainable": int(trainable), "all": int(total)}


def measure(overrides: list[str], materialize: bool = False) -> dict:
    """Counts for one configuration. Returns a JSON-able dict (see `format_text` for the fields)."""

    from bench.config.method_labels import method_label
    from bench.config.resolvers import resolved
    from bench.data import tasks as T
    from bench.models.backbones import CONFIG_DIR, head_parts
    from bench.models.build import build_cell, method_from_config, method_source

    requested_materialize = materialize
    cfg = compose_config(list(overrides) + ["model.pretrained=false"])
    spec = T.task_spec(cfg.task)
    method_cfg = resolved(cfg.method, "method")
    choice = next((o.partition("=")[2] for o in overrides if o.startswith("method=")), None)
    method = method_from_config(cfg, where=method_source(choice))
    # The run's own builder: these counts are the ones a run of this configuration records.
    try:
        built = build_cell(cfg.model, method, spec.num_labels, int(cfg.train.seed), int(cfg.train.max_seq_len or 512),
                           meta=not materialize)
    except NotImplementedError as exc:  # a tuner whose initialisation reads the weights (SVD: PiSSA, OSF, ...)
        if materialize or "meta" not in str(exc):
            raise
        materialize = True
        method = method_from_config(cfg, where=method_source(choice))
        built = build_cell(cfg.model, method, spec.num_labels, int(cfg.train.seed), int(cfg.train.max_seq_len or 512))
    model, counts = built.model, built.params
    peft_count = None
    if method.delta_format == "peft" and hasattr(model.backbone, "get_nb_trainable_parameters"):
        trainable, total = model.backbone.get_nb_trainable_parameters()
        peft_count = {"trainable": int(trainable), "all": int(total)}
    peft_seq_cls = None
    if method.delta_format == "peft":
        peft_seq_cls = peft_seq_cls_count(method, built.backbone_config, spec.num_labels, meta=not materialize)
    shipped = CONFIG_DIR / str(cfg.model.get("name", ""))
    return {
        "model": str(cfg.model.name),
        "model_type": str(getattr(built.backbone_config, "model_type", "")),
        "config_source": built.source,
        "shipped_config": str(shipped) if (shipped / "config.json").exists() else None,
        "config_overrides": dict(cfg.model.get("config_overrides") or {}),
        "task": spec.name,
        "num_labels": spec.num_labels,
        "method": method.name,
        "method_label": method_label(cfg, list(overrides)),
        "method_settings": {k: v for k, v in method_cfg.items() if k not in ("_target_", "name")},
        "device": ("real weights (random)" + (" (its initialisation reads the weights, so not on the meta device)"
                                              if not requested_materialize else ""))
        if materialize else "meta (shapes only)",
        "params": {k: v for k, v in counts.items() if k != "counting"},
        "counting": counts["counting"],
        "by_kind": count_by_kind(model),
        "head_modules": f"{getattr(model.head, 'source_class', 'uniform')}: {head_parts(model.head)}",
        "peft": peft_count,
        "peft_seq_cls": peft_seq_cls,
        "reference": reference_quantities(model, built.backbone_config, spec.num_labels),
    }


def _n(v) -> str:
    return f"{v:,}"


def format_text(r: dict) -> str:
    p, ref = r["params"], r["reference"]
    src = f"shipped config {r['shipped_config']}" if r["shipped_config"] else r["config_source"]
    extra = f", config_overrides {r['config_overrides']}" if r["config_overrides"] else ""
    lines = [
        (f"{r['model']} + {r['method_label']} on {r['task']} "
         f"({r['num_labels']} label{'s' if r['num_labels'] > 1 else ''})"),
        (f"  architecture: {r['model_type']}, {ref['num_layers']} layers, hidden {ref['hidden_size']} ({src}{extra}); "
         f"built on {r['device']}"),
        f"  trainable              {_n(p['trainable']):>15}   {p['trainable_pct']:.4f}% of total",
        (f"  trainable excl. head   {_n(p['trainable_excl_head']):>15}   "
         "(the method alone: what LoRA/adapter papers count)"),
        (f"  head                   {_n(p['head']):>15}   (model.head=uniform: dropout + linear, H*C + C = "
         f"{ref['hidden_size']}*{r['num_labels']} + {r['num_labels']})" if p["head_kind"] == "uniform" else
         f"  head                   {_n(p['head']):>15}   (model.head=native: {r['head_modules']})"),
        f"  total                  {_n(p['total']):>15}   (backbone + method additions + head)",
        "  trainable by kind:     " + ", ".join(f"{k} {_n(v)}" for k, v in r["by_kind"].items()),
    ]
    if r["peft"]:
        agree = "agrees" if r["peft"]["trainable"] == p["trainable_excl_head"] else "DISAGREES"
        lines.append(f"  peft get_nb_trainable_parameters (backbone only): trainable {_n(r['peft']['trainable'])}, "
                     f"all {_n(r['peft']['all'])}: {agree} with trainable excl. head")
    if r.get("peft_seq_cls"):
        q = r["peft_seq_cls"]
        same = "equals" if q["trainable"] == p["trainable"] else "differs from"
        why = (f" (= total + {_n(q['all'] - p['total'])}: modules_to_save keeps a frozen copy of the classifier, "
               "counted in `all` only)" if p["head_kind"] == "native" else "")
        lines.append(f"  peft's own SEQ_CLS model (AutoModelForSequenceClassification, measured): trainable "
                     f"{_n(q['trainable'])} ({same} trainable with this head), all {_n(q['all'])}{why}")
    lines.append(f"  for comparison: RoBERTa-style classifier (dense+out_proj) {_n(ref['roberta_classifier'])}; "
                 f"BERT pooler {_n(ref['pooler'])}; backbone LayerNorms {_n(ref['backbone_layernorm'])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.params",
        description="Trainable / total / head parameters of a model + method configuration, without training. "
                    "Overrides are the same as for `python -m bench` (model=..., method=..., method.r=..., task=...).")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=roberta_base method=lora method.r=8")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    ap.add_argument("--materialize", action="store_true",
                    help="build real (random) weights instead of the meta device (slower, same counts)")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("bench.models.backbones").setLevel(logging.ERROR)  # tokenizer fallback: counts do not use it
    from transformers.utils import logging as tlog

    tlog.set_verbosity_error()
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from bench.errors import ConfigError

    try:
        result = measure(args.overrides, materialize=args.materialize)
    except (ConfigError, HydraException, OmegaConfBaseException, ValueError) as exc:
        print(f"bench.params: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2) if args.json else format_text(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
