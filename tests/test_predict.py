"""A saved delta is usable (issue #14): train -> save -> load -> identical predictions for every
method, and a real cell's kept delta reproduces the record's predictions and metric."""
from __future__ import annotations

import json

import pytest
import torch
from clitools import REPO, TINY, records_in, run_bench, run_python
from test_methods import ARCHS, TRAIN, _toy_data, build

from bench.data import loading, sampling
from bench.data import tasks as T
from bench.methods import REGISTRY, PeftTuner
from bench.methods.composed import ComposedMethod
from bench.models.delta import write_delta_info
from bench.predict import load_delta
from bench.records import schema as R
from bench.training.loop import train_model

pytestmark = pytest.mark.heavy  # scheduled first (tests/conftest.py): its sweeps take tens of seconds

TEXTS = ["a gripping, beautifully shot film", "dull and far too long", "it is what it is", "x"]
TASK = {"name": "toy", "kind": "classification", "text_fields": ["sentence"], "labels": ["0", "1"],
        "label_names": ["negative", "positive"], "num_labels": 2}


# the generic peft tuner is one class for many configs: tests/test_catalogue.py round-trips each of them;
# a learned composition needs trained source records: tests/test_compose_learned.py round-trips each of them
@pytest.mark.parametrize("name", sorted(n for n, c in REGISTRY.items()
                                        if not issubclass(c, (PeftTuner, ComposedMethod))))
def test_every_method_round_trips_through_a_delta_folder(name, tmp_path):
    built, method = build("tiny-bert", {"_target_": name, "name": name, "lr": 5e-2})
    train_model(built.model, method, _toy_data(), TRAIN, torch.device("cpu"), pad_id=0)
    folder = tmp_path / name
    method.save_delta(built.model, folder)
    # the declared format is what was written (init_from and bench.params branch on the declaration)
    assert method.delta_format in ("peft", "tensors")
    assert (folder / "adapter_model.safetensors").is_file() == (method.delta_format == "peft")
    assert (folder / "delta.safetensors").is_file() == (method.delta_format == "tensors")
    write_delta_info(folder, model_cfg=ARCHS["tiny-bert"], method=method, task=TASK, seed=0, max_seq_len=64,
                     eval_batch_size=16, pad_to_multiple_of=1, metrics={"accuracy": 0.5}, headline="accuracy")
    clf = load_delta(folder)  # a fresh model: backbone rebuilt from its config + seed, then the delta
    built.model.eval()
    enc = clf.encode(TEXTS)
    with torch.no_grad():
        for i in range(len(TEXTS)):
            x = torch.tensor([enc.input_ids[i]])
            a = built.model(input_ids=x, attention_mask=torch.ones_like(x))
            b = clf.model(input_ids=x, attention_mask=torch.ones_like(x))
            assert torch.allclose(a, b, atol=1e-6), (name, a, b)
    labels = clf.predict(TEXTS)
    assert len(labels) == len(TEXTS) and set(labels) <= {"negative", "positive"}
    card = (folder / "README.md").read_text()
    assert "local:tiny-bert" in card and "accuracy: 0.5000" in card and f"`{name}`" in card


def test_missing_description_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="bench_delta.json"):
        load_delta(tmp_path)


