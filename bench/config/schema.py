"""Every setting of a composed config, checked once, before any work, against typed schemas.

Why here and once: a typo or an out-of-range value used to surface wherever a module first read it
(the runner, the model builder, the inference timer), sometimes after a model had loaded, and each
module spelled its own check. Now `check(cfg)` runs in the CLI before any cell (a bad option exits
2 with one line, no record, no folder) and again, cheaply, at the start of every cell that is run
without the CLI (bench.recipe.finetune), so no path skips it. As torchtune's config validation does, a method's
keys are checked against its class's constructor signature before the class is built.

The schemas are dataclasses: one field per key, its type, and in `metadata["rule"]` what values are
accepted (the rules and the field makers `opt`, `section`: bench.config.rules). A field without a default is
required. Modules that read a setting with a fallback
(`pick_pad_multiple`, `grad_accum_steps`, `inference.settings_from`) call `check_value` with the
same rule, so each rule is written once; the task files' checks (bench/data/tasks.py) and the method classes'
field checks call `check_value` with rules of their own, so every "expected X" message is written by one
function. `settings(cfg, section)` builds a section's dataclass once from a composed config (the recipe's
`train`, the sweep's `claim`, a cell's `progress`), so code reads typed fields.

Where a default is written, once: a section whose keys conf/ lists (train, model, data, ...) has its defaults in
the YAML; a field's default here is only what a config that lacks the key means (one written before the key
existed, or a key conf/ leaves out so that configs keep their hash). The sections that do not enter a run's
identity and have one default for every experiment (inference, retention, claim, progress) have their defaults
here only: bench/config/store.py composes them into every config from these dataclasses (every field but those
declared `composed=False`), so conf/ does not repeat them; an experiment's YAML sets only what it changes.

Unknown keys in train, model, data, inference, study, debug, progress and claim are errors that name the nearest
valid key (typos are the most common mistake). Unknown top-level keys are allowed: presets keep
helper blocks there for interpolation (`reference`, `gate_lr`).
"""
from __future__ import annotations

import difflib
from dataclasses import MISSING, dataclass, fields

from bench.config.rules import (
    AUTO_OR_INT,
    BOOL,
    CHECKPOINT_EVERY,
    DEVICE,
    HASHED,
    HASHED_UNLESS_DEFAULT,
    LENGTHS,
    LR,
    MAPPING,
    NOT_HASHED,
    RANGE,
    RANGES,
    SWEEP,
    TEXT,
    Rule,
    choice,
    integer,
    list_of,
    nullable,
    number,
    opt,
    section,
)
from bench.errors import ConfigError

# ------------------------------------------------------------------------------------------- schemas

