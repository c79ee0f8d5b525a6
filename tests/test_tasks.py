"""Task layer on the real GLUE files (no mocks) plus broken files written into tmp_path."""
from __future__ import annotations

import collections
import json
import re
import shutil
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from omegaconf import OmegaConf

from bench.data.loading import has_split, load_split
from bench.data.sampling import subsample
from bench.data.tasks import (
    DataError,
    Example,
    evaluate_predictions,
    metric_keys,
    task_spec,
)

REPO = Path(__file__).resolve().parents[1]
TASK_DIR = REPO / "conf" / "task"
GLUE_TASKS = ["cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"]

# (task, split, official row count, file in MANIFEST.json)
LOCAL_SPLITS = [
    ("cola", "train", 8551, "CoLA/train.tsv"),
    ("cola", "dev", 1043, "CoLA/dev.tsv"),
    ("sst2", "train", 67349, "SST-2/train.tsv"),
    ("sst2", "dev", 872, "SST-2/dev.tsv"),
    ("mrpc", "train", 3668, "MRPC/train.tsv"),
    ("mrpc", "dev", 408, "MRPC/dev.tsv"),
    ("stsb", "train", 5749, "STS-B/train.tsv"),
    ("stsb", "dev", 1500, "STS-B/dev.tsv"),
    ("rte", "train", 2490, "RTE/train.tsv"),
    ("rte", "dev", 277, "RTE/dev.tsv"),
    ("wnli", "train", 635, "WNLI/train.tsv"),
    ("wnli", "dev", 71, "WNLI/dev.tsv"),
    ("qnli", "dev", 5463, "QNLI/dev.tsv"),
    ("mnli", "dev_matched", 9815, "MNLI/validation_matched-00000-of-00001.parquet"),
    ("mnli", "dev_mismatched", 9832, "MNLI/validation_mismatched-00000-of-00001.parquet"),
    ("qqp", "dev", 40430, "QQP/validation-00000-of-00001.parquet"),
]


def glue_spec(name: str, glue_dir: Path):
    """Resolve the task YAML the way Hydra does: `root: ${data.glue_dir}` against a `data` section."""
    cfg = OmegaConf.create({"data": {"glue_dir": str(glue_dir)}, "task": OmegaConf.load(TASK_DIR / f"{name}.yaml")})
    return task_spec(cfg.task)


@pytest.fixture(scope="module")
def manifest(glue_dir):
    return {f["file"]: f for f in json.loads((glue_dir / "MANIFEST.json").read_text())["files"]}


@pytest.fixture(scope="module")
def loaded(glue_dir):
    cache = {}

    def get(task, split):
        if (task, split) not in cache:
            cache[task, split] = load_split(glue_spec(task, glue_dir), split)
        return cache[task, split]
    return get


# ------------------------------------------------------------------------------------- real GLUE data

@pytest.mark.parametrize(("task", "split", "rows", "file"), LOCAL_SPLITS, ids=[f"{t}-{s}" for t, s, *_ in LOCAL_SPLITS])
def test_official_row_counts_and_labels(task, split, rows, file, glue_dir, manifest, loaded):
    spec = glue_spec(task, glue_dir)
    assert has_split(spec, split)
    examples = loaded(task, split)
    assert len(examples) == rows == manifest[file]["rows"]
    assert all(isinstance(e, Example) and isinstance(e.text_a, str) and e.text_a for e in examples)
    assert all((e.text_b is not None) == spec.is_pair for e in examples)
    if spec.kind == "regression":
        assert spec.num_labels == 1
        scores = [e.label for e in examples]
        assert all(isinstance(s, float) and 0.0 <= s <= 5.0 for s in scores)
        assert min(scores) == 0.0 and max(scores) == 5.0 and 2.0 < sum(scores) / len(scores) < 3.0
    else:
        counts = collections.Counter(spec.labels[e.label] for e in examples)
        assert dict(counts) == manifest[file]["label_counts"]
        assert min(counts.values()) / len(examples) > 0.2  # no class vanished through a parsing bug


