"""Decoder backbones: last-real-token pooling with right padding, the pad id the harness sets,
transformers' own `*ForSequenceClassification` as the reference for the native head, peft's printed
counts for the four named decoders, adapters in the decoder block, and methods refused by name.

Everything runs on the tiny shipped decoders (2 layers, random weights) or on the meta device."""
from __future__ import annotations

import copy
import json

import pytest
import torch
from clitools import REPO, run_bench
from omegaconf import OmegaConf

from bench.errors import UnsupportedError
from bench.methods.validate import check_method
from bench.models.backbones import CONFIG_DIR, build_model, pool
from bench.models.build import build_cell
from bench.params import compose_config, measure
from bench.recipe.validate import check

TINY = ("tiny_gpt2", "tiny_llama")
METHODS = REPO / "conf" / "method"
TEXTS = ["a gripping , funny film", "dull", "the plot never quite holds together , but the cast is a joy to watch"]


def model_cfg(key: str, **over):
    cfg = compose_config([f"model={key}"]).model
    return OmegaConf.merge(cfg, over)


def test_last_pooling_is_the_rightmost_attended_position():
    hidden = torch.arange(2 * 4 * 1, dtype=torch.float32).view(2, 4, 1)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    assert pool(hidden, mask, "last").flatten().tolist() == [1.0, 7.0]
    # prompt tuning's virtual tokens (2 here) come first: the last real token moves right by as many
    hidden = torch.arange(2 * 6 * 1, dtype=torch.float32).view(2, 6, 1)
    assert pool(hidden, mask, "last").flatten().tolist() == [3.0, 11.0]


@pytest.mark.parametrize("key", TINY)
def test_pad_token_set_in_config_and_tokenizer_when_the_model_has_none(key):
    shipped = json.loads((CONFIG_DIR / key.replace("_", "-") / "config.json").read_text())
    assert shipped.get("pad_token_id") is None  # GPT-2 / Llama style: no pad token of their own
    built = build_model(model_cfg(key), 2, seed=0)
    tok, config = built.tokenizer, built.backbone_config
    assert tok.pad_token_id is not None and tok.pad_token_id == tok.eos_token_id
    assert config.pad_token_id == tok.pad_token_id == built.model.backbone.config.pad_token_id
    assert tok.padding_side == "right"
    assert built.model.pooling == "last" and built.model.takes_token_type_ids is False


@pytest.mark.parametrize("head", ["uniform", "native"])
@pytest.mark.parametrize("key", TINY)
def test_padded_batch_logits_equal_each_example_alone(key, head):
    built = build_model(model_cfg(key, head=head), 3, seed=0)
    model, tok = built.model.eval(), built.tokenizer
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    assert (batch["attention_mask"] == 0).any()  # some rows really are padded
    with torch.no_grad():
        padded = model(batch["input_ids"], batch["attention_mask"])
        alone = torch.cat([model(**{k: v for k, v in tok([t], return_tensors="pt").items()
                                    if k in ("input_ids", "attention_mask")}) for t in TEXTS])
    assert torch.allclose(padded, alone, atol=1e-5), (padded, alone)


