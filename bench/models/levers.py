"""Memory levers of one cell: activation checkpointing, bf16 weights, a 4-bit base.

Three settings, each off by default and absent from the shipped configs (so configs written before
them keep their hash):

- `train.gradient_checkpointing=true`: transformers' activation checkpointing on the backbone with
  `use_reentrant=False` (torch's recommended mode: no input needs `requires_grad`, works with
  frozen embeddings and peft wrappers), and `enable_input_require_grads` when the method freezes
  the embeddings anyway, as peft and the HF Trainer do, so a reentrant fallback would also work.
  The layers' activations are recomputed in the backward: less memory, one more forward per step.
- `train.weights_dtype=bf16`: the *frozen* weights are stored in bf16; the trainable ones stay fp32 master
  weights, so AdamW's states are fp32 and no update is lost to bf16's 8-bit mantissa (the reason
  bench/models/backbones.py loads fp32). Computation is bf16 autocast (`train.precision=auto` resolves to bf16;
  an explicit fp32/fp16 is refused). Under full finetuning every weight trains, so bf16 weights
  change nothing stored: the cell is then bf16 autocast on fp32 weights, and the record says so.
- `train.weights_dtype=nf4`: QLoRA (Dettmers et al. 2023): the base loaded 4-bit NormalFloat through
  bitsandbytes (`BitsAndBytesConfig`, double quantisation, bf16 compute) and prepared with
  `peft.prepare_model_for_kbit_training`; CUDA only and the `[qlora]` extra. Refused before any work
  where it cannot run (no CUDA, no bitsandbytes) or where the method trains base weights (full, BitFit).
"""
from __future__ import annotations

import importlib.util
import logging

import torch

from bench.errors import ConfigError

log = logging.getLogger(__name__)

DTYPES = ("fp32", "bf16", "nf4")


def _get(node, key, default=None):
    return node.get(key, default) if hasattr(node, "get") else getattr(node, key, default)


def weights_dtype(tcfg) -> str:
    """`train.weights_dtype` (absent: fp32)."""
    value = (_get(tcfg, "weights_dtype") if tcfg is not None else None) or "fp32"
    if value not in DTYPES:
        raise ConfigError(f"train.weights_dtype={value!r}: expected {', '.join(DTYPES[:-1])} or {DTYPES[-1]}")
    return str(value)


def check_levers(cfg, method) -> None:
    """The levers' rules, checked before any work (bench.recipe.validate.check): precision against bf16
    weights, and whether a 4-bit base can run here at all."""
    t = cfg.get("train") or {}
    dtype = weights_dtype(t)
    precision = str(_get(t, "precision", "auto"))
    if dtype in ("bf16", "nf4") and precision not in ("auto", "bf16"):
        raise ConfigError(f"train.weights_dtype={dtype} computes in bf16: train.precision={precision} cannot run "
                          "on it; use train.precision=auto or bf16")
    if dtype == "nf4":
        check_4bit(method, str(_get(t, "device", "auto")))


def check_4bit(method, device: str) -> None:
    """train.weights_dtype=nf4 needs CUDA, the bitsandbytes package and a method that leaves the base
    frozen (its `trains_base_weights` declaration; `method` None: the backbone alone is being built)."""
    if method is not None and method.trains_base_weights:
        raise ConfigError(f"train.weights_dtype=nf4 with method={method.name}: this method trains the base weights, "
                          "which a 4-bit base cannot store; use a method that freezes the base "
                          "(lora, ia3, adapter, ...) or train.weights_dtype=bf16")
    if device == "cpu" or device == "mps" or not torch.cuda.is_available():
        where = "has no CUDA device" if not torch.cuda.is_available() else f"runs train.device={device}"
        raise ConfigError("train.weights_dtype=nf4 (a 4-bit base through bitsandbytes) runs on CUDA only; "
                          f"this machine {where}"
                          "; use train.weights_dtype=bf16 here")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError("train.weights_dtype=nf4 needs the bitsandbytes package: pip install 'peft-bench[qlora]' "
                          "(or pip install bitsandbytes)")


