"""`python -m bench.params` and `bench.reproduce params`: counts without training, against peft's own count,
against a materialised model, and against the published LoRA counts."""
from __future__ import annotations

import json

import pytest

from bench.params import main, measure
from bench.reproduce import published as R
from bench.reproduce.paramcheck import Measurer, run_checks

pytestmark = pytest.mark.heavy  # scheduled first (tests/conftest.py): its sweeps take tens of seconds

PEFT_METHODS = {
    "lora": ["method=lora", "method.r=8"],
    "ia3": ["method=ia3"],
    "prompt_tuning": ["method=prompt_tuning", "method.num_virtual_tokens=10", "method.init=random"],
    "prefix_tuning": ["method=prefix_tuning", "method.num_virtual_tokens=5"],
}


@pytest.mark.parametrize("model", ["tiny_bert", "tiny_roberta"])
@pytest.mark.parametrize("method", sorted(PEFT_METHODS))
def test_agrees_with_peft_count(model, method):
    r = measure([f"model={model}", *PEFT_METHODS[method]])
    assert r["peft"] is not None
    assert r["peft"]["trainable"] == r["params"]["trainable_excl_head"] > 0
    assert r["params"]["trainable"] == r["params"]["trainable_excl_head"] + r["params"]["head"]
    # peft's "all" is the wrapped backbone: the harness total minus the head
    assert r["peft"]["all"] == r["params"]["total"] - r["params"]["head"]


@pytest.mark.parametrize("model", ["tiny_bert", "tiny_roberta"])
@pytest.mark.parametrize("method", ["lora", "prompt_tuning", "adapter", "bitfit", "full"])
def test_meta_device_counts_equal_materialised(model, method):
    ov = [f"model={model}", *PEFT_METHODS.get(method, [f"method={method}"])]
    meta, real = measure(ov), measure(ov, materialize=True)
    assert meta["params"] == real["params"]
    assert meta["by_kind"] == real["by_kind"]


def test_roberta_base_lora_once():
    """The shipped roberta-base config: peft agrees, meta == materialised, and the published 0.3M is 294,912."""
    ov = ["model=roberta_base", "method=lora", "method.r=8", "method.alpha=16"]
    meta = measure(ov)
    assert meta["params"]["trainable_excl_head"] == 294_912 == meta["peft"]["trainable"]
    assert meta["params"]["head"] == 768 * 2 + 2
    real = measure(ov, materialize=True)
    assert real["params"] == meta["params"]


def test_a_peft_field_the_yaml_does_not_list_needs_no_plus(capsys):
    """`method.FIELD=V` for a peft field a tuner's YAML leaves out composes as any other override (the method
    node is open, bench/config/store.py) in bench.params and bench.plan alike; the count is peft's own on
    roberta-base with the native head; a misspelled field exits 2 naming the nearest one."""
    from bench.plan import main as plan_main

    ov = ["model=roberta_base", "model.head=native", "method=oft", "method.r=0", "method.oft_block_size=32"]
    r = measure(ov)
    assert r["params"]["trainable"] == 877_826 == r["peft_seq_cls"]["trainable"], r["params"]
    assert r["method_label"] == "oft[oft_block_size=32,r=0]"
    assert plan_main([*ov[:1], *ov[2:], "--target", "cpu", "--json"]) == 0
    assert "oft[oft_block_size=32,r=0]" in capsys.readouterr().out
    for front_end in (main, plan_main):
        assert front_end(["model=tiny_bert", "method=oft", "method.r=0", "method.oft_blok_size=32"]) == 2
        err = capsys.readouterr().err
        assert "method.oft_blok_size: not a setting of method oft" in err and "did you mean oft_block_size" in err
        assert "Traceback" not in err


def test_task_sets_the_head():
    r = measure(["model=tiny_bert", "method=lora", "task=mnli"])
    h = r["reference"]["hidden_size"]
    assert r["num_labels"] == 3 and r["params"]["head"] == h * 3 + 3
    r = measure(["model=tiny_bert", "method=lora", "task=stsb"])
    assert r["params"]["head"] == h + 1


def test_cli_json_and_text(capsys):
    assert main(["model=tiny_roberta", "method=adapter", "method.size=4", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    L, H = data["reference"]["num_layers"], data["reference"]["hidden_size"]
    assert data["params"]["trainable_excl_head"] == L * 2 * (2 * H * 4 + H + 4)
    assert main(["model=tiny_bert", "method=lora"]) == 0
    out = capsys.readouterr().out
    assert "trainable excl. head" in out and "agrees" in out


def test_cli_config_error_exit_2(capsys):
    assert main(["model=tiny_bert", "method=lora", "method.r=0"]) == 2
    assert "method.r" in capsys.readouterr().err
    assert main(["model=no_such_model"]) == 2


@pytest.fixture(scope="module")
def lora_checks():
    rows = [r for r in R.load() if r.config_id in (
        "hu2021-t2/roberta-base/lora", "hu2021-t2/roberta-large/lora", "hu2021-readme/roberta-base/lora",
        "hu2021-t2/roberta-large/adapter-houlsby-0.8M", "hu2021-t2/roberta-large/adapter-pfeiffer-0.8M",
        "hu2021-t2/roberta-base/adapterdrop-0.3M")]
    return {(c.config_id, c.what): c for c in run_checks(rows, Measurer())}


def test_reproduce_params_lora_rows(lora_checks):
    base = lora_checks[("hu2021-t2/roberta-base/lora", "trainable")]
    large = lora_checks[("hu2021-t2/roberta-large/lora", "trainable")]
    assert (base.measured, large.measured) == (294_912, 786_432)
    assert base.verdict == large.verdict == "match"
    readme = lora_checks[("hu2021-readme/roberta-base/lora", "trainable")]
    assert readme.measured == 294_912 and readme.verdict == "no match"
    assert "hu2021-t2/roberta-large/lora" in readme.why  # 0.8M is roberta-large's count


def test_reproduce_params_adapter_rows(lora_checks):
    h = lora_checks[("hu2021-t2/roberta-large/adapter-houlsby-0.8M", "trainable")]
    p = lora_checks[("hu2021-t2/roberta-large/adapter-pfeiffer-0.8M", "trainable")]
    assert (h.measured, p.measured) == (48 * (2 * 1024 * 8 + 1024 + 8), 24 * (2 * 1024 * 16 + 1024 + 16))
    assert h.verdict == p.verdict == "match"
    assert "LayerNorm" in h.why  # the LayerNorm-trained count is shown (0.9M) and does not match
    d = lora_checks[("hu2021-t2/roberta-base/adapterdrop-0.3M", "trainable")]
    assert d.verdict.startswith("config unknown; inferred size m=16")
