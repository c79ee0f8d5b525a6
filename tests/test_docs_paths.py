"""Maps that cannot go stale: every file, folder and module that README.md and docs/ name exists.

What counts as a name: a markdown link's target (relative to the page), a repository path such as
`bench/methods/peft_tuner.py` or `conf/method/` (relative to the repository), a bare file name such as
`finetune.py` (some file of that name exists in the repository), and a dotted module path such as
`bench.report.catalogue` or `bench.methods.PeftTuner` (the module file exists and defines or imports the
rest). Outputs that a command writes (results/, reports/, scratch folders) and placeholders (`<run id>`,
`*`) are not checked: they describe what a run creates, not what the clone holds.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: docs/decisions.md is left out: it is the history, and names modules as they were when each decision was made
PAGES = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "decisions.md")]
TOP = ("bench", "conf", "docs", "tests", "scripts", "benchmarks", "examples", ".ci")
LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")
REPO_PATH = re.compile(r"(?<![\w./-])((?:{})/[\w./-]*[\w/])(?![\w./*<{{-])".format("|".join(re.escape(t) for t in TOP)))
BARE_FILE = re.compile(r"(?<![\w./-])([A-Za-z_][\w-]*\.(?:py|sh|yaml|toml))\b")
MODULE = re.compile(r"(?<![\w./-])(bench(?:\.[A-Za-z_]\w*)+)")
SKIP = re.compile(r"[<>*{}$]|^(results|reports|outputs|multirun|logs)/")
FILE_NAMES = {p.name for p in ROOT.rglob("*") if ".git" not in p.parts and ".venv" not in p.parts}


def _defines(module_file: Path, name: str) -> bool:
    text = module_file.read_text()
    return re.search(rf"(^|\W)(def|class)\s+{name}\b|^{name}\s*[:=]|\bimport\b.*\b{name}\b|^\s+{name}\s*[:=]",
                     text, re.MULTILINE) is not None


def module_exists(dotted: str) -> bool:
    """`bench.a.b.Name`: walk folders and module files, then the rest must be defined in the module found."""
    parts, here = dotted.split("."), ROOT
    for i, part in enumerate(parts):
        if (here / part).is_dir():
            here = here / part
            continue
        if (here / f"{part}.py").is_file():
            rest, module = parts[i + 1:], here / f"{part}.py"
            return not rest or _defines(module, rest[0])
        init = here / "__init__.py"
        return init.is_file() and _defines(init, part)
    return True


def stale_names(page: Path) -> list[str]:
    text = page.read_text()
    stale = []
    for target in LINK.findall(text):
        if "://" in target or target.startswith("mailto:") or SKIP.search(target):
            continue
        if not (page.parent / target).exists():
            stale.append(f"link {target}")
    for path in set(REPO_PATH.findall(text)):
        if SKIP.search(path):
            continue
        if not ((ROOT / path).exists() or (page.parent / path).exists()):
            stale.append(f"path {path}")
    for name in set(BARE_FILE.findall(text)):
        if name not in FILE_NAMES and not SKIP.search(name):
            stale.append(f"file {name}")
    for dotted in set(MODULE.findall(text)):
        if not module_exists(dotted.rstrip(".")):
            stale.append(f"module {dotted}")
    return sorted(stale)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_name_a_page_gives_exists(page):
    stale = stale_names(page)
    assert not stale, f"{page.relative_to(ROOT)} names what the repository does not hold: {stale}"


def test_a_planted_stale_path_is_found(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("See `bench/recipe/finetune.py`, [the guide](guide.md) and `bench.report.catalogue`.\n")
    assert stale_names(page) == ["link guide.md"]
    page.write_text("The runner is bench/settings.py and `cell.py`; `bench.report.nowhere` prints it; "
                    "`bench.methods.NoSuchClass` runs it.\n")
    assert stale_names(page) == ["file cell.py", "module bench.methods.NoSuchClass", "module bench.report.nowhere",
                                 "path bench/settings.py"]
