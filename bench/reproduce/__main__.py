"""`python -m bench.reproduce TARGET...`: published numbers next to what the harness measures.

Targets:
  params                      every published trainable-parameter count vs the harness's count (`make reproduce-params`)
  lora_paper | houlsby        every preset of that paper folder (conf/experiment/<paper>/*.yaml)
  lora_paper/roberta_base_lora  one preset
  scaled                      the scaled-down reproduction on the bundled MiniLM (conf/experiment/scaled_repro.yaml)
  head_study                  native vs uniform head, paired by seed, from the records of <results>/head_study
  all                         params, every paper, scaled

A paper preset runs only what this machine can run *as published*: its model's pretrained weights
must be available (bundled, a local folder, or the Hugging Face cache; offline nothing is
downloaded) and the task's hyperparameters must be known. Otherwise the report says why and nothing
is run: a random-weight accuracy is never reported. Published numbers on the GLUE test server are
shown but not compared (the harness evaluates on dev).

Cells run as `python -m bench -m ...` (bench.reproduce.runner): records go to
<results>/<sweep_name>/ exactly as for a sweep typed by hand, so reruns resume and one cell failing
does not stop the others. Reports go to <out>/<target>/ (reproduce.md, CSV, index.html). Exit
status: 0, 1 when a cell failed, 2 on a usage or configuration error, 130 on Ctrl-C.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def main(argv: list[str] | None = None) -> int:
    from bench.records.results import sweep_dir
    from bench.reproduce import head_study, paramcheck, presets, scaled
    from bench.reproduce.published import ReferenceError

    ap = argparse.ArgumentParser(prog="python -m bench.reproduce", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.split("\n\n")[1:2]))
    ap.add_argument("targets", nargs="+",
                    help="params | scaled | head_study | all | lora_paper | houlsby | <paper>/<preset>")
    ap.add_argument("--results", type=Path, default=Path(os.environ.get("BENCH_RESULTS_DIR", "results")),
                    help="results folder (records; default results/)")
    ap.add_argument("--out", type=Path, default=Path("reports/reproduce"),
                    help="report folder (default reports/reproduce)")
    ap.add_argument("--dry-run", action="store_true", help="paper presets: plan and report, run nothing")
    ap.add_argument("--tasks", help="paper presets: comma list of tasks to run (default: the preset's)")
    ap.add_argument("--seeds", help="paper presets: number of seeds (default: the preset's); "
                                    "scaled: comma list overriding the preset's train.seed sweep")
    ap.add_argument("--no-run", action="store_true", help="scaled: report from existing records only")
    ap.add_argument("--override", "-o", action="append", default=[], metavar="KEY=VALUE",
                    help="a Hydra override added to every cell run (repeatable), as on the `python -m bench` "
                         "command line, e.g. train.threads=1 or hydra/launcher=parallel; a setting that is in "
                         "the config hash makes different cells from the preset's")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("bench.models.backbones", "transformers", "httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    targets = []
    for t in args.targets:
        targets += ["params", *presets.PAPERS, "scaled"] if t == "all" else [t]
    rc = 0
    tasks = args.tasks.split(",") if args.tasks else None
    try:
        for t in targets:
            if t == "params":
                rc = max(rc, paramcheck.cmd_params(args.out))
            elif t == "scaled":
                rc = max(rc, scaled.cmd_scaled(args.results, args.out, not args.no_run, args.seeds, args.override))
            elif t == "head_study":
                rc = max(rc, head_study.main([str(sweep_dir(args.results, "head_study"))]))
            else:
                seeds = int(args.seeds) if args.seeds else None
                rc = max(rc, presets.cmd_presets(t, presets.expand(t), args.results, args.out, args.dry_run, tasks,
                                                 seeds, args.override))
    except (ReferenceError, FileNotFoundError, ValueError) as exc:
        print(f"bench.reproduce: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: finished records are kept; run the same command again to resume", file=sys.stderr)
        return 130
    return rc


if __name__ == "__main__":
    sys.exit(main())
