"""Learned composition (issue #29) on real tiny cells: AdapterFusion, ATTEMPT and the LoRA mixture.

- forced onto one source (`force_source=i`) the combination *is* that source's model: logits within
  float tolerance of the source delta reloaded through bench.predict;
- gradients reach only the combination parameters and the head (the sources and the backbone get none);
- a learned cell run through the CLI writes a record whose `composed_from` names the source records,
  and its kept delta reloads through `python -m bench.predict` / `load_delta` with the record's
  predictions, logits equal to the trained model's.

tiny_bert has random weights built from the seed, so sources and targets share seed 0.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch
from clitools import records_in, run_bench, run_python
from omegaconf import OmegaConf

from bench.data.batching import collate, encode
from bench.data.loading import load_split
from bench.data.tasks import task_spec
from bench.errors import ConfigError
from bench.methods import build_method
from bench.models.build import build_cell
from bench.predict import load_delta

pytestmark = pytest.mark.heavy  # scheduled first (tests/conftest.py): its sweeps take tens of seconds

CELL = ["model=tiny_bert", "train=quick", "train.threads=1", "inference.enabled=false", "train.max_train_samples=16",
        "train.max_eval_samples=16"]
FAMILIES = {"adapter_fusion": "adapter", "attempt": "prompt_tuning", "lora_moe": "lora"}
ATOL = 1e-5


@pytest.fixture(scope="module")
def sources(tmp_path_factory, glue_dir):
    """Kept deltas of adapter, prompt tuning and LoRA on SST-2 and MRPC (seed 0)."""
    results = tmp_path_factory.mktemp("learned")
    p = run_bench(["-m", *CELL, "save_delta=true", "sweep_name=src", "task=sst2,mrpc",
                   "method=adapter,prompt_tuning,lora"], glue_dir, results, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    recs = {(r["method"], r["task"]): r for r in records_in(results / "src")}
    assert len(recs) == 6 and all(r["status"] == "ok" for r in recs.values())
    return results, recs


def _paths(recs, method):
    return [recs[(method, t)]["_path"] for t in ("sst2", "mrpc")]


def _cell(recs, name, num_labels=2, **settings):
    cfg = OmegaConf.load(Path(__file__).resolve().parents[1] / "conf" / "method" / f"{name}.yaml")
    node = dict(OmegaConf.to_container(cfg), sources=_paths(recs, FAMILIES[name]), **settings)
    model_cfg = OmegaConf.load(Path(__file__).resolve().parents[1] / "conf" / "model" / "tiny_bert.yaml")
    return build_cell(model_cfg, build_method(node), num_labels, 0, 128)


def _batch(cell, rec, n=8):
    spec = task_spec(OmegaConf.create(rec["config"]["task"]))
    data = encode(load_split(spec, "dev")[:n], cell.tokenizer, 128, False)
    batch = collate(data, list(range(n)), cell.tokenizer.pad_token_id, 1)
    keys = ["input_ids", "attention_mask"] + (["token_type_ids"] if cell.method.uses_token_type_ids else [])
    return {k: batch[k] for k in keys if k in batch}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_forced_onto_one_source_is_that_source(sources, glue_dir, name):
    _results, recs = sources
    for i, task in enumerate(("sst2", "mrpc")):
        src = recs[(FAMILIES[name], task)]
        cell = _cell(recs, name, force_source=i)
        from safetensors.torch import load_file

        delta = Path(src["storage"]["kept_at"])
        head = load_file(str(delta / ("head.safetensors" if (delta / "head.safetensors").is_file() else
                                      "delta.safetensors")))
        cell.model.head.load_state_dict({k.removeprefix("head."): v for k, v in head.items()
                                         if not k.startswith("backbone.")})
        ref = load_delta(delta)
        batch = _batch(cell, src)
        with torch.no_grad():
            got = cell.model.eval()(**batch)
            want = ref.model(**{k: v for k, v in batch.items() if k != "token_type_ids"
                                or ref.method.uses_token_type_ids})
        assert torch.allclose(got, want, atol=ATOL, rtol=1e-5), (name, task, (got - want).abs().max())
        other = _cell(recs, name, force_source=1 - i)
        other.model.head.load_state_dict(cell.model.head.state_dict())
        with torch.no_grad():
            assert not torch.allclose(other.model.eval()(**batch), want, atol=ATOL)  # the choice matters


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_gradients_reach_only_the_combination_and_the_head(sources, name):
    _results, recs = sources
    cell = _cell(recs, name)
    model = cell.model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("head.") or COMBINATION[name](n) for n in trainable), sorted(trainable)
    model(**_batch(cell, recs[(FAMILIES[name], 'sst2')])).logsumexp(-1).sum().backward()
    got = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert got <= trainable, sorted(got - trainable)[:5]
    assert any(not n.startswith("head.") for n in got), "no gradient reached the combination parameters"
    frozen = [n for n in before if n not in trainable]
    assert frozen and all(dict(model.named_parameters())[n].grad is None for n in frozen)
    assert cell.params["trainable"] == sum(p.numel() for n, p in model.named_parameters() if n in trainable)


#: each combination's own parameters, by name (everything else is the backbone or a frozen source)
COMBINATION = {
    "adapter_fusion": lambda n: ".adapter.query." in n or ".adapter.key." in n,
    "attempt": lambda n: n == "backbone.target" or n.startswith(("backbone.down.", "backbone.up.", "backbone.norm.")),
    "lora_moe": lambda n: n.startswith("backbone.lora_experts.") and ".router." in n,
}


def test_uniform_gate_trains_only_the_head_on_cached_features(sources):
    _results, recs = sources
    for name in FAMILIES:
        cell = _cell(recs, name, gate="uniform")
        assert cell.method.trains_on_cached_features
        assert {n.split(".")[0] for n, p in cell.model.named_parameters() if p.requires_grad} == {"head"}


def test_bad_sources_are_refused_with_the_file_named(sources, tmp_path):
    _results, recs = sources
    with pytest.raises(ConfigError, match="no such record file"):
        build_cell(OmegaConf.load(Path(__file__).resolve().parents[1] / "conf" / "model" / "tiny_bert.yaml"),
                   build_method({"name": "lora_moe", "lr": 1e-3, "sources": [str(tmp_path / "gone.json")]}), 2, 0, 128)
    with pytest.raises(ConfigError, match="takes lora deltas"):
        _cell({("lora", t): recs[("adapter", t)] for t in ("sst2", "mrpc")}, "lora_moe")


@pytest.mark.parametrize("name", ["lora_moe", "attempt", "adapter_fusion"])
def test_learned_record_reloads_and_predicts_the_same(sources, glue_dir, name):
    """lora_moe's cell runs through `python -m bench` (and its delta through `python -m bench.predict`);
    the other two run the same cell in this process through the sweep's executor (isolate=false), as
    tests/test_init_from.py does: what differs between the families is the delta, not the command."""
    results, recs = sources
    srcs = ",".join(_paths(recs, FAMILIES[name]))
    overrides = [*CELL, "save_delta=true", "sweep_name=tgt", "task=rte", f"method={name}", f"method.sources=[{srcs}]"]
    if name == "lora_moe":
        p = run_bench(overrides, glue_dir, results, timeout=600)
        assert p.returncode == 0, p.stderr[-3000:]
    else:
        from bench.params import compose_config
        from bench.sweep.execute import execute

        overrides.append("isolate=false")
        cfg = compose_config([*overrides, f"results_dir={results}", f"data.glue_dir={glue_dir}"])
        assert execute(cfg, overrides)[0] == "ok"
    rec = next(r for r in records_in(results / "tgt") if r["method"] == name)
    assert rec["status"] == "ok" and rec["composition"]["op"] == "learned"
    assert rec["inference"] is None  # CELL has inference.enabled=false: the phase is skipped, the record says so
    assert [Path(c["record"]).is_file() for c in rec["composed_from"]] == [True, True]
    assert {c["task"] for c in rec["composed_from"]} == {"sst2", "mrpc"}
    assert rec["params"]["trainable"] < rec["params"]["total"] / 10
    kept = Path(rec["storage"]["kept_at"])
    with gzip.open(Path(rec["_path"]).parent / rec["predictions"]) as fh:
        stored = json.loads(fh.read())["splits"]["dev"]
    clf = load_delta(kept)
    spec = task_spec(OmegaConf.create(rec["config"]["task"]))
    rows = load_split(spec, "dev")
    data = encode([rows[i] for i in stored["ids"]], clf.tokenizer, 128, False)
    with torch.no_grad():
        assert clf.predict_ids(data) == stored["predictions"]
    if name != "lora_moe":  # the CLI is load_delta + predict for every method (checked above): one process suffices
        return
    cli = run_python(["-m", "bench.predict", kept, "--text", rows[0].text_a, "--text-b", rows[0].text_b, "--json"],
                     glue_dir)
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert json.loads(cli.stdout) == clf.predict([rows[0].text_a], [rows[0].text_b])


@pytest.mark.slow  # 36 s of five CLI arms: the suite's budget (docs/decisions.md)
def test_report_table_has_every_arm_and_picks_the_transfer_on_selection(sources, glue_dir):
    """scratch, two transfers, the static merge and the learned LoRA mixture on one target: one row,
    the best transfer is the source with the higher selection score, three Holm-adjusted verdicts."""
    from bench.report.compose_learned import learned_table, markdown

    results, recs = sources
    paths = _paths(recs, "lora")
    base = [*CELL, "sweep_name=arms", "task=rte", "save_delta=false"]
    runs = [["method=lora", "label=lora_n16"], ["method=lora_moe", f"method.sources=[{','.join(paths)}]", "label=moe"],
            ["method=lora_moe", f"method.sources=[{','.join(paths)}]", "method.gate=uniform", "label=moe_uniform"]]
    runs += [["method=lora", f"train.init_from={p}", "++train.init_head=never", f"label=lora_from_{t}"]
             for p, t in zip(paths, ("sst2", "mrpc"))]
    for extra in runs:
        p = run_bench([*base, *extra], glue_dir, results, timeout=600)
        assert p.returncode == 0, (extra, p.stderr[-2000:])
    got = records_in(results / "arms")
    frame = learned_table(got, 200, [])
    assert len(frame) == 1
    row = frame.iloc[0]
    assert (row["target"], row["K"], row["family"], row["combination"]) == ("rte", 16, "lora", "lora_moe")
    transfers = [r for r in got if (r.get("train") or {}).get("init_from")]
    from bench.report.compose_learned import _selection

    best = max(sorted(transfers, key=lambda r: r["train"]["init_from"]["task"]), key=_selection)  # ties: first task
    assert row["transfer"] == best["metrics"][best["headline_metric"]]
    assert row["transfer_sources"] == f"s0:{best['train']['init_from']['task']}"
    assert all(row[f"vs_{o}_verdict"] in ("a better", "b better", "equivalent", "undecided")
               for o in ("scratch", "transfer", "merge"))
    assert row["trainable_learned"] < row["trainable_scratch"]
    assert "lora_moe" in "\n".join(markdown(frame))


def test_fusion_flops_count_every_source_adapter_and_the_attention(sources):
    """The FLOP plan runs all n frozen adapters at each place, plus the fusion query (on the input) and
    key (on each adapter's output); the uniform gate has no attention to count."""
    from bench.measure.flops import Shapes, plan_for

    _results, recs = sources
    model_cfg = OmegaConf.load(Path(__file__).resolve().parents[1] / "conf" / "model" / "tiny_bert.yaml")
    adapter_node = OmegaConf.to_container(OmegaConf.load(
        Path(__file__).resolve().parents[1] / "conf" / "method" / "adapter.yaml"))
    one = plan_for(build_cell(model_cfg, build_method(adapter_node), 2, 0, 128).model)
    learned, uniform = (plan_for(_cell(recs, "adapter_fusion", **kw).model) for kw in ({}, {"gate": "uniform"}))
    s = Shapes(rows=2, tokens=10, squares=50)
    fused = _cell(recs, "adapter_fusion").model
    hidden, n = fused.backbone.config.hidden_size, 2
    places = sum(1 for m in fused.modules() if type(m).__name__ == "FusedAdapters")
    assert places > 0 and one.forward(s, ("method",)) > 0
    assert uniform.forward(s, ("method",)) == n * one.forward(s, ("method",))
    assert learned.forward(s, ("method",)) - uniform.forward(s, ("method",)) == places * (1 + n) * 2 * s.tokens * hidden ** 2
