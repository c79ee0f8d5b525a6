"""The peft catalogue: every generic peft tuner of conf/method/ trains, saves, reloads to the
same logits and, where peft can merge it, merges to the same logits; settings are checked against the
tuner's own peft config class; the loop hooks (AdaLoRA, LoRA+, LoRA-FA) do what the methods need; and
trainable counts equal the ones peft prints (roberta-base, native head) and the papers' closed forms."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from clitools import REPO, run_bench
from omegaconf import OmegaConf
from test_methods import ARCHS, TRAIN, _toy_data

from bench.config.schema import METHOD_COMMON
from bench.errors import ConfigError
from bench.inference.variants import merged_variant
from bench.methods import build_method
from bench.methods.validate import check_method
from bench.models.build import build_cell
from bench.models.delta import write_delta_info
from bench.predict import load_delta
from bench.training.loop import train_model

pytestmark = pytest.mark.heavy  # scheduled first (tests/conftest.py): its sweeps take tens of seconds

METHOD_DIR = REPO / "conf" / "method"
CATALOGUE = sorted(p.stem for p in METHOD_DIR.glob("*.yaml")  # method=peft (a user's file): tests/test_any_model.py
                   if str(OmegaConf.load(p).get("_target_", "")).endswith("PeftTuner") and p.stem != "peft")
TASK = {"name": "toy", "kind": "classification", "text_fields": ["sentence"], "labels": ["0", "1"],
        "label_names": ["negative", "positive"], "num_labels": 2}


def yaml_cfg(name: str, **over) -> dict:
    """The YAML as an encoder's run resolves it (osf, ln_tuning read `model.peft_targets`, absent here)."""
    node = OmegaConf.create({"model": {}, "method": OmegaConf.load(METHOD_DIR / f"{name}.yaml")})
    return {**OmegaConf.to_container(node.method, resolve=True), **over}


def build(name: str, arch: str = "tiny-bert", **over):
    method = check_method(yaml_cfg(name, **over), where=f"method/{name}.yaml")
    cell = build_cell(OmegaConf.create(ARCHS[arch]), method, 2, seed=0, max_seq_len=64)
    return cell.model, method


def logits(model, ids):
    model.eval()
    with torch.no_grad():
        return torch.cat([model(input_ids=torch.tensor([x]), attention_mask=torch.ones(1, len(x), dtype=torch.long))
                          for x in ids])


def test_the_catalogue_is_large_and_named_as_peft_names_it():
    from peft import PeftType

    assert len(CATALOGUE) >= 35, CATALOGUE
    types = {str(OmegaConf.load(METHOD_DIR / f"{n}.yaml").peft_type).upper() for n in CATALOGUE}
    assert types <= set(PeftType.__members__), types - set(PeftType.__members__)
    # every tuner that is a PeftType of its own is named as peft names it, in lower case
    for n in CATALOGUE:
        t = str(OmegaConf.load(METHOD_DIR / f"{n}.yaml").peft_type)
        assert n == t or t == "lora", (n, t)


@pytest.mark.parametrize("name", CATALOGUE)
def test_every_tuner_trains_saves_reloads_and_merges_to_the_same_logits(name, tmp_path):
    model, method = build(name, lr=5e-2)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    if method.has_hook("initialize_from_data"):  # CorDA/LoRA-GA rewrite the base in the data pass, frozen after
        initialize = method.initialize_from_data

        def initialize_then_snapshot(m, batches):
            initialize(m, batches)
            before.update({n: p.detach().clone() for n, p in m.named_parameters()})

        method.initialize_from_data = initialize_then_snapshot
    counted = sum(p.numel() for p in model.parameters() if p.requires_grad)
    train_model(model, method, _toy_data(), TRAIN, torch.device("cpu"), pad_id=0)
    if any(q.overrides("wrap_config") for q in getattr(method, "quirks", ())):  # CorDA/LoRA-GA's placeholder,
        # counted before the data pass, has the real adapter's count
        assert sum(p.numel() for p in model.parameters() if p.requires_grad) == counted
    changed = [n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())]
    assert any(not n.startswith("head.") for n in changed), f"{name}: only the head trained"
    frozen = [n for n in changed if not dict(model.named_parameters())[n].requires_grad]
    assert not frozen, f"{name}: frozen parameters changed: {frozen[:3]}"
    folder = tmp_path / name
    method.save_delta(model, folder)
    write_delta_info(folder, model_cfg=ARCHS["tiny-bert"], method=method, task=TASK, seed=0, max_seq_len=64,
                     eval_batch_size=16, pad_to_multiple_of=1)
    ids = [x[:n] for x, n in zip(_toy_data(4, seed=3).input_ids, (9, 6, 7, 8))]
    ours = logits(model, ids)
    clf = load_delta(folder)
    assert clf.method.name == name
    # PiSSA/OLoRA reload onto the original base rebuilt from the residual: equal to float rounding
    atol = 1e-4 if method.rewrites_base else 1e-6
    assert torch.allclose(ours, logits(clf.model, ids), atol=atol), (name, ours, logits(clf.model, ids))
    merged, how = merged_variant(model, copy.deepcopy(model))
    if how["status"] == "merged":
        assert torch.allclose(ours, logits(merged, ids), atol=1e-4), (name, how)
    else:
        assert name in ("lily", "p_tuning"), (name, how)  # the two that peft cannot fold into the weights


