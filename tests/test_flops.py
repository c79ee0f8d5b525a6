"""Model FLOPs (bench/measure/flops.py) against hand counts, and MFU in a real cell's record."""
from __future__ import annotations

import json

import pytest
import torch
from clitools import TINY, records_in, run_bench
from transformers import BertConfig, BertModel

from bench.measure import matmul_peak as peak
from bench.measure.flops import Shapes, eval_shapes, plan_for
from bench.methods import Adapter, Full, HeadOnly, LoRA, PromptTuning
from bench.models.backbones import SequenceClassifier

H, HEADS, I, C = 8, 2, 16, 2  # hidden, attention heads, intermediate, classes


def _model(method, layers: int = 1):
    """A BERT encoder of the hand-count size (hidden 8, 2 heads, intermediate 16) + the uniform head,
    with `method` applied as bench.models.build.build_cell applies it."""
    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=H, num_hidden_layers=layers, num_attention_heads=HEADS,
                        intermediate_size=I, max_position_embeddings=64)
    model = SequenceClassifier(BertModel(config, add_pooling_layer=False), H, C, "mean", 0.1)
    method.apply(model)
    method.finalize(model)
    return model


ONE_ROW_OF_5 = Shapes(rows=1, tokens=5, squares=25)

# One layer, one sequence of length L = 5, every matrix product written out, in multiply-accumulates
# (MACs; FLOPs = 2 * MACs):
Q = K = V = 5 * 8 * 8          # projections: L x H times H x H                = 320 each
SCORES = 2 * (5 * 4 * 5)       # Q K^T per head: (L x d) times (d x L), d = 4  = 200 (2 heads)
CONTEXT = 2 * (5 * 5 * 4)      # P V per head: (L x L) times (L x d)           = 200
ATT_OUT = 5 * 8 * 8            # = 320
FFN_IN = 5 * 8 * 16            # = 640
FFN_OUT = 5 * 16 * 8           # = 640
HEAD = 8 * 2                   # pooled vector times H x C, once per sequence = 16
FORWARD_MACS = Q + K + V + SCORES + CONTEXT + ATT_OUT + FFN_IN + FFN_OUT + HEAD
assert FORWARD_MACS == 2976


def test_forward_of_one_bert_layer_is_the_hand_count():
    plan = plan_for(_model(Full(lr=1e-3)))
    assert plan.forward(ONE_ROW_OF_5) == 2 * FORWARD_MACS == 5952


def test_training_counts_backward_by_which_gradients_are_computed():
    # full finetuning: embeddings train, so every product's input needs a gradient and every weight
    # trains (and both operands of Q K^T and P V carry gradients): backward = 2 x forward everywhere
    assert plan_for(_model(Full(lr=1e-3))).train(ONE_ROW_OF_5) == 3 * 2 * FORWARD_MACS
    # frozen backbone, live head: the backbone's backward is never run; the head's weight gradient is
    assert plan_for(_model(HeadOnly(lr=1e-3, cache_features=False))).train(ONE_ROW_OF_5) == 2 * (FORWARD_MACS + HEAD)
    # LoRA r=2 on query and value, embeddings frozen, by hand (MACs x (1 + operands with a gradient)):
    r = 2
    a = b = 5 * 8 * r  # A: L x H times H x r; B: L x r times r x H   = 80 each
    lora = (Q * 1 + a * 2 + b * 3          # query frozen, input needs no gradient: forward only; A: weight grad; B: weight + input
            + K * 1                        # key: nothing below it trains, its output needs no gradient
            + V * 1 + a * 2 + b * 3        # value as query
            + SCORES * 2                   # Q needs a gradient (LoRA), K does not
            + CONTEXT * 3                  # P (through Q) and V (LoRA) both do
            + ATT_OUT * 2 + FFN_IN * 2 + FFN_OUT * 2   # frozen, above trained parameters: input gradient only
            + HEAD * 3)                    # trained weight, input needs a gradient
    assert lora == 6008
    assert plan_for(_model(LoRA(lr=1e-3, r=r, dropout=0.0))).train(ONE_ROW_OF_5) == 2 * lora


@pytest.mark.parametrize("r", [1, 4])
def test_lora_extra_is_r_times_in_plus_out_times_2_per_token_per_module(r):
    layers, s = 2, Shapes(rows=3, tokens=3 * 7, squares=3 * 49)
    base = plan_for(_model(HeadOnly(lr=1e-3, cache_features=False), layers)).forward(s)
    lora = plan_for(_model(LoRA(lr=1e-3, r=r, dropout=0.0, target_modules=["query", "value"]), layers))
    per_token_per_module = r * (H + H) * 2
    assert lora.forward(s) - base == s.tokens * per_token_per_module * 2 * layers
    assert lora.forward(s, ("method",)) == s.tokens * per_token_per_module * 2 * layers


