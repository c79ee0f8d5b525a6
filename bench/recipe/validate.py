"""The whole composed config checked once, before any work: every section against its schema
(bench/config/schema.py), the method against its class, the task file, the trackers, the study's rules.

Why in the recipe layer: a check that binds settings to the method classes, task specs and trackers
has to see all of them, so it sits above them (as torchtune's config validation does against the
components' signatures); the CLI runs it before the first cell, the recipe again per cell."""
from __future__ import annotations

from omegaconf import OmegaConf

from bench.config.renamed import rename_settings
from bench.config.resolvers import resolved
from bench.config.schema import (
    RunSettings,
    SelectionSettings,
    all_settings,
    check_section,
    lr_search_range,
    schema_fields,
)
from bench.errors import ConfigError


def check_study(cfg, built: dict, method_name: str) -> None:
    """What experiment=study needs besides well-typed keys: a rate range for this method, no fixed
    train.lr (the protocol chooses it), and a selection split to choose on. `built`: the typed sections."""
    method = resolved(cfg.get("method"), "method") or {}
    study, train = built["study"], built["train"]
    selection = built["data"].selection if "data" in built else SelectionSettings()
    if lr_search_range(resolved(cfg.get("study"), "study"), dict(method, name=method_name)) is None:
        raise ConfigError(f"study: no learning-rate range for method {method_name!r}: declare `lr_range: [low, high]` "
                          f"in its YAML (method/{method_name}.yaml), or set study.lr_ranges.{method_name}=[low,high] "
                          "or study.lr_range=[low,high]")
    if train.lr is not None:
        raise ConfigError(f"train.lr={train.lr!r} with experiment=study: the protocol chooses the rate; "
                          f"set the search range instead (study.lr_ranges.{method_name} or study.lr_range)")
    if not selection.fraction:
        raise ConfigError("experiment=study needs a selection split (data.selection.fraction > 0): the rate and "
                          "epoch are chosen on it, never on the reported split")
    prune = study.prune
    if prune.enabled and prune.rung_epochs >= train.epochs:
        raise ConfigError(f"study.prune.rung_epochs={prune.rung_epochs}: the first rung must be shorter "
                          f"than the full run (train.epochs={train.epochs}); expected an integer < train.epochs")
    if prune.enabled and train.stop_after_epochs is not None:
        raise ConfigError("train.stop_after_epochs with study.prune.enabled=true: the study sets it on its "
                          "first-rung trials; leave it unset")


def check(cfg, *, whole_job: bool = True):
    """Validate a composed config (old method setting names moved to peft's first, bench.config.renamed);
    raises ConfigError naming the first bad option. Returns the method
    it built (callers may ignore it). `whole_job=False` for a cell derived from an already checked
    job (a study's trials set train.lr, which the study-level rule forbids in the user's config)."""
    from bench.data.tasks import task_spec
    from bench.models.build import method_from_config, method_source

    rename_settings(cfg)
    built = all_settings(cfg)
    for section in ("train", "model"):
        if section not in built:
            raise ConfigError(f"{section}: missing (choose one: {section}=<name>)")
    run = {k: resolved(cfg.get(k), k) for k in schema_fields(RunSettings) if k in cfg}
    check_section("", run, RunSettings)
    train = built["train"]
    sel = built["data"].selection if "data" in built else SelectionSettings()
    if train.select == "best_epoch" and not train.eval_every_epoch:
        raise ConfigError("train.select=best_epoch needs train.eval_every_epoch=true")
    if train.select == "best_epoch" and not sel.fraction:
        raise ConfigError("train.select=best_epoch needs a selection split (data.selection.fraction > 0): the "
                          "epoch is chosen on held-out train examples, never on the reported split")
    if cfg.get("task") is None:
        raise ConfigError("task: missing (choose one: task=<name>)")
    try:
        task_spec(cfg.task)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if cfg.get("method") is None:
        raise ConfigError("method: missing (choose one: method=<name>)")
    choice = OmegaConf.select(cfg, "hydra.runtime.choices.method", default=None)  # a sweep's job config
    method = method_from_config(cfg, where=method_source(choice) if choice else None)
    from bench.models.support import check_supported

    check_supported(method, cfg.model)  # a method that cannot run on this architecture, refused by name
    from bench.models.levers import check_levers
    from bench.recipe.trackers import check_logger
    from bench.training.data_parallel import check_nproc

    check_levers(cfg, method)
    check_nproc(train)
    check_logger(resolved(cfg.get("logger"), "logger"))
    if whole_job and "study" in built and built["study"].enabled:
        check_study(cfg, built, method.name)
    return method
