"""Run the real CLI in a subprocess, as a user would."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY = ["model=tiny_bert", "train=quick"]


def bench_env(glue_dir) -> dict:
    env = dict(os.environ)
    env.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                "BENCH_GLUE_DIR": str(glue_dir), "PYTHONUNBUFFERED": "1"})
    env.pop("BENCH_INVOCATION", None)
    return env


def run_bench(args: list[str], glue_dir, results_dir, module: str = "bench", timeout: int = 300,
              extra_env: dict | None = None) -> subprocess.CompletedProcess:
    env = bench_env(glue_dir)
    env.update(extra_env or {})
    cmd = [sys.executable, "-m", module, *args, f"results_dir={results_dir}",
           f"hydra.run.dir={results_dir}/_hydra/run", f"hydra.sweep.dir={results_dir}/_hydra/sweep"]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def records_in(folder) -> list[dict]:
    out = []
    for p in sorted(Path(folder).rglob("*.json")):
        if "_hydra" in p.parts or p.name.startswith("."):
            continue
        data = json.loads(p.read_text())
        if isinstance(data, dict) and "schema_version" in data:
            data["_path"] = str(p)
            out.append(data)
    return out
