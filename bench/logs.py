"""Library log noise off: what a user reads in a sweep's output is peft-bench's own lines.

Why a module of its own: the CLI and the cost pass (`python -m bench.sweep.cost_pass`) both start
fresh processes that load transformers; both call this before the first model loads."""
from __future__ import annotations

import warnings


def quiet_libraries() -> None:
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*[Tt]oken type ids are not supported.*")
    try:
        from transformers.utils import logging as tlog

        tlog.set_verbosity_error()
        tlog.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass
