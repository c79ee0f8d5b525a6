"""Every shipped config composes and passes bench.recipe.validate.check; bad settings are named before any work.

As lightning-hydra-template's tests/test_configs.py: each preset (conf/experiment, with every job of its
sweep grid, or every task of its `reference.tasks`) and each choice of each config group is composed
with Hydra's compose API from bench.config.confdir's folder, then checked. A preset cell whose published
hyperparameters are unknown (null) must be refused, naming the option.
"""
from __future__ import annotations

import importlib.util

import pytest
from clitools import REPO, TINY, records_in, run_bench
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from bench.config.confdir import conf_dir
from bench.config.schema import check_value
from bench.errors import ConfigError, UnsupportedError
from bench.recipe.trackers import BACKENDS
from bench.recipe.validate import check

pytestmark = pytest.mark.heavy  # scheduled first (tests/conftest.py): its sweeps take tens of seconds

CONF = conf_dir()
PRESETS = sorted(str(p.relative_to(CONF / "experiment").with_suffix("")) for p in (CONF / "experiment").rglob("*.yaml"))
GROUPS = {g: sorted(p.stem for p in (CONF / g).glob("*.yaml")) for g in ("model", "task", "method", "train",
                                                                          "hparams_search", "hydra/launcher", "logger")}
CHOICES = [(g, c) for g, cs in GROUPS.items() for c in cs]
#: choices that are a front door for the user's own input (tests/test_any_model.py tests them without it)
NEEDS_INPUT = {"model=auto": [f"model.source={REPO / 'tests/data/llama-3.2-3b'}", "model.pretrained=false"],
               "method=peft": [f"method.config_file={REPO / 'tests/data/peft_method_comparison/lora--llama-3.2-3B-rank32'}"]}


@pytest.fixture(scope="module")
def hydra_dir():
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        yield
    GlobalHydra.instance().clear()


def _compose(overrides, hydra_config=False):
    return compose(config_name="config", overrides=list(overrides), return_hydra_config=hydra_config)


def _unknown(cfg) -> list[str]:
    """The options a paper preset leaves null for this task (unknown in its sources)."""
    return [f"train.{k}" for k in ("epochs", "batch_size", "max_seq_len") if cfg.train.get(k) is None] + \
        [f"method.{k}" for k in cfg.method if cfg.method.get(k) is None and k == "size"]


