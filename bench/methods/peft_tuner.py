"""Any peft tuner, without code: `method.peft_type` names the tuner, every other setting is a field
of that tuner's peft config class, spelled as peft spells it (`method.r`, `method.n_frequency`,
`method.boft_block_size`).

Why one generic class rather than a class per tuner: peft ships 45 tuner types and adds more each
release; each already has a config dataclass whose fields are its settings and a `get_peft_model`
that applies it. What the harness adds on top is the same for all of them (wrap the backbone only,
so head, pooling and loss stay the same for every method; save peft's own folder plus the head), so
a new tuner is one YAML file in conf/method/.

Where a tuner needs more than `get_peft_model` (AdaLoRA's rank budget, the data-pass initialisations EVA,
CorDA and LoRA-GA, the base-rewriting PiSSA and OLoRA, peft's LoRA+ and LoRA-FA optimizer factories, the
tuners that cannot wrap GPT-2's Conv1D), a *quirk* registered in bench/methods/quirks/ declares the peft
type, initialisation (`init_lora_weights`) or optimizer (`method.optimizer`) it handles; this class builds
the quirks that match its settings and calls their hooks, and never tests a tuner's name or type.

Identity: the method's name is the YAML's `name` (lower case, as peft names the tuner: `vera`,
`dora`, `pissa`), registered in `bench.methods.REGISTRY` as a subclass of this class the first time
a config of that name is built, so records, labels and deltas name it like any built-in method.
"""
from __future__ import annotations

import functools
import importlib
import operator

from torch import nn

from bench.config.schema import check_value, choice
from bench.errors import ConfigError
from bench.methods.base import REGISTRY
from bench.methods.peft_fields import (  # noqa: F401 - the tuner's vocabulary, named here too
    FILE_SETTINGS,
    MANAGED_FIELDS,
    OWN_SETTINGS,
    config_fields,
    peft_config_class,
    unknown_field_message,
)
from bench.methods.peft_methods import PeftMethod
from bench.methods.quirks.registry import nested_config_classes, optimizer_names, quirks_for


def _plain(value):
    """OmegaConf containers arrive as lists/dicts already; tuples from defaults become lists (peft
    accepts both, JSON records want lists)."""
    if isinstance(value, tuple):
        return list(value)
    return value


def _peft_object(path: str, mapping: dict):
    """A nested peft config (EvaConfig, CordaConfig, ...) from its YAML mapping; `path` is module.Class."""
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)(**mapping)


