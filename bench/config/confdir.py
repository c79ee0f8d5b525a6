"""Where the built-in Hydra configs are, for a clone and for an installed wheel alike.

The configs live in `conf/` at the top of the repository, where people who clone it look for and
edit them. A wheel cannot ship a folder beside its package, so pyproject.toml maps `conf/` into the
wheel as `bench/conf/`. Every reader of the built-in configs (the CLI, `bench.params`, the paper
presets in `bench.reproduce`) asks this module, so the two layouts never diverge. Users add their
own tasks and methods with Hydra's `--config-dir`, which adds a folder to the search path; the
built-in groups keep resolving from here.
"""
from __future__ import annotations

from pathlib import Path

from bench.errors import ConfigError

_PACKAGE = Path(__file__).resolve().parents[1]  # bench/
#: the configs inside an installed wheel (site-packages/bench/conf)
PACKAGED = _PACKAGE / "conf"
#: the configs of a clone (<repo>/conf); checked second so that an unrelated top-level `conf/` in
#: site-packages can never shadow the wheel's own copy
CHECKOUT = _PACKAGE.parent / "conf"
PRIMARY = "config.yaml"


def find_conf_dir() -> Path | None:
    """The folder holding the built-in `config.yaml`, or None when neither layout has one."""
    for folder in (PACKAGED, CHECKOUT):
        if (folder / PRIMARY).is_file():
            return folder
    return None


def conf_dir() -> Path:
    """Like find_conf_dir, but a broken installation is a ConfigError that says where it looked."""
    found = find_conf_dir()
    if found is None:
        raise ConfigError(f"built-in configs: no {PRIMARY} in {PACKAGED} (installed wheel) or {CHECKOUT} "
                          "(a clone of the repository); reinstall peft-bench (`pip install .` from the "
                          "repository ships conf/ inside the package)")
    return found


def is_checkout() -> bool:
    """True when running from a clone rather than an installed wheel: only then does the package's
    parent folder belong to peft-bench (and its git state describe the code that runs)."""
    return find_conf_dir() == CHECKOUT


def group_files(group: str, dirs: list[Path]) -> dict[str, Path]:
    """choice name -> YAML file of the config group folder `group` (method, task, ...) over the search
    folders `dirs`, subfolders included (`sub/name`); a later folder's file of the same name wins, as on
    Hydra's search path. The one listing of a group's files: `bench ls`, the `methods_tagged` resolver
    and the CLI's check of a `group=choice` override all read it."""
    found: dict[str, Path] = {}
    for root in dirs:
        for path in sorted((root / group).rglob("*.yaml")):
            found[path.relative_to(root / group).with_suffix("").as_posix()] = path
    return found
