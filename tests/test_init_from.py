"""`train.init_from`: a cell starts from the exact weights another cell saved (real tiny cells, run
in-process), the head only where the label spaces match, and a delta of another method or base
model is refused with an error naming the option."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bench.data import tasks as T
from bench.errors import ConfigError
from bench.models.build import build_cell, method_from_config
from bench.params import compose_config
from bench.recipe.init_from import apply_init_from
from bench.sweep.execute import execute

COMMON = ["model=tiny_bert", "method=lora", "train=quick", "train.max_train_samples=16", "train.max_eval_samples=16",
          "train.epochs=1", "isolate=false", "sweep_name=init", "train.threads=1"]


def cfg_for(results: Path, glue_dir: Path, *extra: str):
    return compose_config(COMMON + [f"results_dir={results}", f"data.glue_dir={glue_dir}", *extra])


@pytest.fixture(scope="module")
def sources(tmp_path_factory, glue_dir):
    """Two real source cells with kept deltas: STS-B (regression) and MRPC (2 labels)."""
    results = tmp_path_factory.mktemp("results")
    out = {}
    for task in ("stsb", "mrpc"):
        ov = [f"task={task}", "save_delta=true"]
        status, path = execute(cfg_for(results, glue_dir, *ov), COMMON + ov)
        assert status == "ok", path
        out[task] = json.loads(Path(path).read_text())
    return results, out


def build_target(cfg):
    """The build step of a cell (bench.recipe.finetune.run_cell), up to init_from."""
    spec = T.task_spec(cfg.task)
    method = method_from_config(cfg)
    built = build_cell(cfg.model, method, spec.num_labels, int(cfg.train.seed), int(cfg.train.max_seq_len))
    fresh_head = {k: v.clone() for k, v in built.model.head.state_dict().items()}
    info = apply_init_from(cfg, spec, method, built.model)
    return built.model, info, fresh_head


def saved(rec: dict) -> tuple[dict, dict]:
    folder = Path(rec["storage"]["kept_at"])
    return load_file(str(folder / "adapter_model.safetensors")), load_file(str(folder / "head.safetensors"))


def check_adapter_equal(model, adapter: dict) -> None:
    from peft import get_peft_model_state_dict

    now = get_peft_model_state_dict(model.backbone)
    assert set(now) == set(adapter) and adapter
    # lora_B starts at zero: a non-zero saved B proves these are trained weights, not a fresh init
    assert any(v.abs().sum() > 0 for k, v in adapter.items() if "lora_B" in k)
    for k, v in adapter.items():
        assert torch.equal(now[k], v), k


def test_starts_from_saved_weights_and_transfers_head_only_for_same_label_space(sources, glue_dir):
    results, recs = sources
    # MRPC (2 labels) -> RTE (2 labels): adapter and head exactly as saved
    model, info, _ = build_target(cfg_for(results, glue_dir, "task=rte", "train.init_from=mrpc"))
    adapter, head = saved(recs["mrpc"])
    check_adapter_equal(model, adapter)
    for k, v in model.head.state_dict().items():
        assert torch.equal(v, head[k]), k
    assert info["run_id"] == recs["mrpc"]["run_id"] and info["head_transferred"]
    # STS-B (regression) -> RTE: adapter as saved, head left at its fresh initialisation, and the record says why
    model, info, fresh = build_target(cfg_for(results, glue_dir, "task=rte", "train.init_from=stsb"))
    check_adapter_equal(model, saved(recs["stsb"])[0])
    for k, v in model.head.state_dict().items():
        assert torch.equal(v, fresh[k]), k
    assert not info["head_transferred"] and "not transferred" in info["why"]
    assert info["run_id"] == recs["stsb"]["run_id"]


def test_a_run_records_its_source(sources, glue_dir):
    results, recs = sources
    ov = ["task=rte", "train.init_from=stsb"]
    status, path = execute(cfg_for(results, glue_dir, *ov), COMMON + ov)
    rec = json.loads(Path(path).read_text())
    assert status == "ok", rec.get("error")
    assert rec["train"]["init_from"]["run_id"] == recs["stsb"]["run_id"]
    assert rec["train"]["init_from"]["head_transferred"] is False


def test_other_method_base_model_or_missing_source_is_a_clear_error(sources, glue_dir):
    results, recs = sources
    folder = recs["mrpc"]["storage"]["kept_at"]
    with pytest.raises(ConfigError, match="train.init_from=.*method"):
        build_target(cfg_for(results, glue_dir, "task=rte", f"train.init_from={folder}", "method=ia3"))
    with pytest.raises(ConfigError, match="train.init_from=.*base model"):
        build_target(cfg_for(results, glue_dir, "task=rte", f"train.init_from={folder}", "model=tiny_roberta"))
    with pytest.raises(ConfigError, match="method settings differ"):
        build_target(cfg_for(results, glue_dir, "task=rte", f"train.init_from={folder}", "method.r=4"))
    with pytest.raises(ConfigError, match="no ok record of task cola"):
        build_target(cfg_for(results, glue_dir, "task=rte", "train.init_from=cola"))


def test_every_reader_of_a_source_path_accepts_and_refuses_the_same(sources, tmp_path, glue_dir):
    """train.init_from, bench.compose and method.sources read a source path with one resolver
    (bench.records.results.resolve_kept): the record file and its delta folder name the same source,
    and a missing file, a failed record or a record without a kept delta is refused by all three."""
    from bench.compose.core import ComposeError, load_source
    from bench.methods.composed import read_source
    from bench.records.results import SourceError, resolve_kept

    results, recs = sources
    rec = recs["mrpc"]
    rec_path = results / "init" / f"{rec['run_id']}.json"
    folder = Path(rec["storage"]["kept_at"])
    a, b = resolve_kept(rec_path), resolve_kept(folder)
    assert (a.path, a.delta) == (b.path, b.delta) == (rec_path.resolve(), folder.resolve())
    assert a.settings["method"] == "lora" and a.record["run_id"] == rec["run_id"]
    assert load_source(folder).path == read_source(str(rec_path), ("lora",), "method.sources").path == a.path

    failed = tmp_path / "failed.json"
    failed.write_text(json.dumps({**rec, "status": "failed", "run_id": "failed"}))
    no_delta = tmp_path / "nodelta.json"
    no_delta.write_text(json.dumps({**rec, "storage": {}, "run_id": "nodelta"}))
    for bad, why in ((tmp_path / "gone.json", "no such record file"), (failed, "status 'failed'"),
                     (no_delta, "kept no delta"), (tmp_path / "nowhere", "no such delta folder or record file")):
        with pytest.raises(SourceError, match=why):
            resolve_kept(bad)
        with pytest.raises(ComposeError, match=why):
            load_source(bad)
        with pytest.raises(ConfigError, match=f"method.sources: .*{why}"):
            read_source(str(bad), ("lora",), "method.sources")
        cfg = cfg_for(results, glue_dir, "task=rte", f"train.init_from={bad}")
        with pytest.raises(ConfigError, match=f"train.init_from=.*{why}"):
            build_target(cfg)


def test_a_source_spelled_another_way_is_the_same_cell(sources, glue_dir, monkeypatch):
    """The source's identity is its run_id, not its path's spelling: a finished cell started from the
    record file is found (skipped on resume) when the same source is named by its delta folder, by a
    ./-relative path, or from a copy of the results in another folder."""
    results, recs = sources
    rec = recs["mrpc"]
    rec_path = results / "init" / f"{rec['run_id']}.json"
    first = ["task=rte", f"train.init_from={rec_path}"]
    status, path = execute(cfg_for(results, glue_dir, *first), COMMON + first)
    assert status == "ok"
    monkeypatch.chdir(results)
    for spelling in (f"init/deltas/{rec['run_id']}", f"./init/{rec['run_id']}.json"):
        ov = ["task=rte", f"train.init_from={spelling}"]
        again, same = execute(cfg_for(results, glue_dir, *ov), COMMON + ov)
        assert (again, same) == ("skipped", path), spelling
    other = ["task=rte", "train.init_from=init/deltas/another_run"]
    assert execute(cfg_for(results, glue_dir, *other), COMMON + other)[0] == "failed"  # a different source: its own cell


def test_a_prompt_transfers_without_its_head(tmp_path, glue_dir):
    """Prompt tuning's table loads into the target's prompt encoder (peft loads it there itself and
    still reports the key as unexpected: #29's transfer arm was refused for that)."""
    ov = ["method=prompt_tuning", "task=stsb", "save_delta=true"]
    status, path = execute(cfg_for(tmp_path, glue_dir, *ov), COMMON + ov)
    assert status == "ok", path
    rec = json.loads(Path(path).read_text())
    saved_prompt = saved(rec)[0]["prompt_embeddings"]
    cfg = cfg_for(tmp_path, glue_dir, "method=prompt_tuning", "task=mrpc", f"train.init_from={path}",
                  "++train.init_head=never")
    model, info, fresh = build_target(cfg)
    now = model.backbone.get_prompt_embedding_to_save(model.backbone.active_adapter)
    assert saved_prompt.abs().sum() > 0 and torch.equal(now, saved_prompt)
    assert not info["head_transferred"]
    for k, v in model.head.state_dict().items():
        assert torch.equal(v, fresh[k]), k
