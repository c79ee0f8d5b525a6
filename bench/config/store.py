"""The config nodes peft-bench adds to Hydra's ConfigStore, which conf/config.yaml's defaults list names.

`bench/method_fields` (package `method`): an empty node whose struct flag is off. Hydra closes the whole
composed config (struct) before it applies command-line overrides, so a key a file does not list needs
Hydra's `+`; merged after the method's YAML, this node's explicit flag keeps the method node open, so
`method.FIELD=V` is accepted for a field the YAML does not list (a peft config field a tuner's YAML leaves
at peft's default), in every front end that composes conf/ (`python -m bench`, its multiruns, bench.params,
bench.plan, bench.reproduce, the tests). What the method accepts is then judged by its class
(bench.methods.validate.check_method): an unknown name exits 2, naming the nearest valid one. Every other
section stays closed: `train.bach_size=8` is still Hydra's "Could not override".

`bench/claim`, `bench/progress` (packages `claim`, `progress`): the run-control sections whose defaults are
written once, in their dataclasses (bench.config.schema ClaimSettings, ProgressSettings), composed into every
config as plain nodes, so `claim.on_busy=wait` overrides them as before and a misspelled key still needs `+` and
is then named by bench.config.schema's check. Neither section enters a run's identity.
"""
from __future__ import annotations

GROUP, NAME = "bench", "method_fields"
#: section -> its dataclass, composed from the dataclass's defaults (conf/config.yaml lists `bench/<section>`)
FROM_SCHEMA = ("claim", "progress")


def register() -> None:
    """Store the nodes (idempotent: a second store replaces the first with the same content)."""
    import dataclasses

    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    from bench.config.schema import SECTIONS

    store = ConfigStore.instance()
    store.store(group=GROUP, name=NAME, package="method", node=OmegaConf.create({}, flags={"struct": False}))
    for section in FROM_SCHEMA:
        store.store(group=GROUP, name=section, package=section,
                     node=OmegaConf.create(dataclasses.asdict(SECTIONS[section]())))
