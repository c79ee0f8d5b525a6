"""Which methods an experiment runs, read from what each method's YAML declares.

A method joins a group by declaring it in its own file (`tags: [catalogue, decoders]`, as
lm-evaluation-harness tasks declare `tag:`), never by being added to a list elsewhere. An experiment
selects its methods with the resolver `${methods_tagged:TAG}` (or `${methods_tagged:TAG,FIRST,...}` to
run some methods first), which Hydra's sweeper resolves to the comma-separated names of every method
config on the search path that declares TAG: the built-in conf/method/ and every folder added with
`--config-dir` or `hydra.searchpath`, so a user's tuner YAML in their own folder joins the catalogue and
the smoke sweep with no other edit. `python -m bench ls methods` lists the same configs.
"""
from __future__ import annotations

from pathlib import Path

import yaml
from omegaconf import OmegaConf

from bench.config.confdir import conf_dir, group_files
from bench.errors import ConfigError

RESOLVER = "methods_tagged"
GROUP = "method"


def _file_dirs(sources) -> list[Path]:
    """The folders of Hydra's file-based config sources, in search-path order."""
    out = []
    for src in sources or []:
        schema, path = str(src.get("schema", "")), src.get("path")
        if schema == "file" and path:
            out.append(Path(str(path)))
    return out


def search_dirs(extra: list | None = None) -> list[Path]:
    """The built-in config folder and `extra` folders (later ones win on a name, as on Hydra's search path)."""
    dirs = [conf_dir()]
    for folder in extra or []:
        path = Path(str(folder).removeprefix("file://"))
        if path not in dirs:
            dirs.append(path)
    return dirs


def method_configs(dirs: list[Path]) -> dict[str, dict]:
    """name -> the YAML mapping of every method config in `<dir>/method/` (the files bench.config.confdir.group_files
    lists: a later folder overrides an earlier one's file of the same name). A file that is not a YAML mapping is a
    ConfigError naming it."""
    found: dict[str, dict] = {}
    for name, path in group_files(GROUP, dirs).items():
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a method config must be a YAML mapping (name, lr, ...)")
        found[name] = data
    return found


def declared_tags(config: dict, where: str) -> list[str]:
    tags = config.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ConfigError(f"{where}: `tags` must be a list of group names (e.g. tags: [catalogue]), got {tags!r}")
    return tags


def tagged(tag: str, dirs: list[Path], first: tuple[str, ...] = ()) -> list[str]:
    """The names of the method configs in `dirs` that declare `tag`: `first` (those of them that declare it)
    in the order given, then the rest by name. No method declaring it is a ConfigError."""
    configs = method_configs(dirs)
    names = [n for n, c in sorted(configs.items()) if tag in declared_tags(c, f"{GROUP}/{n}.yaml")]
    if not names:
        raise ConfigError(f"${{{RESOLVER}:{tag}}}: no method config declares `tags: [{tag}]` in "
                          f"{', '.join(str(d / GROUP) for d in dirs)}")
    head = [n for n in first if n in names]
    return head + [n for n in names if n not in head]


def _resolve(tag: str, *first: str, _root_=None) -> str:
    sources = OmegaConf.select(_root_, "hydra.runtime.config_sources") if _root_ is not None else None
    extra = _file_dirs(OmegaConf.to_container(sources) if sources is not None else [])
    searchpath = OmegaConf.select(_root_, "hydra.searchpath") if _root_ is not None else None
    extra += [p for p in (searchpath or []) if str(p).startswith("file://")]
    return ",".join(tagged(str(tag), search_dirs(extra), tuple(str(f) for f in first)))


def register() -> None:
    """Make `${methods_tagged:...}` available to every config composed in this process (idempotent)."""
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, _resolve)