def test_unknown_field_names_the_valid_ones():
    with pytest.raises(ConfigError) as err:
        check_method(yaml_cfg("vera", rr=4))
    msg = str(err.value)
    assert "method.rr" in msg and "VeraConfig" in msg and "method.r," in msg and "method.d_initial" in msg
    assert "method.task_type" not in msg  # the harness sets it (the backbone is wrapped for features)


def test_any_peft_field_is_a_setting_even_if_the_yaml_omits_it():
    m = check_method(yaml_cfg("vera", d_initial=0.2, projection_prng_key=3))
    assert m.peft_config(None).d_initial == 0.2 and m.peft_config(None).projection_prng_key == 3


def test_peft_rejects_an_impossible_value_before_training():
    with pytest.raises(ConfigError, match="c3a"):
        build("c3a", block_size=48)  # 48 does not divide tiny-bert's width 64


def test_a_generic_config_needs_a_name_of_its_own():
    with pytest.raises(ConfigError, match="of its own"):
        build_method({"_target_": "bench.methods.PeftTuner", "peft_type": "vera", "lr": 1e-3})
    with pytest.raises(ConfigError, match="built-in method"):
        build_method({"_target_": "bench.methods.PeftTuner", "name": "lora", "peft_type": "lora", "lr": 1e-3})


def test_cli_unknown_field_exits_2_with_the_valid_fields(glue_dir, tmp_path):
    proc = run_bench(["method=vera", "method.no_such_field=1"], glue_dir, tmp_path)
    out = proc.stdout + proc.stderr  # the job's configuration error is logged (Hydra's log goes to stdout)
    assert proc.returncode == 2, out[-2000:]
    assert "method.no_such_field" in out and "method.d_initial" in out
    assert not list(tmp_path.rglob("*.json"))  # no record was written


def test_adalora_budget_uses_the_cells_real_step_count():
    model, method = build("adalora", lr=1e-2, deltaT=1, tinit=1, tfinal=1)
    res, _ = train_model(model, method, _toy_data(48), TRAIN, torch.device("cpu"), pad_id=0)
    cfg = model.backbone.peft_config["default"]
    assert cfg.total_step == res.steps == 6
    assert cfg.rank_pattern, "update_and_allocate never ran: no rank pattern"
    # the orthogonality penalty is part of the loss (peft adds it only to outputs that carry a loss)
    assert float(method.regularization(model)) > 0


def test_loraplus_trains_b_at_the_ratio_and_lorafa_freezes_a():
    model, method = build("loraplus", lr=1e-3)
    opt, what = method.build_optimizer(model, None, TRAIN)
    by_lr = {g["lr"] for g in opt.param_groups if g["params"]}
    assert by_lr == {1e-3, 16e-3} and "16x" in what
    # peft's grouping (as the LoRA+ reference): B matrices and 1-D tensors (biases) learn at the ratio
    b_params = {id(p) for n, p in model.named_parameters() if p.requires_grad and ("lora_B" in n or p.ndim == 1)}
    fast = {id(p) for g in opt.param_groups if g["lr"] == 16e-3 for p in g["params"]}
    assert fast == b_params
    model, method = build("lorafa", lr=1e-2)
    a_before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_A" in n}
    assert a_before and not any(p.requires_grad for n, p in model.named_parameters() if "lora_A" in n)
    res, _ = train_model(model, method, _toy_data(), TRAIN, torch.device("cpu"), pad_id=0)
    assert "LoRA-FA" in res.optimizer
    assert all(torch.equal(a_before[n], p) for n, p in model.named_parameters() if n in a_before)


