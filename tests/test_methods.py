"""Parameter counts against closed forms, and 'only what a method claims trains', on tiny BERT and
RoBERTa configs built with random weights (real transformers models, real peft)."""
from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from bench.batching import Encoded
from bench.errors import ConfigError
from bench.measure import count_params
from bench.methods import REGISTRY, build_method
from bench.models import build_model
from bench.train import train_model

ARCHS = {
    "tiny-bert": {"name": "tiny-bert", "source": "local:tiny-bert", "tokenizer": "bundled:minilm",
                  "pretrained": False, "pooling": "mean"},
    "tiny-roberta": {"name": "tiny-roberta", "source": "local:tiny-roberta", "tokenizer": "bundled:minilm",
                     "pretrained": False, "pooling": "mean"},
}
C = 2  # labels


def build(arch: str, method_cfg: dict, num_labels: int = C):
    built = build_model(OmegaConf.create(ARCHS[arch]), num_labels, seed=0)
    method = build_method(method_cfg)
    method.validate(built.backbone_config, 64)
    method.apply(built.model)
    method.finalize(built.model)
    built.model.pass_token_type_ids = method.uses_token_type_ids
    return built, method


def dims(built):
    cfg = built.backbone_config
    return cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size


def closed_form(name: str, settings: dict, L: int, H: int, I: int, total_backbone: int) -> int:
    """Trainable parameters of the method alone (head excluded), from the papers' formulas."""
    if name == "full":
        return total_backbone
    if name == "head_only":
        return 0
    if name == "lora":  # A (r x H) and B (H x r) on query and value in every layer
        return L * 2 * 2 * settings["r"] * H
    if name == "adapter":  # two adapters per layer, each 2Hm + H + m
        m = settings["size"]
        return L * 2 * (2 * H * m + H + m)
    if name == "adapter_pfeiffer":
        m = settings["size"]
        return L * (2 * H * m + H + m)
    if name == "prompt_tuning":
        return settings["num_virtual_tokens"] * H
    if name == "prefix_tuning":  # a key and a value vector per virtual token per layer
        return L * 2 * settings["num_virtual_tokens"] * H
    if name == "ia3":  # key, value (H each) and the input side of both *.output.dense (H attention, I ffn)
        return L * (3 * H + I)
    if name == "bitfit":  # q,k,v,o (4H) + 2 LayerNorm (2H) + intermediate (I) + output dense (H) per layer, + embedding LayerNorm
        return L * (7 * H + I) + H
    raise KeyError(name)


CASES = [
    ("full", {}),
    ("head_only", {}),
    ("lora", {"r": 8, "alpha": 16, "target_modules": ["query", "value"]}),
    ("lora", {"r": 4, "alpha": 8, "target_modules": ["query", "value"]}),
    ("adapter", {"size": 16}),
    ("adapter_pfeiffer", {"size": 8}),
    ("prompt_tuning", {"num_virtual_tokens": 10, "init": "random"}),
    ("prefix_tuning", {"num_virtual_tokens": 5}),
    ("ia3", {}),
    ("bitfit", {}),
]


@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("name,settings", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_trainable_params_match_closed_form(arch, name, settings):
    base, _ = build(arch, {"_target_": "full", "name": "full"})
    backbone_total = sum(p.numel() for p in base.model.backbone.parameters())
    built, _ = build(arch, {"_target_": name, "name": name, **settings})
    L, H, I = dims(built)
    counts = count_params(built.model)
    head = H * C + C
    assert counts["head"] == head
    expected = closed_form(name, settings, L, H, I, backbone_total)
    assert counts["trainable_excl_head"] == expected, (name, counts)
    assert counts["trainable"] == expected + head
    added = counts["total"] - backbone_total - head
    assert added == (0 if name in ("full", "head_only", "bitfit") else expected)


def _toy_data(n=24, regression=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids, tts, labels = [], [], []
    for i in range(n):
        length = 6 + (i % 5)
        ids.append([101] + torch.randint(1000, 5000, (length - 2,), generator=g).tolist() + [102])
        tts.append([0] * length)
        labels.append(float(i % 3) if regression else i % 2)
    return Encoded(ids, tts, labels, regression)


TRAIN = OmegaConf.create({"weight_decay": 0.01, "batch_size": 8, "epochs": 1, "warmup_ratio": 0.0,
                          "warmup_steps_excluded": 1, "seed": 0, "group_by_length": True,
                          "max_grad_norm": 1.0, "eval_batch_size": 16})


@pytest.mark.parametrize("arch", ["tiny-bert", "tiny-roberta"])
@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_only_claimed_parameters_change(arch, name):
    cfg = {"_target_": name, "name": name, "lr": 1e-2}
    if name == "prompt_tuning":
        cfg["init"] = "random"
    if name == "head_only":
        cfg["cache_features"] = False
    built, method = build(arch, cfg)
    model = built.model
    claimed = {n for n, _ in method.trainable_named_parameters(model)}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train_model(model, method, _toy_data(), TRAIN, torch.device("cpu"), pad_id=0)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed <= claimed, f"{name} changed parameters it does not claim: {sorted(changed - claimed)[:5]}"
    # three steps: every claimed tensor moves (zero-initialised halves get gradient after step 1)
    missing = claimed - changed
    assert not missing, f"{name} claims parameters that did not train: {sorted(missing)[:5]}"
    assert any(n.startswith("head.") for n in changed)


def test_head_only_feature_cache_is_exact():
    """Cached features and a live frozen backbone must train the head to the same weights."""
    heads = []
    for cache in (True, False):
        built, method = build("tiny-bert", {"_target_": "head_only", "name": "head_only", "lr": 1e-2,
                                           "cache_features": cache})
        train_model(built.model, method, _toy_data(), TRAIN, torch.device("cpu"), pad_id=0)
        heads.append(built.model.head.out.weight.detach().clone())
    assert torch.allclose(heads[0], heads[1], atol=1e-5)


@pytest.mark.parametrize("cfg,option", [
    ({"_target_": "lora", "r": 0}, "method.r"),
    ({"_target_": "lora", "lr": -1.0}, "learning rate"),
    ({"_target_": "adapter", "size": 0}, "method.size"),
    ({"_target_": "prompt_tuning", "num_virtual_tokens": 500}, "method.num_virtual_tokens"),
    ({"_target_": "lora", "target_modules": ["nonexistent_proj"]}, "nonexistent_proj"),
    ({"_target_": "lora", "rank": 8}, "method.rank"),
])
def test_bad_method_settings_are_rejected_with_the_option_named(cfg, option):
    with pytest.raises(ConfigError) as err:
        build("tiny-bert", cfg)
    assert option in str(err.value)


def test_delta_roundtrip(tmp_path):
    """What save_delta stores is enough to rebuild the finetuned predictions."""
    for name in ("lora", "adapter", "bitfit"):
        built, method = build("tiny-bert", {"_target_": name, "name": name, "lr": 1e-2})
        train_model(built.model, method, _toy_data(), TRAIN, torch.device("cpu"), pad_id=0)
        method.save_delta(built.model, tmp_path / name)
        fresh, m2 = build("tiny-bert", {"_target_": name, "name": name})
        m2.load_delta(fresh.model, tmp_path / name)
        x = torch.randint(1000, 5000, (2, 7))
        built.model.eval()
        fresh.model.eval()
        with torch.no_grad():
            a = built.model(input_ids=x, attention_mask=torch.ones_like(x))
            b = fresh.model(input_ids=x, attention_mask=torch.ones_like(x))
        assert torch.allclose(a, b, atol=1e-5), name
