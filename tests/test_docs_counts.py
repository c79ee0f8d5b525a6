"""Counts that cannot go stale: a number README.md or docs/ writes about what the harness holds equals the registry.

The registries are the config folders `python -m bench ls` reads: conf/method/ (every YAML a method;
its `_target_` says whether it is a generic peft tuner, its `tags` which groups it joins), conf/task/,
conf/model/. A written count is a statement about them when it says so: a qualifier of the registry
before the noun ("42 generic tuners", "the nine built-in classes", "51 catalogue methods", "16 shipped
models"), a verb of holding before the number ("the harness ships 54 methods"), or the registry named
beside it ("conf/method/, 51 methods", "`bench ls methods` lists 55 methods"). Such a count must equal
the registry, so a page either leaves the number out or is corrected when a YAML is added.

Counts of a measured run are not statements about the registry and are left alone: a grid ("51 methods x
2 tasks"), a share ("36 of 51 methods"), or a plain count without a qualifier ("over 51 methods: Kendall
tau-b 0.26", "the five required methods"). docs/decisions.md and CHANGELOG.md are history and are not read.
"""
from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "decisions.md")]
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"]
NUMBER = r"(?P<n>\d[\d,]*|" + "|".join(WORDS) + r")"
QUALIFIERS = r"generic|peft|built-in|catalogue|shipped|bundled|registered|configured|available|method"
NOUNS = r"methods|tuners|classes|tasks|models|YAMLs"
COUNT = re.compile(rf"(?i)(?<![\w.,/-]){NUMBER}(?P<q>(?: (?:peft-based|{QUALIFIERS}))*) (?P<noun>{NOUNS})\b")
HOLDING = re.compile(r"(?i)\b(ships|has|have|holds|hold|offers|supports|lists|provides|includes|contains|counts)"
                     r"( all| every one of)?( the)? $")
REGISTRY_NAMED = re.compile(r"conf/(method|task|model)\b|bench ls|bench\.methods\.REGISTRY")
GRID = re.compile(r"^\s*(x|×)\s")


@cache
def registry_counts() -> dict[str, int]:
    """What the config folders hold: methods (all, generic tuners, built-in classes, per tag), tasks, models."""
    methods = {p.stem: OmegaConf.load(p) for p in sorted((ROOT / "conf" / "method").glob("*.yaml"))}
    tuners = [n for n, c in methods.items() if c.get("_target_") == "bench.methods.PeftTuner"]
    counts = {"methods": len(methods), "tuners": len(tuners), "classes": len(methods) - len(tuners),
              "tasks": len(list((ROOT / "conf" / "task").glob("*.yaml"))),
              "models": len(list((ROOT / "conf" / "model").glob("*.yaml")))}
    counts["catalogue"] = sum("catalogue" in (c.get("tags") or []) for c in methods.values())
    return counts


def _number(text: str) -> int:
    return WORDS.index(text.lower()) if text.lower() in WORDS else int(text.replace(",", ""))


def _expected(qualifiers: str, noun: str, counts: dict[str, int]) -> int:
    noun = noun.lower()
    if "catalogue" in qualifiers:
        return counts["catalogue"]
    if noun in ("tuners",) or "generic" in qualifiers or re.search(r"\bpeft\b", qualifiers):
        return counts["tuners"]
    if noun == "classes" or "built-in" in qualifiers:
        return counts["classes"]
    return counts[noun] if noun in counts else counts["methods"]


def registry_claims(text: str, counts: dict[str, int]) -> list[tuple[str, int]]:
    """(the phrase, the registry's count) for every count the text writes about the registry."""
    claims = []
    for line in text.splitlines():
        for m in COUNT.finditer(line):
            before, after = line[:m.start()], line[m.end():]
            if GRID.match(after) or re.search(r"(×|\bx)\s*$", before) or re.match(r"\s+of\b", after) \
                    or re.search(r"\bof( the)?\s*$", before) or re.search(r"\d\s*$", before):
                continue  # a grid or a share: a measured run, not the registry
            qualifiers = m.group("q").lower()
            near = line[max(0, m.start() - 60): m.end() + 60]
            if not (qualifiers.strip() or HOLDING.search(before) or REGISTRY_NAMED.search(near)):
                continue
            if m.group("noun").lower() == "classes" and "built-in" not in qualifiers and "method" not in qualifiers:
                continue  # label classes, not method classes
            claims.append((m.group(0), _expected(qualifiers, m.group("noun"), counts)))
    return claims


def stale_counts(text: str, counts: dict[str, int]) -> list[str]:
    return [f"{phrase!r}: the registry holds {want}" for phrase, want in registry_claims(text, counts)
            if _number(re.match(NUMBER, phrase).group("n")) != want]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_count_of_the_registry_a_page_writes_is_right(page):
    stale = stale_counts(page.read_text(), registry_counts())
    assert not stale, f"{page.relative_to(ROOT)} counts what conf/ holds and disagrees: {stale}"


def test_a_planted_stale_count_is_found():
    counts = {"methods": 55, "tuners": 43, "classes": 12, "tasks": 10, "models": 16, "catalogue": 51}
    page = ("The catalogue (conf/method/, 51 methods): the nine built-in classes and 42 generic tuners; "
            "the harness ships 48 methods and 16 shipped models.\n")
    assert stale_counts(page, counts) == [
        "'51 methods': the registry holds 55", "'nine built-in classes': the registry holds 12",
        "'42 generic tuners': the registry holds 43", "'48 methods': the registry holds 55"]
    right = "The catalogue (conf/method/, 55 methods): 12 built-in classes, 43 generic tuners, 51 catalogue methods.\n"
    assert stale_counts(right, counts) == []
    assert len(registry_claims(right, counts)) == 4
    measured = ("Why pruning: 51 methods x 2 tasks x 4 rates. Below 0.3 for 36 of 51 methods; rank agreement over "
                "51 methods: tau 0.26. `make sweep` runs the five required methods on 4 GLUE tasks; two classes.\n")
    assert registry_claims(measured, counts) == []


def test_the_registry_counts_are_read_from_conf():
    counts = registry_counts()
    assert counts["methods"] == len(list((ROOT / "conf" / "method").glob("*.yaml"))) > counts["catalogue"] > 0
    assert counts["tuners"] + counts["classes"] == counts["methods"] and counts["tuners"] > 0
