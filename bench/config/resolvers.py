"""OmegaConf resolvers the shipped configs use: `bench_peft_file` (method=peft) and `bench_model_name` (model=auto).

`method=peft method.config_file=PATH`: a peft `adapter_config.json` read into the config itself.

conf/method/peft.yaml sets `adapter_config: ${bench_peft_file:${.config_file}}`: this resolver reads
the file when the config is resolved, so the resolved config (what a record stores and what its run id
is hashed from) holds the file's *content*. The path is left out of the hash
(bench.records.schema.HASH_EXCLUDED), so the same content under another path is the same cell, and a
record reproduces without the file. What the content means (peft type, fields, types) is judged by the
method (bench.methods.peft_file), which knows peft's config classes; here only "is it a JSON object".
"""
from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from bench.config.json_files import read_json_object
from bench.errors import ConfigError

RESOLVER = "bench_peft_file"
MODEL_NAME_RESOLVER = "bench_model_name"


def model_name(source) -> str:
    """model=auto's name (records, reports, file names): the last part of the hub id or folder
    (`meta-llama/Llama-3.2-3B` -> `Llama-3.2-3B`); `auto` while no source is given."""
    text = str(source or "").rstrip("/\\")
    return text.replace("\\", "/").rsplit("/", 1)[-1] or "auto"


def read_adapter_config(path) -> dict | None:
    """The JSON object in `path` (None for no path). Raises ConfigError naming the file when it is
    missing, unreadable, not JSON or not an object."""
    if path in (None, "", "None"):
        return None
    file = Path(str(path)).expanduser()
    if file.is_dir():
        file = file / "adapter_config.json"
    if not file.is_file():
        raise ConfigError(f"method.config_file={path!r}: no such file (expected a peft adapter_config.json, "
                          "or the folder holding one)")
    return read_json_object(file, f"method.config_file={path!r}", "a peft adapter_config.json")


def register() -> None:
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, read_adapter_config)
    if not OmegaConf.has_resolver(MODEL_NAME_RESOLVER):
        OmegaConf.register_new_resolver(MODEL_NAME_RESOLVER, model_name)


register()


def resolved(node, where: str):
    """`node` with every interpolation resolved, as plain containers (a value that is no OmegaConf node, None
    included, is returned as it is): the one way a part of a composed config is resolved (a section's settings,
    the method, the task, the top-level keys). A ConfigError one of these resolvers raised is re-raised as itself
    (OmegaConf wraps it in InterpolationResolutionError, once per level); any other value that does not resolve is a
    ConfigError naming `where` (the section or key), so every entry point exits 2 with one line, not a traceback."""
    from omegaconf.errors import InterpolationResolutionError

    if not OmegaConf.is_config(node):
        return node
    try:
        return OmegaConf.to_container(node, resolve=True)
    except Exception as exc:  # noqa: BLE001 - an interpolation that does not resolve names its key
        cause = exc
        while isinstance(cause, InterpolationResolutionError) and (cause.__cause__ or cause.__context__):
            cause = cause.__cause__ or cause.__context__
        if isinstance(cause, ConfigError):
            raise cause from None
        raise ConfigError(f"{where}: a value does not resolve: {exc}") from None
