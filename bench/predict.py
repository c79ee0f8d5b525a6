"""Use a saved delta: rebuild the finetuned model on its backbone and predict.

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

from bench.models.delta import FORMAT, INFO_FILE, method_from_delta


class Predictor:
    """A finetuned model rebuilt from a delta folder, with its tokenizer and label names."""

    def __init__(self, folder: str | Path, device: str = "cpu", base: str | None = None):
        from omegaconf import OmegaConf

        from bench.models.build import build_cell

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
        model_cfg = OmegaConf.create(base_model(info["model"], base, path))
        built = build_cell(model_cfg, method, int(self.task["num_labels"]), int(info["seed"]),
                           int(info["max_seq_len"]))
        method.load_delta(built.model, folder)
        self.model, self.tokenizer, self.method = built.model.to(self.device).eval(), built.tokenizer, method

    def encode(self, texts: list[str], texts_b: list[str] | None = None):
        from bench.data.batching import encode
        from bench.data.tasks import Example

        if texts_b is not None and len(texts_b) != len(texts):
            raise ValueError(f"{len(texts)} first texts but {len(texts_b)} second texts")
        dummy = 0.0 if self.task["kind"] == "regression" else 0
        ex = [Example(a, texts_b[i] if texts_b is not None else None, dummy) for i, a in enumerate(texts)]
        return encode(ex, self.tokenizer, int(self.info["max_seq_len"]), self.task["kind"] == "regression")

    def predict_ids(self, data, batch_size: int | None = None) -> list:
        """Class indices (classification) or scores (regression) for already-encoded data, batched as
        the run's evaluation was (same batch size and padding), so predictions match the record's."""
        from bench.training.forward import predict

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


def base_model(model: dict, base: str | None, where) -> dict:
    """The delta's model config, its source (and a tokenizer recorded as the same folder) replaced by `base`
    when given. A base that was a local folder is not recorded in the delta (bench.models.delta.public_source:
    paths are machine-specific), so such a delta needs `base`; refused, saying so, without it."""
    from bench.models.delta import LOCAL_FOLDER

    model = dict(model)
    if base is not None:
        for key in ("source", "tokenizer"):
            if key == "source" or (model.get(key) and LOCAL_FOLDER in str(model[key])):
                model[key] = str(base)
    elif LOCAL_FOLDER in str(model.get("source", "")):
        raise ValueError(f"{where}: the base model was a local folder ({model['source']}): give that folder with "
                         "--base FOLDER (python -m bench.predict) or load_delta(folder, base=FOLDER)")
    return model


def load_delta(folder: str | Path, device: str = "cpu", base: str | None = None) -> Predictor:
    """A delta folder as a classifier; `base`: the base model's folder or hub id, for a delta trained on a
    local folder (whose path the delta does not record)."""
    return Predictor(folder, device, base)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.predict", description="Predict with a saved peft-bench delta.")
    ap.add_argument("delta_dir")
    ap.add_argument("--text", action="append", help="an input text (repeat for several)")
    ap.add_argument("--text-b", action="append", help="the second text of a pair (sentence-pair tasks), one per --text")
    ap.add_argument("--file", help="one input per line; a tab separates the two texts of a pair")
    ap.add_argument("--json", action="store_true", help="print one JSON list instead of one line per input")
    ap.add_argument("--base", help="the base model's folder (or hub id), for a delta trained on a local folder")
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
        clf = load_delta(args.delta_dir, base=args.base)
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
