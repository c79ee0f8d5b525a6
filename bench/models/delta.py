"""A saved delta folder's description: `bench_delta.json` (everything needed to rebuild the finetuned
model: model config node, the method by its registered name and settings, the task's labels, the
tokenisation settings, the seed), the model card, and the method it names, built from the registry.

Why in the models layer: the recipe writes it after training, composition writes it for a merged
model, and `bench.predict` reads it; all three rebuild or describe a model, and none should depend
on another's front end."""
from __future__ import annotations

import json
import os
from pathlib import Path

from bench.config.schema import model_setting

INFO_FILE = "bench_delta.json"
FORMAT = "peft-bench-delta"


#: what a card says instead of a local folder's path (bench.predict asks for `--base` when it reads it)
LOCAL_FOLDER = "(a local folder; path not recorded)"


def public_source(source: str, name: str) -> str:
    """A model source fit for a card: config names (`bundled:minilm`, `local:tiny-bert`) and hub ids
    as they are; a local absolute folder is replaced by the config name (paths are machine-specific)."""
    if os.path.isabs(source) or source.startswith(("./", "../", "~")):
        return f"{name} {LOCAL_FOLDER}"
    return source


def write_delta_info(folder, *, model_cfg: dict, method, task: dict, seed: int, max_seq_len: int,
                     eval_batch_size: int, pad_to_multiple_of: int, run_id: str | None = None,
                     metrics: dict | None = None, headline: str | None = None, method_label: str | None = None,
                     inference: dict | None = None) -> Path:
    """Write `bench_delta.json` and the model card `README.md` into a delta folder that the method's
    `save_delta` already filled (so neither counts in the record's `storage.bytes`)."""
    folder = Path(folder)
    model_cfg = dict(model_cfg)
    for key in ("source", "tokenizer"):
        if model_cfg.get(key):
            model_cfg[key] = public_source(str(model_cfg[key]), str(model_cfg.get("name", "model")))
    info = {
        "format": FORMAT, "version": 1, "run_id": run_id, "method_label": method_label,
        # the registered name only (bench.methods.REGISTRY), never an import path: loading a delta
        # must not import a module that a file in a (possibly shared) results folder names
        "method": {**method.settings(), "name": method.name},
        "model": model_cfg, "task": task, "seed": int(seed), "max_seq_len": int(max_seq_len),
        "eval_batch_size": int(eval_batch_size), "pad_to_multiple_of": int(pad_to_multiple_of),
        "headline_metric": headline, "metrics": metrics or {},
    }
    (folder / INFO_FILE).write_text(json.dumps(info, indent=2, default=str) + "\n")
    (folder / "README.md").write_text(model_card(info, inference))
    return folder / INFO_FILE


def model_card(info: dict, inference: dict | None) -> str:
    m, t = info["model"], info["task"]
    settings = {k: v for k, v in info["method"].items() if k not in ("_target_", "name")}
    built = "pretrained" if model_setting(m, "pretrained") else f"random weights built with seed {info['seed']}"
    lines = [f"# {info.get('method_label') or info['method']['name']} on {t['name']}", "",
             (f"A peft-bench delta (run `{info.get('run_id')}`): what `{info['method']['name']}` trained, "
              "to be loaded onto its base model."),
             "", "| | |", "|---|---|",
             f"| base model | `{m.get('source')}` ({built}; pooling {m.get('pooling', 'mean')}) |",
             f"| tokenizer | `{m.get('tokenizer') or m.get('source')}` (max {info['max_seq_len']} tokens) |",
             (f"| task | {t['name']} ({t['kind']}; text fields {', '.join(t['text_fields'])}; "
              f"labels {', '.join(t.get('label_names') or t.get('labels') or ['score'])}) |"),
             f"| method | `{info['method']['name']}` (registered name) |"]
    lines += [f"| method.{k} | `{v}` |" for k, v in settings.items()]
    lines += ["", "## Metrics (dev split, as recorded; 0-1 scale)", ""]
    lines += [f"- {k}: {v:.4f}{' (headline)' if k == info.get('headline_metric') else ''}"
              for k, v in info["metrics"].items()] or ["- (none recorded)"]
    if inference and inference.get("overhead", {}).get("method"):
        o = inference["overhead"]
        lines += ["", "## Inference cost (measured after training; ratio of medians vs the untouched backbone)", "",
                  (f"- batch 1, mean over lengths: {o['method']['batch1_mean']:.3f}x; "
                   f"batch {inference['throughput']['batch_size']}: {o['method']['batched']:.3f}x"),
                  f"- merge: {inference['merge']['status']}"
                  + (f" (merged: batch 1 {o['merged']['batch1_mean']:.3f}x)" if o.get("merged") else "")
                  + (f"; {inference['merge'].get('why')}" if inference["merge"].get("why") else ""),
                  (f"- added length: {inference['added_length']['input_tokens']} input tokens, "
                   f"{inference['added_length']['key_value_tokens']} key/value positions")]
    lines += ["", "## Use", "", "```bash", "python -m bench.predict THIS_FOLDER --text \"your sentence\"", "```", "",
              "```python", "from bench.predict import load_delta", "clf = load_delta('THIS_FOLDER')",
              "clf.predict(['your sentence'])", "```", ""]
    return "\n".join(lines)


def method_from_delta(node: dict, where: str):
    """The method of a delta's `bench_delta.json` `method` node, built by its registered name.

    A delta folder is data: whoever can write a shared results folder must not be able to make
    every reader import a module of their choosing. So the class comes from bench.methods.REGISTRY
    only (built-ins, and plugins the user has imported). A delta that records `_target_` as an import
    path (the older format) is accepted when it is the path of a registered class (compared as text,
    nothing imported), else refused with what to do."""
    from bench.methods import REGISTRY, build_method

    node = dict(node)
    target = node.pop("_target_", None)
    name = node.get("name")
    known = {f"{c.__module__}.{c.__qualname__}": n for n, c in REGISTRY.items()}
    from bench.methods import PeftTuner

    if name and node.get("peft_type") and issubclass(REGISTRY.get(str(name), PeftTuner), PeftTuner):
        # a generic peft tuner (bench/methods/peft_tuner.py): the one generic class, named by the delta;
        # the peft type and fields are data, checked by peft's own config class
        return build_method({**node, "_target_": PeftTuner.name, "name": str(name)}, where=where)
    if target is not None and str(target) not in REGISTRY:
        if str(target) not in known:
            raise ValueError(f"{where}: method._target_ {target!r} is not a registered method; a delta names its "
                             f"method by its registered name ({', '.join(sorted(REGISTRY))}) and peft-bench does not "
                             "import modules a delta folder names. A plugin's method: import its module first "
                             "(it registers itself), then load the delta.")
        name = name or known[str(target)]
    elif target is not None:
        name = name or str(target)
    if not name or str(name) not in REGISTRY:
        raise ValueError(f"{where}: method {name!r} is not a registered method (registered: "
                         f"{', '.join(sorted(REGISTRY))}); a plugin's method: import its module first")
    return build_method({**node, "_target_": str(name), "name": str(name)}, where=where)


def task_info(spec) -> dict:
    """The task facts a delta needs (no data paths)."""
    return {"name": spec.name, "kind": spec.kind, "text_fields": list(spec.text_fields),
            "labels": list(spec.labels) if spec.labels else None,
            "label_names": list(spec.label_names) if spec.label_names else None, "num_labels": spec.num_labels}
