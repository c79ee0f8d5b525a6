"""Any model (`model=auto model.source=FOLDER`), any peft config (`method=peft method.config_file=FILE`),
peft's own field names on the shipped LoRA/IA3, and the bad inputs of each: exit 2 naming file and field.

Folders are written into tmp_path (config.json only: the models are built on the meta device or with
random weights, offline); the Llama-3.2-3B config (tests/data/llama-3.2-3b) is the published architecture."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from clitools import REPO, records_in, run_bench, run_main, run_python
from omegaconf import OmegaConf

from bench.errors import ConfigError, UnsupportedError
from bench.params import compose_config, measure
from bench.predict import main as predict_main
from bench.records.schema import config_hash

pytestmark = pytest.mark.heavy  # scheduled first (tests/conftest.py): its sweeps take tens of seconds

DATA = Path(__file__).parent / "data"
LLAMA_3B = DATA / "llama-3.2-3b"
PEFT_MC = DATA / "peft_method_comparison"
TINY_LLAMA = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
              "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 32000,
              "max_position_embeddings": 256, "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2}
TINY_BERT = {"architectures": ["BertForMaskedLM"], "model_type": "bert", "hidden_size": 32, "intermediate_size": 64,
             "num_hidden_layers": 2, "num_attention_heads": 2, "vocab_size": 30522, "max_position_embeddings": 128}


def folder(tmp_path, name: str, config: dict | str) -> Path:
    out = tmp_path / name
    out.mkdir()
    (out / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    return out


def adapter(tmp_path, content: dict | str, name: str = "adapter_config.json") -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


# -- any model ---------------------------------------------------------------------------------------------------
def test_auto_detects_decoder_and_encoder(tmp_path):
    dec = measure(["model=auto", f"model.source={folder(tmp_path, 'my-llama', TINY_LLAMA)}", "method=lora"])
    assert dec["model"] == "my-llama" and dec["model_type"] == "llama"
    # decoders: peft's default LoRA targets (q_proj, v_proj): 2 layers x 2 modules x r(A: in + B: out)
    assert dec["params"]["trainable_excl_head"] == 2 * (8 * (64 + 64) + 8 * (64 + 32))
    enc = measure(["model=auto", f"model.source={folder(tmp_path, 'my-bert', TINY_BERT)}", "method=lora"])
    assert enc["model_type"] == "bert" and enc["params"]["trainable_excl_head"] == 2 * 2 * 8 * (32 + 32)


def test_auto_pooling_and_padding_as_for_shipped_models(tmp_path):
    from bench.models.backbones import build_model

    src = folder(tmp_path, "dec", TINY_LLAMA)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (REPO / "bench/model_configs/tiny-llama" / name).exists():
            shutil.copy(REPO / "bench/model_configs/tiny-llama" / name, src / name)
    built = build_model(compose_config(["model=auto", f"model.source={src}", "model.pretrained=false"]).model, 2, 0)
    assert built.model.pooling == "last" and built.tokenizer.padding_side == "right"
    assert built.backbone_config.pad_token_id is not None and built.model.takes_token_type_ids is False
    enc = build_model(compose_config(["model=auto", f"model.source={folder(tmp_path, 'enc', TINY_BERT)}",
                                      "model.pretrained=false"]).model, 2, 0)
    assert enc.model.pooling == "mean" and enc.model.takes_token_type_ids
    native = measure(["model=auto", f"model.source={src}", "model.head=native", "method=lora"])
    assert "score" in native["head_modules"] and native["params"]["head"] == 64 * 2  # H*C, no bias


def test_auto_unsupported_architecture_is_named(tmp_path):
    t5 = folder(tmp_path, "t5", {"model_type": "t5", "architectures": ["T5ForConditionalGeneration"], "d_model": 32})
    with pytest.raises(ConfigError, match=r"t5 \(T5ForConditionalGeneration\) is not supported.*llama"):
        measure(["model=auto", f"model.source={t5}", "method=lora"])


@pytest.mark.parametrize(("make", "match"), [
    (lambda p: (p / "empty").mkdir() or p / "empty", "has no config.json"),
    (lambda p: folder(p, "broken", "{not json"), r"config.json is not valid JSON"),
    (lambda p: folder(p, "nomt", {"hidden_size": 8}), r"no field 'model_type'"),
])
def test_auto_bad_folder_exit_2(tmp_path, make, match):
    src = make(tmp_path)
    with pytest.raises(ConfigError, match=match) as err:
        measure(["model=auto", f"model.source={src}", "method=lora"])
    # the folder is named; `python -m bench.params` turns this ConfigError into exit 2 without a traceback
    # (through the command line: test_peft_file_bad_input_exit_2)
    assert "has no config.json" not in match or str(src) in str(err.value)


def test_auto_without_source_says_so():
    with pytest.raises(ConfigError, match="model=auto needs model.source"):
        measure(["model=auto", "method=lora"])


# -- any peft config -----------------------------------------------------------------------------------------------
LORA_FILE = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "target_modules": ["query", "value"],
             "task_type": "SEQ_CLS", "base_model_name_or_path": "bert-base-uncased", "revision": None,
             "inference_mode": True, "peft_version": "0.99.0", "a_future_key": 1}


def test_peft_file_counts_as_the_shipped_method(tmp_path, caplog):
    path = adapter(tmp_path, LORA_FILE)
    with caplog.at_level(logging.WARNING, logger="bench.methods.peft_file"):
        ours = measure(["model=tiny_bert", "method=peft", f"method.config_file={path}"])
    assert "a_future_key" in caplog.text and str(path) in caplog.text  # ignored, named, as peft does
    same = measure(["model=tiny_bert", "method=lora", "method.r=4", "method.lora_alpha=8"])
    assert ours["params"] == same["params"] and ours["peft"]["trainable"] == same["peft"]["trainable"]
    over = measure(["model=tiny_bert", "method=peft", f"method.config_file={path}", "method.r=2"])
    assert over["params"]["trainable_excl_head"] * 2 == ours["params"]["trainable_excl_head"]
    assert over["method_label"] == f"peft[file={tmp_path.name}/adapter_config.json,r=2]".replace(
        f"{tmp_path.name}/adapter_config.json", tmp_path.name)


def test_peft_file_hash_is_its_content_not_its_path(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    pa, pb = adapter(a, LORA_FILE), adapter(b, LORA_FILE)

    def chash(path, *more):
        cfg = compose_config(["model=tiny_bert", "method=peft", f"method.config_file={path}", *more])
        return config_hash(OmegaConf.to_container(cfg, resolve=True))

    assert chash(pa) == chash(pb)
    pb.write_text(json.dumps(dict(LORA_FILE, r=2)))
    assert chash(pa) != chash(pb)


def test_peft_file_bad_input_exit_2(tmp_path):
    cases = {
        "not_json.json": ("{oops", "not_json.json is not valid JSON"),
        "list.json": ("[1, 2]", "expected a JSON object"),
        "no_type.json": ({"r": 4}, "field 'peft_type'"),
        "bad_type.json": ({"peft_type": "NOT_A_TUNER"}, "not a peft tuner type"),
        "wrong_r.json": (dict(LORA_FILE, r="sixteen"), r"field 'r' = 'sixteen' \(str\): expected int"),
        "wrong_targets.json": (dict(LORA_FILE, target_modules=[1, 2]), "field 'target_modules'"),
    }
    for name, (content, match) in cases.items():
        path = adapter(tmp_path, content, name)
        with pytest.raises(ConfigError, match=match):
            measure(["model=tiny_bert", "method=peft", f"method.config_file={path}"])
    path = adapter(tmp_path, dict(LORA_FILE, r="sixteen"), "cli.json")
    proc = run_python(["-m", "bench.params", "model=tiny_bert", "method=peft", f"method.config_file={path}"])
    assert proc.returncode == 2 and "cli.json" in proc.stderr and "'r'" in proc.stderr, proc.stderr[-2000:]
    with pytest.raises(ConfigError, match=r"none\.json'?: no such file"):  # the CLI's exit 2: above
        measure(["model=tiny_bert", "method=peft", f"method.config_file={tmp_path}/none.json"])


def test_peft_file_unknown_override_and_refusals(tmp_path):
    path = adapter(tmp_path, LORA_FILE)
    with pytest.raises(ConfigError, match=r"method.rank: not a setting of method peft \(peft lora: LoraConfig\)"):
        measure(["model=tiny_bert", "method=peft", f"method.config_file={path}", "method.rank=2"])
    with pytest.raises(ConfigError, match=r"expected int"):
        measure(["model=tiny_bert", "method=peft", f"method.config_file={path}", "method.r=two"])
    missing = adapter(tmp_path, dict(LORA_FILE, target_modules=["q_proj", "nonexistent"]), "missing.json")
    with pytest.raises(ConfigError, match="nonexistent"):  # modules the model lacks: peft's message, named
        measure(["model=tiny_bert", "method=peft", f"method.config_file={missing}"])
    boft = adapter(tmp_path, {"peft_type": "BOFT", "boft_block_size": 4, "target_modules": ["c_attn"]}, "boft.json")
    with pytest.raises(UnsupportedError, match="cannot run on gpt2.*Conv1D"):
        measure(["model=tiny_gpt2", "method=peft", f"method.config_file={boft}"])
    with pytest.raises(ConfigError, match="no method.config_file"):
        measure(["model=tiny_bert", "method=peft"])


def test_adalora_total_step_is_replaced_and_recorded(tmp_path):
    from bench.methods import build_method

    content = {"peft_type": "ADALORA", "init_r": 4, "target_r": 2, "total_step": 1000, "tinit": 0, "tfinal": 0,
               "target_modules": ["query", "value"]}
    method = build_method({"_target_": "bench.methods.PeftTuner", "name": "peft", "lr": 1e-3,
                           "config_file": str(adapter(tmp_path, content))})
    assert "total_step" not in method.fields
    note = method.file_record()
    assert note["replaced_by_harness"]["total_step"]["file"] == 1000 and note["peft_type"] == "adalora"


# -- peft's own names on the shipped LoRA / IA3 -------------------------------------------------------------------
def test_lora_takes_peft_names_and_the_old_ones(caplog):
    new = measure(["model=tiny_bert", "method=lora", "method.lora_alpha=32", "method.lora_dropout=0.05"])
    with caplog.at_level(logging.WARNING):
        old = measure(["model=tiny_bert", "method=lora", "method.alpha=32", "method.dropout=0.05"])
    assert new["params"] == old["params"] and new["method_settings"] == old["method_settings"]
    more = measure(["model=tiny_bert", "method=lora", "method.layers_to_transform=[0]"])  # any LoraConfig field
    assert more["params"]["trainable_excl_head"] * 2 == new["params"]["trainable_excl_head"]
    ia3 = measure(["model=tiny_bert", "method=ia3", "method.init_ia3_weights=false"])
    assert ia3["params"]["trainable_excl_head"] > 0
    with pytest.raises(ConfigError, match=r"method.lora_alphx: not a setting of method lora.*did you mean lora_alpha"):
        measure(["model=tiny_bert", "method=lora", "method.lora_alphx=3"])
    proc = run_python(["-m", "bench.params", "model=tiny_bert", "method=lora", "method.alpha=32"])
    assert proc.returncode == 0 and "deprecated" in proc.stderr and "lora_alpha" in proc.stderr


def test_lora_old_and_new_spelling_hash_alike():
    def chash(*ov):
        return config_hash(OmegaConf.to_container(compose_config(["model=tiny_bert", *ov]), resolve=True))

    assert chash("method=lora", "method.lora_alpha=32") == chash("method=lora", "method.alpha=32")


def test_committed_records_keep_their_run_ids():
    """Every committed record re-hashes to its stored hash and run id; and its LoRA config written in peft's
    spelling hashes the same."""
    files = sorted((REPO / "results").rglob("*.json"))
    checked = 0
    for file in files:
        rec = json.loads(file.read_text())
        if not isinstance(rec, dict) or "config" not in rec or "run_id" not in rec:
            continue
        chash = config_hash(rec["config"])
        assert chash == rec["config_hash"] and rec["run_id"].endswith(chash[:8]), file
        method = dict(rec["config"]["method"])
        if method.get("_target_") == "bench.methods.LoRA":  # the other spelling hashes the same
            for old, new in (("alpha", "lora_alpha"), ("dropout", "lora_dropout")):
                if old in method:
                    method[new] = method.pop(old)
                else:
                    method[old] = method.pop(new)
            assert config_hash(dict(rec["config"], method=method)) == chash, file
        checked += 1
    assert checked >= 100
    baseline = json.loads((REPO / "results/baselines/ci_gate.json").read_text())
    assert baseline["cells"]  # the gate pairs by config hashes computed the same way (tests/test_regress.py)


# -- counts at scale: peft's method_comparison on Llama-3.2-3B -----------------------------------------------------
RECORDED = json.loads((PEFT_MC / "recorded.json").read_text()) if (PEFT_MC / "recorded.json").exists() else {}


@pytest.mark.parametrize("experiment", sorted(RECORDED))
def test_llama_3b_counts_equal_peft_method_comparison(experiment):
    from bench.data import tasks as T
    from bench.models.build import build_cell, method_from_config

    cfg = compose_config(["model=auto", f"model.source={LLAMA_3B}", "method=peft", "model.pretrained=false",
                          f"method.config_file={PEFT_MC / experiment / 'adapter_config.json'}"])
    cell = build_cell(cfg.model, method_from_config(cfg), T.task_spec(cfg.task).num_labels, 0, 512, meta=True)
    assert cell.params["trainable_excl_head"] == RECORDED[experiment]
    assert cell.params["total"] - cell.params["head"] - cell.params["trainable_excl_head"] == 3_212_749_824


# -- one cell end to end -------------------------------------------------------------------------------------------
def test_auto_model_peft_file_cell_and_predict(tmp_path, glue_dir):
    src = tmp_path / "my-tiny-decoder"
    shutil.copytree(REPO / "bench/model_configs/tiny-llama", src)
    path = adapter(tmp_path, dict(LORA_FILE, target_modules=["q_proj", "v_proj"]))
    proc = run_bench(["model=auto", f"model.source={src}", "model.pretrained=false", "method=peft",
                      f"method.config_file={path}", "train=quick", "task=sst2", "sweep_name=auto", "save_delta=true",
                      "inference.repeats=3", "inference.lengths=[16]", "inference.batch_repeats=3"],
                     glue_dir, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (rec,) = records_in(tmp_path / "out" / "auto")
    assert rec["status"] == "ok" and rec["model"] == "my-tiny-decoder" and rec["method"] == "peft"
    assert rec["config"]["method"]["adapter_config"] == dict(LORA_FILE, target_modules=["q_proj", "v_proj"])
    assert rec["method_file"]["ignored_unknown_keys"] == ["a_future_key"]
    assert rec["model_info"]["pooling"] == "last"
    delta = tmp_path / "out" / "auto" / "deltas" / rec["run_id"]
    path.unlink()  # the delta and the record hold the file's content: nothing reads the file any more
    pred = run_main(predict_main, [delta, "--text", "a fine film"])  # the same command, in this process
    assert pred.returncode == 2 and "--base FOLDER" in pred.stderr  # the local folder's path is not in the delta
    pred = run_python(["-m", "bench.predict", delta, "--base", src, "--text", "a fine film", "--json"])
    assert pred.returncode == 0, pred.stderr[-2000:]
    assert json.loads(pred.stdout)[0] in ("negative", "positive")