def test_all_task_configs_are_valid(glue_dir):
    heads = {"cola": "matthews_correlation", "sst2": "accuracy", "mrpc": "f1", "stsb": "pearson", "qqp": "f1",
             "mnli": "accuracy", "qnli": "accuracy", "rte": "accuracy", "wnli": "accuracy"}
    for name in GLUE_TASKS:
        spec = glue_spec(name, glue_dir)
        assert spec.name == name and spec.root == str(glue_dir) and spec.headline == heads[name]
        assert spec.hub["path"] == "nyu-mll/glue" and set(spec.eval_splits) <= set(spec.hub["splits"])
    assert glue_spec("mnli", glue_dir).num_labels == 3 and glue_spec("stsb", glue_dir).kind == "regression"
    # Label order matches the hub's ClassLabel order, so hub integer labels are class indices.
    assert glue_spec("rte", glue_dir).labels == ["entailment", "not_entailment"]
    assert glue_spec("qnli", glue_dir).labels == ["entailment", "not_entailment"]
    assert glue_spec("mnli", glue_dir).label_names == ["entailment", "neutral", "contradiction"]


def test_file_quirks_are_read_verbatim(glue_dir, loaded):
    sst = loaded("sst2", "train")
    assert sst[0] == Example("hide new secretions from the parental units ", None, 0)  # trailing space kept
    mrpc = loaded("mrpc", "train")  # header with BOM still matched
    assert mrpc[0].text_a.startswith("Amrozi accused his brother") and mrpc[0].label == 1
    last = (glue_dir / "CoLA/dev.tsv").read_text(encoding="utf-8").split("\n")[-1]  # no final newline
    assert loaded("cola", "dev")[-1].text_a == last.split("\t")[3]
    qnli = loaded("qnli", "dev")  # lone quotes are text, not CSV quoting
    assert sum(e.text_b.startswith('"') for e in qnli) == 19
    assert loaded("stsb", "train")[1].label == 3.8


def test_sst2_train_read_does_a_few_calls_per_row(glue_dir):
    """Reading stays linear and light (67k rows are read in every cell): counted in function calls
    (Python and C, under a profiler), which a loaded machine does not change as it changes seconds.
    About 4 Python and 7 C calls per row today; a per-row parser object, a second pass over the
    rows or a quadratic step would exceed the bound."""
    spec = glue_spec("sst2", glue_dir)
    calls = collections.Counter()

    def count(frame, event, arg):
        calls[event] += 1

    sys.setprofile(count)
    try:
        rows = load_split(spec, "train")
    finally:
        sys.setprofile(None)
    assert len(rows) == 67_349
    assert calls["call"] <= 6 * len(rows) and calls["call"] + calls["c_call"] <= 16 * len(rows), dict(calls)


@pytest.mark.parametrize(("task", "present"), [("qnli", "dev"), ("mnli", "dev_matched, dev_mismatched"),
                                                ("qqp", "dev")])
def test_missing_train_split_is_a_clear_error(task, present, glue_dir):
    spec = glue_spec(task, glue_dir)
    assert not has_split(spec, "train")
    with pytest.raises(DataError) as err:
        load_split(spec, "train")
    msg = str(err.value)
    assert f"task {task} has no train split in {glue_dir}" in msg and f"only {present}" in msg
    assert "data.glue_dir" in msg and "BENCH_GLUE_DIR" in msg and "<TASK>/train.tsv" in msg


def test_missing_glue_dir_names_file_and_setting(tmp_path):
    spec = glue_spec("rte", tmp_path / "nowhere")
    assert not has_split(spec, "dev")
    with pytest.raises(DataError) as err:
        load_split(spec, "dev")
    msg = str(err.value)
    assert str(tmp_path / "nowhere" / "RTE" / "dev.tsv") in msg and "does not exist" in msg
    assert "BENCH_GLUE_DIR" in msg and "download_glue_data.py" in msg and "data.glue_dir=null" in msg
    with pytest.raises(DataError, match="has no split 'test'"):
        load_split(spec, "test")


