"""A shared cache or results folder is data, not code (issue #28): the tokenisation cache is an .npz of
numbers read with allow_pickle=False, and a delta names its method by its registered name, so nothing
a writer of those folders puts there runs in a reader's process."""
from __future__ import annotations

import json
import logging
import pickle

import pytest
import torch
from test_methods import ARCHS, TRAIN, _toy_data, build

from bench.data import loading
from bench.data import tasks as T
from bench.data.batching import cache_path, encode, encode_cached
from bench.models.delta import write_delta_info
from bench.predict import load_delta
from bench.training.loop import train_model

TASK = {"name": "toy", "kind": "classification", "text_fields": ["sentence"], "labels": ["0", "1"],
        "label_names": ["negative", "positive"], "num_labels": 2}


class _Planted:
    """What a pickle can do when loaded: call any function (here: create a file)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@pytest.fixture(scope="module")
def tokenizer():
    built, _ = build("tiny-bert", {"_target_": "head_only", "name": "head_only"})
    return built.tokenizer


@pytest.mark.parametrize("task", ["sst2", "mrpc", "stsb"])  # single text; pairs (token types); regression
def test_cache_round_trips_exactly(task, tokenizer, tmp_path, glue_dir):
    spec = T.task_spec(_task_fields(task) | {"root": str(glue_dir)})
    rows = loading.load_split(spec, "dev")[:50]
    reg = spec.kind == "regression"
    fresh = encode(rows, tokenizer, 64, reg)
    miss, hit0 = encode_cached(rows, tokenizer, 64, reg, str(tmp_path))
    back, hit1 = encode_cached(rows, tokenizer, 64, reg, str(tmp_path))
    assert (hit0, hit1) == (False, True)
    path = cache_path(rows, tokenizer, 64, reg, str(tmp_path))
    assert path.suffix == ".npz" and path.read_bytes()[:2] == b"PK"  # a zip of .npy arrays
    for data in (miss, back):
        assert data.input_ids == fresh.input_ids and data.token_type_ids == fresh.token_type_ids
        assert data.labels == fresh.labels and data.is_regression == fresh.is_regression
        assert all(type(v) is type(w) for v, w in zip(data.labels, fresh.labels))


def _task_fields(task: str) -> dict:
    from omegaconf import OmegaConf

    from bench.config.confdir import conf_dir

    node = OmegaConf.to_container(OmegaConf.load(conf_dir() / "task" / f"{task}.yaml"), resolve=False)
    return node


def test_pickle_cache_file_is_refused_as_data(tokenizer, tmp_path, caplog):
    """A pickle where the cache file should be (planted, or any file not in the npz layout) is never
    unpickled: the split is tokenised again, a warning names the file, and the file becomes data."""
    rows = [T.Example("a fine film", None, 1), T.Example("dull", None, 0)]
    path = cache_path(rows, tokenizer, 32, False, str(tmp_path))
    path.parent.mkdir(parents=True)
    marker = tmp_path / "the_pickle_ran"
    path.write_bytes(pickle.dumps(_Planted(marker)))
    old = path.with_suffix(".pkl")  # where peft-bench before issue #28 kept the entry
    old.write_bytes(pickle.dumps(_Planted(marker)))
    with caplog.at_level(logging.WARNING, logger="bench"):
        data, hit = encode_cached(rows, tokenizer, 32, False, str(tmp_path))
    assert not marker.exists()
    assert hit is False and data.input_ids == encode(rows, tokenizer, 32, False).input_ids
    text = caplog.text
    assert f"{path}: not a data-only cache file (the file holds a pickle: refused as data, never unpickled)" in text
    assert f"{old}: a pickle from an older peft-bench; not loaded" in text
    assert path.read_bytes()[:2] == b"PK" and encode_cached(rows, tokenizer, 32, False, str(tmp_path))[1] is True
    assert not marker.exists()


def _delta(tmp_path, name="lora"):
    built, method = build("tiny-bert", {"_target_": name, "name": name, "lr": 5e-2})
    train_model(built.model, method, _toy_data(), TRAIN, torch.device("cpu"), pad_id=0)
    folder = tmp_path / name
    method.save_delta(built.model, folder)
    write_delta_info(folder, model_cfg=ARCHS["tiny-bert"], method=method, task=TASK, seed=0, max_seq_len=64,
                     eval_batch_size=16, pad_to_multiple_of=1, metrics={"accuracy": 0.5}, headline="accuracy")
    return folder, built


def test_delta_names_its_method_by_registered_name_and_old_paths_resolve_without_import(tmp_path):
    folder, built = _delta(tmp_path)
    info = json.loads((folder / "bench_delta.json").read_text())
    assert info["method"]["name"] == "lora" and "_target_" not in info["method"]
    x = torch.tensor([[2, 5, 7, 3]])
    built.model.eval()
    want = built.model(input_ids=x, attention_mask=torch.ones_like(x))
    assert torch.allclose(load_delta(folder).model(input_ids=x, attention_mask=torch.ones_like(x)), want, atol=1e-6)
    # a delta written before issue #28: `_target_` as the import path of a registered class still loads
    info["method"]["_target_"] = "bench.methods.peft_methods.LoRA"
    (folder / "bench_delta.json").write_text(json.dumps(info))
    assert torch.allclose(load_delta(folder).model(input_ids=x, attention_mask=torch.ones_like(x)), want, atol=1e-6)


def test_delta_naming_an_unregistered_import_path_is_refused_not_imported(tmp_path, monkeypatch):
    folder, _ = _delta(tmp_path)
    planted = tmp_path / "planted_module.py"
    marker = tmp_path / "the_module_ran"
    planted.write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\nclass LoRA: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    info = json.loads((folder / "bench_delta.json").read_text())
    info["method"] = {**info["method"], "_target_": "planted_module.LoRA"}
    info["method"].pop("name")
    (folder / "bench_delta.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match=r"method._target_ 'planted_module.LoRA' is not a registered method"):
        load_delta(folder)
    assert not marker.exists()
    info["method"]["_target_"], info["method"]["name"] = None, "no_such_method"
    info["method"].pop("_target_")
    (folder / "bench_delta.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match=r"method 'no_such_method' is not a registered method"):
        load_delta(folder)