def test_pissa_saves_a_plain_lora_of_twice_the_rank(tmp_path):
    import json

    model, method = build("pissa", lr=1e-2)
    train_model(model, method, _toy_data(), TRAIN, torch.device("cpu"), pad_id=0)
    method.save_delta(model, tmp_path)
    saved = json.loads(Path(tmp_path, "adapter_config.json").read_text())
    assert saved["r"] == 2 * 8 and saved["init_lora_weights"] is True  # loads on the original base


def peft_printed_count(name: str, folder: str = "roberta-base", num_labels: int = 2, layers: int | None = None) -> int:
    """What peft prints for its own SEQ_CLS model with the YAML's settings, built here without the
    harness's method class: the tuner's config class from peft, the YAML's fields, transformers'
    AutoModelForSequenceClassification from the shipped config."""
    import contextlib

    from accelerate import init_empty_weights
    from peft import PeftType, TaskType, get_peft_model
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from bench.models.backbones import CONFIG_DIR

    node = yaml_cfg(name)
    own = (*METHOD_COMMON, "peft_type", "optimizer", "loraplus_lr_ratio")
    fields = {k: v for k, v in node.items() if k not in own}
    if node["peft_type"] == "adalora":
        fields["total_step"] = 1000
    if fields.get("init_lora_weights") in ("corda", "lora_ga"):
        # peft builds these only after preprocess_corda/loraga on data; the adapter has LoRA's shapes (the
        # every-tuner test checks the count is unchanged by the data pass), so count the same LoRA without it
        fields["init_lora_weights"] = True
        fields.pop("corda_config", None), fields.pop("lora_ga_config", None)
    config = AutoConfig.from_pretrained(str(CONFIG_DIR / folder), num_labels=num_labels)
    if layers is not None:
        config.num_hidden_layers = layers
    cfg_cls = PEFT_TYPE_TO_CONFIG_MAPPING[PeftType[node["peft_type"].upper()]]
    for meta in (True, False):
        try:
            with init_empty_weights(include_buffers=False) if meta else contextlib.nullcontext():
                torch.manual_seed(0)
                model = get_peft_model(AutoModelForSequenceClassification.from_config(config),
                                       cfg_cls(task_type=TaskType.SEQ_CLS, **fields))
            break
        except NotImplementedError:  # initialisation that reads the weights (SVD): not on the meta device
            continue
    if node.get("optimizer") == "lorafa":
        from peft.optimizers import create_lorafa_optimizer

        create_lorafa_optimizer(model, r=fields.get("r", 8), lora_alpha=fields.get("lora_alpha", 8), lr=1e-3)
    return int(model.get_nb_trainable_parameters()[0])


#: tuners whose initialisation reads the weights (SVD, weight-derived masks), so both counts build
#: roberta-base for real instead of on the meta device: 6-20 s each. `make test` counts them on the same
#: width with 2 of the 12 layers (every count is per layer, so a mismatch shows there too); `make
#: test-slow` on all 12.
WEIGHT_INIT = ("adamss", "frod", "olora", "pissa", "shira")
NATIVE_CASES = ([(n, None) for n in CATALOGUE if n not in WEIGHT_INIT] + [(n, 2) for n in WEIGHT_INIT]
                + [pytest.param(n, None, marks=pytest.mark.slow, id=f"{n}-12-layers") for n in WEIGHT_INIT])


@pytest.mark.parametrize(("name", "layers"), NATIVE_CASES)
def test_native_head_count_equals_what_peft_prints_on_roberta_base(name, layers):
    from bench.params import measure

    over = [] if layers is None else [f"+model.config_overrides.num_hidden_layers={layers}"]
    ours = measure(["model=roberta_base", "model.head=native", "task=rte", f"method={name}", *over])
    assert ours["reference"]["num_layers"] == (layers or 12)
    assert ours["params"]["trainable"] == peft_printed_count(name, layers=layers), (name, ours["params"])
    assert ours["params"]["trainable"] == ours["peft_seq_cls"]["trainable"]  # what bench.params prints beside it


