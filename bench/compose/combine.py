"""Combining deltas: soups across seeds and multi-task merges.

Tensors only; bench/compose/core.py rebuilds, evaluates and records. How a delta combines is what its
method declares (bench/methods/base.py `adds_as_lora`, `changes_backbone`, `combine_refusal`), never its name:

* A LoRA adapter (a method declaring `adds_as_lora`): peft's `add_weighted_adapter` on one backbone
  that carries every source adapter under its own name. Soups use `cat` with weights 1/n: the merged
  update is exactly the mean of the sources' updates B_i A_i s (rank n*r). Merges use the chosen
  combination type (linear / ties / dare_ties / ...; peft combines A and B matrices separately for the
  non-SVD types, which is peft's documented approximation). peft gives the merged adapter
  r = alpha = new rank (scaling 1), so the composed delta's method settings say so.
* Any other method that saves trainable tensors (bottleneck adapters, BitFit, full, IA3, prompts):
  a weighted parameter average of the saved tensors (a soup: Wortsman et al. 2022; AdapterSoup).
* Heads: a soup averages the heads too (one task); a merge keeps each task's own head.
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from bench.compose.core import ComposeError, Source, build, source_method
from bench.methods.peft_methods import LORA_COMBINATIONS as LORA_TYPES  # the method declares them

#: peft's TIES-type merges average over agreeing signs themselves (disjoint mean): weight 1 each;
#: the others are weighted sums: weight 1/n each, so n identical deltas give that delta.
TIES_TYPES = ("ties", "dare_ties", "ties_svd", "dare_ties_svd")


def adds_as_lora(src: Source) -> bool:
    """Whether the source's method declares its delta a LoRA adapter that peft's add_weighted_adapter combines
    (and the delta holds one)."""
    return source_method(src).adds_as_lora and (src.delta / "adapter_model.safetensors").is_file()


def default_weights(n: int, combination: str) -> list[float]:
    return [1.0] * n if combination in TIES_TYPES else [1.0 / n] * n


def _delta_tensors(src: Source) -> dict[str, torch.Tensor]:
    """Every saved tensor, keyed as the model names it (head tensors under `head.`)."""
    if (src.delta / "delta.safetensors").is_file():
        return load_file(str(src.delta / "delta.safetensors"))
    if (src.delta / "adapter_model.safetensors").is_file():
        state = {f"adapter::{k}": v for k, v in load_file(str(src.delta / "adapter_model.safetensors")).items()}
        state.update({f"head.{k}": v for k, v in load_file(str(src.delta / "head.safetensors")).items()})
        return state
    raise ComposeError(f"{src.delta}: no delta.safetensors or adapter_model.safetensors to combine")


def average(states: list[dict], weights: list[float], keys=None) -> dict[str, torch.Tensor]:
    keys = list(states[0]) if keys is None else list(keys)
    for s in states[1:]:
        if set(s) != set(states[0]):
            raise ComposeError("the deltas hold different tensors; they cannot be averaged")
    out = {}
    for k in keys:
        acc = torch.zeros_like(states[0][k], dtype=torch.float64)
        for s, w in zip(states, weights):
            if s[k].shape != states[0][k].shape:
                raise ComposeError(f"tensor {k}: shapes {tuple(s[k].shape)} and {tuple(states[0][k].shape)} differ")
            acc += float(w) * s[k].to(torch.float64)
        out[k] = acc.to(states[0][k].dtype)
    return out


def load_state(cell, state: dict[str, torch.Tensor]) -> None:
    """Put averaged tensors (`_delta_tensors` keys) into a built cell."""
    adapter = {k[len("adapter::"):]: v for k, v in state.items() if k.startswith("adapter::")}
    if adapter:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(cell.model.backbone, adapter)
    head = {k[5:]: v for k, v in state.items() if k.startswith("head.")}
    if head:
        cell.model.head.load_state_dict(head)
    rest = {k: v for k, v in state.items() if not k.startswith(("adapter::", "head."))}
    if rest:
        missing = set(rest) - set(dict(cell.model.named_parameters()))
        if missing:
            raise ComposeError(f"delta tensors the model lacks: {sorted(missing)[:5]}")
        cell.model.load_state_dict(rest, strict=False)


def lora_combine(sources: list[Source], weights: list[float], combination: str, density: float | None,
                 seed: int = 0) -> tuple[dict[str, torch.Tensor], dict]:
    """peft's add_weighted_adapter over the sources' LoRA adapters. Returns the merged adapter's
    state dict (peft's keys, as `adapter_model.safetensors` holds) and the method settings it needs."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    if combination not in LORA_TYPES:
        raise ComposeError(f"--method {combination}: expected one of {', '.join(LORA_TYPES)}")
    refusal = source_method(sources[0]).combine_refusal()
    if refusal:
        raise ComposeError(refusal)
    cell = build(sources[0])
    peft_model = cell.model.backbone
    config = cell.method.peft_config(peft_model.base_model.model.config)
    names = []
    for i, src in enumerate(sources):
        name = f"src{i}"
        peft_model.add_adapter(name, config)
        result = set_peft_model_state_dict(peft_model, load_file(str(src.delta / "adapter_model.safetensors")),
                                           adapter_name=name)
        if getattr(result, "unexpected_keys", None):
            raise ComposeError(f"{src.delta}: adapter tensors the model lacks: {result.unexpected_keys[:5]}")
        names.append(name)
    torch.manual_seed(seed)  # DARE drops at random
    kwargs = {"density": density} if density is not None else {}
    peft_model.base_model.add_weighted_adapter(names, list(map(float, weights)), "composed",
                                               combination_type=combination, **kwargs)
    new_r = peft_model.peft_config["composed"].r
    state = {k: v.detach().clone() for k, v in get_peft_model_state_dict(peft_model, adapter_name="composed").items()}
    return state, {"r": int(new_r), "alpha": int(new_r)}


def lora_delta_weights(model) -> dict[str, torch.Tensor]:
    """Effective update B A s of every LoRA layer of a built cell's active adapter (for tests and checks)."""
    from peft.tuners.lora import LoraLayer

    out = {}
    for name, mod in model.backbone.named_modules():
        if isinstance(mod, LoraLayer):
            for adapter in mod.active_adapters:
                if adapter in mod.lora_A:
                    out[name] = mod.get_delta_weight(adapter).detach().clone()
    return out


def soup_cell(sources: list[Source], weights: list[float] | None = None, lora_combination: str = "cat"):
    """A built cell holding the soup of `sources` (one task): heads averaged too. Returns (cell, settings)."""
    n = len(sources)
    weights = weights or [1.0 / n] * n
    if adds_as_lora(sources[0]):
        state, settings = lora_combine(sources, weights, lora_combination, None)
        from peft import set_peft_model_state_dict

        cell = build(sources[0], settings)
        set_peft_model_state_dict(cell.model.backbone, state)
        heads = [{k: v for k, v in _delta_tensors(s).items() if k.startswith("head.")} for s in sources]
        load_state(cell, average(heads, [1.0 / n] * n))  # heads: plain mean, whatever the LoRA weights
        return cell, settings
    cell = build(sources[0])
    load_state(cell, average([_delta_tensors(s) for s in sources], weights))
    return cell, {}


def merge_cells(sources: list[Source], combination: str, weights: list[float] | None, density: float | None,
                seed: int = 0):
    """Multi-task merge: one shared delta from the sources (one per task), each task with its own
    head. Yields (source, cell, settings) per task."""
    n = len(sources)
    method = source_method(sources[0])
    if not method.changes_backbone:
        raise ComposeError(f"method {method.name}: the backbone is untouched, so there is nothing shared to merge")
    if adds_as_lora(sources[0]):
        weights = weights or default_weights(n, combination)
        state, settings = lora_combine(sources, weights, combination, density, seed)
        from peft import set_peft_model_state_dict

        for src in sources:
            cell = build(src, settings)
            set_peft_model_state_dict(cell.model.backbone, state)
            load_state(cell, {k: v for k, v in _delta_tensors(src).items() if k.startswith("head.")})
            yield src, cell, settings, weights
        return
    if combination != "linear":
        raise ComposeError(f"--method {combination}: only peft's LoRA merges offer it; method "
                           f"{sources[0].record['method']} merges by weighted parameter average (--method linear)")
    weights = weights or [1.0 / n] * n
    states = [_delta_tensors(s) for s in sources]
    shared = average([{k: v for k, v in s.items() if not k.startswith("head.")} for s in states], weights)
    for src, st in zip(sources, states):
        cell = build(src)
        load_state(cell, dict(shared, **{k: v for k, v in st.items() if k.startswith("head.")}))
        yield src, cell, {}, weights


def head_path(folder: Path) -> Path:
    return folder / ("head.safetensors" if (folder / "head.safetensors").is_file() else "delta.safetensors")
