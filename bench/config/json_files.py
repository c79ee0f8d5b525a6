"""Reading a JSON file that a setting names (a peft adapter_config.json, a model folder's config.json).

One reader so that every such file fails the same way: a ConfigError that names the setting, the file and
what the file should have been, never json's or the OS's traceback.
"""
from __future__ import annotations

import json
from pathlib import Path

from bench.errors import ConfigError


def read_json_object(file: Path, where: str, expected: str) -> dict:
    """The JSON object in `file`. `where` names the setting that points at it (`model.source='...'`),
    `expected` what the file should be (`a peft adapter_config.json`); a file that cannot be read, is not
    JSON or holds something other than an object is a ConfigError saying all three."""
    try:
        content = json.loads(Path(file).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{where}: {file} is not valid JSON ({exc}); expected {expected}") from None
    if not isinstance(content, dict):
        raise ConfigError(f"{where}: {file}: expected a JSON object ({expected}), got a {type(content).__name__}")
    return content
