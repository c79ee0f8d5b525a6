"""Deprecated: moved to bench.reproduce.paramcheck (see bench/reference/__init__.py)."""
from bench.reproduce.paramcheck import *
from bench.reproduce.paramcheck import Check, Measurer, run_checks  # noqa: F401
