"""Retention (bench/retention, docs/retention.md): forgetting, representation drift and intruder
dimensions, measured on real models and real data; the report's and the gate's side on records."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from bench.retention.measure import linear_cka, spearman
from bench.retention.weights import intruder_count, intruders


def _orthonormal(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))[0]


def _base_matrix(n: int = 48) -> torch.Tensor:
    """A matrix with a decaying spectrum (well separated top singular values), as pretrained weights have."""
    u, v = _orthonormal(n, 1), _orthonormal(n, 2)
    return (u * torch.linspace(5.0, 0.1, n, dtype=torch.float64)) @ v.T


def test_intruders_zero_for_an_unchanged_matrix_and_found_for_a_planted_orthogonal_update():
    w0 = _base_matrix()
    assert intruder_count(w0, w0.clone(), k=10, epsilon=0.5)[0] == 0
    u0 = torch.linalg.svd(w0)[0]
    # a direction orthogonal to the base's top 10 left singular vectors, spread over the rest
    d = u0[:, 10:].sum(1)
    d = d / d.norm()
    planted = w0 + 8.0 * torch.outer(
        d, _orthonormal(48, 3)[:, 0]
    )  # rank 1, larger than the top singular value
    n, low = intruder_count(w0, planted, k=10, epsilon=0.5)
    assert n >= 1 and low < 0.5
    # the same update along the base's own top direction is no intruder
    aligned = w0 + 8.0 * torch.outer(u0[:, 0], torch.linalg.svd(w0)[2][0])
    assert intruder_count(w0, aligned, k=10, epsilon=0.5)[0] == 0


def test_intruders_over_modules_count_only_changed_matrices():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.query, self.value, self.key = nn.Linear(48, 48), nn.Linear(48, 48), nn.Linear(48, 48)

    block = Block()
    with torch.no_grad():
        block.query.weight.copy_(_base_matrix().float())
    before = {n: m.weight.detach().clone() for n, m in (("query", block.query), ("value", block.value))}
    out = intruders(block, before, ["query", "value"], k=10, epsilon=0.5)
    assert out["status"] == "not_applicable" and "unchanged" in out["why"]
    with torch.no_grad():
        u0 = torch.linalg.svd(block.query.weight.double())[0]
        d = u0[:, 10:].sum(1)  # a mix of the base's minor directions: like none of its singular vectors
        block.query.weight.add_((8.0 * torch.outer(d / d.norm(), u0[:, 30])).float())
    out = intruders(block, before, ["query", "value"], k=10, epsilon=0.5)
    assert out["status"] == "measured" and out["matrices"] == 1 and out["unchanged_matrices"] == 1
    assert out["per_matrix"]["query"] >= 1 and out["total"] == out["per_matrix"]["query"]


def test_cka_and_spearman_on_known_cases():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 16))
    rot = np.linalg.qr(rng.normal(size=(16, 16)))[0]
    assert linear_cka(x, 3.0 * x @ rot) == pytest.approx(1.0, abs=1e-9)  # invariant to rotation and scale
    assert linear_cka(x, rng.normal(size=(200, 16))) < 0.3
    from scipy.stats import spearmanr

    a, b = rng.normal(size=50), np.repeat([0.0, 1.0], 25)  # ties, as MRPC's 0/1 labels
    assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)


def _cfg(glue_dir, tmp_path, *extra):
    from bench.params import compose_config

    return compose_config(
        [
            "model=tiny_bert",
            "task=sst2",
            "method=lora",
            "train=quick",
            "train.max_train_samples=16",
            "train.max_eval_samples=16",
            "train.threads=1",
            "inference.enabled=false",
            "retention.enabled=true",
            "retention.pairs=60",
            f"data.glue_dir={glue_dir}",
            f"results_dir={tmp_path}",
            "cache_dir=null",
            *extra,
        ]
    )


@pytest.mark.slow
def test_an_untrained_cell_shows_no_forgetting_and_no_drift_and_records_its_data(glue_dir, tmp_path):
    from bench.recipe.finetune import run_cell

    rec = run_cell(_cfg(glue_dir, tmp_path, "train.lr=1e-9"))
    ret = rec["retention"]
    assert ret["skill"]["kind"] == "zero_shot_similarity"
    assert abs(ret["skill"]["forgetting"]) < 1e-3 and np.isfinite(ret["skill"]["before"])
    assert ret["drift"]["cka"] > 0.9999
    assert ret["intruders"]["status"] == "measured" and ret["intruders"]["total"] == 0
    data = ret["data"]
    assert (data["task"], data["split"], data["rows"], data["sentences"]) == ("stsb", "dev", 60, 120)
    assert data["file"].endswith("STS-B/dev.tsv") and data["fingerprint"].startswith("sha256:")
    assert ret["reference"]["cached"] is False


def test_the_before_side_is_cached_per_backbone_as_data(glue_dir, tmp_path):
    from bench.models.build import build_cell, method_from_config
    from bench.retention import Retention

    cfg = _cfg(glue_dir, tmp_path)

    def measure():
        cell = build_cell(cfg.model, method_from_config(cfg), 2, 0, 64)
        r = Retention(cfg, cell.model, cell.tokenizer, cell.backbone_config, 0, torch.device("cpu"), "fp32")
        r.snapshot()
        return r.measure()

    first, second = measure(), measure()
    assert first["reference"]["cached"] is False and second["reference"]["cached"] is True
    assert second["skill"]["before"] == first["skill"]["before"]
    entry = tmp_path / ".retention_cache" / f"{first['reference']['key']}.npz"
    with np.load(entry, allow_pickle=False) as z:  # data only: arrays and a JSON text, no pickle
        assert json.loads(str(z["meta"]))["values"]["skill"] == pytest.approx(first["skill"]["before"])
    entry.write_bytes(b"not an npz")  # an unreadable entry is a miss, measured again
    assert measure()["reference"]["cached"] is False


def test_stsb_cells_read_a_stand_in_they_never_saw(glue_dir, tmp_path):
    from bench.retention.data import load_sample

    cfg = _cfg(glue_dir, tmp_path, "task=stsb")
    sample = load_sample(cfg, 40)
    assert sample.info["task"] == "mrpc" and sample.info["file"].endswith("MRPC/dev.tsv")
    assert set(sample.gold) <= {0.0, 1.0} and len(sample.sentences) == 80


@pytest.mark.slow
def test_a_backbone_overwritten_with_noise_shows_large_forgetting(glue_dir, tmp_path):
    """MiniLM (real, pretrained): its similarity skill and its features are lost when every backbone
    weight is replaced by noise; the intruder count sees the query/value matrices replaced."""
    from bench.models.build import build_cell, method_from_config
    from bench.retention import Retention

    cfg = _cfg(glue_dir, tmp_path, "model=minilm", "retention.pairs=100")
    cell = build_cell(cfg.model, method_from_config(cfg), 2, 0, 128)
    r = Retention(cfg, cell.model, cell.tokenizer, cell.backbone_config, 0, torch.device("cpu"), "fp32")
    r.snapshot()
    with torch.no_grad():
        for p in cell.model.backbone.parameters():
            p.normal_(0.0, 0.05)
    ret = r.measure()
    assert ret["skill"]["before"] > 0.6  # all-MiniLM-L6-v2 is a good zero-shot similarity model
    assert ret["skill"]["forgetting"] > 0.3
    assert ret["drift"]["cka"] < 0.8
    assert ret["intruders"]["mean_per_matrix"] > 5


def test_retention_settings_leave_the_run_id_unchanged(glue_dir, tmp_path):
    from omegaconf import OmegaConf

    from bench.records.schema import config_hash

    def h(*extra):
        return config_hash(OmegaConf.to_container(_cfg(glue_dir, tmp_path, *extra), resolve=True))

    assert h() == h("retention.enabled=false", "retention.pairs=500", "retention.intruder_k=5")


def test_a_bad_retention_setting_names_the_option(glue_dir, tmp_path):
    from bench.errors import ConfigError
    from bench.recipe.validate import check

    with pytest.raises(ConfigError, match=r"retention\.intruder_epsilon"):
        check(_cfg(glue_dir, tmp_path, "retention.intruder_epsilon=2"))


# -- the report and the gate -------------------------------------------------------------------------


def _records(folder):
    from report_fixtures import make_record

    from bench.records.schema import write_record

    forgetting = {"full": [0.10, 0.12, 0.11], "lora[r=8]": [0.02, 0.03, 0.025]}
    for method, values in forgetting.items():
        for seed, f in zip((1, 2, 3), values):
            rec = make_record("tiny-bert", method, "sst2", seed)
            rec["retention"] = {
                "skill": {"before": 0.8, "after": 0.8 - f, "forgetting": f},
                "drift": {"cka": 1 - f},
                "intruders": {"total": 0 if method == "full" else 4, "mean_per_matrix": 0.0},
            }
            write_record(folder / f"{rec['run_id']}.json", rec)


def test_report_shows_retention_with_intervals_frontier_and_verdicts(tmp_path):
    from bench.analysis.aggregate import build
    from bench.records.schema import load_records
    from bench.report.retention import retention_table, retention_verdicts, write_retention

    _records(tmp_path / "res")
    agg = build(load_records(tmp_path / "res")[0])
    table = retention_table(agg)
    full = table[table["method_label"] == "full"].iloc[0]
    assert full["retention.forgetting_mean"] == pytest.approx(0.11)
    assert full["retention.forgetting_ci_low"] < 0.11 < full["retention.forgetting_ci_high"]
    v = retention_verdicts(agg)
    f = v[v["quantity"] == "retention.forgetting"].iloc[0]
    assert f["verdict"] == "lora[r=8] forgets less" and f["p_adj"] < 0.05
    i = v[v["quantity"] == "retention.intruders"].iloc[0]
    assert i["verdict"] == "full fewer intruder dimensions"
    paths, html = write_retention(agg, tmp_path / "out", plots := [])
    assert "forgets less" in paths["retention_md"].read_text() and plots and "Retention" in html


def test_gate_fails_on_more_forgetting_when_asked(tmp_path):
    from bench.records.schema import load_records
    from bench.regress.baseline import make_baseline
    from bench.regress.cells import summarize
    from bench.regress.check import Settings, run_check

    _records(tmp_path / "base")
    doc, _ = make_baseline(load_records(tmp_path / "base")[0], "b", str(tmp_path))
    worse = load_records(tmp_path / "base")[0]
    for r in worse:
        r["retention"]["skill"]["forgetting"] += 0.2
    cells, _ = summarize(worse)
    gated = {r.cid: r.verdict for r in run_check(doc, cells, Settings(gate_on=["retention.forgetting"]))}
    plain = {r.cid: r.verdict for r in run_check(doc, cells, Settings())}
    assert set(gated.values()) == {"REGRESSED"} and set(plain.values()) == {"ok"}


@pytest.mark.parametrize("model", ["tiny_gpt2", "tiny_llama"])
def test_decoders_measure_language_model_loss_where_the_output_layer_is_tied(model, glue_dir, tmp_path):
    from bench.models.build import build_cell, method_from_config
    from bench.retention import Retention

    cfg = _cfg(glue_dir, tmp_path, f"model={model}", "method=head_only", "retention.pairs=20")
    cell = build_cell(cfg.model, method_from_config(cfg), 2, 0, 64)
    r = Retention(cfg, cell.model, cell.tokenizer, cell.backbone_config, 0, torch.device("cpu"), "fp32")
    r.snapshot()
    ret = r.measure()
    assert ret["skill"]["kind"] == "lm_loss" and ret["drift"]["cka"] == pytest.approx(1.0, abs=1e-6)
    if model == "tiny_gpt2":  # tied: the loss of an unchanged model is the base's, > 0
        assert ret["skill"]["before"] > 0 and ret["skill"]["forgetting"] == pytest.approx(0.0, abs=1e-6)
    else:  # untied output layer: no loss, and the record says why
        assert ret["skill"]["forgetting"] is None and "untied" in ret["skill"]["why_none"]