@pytest.mark.parametrize("key", TINY)
def test_native_head_is_transformers_sequence_classification(key):
    """The same weights in transformers' own GPT2/LlamaForSequenceClassification (which pools by
    `config.pad_token_id`, the id the harness set) give the same logits on a right-padded batch."""
    from transformers import AutoModelForSequenceClassification

    built = build_model(model_cfg(key, head="native"), 3, seed=0)
    ours, tok = built.model.eval(), built.tokenizer
    config = built.backbone_config
    config.num_labels = 3
    ref = AutoModelForSequenceClassification.from_config(config).eval()
    getattr(ref, ref.base_model_prefix).load_state_dict(ours.backbone.state_dict())
    ref.score.load_state_dict(ours.head.score.state_dict())
    assert ours.head.score.bias is None
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        want = ref(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        got = ours(batch["input_ids"], batch["attention_mask"])
    assert torch.allclose(got, want, atol=1e-5)


NAMED = {"gpt2": "gpt2", "pythia_70m": "pythia-70m", "smollm2_135m": "smollm2-135m", "qwen2_5_0_5b": "qwen2.5-0.5b"}


@pytest.mark.parametrize("key", sorted(NAMED))
def test_native_head_lora_count_equals_the_count_peft_prints(key):
    """`python -m bench.params model=<decoder> method=lora method.r=8 model.head=native` against peft's
    own SEQ_CLS model at peft's default targets, built here directly (meta device: shapes only)."""
    from accelerate import init_empty_weights
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoConfig, AutoModelForSequenceClassification

    ours = measure([f"model={key}", "method=lora", "method.r=8", "model.head=native"])
    config = AutoConfig.from_pretrained(str(CONFIG_DIR / NAMED[key]), num_labels=2)
    with init_empty_weights(include_buffers=False):
        model = get_peft_model(AutoModelForSequenceClassification.from_config(config),
                               LoraConfig(r=8, task_type=TaskType.SEQ_CLS))
    trainable, total = model.get_nb_trainable_parameters()
    head = config.hidden_size * 2
    print(f"{key}: bench.params trainable {ours['params']['trainable']:,} (head {ours['params']['head']:,}); "
          f"peft get_nb_trainable_parameters {trainable:,} of {total:,}")
    assert ours["params"]["trainable"] == trainable
    assert ours["params"]["head"] == head  # score: H*C, no bias
    assert total - ours["params"]["total"] == head  # peft's modules_to_save keeps a frozen copy of `score`


@pytest.mark.parametrize("key", TINY)
def test_adapters_sit_in_every_decoder_layer_and_start_at_the_identity(key):
    cfg = model_cfg(key)
    plain = build_cell(cfg, check_method({"_target_": "full", "lr": 1e-3}), 2, 0, 64)
    method = check_method({"_target_": "adapter", "lr": 1e-3, "size": 8})
    cell = build_cell(cfg, method, 2, 0, 64)
    H, layers = cell.backbone_config.hidden_size, cell.backbone_config.num_hidden_layers
    assert cell.params["trainable_excl_head"] == layers * 2 * (2 * H * 8 + H + 8)
    tok = cell.tokenizer
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():  # the up projection starts at zero: the adapted model is the plain one
        a = cell.model.eval()(batch["input_ids"], batch["attention_mask"])
        b = plain.model.eval()(batch["input_ids"], batch["attention_mask"])
    assert torch.allclose(a, b, atol=1e-6)


def test_encoder_targets_unchanged_and_decoders_use_peft_defaults():
    """The method YAMLs that name encoder modules keep their resolved values (and so their config
    hashes) on the encoders; on the decoders they resolve to null, peft's default."""
    for method, encoder in (("lora", ["query", "value"]), ("osf", ["query", "value"]), ("ln_tuning", ["LayerNorm"])):
        assert list(compose_config(["model=tiny_bert", f"method={method}"]).method.target_modules) == encoder
        assert compose_config(["model=tiny_gpt2", f"method={method}"]).method.target_modules is None


@pytest.mark.parametrize(("key", "method", "words"), [
    ("tiny_llama", "bitfit", ["method=bitfit", "llama", "no bias parameters"]),
    ("tiny_gpt2", "lokr", ["method=lokr", "gpt2", "Conv1D"]),
    ("tiny_gpt2", "beft", ["method=beft", "gpt2", "no default target modules"]),
])
def test_refused_before_any_work_naming_method_and_architecture(key, method, words):
    with pytest.raises(UnsupportedError) as err:
        check(compose_config([f"model={key}", f"method={method}"]))
    assert all(w in str(err.value) for w in words), str(err.value)


def test_conv1d_declarations_still_hold_in_peft():
    """Every tuner declared unable to handle GPT-2's Conv1D in the installed peft really fails there (or trains
    nothing) when the declaration is bypassed, so a peft release that adds the support shows up here; and every
    initialisation declared supported from an earlier release than the installed one really runs and trains.
    Holds for peft 0.21.2 (constraints.txt) and 0.22.0 (olora supported from 0.22.0)."""
    from peft import get_peft_model

    from bench.methods.quirks.registry import (
        conv1d_inits_supported_from,
        conv1d_unsupported_inits,
        conv1d_unsupported_types,
    )

    built = build_model(model_cfg("tiny_gpt2"), 2, seed=0)
    ids = built.tokenizer(TEXTS[:1], return_tensors="pt")["input_ids"]

    def runs_and_trains(name):
        # the YAML as a decoder resolves it (model.peft_targets: null), without composing all of Hydra's config
        node = OmegaConf.create({"model": {"peft_targets": None}, "method": OmegaConf.load(METHODS / f"{name}.yaml")})
        method = check_method(OmegaConf.to_container(node.method, resolve=True), where=name)
        try:
            wrapped = get_peft_model(copy.deepcopy(built.model.backbone), method.peft_config(built.backbone_config))
            if any(p.requires_grad for p in wrapped.parameters()):
                wrapped(input_ids=ids)
                return True
        except (TypeError, ValueError, NotImplementedError, RuntimeError):
            pass
        return False

    unsupported = [*conv1d_unsupported_types(), *conv1d_unsupported_inits()]
    still_fine = [name for name in unsupported if runs_and_trains(name)]
    assert not still_fine, f"peft now handles Conv1D for {still_fine}: declare the release in its quirk's conv1d"
    supported = [init for init in conv1d_inits_supported_from() if init not in unsupported]
    broken = [init for init in supported if not runs_and_trains(init)]
    assert not broken, f"declared supported on Conv1D by the installed peft but failing: {broken}"


def test_lora_cell_trains_end_to_end_on_each_tiny_decoder_and_a_sweep_lists_refusals(glue_dir, tmp_path):
    """STS-B (regression, num_labels=1) with the native `score` head on both tiny decoders, and BitFit
    on the Llama refused by name in the same sweep while the other cells run."""
    res = run_bench(["-m", "model=tiny_gpt2,tiny_llama", "method=lora,bitfit", "task=stsb", "train=quick",
                     "train.max_train_samples=32", "train.max_eval_samples=32",
                     "model.head=native", "inference.enabled=false"], glue_dir, tmp_path)
    out = res.stdout + res.stderr
    assert res.returncode == 2, out  # a refused cell: the configuration error's status, after the others ran
    records = {(r["model"], r["method"]): r for r in
               (json.loads(p.read_text()) for p in (tmp_path / "adhoc").glob("*__s0__*.json"))}
    assert set(records) == {("tiny-gpt2", "lora"), ("tiny-gpt2", "bitfit"), ("tiny-llama", "lora")}, out
    for rec in records.values():
        assert rec["status"] == "ok", rec.get("error")
        assert rec["params"]["head_kind"] == "native" and torch.isfinite(torch.tensor(rec["metrics"]["pearson"]))
        assert rec["model_info"]["pooling"] == "last"
    assert "refused" in out and "method=bitfit cannot run on llama" in out