@dataclass(kw_only=True)
class TrainSettings:
    """`train` (conf/train/*.yaml)."""

    epochs: int = opt(integer(1))
    batch_size: int = opt(integer(1))
    grad_accum_steps: int | None = opt(nullable(integer(1), "one micro-batch"), 1)
    init_from: str | None = opt(nullable(TEXT, "start from scratch"), None)
    eval_batch_size: int = opt(integer(1))
    lr: float | None = opt(nullable(LR, "the method's rate, method.lr"), None)
    weight_decay: float = opt(number(0))
    warmup_ratio: float = opt(number(0, 1))
    max_grad_norm: float | None = opt(nullable(number(0, lo_open=True), "no clipping"), None)
    max_seq_len: int = opt(integer(8))
    max_train_samples: int | None = opt(nullable(integer(1), "all"), None)
    # Absent = off, so configs written before these keys keep their config hash (experiment=budget).
    stratify_subsample: bool = opt(BOOL, False)
    min_steps: int | None = opt(nullable(integer(1), "epochs as given"), None)
    # Set by a pruned study on its first-rung trials (bench/sweep/study.py); absent = train every epoch.
    stop_after_epochs: int | None = opt(nullable(integer(1), "train every epoch"), None)
    # Set by the cost pass (bench/sweep/cost_pass.py) on its own copy of a record's config: time this many steps,
    # on batches of the first epoch that represent its sizes (bench.data.batching.representative_batches).
    max_steps: int | None = opt(nullable(integer(1), "every step"), None)
    init_head: str = opt(choice("auto", "never"), "auto")  # with init_from: auto = when the label spaces match
    max_eval_samples: int | None = opt(nullable(integer(1), "all"), None)
    seed: int = opt(integer(0))
    eval_every_epoch: bool = opt(BOOL)
    select: str = opt(choice("last", "best_epoch"))
    group_by_length: bool = opt(BOOL)
    # batches per length-sorted group; absent = 50 (bench.data.batching.MEGA_BATCHES), so older configs keep their hash
    group_mega_batches: int | None = opt(nullable(integer(1), "50 batches"), None)
    # AdamW implementation; absent = foreach (bit-identical to the loop, faster on CPU; bench/training/optimizer.py)
    optimizer_impl: str | None = opt(nullable(choice("loop", "foreach", "fused"), "foreach"), None)
    threads: int | str = opt(AUTO_OR_INT, "auto", NOT_HASHED)
    deterministic: bool = opt(BOOL)
    warmup_steps_excluded: int = opt(integer(0))
    device: str = opt(DEVICE, "auto")
    precision: str = opt(choice("auto", "fp32", "bf16", "fp16"), "auto")
    pad_to_multiple_of: int | str | None = opt(AUTO_OR_INT, "auto")
    # memory levers and data parallel (bench/models/levers.py, bench/training/data_parallel.py): at their
    # defaults, configs written before these keys keep their hash
    gradient_checkpointing: bool = opt(BOOL, False, HASHED_UNLESS_DEFAULT)
    weights_dtype: str = opt(choice("fp32", "bf16", "nf4"), "fp32", HASHED_UNLESS_DEFAULT)
    nproc: int = opt(integer(1), 1, HASHED_UNLESS_DEFAULT)
    # when a cell saves its training state (bench/training/checkpoint.py): a resumed cell ends as one run would
    checkpoint_every: int | str | None = opt(CHECKPOINT_EVERY, "auto", NOT_HASHED)


@dataclass(kw_only=True)
class ModelSettings:
    """`model` (conf/model/*.yaml)."""

    name: str = opt(TEXT)
    source: str = opt(TEXT)
    tokenizer: str | None = opt(nullable(TEXT, "same as source"), None)
    pretrained: bool = opt(BOOL, True)
    pooling: str = opt(choice("mean", "cls", "pooler", "last", "auto"), "mean")  # auto: as detected (model=auto)
    # model=auto (conf/model/auto.yaml): the architecture read from config.json, unsupported ones refused
    detect: bool = opt(BOOL, False)
    head: str = opt(choice("uniform", "native"), "uniform")
    head_dropout: float = opt(number(0, 1), 0.1)
    config_overrides: dict = opt(MAPPING, None)  # noqa: RUF009 - opt() is a field()
    # present (null) on the decoders: the method YAMLs that name encoder modules (lora, osf: query, value;
    # ln_tuning: LayerNorm) read it, `${oc.select:model.peft_targets,<encoder names>}`, and so target peft's
    # default for the architecture there; absent on the encoders, whose resolved configs (and hashes) stay as before
    peft_targets: None = opt(Rule("null (peft's default targets for the architecture), or leave the key out",
                                  lambda v: v is None), None)


@dataclass(kw_only=True)
class SelectionSettings:
    """`data.selection`: the held-out part of the train file that choices are made on."""

    fraction: float = opt(number(0, 1), 0.0)
    max_examples: int | None = opt(nullable(integer(1), "no cap"), None)
    stratify: bool = opt(BOOL, True)


@dataclass(kw_only=True)
class DataSettings:
    """`data`."""

    glue_dir: str | None = opt(nullable(TEXT, "the Hugging Face hub"), None, NOT_HASHED)
    selection: SelectionSettings = section(SelectionSettings)  # noqa: RUF009 - section() is a field()