@pytest.mark.parametrize(("name", "closed_form"), [
    ("vera", lambda L, m, d, cfg: L * m * (d + cfg["r"])),              # VeRA: lambda_b (d_out) + lambda_d (r)
    ("fourierft", lambda L, m, d, cfg: L * m * cfg["n_frequency"]),     # FourierFT: n spectral coefficients
])
def test_closed_forms_of_the_papers(name, closed_form):
    from bench.params import measure

    ours = measure(["model=roberta_base", "task=rte", f"method={name}"])
    ref = ours["reference"]
    # query and value in each of the 12 layers: m = 2 modules of width d = 768
    assert ours["params"]["trainable_excl_head"] == closed_form(ref["num_layers"], 2, ref["hidden_size"],
                                                                yaml_cfg(name))


def test_catalogue_report_compares_with_the_reference_and_flags_the_frontier():
    import pandas as pd

    from bench.report.catalogue import frontier_flags, versus_reference

    pairwise = pd.DataFrame([  # the main report's rows: a ranked above b, delta = a - b
        {"task": "sst2", "method_a": "vera", "method_b": "lora", "delta": 0.02, "ci_low": 0.01, "ci_high": 0.03,
         "p": 0.001},
        {"task": "sst2", "method_a": "lora", "method_b": "ia3", "delta": 0.01, "ci_low": -0.01, "ci_high": 0.02,
         "p": 0.4},
        {"task": "sst2", "method_a": "vera", "method_b": "ia3", "delta": 0.03, "ci_low": 0.0, "ci_high": 0.05,
         "p": 0.01},
    ])
    vs = versus_reference(pairwise, "lora").set_index("method_label")
    assert set(vs.index) == {"vera", "ia3"}  # only the pairs with the reference
    assert vs.loc["ia3", "delta_vs_ref"] == -0.01
    assert (vs.loc["ia3", "delta_ci_low"], vs.loc["ia3", "delta_ci_high"]) == (-0.02, 0.01)
    # ia3: p 0.4 and no equivalence test in this frame: undecided (never "tie")
    assert vs.loc["vera", "verdict"] == "better" and vs.loc["ia3", "verdict"] == "undecided"
    assert vs.loc["vera", "p_holm"] == pytest.approx(0.002)  # Holm over the two comparisons with lora
    table = pd.DataFrame({"task": ["sst2"] * 3, "method_label": ["vera", "lora", "full"],
                          "trainable_excl_head": [1e4, 3e5, 2e7], "score": [0.80, 0.79, 0.85]})
    assert frontier_flags(table, "trainable_excl_head").tolist() == [True, False, True]


def test_catalogue_resamples_follow_the_family_size():
    """51 methods on a task make 50 comparisons with the reference: B=1,000 puts the Holm floor at
    50/1,001 (about alpha itself); the report's default B is the one that lowers it to alpha/10, and
    the table carries the floor it reached."""
    import pandas as pd

    from bench.analysis import multiple_comparisons
    from bench.report.catalogue import resamples_for, versus_reference

    recs = [{"status": "ok", "task": t, "method_label": f"m{i}", "study": {"role": "final"}}
            for t in ("sst2", "stsb") for i in range(51 if t == "sst2" else 10)]
    recs += [{"status": "ok", "task": "stsb", "method_label": f"x{i}", "study": {"role": "trial"}} for i in range(99)]
    recs += [{"status": "failed", "task": "stsb", "method_label": f"y{i}"} for i in range(99)]
    assert resamples_for(recs) == multiple_comparisons.min_resamples(50) == 10_000  # trials and failures do not count
    pairwise = pd.DataFrame([{"task": "sst2", "method_a": f"m{i}", "method_b": "lora", "delta": 0.1,
                              "ci_low": 0.05, "ci_high": 0.15, "p": 1 / 1001} for i in range(50)])
    at_1000 = versus_reference(pairwise, "lora", 1000)
    assert at_1000["holm_floor"].iloc[0] == pytest.approx(50 / 1001)
    assert at_1000["p_holm"].min() == pytest.approx(50 / 1001)  # the floor, however large the effect
    assert versus_reference(pairwise, "lora", 10_000)["holm_floor"].iloc[0] < multiple_comparisons.ALPHA / 10