class PeftTuner(PeftMethod):
    """The generic peft method (see the module docstring)."""

    name = "peft"
    #: the method's name comes from its config (`name:`), not from the class (bench.methods.build_method)
    named_by_config = True

    def __init__(self, lr=None, peft_type: str | None = None, optimizer: str = "adamw",
                 loraplus_lr_ratio: float = 16.0, config_file: str | None = None, adapter_config: dict | None = None,
                 **fields):
        self.config_file, self.file_notes, self._adapter_config = config_file, None, adapter_config
        if adapter_config is None and config_file is not None:  # built outside Hydra (tests, the API)
            from bench.config.resolvers import read_adapter_config

            adapter_config = self._adapter_config = read_adapter_config(config_file)
        overrides: dict = {}
        if adapter_config is not None:  # method=peft: the file's tuner and fields, command-line fields on top
            peft_type, overrides, fields = self._from_file(adapter_config, config_file, peft_type, fields)
        if peft_type is None:
            hint = " or method.config_file=PATH (a peft adapter_config.json)" if self.name == PeftTuner.name else ""
            raise ConfigError(f"method {self.name}: no method.peft_type (the peft tuner to build, e.g. vera){hint}")
        self.peft_type = str(peft_type).lower()
        valid = config_fields(self.peft_type)
        unknown = [k for k in fields if k not in valid]
        if unknown:
            raise ConfigError(unknown_field_message(self.name, self.peft_type, unknown[0]))
        if overrides:
            from bench.methods.peft_file import check_field_types

            for key in overrides:  # the command line's method.<field>= values, named as typed
                check_field_types(self._config_class, {key: fields[key]}, f"method.{key} (an override of the file)")
        self.optimizer, self.loraplus_lr_ratio = str(optimizer), float(loraplus_lr_ratio)
        self.fields = {k: _plain(v) for k, v in fields.items()}
        self.quirks = quirks_for(self)
        super().__init__(lr=lr)

    def _from_file(self, adapter_config, config_file, peft_type, fields):
        """(peft type, command-line fields, all fields) from a peft file (method=peft)."""
        from bench.methods.peft_file import fields_from_file

        where = f"method.config_file={config_file}" if config_file else "method.adapter_config"
        file_type, file_fields, self.file_notes = fields_from_file(dict(adapter_config), where)
        if peft_type is not None and str(peft_type).lower() != file_type:
            raise ConfigError(f"method.peft_type={peft_type!r}: {where} is a {file_type} config; "
                              "leave method.peft_type unset (the file names the tuner)")
        return file_type, dict(fields), {**file_fields, **fields}

    def file_record(self) -> dict | None:
        """The record's `method_file` section (method=peft): where the file was, its sha256, what of it
        was ignored, dropped or replaced (bench.methods.peft_file); None for a YAML-defined tuner."""
        if self.file_notes is None:
            return None
        notes = dict(self.file_notes, path=str(self.config_file) if self.config_file else None)
        for quirk in self.quirks:
            for key, now in quirk.replaced_by_harness().items():
                if notes["replaced_by_harness"].get(key):
                    notes["replaced_by_harness"][key]["now"] = now
        return notes

    # -- settings -------------------------------------------------------------------------------
    @classmethod
    def accepted_settings(cls, method_cfg: dict) -> list[str]:
        """What a config may set: the harness's own settings and the chosen tuner's config fields (the
        tuner named by `peft_type`, or by the peft file's content for method=peft)."""
        peft_type = tuner_type(method_cfg)
        if peft_type is None:
            raise ConfigError(f"method {method_cfg.get('name', cls.name)}: no method.peft_type (the peft tuner to "
                              "build, e.g. vera) and no method.config_file (a peft adapter_config.json)")
        return [*OWN_SETTINGS, *FILE_SETTINGS, *config_fields(str(peft_type))]

    def settings(self) -> dict:
        own = {"adapter_config": self._adapter_config} if self.file_notes is not None else {}
        return {"lr": self.lr, "peft_type": self.peft_type, "optimizer": self.optimizer,
                "loraplus_lr_ratio": self.loraplus_lr_ratio, **own, **self.fields}

    @property
    def init(self) -> str:
        """`init_lora_weights` in lower case ("" when unset): the initialisation a quirk may handle."""
        return str(self.fields.get("init_lora_weights", "")).lower()

    @property
    def _config_class(self):
        return peft_config_class(self.peft_type)

    @property
    def is_prompt_learning(self) -> bool:
        from peft import PromptLearningConfig

        return issubclass(self._config_class, PromptLearningConfig)

    @property
    def uses_token_type_ids(self) -> bool:  # peft's prompt learning drops segment ids
        return not self.is_prompt_learning

    @property
    def rewrites_base(self) -> bool:
        return any(q.rewrites_base for q in self.quirks)

    @property
    def peft_type_name(self) -> str:
        return self.peft_type.upper()

    def uses_hook(self, hook: str) -> bool:
        return any(q.overrides(hook) for q in self.quirks)

    # -- protocol -------------------------------------------------------------------------------
    def unsupported_reason(self, backbone_config) -> str | None:
        """GPT-2's Conv1D projections for a tuner or initialisation a quirk declares peft implements for
        nn.Linear only (bench/methods/quirks/conv1d.py), then the default-target rule of every peft method."""
        from bench.methods.architectures import uses_conv1d

        if uses_conv1d(backbone_config):
            for quirk in self.quirks:
                if not quirk.runs_on_conv1d():
                    return (f"{quirk.describe()} supports nn.Linear layers, not the Conv1D layers of GPT-2's attention "
                            "and feed-forward projections (in the installed peft)")
        return super().unsupported_reason(backbone_config)

    def validate(self, backbone_config, max_seq_len):
        super().validate(backbone_config, max_seq_len)
        optimizers = optimizer_names()
        check_value("method.optimizer", self.optimizer, choice(*optimizers))
        for quirk in self.quirks:
            quirk.check()
        try:
            self.peft_config(backbone_config)
        except (TypeError, ValueError) as exc:  # peft's own checks in __post_init__, with its message
            raise ConfigError(f"method={self.name} (peft {self.peft_type}): {exc}") from None

    def peft_config(self, backbone_config):
        from peft import TaskType

        extra = {k: v for quirk in self.quirks for k, v in quirk.config_fields().items()}
        fields = dict(self.fields)
        for key, path in nested_config_classes().items():  # YAML gives a mapping; peft wants its config object
            if isinstance(fields.get(key), dict):
                fields[key] = _peft_object(path, fields[key])
        return self._config_class(task_type=TaskType.FEATURE_EXTRACTION, **fields, **extra)

    def wrap_config(self, backbone_config):
        """The tuner's config, as its quirks adjust it for wrapping (CorDA/LoRA-GA: a placeholder until the
        data pass)."""
        cfg = self.peft_config(backbone_config)
        for quirk in self.quirks:
            cfg = quirk.wrap_config(cfg)
        return cfg

    def apply(self, model: nn.Module) -> nn.Module:
        model = super().apply(model)
        for quirk in self.quirks:
            quirk.after_apply(model)
        return model

    # -- the training loop's hooks (bench/training/loop.py), each the quirks' -------------------------
    def before_training(self, model: nn.Module, total_steps: int) -> None:
        for quirk in self.quirks:
            quirk.before_training(model, total_steps)

    def initialize_from_data(self, model: nn.Module, batches) -> None:
        for quirk in self.quirks:
            quirk.initialize_from_data(model, batches)

    def after_optimizer_step(self, model: nn.Module, step: int) -> None:
        for quirk in self.quirks:
            quirk.after_optimizer_step(model, step)

    def regularization(self, model: nn.Module):
        terms = [t for t in (quirk.regularization(model) for quirk in self.quirks) if t is not None]
        return functools.reduce(operator.add, terms) if terms else None

    def loop_state(self, model: nn.Module) -> dict | None:
        """The quirks' loop state in one mapping (each quirk owns its keys); None when none has any."""
        states = [s for s in (quirk.loop_state(model) for quirk in self.quirks) if s is not None]
        return {k: v for s in states for k, v in s.items()} if states else None

    def load_loop_state(self, model: nn.Module, state: dict) -> None:
        for quirk in self.quirks:
            quirk.load_loop_state(model, state)

    def build_optimizer(self, model: nn.Module, named, tcfg):
        """The optimizer a quirk brings (peft's factories over the whole model), else None (the loop's AdamW)."""
        for quirk in self.quirks:
            built = quirk.build_optimizer(model, named, tcfg)
            if built is not None:
                return built
        return None

    # -- saving and loading (PeftMethod writes and reads the files) ------------------------------------
    def save_options(self) -> dict:
        return {k: v for quirk in self.quirks for k, v in quirk.save_options().items()}

    def load_backbone(self, model: nn.Module, folder) -> None:
        for quirk in self.quirks:
            quirk.before_load(model, folder)
        if not any(quirk.load_backbone(model, folder) for quirk in self.quirks):
            super().load_backbone(model, folder)


