"""Shared test setup: never touch the network, find the GLUE data, and the fixtures most tests use: the
tiny model's config (tests/tiny.py, read from conf/model/) and the project's commands run as a user
runs them (tests/clitools.py: offline, isolated environment, records under the test's tmp folder)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_GLUE_DIR = REPO.parent / "shared" / "data" / "glue"


def pytest_collection_modifyitems(config, items):
    """Modules marked `heavy` (sweeps in fixtures, tens of seconds each) come first, the rest after in their
    own order: `make test` hands whole modules to the workers in collection order (`--dist loadfile
    --no-loadscope-reorder`), so the long ones start early and the two workers finish together."""
    items.sort(key=lambda item: 0 if item.get_closest_marker("heavy") else 1)


@pytest.fixture(scope="session")
def glue_dir() -> Path:
    """The GLUE folder; missing data is a failure, not a skip, so a green run means the data was read."""
    path = Path(os.environ.get("BENCH_GLUE_DIR", str(DEFAULT_GLUE_DIR)))
    if not (path / "MANIFEST.json").is_file() and not (path / "SST-2").is_dir():
        pytest.fail(f"GLUE data not found at {path}: set BENCH_GLUE_DIR to a folder in the original GLUE "
                    f"download layout (<TASK>/train.tsv, dev.tsv), default {DEFAULT_GLUE_DIR}", pytrace=False)
    return path


@pytest.fixture
def tiny_bert_cfg():
    """conf/model/tiny_bert.yaml as an OmegaConf node (a fresh copy per test: tests may edit it)."""
    from omegaconf import OmegaConf
    from tiny import model_node

    return OmegaConf.create(model_node("tiny_bert"))


@pytest.fixture
def bench_cli(glue_dir, tmp_path):
    """`bench_cli([...overrides], module="bench")` runs `python -m <module>` as a user would, on the
    tiny model (model=tiny_bert train=quick first, so later overrides win), records under tmp_path;
    returns (CompletedProcess, results folder)."""
    from clitools import TINY, run_bench

    def run(args, module: str = "bench", timeout: int = 300, tiny: bool = True, **kw):
        results = tmp_path / "results"
        proc = run_bench([*(TINY if tiny else []), *args], glue_dir, results, module=module, timeout=timeout, **kw)
        return proc, results

    return run
