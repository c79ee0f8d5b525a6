"""Deprecated: moved to bench.reproduce.head_study (see bench/reference/__init__.py)."""
from bench.reproduce.head_study import *
from bench.reproduce.head_study import main

if __name__ == "__main__":  # `python -m bench.reference.head_study DIR`: use `python -m bench.reproduce head_study`
    raise SystemExit(main())
