"""Reports take task order, headline metric and caption from the task specs stored in the records
(bench.records.results.TaskCatalog), not from a GLUE table: two user tasks in JSONL with their own field
names run through the real CLI, and the report shows them as their YAML files say.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from clitools import TINY, records_in, run_bench, run_python

from bench.data.tasks import task_spec
from bench.records.results import TaskCatalog, fmt_count, newest_per_seed, sweep_dir
from bench.records.schema import config_hash

REVIEWS_CAPTION = "Star ratings of product reviews, 1 to 5"
HELPFUL_CAPTION = "Whether a forum comment was voted helpful"
WORDS = {1: "awful broken refund", 3: "fine average okay", 5: "great lovely perfect"}


def _write_task(conf: Path, data: Path, name: str, body: str, rows: list[dict]) -> None:
    data.mkdir(parents=True, exist_ok=True)
    for split, part in (("train", rows[: len(rows) * 2 // 3]), ("dev", rows[len(rows) * 2 // 3:])):
        (data / f"{name}_{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part), encoding="utf-8")
    (conf / "task").mkdir(parents=True, exist_ok=True)
    (conf / "task" / f"{name}.yaml").write_text(body.format(root=data), encoding="utf-8")


@pytest.fixture(scope="module")
def user_report(tmp_path_factory, glue_dir):
    """Two JSONL tasks whose spec order (reviews, then helpfulness) is not alphabetical, one cell
    each, then `python -m bench.report` on the sweep folder."""
    tmp = tmp_path_factory.mktemp("usertasks")
    conf, data = tmp / "conf", tmp / "data"
    reviews = [{"id": i, "review": f"{WORDS[s]} item {i}", "stars": s} for i in range(60) for s in [(1, 3, 5)[i % 3]]]
    helpful = [{"comment": ("thanks this solved it" if i % 2 else "first lol") + f" {i}", "helpful": "yes" if i % 2 else "no"}
               for i in range(60)]
    _write_task(conf, data, "reviews", f"""
name: reviews
kind: classification
text_fields: [review]
label_field: stars
labels: [1, 3, 5]
metrics: [accuracy, matthews_correlation]
headline: matthews_correlation
display_name: Product reviews
description: {REVIEWS_CAPTION}
order: 1
root: {{root}}
splits: {{{{train: {{{{path: reviews_train.jsonl}}}}, dev: {{{{path: reviews_dev.jsonl}}}}}}}}
eval_splits: [dev]
""", reviews)
    _write_task(conf, data, "helpfulness", f"""