def tuner_type(method_cfg: dict) -> str | None:
    """The peft type a method config builds: its `peft_type`, else its peft file's (method=peft)."""
    if method_cfg.get("peft_type"):
        return str(method_cfg["peft_type"]).lower()
    content = method_cfg.get("adapter_config")
    if content is None and method_cfg.get("config_file"):
        from bench.config.resolvers import read_adapter_config

        content = read_adapter_config(method_cfg["config_file"])
    if isinstance(content, dict):
        if not isinstance(content.get("peft_type"), str) or not content["peft_type"]:
            where = f"method.config_file={method_cfg.get('config_file')}" if method_cfg.get("config_file") else \
                "method.adapter_config"
            raise ConfigError(f"{where}: field 'peft_type': expected the tuner's name as a string (e.g. \"LORA\"), "
                              f"got {content.get('peft_type')!r}")
        return content["peft_type"].lower()
    return None


def tuner_class(name: str) -> type[PeftTuner]:
    """The registered subclass for a config `name` (created once), so REGISTRY, records and deltas
    know the tuner by its name like any built-in method."""
    cls = REGISTRY.get(name)
    if cls is None:
        cls = type(f"PeftTuner_{name}", (PeftTuner,), {"name": name, "__module__": __name__})
    elif not issubclass(cls, PeftTuner):
        raise ConfigError(f"method.name={name!r}: the name of the built-in method {cls.__module__}.{cls.__qualname__}; "
                          "a generic peft tuner needs a name of its own")
    return cls