def test_adapter_and_prompt_work():
    s = ONE_ROW_OF_5
    base = plan_for(_model(HeadOnly(lr=1e-3, cache_features=False)))
    adapter = plan_for(_model(Adapter(lr=1e-3, size=4)))
    # two bottlenecks per layer (after attention and after the feed-forward), each down H->m and up m->H
    assert adapter.forward(s) - base.forward(s) == 2 * 2 * (5 * 8 * 4 + 5 * 4 * 8)
    # prompt tuning: n virtual tokens lengthen every row, attention's L^2 included
    prompt = plan_for(_model(PromptTuning(lr=1e-3, num_virtual_tokens=3, init="random")))
    assert prompt.prompt_tokens == 3
    assert prompt.forward(s) == base.forward(Shapes(rows=1, tokens=8, squares=64))


def test_eval_shapes_follow_predicts_batches():
    # sorted lengths [2, 3, 5, 9, 10] in batches of 2 -> widths 3, 9, 10 (rounded up to 4: 4, 12, 12)
    assert eval_shapes([9, 2, 5, 10, 3], 2, 1) == Shapes(rows=5, tokens=2 * 3 + 2 * 9 + 10, squares=2 * 9 + 2 * 81 + 100)
    assert eval_shapes([9, 2, 5, 10, 3], 2, 4) == Shapes(rows=5, tokens=2 * 4 + 2 * 12 + 12, squares=2 * 16 + 3 * 144)


def test_peak_is_measured_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("BENCH_PEAK_QUIET_MAX", "1")  # whatever else runs on this machine counts as quiet
    monkeypatch.setattr(peak, "SIZE", {"cpu": 256})
    first = peak.peak_flops(torch.device("cpu"), "fp32")
    assert first["measured_now"] and first["flops_per_s"] > 0 and "256x256 float32" in first["method"]
    again = peak.peak_flops(torch.device("cpu"), "fp32")
    assert not again["measured_now"] and again["flops_per_s"] == first["flops_per_s"]
    assert (tmp_path / "peak_flops.json").is_file()


def test_a_busy_peak_is_measured_again_and_the_best_kept(tmp_path, monkeypatch):
    """A peak measured while other processes used the CPU is not trusted: the next call measures
    again, and the cache keeps the higher of the two (a busy machine only makes a peak look lower)."""
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("BENCH_PEAK_QUIET_MAX", "-1")  # nothing counts as quiet
    monkeypatch.setattr(peak, "SIZE", {"cpu": 256})
    first = peak.peak_flops(torch.device("cpu"), "fp32")
    assert first["measured_now"] and first["quiet"] is False
    data = json.loads((tmp_path / "peak_flops.json").read_text())
    key = next(iter(data))
    data[key]["flops_per_s"] = 1e15  # a (pretend) earlier, truer measurement
    (tmp_path / "peak_flops.json").write_text(json.dumps(data))
    again = peak.peak_flops(torch.device("cpu"), "fp32")
    assert again["measured_now"] and again["flops_per_s"] == 1e15
    monkeypatch.setenv("BENCH_PEAK_QUIET_MAX", "1")
    third = peak.peak_flops(torch.device("cpu"), "fp32")
    assert third["measured_now"] and third["quiet"] and third["flops_per_s"] == 1e15
    assert not peak.peak_flops(torch.device("cpu"), "fp32")["measured_now"]  # quiet now: cached


@pytest.mark.slow
def test_a_tiny_bert_cell_records_a_plausible_mfu(tmp_path, glue_dir):
    proc = run_bench(["-m", *TINY, "task=sst2", "method=lora,full", "inference.enabled=false"], glue_dir, tmp_path,
                     extra_env={"BENCH_CACHE_DIR": tmp_path / "cache", "BENCH_PEAK_QUIET_MAX": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = {r["method"]: r for r in records_in(tmp_path)}
    for rec in recs.values():
        f = rec["flops"]
        assert 0 < f["mfu"] < 1.5, f
        assert f["train_flops"] >= f["train_flops_timed"] > 0 and f["eval_flops"] > 0
        # achieved FLOP/s is over the timed steps that samples/s is over (here every batch is full)
        assert rec["data"]["train_examples"] % rec["train"]["batch_size"] == 0
        timed_s = rec["throughput"]["timed_steps"] * rec["train"]["batch_size"] / rec["throughput"]["train_samples_per_s"]
        assert f["train_flops_timed"] / f["train_flops_per_s"] == pytest.approx(timed_s, rel=1e-9)
        assert f["peak"]["precision"] == "fp32" and f["peak"]["threads"] == rec["env"]["torch_threads"]
    # the peak was measured by the first cell and read from the cache by the second
    assert sorted(r["flops"]["peak"]["measured_now"] for r in recs.values()) == [False, True]
    # full finetuning does more work per step than LoRA on the same batches (weight gradients everywhere)
    assert recs["full"]["flops"]["train_flops"] > recs["lora"]["flops"]["train_flops"]

