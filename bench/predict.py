"""Use a saved delta: rebuild the finetuned model on its backbone and predict (issue #14).

A delta folder (`save_delta=true` keeps it under `<results_dir>/<sweep>/deltas/<run_id>`) holds what
the method saved (`delta.safetensors` or peft's adapter folder + `head.safetensors`, `method.json`)
plus, written here, `bench_delta.json` (everything needed to rebuild: the model config node, the
method's class and settings, the task's labels and text fields, tokenisation settings, the seed that
built any random-weight backbone) and `README.md`, a model card with the record's metrics.

    from bench.predict import load_delta
    clf = load_delta("results/adhoc/deltas/<run_id>")
    clf.predict(["a gripping, beautifully shot film"])      # -> ['positive']

CLI: `python -m bench.predict DELTA_DIR --text "..." [--text-b "..."] | --file FILE [--json]`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

INFO_FILE = "bench_delta.json"
FORMAT = "peft-bench-delta"


def public_source(source: str, name: str) -> str:
    """A model source fit for a card: config names (`bundled:minilm`, `local:tiny-bert`) and hub ids
    as they are; a local absolute folder is replaced by the config name (paths are machine-specific)."""
    if os.path.isabs(source) or source.startswith(("./", "../", "~")):
        return f"{name} (a local folder; path not recorded)"
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
    lines = [f"# {info.get('method_label') or info['method']['name']} on {t['name']}", "",
             f"A peft-bench delta (run `{info.get('run_id')}`): what `{info['method']['name']}` trained, to be loaded onto its base model.",
             "", "| | |", "|---|---|",
             f"| base model | `{m.get('source')}` ({'pretrained' if m.get('pretrained', True) else 'random weights built with seed ' + str(info['seed'])}; pooling {m.get('pooling', 'mean')}) |",
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
    only (built-ins, and plugins the user has imported). Deltas written before issue #28 record
    `_target_` as an import path: it is accepted when it is the path of a registered class (compared
    as text, nothing imported), else refused with what to do."""
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


class Predictor:
    """A finetuned model rebuilt from a delta folder, with its tokenizer and label names."""

    def __init__(self, folder: str | Path, device: str = "cpu"):
        from omegaconf import OmegaConf

        from bench.cell import build_cell

        folder = Path(folder)
        path = folder / INFO_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{folder}: no {INFO_FILE}; is this a delta folder kept with save_delta=true "
                                    "by this version of peft-bench?")
        self.info = info = json.loads(path.read_text())
        if info.get("format") != FORMAT:
            raise ValueError(f"{path}: not a peft-bench delta description (format {info.get('format')!r})")
        self.task = info["task"]
        self.device = torch.device(device)
        method = method_from_delta(info["method"], where=str(path))
        built = build_cell(OmegaConf.create(info["model"]), method, int(self.task["num_labels"]), int(info["seed"]),
                           int(info["max_seq_len"]))
        method.load_delta(built.model, folder)
        self.model, self.tokenizer, self.method = built.model.to(self.device).eval(), built.tokenizer, method

    def encode(self, texts: list[str], texts_b: list[str] | None = None):
        from bench.batching import encode
        from bench.tasks import Example

        if texts_b is not None and len(texts_b) != len(texts):
            raise ValueError(f"{len(texts)} first texts but {len(texts_b)} second texts")
        dummy = 0.0 if self.task["kind"] == "regression" else 0
        ex = [Example(a, texts_b[i] if texts_b is not None else None, dummy) for i, a in enumerate(texts)]
        return encode(ex, self.tokenizer, int(self.info["max_seq_len"]), self.task["kind"] == "regression")

    def predict_ids(self, data, batch_size: int | None = None) -> list:
        """Class indices (classification) or scores (regression) for already-encoded data, batched as
        the run's evaluation was (same batch size and padding), so predictions match the record's."""
        from bench.train import predict

        tok = self.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        return predict(self.model, data, batch_size or int(self.info["eval_batch_size"]), pad, self.device, "fp32",
                       self.method.uses_token_type_ids, int(self.info.get("pad_to_multiple_of", 1)))

    def predict(self, texts: list[str], texts_b: list[str] | None = None) -> list:
        """Label names (classification) or scores (regression)."""
        with torch.no_grad():
            out = self.predict_ids(self.encode(list(texts), texts_b))
        if self.task["kind"] == "regression":
            return [float(v) for v in out]
        names = self.task.get("label_names") or self.task.get("labels")
        return [names[i] for i in out]


def load_delta(folder: str | Path, device: str = "cpu") -> Predictor:
    return Predictor(folder, device)


def task_info(spec) -> dict:
    """The task facts a delta needs (no data paths)."""
    return {"name": spec.name, "kind": spec.kind, "text_fields": list(spec.text_fields),
            "labels": list(spec.labels) if spec.labels else None,
            "label_names": list(spec.label_names) if spec.label_names else None, "num_labels": spec.num_labels}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.predict", description="Predict with a saved peft-bench delta.")
    ap.add_argument("delta_dir")
    ap.add_argument("--text", action="append", help="an input text (repeat for several)")
    ap.add_argument("--text-b", action="append", help="the second text of a pair (sentence-pair tasks), one per --text")
    ap.add_argument("--file", help="one input per line; a tab separates the two texts of a pair")
    ap.add_argument("--json", action="store_true", help="print one JSON list instead of one line per input")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers

    transformers.logging.set_verbosity_error()  # keep stdout to the predictions
    transformers.logging.disable_progress_bar()
    texts, texts_b = list(args.text or []), args.text_b
    if args.file:
        try:
            rows = [ln.rstrip("\n").split("\t", 1) for ln in Path(args.file).read_text().splitlines() if ln.strip()]
        except OSError as exc:
            print(f"--file {args.file}: cannot read it ({exc})", file=sys.stderr)
            return 2
        texts += [r[0] for r in rows]
        if any(len(r) == 2 for r in rows):
            texts_b = (texts_b or []) + [r[1] if len(r) == 2 else "" for r in rows]
    if not texts:
        print("give --text TEXT (repeatable) or --file FILE", file=sys.stderr)
        return 2
    try:
        clf = load_delta(args.delta_dir)
        preds = clf.predict(texts, texts_b)
    except (FileNotFoundError, ValueError) as exc:
        print(f"{exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(preds))
    else:
        for t, p in zip(texts, preds):
            print(f"{p}\t{t}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