def test_capabilities_say_what_the_loop_does_for_each_method():
    caps = {n: check_method(yaml_cfg(n)).capabilities() for n in ("lora", "adalora", "loraplus", "pissa", "adapter")}
    assert caps["lora"]["peft_type"] == "LORA" and caps["lora"]["loop_hooks"] == []
    assert caps["adalora"]["loop_hooks"] == ["before_training", "after_optimizer_step", "regularization"]
    assert caps["loraplus"]["loop_hooks"] == ["build_optimizer"]
    assert caps["pissa"]["rewrites_base"] and not caps["lora"]["rewrites_base"]
    assert caps["adapter"]["delta_format"] == "tensors" and caps["adapter"]["peft_type"] is None


def test_capabilities_say_which_composition_operations_apply():
    """The record's capabilities.composition is the rule bench.compose follows: peft's combination
    types for plain LoRA only, a parameter average for other deltas, nothing shared for head_only,
    the learned combinations that read each family, none of it for a combination itself."""
    from bench.compose.combine import LORA_TYPES

    comp = {n: check_method(yaml_cfg(n)).capabilities()["composition"]
            for n in ("lora", "dora", "adapter", "prompt_tuning", "head_only", "vera")}
    assert comp["lora"]["merge"] == list(LORA_TYPES) and "ties" in comp["lora"]["merge"]
    assert comp["lora"]["learned"] == ["lora_moe"] and comp["lora"]["soup"] and comp["lora"]["transfer"]
    assert comp["adapter"]["learned"] == ["adapter_fusion"] and comp["adapter"]["merge"] == ["linear"]
    assert comp["prompt_tuning"]["learned"] == ["attempt"]
    assert comp["head_only"]["merge"] == [] and comp["head_only"]["soup"]
    assert comp["dora"]["merge"] == ["linear"] and comp["vera"]["learned"] == []
    from bench.methods import LoRA, LoraMoE

    assert LoRA(lr=1e-3, use_rslora=True).composition()["merge"] == []  # compose refuses rsLoRA/DoRA LoRA deltas
    assert LoraMoE(lr=1e-3, sources=["x.json"]).composition() == {"soup": False, "merge": [], "transfer": False,
                                                                  "learned": []}


def test_a_seed_interval_past_the_metric_range_is_cut_to_it_and_marked():
    import pandas as pd

    from bench.report.catalogue_markdown import markdown

    table = pd.DataFrame({
        "task": ["stsb", "stsb"], "method_label": ["lora", "vera"], "metric": ["pearson", "pearson"],
        "score": [0.555, 0.70], "ci_low": [-0.191, 0.65], "ci_high": [1.301, 0.75],
        "trainable_excl_head": [73728, 7680],
        "storage_bytes": [3e5, 4e4], "mergeable": [True, True], "overhead": [float("nan")] * 2,
        "verdict": ["reference", "tie"], "frontier_params": [False, True], "frontier_overhead": [False, False],
        "peft_type": ["LORA", "VERA"], "above_chance": [True, True], "selected_lr": [0.00215, 0.1],
        "lr_edge": ["inside", "top"], "collapsed_seeds": [1, 0], "seeds": [3, 3], "p_holm": [float("nan"), 0.5]})
    text = markdown(table, {}, "lora")
    assert "55.5 [-19.1, 100.0] ‡ | 1/3 | 0.00215 |" in text and "70.0 [65.0, 75.0] | 0/3 | 0.1 ↑ |" in text
    assert "highest / lowest rate tried" in text and "stsb: vera" in text
    assert "(hard limit)" not in text and "§" not in text  # neither column given: no limit, no rejected rate
    table["lr_limit"], table["lr_unstable"] = [False, True], ["0.00316: 3 of 5 seeds failed", ""]
    text = markdown(table, {}, "lora")
    assert "0.00215 § |" in text and "stsb: vera (hard limit)" in text
    assert "(stsb: lora, 0.00316: 3 of 5 seeds failed)" in text
    assert "reached past the metric's range" in text
    assert "‡" not in markdown(table.iloc[1:], {}, "lora") and "↑" not in markdown(table.iloc[:1], {}, "lora")


