"""`train.init_from`: start a cell from the saved delta of another cell (e.g. MNLI -> RTE).

Why: the LoRA paper's scripts start MRPC, RTE and STS-B from the MNLI-adapted LoRA checkpoint
(`--lora_path`), so a preset that starts from the pretrained model is not the published setup.

`train.init_from` is either a task name (`mnli`: the newest ok record of that task in the same
sweep, with the same model, method and seed, whose delta was kept with `save_delta=true`), or a path
to a kept delta folder (`<results_dir>/<sweep>/deltas/<run_id>`) or to a record (`<run_id>.json`).
The source record is always found (the delta folder's name is its run_id) and checked: a delta of a
different method, different method settings, a different base model or a different head kind is a
ConfigError naming the option. The head is transferred only when the label spaces match (same
number of labels and same task kind); otherwise it keeps its fresh initialisation and the record
says why. What was loaded is written to the record's `train.init_from`.
"""
from __future__ import annotations

import json
from pathlib import Path

from bench.config.schema import model_setting, settings
from bench.errors import ConfigError
from bench.records.results import SourceError, kept_delta, recency, resolve_kept, sweep_dir_of
from bench.records.schema import read_record

#: method settings that may differ between source and target (they do not change the delta's shape)
FREE_SETTINGS = ("lr",)


def _load_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"train.init_from: cannot read {path}: {exc}") from None


def find_source(cfg, spec_name: str) -> tuple[dict, Path]:
    """(source record, delta folder) for `cfg.train.init_from`."""
    want = str(cfg.train.init_from)
    sweep = sweep_dir_of(cfg)
    if "/" in want or want.endswith(".json") or Path(want).is_dir():
        try:
            kept = resolve_kept(want)  # the one reading of a source path (bench.records.results)
        except SourceError as exc:
            raise ConfigError(f"train.init_from={want!r}: {exc}") from None
        return kept.record, kept.delta
    if want == spec_name:
        raise ConfigError(f"train.init_from={want!r}: a cell cannot start from its own task")
    found = []
    for rec_path in sorted(sweep.glob("*.json")) if sweep.is_dir() else []:
        try:
            rec = read_record(rec_path)  # what every reader of a sweep folder reads: records only, validated
        except ValueError:
            continue
        if (rec.get("status") == "ok" and rec.get("task") == want and rec.get("model") == str(cfg.model.name)
                and rec.get("method") == str(cfg.method.name) and int(rec.get("seed", -1)) == int(cfg.train.seed)):
            kept = kept_delta(rec, rec_path)
            if kept is not None:
                found.append((rec, kept))
    if not found:
        raise ConfigError(
            f"train.init_from={want!r}: no ok record of task {want} (model {cfg.model.name}, method {cfg.method.name}, "
            f"seed {cfg.train.seed}) with a kept delta in {sweep}; run that cell first with save_delta=true")
    # the newest, as every reader of records picks (bench.records.results)
    return max(found, key=lambda rk: recency(rk[0]))


def check_compatible(rec: dict, folder: Path, cfg, method, head_kind: str) -> None:
    """A delta of another method, other method settings, another base model or head kind is an error."""
    want = str(cfg.train.init_from)
    src_method = _load_json(folder / "method.json") if (folder / "method.json").is_file() else {}
    if src_method.get("method", rec.get("method")) != method.name:
        kind = src_method.get("method", rec.get("method"))
        raise ConfigError(f"train.init_from={want!r}: the delta is of method {kind!r}, "
                          f"this cell runs method {method.name!r}; init_from needs the same method")
    for old, new in getattr(type(method), "DEPRECATED", {}).items():  # a delta saved under a setting's old name
        if old in src_method and new not in src_method:
            src_method[new] = src_method.pop(old)
    ours = json.loads(json.dumps(method.settings(), default=str))
    diff = sorted(k for k in set(ours) | set(src_method) if k not in FREE_SETTINGS + ("method",)
                  and ours.get(k) != src_method.get(k))
    if diff:
        raise ConfigError(f"train.init_from={want!r}: method settings differ from the source's: "
                          + ", ".join(f"method.{k} {src_method.get(k)!r} (source) vs {ours.get(k)!r}" for k in diff))
    src_model = (rec.get("config") or {}).get("model") or {}
    ours_model = {"name": _plain(cfg.model.get("name")), "source": _plain(cfg.model.get("source")),
                  "config_overrides": _shape_overrides(_plain(cfg.model.get("config_overrides")))}
    theirs = {"name": src_model.get("name"), "source": src_model.get("source"),
              "config_overrides": _shape_overrides(src_model.get("config_overrides"))}
    for key, value in ours_model.items():
        if theirs[key] != value:
            raise ConfigError(f"train.init_from={want!r}: the source cell's base model differs (model.{key} "
                              f"{theirs[key]!r} vs {value!r}); init_from needs the same base model")
    src_head = model_setting(src_model, "head")
    if src_head != head_kind:
        raise ConfigError(f"train.init_from={want!r}: the source cell used model.head={src_head}, this cell "
                          f"model.head={head_kind}; use the same head")


def _shape_overrides(overrides) -> dict:
    """Config overrides that change the weights (dropout rates do not: DeBERTa's presets vary cls_dropout per task)."""
    return {k: v for k, v in dict(overrides or {}).items() if "dropout" not in k}