# ----------------------------------------------------------------------------------------- subsample

def test_subsample_is_seeded_and_keeps_order():
    data = [Example(f"t{i}", None, i % 2) for i in range(1000)]
    a, b, c = subsample(data, 100, seed=1), subsample(data, 100, seed=1), subsample(data, 100, seed=2)
    assert a == b and a != c and len(a) == 100 and len(set(map(id, a))) == 100
    assert [int(e.text_a[1:]) for e in a] == sorted(int(e.text_a[1:]) for e in a)
    assert subsample(data, None, 0) == data and subsample(data, 5000, 0) == data and subsample(data, 0, 0) == []
    with pytest.raises(ValueError):
        subsample(data, -1, 0)


# --------------------------------------------------------------------------------- malformed data

def user_spec(root: Path, file: str, fmt: str = "tsv", kind: str = "classification", **split):
    cfg = {"name": "toy", "kind": kind, "text_fields": ["sentence"], "label_field": "label",
           "metrics": ["accuracy"] if kind == "classification" else ["pearson"],
           "headline": "accuracy" if kind == "classification" else "pearson",
           "root": str(root), "splits": {"train": {"path": file, "format": fmt, **split}}, "eval_splits": ["train"]}
    if kind == "classification":
        cfg["labels"] = ["0", "1"]
    return task_spec(cfg)


def load_text(tmp_path, content: str | bytes, fmt="tsv", name=None, **kw):
    path = tmp_path / (name or f"data.{fmt}")
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return load_split(user_spec(tmp_path, path.name, fmt, **kw), "train")


@pytest.mark.parametrize(("content", "kw", "line", "needle"), [
    ("text\tlabel\na\t0\n", {}, 1, "lacks column 'sentence'"),
    ("sentence\tlabel\na\t0\nb\t1\nc\t0\nd\t1\textra\n", {}, 5, "expected 2 tab-separated columns"),
    ("a\t0\nb\t1\nc\n", {"header": False, "columns": ["sentence", "label"]}, 3, "found 1"),
    ("sentence\tlabel\na\t0\nb\t1\nc\t2\n", {}, 4, "label '2' in field 'label' is not one of the task's labels ['0', '1']"),
    ("sentence\tlabel\na\t0\n\nb\t1\n", {}, 3, "empty line"),
    (b"sentence\tlabel\na\t0\n\xff\xfe\t1\n", {}, 3, "not valid UTF-8"),
    ('sentence\tlabel\n"a\t0\nb"\t1\nc\t0\td\n', {}, 4, "expected 2"),  # quotes do not join lines
])
def test_malformed_tsv_names_file_and_line(tmp_path, content, kw, line, needle):
    with pytest.raises(DataError) as err:
        load_text(tmp_path, content, **kw)
    msg = str(err.value)
    assert f"{tmp_path / 'data.tsv'}, line {line}: " in msg and needle in msg
    assert err.value.line == line and err.value.path == str(tmp_path / "data.tsv")


def test_empty_split_and_trailing_blank_lines(tmp_path):
    with pytest.raises(DataError, match=r"data\.tsv: split has no data rows"):
        load_text(tmp_path, "sentence\tlabel\n")
    with pytest.raises(DataError, match=r"data\.tsv, line 1: file is empty"):
        load_text(tmp_path, "")
    ok = load_text(tmp_path, "sentence\tlabel\r\na \t1\r\nb\t0\r\n\n\n")  # CRLF, trailing blanks are fine
    assert ok == [Example("a ", None, 1), Example("b", None, 0)]


def test_regression_scores(tmp_path):
    rows = load_text(tmp_path, "sentence\tlabel\na\t4.250\nb\t0\n", kind="regression")
    assert [e.label for e in rows] == [4.25, 0.0]
    for bad in ("abc", "nan", ""):
        with pytest.raises(DataError) as err:
            load_text(tmp_path, f"sentence\tlabel\na\t1.0\nb\t2\nc\t{bad}\n", kind="regression")
        assert f"data.tsv, line 4: score '{bad}'" in str(err.value) and "not a finite number" in str(err.value)


