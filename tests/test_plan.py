"""bench.plan: a training step's peak memory predicted on fake tensors (issue #44).

The closed forms it must reproduce (AdamW's two fp32 moments per trainable parameter, the weights as stored),
what the levers must change (bf16 weights halve the frozen weights, checkpointing cuts activations), and the
command line (`--devices`: fits or not, the largest batch; bad input exits 2). The comparison with measured
peaks is docs/scale.md's table (scripts/plan_scale_check.py)."""
from __future__ import annotations

import pytest
from clitools import run_python

from bench.errors import ConfigError
from bench.plan import GIB, parse_size, predict

pytestmark = pytest.mark.heavy  # scheduled first (tests/conftest.py): its sweeps take tens of seconds


@pytest.fixture(scope="module")
def lora_fp32():
    return predict(["model=tiny_llama", "method=lora", "train.batch_size=4", "train.max_seq_len=64"], target="cpu")


def test_closed_forms(lora_fp32):
    r = lora_fp32
    split = r["split_at_peak"]
    trainable = r["params"]["trainable"]
    assert r["delta_bytes"] == 4 * trainable  # trainable tensors stay fp32
    # AdamW: exp_avg and exp_avg_sq per trainable parameter, fp32, plus one 4-byte step count per tensor
    moments = split["optimizer_states"] - 2 * 4 * trainable
    assert 0 <= moments <= 4 * 64 and moments % 4 == 0, split
    assert split["weights"] == r["resident_before_bytes"]  # nothing is created as a weight during the step
    # the peak is in the second step's forward/backward (AdamW's moments exist, the first step's grads are freed)
    assert 0 <= split["gradients"] <= 4 * trainable and split["activations"] > 0
    assert r["peak_bytes"] == sum(split.values())


def test_levers_move_what_they_should(lora_fp32):
    bf16 = predict(["model=tiny_llama", "method=lora", "train.batch_size=4", "train.max_seq_len=64",
                    "train.weights_dtype=bf16"], target="cpu")
    frozen_fp32 = lora_fp32["resident_before_bytes"] - 4 * lora_fp32["params"]["trainable"]
    frozen_bf16 = bf16["resident_before_bytes"] - 4 * bf16["params"]["trainable"]
    assert bf16["precision"] == "bf16" and abs(frozen_bf16 * 2 - frozen_fp32) <= 1024  # buffers stay as they are
    long = ["model=tiny_llama", "method=lora", "train.batch_size=8", "train.max_seq_len=256"]
    off = predict(long, target="cpu")
    on = predict([*long, "train.gradient_checkpointing=true"], target="cpu")
    # 2 layers: checkpointing keeps each layer's input, and one layer is recomputed at a time in the backward
    assert on["split_at_peak"]["activations"] < 0.8 * off["split_at_peak"]["activations"]
    assert off["split_at_peak"]["activations"] > 4 * lora_fp32["split_at_peak"]["activations"]  # 8x the tokens


def test_parse_size():
    assert parse_size("24GiB") == 24 * GIB and parse_size("40 GB") == 40 * 10 ** 9 and parse_size("512mib") == 2 ** 29
    with pytest.raises(ConfigError, match="--devices"):
        parse_size("lots")


def test_cli_devices_and_bad_input():
    proc = run_python(["-m", "bench.plan", "model=tiny_llama", "method=lora", "train.batch_size=4",
                       "train.max_seq_len=64", "--devices", "1GiB,1MiB", "--json"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    import json

    r = json.loads(proc.stdout)
    big, small = r["devices"]
    assert big["fits"] and not small["fits"] and big["largest_batch"] > 4 and small["largest_batch"] == 0
    # the line through two batch sizes: its largest batch's predicted peak is within the device
    assert big["fixed_bytes"] + big["per_example_bytes"] * big["largest_batch"] <= big["device_bytes"]
    bad = run_python(["-m", "bench.plan", "model=tiny_llama", "--devices", "huge"])
    assert bad.returncode == 2 and "--devices" in bad.stderr and "Traceback" not in bad.stderr
    nf4 = run_python(["-m", "bench.plan", "model=tiny_llama", "train.weights_dtype=nf4"])
    assert nf4.returncode == 2 and "nf4" in nf4.stderr


def test_by_depth_equals_every_layer(tmp_path):
    """2 and 4 layers carried to 6 give what running all 6 gives (a stack of identical layers)."""
    import json

    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 6, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 32000,
        "tie_word_embeddings": True}))
    ov = ["model=auto", f"model.source={tmp_path}", "method=lora", "train.batch_size=4", "train.max_seq_len=64"]
    fast, full = predict(ov, target="cpu"), predict(ov, target="cpu", full_depth=True)
    assert fast["depth"]["extrapolated_from"] == [2, 4] and full.get("depth") is None
    assert fast["params"]["total"] == full["params"]["total"] and fast["delta_bytes"] == full["delta_bytes"]
    assert abs(fast["peak_bytes"] - full["peak_bytes"]) <= 0.01 * full["peak_bytes"], (fast, full)
