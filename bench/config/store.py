"""The config nodes peft-bench adds to Hydra's ConfigStore, which conf/config.yaml's defaults list names.

`bench/method_fields` (package `method`): an empty node whose struct flag is off. Hydra closes the whole
composed config (struct) before it applies command-line overrides, so a key a file does not list needs
Hydra's `+`; merged after the method's YAML, this node's explicit flag keeps the method node open, so
`method.FIELD=V` is accepted for a field the YAML does not list (a peft config field a tuner's YAML leaves
at peft's default), in every front end that composes conf/ (`python -m bench`, its multiruns, bench.params,
bench.plan, bench.reproduce, the tests). What the method accepts is then judged by its class
(bench.methods.validate.check_method): an unknown name exits 2, naming the nearest valid one. Every other
section stays closed: `train.bach_size=8` is still Hydra's "Could not override".

`bench/inference`, `bench/retention`, `bench/claim`, `bench/progress` (packages of the same names): the sections
whose defaults are written once, in their dataclasses (bench.config.schema InferenceSettings, RetentionSettings,
ClaimSettings, ProgressSettings), composed into every config as plain nodes of the fields declared `composed`, so
`inference.enabled=false` overrides them as before, an experiment's YAML sets what it changes, and a misspelled key
still needs `+` and is then named by bench.config.schema's check. None of them enters a run's identity.
"""
from __future__ import annotations

GROUP, NAME = "bench", "method_fields"
#: the sections composed from their dataclass's defaults (conf/config.yaml lists `bench/<section>`)
FROM_SCHEMA = ("inference", "retention", "claim", "progress")


def composed_defaults(section: str) -> dict:
    """The node of a section composed from its dataclass: each field declared `composed`, at its default."""
    import dataclasses

    from bench.config.schema import SECTIONS

    values = dataclasses.asdict(SECTIONS[section]())
    return {f.name: values[f.name] for f in dataclasses.fields(SECTIONS[section]) if f.metadata["composed"]}


def register() -> None:
    """Store the nodes (idempotent: a second store replaces the first with the same content)."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    store = ConfigStore.instance()
    store.store(group=GROUP, name=NAME, package="method", node=OmegaConf.create({}, flags={"struct": False}))
    for section in FROM_SCHEMA:
        store.store(group=GROUP, name=section, package=section,
                     node=OmegaConf.create(composed_defaults(section)))
