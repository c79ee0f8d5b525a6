"""A peft `adapter_config.json` as a method's settings (`method=peft method.config_file=PATH`).

The file is loaded as peft loads it (`PeftConfig.from_peft_type`): its `peft_type` picks the config
class, keys that class does not have (files saved by another peft version carry some) are ignored
with a warning naming them. On top of what peft does, every known field is checked against the type
the config class declares, so a wrong type stops before any work, naming the file and the field.

Keys that describe where the file was saved, not the method (`base_model_name_or_path`, `revision`,
`task_type`, `inference_mode`, `peft_version`, `auto_mapping`), are dropped: the harness builds the
model from `model=...` and wraps the backbone for feature extraction. A field the harness owns
(AdaLoRA's `total_step`, the cell's real step count) is replaced. Both are listed in the record's
`method_file` section (`file_record`), beside the file's sha256, so the record says what was used.
"""
from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import logging
import types
import typing

from bench.errors import ConfigError

log = logging.getLogger(__name__)

#: keys that say where and how the file was saved: dropped (the record lists them)
SAVED_CONTEXT = ("peft_version", "task_type", "base_model_name_or_path", "revision", "inference_mode", "auto_mapping")
#: fields whose value the harness sets from the cell (AdaLoRA's schedule length: the cell's step count)
HARNESS_OWNED = {"total_step": "the cell's real number of optimizer steps (set before training)"}


def _is_instance(value, tp) -> bool:
    """Whether a JSON value fits a config field's annotation. Lenient where JSON cannot say more:
    nested config dataclasses and enums take their JSON form (a mapping, a string), an int fits a float."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is typing.Any or tp is None:
        return True
    if tp is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_is_instance(value, a) for a in args)
    if origin is typing.Literal:
        return value in args
    if origin is tuple or tp in (list, tuple):
        return isinstance(value, list)
    if origin in (list, set, typing.Sequence):
        if not args:
            return isinstance(value, list)
        return isinstance(value, list) and all(_is_instance(v, args[0]) for v in value)
    if origin is dict or tp is dict:
        return isinstance(value, dict)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return ((isinstance(value, int) and not isinstance(value, bool))
                or (isinstance(value, float) and value.is_integer()))
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return isinstance(value, str)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return isinstance(value, dict)
    return True  # a class JSON cannot hold: peft's own constructor judges it


def _type_name(tp) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "").replace("NoneType", "None")


def check_field_types(config_class, values: dict, where: str) -> None:
    """ConfigError naming `where` and the first field whose value does not fit its declared type."""
    hints = typing.get_type_hints(config_class)
    defaults = {f.name: f.default for f in dataclasses.fields(config_class)}
    for key, value in values.items():
        tp = hints.get(key)
        if value is None and defaults.get(key, dataclasses.MISSING) is None:
            continue  # the field's own default (peft annotates some optional fields without Optional)
        if tp is not None and not _is_instance(value, tp):
            raise ConfigError(f"{where}: field {key!r} = {value!r} ({type(value).__name__}): expected "
                              f"{_type_name(tp)} (peft's {config_class.__name__}.{key})")


def fields_from_file(content: dict, where: str) -> tuple[str, dict, dict]:
    """(peft type, the fields to build its config with, notes for the record) from an adapter_config's
    content. `where` names the file in errors and warnings."""
    from bench.methods.peft_fields import MANAGED_FIELDS, config_fields, peft_config_class

    peft_type = content.get("peft_type")
    if not isinstance(peft_type, str) or not peft_type:
        raise ConfigError(f"{where}: field 'peft_type': expected the tuner's name as a string (e.g. \"LORA\"), "
                          f"got {peft_type!r}")
    config_class = peft_config_class(peft_type, where=f"{where}: field 'peft_type'")
    known = set(config_fields(peft_type)) | set(MANAGED_FIELDS)
    unknown = sorted(k for k in content if k not in known)
    if unknown:
        log.warning("%s: keys unknown to peft's %s ignored (as peft's PeftConfig.from_peft_type does; the file was "
                    "probably saved by another peft version): %s", where, config_class.__name__, ", ".join(unknown))
    fields = {k: v for k, v in content.items() if k in known and k not in MANAGED_FIELDS and k not in HARNESS_OWNED}
    check_field_types(config_class, fields, where)
    replaced = {k: HARNESS_OWNED[k] for k in content if k in HARNESS_OWNED}
    notes = {
        "peft_type": peft_type.lower(),
        "sha256": hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest(),
        "ignored_unknown_keys": unknown,
        "dropped_saved_context": {k: content[k] for k in SAVED_CONTEXT if content.get(k) is not None},
        "replaced_by_harness": {k: {"file": content[k], "now": why} for k, why in replaced.items()},
    }
    return peft_type.lower(), fields, notes
