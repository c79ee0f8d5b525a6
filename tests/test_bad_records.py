"""Bad record files are named by file and reason (truncated, unknown schema_version, not a record) by
bench.records.schema.load_records, the report's terminal summary and the regression gate, which go on (issue #28)."""
from __future__ import annotations

import json
from pathlib import Path

from clitools import run_python
from report_fixtures import _write, make_record

from bench.records.schema import load_records


def _bad_folder(root: Path) -> dict[str, Path]:
    """Two good records, then one file of each bad kind, and JSON that is no record (skipped silently)."""
    for seed in (1, 2):
        _write(root, make_record("tiny-bert", "full", "sst2", seed))
    good = json.loads(next((root / "fixture").glob("*.json")).read_text())
    sweep = root / "fixture"
    files = {"truncated": sweep / "tiny-bert__sst2__lora__s0__0badf00d.json",
             "v99": sweep / "tiny-bert__sst2__ia3__s0__99999999.json",
             "list": sweep / "tiny-bert__sst2__bitfit__s0__12345678.json",
             "fields": sweep / "tiny-bert__cola__full__s0__abcdef01.json"}
    text = json.dumps(good, indent=2)
    files["truncated"].write_text(text[: len(text) // 2])  # a copy or a write cut short
    files["v99"].write_text(json.dumps(dict(good, schema_version=99)))
    files["list"].write_text("[1, 2, 3]")
    files["fields"].write_text(json.dumps({k: v for k, v in good.items() if k != "seed"}))
    (sweep / "deltas" / "x").mkdir(parents=True)
    (sweep / "deltas" / "x" / "adapter_config.json").write_text('{"r": 8}')  # a delta's config: no record
    return files


def test_load_records_names_each_bad_file_with_its_kind(tmp_path):
    files = _bad_folder(tmp_path)
    good, bad = load_records(tmp_path)
    assert len(good) == 2
    by_name = {b.path.name: b for b in bad}
    assert sorted(by_name) == sorted(p.name for p in files.values())  # the delta's config is not listed
    assert by_name[files["truncated"].name].kind == "truncated"
    assert by_name[files["truncated"].name].reason.startswith("truncated: the JSON ends before it is complete")
    v99 = by_name[files["v99"].name]
    assert v99.kind == "unknown schema_version" and v99.reason.startswith("unknown schema_version 99")
    assert "reads 1, 2, 3" in v99.reason
    assert by_name[files["list"].name].kind == "not a record"
    assert "a JSON list" in by_name[files["list"].name].reason
    assert by_name[files["fields"].name].reason == "not a record: missing field(s) seed"


def test_report_and_gate_name_each_bad_record_and_go_on(tmp_path):
    files = _bad_folder(tmp_path / "results")
    res = run_python(["-m", "bench.report", tmp_path / "results", "--out", tmp_path / "rep",
                      "--bootstrap-samples", "200"])
    assert res.returncode == 0, res.stderr
    assert "4 unreadable" in res.stdout
    for key, reason in (("truncated", "truncated: the JSON ends"), ("v99", "unknown schema_version 99"),
                        ("list", "not a record: named like one"), ("fields", "not a record: missing field(s) seed")):
        line = next((ln for ln in res.stdout.splitlines() if files[key].name in ln), "")
        assert "unreadable (ignored):" in line and reason in line, res.stdout
    assert (tmp_path / "rep" / "index.html").is_file()
    save = run_python(["-m", "bench.regress", "save", tmp_path / "results", "--name", "b", "--out", tmp_path])
    assert save.returncode == 0, save.stdout + save.stderr
    check = run_python(["-m", "bench.regress", "check", "--baseline", tmp_path / "b.json", tmp_path / "results", "--no-paired"])
    assert check.returncode == 0, check.stdout + check.stderr
    assert "4 unreadable" in check.stdout
    for p in files.values():
        assert f"unreadable record (ignored): {p}: " in check.stdout