@dataclass(kw_only=True)
class InferenceSettings:
    """`inference` (docs/inference.md): the cost of the finetuned model after training, the record's `inference`.
    Its defaults are written here only (composed into every config, bench/config/store.py; the ones
    `bench.inference.cost.settings_from` fills in for a config that lacks a key)."""

    enabled: bool = opt(BOOL, True)  # false: skip it (the record's inference is null)
    # batch-1 latency at these exact token lengths (synthetic inputs)
    lengths: list = opt(LENGTHS, [16, 64, 128])  # noqa: RUF009 - opt() is a field()
    # stop when precise (bench/inference/rounds.py): rounds run until every ratio's 95 % interval has
    # at most this half-width, between min_repeats and repeats (the cap); null = exactly `repeats`.
    # 0.03, not 0.01: at one thread the per-call jitter left +-0.02-0.05 after the 30-round cap on a
    # quiet machine, so +-0.01 was never met and every cold measurement ran the cap (docs/decisions.md)
    target_halfwidth: float | None = opt(nullable(number(0, lo_open=True), "a fixed number of rounds: repeats"), 0.03)
    min_repeats: int = opt(integer(2), 8)  # timed rounds per length before the first look at the intervals
    # at most this many timed rounds per length; each round calls every variant once, interleaved
    repeats: int = opt(integer(3), 30)
    warmup: int = opt(integer(1), 3)  # untimed rounds before timing
    # 16, not 32: per-sample CPU throughput is the same at 16 x 64 tokens (1,024 rows per matmul) and
    # a batched round, the measurement's most expensive part, costs half (docs/decisions.md)
    batch_size: int = opt(integer(1), 16)  # the throughput batch ...
    batch_length: int = opt(integer(1), 64)  # ... and its token length
    batch_min_repeats: int = opt(integer(2), 3)
    batch_repeats: int = opt(integer(3), 6)  # at most (exactly, with target_halfwidth null)
    batch_warmup: int = opt(integer(1), 1)
    # CPU threads while timing (per-core latency; stable on a shared machine); null = the cell's
    threads: int | None = opt(nullable(integer(1), "the cell's threads"), 1)
    merge: bool = opt(BOOL, True)  # also time the merged model where the method can merge (LoRA, IA3)
    merge_atol: float = opt(number(0, lo_open=True), 1e-4)  # merged vs unmerged logits must agree within this
    # one measurement per structure in a sweep (bench/inference/cache.py); not composed, so that the configs
    # records hold stay as they were: `+inference.share=false` measures every cell
    share: bool = opt(BOOL, True, composed=False)
    # ... and across sweeps: entries under <results_dir>/.inference_cache/ (false: per sweep folder)
    cache: bool = opt(BOOL, True)


@dataclass(kw_only=True)
class PruneSettings:
    """`study.prune`: successive halving over the learning-rate trials (docs/protocol.md)."""

    enabled: bool = opt(BOOL, False)
    eta: int = opt(integer(2), 3)
    rung_epochs: int = opt(integer(1), 1)
    # a trial within noise_z x the paired-bootstrap SD of the best first-rung score is not cut, and
    # nothing is cut when the best is within noise of chance; 0: cut by rank alone
    noise_z: float = opt(number(0), 2.0)


@dataclass(kw_only=True)
class SearchSettings:
    """`study.search`: where the trials of the budget go (bench/sweep/search.py, docs/protocol.md)."""

    initial: int | None = opt(nullable(integer(1), "all of study.trials on the declared range"), None)
    max_factor: float = opt(number(1), 10.0)  # the hard limit: the declared range widened this much each way


@dataclass(kw_only=True)
class StabilitySettings:
    """`study.stability`: a selected rate must train on most seeds, not only on the trial seed
    (bench/sweep/study.py, docs/protocol.md)."""

    # a final seed failed when it collapsed on the selection split (bench/analysis/chance.py) or its selection
    # score gained less than this share of the trial seed's gain over chance (a run that did not learn the task)
    min_gain_share: float = opt(number(0, 1), 0.5)
    # the rate is rejected when more than this share of its seeds failed; null: no check
    max_failed_share: float | None = opt(nullable(number(0, 1), "no check"), 0.2)
    # how many times a rejected rate gives way to the best lower rate whose trial trained (each: its seeds)
    retries: int = opt(integer(0), 1)