def resolve_precision(dtype: str, precision: str) -> str:
    """The autocast precision a cell runs at: bf16 weights (and a 4-bit base) compute in bf16."""
    return "bf16" if dtype in ("bf16", "nf4") else precision


def quantization_kwargs(dtype: str) -> dict:
    """Keyword arguments for `from_pretrained` that load the base 4-bit (train.weights_dtype=nf4), else {}."""
    if dtype != "nf4":
        return {}
    from transformers import BitsAndBytesConfig

    bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                             bnb_4bit_compute_dtype=torch.bfloat16)
    return {"quantization_config": bnb, "device_map": {"": torch.cuda.current_device()}}


def quantize_random(backbone, pool_kwargs: dict):
    """A randomly initialised backbone (model.pretrained=false) loaded 4-bit: bitsandbytes quantises
    at load time, so it is saved to a temporary folder and loaded back with the 4-bit config."""
    import tempfile

    from transformers import AutoModel

    with tempfile.TemporaryDirectory(prefix="bench-nf4-") as tmp:
        backbone.save_pretrained(tmp)
        return AutoModel.from_pretrained(tmp, dtype=torch.float32, **pool_kwargs, **quantization_kwargs("nf4"))


def prepare_kbit(model) -> None:
    """peft's preparation of a 4-bit base, before the method is applied: every base weight frozen,
    the non-quantised ones (norms, embeddings) cast to fp32. Checkpointing is left to
    `train.gradient_checkpointing` (enable_checkpointing), so the setting means the same on every base."""
    if not getattr(model.backbone, "is_loaded_in_4bit", False):
        return
    from peft import prepare_model_for_kbit_training

    prepare_model_for_kbit_training(model.backbone, use_gradient_checkpointing=False)


def cast_frozen(model, dtype: str) -> dict:
    """train.weights_dtype=bf16: store every frozen floating-point parameter in bf16; trainable ones stay
    fp32. Returns what was cast, for the record (`train.weights`)."""
    frozen = trainable = 0
    if dtype == "bf16":
        for p in model.parameters():
            if p.requires_grad or not p.is_floating_point():
                continue
            p.data = p.data.to(torch.bfloat16)
    for p in {id(p): p for p in model.parameters()}.values():
        if p.requires_grad:
            trainable += p.numel() * p.element_size()
        else:
            frozen += p.numel() * p.element_size()
    return {"dtype": dtype, "frozen_bytes": int(frozen), "trainable_bytes": int(trainable),
            "trainable_dtype": "fp32"}


def _transformers_model(backbone):
    """The transformers model inside a peft wrapper (or the backbone itself)."""
    base = backbone.get_base_model() if hasattr(backbone, "get_base_model") else backbone
    return base


def enable_checkpointing(model, method) -> None:
    """train.gradient_checkpointing: activation checkpointing on every layer of the backbone, the
    non-reentrant variant; input gradients on when the embeddings are frozen (peft-compatible)."""
    base = _transformers_model(model.backbone)
    if not getattr(base, "supports_gradient_checkpointing", False):
        raise ConfigError(f"train.gradient_checkpointing=true: {type(base).__name__} does not support activation "
                          "checkpointing in transformers; set it to false for this model")
    kwargs = {"use_reentrant": False}
    if getattr(base.config, "use_cache", None):  # decoders: no key/value cache is used here, and it cannot be kept
        base.config.use_cache = False            # under checkpointing (transformers warns and turns it off per call)
    if hasattr(base, "activation_checkpointing_enable"):  # transformers >= 5.x; the old name warns
        base.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:  # pragma: no cover - older transformers
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    embeddings = base.get_input_embeddings()
    if embeddings is not None and not any(p.requires_grad for p in embeddings.parameters()):
        base.enable_input_require_grads()
    if method.trains_on_cached_features:
        log.info("train.gradient_checkpointing: method %s trains on cached features (no backward through the "
                 "backbone); checkpointing changes nothing for it", method.name)


def record_section(tcfg, weights: dict | None) -> dict:
    """The record's `train.memory_levers` (optional to readers)."""
    return {"gradient_checkpointing": bool(_get(tcfg, "gradient_checkpointing", False)),
            "weights": weights or {"dtype": weights_dtype(tcfg)}}
