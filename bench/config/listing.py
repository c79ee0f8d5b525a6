"""`python -m bench ls [methods|tasks|models|experiments]`: what the config groups hold, one line each.

Read from the YAML files themselves (the built-in conf/ and every `--config-dir` folder), so the list
cannot disagree with what `python -m bench group=choice` composes: a config's line is the first sentence
of its leading comment; a method's adds the groups it declares (`tags`) and its search range (`lr_range`).
"""
from __future__ import annotations

import re
from pathlib import Path

from bench.config.confdir import group_files
from bench.config.method_tags import declared_tags, method_configs, search_dirs
from bench.errors import ConfigError

GROUPS = ("methods", "tasks", "models", "experiments")
#: a full stop that ends a sentence: not the one of "et al.", "e.g." or "i.e."
_SENTENCE_END = re.compile(r"(?<!\bal)(?<!e\.g)(?<!i\.e)\.\s")
_FOLDER = {"methods": "method", "tasks": "task", "models": "model", "experiments": "experiment"}


def summary_line(path: Path, width: int = 100) -> str:
    """The first sentence of the file's leading comment block (Hydra's `@package` line skipped)."""
    words = []
    for line in path.read_text().splitlines():
        text = line.strip()
        if not text.startswith("#"):
            break
        text = text.lstrip("#").strip()
        if text.startswith("@package"):
            continue
        words.append(text)
    blurb = " ".join(words)
    end = _SENTENCE_END.search(blurb)
    blurb = blurb[: end.start() + 1] if end else blurb
    return blurb if len(blurb) <= width else blurb[: width - 3].rstrip() + "..."


def listing(group: str, extra_dirs: list | None = None) -> list[str]:
    """The lines `bench ls GROUP` prints: `name  summary` (methods: `name  [tags]  lr a..b  summary`)."""
    if group not in GROUPS:
        raise ConfigError(f"bench ls {group!r}: expected one of {', '.join(GROUPS)}")
    dirs = search_dirs(extra_dirs)
    files = group_files(_FOLDER[group], dirs)
    width = max((len(n) for n in files), default=0)
    lines = []
    configs = method_configs(dirs) if group == "methods" else {}
    for name, path in sorted(files.items()):
        extra = ""
        if group == "methods":
            cfg = configs.get(name, {})
            tags = declared_tags(cfg, str(path))
            rng = cfg.get("lr_range")
            extra = f"  [{', '.join(tags)}]" if tags else "  []"
            extra += f"  lr {float(rng[0]):.0e}..{float(rng[1]):.0e}" if isinstance(rng, list) and len(rng) == 2 else ""
        lines.append(f"{name:<{width}}{extra}  {summary_line(path)}")
    lines.append(f"({len(files)} {group}; details: python -m bench {_FOLDER[group]}=NAME --cfg job)")
    return lines


def main(argv: list[str]) -> int:
    """`ls [GROUP] [--config-dir DIR ...]`; no group lists how many each group holds."""
    extra, groups, args = [], [], list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("--config-dir", "-cd"):
            if not args:
                raise ConfigError(f"bench ls: {arg} needs a folder")
            extra.append(args.pop(0))
        elif arg.startswith("--config-dir="):
            extra.append(arg.split("=", 1)[1])
        else:
            groups.append(arg)
    for folder in extra:
        if not Path(folder).is_dir():
            raise ConfigError(f"bench ls --config-dir {folder}: not a folder")
    if not groups:
        dirs = search_dirs(extra)
        for group in GROUPS:
            print(f"{group:<12} {len(group_files(_FOLDER[group], dirs))}   python -m bench ls {group}")
        return 0
    for group in groups:
        print("\n".join(listing(group, extra)))
    return 0