@dataclass(kw_only=True)
class StudySettings:
    """`study` (experiment=study, docs/protocol.md)."""

    enabled: bool = opt(BOOL, False)
    trials: int = opt(integer(1))
    seeds: int = opt(integer(1))
    trial_seed: int = opt(integer(0), 0)
    lr_range: list | None = opt(nullable(RANGE, "per method, lr_ranges"), None)  # noqa: RUF009 - opt() is a field()
    lr_ranges: dict = opt(RANGES, None)  # noqa: RUF009 - opt() is a field()
    prune: PruneSettings = section(PruneSettings)  # noqa: RUF009 - section() is a field()
    search: SearchSettings = section(SearchSettings)  # noqa: RUF009 - section() is a field()
    stability: StabilitySettings = section(StabilitySettings)  # noqa: RUF009 - section() is a field()


def lr_search_range(study: dict, method: dict) -> list | None:
    """The learning-rate range a study searches for `method`: `study.lr_range` (one range for any method),
    else the experiment's `study.lr_ranges.<name>`, else the range the method's YAML declares (`lr_range`)."""
    name = str(method.get("name") or "")
    return study.get("lr_range") or (study.get("lr_ranges") or {}).get(name) or method.get("lr_range")


@dataclass(kw_only=True)
class RetentionSettings:
    """`retention` (docs/retention.md): what a cell costs the backbone, measured after training on data the
    cell never trained or selected on; it measures the trained model and does not change it (not in the hash).
    Its defaults are written here only (composed into every config, bench/config/store.py)."""

    # auto: on for pretrained backbones, off for random-weight builds (model.pretrained=false, the tiny
    # test models), whose "skill" is no pretrained capability to lose; false: the record's retention is null
    enabled: bool | str = opt(Rule("true, false or auto", lambda v: isinstance(v, bool) or v == "auto"), "auto")
    # rows of the similarity set (STS-B dev; MRPC dev when the task is STS-B), a fixed sample; both
    # sentences of each row make the drift (CKA) sample and, for decoders, the language-model text
    pairs: int = opt(integer(10), 300)
    batch_size: int = opt(integer(1), 64)
    intruder_k: int = opt(integer(1), 10)  # top-k singular vectors of each finetuned matrix examined
    intruder_epsilon: float = opt(number(0, 1, lo_open=True), 0.5)  # below this best |cosine|: an intruder
    # which weight matrices (last name part), for every method alike
    intruder_modules: list = opt(list_of(TEXT, "a list of module names, e.g. [query, value]"),  # noqa: RUF009
                                 ["query", "value"])
    cache: bool = opt(BOOL, True)  # the "before" side once per backbone: <results_dir>/.retention_cache/


@dataclass(kw_only=True)
class ProgressSettings:
    """`progress`: what a running cell and sweep print (bench/training/progress.py); not in the config hash."""

    mode: str = opt(choice("auto", "bar", "log", "off"), "auto")  # auto: a bar on a terminal, log lines otherwise
    # log mode: at most one line per cell this often, and one at its end
    interval_s: float = opt(number(0, lo_open=True), 30.0)


@dataclass(kw_only=True)
class ClaimSettings:
    """`claim`: one cell, one run across launches sharing a results folder (bench/sweep/claims.py); not in the hash."""

    # a cell another live launch is running: skip it, or wait (then skip when it finished ok, else run it)
    on_busy: str = opt(choice("skip", "wait"), "skip")
    # a claim whose heartbeat is older than this, or whose process on this host is gone, is taken over
    stale_after_s: float = opt(number(0, lo_open=True), 300.0)
    heartbeat_s: float = opt(number(0, lo_open=True), 15.0)  # how often the running launch touches its claim
    poll_s: float = opt(number(0, lo_open=True), 10.0)  # on_busy=wait: how often to look again


