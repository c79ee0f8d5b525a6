#!/usr/bin/env python3
"""Did a change alter what a run measures? Run the same cells at two git revisions and compare the records.

Usage:
  python -m benchmarks.compare_records --revisions BEFORE_REV AFTER_REV [--workdir DIR] [--parallel]
                                       [--smoke-methods m1,m2,...] [--rtol 0]
  python -m benchmarks.compare_records BEFORE_DIR AFTER_DIR [--rtol 0]

With `--revisions`, each revision is checked out as a detached git worktree under the work folder (a new
temporary folder unless `--workdir` names one), and the cells of `CELLS` run there with this Python
(`PYTHONPATH` = that worktree, so its `bench` and its `conf/` are the ones used): the smoke experiment
(every catalogue method x sst2, stsb on the tiny random BERT) and a MiniLM slice (lora and adapter on
sst2, 200 training rows); `--smoke-methods` keeps the smoke experiment to some of its methods, where
the whole of it does not fit the time at hand. Both sides use one thread, so a CPU run is
deterministic; `--parallel` runs the two sides at the same time. The worktrees are
removed afterwards; a side's records stay under `<workdir>/<sha>/records`, and a side that finished
once (its `done` file) is reused, since a revision's code cannot change. With two folders, their
records are compared as they are.

Records (`*.json` with a `schema_version`, searched recursively) are paired by what a cell *is*:
(model, task, method, the method's resolved settings, seed). The settings leave out the method's
declarations for experiments (`lr_range`, `tags`) and read LoRA's older setting names as peft's
(`alpha` as `lora_alpha`, `dropout` as `lora_dropout`), so a renamed setting pairs with itself.

Compared per pair: every field of the record, nested fields by their dotted path, lists whole
(floats exactly by default), run_id and config hash included, except what varies run to run or
machine to machine: timing (`time`, `throughput`, `*_s`, `*_per_s`, `seconds`, `mfu`), memory,
the environment (`env`), the measured matmul peak (`flops.peak`), timestamps (`created_at`, `*_at`), and
cache states (`tokenized_cache_hit`, `retention.reference`). Each side's own folder in a string
value is read as `<side>`, so paths under it compare equal. A field that only one side has (a
section a newer record schema added) is listed apart and fails only with `--strict-fields`.

Exit status: 0 when every pair is identical and no cell is missing on either side, 1 otherwise,
2 on a usage error (a missing folder, one without records, a revision git does not know).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

#: the cells both revisions run: (sweep name, `python -m bench` arguments)
CELLS = (
    ("smoke", ["experiment=smoke"]),
    ("minilm_slice", ["-m", "model=minilm", "task=sst2", "method=lora,adapter", "train=quick",
                      "train.max_train_samples=200"]),
)
#: added to every command: one thread (a deterministic CPU run), no inference-cost measurement (timing only)
COMMON = ["train.threads=1", "inference.enabled=false"]
#: a field whose path has one of these parts varies run to run or machine to machine
VOLATILE_PARTS = {"time", "memory", "throughput", "env", "peak", "seconds", "mfu", "eval_mfu",
                  "tokenized_cache_hit", "measured_now"}
#: ... or starts with one of these paths (cache states: which cell measured a shared "before" first)
VOLATILE_PREFIXES = ("retention.reference",)
VOLATILE_SUFFIXES = ("_s", "_per_s", "_at")
#: older spellings of a method's settings -> today's, per method
SPELLINGS = {"lora": {"alpha": "lora_alpha", "dropout": "lora_dropout"}}
DECLARATIONS = ("lr_range", "tags")


def load_records(folder: Path) -> list[dict]:
    out = []
    for path in sorted(folder.rglob("*.json")):
        if ".ledger" in path.parts:
            continue
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict) and "schema_version" in rec and "status" in rec:
            rec["_path"] = str(path)
            out.append(rec)
    return out


def method_settings(rec: dict) -> dict:
    method = (rec.get("config") or {}).get("method") or {}
    rename = SPELLINGS.get(rec.get("method"), {})
    return {rename.get(k, k): v for k, v in method.items() if k not in ("_target_", "name", *DECLARATIONS)}


def cell_key(rec: dict) -> tuple:
    variant = json.dumps(method_settings(rec), sort_keys=True, default=str)
    return (rec.get("model"), rec.get("task"), rec.get("method"), variant, rec.get("seed"))


def volatile(path: str) -> bool:
    """A field that varies run to run (settings under `config` never do: `progress.interval_s` is a setting)."""
    parts = path.split(".")
    if parts[0] == "config":
        return False
    return (bool(VOLATILE_PARTS.intersection(parts)) or path.startswith(VOLATILE_PREFIXES)
            or parts[-1].endswith(VOLATILE_SUFFIXES))


def flatten(value, root: str, prefix: str = "") -> dict:
    """Dotted path -> value for every leaf of a record (lists whole); `root` in strings becomes `<side>`."""
    if isinstance(value, dict) and value:
        out = {}
        for k, v in value.items():
            out.update(flatten(v, root, f"{prefix}{k}."))
        return out
    if isinstance(value, str) and root:
        value = value.replace(root, "<side>")
    if isinstance(value, list):
        value = json.loads(json.dumps(value).replace(json.dumps(root)[1:-1], "<side>")) if root else value
    return {prefix[:-1]: value}


def fields(rec: dict, root: str = "") -> dict:
    """The compared values of one record, flat: dotted name -> value (volatile fields left out)."""
    rec = {k: v for k, v in rec.items() if k != "_path"}
    config = dict(rec.get("config") or {})
    if "method" in config:  # the settings under today's names, as the pairing reads them
        config["method"] = method_settings(rec)
        rec["config"] = config
    return {k: v for k, v in flatten(rec, root).items() if not volatile(k)}


def same(a, b, rtol: float) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y, rtol) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k], rtol) for k in a)
    if isinstance(a, float) or isinstance(b, float):
        if not (isinstance(a, (int, float)) and isinstance(b, (int, float))):
            return False
        if math.isnan(a) and math.isnan(b):
            return True
        return a == b if rtol == 0 else abs(a - b) <= rtol * max(abs(a), abs(b))
    return a == b


def short(v) -> str:
    s = repr(v) if isinstance(v, float) else str(v)
    return s if len(s) <= 40 else s[:37] + "..."


def read_side(folder: Path) -> dict[tuple, dict] | str:
    """The records of one folder by cell, or the reason they cannot be compared."""
    if not folder.is_dir():
        return f"{folder} is not a folder"
    by_key: dict[tuple, dict] = {}
    for rec in load_records(folder):
        key = cell_key(rec)
        if key in by_key:
            return f"two records of one cell in {folder}: {by_key[key]['_path']} and {rec['_path']}"
        by_key[key] = rec
    if not by_key:  # a wrong path must not pass as "0 cells, 0 differing"
        return f"no run records (*.json with a schema_version) under {folder}"
    return by_key


def compare(before_dir: Path, after_dir: Path, rtol: float, strict_fields: bool,
            roots: tuple[str, str] = ("", "")) -> int:
    sides = []
    for folder in (before_dir, after_dir):
        side = read_side(folder)
        if isinstance(side, str):
            print(f"compare_records: {side}", file=sys.stderr)
            return 2
        sides.append(side)
    before, after = sides
    keys = sorted(set(before) | set(after), key=lambda k: tuple(str(x) for x in k))
    tol = "exact" if rtol == 0 else f"rtol {rtol:g}"
    print(f"before: {before_dir} ({len(before)} records)   after: {after_dir} ({len(after)} records)   "
          f"floats: {tol}")
    bad, details, one_sided = 0, [], Counter()
    for key in keys:
        model, task, method, _, seed = key
        cell = f"{model}/{task}/{method}/s{seed}"
        b, a = before.get(key), after.get(key)
        if b is None or a is None:
            bad += 1
            print(f"{cell:<44} MISSING {'before' if b is None else 'after'}")
            continue
        fb, fa = fields(b, roots[0]), fields(a, roots[1])
        common = set(fb) & set(fa)
        one_sided.update([f"only before: {k}" for k in set(fb) - common] + [f"only after: {k}" for k in set(fa) - common])
        diffs = sorted(k for k in common if not same(fb[k], fa[k], rtol))
        if strict_fields:
            diffs += sorted(set(fb) ^ set(fa))
        print(f"{cell:<44} {len(common):>4} fields  {'identical' if not diffs else f'DIFFERS ({len(diffs)})'}")
        if diffs:
            bad += 1
            details += [(cell, k, fb.get(k), fa.get(k)) for k in diffs]
    if details:
        print("\ndifferences (before -> after):")
        for cell, k, vb, va in details:
            print(f"  {cell:<40} {k:<44} {short(vb):>24} -> {short(va)}")
    if one_sided:
        print(f"\nfields one side has ({'compared: --strict-fields' if strict_fields else 'not compared'}; cells):")
        for name, n in sorted(one_sided.items()):
            print(f"  {name} ({n})")
    print(f"\n{len(keys)} cells, {len(keys) - bad} identical, {bad} differing or missing")
    return 1 if bad else 0


_GIT = threading.Lock()  # one git command on the repository's worktree list at a time


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def run_side(repo: Path, rev: str, workdir: Path, smoke_methods: str | None = None) -> Path:
    """The cells of CELLS at one revision: its records folder (reused when an earlier run with the same
    cells finished)."""
    sha = git(repo, "rev-parse", "--verify", f"{rev}^{{commit}}")
    side = workdir / (sha if not smoke_methods else f"{sha}-{smoke_methods.replace(',', '+')}")
    records = side / "records"
    if (side / "done").is_file():
        print(f"{rev} ({sha[:10]}): reusing {records}", flush=True)
        return records
    tree = side / "tree"
    side.mkdir(parents=True, exist_ok=True)
    with _GIT:
        git(repo, "worktree", "add", "--detach", str(tree), sha)
    try:
        env = {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
               "TRANSFORMERS_OFFLINE": "1"}
        for sweep, args in CELLS:
            only = [f"method={smoke_methods}"] if smoke_methods and sweep == "smoke" else []
            cmd = [sys.executable, "-m", "bench", *args, *only, *COMMON, f"results_dir={records}",
                   f"sweep_name={sweep}"]
            print(f"{rev} ({sha[:10]}): {' '.join(cmd[1:])}", flush=True)
            with open(side / f"{sweep}.log", "w") as log:
                proc = subprocess.run(cmd, check=False, cwd=tree, env=env, stdout=log, stderr=subprocess.STDOUT)
            if proc.returncode != 0:
                raise RuntimeError(f"{rev}: `{' '.join(cmd[1:])}` exited {proc.returncode} (log: {side / f'{sweep}.log'})")
    finally:
        with _GIT:
            git(repo, "worktree", "remove", "--force", str(tree))
    (side / "done").write_text(sha + "\n")
    return records


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("before", help="a folder of records, or with --revisions a git revision")
    ap.add_argument("after", help="a folder of records, or with --revisions a git revision")
    ap.add_argument("--revisions", action="store_true", help="run CELLS at the two revisions, then compare")
    ap.add_argument("--workdir", type=Path, help="where the sides run and their records stay (default: a new temp folder)")
    ap.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1], help="the git repository")
    ap.add_argument("--rtol", type=float, default=0.0, help="relative tolerance for floats (default 0: exact)")
    ap.add_argument("--strict-fields", action="store_true", help="a field only one side has counts as a difference")
    ap.add_argument("--smoke-methods", help="run the smoke experiment for these methods only (comma-separated)")
    ap.add_argument("--parallel", action="store_true", help="run the two revisions at the same time")
    args = ap.parse_args(argv)
    if not args.revisions:
        return compare(Path(args.before), Path(args.after), args.rtol, args.strict_fields)
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="compare_records_"))).resolve()
    try:
        revs = [git(args.repo, "rev-parse", "--verify", f"{rev}^{{commit}}") for rev in (args.before, args.after)]
        with ThreadPoolExecutor(max_workers=2 if args.parallel else 1) as pool:
            sides = list(pool.map(lambda rev: run_side(args.repo, rev, workdir, args.smoke_methods), revs))
    except subprocess.CalledProcessError as err:
        print(f"compare_records: git {' '.join(err.cmd[3:])}: {err.stderr.strip()}", file=sys.stderr)
        return 2
    except RuntimeError as err:
        print(f"compare_records: {err}", file=sys.stderr)
        return 1
    return compare(*sides, args.rtol, args.strict_fields, roots=tuple(str(s.parent) for s in sides))


if __name__ == "__main__":
    sys.exit(main())