def _plain(v):
    from omegaconf import OmegaConf

    return OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v


def load_into(method, model, folder: Path, with_head: bool) -> None:
    """Load the saved delta; without the head, everything but the head's tensors."""
    from safetensors.torch import load_file

    if with_head:
        method.load_delta(model, folder)
        return
    if method.delta_format == "peft":
        from peft import set_peft_model_state_dict

        state = load_file(str(folder / "adapter_model.safetensors"))
        result = set_peft_model_state_dict(model.backbone, state)
        unexpected = list(getattr(result, "unexpected_keys", []) or [])
        if _prompt_learning(model.backbone):
            # peft loads a prompt's table into the prompt encoder itself, after a load_state_dict that
            # still reports it as unexpected: check that it landed instead of trusting either
            _check_prompt_loaded(model.backbone, state, folder)
            unexpected = [k for k in unexpected if k != "prompt_embeddings"]
        if unexpected:
            raise ConfigError(f"train.init_from: delta {folder} has tensors the model lacks: {unexpected[:5]}")
        return
    if not (folder / "delta.safetensors").is_file():
        raise ConfigError(f"train.init_from: {folder} holds no delta.safetensors; method {method.name} saves its own "
                          "format, which can only be loaded with the head (same label space)")
    state = {k: v for k, v in load_file(str(folder / "delta.safetensors")).items() if not k.startswith("head.")}
    missing = set(state) - set(dict(model.named_parameters()))
    if missing:
        raise ConfigError(f"train.init_from: delta {folder} has tensors the model lacks: {sorted(missing)[:5]}")
    model.load_state_dict(state, strict=False)


def _prompt_learning(peft_model) -> bool:
    config = getattr(peft_model, "active_peft_config", None)
    return bool(getattr(config, "is_prompt_learning", False))


def _check_prompt_loaded(peft_model, state: dict, folder: Path) -> None:
    import torch

    if "prompt_embeddings" not in state:
        raise ConfigError(f"train.init_from: delta {folder} is a prompt-learning delta without 'prompt_embeddings'")
    loaded = peft_model.get_prompt_embedding_to_save(peft_model.active_adapter)
    if loaded.shape != state["prompt_embeddings"].shape or not torch.equal(
            loaded.to(state["prompt_embeddings"].dtype), state["prompt_embeddings"]):
        raise ConfigError(f"train.init_from: delta {folder}'s prompt ({tuple(state['prompt_embeddings'].shape)}) "
                          f"did not load into this model's prompt encoder ({tuple(loaded.shape)})")


def apply_init_from(cfg, spec, method, model) -> dict | None:
    """Load `cfg.train.init_from` into `model` (after the method is applied); the record's entry. `cfg` is a
    whole composed config (a cell's, or a record's): its train section is read through the typed settings."""
    t = settings(cfg, "train")
    if t.init_from in (None, ""):
        return None
    if method.has_hook("initialize_from_data"):
        why = "initialises its adapter from a data pass, which would replace the loaded delta"
    elif method.rewrites_base:
        why = ("rewrites the base weights at initialisation, and its saved delta is a plain LoRA on the original "
               "base of another shape")
    else:
        why = None
    if why:
        raise ConfigError(f"train.init_from={t.init_from!r}: method {method.name} {why}; start from a "
                          "source with a method that does neither (lora, dora, ...)")
    rec, folder = find_source(cfg, spec.name)
    head_kind = getattr(model, "head_kind", "uniform")
    check_compatible(rec, folder, cfg, method, head_kind)
    src_regression = rec.get("headline_metric") in ("pearson", "spearmanr")
    same_space = (src_regression == (spec.kind == "regression")) and _head_shapes_match(folder, model, method)
    # train.init_head=never: the backbone delta only. Same-shaped heads of different tasks (SST-2's
    # negative/positive, MRPC's not/equivalent) share a shape but not a meaning; a transfer study that
    # means to measure the delta starts every head fresh (absent = auto, so older configs keep their hash).
    never = t.init_head == "never"
    load_into(method, model, folder, with_head=same_space and not never)
    why = ("head not transferred: train.init_head=never; the head starts fresh" if never else
           "same label space: head transferred" if same_space else
           f"head not transferred: label spaces differ ({rec.get('task')} -> {spec.name}); the head starts fresh")
    same_space = same_space and not never
    return {"from": str(t.init_from), "run_id": rec.get("run_id"), "task": rec.get("task"),
            "delta": str(folder), "head_transferred": same_space, "why": why}


def _head_shapes_match(folder: Path, model, method) -> bool:
    """Whether the saved head has the shapes of this cell's head (number of labels)."""
    from safetensors import safe_open

    ours = {k: tuple(v.shape) for k, v in model.head.state_dict().items()}
    if (folder / "head.safetensors").is_file():
        with safe_open(str(folder / "head.safetensors"), "pt") as f:
            theirs = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 - safe_open is not iterable
    elif (folder / "delta.safetensors").is_file():
        with safe_open(str(folder / "delta.safetensors"), "pt") as f:
            theirs = {k[5:]: tuple(f.get_slice(k).get_shape()) for k in f.keys()  # noqa: SIM118
                      if k.startswith("head.")}
    else:
        return False
    return ours == theirs