@dataclass(kw_only=True)
class DebugSettings:
    """`debug`: fault injection for the reliability tests (docs/faults.md)."""

    inject_nan_at_step: int | None = opt(nullable(integer(0), "off"), None)
    inject_oom_at_step: int | None = opt(nullable(integer(0), "off"), None)
    inject_kill_at_step: int | None = opt(nullable(integer(0), "off"), None)
    # a stop signal sent to the cell's own process, in a launch of the cell that is not a relaunch
    # (no record of it yet), after this optimizer step or when this phase starts (tests/test_preemption.py)
    signal_at_step: int | None = opt(nullable(integer(1), "off"), None, NOT_HASHED)
    signal_at_phase: str | None = opt(nullable(choice("epoch_eval", "eval", "inference"), "off"), None, NOT_HASHED)
    signal: str = opt(choice("SIGTERM", "SIGINT", "SIGUSR1", "SIGUSR2"), "SIGTERM", NOT_HASHED)


@dataclass(kw_only=True)
class RunSettings:
    """Top-level keys: paths and run control (conf/config.yaml)."""

    results_dir: str = opt(TEXT, identity=NOT_HASHED)
    sweep_name: str = opt(SWEEP, identity=NOT_HASHED)
    cache_dir: str | None = opt(nullable(TEXT, "no cache"), None, NOT_HASHED)
    isolate: bool = opt(BOOL, True, NOT_HASHED)
    resume: bool = opt(BOOL, True, NOT_HASHED)
    label: str | None = opt(nullable(TEXT, "from the method's settings"), None)
    save_delta: bool = opt(BOOL, False)


@dataclass(kw_only=True)
class Sections:
    """The checked sections of a composed config, each with its identity: the tuning protocol's bookkeeping (a
    trial and a final run of one config are one cell), the measurements after training (they measure the trained
    model and do not change it) and what is printed or coordinated while a run goes enter no run's identity."""

    train: TrainSettings = section(TrainSettings)  # noqa: RUF009 - section() is a field()
    model: ModelSettings = section(ModelSettings)  # noqa: RUF009 - section() is a field()
    data: DataSettings = section(DataSettings)  # noqa: RUF009 - section() is a field()
    inference: InferenceSettings = section(InferenceSettings, NOT_HASHED)  # noqa: RUF009 - section() is a field()
    retention: RetentionSettings = section(RetentionSettings, NOT_HASHED)  # noqa: RUF009 - section() is a field()
    study: StudySettings = section(StudySettings, NOT_HASHED)  # noqa: RUF009 - section() is a field()
    debug: DebugSettings = section(DebugSettings)  # noqa: RUF009 - section() is a field()
    progress: ProgressSettings = section(ProgressSettings, NOT_HASHED)  # noqa: RUF009 - section() is a field()
    claim: ClaimSettings = section(ClaimSettings, NOT_HASHED)  # noqa: RUF009 - section() is a field()


#: the checked sections: config key -> schema (top-level keys: RunSettings)
SECTIONS = {f.name: f.metadata["schema"] for f in fields(Sections)}


def identity_of(identity: str, schema=None, prefix: str = "") -> dict:
    """Dotted key -> default of every field of the whole config's schemas (Sections, RunSettings) whose
    identity is `identity`; a section whose own identity it is appears once, by its name (default None)."""
    out: dict = {}
    for schema_, prefix_ in ((schema, prefix),) if schema is not None else ((Sections, ""), (RunSettings, "")):
        for f in fields(schema_):
            path = f"{prefix_}{f.name}"
            if f.metadata.get("identity", HASHED) == identity:
                out[path] = None if f.default is MISSING else f.default
            elif f.metadata.get("schema") is not None:
                out.update(identity_of(identity, f.metadata["schema"], f"{path}."))
    return out
#: what a method's YAML declares about itself for experiments, not settings of a cell: its learning-rate search
#: range (`lr_range: [low, high]`, the tuning protocol's default for the method) and the groups it belongs to
#: (`tags: [catalogue, decoders]`; an experiment selects methods by tag). Neither is passed to the method's
#: class nor enters a run's identity (bench/records/schema.py HASH_EXCLUDED).
METHOD_DECLARATIONS = ("lr_range", "tags")
#: the method keys every method config may have; the rest are checked against the class's signature
METHOD_COMMON = ("_target_", "name", "lr", *METHOD_DECLARATIONS)