def test_the_summary_puts_each_method_on_one_row_with_both_tasks():
    import pandas as pd

    from bench.report.catalogue_markdown import summary_markdown

    nan = float("nan")
    table = pd.DataFrame({
        "task": ["sst2", "sst2", "stsb", "stsb", "stsb"], "method_label": ["lora", "vera", "lora", "vera", "full"],
        "metric": ["accuracy", "accuracy", "pearson", "pearson", "pearson"], "score": [0.78, 0.80, 0.55, 0.70, 0.77],
        "ci_low": [0.70, 0.79, 0.40, 0.65, 0.73], "ci_high": [0.86, 0.81, 0.70, 0.75, 0.81],
        "trainable_excl_head": [73728, 7680, 73728, 7680, 22565376], "storage_bytes": [3e5, 4e4, 3e5, 4e4, 9e7],
        "mergeable": [True, True, True, True, nan], "overhead": [nan] * 5,
        "verdict": ["reference", "better", "reference", "undecided", "better"], "p_holm": [nan, 0.02, nan, 0.5, 0.01],
        "seeds_to_decide": [nan, nan, nan, 12.0, nan],
        "frontier_params": [False, True, False, True, True], "frontier_overhead": [False] * 5})
    text = summary_markdown(table, "lora")
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| method")]
    assert [r.split(" | ")[0] for r in rows] == ["| vera", "| lora", "| full"]  # fewest trainable first
    assert rows[0].endswith("| 80.0 [79.0, 81.0], better (p 0.02) | 70.0 [65.0, 75.0], undecided (n≈12) (p 0.5) | "
                            "sst2: params; stsb: params |")
    assert "(reference)" in rows[1] and rows[2].count("| – |") == 1  # full has no sst2 row
    assert "sst2: 1 better, 0 worse, 0 equivalent, 0 undecided" in text
    assert "stsb: 1 better, 0 worse, 0 equivalent, 1 undecided" in text


def test_summary_of_a_catalogue_with_only_its_reference_so_far():
    """A catalogue run part-way (only the reference's cells finished, no comparison yet) still reports."""
    import pandas as pd

    from bench.report.catalogue_markdown import summary_markdown

    table = pd.DataFrame({"task": ["sst2"], "method_label": ["lora"], "metric": ["accuracy"], "score": [0.8],
                          "ci_low": [0.7], "ci_high": [0.9], "trainable_excl_head": [73728], "storage_bytes": [3e5],
                          "mergeable": [True], "overhead": [float("nan")], "frontier_params": [True],
                          "frontier_overhead": [False]})
    text = summary_markdown(table, "lora")
    assert "sst2: 0 better, 0 worse, 0 equivalent, 0 undecided" in text


def test_a_data_pass_sees_the_training_rows_once_in_order_and_no_label(monkeypatch):
    """The loop's data-pass hook (EVA's): every training row, in order, without labels; timed apart."""
    from bench.methods import REGISTRY
    from bench.methods.peft_methods import LoRA

    seen = []

    class Recording(LoRA):
        name = "test_recording_lora"

        def initialize_from_data(self, model, batches):
            assert len(batches) == 3  # 24 rows in batches of 8: sized, as peft's EVA needs
            for _ in range(2):  # re-iterable (EVA cycles until its SVDs converge)
                seen.append([b for b in batches])

    monkeypatch.delitem(REGISTRY, "test_recording_lora")  # keep the registry to the real methods
    method = Recording(lr=1e-3)
    assert method.has_hook("initialize_from_data") and "initialize_from_data" in method.capabilities()["loop_hooks"]
    model = build_cell(OmegaConf.create(ARCHS["tiny-bert"]), method, 2, seed=0, max_seq_len=64).model
    data = _toy_data()
    res, _ = train_model(model, method, data, TRAIN, torch.device("cpu"), pad_id=0)
    first, again = seen
    rows = [ids[mask.bool()].tolist() for b in first for ids, mask in zip(b["input_ids"], b["attention_mask"])]
    assert rows == data.input_ids and all("labels" not in b for b in first)
    assert [b["input_ids"].tolist() for b in again] == [b["input_ids"].tolist() for b in first]
    assert res.data_pass_s is not None and res.data_pass_s >= 0
    plain, _ = train_model(build("lora")[0], build("lora")[1], data, TRAIN, torch.device("cpu"), pad_id=0)
    assert plain.data_pass_s is None  # no hook, no pass, nothing recorded


