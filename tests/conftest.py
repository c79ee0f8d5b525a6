"""Shared test setup: never touch the network, and find the GLUE data."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_GLUE_DIR = REPO.parent / "shared" / "data" / "glue"


@pytest.fixture(scope="session")
def glue_dir() -> Path:
    """The GLUE folder; missing data is a failure, not a skip, so a green run means the data was read."""
    path = Path(os.environ.get("BENCH_GLUE_DIR", str(DEFAULT_GLUE_DIR)))
    if not (path / "MANIFEST.json").is_file() and not (path / "SST-2").is_dir():
        pytest.fail(f"GLUE data not found at {path}: set BENCH_GLUE_DIR to a folder in the original GLUE "
                    f"download layout (<TASK>/train.tsv, dev.tsv), default {DEFAULT_GLUE_DIR}", pytrace=False)
    return path
