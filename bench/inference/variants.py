"""The variants an inference measurement times, and what is checked about them: the
synthetic inputs every variant sees, the extra length a method adds (read from shapes), and the
merged model with its logit check. Split from bench/inference/cost.py, which times them.

Why merged weights go into a fresh build, and why the merge is checked on the cell's own weights
even when the timings are reused: bench/inference/cost.py's docstring and docs/inference.md.
"""
from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from bench.device import autocast_for

INPUTS_NOTE = ("synthetic inputs: random vocabulary ids of exactly the stated token length, all attended, "
               "no token_type_ids; same tensors for every variant")


# ------------------------------------------------------------------------------------------- inputs

def synthetic_inputs(batch: int, length: int, vocab_size: int, device: torch.device, seed: int = 0) -> dict:
    """Random ids in [1000, vocab) (clear of special tokens in BERT-style vocabularies), all attended."""
    g = torch.Generator().manual_seed(seed + 1000 * length + batch)
    lo = 1000 if vocab_size > 2000 else 1
    ids = torch.randint(lo, vocab_size, (batch, length), generator=g)
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device)}


def forward(model: nn.Module, inputs: dict, device: torch.device, precision: str) -> torch.Tensor:
    with torch.inference_mode(), autocast_for(device, precision):
        return model(**inputs)


def inner_transformer(model: nn.Module) -> nn.Module:
    """The transformers model under any peft wrapper (what finally receives the inputs)."""
    bb = model.backbone
    return bb.get_base_model() if hasattr(bb, "get_base_model") else bb


def added_length(model: nn.Module, vocab_size: int, device: torch.device, length: int = 16) -> dict:
    """Extra positions the method adds, measured from the shapes the transformers model receives:
    `input` = its input sequence length minus ours (prompt tuning: the virtual tokens, which every
    layer then processes); `key_value` = its attention-mask width minus ours (prefix tuning: the
    prefixes attended to in every layer, while the input keeps its length)."""
    seen: dict = {}

    def hook(_mod, args, kwargs):
        x = kwargs.get("input_ids") if kwargs.get("input_ids") is not None else kwargs.get("inputs_embeds")
        if x is None and args:
            x = args[0]
        mask = kwargs.get("attention_mask")
        seen["input"] = int(x.shape[1])
        seen["mask"] = int(mask.shape[1]) if mask is not None else int(x.shape[1])

    handle = inner_transformer(model).register_forward_pre_hook(hook, with_kwargs=True)
    try:
        # a shape probe: fp32, or bf16 autocast where the weights are stored bf16 (train.weights_dtype)
        probe = "bf16" if any(p.dtype == torch.bfloat16 for p in model.parameters()) else "fp32"
        forward(model, synthetic_inputs(1, length, vocab_size, device), device, probe)
    finally:
        handle.remove()
    if not seen:  # the wrapper calls the inner model's .forward directly (peft AdaLoRA), so no hook fires:
        # the backbone's output length is then what every layer processed
        with torch.inference_mode():
            out = model.backbone(**synthetic_inputs(1, length, vocab_size, device))
        seen["input"] = seen["mask"] = int(out.last_hidden_state.shape[1])
    extra_in, extra_kv = seen["input"] - length, seen["mask"] - length
    where = ("input (prepended tokens: every layer processes them)" if extra_in else
             "key/value only (attended prefixes; the input keeps its length)" if extra_kv else "none")
    return {"input_tokens": extra_in, "key_value_tokens": extra_kv, "where": where,
            "measured": f"shapes reaching {type(inner_transformer(model)).__name__}.forward for a {length}-token input"}


# ------------------------------------------------------------------------------------------- merging

