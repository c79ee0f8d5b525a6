"""What a setting accepts (`Rule`: a test and the words an error message uses for it), the shared rules, and
the two field makers the settings schemas (bench.config.schema) are written with: `opt` (one key: its rule, its
default, whether it enters a run's identity) and `section` (a nested schema).
"""
from __future__ import annotations

import re
from dataclasses import MISSING, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Rule:
    """What one option accepts: a test and the words an error message uses for it."""

    expected: str
    test: Any  # Callable[[Any], bool]

    def __call__(self, value) -> bool:
        try:
            return bool(self.test(value))
        except (TypeError, ValueError):
            return False


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def integer(lo: int) -> Rule:
    return Rule(f"an integer >= {lo}", lambda v: _is_int(v) and v >= lo)


def number(lo: float, hi: float | None = None, lo_open: bool = False, hi_open: bool = True) -> Rule:
    if hi is None:
        text = f"a number {'>' if lo_open else '>='} {lo:g}"
    else:
        text = f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    return Rule(text, lambda v: _is_num(v) and (v > lo if lo_open else v >= lo)
                and (hi is None or (v < hi if hi_open else v <= hi)))


def choice(*words: str) -> Rule:
    text = ", ".join(words[:-1]) + f" or {words[-1]}" if len(words) > 1 else words[0]
    return Rule(text, lambda v: isinstance(v, str) and v in words)


def nullable(rule: Rule, meaning: str = "") -> Rule:
    return Rule(f"null{f' ({meaning})' if meaning else ''} or {rule.expected}", lambda v: v is None or rule(v))


def list_of(rule: Rule, text: str, lo: int = 1, hi: int | None = None) -> Rule:
    """A list of `lo` to `hi` (no limit: None) items, each accepted by `rule`; `text` is what the message says."""
    return Rule(text, lambda v: isinstance(v, (list, tuple)) and lo <= len(v) <= (len(v) if hi is None else hi)
                and all(rule(x) for x in v))


BOOL = Rule("true or false", lambda v: isinstance(v, bool))
TEXT = Rule("a non-empty string", lambda v: isinstance(v, str) and v != "")
MAPPING = Rule("a mapping", lambda v: isinstance(v, dict))
ANY = Rule("anything", lambda v: True)
LR = number(0, lo_open=True)
RANGE = Rule("[low, high] with 0 < low <= high",
             lambda v: isinstance(v, list) and len(v) == 2 and all(_is_num(x) and x > 0 for x in v) and v[0] <= v[1])
#: null means auto too (code reads a missing key as auto)
AUTO_OR_INT = Rule("auto or an integer >= 1", lambda v: v is None or v == "auto" or (_is_int(v) and v >= 1))
RANGES = Rule("a mapping of method name to [low, high] with 0 < low <= high",
              lambda v: isinstance(v, dict) and all(RANGE(x) for x in v.values()))
LENGTHS = list_of(integer(1), "a list of integers >= 1, e.g. [16, 64, 128]")
DEVICE = Rule("auto, cpu, mps, cuda or cuda:N",
              lambda v: isinstance(v, str) and re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", v))
#: a folder name below results_dir: relative, no `..` (a study writes <sweep_name>/trials)
SWEEP = Rule("a relative folder name without '..' (records go to <results_dir>/<sweep_name>/)",
             lambda v: isinstance(v, str) and v != "" and not v.startswith("/") and ".." not in v.split("/"))

#: a time interval such as 90s, 10m, 2h (train.checkpoint_every; bench/training/checkpoint.py reads it)
CHECKPOINT_TIME = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h)\s*$")
CHECKPOINT_EVERY = Rule("auto, off, an integer >= 1 (optimizer steps) or a time such as 90s, 10m, 2h",
                        lambda v: v is None or v is False or v in ("auto", "off") or (_is_int(v) and v >= 1)
                        or (isinstance(v, str) and bool(CHECKPOINT_TIME.match(v))
                            and float(CHECKPOINT_TIME.match(v).group(1)) > 0))


#: a field's `identity` (does it enter a run's config hash, bench.records.schema.config_hash): yes (the default);
#: no (where things live, how a run is driven or shown, measurements taken after training that do not change it);
#: or only when set to something other than its default (a key added later: configs written before it, which lack
#: it, keep their hash)
HASHED, NOT_HASHED, HASHED_UNLESS_DEFAULT = "hashed", "not hashed", "hashed unless default"


def opt(rule: Rule, default: Any = MISSING, identity: str = HASHED, composed: bool = True):
    """A schema field: its rule, a default only where a config may lack the key, and its `identity`. `composed`:
    whether a section composed from its dataclass (bench/config/store.py) lists the key; False for a key added
    after records were written, which a config leaves out (absent means the default; `+section.key=V` sets it)."""
    meta = {"rule": rule, "identity": identity, "composed": composed}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def section(schema, identity: str = HASHED):
    """A nested section (`data.selection`, `study.prune`) or a section of the whole config."""
    return field(default_factory=schema, metadata={"schema": schema, "identity": identity})