def _sweep_jobs(cfg) -> list[list[str]]:
    """The jobs of a preset's sweep grid (hydra.sweeper.params), as the basic sweeper expands them."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = OmegaConf.select(cfg, "hydra.sweeper.params") or {}
    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch] or [[]]


def _covering(jobs: list[list[str]], exhaustive_up_to: int = 20) -> list[list[str]]:
    """The jobs of a large grid that bring an override not seen yet, in grid order: every value of
    every axis is composed and checked at least once (catalogue: 52 of 51 x 2 jobs) instead of every
    combination. Composing costs ~0.15 s a job, and the big grids' combinations add no check a
    single axis value does not (bench.recipe.validate checks a cell's method, task and model each);
    `make smoke` runs every combination for real. Small grids stay exhaustive."""
    if len(jobs) <= exhaustive_up_to:
        return jobs
    seen: set[str] = set()
    out = []
    for job in jobs:
        if not seen.issuperset(job):
            out.append(job)
            seen.update(job)
    return out


def test_covering_keeps_every_value_of_every_axis():
    grid = [[f"method={m}", f"task={t}"] for m in "abcdefghijklmnopqrstuvwxy" for t in ("x", "y")]
    got = _covering(grid)
    assert {o for job in got for o in job} == {o for job in grid for o in job} and len(got) == 26
    assert _covering(grid[:20]) == grid[:20]


def test_every_config_file_is_covered():
    assert len(PRESETS) >= 15 and {"ci_gate", "study", "lora_paper/deberta_xxl_lora"} <= set(PRESETS)
    assert all(GROUPS.values()), GROUPS


@pytest.mark.parametrize("group,choice", CHOICES, ids=[f"{g}={c}" for g, c in CHOICES])
def test_every_group_choice_composes_and_checks(hydra_dir, group, choice):
    cfg = _compose([f"{group}={choice}", *NEEDS_INPUT.get(f"{group}={choice}", [])],
                   hydra_config=group.startswith("hydra"))
    missing = [n for n in (cfg.get("logger") or {}) if (BACKENDS[n][0] and importlib.util.find_spec(BACKENDS[n][0]) is None)]
    if missing:  # a tracker whose package is not installed here: the error names the extra (bench/recipe/trackers.py)
        with pytest.raises(ConfigError, match=rf"pip install 'peft-bench\[{BACKENDS[missing[0]][1]}\]'"):
            check(cfg)
        return
    check(cfg)


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_composes_and_checks(hydra_dir, preset):
    base = _compose([f"experiment={preset}"], hydra_config=True)
    tasks = list(OmegaConf.select(base, "reference.tasks") or [])
    jobs = [[f"task={t}"] for t in tasks] if tasks else _covering(_sweep_jobs(base))
    checked = refused = 0
    for job in jobs:
        cfg = _compose([f"experiment={preset}", *job])
        missing = _unknown(cfg)
        if missing:  # unknown in the preset's sources: refused with the option named, never run
            with pytest.raises(ConfigError, match=missing[0].replace(".", r"\.")):
                check(cfg)
            refused += 1
        else:
            try:
                check(cfg)
                checked += 1
            except UnsupportedError:  # a method its architecture cannot run, refused by name (#27: smoke_decoders)
                refused += 1
    assert checked + refused == len(jobs) and (checked or tasks), (preset, jobs)


BAD = [
    (["train.batch_size=0"], "train.batch_size=0: expected an integer >= 1"),
    (["train.lr=-1"], "train.lr=-1"),
    (["train.threads=0"], "train.threads=0: expected auto or an integer >= 1"),
    (["train.select=sometimes"], "train.select='sometimes': expected last or best_epoch"),
    (["train.select=best_epoch"], "needs train.eval_every_epoch=true"),
    (["train=full_data", "data.selection.fraction=0"], "needs a selection split"),
    (["train.precision=fp8"], "train.precision='fp8'"),
    (["train.device=gpu"], "train.device='gpu'"),
    (["model.pooling=max"], "model.pooling='max'"),
    (["model.head_dropout=1.5"], "model.head_dropout=1.5"),
    (["data.selection.fraction=1.0"], "data.selection.fraction=1.0"),
    (["inference.repeats=1"], "inference.repeats=1"),
    (["sweep_name=../elsewhere"], "sweep_name='../elsewhere'"),
    (["method.lr=null"], "no learning rate"),
    (["method.lr=0"], "method.lr=0"),
    (["experiment=study", "train.lr=0.1"], "with experiment=study"),
    (["experiment=study", "study.trials=0"], "study.trials=0"),
    (["experiment=study", "study.prune.eta=1"], "study.prune.eta=1: expected an integer >= 2"),
    (["experiment=study", "study.search.max_factor=0.5"], "study.search.max_factor=0.5"),
    (["experiment=study", "study.prune.noise_z=-1"], "study.prune.noise_z=-1"),
    (["experiment=study", "study.prune.enabled=true", "study.prune.rung_epochs=3"],
     "study.prune.rung_epochs=3: the first rung must be shorter than the full run (train.epochs=3)"),
    (["progress.mode=blink"], "progress.mode='blink'"),
]
TYPOS = [
    (["+train.bach_size=8"], "train.bach_size: unknown setting; did you mean batch_size?"),
    (["+model.poolng=cls"], "model.poolng: unknown setting; did you mean pooling?"),
    (["+data.selection.fractoin=0.2"], "data.selection.fractoin: unknown setting; did you mean fraction?"),
    (["+inference.repeat=5"], "inference.repeat: unknown setting; did you mean repeats?"),
    (["+progress.intervall_s=5"], "progress.intervall_s: unknown setting; did you mean interval_s?"),
    (["+method.rank=4"], "method.rank: not a setting of method lora"),
    (["+method.lora_alpah=4"], "did you mean lora_alpha?"),
    (["method=bitfit", "+method.r=4"], "method.r: not a setting of method bitfit"),
    (["method.rank=4"], "method.rank: not a setting of method lora"),  # no `+` needed: the method node is open
    (["method=oft", "method.oft_blok_size=16"], "did you mean oft_block_size?"),
    (["method=bitfit", "method.r=4"], "method.r: not a setting of method bitfit"),
]


@pytest.mark.parametrize("overrides,message", BAD + TYPOS, ids=[m for _, m in BAD + TYPOS])
def test_bad_values_and_typos_are_named(hydra_dir, overrides, message):
    with pytest.raises(ConfigError) as err:
        check(_compose(overrides))
    assert message in str(err.value)


def test_check_value_is_the_rule_the_modules_use():
    assert check_value("train.threads", "auto") == "auto" and check_value("data.selection.fraction", 0.1) == 0.1
    with pytest.raises(ConfigError, match=r"^train\.grad_accum_steps=2\.5: expected"):
        check_value("train.grad_accum_steps", 2.5)


# Each case starts `python -m bench` (seconds of imports): `make test` runs a bad value and a typo in a
# multirun; the bad choice and the single-run typo take the same path to exit 2 (ConfigError from
# bench.recipe.validate.check) and their messages are checked in-process above, so they run in `make test-slow`.
@pytest.mark.parametrize("args,expected", [
    (["train.batch_size=0"], "train.batch_size=0: expected an integer >= 1"),
    pytest.param(["model.pooling=max"], "model.pooling='max'", marks=pytest.mark.slow, id="choice"),
    pytest.param(["+train.bach_size=8"], "did you mean batch_size?", marks=pytest.mark.slow, id="typo"),
    (["-m", "method=lora,bitfit", "+method.rr=2"], "method.rr: not a setting of method bitfit"),
    (["method=oft", "method.oft_blok_size=16"], "did you mean oft_block_size?"),
], ids=["value", "choice", "typo", "multirun", "peft field"])
def test_cli_bad_option_exits_2_before_any_work(tmp_path, glue_dir, args, expected):
    """No cell runs, no record and no sweep folder are written, and no traceback is shown; in a
    multirun every job is checked before the first starts."""
    results = tmp_path / "results"
    flags = [a for a in args if a.startswith("-")]  # before the overrides, as argparse wants
    proc = run_bench([*flags, *TINY, "task=sst2", *[a for a in args if a not in flags]], glue_dir, results)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, text[-2000:]
    assert expected in text and "configuration error" in text and "Traceback" not in text, text[-2000:]
    # only Hydra's own run folder (tests/clitools.py puts it under results_dir); no sweep folder, no record
    assert {p.name for p in results.iterdir()} <= {"_hydra"} if results.exists() else True
    assert records_in(tmp_path) == []


def test_peft_fields_compose_alike_in_the_cli_and_the_compose_api(hydra_dir, tmp_path, glue_dir):
    """`method.FIELD=V` for a peft field the tuner's YAML does not list: no `+` and no rewriting of the command
    line; `python -m bench` (Hydra's own command-line parser, `--cfg job` prints what the job gets) and the
    compose API every other front end uses give the same method node, which the method's class accepts."""
    ov = ["method=oft", "method.r=0", "method.oft_block_size=16"]
    cfg = _compose([*TINY, *ov])
    assert check(cfg).fields == {"r": 0, "oft_block_size": 16}
    proc = run_bench(["--cfg", "job", *TINY, *ov], glue_dir, tmp_path / "results")
    assert proc.returncode == 0, proc.stderr[-2000:]
    printed = OmegaConf.create(proc.stdout)
    assert OmegaConf.to_container(printed.method) == OmegaConf.to_container(cfg.method)


def test_experiments_run_the_methods_that_declare_their_tag(hydra_dir):
    """experiment=smoke and experiment=catalogue run exactly the methods whose YAML declares `tags: [catalogue]`,
    smoke_decoders those declaring `decoders`, each once; a catalogue method declares a search range; only the
    learned combinations (composed: they need trained sources) and method=peft (a user's file) declare no group."""
    declared = {n: OmegaConf.load(CONF / "method" / f"{n}.yaml") for n in GROUPS["method"]}
    tagged = {tag: {n for n, c in declared.items() if tag in (c.get("tags") or [])} for tag in ("catalogue", "decoders")}
    untagged = {n for n, c in declared.items() if not c.get("tags")}
    assert untagged == {"lora_moe", "attempt", "adapter_fusion", "peft"}, untagged  # peft: the user's file
    for preset, tag in (("smoke", "catalogue"), ("catalogue", "catalogue"), ("smoke_decoders", "decoders")):
        cfg = _compose([f"experiment={preset}"], hydra_config=True)
        listed = str(OmegaConf.select(cfg, "hydra.sweeper.params.method")).split(",")
        assert len(listed) == len(set(listed)) and set(listed) == tagged[tag], (preset, tagged[tag] ^ set(listed))
    ranges = {n: list(declared[n].lr_range) for n in tagged["catalogue"]}
    assert all(0 < lo < hi for lo, hi in ranges.values()), ranges


def test_settings_are_built_once_typed_with_defaults_written_once(hydra_dir):
    """`settings(cfg, section)` builds a section's dataclass from the composed config; inference, retention, claim
    and progress take their defaults from their dataclasses only (conf/config.yaml does not repeat them,
    bench/config/store.py composes them; a field declared composed=False stays out of the configs records hold),
    and a bad value is named as check names it."""
    from bench.config.schema import (
        ClaimSettings,
        InferenceSettings,
        ProgressSettings,
        RetentionSettings,
        TrainSettings,
        settings,
    )
    from bench.config.store import FROM_SCHEMA

    cfg = _compose(["train.batch_size=8"])
    train = settings(cfg, "train")
    assert isinstance(train, TrainSettings) and train.batch_size == 8 and train.grad_accum_steps == 1
    assert settings(cfg, "claim") == ClaimSettings() and settings(cfg, "progress") == ProgressSettings()
    assert settings(cfg, "inference") == InferenceSettings() and settings(cfg, "retention") == RetentionSettings()
    assert "share" not in cfg.inference and cfg.inference.lengths == [16, 64, 128]
    assert settings(_compose(["claim.on_busy=wait"]), "claim").on_busy == "wait"
    assert settings(_compose(["experiment=ci_gate"]), "inference").enabled is False
    root = OmegaConf.load(CONF / "config.yaml")
    assert not set(FROM_SCHEMA) & set(root)
    with pytest.raises(ConfigError, match=r"claim\.poll_s=0: expected a number > 0"):
        settings(_compose(["claim.poll_s=0"]), "claim")
    with pytest.raises(ConfigError, match=r"train\.bach_size: unknown setting; did you mean batch_size\?"):
        settings(_compose(["+train.bach_size=8"]), "train")


def test_no_config_file_repeats_a_default_written_in_a_dataclass():
    """A YAML under conf/ that sets a key of a section composed from its dataclass (inference, retention, claim,
    progress) sets it to something other than the default: the default is written once, in the dataclass."""
    import dataclasses

    import yaml

    from bench.config.schema import SECTIONS
    from bench.config.store import FROM_SCHEMA

    repeated = []
    for path in sorted(CONF.rglob("*.yaml")):
        content = yaml.safe_load(path.read_text()) or {}
        for section in FROM_SCHEMA:
            defaults = dataclasses.asdict(SECTIONS[section]())
            given = content.get(section) if isinstance(content, dict) else None
            for key, value in (given if isinstance(given, dict) else {}).items():
                if key in defaults and value == defaults[key]:
                    repeated.append(f"{path.relative_to(CONF)}: {section}.{key}={value!r}")
    assert not repeated, repeated


def test_retention_docs_state_the_dataclass_defaults():
    """docs/retention.md's settings table states the defaults RetentionSettings holds, key for key."""
    import dataclasses
    import re

    import yaml

    from bench.config.schema import RetentionSettings

    defaults = dataclasses.asdict(RetentionSettings())
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \|", (REPO / "docs" / "retention.md").read_text(), re.MULTILINE)
    assert {key: yaml.safe_load(value.strip().strip("`")) for key, value in rows} == defaults


def test_run_identity_is_a_property_of_each_field(hydra_dir):
    """config_hash leaves out exactly the fields whose identity says so (bench.config.schema): changing one of them
    keeps the hash, changing a hashed field moves it, and a field hashed unless default hashes as if absent at its
    default."""
    from bench.config.rules import HASHED_UNLESS_DEFAULT, NOT_HASHED
    from bench.config.schema import identity_of
    from bench.records.schema import HASH_EXCLUDED, config_hash

    def chash(*overrides):
        return config_hash(OmegaConf.to_container(_compose(list(overrides)), resolve=True))

    base = chash()
    assert set(identity_of(NOT_HASHED)) <= set(HASH_EXCLUDED)
    for override in ("train.threads=3", "train.checkpoint_every=off", "results_dir=elsewhere", "claim.on_busy=wait",
                     "inference.repeats=5", "progress.mode=log", "debug.signal=SIGINT", "resume=false"):
        assert chash(override) == base, override
    assert chash("train.seed=1") != base and chash("train.batch_size=8") != base
    assert "train.nproc" in identity_of(HASHED_UNLESS_DEFAULT)
    config = OmegaConf.to_container(_compose([]), resolve=True)
    del config["train"]["nproc"]  # a config written before the key
    assert config_hash(config) == base and chash("train.nproc=2") != base