name: helpfulness
kind: classification
text_fields: [comment]
label_field: helpful
labels: ["no", "yes"]
metrics: [accuracy, f1]
headline: f1
description: {HELPFUL_CAPTION}
order: 2
root: {{root}}
splits: {{{{train: {{{{path: helpfulness_train.jsonl}}}}, dev: {{{{path: helpfulness_dev.jsonl}}}}}}}}
eval_splits: [dev]
""", helpful)
    results = tmp / "results"
    proc = run_bench(["--config-dir", str(conf), "-m", *TINY, "task=reviews,helpfulness", "method=head_only",
                      "train.threads=1", "inference.enabled=false", "sweep_name=mine"], glue_dir, results, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = tmp / "report"
    rep = run_python(["-m", "bench.report", sweep_dir(results, "mine"), "--out", out, "--bootstrap-samples", "200"],
                     glue_dir)
    assert rep.returncode == 0, rep.stdout[-3000:] + rep.stderr[-3000:]
    return {"records": records_in(results / "mine"), "run": proc.stdout, "out": out, "summary": rep.stdout}


def test_records_carry_the_task_specs(user_report):
    recs = {r["task"]: r for r in user_report["records"]}
    assert set(recs) == {"reviews", "helpfulness"} and all(r["status"] == "ok" for r in recs.values())
    assert recs["reviews"]["headline_metric"] == "matthews_correlation" and recs["helpfulness"]["headline_metric"] == "f1"
    assert recs["reviews"]["config"]["task"]["description"] == REVIEWS_CAPTION
    # The end-of-sweep summary prints small parameter counts exactly (head_only: 64 x 3 + 3 on tiny-bert).
    row = next(ln for ln in user_report["run"].splitlines() if ln.startswith("tiny-bert reviews head_only"))
    assert f" {recs['reviews']['params']['trainable']} " in row and recs["reviews"]["params"]["trainable"] == 195


def test_report_uses_each_tasks_own_headline_caption_and_order(user_report):
    out = user_report["out"]
    md = (out / "table.md").read_text(encoding="utf-8")
    header = next(ln for ln in md.splitlines() if ln.startswith("| method |"))
    assert header.index("Product reviews (MCC)") < header.index("helpfulness (F1)")  # spec order, not a-z
    assert "avg (reviews, helpfulness)" in header
    want = (f"Tasks: Product reviews: {REVIEWS_CAPTION} (headline matthews_correlation); "
            f"helpfulness: {HELPFUL_CAPTION} (headline f1).")
    assert want in md
    assert "CoLA" not in md and "dev-set" not in md  # no GLUE wording for a user's tasks
    page = (out / "index.html").read_text(encoding="utf-8")
    assert want in page and page.index("Product reviews (MCC)") < page.index("helpfulness (F1)")
    with open(out / "table.csv", newline="", encoding="utf-8") as fh:
        cells = [r for r in csv.DictReader(fh) if r["row_type"] == "cell"]
    assert [(r["task"], r["headline_metric"]) for r in cells] == [("reviews", "matthews_correlation"), ("helpfulness", "f1")]
    assert "Product reviews (MCC)" in user_report["summary"]  # the terminal summary too


def test_old_records_without_display_fields_fall_back_to_glue():
    """Schema-1 records (config.task a plain name, or a spec without display fields) keep GLUE order."""
    recs = [{"task": t, "config": {"task": t}} for t in ("mine", "stsb", "cola")]
    recs.append({"task": "rte", "config": {"task": {"name": "rte", "headline": "accuracy"}}})
    cat = TaskCatalog.from_records(recs)
    assert cat.sort(["mine", "stsb", "rte", "cola"]) == ["cola", "stsb", "rte", "mine"]
    assert cat.headline("cola") == "matthews_correlation" and cat.headline("mine") == "accuracy"
    assert cat.info("cola").description.startswith("CoLA")


def test_display_fields_are_validated_and_do_not_change_the_cell_identity(tmp_path):
    base = {"name": "t", "kind": "classification", "text_fields": ["x"], "label_field": "y", "labels": ["a", "b"],
            "metrics": ["accuracy"], "headline": "accuracy", "root": str(tmp_path), "eval_splits": ["dev"],
            "splits": {"dev": {"path": "dev.jsonl"}}}
    spec = task_spec(dict(base, description="d", order=3, display_name="T"))
    assert (spec.description, spec.order, spec.display_name) == ("d", 3, "T")
    with pytest.raises(ValueError, match="task t: `order`='first': expected a number"):
        task_spec(dict(base, order="first"))
    assert config_hash({"task": dict(base, description="other words", order=9)}) == config_hash({"task": base})


def test_newest_per_seed_reads_times_not_strings_and_prefers_ok_on_ties():
    a = {"model": "m", "method_label": "x", "task": "t", "seed": 0, "status": "ok", "finished_at": "2025-01-01T10:00:00Z"}
    b = dict(a, status="ok", finished_at="2025-01-01T09:30:00+00:00", _path="b")  # older, though it sorts later as text
    c = dict(a, status="failed", finished_at="2025-01-01T10:00:00+00:00", _path="z")  # same time as a: ok wins
    kept, groups = newest_per_seed([a, b, c])
    assert kept == [a] and groups == [[b, c, a]]


@pytest.mark.parametrize(("n", "text"), [(385, "385"), (999.6, "1.00K"), (1234, "1.23K"), (38_400, "38.4K"),
                                          (999_999, "1.00M"), (22_713_216, "22.7M"), (125e6, "125M"), (None, "–")])
def test_fmt_count(n, text):
    assert fmt_count(n) == text
