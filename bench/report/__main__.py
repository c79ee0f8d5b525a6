"""CLI: `python -m bench.report RESULTS_DIR [--out reports/NAME] [--name NAME]`.

Exit status 0 on success, 2 when RESULTS_DIR is unusable (missing, or no readable record), so that
`make report` fails loudly instead of writing an empty report.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.analysis.resampled_metrics import DEFAULT_B

from . import UnusableResults, generate_report, summary_text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.report",
                                 description="Tables, plots and index.html from result records (never re-runs).")
    ap.add_argument("results_dir", type=Path, help="folder with result records (searched recursively)")
    ap.add_argument("--name", help="report name (default: the results folder's name)")
    ap.add_argument("--out", type=Path, help="report folder (default: reports/<name>)")
    ap.add_argument("--bootstrap-samples", type=int, default=DEFAULT_B, metavar="B",
                    help=f"resamples per bootstrap interval/test (default {DEFAULT_B}; docs/statistics.md)")
    ap.add_argument("--margin", type=float, default=None, metavar="M",
                    help="equivalence margin on the metric's scale for every headline metric (default per metric: "
                         "0.01 = 1 point; bench.analysis.equivalence.MARGINS, docs/statistics.md)")
    ap.add_argument("--forgetting-margin", type=float, default=None, metavar="M",
                    help="equivalence margin of the forgetting verdicts, on forgetting's scale (default 0.01 = 1 "
                         "point of similarity Spearman; bench.analysis.equivalence.MARGINS, docs/retention.md)")
    args = ap.parse_args(argv)
    for flag, v in (("--margin", args.margin), ("--forgetting-margin", args.forgetting_margin)):
        if v is not None and not v > 0:
            ap.error(f"{flag} {v}: must be > 0 (e.g. 0.01 for 1 point)")
    if args.bootstrap_samples < 100:
        ap.error(f"--bootstrap-samples {args.bootstrap_samples}: use at least 100 (percentile intervals need them)")
    rd = args.results_dir
    name = args.name or (rd.resolve().name if rd.is_dir() else rd.stem)
    out = args.out or Path("reports") / name
    try:
        report = generate_report(rd, out, name, bootstrap_samples=args.bootstrap_samples, margin=args.margin,
                                 forgetting_margin=args.forgetting_margin)
    except UnusableResults as exc:
        print(f"bench.report: error: {exc}", file=sys.stderr)
        return 2
    print(summary_text(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
