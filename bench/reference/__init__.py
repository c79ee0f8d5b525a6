"""Deprecated: the published numbers and the paper presets moved into bench.reproduce (one package
for reproduction: bench.reproduce.published, bench.reproduce.presets; docs/reproduce.md).

This forwarder keeps old imports (`from bench import reference`) and the old command
`python -m bench.reference.head_study` working, with a DeprecationWarning; remove it once nothing
uses those any more.
"""
import warnings

warnings.warn("bench.reference is deprecated: use bench.reproduce.published and bench.reproduce.presets "
              "(and `python -m bench.reproduce ...`)", DeprecationWarning, stacklevel=2)

from bench.reproduce.presets import (
    CONF_DIR,
    PRESET_DIR,
    PRESET_FOLDERS,
    load_preset,
    preset_keys,
    preset_path,
    preset_reference,
)
from bench.reproduce.published import (
    COLUMNS,
    CSV_PATH,
    DATA_VERSION,
    Published,
    ReferenceError,
    Row,
    by_config,
    load,
    model_size_in_name,
    parse_counts,
)

__all__ = ["COLUMNS", "CONF_DIR", "CSV_PATH", "DATA_VERSION", "PRESET_DIR", "PRESET_FOLDERS", "Published",
           "ReferenceError", "Row", "by_config", "load", "load_preset", "model_size_in_name", "parse_counts",
           "preset_keys", "preset_path", "preset_reference"]