# ------------------------------------------------------------------------------------------- checking

def schema_fields(schema) -> dict:
    return {f.name: f for f in fields(schema)}


def model_setting(model_cfg, key: str):
    """`model.<key>` of a model config or a record's (which may predate the key), else ModelSettings' default."""
    value = model_cfg.get(key) if hasattr(model_cfg, "get") else None
    return schema_fields(ModelSettings)[key].default if value is None else value


def nearest(key: str, valid) -> str:
    """`; did you mean X?` for an unknown key, or nothing when no valid key is close."""
    valid = list(valid)
    # a transposition (lroa -> lora) first: difflib alone ranks another name with more letters in order higher
    close = [v for v in valid if sorted(v) == sorted(key)] or difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def _rule_of(path: str):
    section, _, rest = path.partition(".")
    schema = SECTIONS.get(section) if rest else RunSettings
    key = rest if rest else section
    while "." in key and schema is not None:
        head, _, key = key.partition(".")
        schema = schema_fields(schema)[head].metadata.get("schema")
    return schema_fields(schema)[key].metadata["rule"]


def check_value(path: str, value, rule: Rule | None = None, error: type[Exception] = ConfigError):
    """Check one value against a rule, by default the schema rule of the option `path` (`train.threads`);
    returns the value unchanged. The one place the message of a bad value is written, for settings, task files
    ("task sst2: `kind`", raised as ValueError) and method fields (`method.r`): the key, the value, what was
    expected."""
    rule = _rule_of(path) if rule is None else rule
    if not rule(value):
        raise error(f"{path}={value!r}: expected {rule.expected}")
    return value


def unknown_key(path: str, key: str, valid, error: type[Exception] = ConfigError) -> Exception:
    """The error for a key that is not one of `valid` (the nearest valid key named, then all of them)."""
    return error(f"{path}: unknown setting{nearest(key, valid)} (valid: {', '.join(valid)})")


def check_section(prefix: str, values, schema, required: bool = True) -> None:
    """Check a mapping against a schema: unknown keys (with the nearest valid one), missing required
    keys, and each value against its rule."""
    known = schema_fields(schema)
    for key, value in (values or {}).items():
        f, path = known.get(key), f"{prefix}.{key}" if prefix else key
        if f is None:
            raise unknown_key(path, key, known)
        sub = f.metadata.get("schema")
        if sub is not None:
            check_value(path, value, Rule(f"a mapping with {', '.join(schema_fields(sub))}",
                                          lambda v: isinstance(v, dict)))
            check_section(path, value, sub, required)
        else:
            check_value(path, value, f.metadata["rule"])
    if required:
        for key, f in known.items():
            if key not in (values or {}) and f.default is MISSING and f.default_factory is MISSING:
                path = f"{prefix}.{key}" if prefix else key
                raise ConfigError(f"{path}: missing (expected {f.metadata['rule'].expected})")


def build(schema, values: dict):
    """An instance of `schema` from values already checked against it (check_section): a key the values
    lack takes the field's default, nested sections are built too."""
    kwargs = {}
    for name, f in schema_fields(schema).items():
        if name in (values or {}):
            sub = f.metadata.get("schema")
            kwargs[name] = build(sub, values[name]) if sub is not None else values[name]
    return schema(**kwargs)


def settings(cfg, section: str):
    """The typed settings of one section of a composed config (`train`, `claim`, ...: SECTIONS), resolved,
    checked against the section's rules (the key, what was expected, the nearest valid key) and built once;
    a section the config lacks is built from the schema's defaults (a required field then says it is missing)."""
    from bench.config.resolvers import resolved

    schema = SECTIONS[section]
    values = resolved(cfg.get(section) if hasattr(cfg, "get") else None, section) or {}
    check_section(section, values, schema)
    return build(schema, values)


def all_settings(cfg) -> dict:
    """`settings` of every section the composed config has (SECTIONS order): what the checks read."""
    return {section: settings(cfg, section) for section in SECTIONS if cfg.get(section) is not None}