@pytest.mark.slow
def test_eva_initialises_from_the_training_rows_and_reloads(glue_dir, tmp_path):
    """EVA through the CLI: the record names the hook and the data pass's seconds; the kept delta
    (peft's folder with EVA's rank pattern) reloads to the record's predictions."""
    import gzip
    import json

    proc = run_bench(["model=tiny_bert", "train=quick", "method=eva", "task=sst2", "save_delta=true",
                      "train.max_train_samples=96", "inference.enabled=false"], glue_dir, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rec_path = next(p for p in (tmp_path / "adhoc").glob("*.json"))
    rec = json.loads(rec_path.read_text())
    assert rec["capabilities"]["loop_hooks"] == ["initialize_from_data"] and rec["train"]["data_pass_s"] > 0
    delta = next((tmp_path / "adhoc" / "deltas").iterdir())
    assert json.loads((delta / "adapter_config.json").read_text())["init_lora_weights"] == "eva"
    from bench.data.batching import encode
    from bench.data.loading import load_split
    from bench.data.tasks import task_spec

    clf = load_delta(delta)
    with gzip.open(rec_path.parent / rec["predictions"]) as fh:
        stored = json.loads(fh.read())["splits"]["dev"]
    rows = load_split(task_spec(OmegaConf.create(rec["config"]["task"])), "dev")
    data = encode([rows[i] for i in stored["ids"]], clf.tokenizer, 128, False)
    assert clf.method.name == "eva" and clf.predict_ids(data) == stored["predictions"]


def test_the_study_cost_is_read_from_the_records():
    from bench.report.catalogue import study_cost
    from bench.report.catalogue_markdown import cost_line

    def rec(role, secs, start, end, status="ok"):
        return {"status": status, "study": {"role": role}, "time": {"total_s": secs}, "env": {"parallel_cells": 2},
                "created_at": start, "finished_at": end}

    cost = study_cost([rec("trial", 1800, "2026-12-02T01:00:00+00:00", "2026-12-02T01:30:00+00:00"),
                       rec("final", 5400, "2026-12-02T01:10:00+00:00", "2026-12-02T03:00:00+00:00"),
                       rec("final", 99999, "2026-12-02T00:00:00+00:00", "2026-12-02T09:00:00+00:00", "failed")])
    assert cost["cells"] == 2 and cost["roles"] == {"trial": 1, "final": 1} and cost["cell_hours"] == 2.0
    assert cost["span_hours"] == 2.0 and cost["parallel_cells"] == [2]
    assert "2.0 cell-hours" in cost_line(cost) and "1 final, 1 trial" in cost_line(cost)
    assert cost["cpu_cells"] == 0 and "CPU-hours" not in cost_line(cost)  # schema-4 records: no CPU time
    assert study_cost([]) == {}
    # schema 5: a cell's CPU time per thread against its wall time says how much a busy machine stretched it
    busy = rec("final", 7200, "2026-12-02T01:00:00+00:00", "2026-12-02T03:00:00+00:00")
    busy["time"]["cpu_s"], busy["env"]["torch_threads"] = 7200.0, 2  # 1 h per thread in 2 h of wall
    cost = study_cost([busy, rec("trial", 1800, "2026-12-02T01:00:00+00:00", "2026-12-02T01:30:00+00:00")])
    assert cost["cpu_cells"] == 1 and cost["cpu_thread_hours"] == 1.0 and cost["wall_of_cpu_cells_hours"] == 2.0
    assert "1.00 CPU-hours per thread against 2.00 cell-hours" in cost_line(cost) and "2.00x" in cost_line(cost)


def test_capabilities_table_rows_come_from_the_methods():
    """scripts/capabilities_docs.py (the docs/catalogue.md table): declarations and a measured merge."""
    from scripts.capabilities_docs import catalogue_methods, row

    assert "eva" in catalogue_methods() and len(catalogue_methods()) == len(set(catalogue_methods()))
    lora, adapter, full = row("lora", "tiny_bert"), row("adapter", "tiny_bert"), row("full", "tiny_bert")
    assert lora["merge"] == "yes" and lora["learned"] == "lora_moe" and lora["combos"].startswith("peft's 11")
    assert adapter["merge"].startswith("no: bottleneck adapters") and adapter["delta"] == "tensors"
    assert full["merge"] == "native" and full["hooks"] == "-"
