"""The reference data (bench/reproduce/published.csv) and the presets that reproduce it."""
from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from bench.reproduce import presets as PR
from bench.reproduce import published as R
from bench.reproduce import scaled as S

SHARED = Path(__file__).resolve().parents[2] / "shared" / "reference" / "published_glue.csv"


@pytest.fixture(scope="module")
def rows():
    return R.load()


def test_reference_file_parses(rows):
    assert len(rows) >= 300
    assert len({r.row_id for r in rows}) == len(rows)
    for r in rows:
        assert r.split in ("dev", "test", "not stated")
        assert 0 <= r.value <= 100, r.row_id


def test_every_row_cites_a_source(rows):
    for r in rows:
        assert r.source.strip() and r.table.strip(), r.row_id
        assert r.read_from.strip(), f"{r.row_id}: no read_from (where the number was read)"
        assert r.aggregation.strip(), f"{r.row_id}: aggregation not stated (write 'not stated ...')"
        assert re.search(r"(19|20)\d\d", r.source), f"{r.row_id}: source without a year"


def test_version_header_matches():
    first = R.CSV_PATH.read_text(encoding="utf-8").splitlines()[0]
    assert f"version {R.DATA_VERSION}" in first


def test_malformed_file_is_rejected(tmp_path):
    lines = R.CSV_PATH.read_text(encoding="utf-8").splitlines(keepends=True)
    header_at = next(i for i, line in enumerate(lines) if not line.startswith("#"))
    records = list(csv.reader(lines[header_at:]))
    records[1][R.COLUMNS.index("value")] = "ninety"
    bad = tmp_path / "bad.csv"
    with open(bad, "w", encoding="utf-8", newline="") as fh:
        fh.writelines(lines[:header_at])
        csv.writer(fh, lineterminator="\n").writerows(records)
    with pytest.raises(R.ReferenceError, match=r"bad\.csv:\d+: value"):
        R.load(bad)
    bad.write_text("# version 999\n" + "".join(lines[1:]), encoding="utf-8")
    with pytest.raises(R.ReferenceError, match="version"):
        R.load(bad)


@pytest.fixture(scope="module")
def shared_reference() -> Path:
    """The shared copy of the published numbers sits beside the clone, like the GLUE data; missing
    is a failure, not a skip, so a green run means every shared number was checked."""
    if not SHARED.is_file():
        pytest.fail(f"shared reference file not found at {SHARED} (../shared/reference/ beside the clone, "
                    "where CI also finds ../shared/data/glue)", pytrace=False)
    return SHARED


def test_every_shared_number_is_copied_unchanged(rows, shared_reference):
    """Each number of the shared file is in published.csv with the same source, table, model, task and
    citation (cells printed as 'a/b' are split into two rows, both keeping the printed text)."""
    mine = {(r.source, r.table, r.model, r.method, r.method_config, r.task, r.value_as_printed, r.read_from, r.notes)
            for r in rows}
    with open(shared_reference, encoding="utf-8") as fh:
        shared = list(csv.DictReader(fh))
    for s in shared:
        key = (s["source"], s["table"], s["model"], s["method"], s["method_config"], s["task"], s["value"],
               s["read_from"], s["notes"])
        assert key in mine, key[:6]
    split = [r for r in rows if "/" in r.value_as_printed]
    assert all(float(r.value) in [float(v) for v in r.value_as_printed.split("/")] for r in split)


def test_self_disagreement_is_kept_and_explained(rows):
    """LoRA README 0.8M vs Table 2 0.3M for RoBERTa-base LoRA: both recorded, the choice written down."""
    readme = [r for r in rows if r.config_id == "hu2021-readme/roberta-base/lora"]
    table2 = [r for r in rows if r.config_id == "hu2021-t2/roberta-base/lora"]
    assert readme and table2
    assert {r.trainable_params for r in readme} == {"0.8M"}
    assert {r.trainable_params for r in table2} == {"0.3M"}
    assert all("Table 2's 0.3M" in r.curation for r in readme)