def merged_variant(model: nn.Module, reference: nn.Module,
                   fresh: Callable[[], nn.Module] | None = None) -> tuple[nn.Module | None, dict]:
    """(merged model or None, how). Never changes `model`. With `fresh` (a builder of a model like
    the reference), the merged weights are loaded into a fresh build: the memory layout a served
    merged checkpoint has, and the reference's."""
    bb = model.backbone
    peft_cfg = getattr(bb, "active_peft_config", None)
    if peft_cfg is not None:
        kind = str(getattr(peft_cfg.peft_type, "value", peft_cfg.peft_type))
        if peft_cfg.is_prompt_learning:
            what = ("prefix tuning adds key/value positions in every layer" if "PREFIX" in kind.upper()
                    else "prompt tuning prepends trainable input embeddings")
            return None, {"status": "not_applicable",
                          "why": f"{what}: extra sequence positions, not a weight change, so nothing can be folded "
                                 "into the weights"}
        if not hasattr(bb, "merge_and_unload"):
            return None, {"status": "not_applicable", "why": f"peft {kind} has no merge_and_unload"}
        merged = copy.deepcopy(model)
        try:
            merged.backbone = merged.backbone.merge_and_unload()
        except NotImplementedError as exc:  # a tuner that trains but cannot fold into the weights (Lily)
            return None, {"status": "not_applicable",
                          "why": f"peft {kind}: merge_and_unload is not implemented ({exc})"}
        merged.pass_token_type_ids = True
        how = f"peft {kind}: merge_and_unload on a deep copy"
        if fresh is not None:
            target = fresh()
            try:
                target.load_state_dict(merged.state_dict(), strict=True)
            except RuntimeError as exc:  # a head or buffer the fresh build lacks: keep the copy, say so
                how += f"; timed as the deep copy (its weights did not load into a fresh build: {str(exc)[:120]})"
            else:
                target.pass_token_type_ids = True
                merged = target
                how += "; merged weights loaded into a freshly built model (a served merged checkpoint's layout)"
                return merged.eval(), {"status": "merged", "how": how, "fresh_build": True}
        return merged.eval(), {"status": "merged", "how": how, "fresh_build": False}
    own = {n: tuple(p.shape) for n, p in model.named_parameters()}
    ref = {n: tuple(p.shape) for n, p in reference.named_parameters()}
    hooked = [n for n, m in model.named_modules() if m._forward_hooks or m._forward_pre_hooks]
    if own == ref and not hooked:
        return None, {"status": "native",
                      "how": "the finetuned model has exactly the backbone's architecture "
                             "(only existing weights changed): merged by nature, figures = unmerged"}
    extra = sorted(set(own) - set(ref))
    why = ("bottleneck adapters compute x + up(act(down(x))), a nonlinear function no weight matrix can absorb"
           if any(".adapter." in n for n in extra) else
           f"the model has modules the backbone lacks ({', '.join(extra[:3])}{', ...' if len(extra) > 3 else ''})"
           f"{' and forward hooks' if hooked else ''}; no known way to fold them into the weights")
    return None, {"status": "not_applicable", "why": why}


def check_merged(model: nn.Module, merged: nn.Module, vocab_size: int, device, precision: str, atol: float) -> dict:
    """Merged vs unmerged logits on synthetic batches (4 x 16 and 4 x 64 tokens)."""
    worst, agree, n = 0.0, 0, 0
    for length in (16, 64):
        x = synthetic_inputs(4, length, vocab_size, device, seed=7)
        a = forward(model, x, device, precision).float()
        b = forward(merged, x, device, precision).float()
        worst = max(worst, float((a - b).abs().max()))
        if a.shape[-1] > 1:
            agree += int((a.argmax(-1) == b.argmax(-1)).sum())
            n += a.shape[0]
    return {"max_abs_logit_diff": worst, "atol": atol, "equal_within_atol": worst <= atol,
            "argmax_agreement": (agree / n) if n else None, "inputs": "8 synthetic sequences (4 x 16, 4 x 64 tokens)"}


def merged_and_checked(model: nn.Module, reference: nn.Module, fresh, settings: dict, vocab: int,
                       device: torch.device, precision: str) -> tuple[nn.Module | None, dict]:
    """The merged variant (on `device`) and its record entry with the logit check against `model`;
    (None, why) when merging is off or not possible. One path for a measured and a shared section."""
    if not settings["merge"]:
        return None, {"status": "off", "why": "inference.merge=false"}
    merged, merge = merged_variant(model, reference, fresh)
    if merged is not None:
        merged.to(device)
        merge["check"] = check_merged(model, merged, vocab, device, precision, float(settings["merge_atol"]))
    return merged, merge
