"""`model.head=native`: the harness's trainable count must be the count peft prints for the published
setup, i.e. `get_nb_trainable_parameters()` of peft's own SEQ_CLS model (peft wraps
`AutoModelForSequenceClassification` built from the same shipped config and adds the classifier to
`modules_to_save`). Both sides are built here on the meta device; nothing is hard-coded.

peft's second number (`all`) counts the classifier twice: `modules_to_save` keeps a frozen copy of
the original head beside the trained one. The harness's `total` counts it once; the test checks
that the difference is exactly one head.
"""
from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from bench.errors import ConfigError
from bench.models.backbones import CONFIG_DIR, NativeHead, build_model
from bench.params import measure

METHODS = {"lora r=8": ["method=lora", "method.r=8"],
           "prompt tuning 10": ["method=prompt_tuning", "method.num_virtual_tokens=10"],
           "prefix tuning 20": ["method=prefix_tuning", "method.num_virtual_tokens=20"],
           "ia3 defaults": ["method=ia3"]}
#: every method on roberta-base in `make test`; the same on roberta-large (the same code, 3x the size) in test-slow
CASES = {f"{size} {name}": (size.replace("-", "_"), size, method)
         for size in ("roberta-base", "roberta-large") for name, method in METHODS.items()}


def peft_config(overrides: list[str]):
    """The same method settings as a peft user would write them for SEQ_CLS."""
    from peft import IA3Config, LoraConfig, PrefixTuningConfig, PromptTuningConfig, TaskType

    kv = dict(o.split("=", 1) for o in overrides)
    method = kv["method"]
    if method == "lora":
        return LoraConfig(r=int(kv["method.r"]), lora_alpha=16, target_modules=["query", "value"], lora_dropout=0.1,
                          task_type=TaskType.SEQ_CLS)
    if method == "prompt_tuning":
        return PromptTuningConfig(num_virtual_tokens=int(kv["method.num_virtual_tokens"]), task_type=TaskType.SEQ_CLS)
    if method == "prefix_tuning":
        return PrefixTuningConfig(num_virtual_tokens=int(kv["method.num_virtual_tokens"]), task_type=TaskType.SEQ_CLS)
    return IA3Config(task_type=TaskType.SEQ_CLS)


def peft_counts(folder: str, overrides: list[str], num_labels: int = 2) -> tuple[int, int, int]:
    """(trainable, all) as peft prints them, and the size of one classifier copy."""
    from accelerate import init_empty_weights
    from peft import get_peft_model
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(str(CONFIG_DIR / folder), num_labels=num_labels)
    with init_empty_weights(include_buffers=False):
        base = AutoModelForSequenceClassification.from_config(config)
        head = sum(p.numel() for p in base.classifier.parameters())
        model = get_peft_model(base, peft_config(overrides))
    trainable, total = model.get_nb_trainable_parameters()
    return int(trainable), int(total), head


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c.startswith("roberta-large") else c
                                  for c in sorted(CASES)])
def test_native_head_count_equals_peft_printed_count(case):
    model_key, folder, method = CASES[case]
    ours = measure([f"model={model_key}", "model.head=native", "task=rte", *method])
    trainable, total, head = peft_counts(folder, method)
    assert ours["params"]["trainable"] == trainable, (case, ours["params"], trainable)
    assert ours["params"]["head"] == head
    assert ours["params"]["head_kind"] == "native"
    # peft's `all` holds the original classifier and the trained copy: one head more than the model has
    assert total - ours["params"]["total"] == head
    # ... and the uniform head's count differs by exactly the head sizes (the counting line says which)
    uniform = measure([f"model={model_key}", "task=rte", *method])
    assert uniform["params"]["trainable_excl_head"] == ours["params"]["trainable_excl_head"]
    assert "model.head=uniform" in uniform["counting"] and "model.head=native" in ours["counting"]


def tiny(model_type: str, head: str, num_labels: int = 2):
    cfg = {"name": f"tiny-{model_type}", "source": f"local:tiny-{model_type}", "tokenizer": "bundled:minilm",
           "pretrained": False, "pooling": "mean", "head": head}
    return build_model(OmegaConf.create(cfg), num_labels, 0)


@pytest.mark.parametrize("model_type", ["bert", "roberta"])
def test_native_head_computes_what_transformers_computes(model_type):
    """Same weights in transformers' *ForSequenceClassification give the same logits."""
    from transformers import AutoModelForSequenceClassification

    built = tiny(model_type, "native", 3)
    model = built.model.eval()
    assert isinstance(model.head, NativeHead)
    assert model.pooling == ("pooler" if model_type == "bert" else "cls")
    ref = AutoModelForSequenceClassification.from_config(
        type(built.backbone_config).from_dict({**built.backbone_config.to_dict(), "num_labels": 3})).eval()
    base = getattr(ref, ref.base_model_prefix)
    missing, unexpected = base.load_state_dict(model.backbone.state_dict(), strict=False)
    assert not missing and not unexpected  # the backbone is transformers' base model, pooler included
    ref.classifier.load_state_dict(model.head.classifier.state_dict())
    ids = torch.randint(1000, 5000, (4, 12))
    mask = torch.ones_like(ids)
    mask[0, 8:] = 0
    with torch.no_grad():
        ours = model(ids, mask)
        theirs = ref(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_head_setting_is_checked():
    with pytest.raises(ConfigError, match="model.head"):
        tiny("bert", "linear")
