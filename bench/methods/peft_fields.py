"""peft's config classes as the harness reads them: a tuner's class by its peft type, its settable fields, and
the message for a field it does not have. Apart from the tuner classes (bench/methods/peft_tuner.py,
peft_methods.py) and the adapter-file reader (peft_file.py), which all use them, so none imports another.
"""
from __future__ import annotations

import dataclasses

from bench.errors import ConfigError

#: config fields the harness sets itself (the backbone is wrapped for feature extraction; the head is ours)
MANAGED_FIELDS = ("peft_type", "peft_version", "task_type", "base_model_name_or_path", "revision", "inference_mode",
                  "auto_mapping", "total_step")
#: settings of the harness's own, beside the peft config's fields
OWN_SETTINGS = ("peft_type", "optimizer", "loraplus_lr_ratio")
#: method=peft (conf/method/peft.yaml): the file's path and its content (bench.config.resolvers)
FILE_SETTINGS = ("config_file", "adapter_config")


def peft_config_class(peft_type: str, where: str = "method.peft_type"):
    from peft import PeftType
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    key = str(peft_type).upper()
    if key not in PeftType.__members__:
        raise ConfigError(f"{where}={peft_type!r}: not a peft tuner type; expected one of "
                          f"{', '.join(t.lower() for t in PeftType.__members__)}")
    return PEFT_TYPE_TO_CONFIG_MAPPING[PeftType[key]]


def config_fields(peft_type: str) -> list[str]:
    """The settable fields of a tuner's peft config class, in the class's order."""
    return [f.name for f in dataclasses.fields(peft_config_class(peft_type)) if f.name not in MANAGED_FIELDS]


def unknown_field_message(name: str, peft_type: str, field: str, own=OWN_SETTINGS) -> str:
    from bench.config.schema import nearest

    valid = list(dict.fromkeys([*own, *config_fields(peft_type)]))
    return (f"method.{field}: not a setting of method {name} (peft {peft_type}: "
            f"{peft_config_class(peft_type).__name__}){nearest(field, valid)}; valid: "
            f"{', '.join('method.' + k for k in valid)}")