def test_every_preset_names_rows_and_every_row_preset_exists(rows):
    configs = R.by_config(rows)
    keys = PR.preset_keys()
    assert "lora_paper/roberta_base_lora" in keys and "lora_paper/roberta_large_lora" in keys
    for key in keys:
        ref = PR.preset_reference(key)
        ids = ref.get("config_ids") or []
        assert ids, f"{key}: reference.config_ids is empty"
        for cid in ids:
            assert cid in configs, f"{key}: names unknown configuration {cid}"
            assert {r.preset for r in configs[cid]} == {key}, f"{cid} rows do not point back to {key}"
    for r in rows:
        if r.preset:
            assert PR.preset_path(r.preset).is_file(), f"{r.row_id}: preset {r.preset} does not exist"
            assert r.config_id in PR.preset_reference(r.preset)["config_ids"]


def test_presets_compose_with_the_published_settings():
    from bench.params import compose_config

    cfg = compose_config(["experiment=lora_paper/roberta_base_lora", "task=rte"])
    assert (cfg.model.name, cfg.method.name, cfg.method.r, cfg.method.lora_alpha) == ("roberta-base", "lora", 8, 16)
    assert list(cfg.method.target_modules) == ["query", "value"]
    assert (cfg.train.lr, cfg.train.epochs, cfg.train.batch_size, cfg.train.max_seq_len) == (5e-4, 80, 32, 512)
    unknown = compose_config(["experiment=lora_paper/roberta_base_lora", "task=cola"])
    assert unknown.train.epochs is None and unknown.train.lr is None  # unknown stays unknown
    deb = compose_config(["experiment=lora_paper/deberta_xxl_lora", "task=qqp"])
    assert (deb.method.r, deb.model.config_overrides.cls_dropout, deb.train.max_seq_len) == (16, 0.2, 320)
    # published setup: the native head, the scripts' 8-process effective batch, MNLI's checkpoint where --lora_path
    assert (cfg.model.head, cfg.train.grad_accum_steps, cfg.train.init_from, cfg.save_delta) == ("native", 8, "mnli", True)
    assert compose_config(["experiment=lora_paper/roberta_base_lora", "task=qnli"]).train.init_from is None
    assert deb.model.head == "native"


def test_parse_counts_precision():
    (p,) = R.parse_counts("0.3M")
    assert p.contains(294_912) and not p.contains(350_000) and p.contains(250_000)
    (p,) = R.parse_counts("125.0M")
    assert not p.contains(124_645_632)
    (p,) = R.parse_counts("330M")  # trailing zero not significant
    assert p.contains(334_092_288) and not p.contains(335_141_888)
    pct, approx = R.parse_counts("100% (~110M)")
    assert pct.kind == "percent" and approx.approx
    assert R.parse_counts("not stated") == []
    assert R.model_size_in_name("deberta-v2-xxlarge (1.5B)").value == 1.5e9


def test_scaled_spec_maps_to_published_rows(rows):
    spec = S.load_spec()
    configs = R.by_config(rows)
    assert set(spec.tasks) <= {"sst2", "mrpc", "stsb", "cola", "rte", "qnli", "qqp", "mnli"}
    assert len(spec.seeds) >= 2
    for label, m in spec.methods.items():
        if m["published"]:
            assert m["published"] in configs, label
            assert {r.task_key for r in configs[m["published"]]} >= set(spec.tasks)
    members = {x for c in spec.claims for x in (c["a"], c["b"], c.get("c")) if x}
    assert members <= set(spec.methods)


def _rec(method, task, seed, value, metric, params=1000):
    return {"status": "ok", "method_label": method, "task": task, "seed": seed, "metrics": {metric: value},
            "params": {"trainable_excl_head": params}, "time": {"total_s": 1.0}, "headline_metric": metric}


def test_claims_are_computed_from_numbers(rows):
    """The same claim flips with the numbers: nothing is asserted."""
    spec = S.load_spec()
    pub = S.published_values(spec, rows)
    metric = S.metric_for_task(spec, pub)

    def records(lora_value):
        out = []
        for seed in spec.seeds:
            for task in spec.tasks:
                for label in spec.methods:
                    v = {"full": 0.80, "lora": lora_value, "prompt_tuning": 0.50}.get(label, 0.78)
                    out.append(_rec(label, task, seed, v, metric[task], 100 if label == "lora" else 20000))
        return out

    good = S.build(records(0.79), spec, rows)["claims"].set_index("claim")
    bad = S.build(records(0.60), spec, rows)["claims"].set_index("claim")
    assert good.loc["lora_close_to_full", "verdict"].startswith("holds")
    assert bad.loc["lora_close_to_full", "verdict"].startswith("does not hold")
    assert good.loc["prompt_below_full", "verdict"].startswith("holds")
    assert good.loc["lora_close_to_full", "published"].startswith("holds")  # LoRA 84.9 vs FT 85.0 published
    assert good.loc["lora_param_fraction", "verdict"] == "holds"


