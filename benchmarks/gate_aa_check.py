"""The gate's A/A false-alarm rate as `python -m bench.regress check` decides it, every metric included.

benchmarks/gate_aa.py measures the headline's tests one by one; this runs the gate itself: for each of
`--splits` random splits of a many-seed sweep into `--n-base` baseline seeds and `--n-cand` other
candidate seeds (all healthy code, so any REGRESSED cell is a false alarm), `regress save` on the
baseline seeds and `regress check` on the candidate seeds, in this process (the same parser, code and
exit status as the command), with memory and throughput report-only (the sweep's cells ran side by side,
so their speed is not what is measured). It counts the splits that fail and, per failing cell, which
rule failed it. Slower than gate_aa (the records are read and the bootstrap run per split):

    python -m benchmarks.gate_aa_check /tmp/gateaa/ci_gate --n-base 3 --n-cand 3 --splits 100
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import io
import json
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.regress.__main__ import main as regress_main
from benchmarks.gate_aa import rate


def seed_files(results_dir: Path) -> dict[int, list[Path]]:
    """{seed: the record and predictions files of that seed}, from the records' own `seed` field."""
    out = collections.defaultdict(list)
    for rec in sorted(results_dir.glob("*.json")):
        try:
            seed = int(json.loads(rec.read_text())["seed"])
        except (ValueError, KeyError, TypeError):
            continue
        out[seed] += [rec, *rec.parent.glob(rec.stem + ".predictions.json.gz")]
    return dict(out)


def run(args: list) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            code = regress_main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code or 0, out.getvalue()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results_dir", type=Path)
    ap.add_argument("--n-base", type=int, default=3)
    ap.add_argument("--n-cand", type=int, default=3)
    ap.add_argument("--splits", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-boot", type=int, default=None, help="the check's --n-boot (default: the gate's)")
    ap.add_argument("--direction", choices=("higher", "both"), default="both",
                    help="the baseline's direction (the ci_gate baseline's: both)")
    a = ap.parse_args(argv)
    files = seed_files(a.results_dir)
    if len(files) < a.n_base + a.n_cand:
        print(f"error: {a.results_dir}: records of {len(files)} seed(s), need {a.n_base + a.n_cand}", file=sys.stderr)
        return 2
    rng = np.random.default_rng(a.seed)
    failed, why = 0, collections.Counter()
    for _ in range(a.splits):
        order = [int(s) for s in rng.permutation(sorted(files))]
        with tempfile.TemporaryDirectory(prefix="gate-aa-") as tmp:
            base, cand = Path(tmp) / "base", Path(tmp) / "cand"
            for folder, seeds in ((base, order[:a.n_base]), (cand, order[a.n_base:a.n_base + a.n_cand])):
                folder.mkdir()
                for s in seeds:
                    for f in files[s]:
                        (folder / f.name).symlink_to(f.resolve())
            code, text = run(["save", base, "--name", "aa", "--out", tmp, "--direction", a.direction])
            if code != 0:
                print(text[-2000:], file=sys.stderr)
                return 1
            check = ["check", "--baseline", Path(tmp) / "aa.json", cand, "--report-only", "memory",
                     "--report-only", "throughput", *(["--n-boot", a.n_boot] if a.n_boot else [])]
            code, text = run(check)
        if code == 1:
            failed += 1
            why.update(re.sub(r"[-+]?\d[\d.e+-]*", "#", m) for m in re.findall(r"^\s+- (.+)$", text, re.MULTILINE))
        elif code != 0:
            print(text[-2000:], file=sys.stderr)
            return code
    print(f"{a.results_dir}: {a.splits} splits of {len(files)} seeds, {a.n_base} baseline vs {a.n_cand} other "
          f"candidate seeds, direction {a.direction}; `regress check` failed {rate(failed, a.splits)}")
    for reason, n in why.most_common(8):
        print(f"  {n:4d}  {reason[:150]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