def test_stsb_bad_score_line_number(tmp_path, glue_dir):
    lines = (glue_dir / "STS-B/dev.tsv").read_text(encoding="utf-8").split("\n")
    lines[10] = lines[10].rsplit("\t", 1)[0] + "\tfive"
    (tmp_path / "STS-B").mkdir()
    (tmp_path / "STS-B/dev.tsv").write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(DataError, match=r"STS-B/dev\.tsv, line 11: score 'five'"):
        load_split(glue_spec("stsb", tmp_path), "dev")


def test_csv_quoting_and_line_numbers(tmp_path):
    rows = load_text(tmp_path, 'sentence,label\n"a, b",1\n"say ""hi""",0\n', fmt="csv")
    assert rows == [Example("a, b", None, 1), Example('say "hi"', None, 0)]
    with pytest.raises(DataError, match=r"data\.csv, line 4: expected 2 comma-separated columns"):
        load_text(tmp_path, 'sentence,label\n"multi\nline",1\nx,0,extra\n', fmt="csv")


def test_jsonl_and_parquet(tmp_path):
    rows = load_text(tmp_path, '{"sentence": "a", "label": 1}\n{"sentence": "b", "label": "0"}\n', fmt="jsonl")
    assert [e.label for e in rows] == [1, 0]
    with pytest.raises(DataError, match=r"data\.jsonl, line 2: not valid JSON"):
        load_text(tmp_path, '{"sentence": "a", "label": 1}\n{"sentence": \n', fmt="jsonl")
    with pytest.raises(DataError, match=r"data\.jsonl, line 1: object lacks field\(s\) \['label'\]"):
        load_text(tmp_path, '{"sentence": "a"}\n', fmt="jsonl")
    pq.write_table(pa.table({"sentence": ["a", "b", "c"], "label": [0, 1, -1]}), tmp_path / "p.parquet")
    with pytest.raises(DataError, match=r"p\.parquet, row 3: label -1 in field 'label' is not one of"):
        load_split(user_spec(tmp_path, "p.parquet", "parquet"), "train")
    pq.write_table(pa.table({"text": ["a"], "label": [0]}), tmp_path / "q.parquet")
    with pytest.raises(DataError, match=r"q\.parquet: parquet file lacks column\(s\) \['sentence'\]"):
        load_split(user_spec(tmp_path, "q.parquet", "parquet"), "train")


# -------------------------------------------------------------------------------------- config checks

@pytest.mark.parametrize(("change", "field"), [
    ({"kind": "ranking"}, "kind"),
    ({"labels": None}, "labels"),
    ({"labels": ["0", "0"]}, "labels"),
    ({"headline": "f1"}, "headline"),
    ({"metrics": ["acc"]}, "metrics"),
    ({"metrics": ["pearson"], "headline": "pearson"}, "metrics"),
    ({"text_fields": ["a", "b", "c"]}, "text_fields"),
    ({"eval_splits": ["dev"]}, "eval_splits"),
    ({"splits": {"train": {"path": "x.tsv", "fromat": "tsv"}}}, "splits.train.fromat"),
    ({"splits": {"train": {"path": "x.txt"}}}, "splits.train.format"),
    ({"splits": {"train": {"path": "x.tsv", "header": False}}}, "splits.train.columns"),
    ({"root": None}, "root"),
])
def test_task_spec_rejects_bad_config(change, field):
    cfg = {"name": "toy", "kind": "classification", "text_fields": ["sentence"], "label_field": "label",
           "labels": [0, 1], "metrics": ["accuracy"], "headline": "accuracy", "root": "somewhere",
           "splits": {"train": {"path": "x.tsv"}}, "eval_splits": ["train"], **change}
    with pytest.raises(ValueError, match=rf"^task toy: .*`{re.escape(field)}`"):
        task_spec(cfg)


