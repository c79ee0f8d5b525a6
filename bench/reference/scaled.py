"""Deprecated: moved to bench.reproduce.scaled (see bench/reference/__init__.py)."""
from bench.reproduce.scaled import *
from bench.reproduce.scaled import SPEC_PATH, Spec, build, load_spec  # noqa: F401
