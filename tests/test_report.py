"""bench.report end to end on fixture records with known values.

Expected numbers are recomputed here from the raw record files with the json and statistics
modules only (no pandas), so the test does not share code, or bugs, with bench.analysis.aggregate.
"""
from __future__ import annotations

import csv
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
from collections import defaultdict
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from bench.analysis.aggregate import build, cell_stats
from bench.records.schema import load_records, write_record
from bench.report import generate_report

sys.path.insert(0, str(Path(__file__).parent))
import report_fixtures as fx
from clitools import run_python

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
SECTIONS = ("params", "memory", "throughput", "time", "storage", "train", "data")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    base = tmp_path_factory.mktemp("report")
    info = fx.write_fixture_results(base / "results")
    rep = generate_report(base / "results", base / "reports" / "fixture", "fixture")
    return {"base": base, "results": base / "results", "out": rep.out, "report": rep, "info": info}


# ------------------------------------------------------------------ independent recomputation


def raw_records(results: Path) -> list[dict]:
    """Records straight from disk: JSON objects with schema_version that parse."""
    out = []
    for p in sorted(results.rglob("*.json")):
        try:
            rec = json.loads(p.read_text())
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and "schema_version" in rec:
            out.append(rec)
    return out


def newest_per_seed(recs: list[dict]) -> list[dict]:
    best: dict[tuple, dict] = {}
    for r in recs:
        key = (r["model"], r["method_label"], r["task"], r["seed"])
        if key not in best or r["finished_at"] > best[key]["finished_at"]:
            best[key] = r
    return list(best.values())


def flat_values(rec: dict) -> dict[str, float]:
    vals = {"headline": rec["metrics"][rec["headline_metric"]]}
    stack = [("metrics", rec["metrics"])] + [(s, rec[s]) for s in SECTIONS if isinstance(rec.get(s), dict)]
    while stack:
        prefix, node = stack.pop()
        for k, v in node.items():
            if isinstance(v, dict):
                stack.append((f"{prefix}.{k}", v))
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                vals[f"{prefix}.{k}"] = float(v)
    return vals


def expected_cells(results: Path) -> dict[tuple, dict[str, list[float]]]:
    cells: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in newest_per_seed(raw_records(results)):
        if r["status"] == "ok":
            for q, v in flat_values(r).items():
                cells[(r["model"], r["method_label"], r["task"])][q].append(v)
    return cells