def test_unresolvable_root_is_a_value_error():
    with pytest.raises(ValueError, match="task: a value does not resolve"):
        task_spec(OmegaConf.create({"task": OmegaConf.load(TASK_DIR / "sst2.yaml")}).task)


def test_example_user_task_loads_with_the_same_code(monkeypatch):
    monkeypatch.chdir(REPO)  # `root: examples/data` is relative to the working directory
    spec = task_spec(OmegaConf.load(TASK_DIR / "example_csv.yaml"))
    assert spec.extra == {} and spec.num_labels == 2 and not spec.is_pair
    train, dev = load_split(spec, "train"), load_split(spec, "dev")
    assert len(train) + len(dev) == 40 and len(dev) == 12
    assert train[0] == Example("A warm, funny film that never outstays its welcome.", None, 1)
    assert any('"twists"' in e.text_a for e in train)
    assert collections.Counter(e.label for e in train + dev) == {0: 20, 1: 20}
    result = evaluate_predictions(spec, "dev", [e.label for e in dev], [e.label for e in dev])
    assert result == {"accuracy": 1.0, "f1": 1.0}


def test_hub_code_path_with_a_local_dataset_folder(tmp_path, glue_dir, monkeypatch):
    """root null -> datasets.load_dataset; a local folder stands in for the hub (no network)."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    hub_dir = tmp_path / "hub"
    hub_dir.mkdir()
    shutil.copy(glue_dir / "MNLI/validation_matched-00000-of-00001.parquet",
                hub_dir / "validation-00000-of-00001.parquet")
    cfg = OmegaConf.to_container(OmegaConf.load(TASK_DIR / "mnli.yaml"))
    cfg.update(root=None, hub={"path": str(hub_dir), "splits": {"dev_matched": "validation"}},
               eval_splits=["dev_matched"], metrics=["accuracy"], metric_suffix=None)
    spec = task_spec(cfg)
    assert has_split(spec, "dev_matched") and not has_split(spec, "train")
    assert load_split(spec, "dev_matched") == load_split(glue_spec("mnli", glue_dir), "dev_matched")
    with pytest.raises(DataError, match="no split 'train' on the hub"):
        load_split(spec, "train")
    spec.hub["path"] = str(tmp_path / "absent")
    with pytest.raises(DataError, match="(?s)could not load hub .*BENCH_GLUE_DIR"):
        load_split(spec, "dev_matched")


# ------------------------------------------------------------------------------------------ evaluation

def test_evaluate_predictions_keys_per_task(glue_dir, loaded):
    mnli = glue_spec("mnli", glue_dir)
    assert metric_keys(mnli, "dev_matched") == {"accuracy": "accuracy"}
    refs = [e.label for e in loaded("mnli", "dev_mismatched")]
    out = evaluate_predictions(mnli, "dev_mismatched", [0] * len(refs), refs)
    assert out == {"accuracy_mm": pytest.approx(3463 / 9832)}
    refs = [e.label for e in loaded("mrpc", "dev")]
    assert evaluate_predictions(glue_spec("mrpc", glue_dir), "dev", [1] * len(refs), refs) == {
        "f1": pytest.approx(2 * 279 / (2 * 279 + 129)), "accuracy": pytest.approx(279 / 408)}
    scores = [e.label for e in loaded("stsb", "dev")]
    out = evaluate_predictions(glue_spec("stsb", glue_dir), "dev", scores, scores)
    assert out == {"pearson": pytest.approx(1.0), "spearmanr": pytest.approx(1.0)}
    cola = glue_spec("cola", glue_dir)
    assert evaluate_predictions(cola, "dev", [1, 1, 0], [1, 1, 0]) == {"matthews_correlation": 1.0}
    for bad in ([2, 0, 1], [0.5, 0, 1]):
        with pytest.raises(ValueError, match="class indices"):
            evaluate_predictions(cola, "dev", bad, [0, 0, 1])