def test_claim_with_disagreeing_seeds_is_mixed(rows):
    spec = S.load_spec()
    pub = S.published_values(spec, rows)
    metric = S.metric_for_task(spec, pub)
    recs = []
    for seed in spec.seeds[:2]:
        for task in spec.tasks:
            for label in spec.methods:
                v = 0.80 if label == "full" else 0.50
                if label == "lora":
                    v = 0.80 if seed == spec.seeds[0] else 0.70
                recs.append(_rec(label, task, seed, v, metric[task]))
    claims = S.build(recs, spec, rows)["claims"].set_index("claim")
    assert claims.loc["lora_close_to_full", "verdict"].startswith("mixed")


def test_weights_availability_is_checked_not_assumed():
    from bench.params import compose_config
    from bench.reproduce.presets import weights_available

    assert weights_available(compose_config(["model=minilm"]).model)[0]
    ok, why = weights_available(compose_config(["model=tiny_bert"]).model)
    assert not ok and "without weights" in why


def test_paper_preset_runs_nothing_without_weights(tmp_path, monkeypatch):
    """Offline without a cached roberta-base: no cell is planned and every task says why. The Hugging
    Face cache is pointed at an empty folder, so the test means the same on a machine that has
    the weights cached."""
    import huggingface_hub.constants

    from bench.reproduce.presets import plan_preset

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty_hf_cache"))
    plan = plan_preset("lora_paper/roberta_base_lora", tmp_path, None, None)
    assert not plan["weights"][0] and "not in the local Hugging Face cache" in plan["weights"][1]
    assert plan["cells"] == []
    assert set(plan["skip"]) == {"mnli", "sst2", "mrpc", "cola", "qnli", "qqp", "rte", "stsb"}
    assert all(v.startswith("not run: weights unavailable") for v in plan["skip"].values())
    assert "also unknown" in plan["skip"]["cola"] and "are known" in plan["skip"]["rte"]
    # roberta-large STS-B starts from MNLI (train.init_from), whose hyperparameters are unknown: never runnable
    large = plan_preset("lora_paper/roberta_large_lora", tmp_path, None, None)
    assert "train.init_from=mnli: that cell cannot run" in large["skip"]["stsb"]
    assert "are known" in large["skip"]["sst2"]


def test_compare_rows_tolerance_and_test_split(rows):
    from bench.reproduce.presets import compare_rows

    plan = {"key": "lora_paper/roberta_base_lora", "ref": {"aggregate": "median"}, "skip": {}, "seeds": 3}
    mine = [r for r in rows if r.config_id == "hu2021-t2/roberta-base/lora" and r.task_key in ("rte", "mrpc")]
    recs = [{"status": "ok", "task": "rte", "seed": s, "metrics": {"accuracy": v}}
            for s, v in enumerate((0.860, 0.870, 0.990))]
    recs += [{"status": "ok", "task": "mrpc", "seed": s, "metrics": {"accuracy": v}} for s, v in enumerate((0.80, 0.81, 0.82))]
    recs.append({"status": "ok", "task": "rte", "seed": 5, "metrics": {"accuracy": 0.1}})  # not a planned seed
    out = {o["task"]: o for o in compare_rows(plan, mine, recs)}
    assert out["RTE"]["measured"].startswith("87.0 (median of 3)") and out["RTE"]["verdict"] == "reproduced"
    assert out["RTE"]["tolerance"].startswith("±1.4")
    assert out["MRPC"]["verdict"] == "not reproduced"
    test_rows = [r for r in rows if r.config_id == "hu2021-nlu-test/deberta-v2-xxlarge/lora"][:1]
    (t,) = compare_rows(plan, test_rows, [])
    assert t["verdict"].startswith("not comparable")
