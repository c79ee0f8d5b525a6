"""Build a cell's model: backbone + head, then the method validated and applied. The one way to do it.

The runner (bench/recipe/finetune.py), `python -m bench.params`, `bench.predict`, the scripts and the tests all
build through `build_cell`, so a parameter count printed by `bench.params` is the count a run
records, and no caller can forget `validate` or `finalize`. Order (each step needs the one before):

    method from its config (train.lr replaces method.lr when set)   -> `method_from_config`
    model from its config, seeded                                    -> bench.models.backbones.build_model
    method.unsupported_reason(backbone config)                       -> UnsupportedError (bench/methods/support.py)
    method.validate(backbone config, max_seq_len)                    -> ConfigError before training
    method.apply, method.finalize (the head trains in every method)
    model.pass_token_type_ids = method.uses_token_type_ids           (the method's declaration)
    parameter counts                                                 -> bench.measure.counts.count_params

`meta=True` builds on PyTorch's meta device (accelerate's `init_empty_weights`): shapes without
storage, for counts of billion-parameter models in seconds (tests/test_params.py checks that the
counts equal a materialised model's).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

from bench.measure.counts import count_params
from bench.methods import Method
from bench.methods.support import refuse_unsupported
from bench.models.backbones import build_model, head_counting
from bench.models.levers import cast_frozen, prepare_kbit


@dataclass
class Cell:
    """A built cell: the model with the method applied, and what a record says about it."""

    model: object            # bench.models.backbones.SequenceClassifier
    method: Method
    tokenizer: object
    backbone_config: object  # the transformers config of the backbone
    source: str              # where the backbone came from (bench.models.backbones.Built.source)
    tokenizer_source: str
    params: dict             # the record's `params`: count_params + head_kind + counting
    weights: dict | None = None  # bench.models.levers.cast_frozen: the stored dtype of frozen / trainable weights


def method_source(choice: str | None = None) -> str:
    """Where the method config came from, for error messages: the chosen YAML (`method=<choice>`;
    by default what Hydra's run chose, when a Hydra run composed the config)."""
    if choice is None:
        try:
            from hydra.core.hydra_config import HydraConfig

            choice = HydraConfig.get().runtime.choices.get("method")
        except Exception:  # noqa: BLE001 - not under a Hydra run (tests, the compose API)
            choice = None
    return f"method/{choice}.yaml (method={choice}) or its overrides" if choice else "the method config"


def method_from_config(cfg, where: str | None = None) -> Method:
    """The cell's method from `cfg.method`, with `train.lr`, when set, as its learning rate: the method
    config's `lr` is the one default, `train.lr` the user's explicit override. Built by
    bench.methods.validate.check_method, which checks the keys against the class's signature first."""
    from bench.config.resolvers import resolved
    from bench.methods.validate import check_method

    method_cfg = resolved(cfg.method, "method")
    return check_method(method_cfg, cfg.train.get("lr"), where=where or method_source())


def build_cell(model_cfg, method: Method, num_labels: int, seed: int, max_seq_len: int,
               meta: bool = False, weights_dtype: str = "fp32") -> Cell:
    """Build backbone + head (`bench.models.backbones.build_model`, seeded by `seed`) and apply `method` to it
    with validation; returns the model, the method and the parameter counts of the record."""
    ctx = contextlib.nullcontext()
    if meta:
        from accelerate import init_empty_weights

        ctx = init_empty_weights(include_buffers=False)
    with ctx:
        built = build_model(model_cfg, num_labels, seed, weights_dtype)
        refuse_unsupported(method, built.backbone_config)  # the method's own declaration (bench/methods/support.py)
        method.validate(built.backbone_config, int(max_seq_len))
        prepare_kbit(built.model)  # a 4-bit base (train.weights_dtype=nf4): peft's preparation, before the method
        method.apply(built.model)
        method.finalize(built.model)
        weights = cast_frozen(built.model, weights_dtype)  # train.weights_dtype=bf16: frozen weights in bf16
    model = built.model
    model.pass_token_type_ids = method.uses_token_type_ids
    params = dict(count_params(model), head_kind=model.head_kind, counting=head_counting(model))
    return Cell(model, method, built.tokenizer, built.backbone_config, built.source, built.tokenizer_source, params,
                weights)