def read_csv(out: Path) -> list[dict]:
    with open(out / "table.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


class Cells(HTMLParser):
    """Text of every <td>/<th> per table row, plus every src/href."""

    def __init__(self):
        super().__init__()
        self.rows: list[list[str]] = []
        self.table_of_row: list[str] = []  # id of the enclosing <table> of each row
        self._table = ""
        self.refs: list[tuple[str, str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._table = dict(attrs).get("id") or ""
        elif tag == "tr":
            self.rows.append([])
            self.table_of_row.append(self._table)
        elif tag in ("td", "th"):
            self._cell = []
        for k, v in attrs:
            if k in ("src", "href"):
                self.refs.append((tag, v))

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def parse_html(path: Path) -> Cells:
    p = Cells()
    p.feed(path.read_text(encoding="utf-8"))
    return p


# ------------------------------------------------------------------ numbers


def test_every_csv_number_equals_recomputed_mean_std_n(report):
    rows = [r for r in read_csv(report["out"]) if r["row_type"] == "cell"]
    expected = expected_cells(report["results"])
    checked = 0
    for row in rows:
        key = (row["model"], row["method_label"], row["task"])
        exp = expected.get(key, {})
        quantities = {c[: -len("_mean")] for c in row if c.endswith("_mean")}
        assert "headline" in quantities and "memory.peak_rss_bytes" in quantities
        for q in quantities:
            vals = exp.get(q, [])
            assert int(row[f"{q}_n"]) == len(vals), (key, q)
            if not vals:
                assert row[f"{q}_mean"] == "" and row[f"{q}_std"] == "", (key, q)
                continue
            assert close(float(row[f"{q}_mean"]), statistics.fmean(vals)), (key, q)
            if len(vals) > 1:
                assert close(float(row[f"{q}_std"]), statistics.stdev(vals)), (key, q)
            else:
                assert row[f"{q}_std"] == "", (key, q)  # sample std undefined for n = 1
            checked += 1
    assert len(rows) == 24  # 2 models x 3 methods x 4 tasks, none dropped
    assert checked > 500


def test_known_values_conflict_and_single_seed(report):
    rows = {(r["model"], r["method_label"], r["task"]): r for r in read_csv(report["out"]) if r["row_type"] == "cell"}
    # The newer record of seed 1 wins over the old config (value 0.0123).
    r = rows[("tiny-bert", "full", "cola")]
    vals = [fx.metric_value("tiny-bert", "full", "cola", s) for s in fx.SEEDS]
    assert close(float(r["headline_mean"]), statistics.fmean(vals))
    assert close(float(r["metrics.matthews_correlation_std"]), statistics.stdev(vals))
    r = rows[("tiny-bert", "full", "stsb")]
    assert r["headline_n"] == "1" and r["headline_std"] == "" and r["status"] == "partial"
    conflicts = report["report"].agg.conflicts
    assert len(conflicts) == 1 and conflicts.iloc[0]["kind"] == "config_hash differs"
    assert Path(conflicts.iloc[0]["dropped_paths"]).name == Path(report["info"]["paths"][-1]).name


def test_summary_rows_average_only_complete_task_sets(report):
    rows = read_csv(report["out"])
    cells = {(r["model"], r["method_label"], r["task"]): r for r in rows if r["row_type"] == "cell"}
    summ = {(r["model"], r["method_label"]): r for r in rows if r["row_type"] == "summary"}
    assert len(summ) == 6
    for (model, label), s in summ.items():
        assert s["task"] == "avg (cola, sst2, mrpc, stsb)" and s["tasks"] == "cola,sst2,mrpc,stsb"
        means = [cells[(model, label, t)]["headline_mean"] for t in ("cola", "sst2", "mrpc", "stsb")]
        if all(means):
            assert s["status"] == "ok"
            assert close(float(s["headline_mean"]), statistics.fmean(float(m) for m in means))
        else:
            assert s["status"] == "missing" and s["headline_mean"] == ""  # never an average over fewer tasks
    assert summ[("tiny-roberta", "lora[r=8]")]["missing_tasks"] == "mrpc"
    assert summ[("tiny-roberta", "bitfit")]["missing_tasks"] == "stsb"
    # std of the average: over seeds that are ok on every task (tiny-roberta full: seeds 1-3).
    per_seed = [statistics.fmean(fx.metric_value("tiny-roberta", "full", t, s) for t in fx.TASKS) for s in fx.SEEDS]
    full = summ[("tiny-roberta", "full")]
    assert close(float(full["headline_std"]), statistics.stdev(per_seed)) and full["headline_n"] == "3"


def test_models_are_never_averaged_together(report, tmp_path):
    rows = read_csv(report["out"])
    for r in rows:
        base = fx.MODELS[r["model"]]
        if r["headline_mean"]:
            assert base - 0.1 < float(r["headline_mean"]) < base + 0.25, r["model"]  # models are 0.5 apart
    assert {r["model"] for r in rows} == set(fx.MODELS)
    # A third model with a task no one else ran: its own grid, no effect on the others' averages.
    shutil.copytree(report["results"], tmp_path / "results")
    extra = fx.make_record("tiny-bert", "full", "rte", 1)
    extra["model"] = "other-model"
    write_record(tmp_path / "results" / "extra" / "other.json", extra)
    agg = build(load_records(tmp_path / "results")[0])
    assert agg.tasks("tiny-bert") == ["cola", "sst2", "mrpc", "stsb"]
    assert agg.grid_tasks("other-model") == ["rte"]
    assert set(agg.grid[agg.grid["model"] == "other-model"]["method_label"]) == {"full"}
    other = agg.summary[agg.summary["model"] == "other-model"]
    assert list(other["task"]) == ["avg (rte)"]
    assert math.isclose(other["headline_mean"].iloc[0], extra["metrics"]["accuracy"])


def test_cell_stats_long_form_matches_wide(report):
    agg = report["report"].agg
    long = cell_stats(agg.kept)
    wide = agg.cells.set_index(["model", "method_label", "task"])
    assert set(long["quantity"]) >= {"headline", "params.trainable", "time.train_s"}
    for r in long.itertuples(index=False):
        w = wide.loc[(r.model, r.method_label, r.task)]
        assert close(r.mean, w[f"{r.quantity}_mean"]) and r.n == w[f"{r.quantity}_n"]


# ------------------------------------------------------------------ failed / missing visibility


def test_failed_and_missing_cells_in_csv_md_and_html(report):
    out = report["out"]
    rows = {(r["model"], r["method_label"], r["task"]): r for r in read_csv(out) if r["row_type"] == "cell"}
    assert rows[("tiny-roberta", "lora[r=8]", "mrpc")]["status"] == "missing"
    assert rows[("tiny-roberta", "lora[r=8]", "mrpc")]["n_missing"] == "3"
    failed = rows[("tiny-roberta", "bitfit", "stsb")]
    assert failed["status"] == "failed" and "ValueError" in failed["errors"]
    partial = rows[("tiny-bert", "lora[r=8]", "cola")]
    assert partial["status"] == "partial" and "torch.OutOfMemoryError" in partial["errors"]
    assert rows[("tiny-bert", "bitfit", "sst2")]["n_missing"] == "1"

    md = (out / "table.md").read_text()
    md_rows = [[c.strip() for c in line.strip("|").split("|")] for line in md.splitlines() if line.startswith("| ")]
    roberta = md[md.index("Main results: tiny-roberta"):]
    lora = next(r for r in md_rows if r[0] == "lora[r=8]" and "missing (no mrpc)" in r)
    assert lora.count("missing") == 2  # mrpc F1 and mrpc accuracy columns
    assert "| failed |" in roberta.split("Failed or missing runs")[0]
    assert "| tiny-bert | lora[r=8] | cola | 2 | failed | torch.OutOfMemoryError: CUDA out of memory" in md
    assert md.count("| tiny-roberta | lora[r=8] | mrpc |") == 3

    page = parse_html(out / "index.html")
    fail_rows = [r for r, t in zip(page.rows, page.table_of_row) if t == "failures-table" and r[0] != "model"]
    got = {(r[0], r[1], r[2], r[3], r[4]) for r in fail_rows}
    assert got == {(m, lbl, t, str(s), st) for m, lbl, t, s, st in [
        ("tiny-bert", "bitfit", "sst2", 3, "missing"), ("tiny-bert", "full", "stsb", 2, "missing"),
        ("tiny-bert", "full", "stsb", 3, "missing"), ("tiny-bert", "lora[r=8]", "cola", 2, "failed"),
        ("tiny-roberta", "bitfit", "stsb", 1, "failed"), ("tiny-roberta", "bitfit", "stsb", 2, "failed"),
        ("tiny-roberta", "bitfit", "stsb", 3, "failed"), ("tiny-roberta", "lora[r=8]", "mrpc", 1, "missing"),
        ("tiny-roberta", "lora[r=8]", "mrpc", 2, "missing"), ("tiny-roberta", "lora[r=8]", "mrpc", 3, "missing")]}
    oom = next(r for r in fail_rows if r[5] == "torch.OutOfMemoryError")
    assert oom[6] == "CUDA out of memory. Tried 2 GiB" and oom[10].endswith(".log")
    main_rows = [r for r in page.rows if r and r[0] == "bitfit" and "failed" in r]
    assert main_rows and "missing (no stsb)" in main_rows[0]
    text = (out / "index.html").read_text()
    assert "broken__record.json" in text and "truncated: the JSON ends before it is complete" in text


# ------------------------------------------------------------------ files and links


def test_html_references_only_existing_files(report):
    index = report["out"] / "index.html"
    page = parse_html(index)
    local = []
    for tag, ref in page.refs:
        if ref.startswith("#"):
            continue
        parts = urlsplit(ref)
        assert not parts.scheme and not parts.netloc and not ref.startswith("/"), f"not relative: {ref}"
        target = (index.parent / unquote(parts.path)).resolve()
        assert target.is_file(), f"{tag} {ref} -> {target} does not exist"
        local.append(target)
    imgs = [ref for tag, ref in page.refs if tag == "img"]
    assert len(imgs) == 5 * len(fx.MODELS)
    on_disk = {p.resolve() for p in report["results"].rglob("*.json") if p.name != "not_a_record.json"}
    linked_records = {p for p in local if p.suffix == ".json"}
    assert linked_records == on_disk  # every record, incl. the superseded and the unreadable one
    assert len(on_disk) == 68
    assert any(p.suffix == ".log" for p in local)


def test_plot_and_table_files(report):
    out = report["out"]
    for model in fx.MODELS:
        for kind in ("pareto", "per_task", "memory", "throughput", "time"):
            png = next((out / "plots").glob(f"*_{model}__{kind}.png"))
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert png.with_suffix(".svg").read_text().lstrip().startswith("<?xml")
    tex = (out / "table.tex").read_text()
    for cmd in (r"\toprule", r"\midrule", r"\bottomrule", r"lora{[}r=8{]}", r"$\pm$", r"\%"):
        assert cmd in tex
    body = [line for line in tex.splitlines() if not line.startswith("%")]
    assert not any("%" in line.replace(r"\%", "") and not line.endswith("{%") for line in body)
    assert tex.count(r"\begin{table}") == len(fx.MODELS)
    html_tables = (out / "table.html").read_text()
    assert html_tables.count("<table") == len(fx.MODELS) and "lora[r=8]" in html_tables


def test_cli_success_and_rerun_replaces_stale_plots(report, tmp_path):
    out = tmp_path / "rep"
    (out / "plots").mkdir(parents=True)
    (out / "plots" / "stale.png").write_bytes(b"old")
    res = run_python(["-m", "bench.report", report["results"], "--out", out])
    assert res.returncode == 0, res.stderr
    assert "tiny-bert" in res.stdout and "63 ok" in res.stdout and "1 unreadable" in res.stdout
    assert "missing(mrpc)" in res.stdout and f"written to {out}" in res.stdout
    assert not (out / "plots" / "stale.png").exists()
    assert "Report results" in (out / "index.html").read_text()  # default name: the folder's name


@pytest.mark.parametrize("case", ["absent", "empty", "only_bad"])
def test_cli_exit_2_on_unusable_results_dir(tmp_path, case):
    rd = tmp_path / "results"
    if case != "absent":
        rd.mkdir()
    if case == "only_bad":
        (rd / "x.json").write_text('{"schema_version": 1, "status": "ok"}')
    res = run_python(["-m", "bench.report", rd, "--out", tmp_path / "out"], timeout=120)
    assert res.returncode == 2
    assert "error" in res.stderr and str(rd) in res.stderr
    assert not (tmp_path / "out" / "index.html").exists()


# ------------------------------------------------------------------ headless browser


def run_browser_check(report_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_python([ROOT / "scripts" / "check_report_browser.py", report_dir, *extra], timeout=180)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium absent (CI: apt-get install -y chromium)")
def test_report_renders_in_headless_chromium(report, tmp_path):
    shot = tmp_path / "shot.png"
    res = run_browser_check(report["out"], "--screenshot", str(shot))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "10/10 images decoded" in res.stdout and "OK" in res.stdout
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium absent (CI: apt-get install -y chromium)")
def test_browser_check_catches_broken_image_and_script_error(report, tmp_path):
    bad = tmp_path / "reports" / "bad"  # same depth as the original: relative record links still resolve
    shutil.copytree(report["out"], bad)
    os.symlink(report["results"], tmp_path / "results")
    next((bad / "plots").glob("*.png")).write_bytes(b"not a png")
    index = bad / "index.html"
    index.write_text(index.read_text().replace("</body>", "<script>undefinedFunction();</script></body>"))
    res = run_browser_check(bad)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "images not ok" in res.stdout and "undefinedFunction" in res.stdout


def test_minimal_records_and_a_model_with_only_failures(tmp_path):
    """Records without measurement sections, and a model that never succeeded, still give a report."""
    rd = tmp_path / "results"
    write_record(rd / "a.json", {"schema_version": 1, "status": "ok", "model": "m/odd", "task": "rte",
                                 "method": "lora", "seed": 0, "metrics": {"accuracy": 0.7}})
    write_record(rd / "b.json", {"schema_version": 1, "status": "failed", "model": "dead", "task": "cola",
                                 "method": "full", "seed": 0, "metrics": {}, "error": {"type": "X", "message": "a|b"}})
    rep = generate_report(rd, tmp_path / "out")
    rows = {(r["model"], r["row_type"]): r for r in read_csv(rep.out)}
    assert rows[("dead", "cell")]["status"] == "failed" and "X: a|b" in rows[("dead", "cell")]["errors"]
    assert rows[("dead", "summary")]["status"] == "missing" and rows[("dead", "summary")]["headline_mean"] == ""
    assert float(rows[("m/odd", "summary")]["headline_mean"]) == 0.7
    assert rows[("m/odd", "cell")]["params.trainable_mean"] == ""  # absent everywhere: column kept, empty
    assert len(list((rep.out / "plots").glob("*.png"))) == 10