@pytest.fixture(scope="module")
def kept_deltas(tmp_path_factory, glue_dir):
    out = tmp_path_factory.mktemp("deltas")
    proc = run_bench(["-m", *TINY, "task=sst2", "method=lora,adapter,prompt_tuning", "sweep_name=keep",
                      "save_delta=true", "inference.repeats=5", "inference.lengths=[16,32]",
                      "inference.batch_repeats=3"], glue_dir, out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, records_in(out / "keep")


def test_kept_delta_reproduces_the_records_predictions_and_metric(kept_deltas):
    out, records = kept_deltas
    assert sorted(r["method"] for r in records) == ["adapter", "lora", "prompt_tuning"]
    for rec in records:
        folder = out / "keep" / "deltas" / rec["run_id"]
        clf = load_delta(folder)
        spec = T.task_spec(rec["config"]["task"])
        rows = loading.load_split(spec, "dev")
        saved = R.load_predictions(rec)
        ids = saved["splits"]["dev"]["ids"] if saved else sampling.eval_subsample(len(rows), rec["config"]["train"]["max_eval_samples"], rec["seed"])
        data = clf.encode([rows[i].text_a for i in ids])
        preds = clf.predict_ids(data)
        if saved:
            assert preds == saved["splits"]["dev"]["predictions"], rec["method"]
        metrics = T.evaluate_predictions(spec, "dev", preds, [rows[i].label for i in ids])
        assert metrics[rec["headline_metric"]] == pytest.approx(rec["metrics"][rec["headline_metric"]], abs=1e-9)
        card = (folder / "README.md").read_text()
        assert f"{rec['headline_metric']}: {rec['metrics'][rec['headline_metric']]:.4f}" in card
        assert "local:tiny-bert" in card and str(REPO) not in card and "/tmp" not in card
        info = json.loads((folder / "bench_delta.json").read_text())
        assert info["model"]["source"] == "local:tiny-bert" and info["task"]["label_names"] == ["negative", "positive"]
        assert json.loads((folder / "method.json").read_text())["method"] == rec["method"]
        # the record's inference section is there and measured
        inf = rec["inference"]
        assert set(inf["latency_batch1"]) == {"16", "32"} and inf["settings"]["repeats"] == 5
        expected = rec["config"]["method"].get("num_virtual_tokens", 0) if rec["method"] == "prompt_tuning" else 0
        assert inf["added_length"]["input_tokens"] == expected
        assert (inf["merge"]["status"] == "merged") == (rec["method"] == "lora")


def test_predict_cli(kept_deltas, glue_dir, tmp_path):
    out, records = kept_deltas
    rec = next(r for r in records if r["method"] == "lora")
    folder = out / "keep" / "deltas" / rec["run_id"]
    inputs = tmp_path / "in.txt"
    inputs.write_text("a fine film\nawful\n")
    proc = run_python(["-m", "bench.predict", folder, "--text", "great", "--file", inputs, "--json"], glue_dir,
                      timeout=120)
    assert proc.returncode == 0, proc.stderr
    labels = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(labels) == 3 and set(labels) <= {"negative", "positive"}
    assert labels == load_delta(folder).predict(["great", "a fine film", "awful"])
    bad = run_python(["-m", "bench.predict", tmp_path, "--text", "x"], glue_dir, timeout=120)
    assert bad.returncode == 2 and "bench_delta.json" in bad.stderr


def test_report_has_the_inference_table_and_plot(kept_deltas, tmp_path):
    from bench.report import generate_report

    out, records = kept_deltas
    rep = generate_report(out / "keep", tmp_path / "report")
    md = (tmp_path / "report" / "inference.md").read_text()
    for rec in records:
        assert rec["method_label"] in md
    page = rep.index.read_text()
    assert 'id="inference"' in page and "accuracy vs inference overhead" in page
    inf_plots = [p for p in rep.plots if p.kind == "inference"]
    assert len(inf_plots) == 1 and (tmp_path / "report" / inf_plots[0].png).stat().st_size > 0
    kinds = [p.kind for p in rep.plots]
    assert kinds.index("inference") == kinds.index("pareto") + 1  # beside accuracy vs trainable parameters
    # the table's batch-1 figure is the records' own measurement
    import pandas as pd
    csv = pd.read_csv(tmp_path / "report" / "inference.csv").set_index("method_label")
    for rec in records:
        assert csv.loc[rec["method_label"], "batch1"] == pytest.approx(rec["inference"]["overhead"]["method"]["batch1_mean"])


@pytest.mark.slow
def test_cells_of_one_structure_share_one_inference_measurement(glue_dir, tmp_path):
    """An SST-2 LoRA cell measures; a CoLA cell of a *later sweep* under the same results folder
    builds the same structure (2 labels) and reuses those timings through the cache at the results
    root, but merges and checks its own weights; an STS-B cell (1 output) measures its own; with
    inference.cache=false sharing stays within a sweep; with +inference.share=false every cell measures."""
    small = ["inference.repeats=3", "inference.lengths=[16]", "inference.batch_repeats=3", "method=lora"]
    proc = run_bench(["-m", *TINY, "task=sst2,stsb", "sweep_name=share", *small], glue_dir, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = run_bench([*TINY, "task=cola", "sweep_name=later", *small], glue_dir, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = {r["task"]: r for r in records_in(tmp_path / "share")}
    first, own = recs["sst2"]["inference"], recs["stsb"]["inference"]
    second = records_in(tmp_path / "later")[0]["inference"]
    assert first["shared"]["from"] is None and own["shared"]["from"] is None
    assert second["shared"]["from"] == "share / sst2 / seed 0" and second["shared"]["key"] == first["shared"]["key"]
    assert second["shared"]["from_run_id"] == recs["sst2"]["run_id"]
    assert own["shared"]["key"] != first["shared"]["key"]
    # where the cell's seconds went (time.phases_s, issue #26): every phase, adding up to the cell's total
    phases = recs["sst2"]["time"]["phases_s"]
    assert {"data", "build", "encode", "train", "eval", "save", "inference", "flops"} <= set(phases)
    assert sum(phases.values()) == pytest.approx(recs["sst2"]["time"]["total_s"], rel=0.05)
    assert second["latency_batch1"] == first["latency_batch1"] and second["overhead"] == first["overhead"]
    assert second["precision_reached"] == first["precision_reached"]
    assert (tmp_path / ".inference_cache" / f"{first['shared']['key']}.json").is_file()
    # the merge and its check ran in the CoLA cell itself, on its own trained weights
    assert second["merge"]["status"] == "merged" and second["merge"]["check"]["equal_within_atol"]
    assert second["seconds"] < first["seconds"]
    proc = run_bench(["-m", *TINY, "task=sst2,cola", "sweep_name=percell", "inference.cache=false", *small],
                     glue_dir, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = {r["task"]: r["inference"] for r in records_in(tmp_path / "percell")}
    assert recs["sst2"]["shared"]["from"] is None and recs["cola"]["shared"]["from"] == "percell / sst2 / seed 0"
    proc = run_bench([*TINY, "task=sst2", "sweep_name=noshare", "+inference.share=false", *small], glue_dir, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert all("shared" not in r["inference"] for r in records_in(tmp_path / "noshare"))