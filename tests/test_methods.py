"""Parameter counts against closed forms, and 'only what a method claims trains', on tiny BERT and
RoBERTa configs built with random weights (real transformers models, real peft); the one cell builder
(bench.models.build.build_cell) and the method protocol's rules (identity, learning rate, declarations)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml
from omegaconf import OmegaConf
from tiny import ARCHS as TINY_ARCHS

from bench.data.batching import Encoded
from bench.errors import ConfigError
from bench.measure.counts import count_params
from bench.measure.storage import measure_storage
from bench.methods import BUILT_IN, REGISTRY, Method, build_method, resolve_class
from bench.methods.base import freeze
from bench.methods.peft_methods import LoRA
from bench.models.build import build_cell
from bench.training.loop import train_model

pytestmark = pytest.mark.heavy  # scheduled first (tests/conftest.py): its sweeps take tens of seconds

CONF = Path(__file__).resolve().parents[1] / "conf"

ARCHS = dict(TINY_ARCHS)  # the shipped tiny configs (tests/tiny.py)
C = 2  # labels


def build(arch: str, method_cfg: dict, num_labels: int = C):
    method_cfg = {"lr": 1e-3, **method_cfg}  # the learning rate has no class default; tests give one
    built = build_cell(OmegaConf.create(ARCHS[arch]), build_method(method_cfg), num_labels, seed=0, max_seq_len=64)
    return built, built.method


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
@pytest.mark.parametrize("name", sorted(cls.name for cls in BUILT_IN))
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


# -- identity: one name per method, the class's -------------------------------------------------------

def _yamls():
    return sorted((CONF / "method").glob("*.yaml"))


@pytest.mark.parametrize("path", _yamls(), ids=lambda p: p.stem)
def test_method_yaml_names_its_class_by_the_class_name(path):
    """conf/method/<name>.yaml: file stem == name == the class's name, its _target_ resolves to the class
    registered under that name, and it gives the learning rate (the one source of a preset's lr)."""
    cfg = yaml.safe_load(path.read_text())
    cls = resolve_class(cfg["_target_"])
    if "config_file" in cfg:  # method=peft: the file's content arrives through a resolver (conf/method/peft.yaml)
        cfg.pop("adapter_config")
        cfg["config_file"] = str(Path(__file__).parent / "data/peft_method_comparison/lora--llama-3.2-3B-rank32")
    method = build_method(cfg)
    if getattr(cls, "named_by_config", False):  # the generic peft tuner: one registered subclass per name
        assert path.stem == cfg["name"] == method.name and issubclass(type(method), cls)
    else:
        assert path.stem == cfg["name"] == cls.name
    assert REGISTRY[cfg["name"]] is type(method)
    assert isinstance(cfg.get("lr"), float) and cfg["lr"] > 0
    assert method.lr == cfg["lr"]


def test_every_built_in_is_registered_under_its_own_name():
    assert {cls.name for cls in BUILT_IN} <= set(REGISTRY)
    assert all(REGISTRY[cls.name] is cls for cls in BUILT_IN)
    assert len({cls.name for cls in BUILT_IN}) == len(BUILT_IN)


def test_config_name_must_equal_the_class_name():
    with pytest.raises(ConfigError) as err:
        build_method({"_target_": "bench.methods.LoRA", "name": "lora_fast", "lr": 1e-3}, where="method/lora_fast.yaml")
    msg = str(err.value)
    assert "method.name='lora_fast'" in msg and "method/lora_fast.yaml" in msg and "name: lora" in msg
    assert build_method({"_target_": "bench.methods.LoRA", "name": "lora", "lr": 1e-3}).name == "lora"
    assert build_method({"_target_": "lora", "lr": 1e-3}).name == "lora"  # a registered name is a target too


class _Unnamed(LoRA):
    """A subclass that keeps its parent's name: not registered, so it cannot pass for `lora`."""


def test_a_class_without_its_own_name_is_rejected():
    assert REGISTRY["lora"] is LoRA
    with pytest.raises(ConfigError, match="does not set its own `name`"):
        build_method({"_target_": f"{__name__}._Unnamed", "name": "lora", "lr": 1e-3})


def test_two_classes_cannot_claim_one_name():
    with pytest.raises(ConfigError, match="claimed by both"):
        class Impostor(Method):  # defining it is the test
            name = "lora"
    assert REGISTRY["lora"] is LoRA


def test_the_learning_rate_has_no_class_default():
    assert not any(hasattr(cls, "default_lr") for cls in REGISTRY.values())
    method = build_method({"_target_": "lora"})  # buildable (to load a delta), but never trainable
    assert method.lr is None
    with pytest.raises(ConfigError) as err:
        build_cell(OmegaConf.create(ARCHS["tiny-bert"]), method, C, seed=0, max_seq_len=64)
    assert "method.lr" in str(err.value) and "train.lr" in str(err.value)


@pytest.mark.parametrize("path", [p for p in _yamls() if p.stem != "peft"], ids=lambda p: p.stem)
def test_resolved_lr_is_the_yaml_lr_unless_train_lr_is_given(path):
    """(method=peft needs the user's file: tests/test_any_model.py)"""
    from bench.models.build import method_from_config
    from bench.params import compose_config

    want = yaml.safe_load(path.read_text())["lr"]
    assert method_from_config(compose_config([f"method={path.stem}"])).lr == want
    assert method_from_config(compose_config([f"method={path.stem}", "train.lr=0.123"])).lr == 0.123


# -- declarations: the runner reads them, never a method's name ---------------------------------------

def test_the_runner_reads_declarations_not_names(tmp_path, monkeypatch):
    """A new method that declares feature caching and its own delta description gets both, with no
    change to the runner (and a subclass of `full` under another name is not treated as `full`)."""

    class CachedProbe(Method):
        name = "test_cached_probe"
        frozen_backbone = True
        trains_on_cached_features = True
        delta_holds = "probe: the head"

        def apply(self, model):
            freeze(model.backbone)
            return model

    monkeypatch.delitem(REGISTRY, "test_cached_probe")  # keep the registry to the real methods
    built = build_cell(OmegaConf.create(ARCHS["tiny-bert"]), CachedProbe(lr=1e-2), C, seed=0, max_seq_len=64)
    res, _ = train_model(built.model, built.method, _toy_data(), TRAIN, torch.device("cpu"), pad_id=0)
    assert res.feature_s is not None
    assert measure_storage(built.method, built.model)["what"] == "probe: the head"
    full, _ = build("tiny-bert", {"_target_": "full"})
    assert measure_storage(full.method, full.model)["what"] == "whole model (safetensors)"
    bench_dir = Path(__file__).resolve().parents[1] / "bench"
    runner = "".join(p.read_text() for part in ("recipe", "training", "measure", "models", "inference", "sweep")
                     for p in sorted((bench_dir / part).glob("*.py")))
    assert "def train_model" in runner and "class CellRecipe" in runner  # the runner's files were read
    assert "getattr(method" not in runner and not re.search(r"\.cache_features\b", runner)
    assert not re.search(r"method\.name\s*[!=]=", runner)


def test_a_frozen_backbone_is_required_for_cached_features():
    class Broken(Method):
        name = "test_broken_cache"
        trains_on_cached_features = True

        def apply(self, model):
            return model

    del REGISTRY["test_broken_cache"]
    with pytest.raises(TypeError, match="frozen_backbone"):
        build_cell(OmegaConf.create(ARCHS["tiny-bert"]), Broken(lr=1e-3), C, seed=0, max_seq_len=64)


# -- one cell builder: bench.params counts what a run records -----------------------------------------

@pytest.mark.parametrize("method", ["lora", "adapter", "prompt_tuning"])
def test_params_counts_equal_the_runs_counts(method, glue_dir, tmp_path):
    """`python -m bench.params` and a real run build through bench.models.build.build_cell: same counts."""
    from bench.params import compose_config, measure
    from bench.recipe.finetune import run_cell

    ov = ["model=tiny_bert", f"method={method}", "task=stsb", "method.num_virtual_tokens=4"
          if method == "prompt_tuning" else "train.seed=0"]
    cfg = compose_config(ov + ["train=quick", "train.max_train_samples=16", "train.max_eval_samples=16",
                               "train.threads=1", "inference.enabled=false", f"data.glue_dir={glue_dir}",
                               f"results_dir={tmp_path}", "cache_dir=null"])
    recorded = run_cell(cfg)["params"]
    counted = measure(ov)["params"]
    assert recorded["trainable"] > recorded["head"] > 0
    assert {k: v for k, v in recorded.items() if k != "counting"} == counted
