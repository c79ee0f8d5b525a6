"""Run the project's commands in a subprocess, as a user would. The one place tests start a process,
so every command sees the same offline, isolated environment."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY = ["model=tiny_bert", "train=quick"]
# Set by a surrounding run (a results folder, the ledger of an invocation, the launcher's cell
# count): a test's command must not inherit them from whoever runs pytest.
_NOT_INHERITED = ("BENCH_INVOCATION", "BENCH_RESULTS_DIR", "BENCH_PARALLEL_CELLS", "BENCH_SWEEP_TOTAL")


def bench_env(glue_dir=None, extra_env: dict | None = None) -> dict:
    """The environment of a test command: offline, GLUE at `glue_dir`; `extra_env` values of None
    remove a variable."""
    env = dict(os.environ)
    for key in _NOT_INHERITED:
        env.pop(key, None)
    env.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                "PYTHONUNBUFFERED": "1"})
    if glue_dir is not None:
        env["BENCH_GLUE_DIR"] = str(glue_dir)
    for key, value in (extra_env or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = str(value)
    return env


def run_python(args: list, glue_dir=None, cwd=REPO, timeout: int = 300,
               extra_env: dict | None = None) -> subprocess.CompletedProcess:
    """`python <args>` (e.g. ["-m", "bench.report", folder]); the exit status is the caller's to check."""
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, env=bench_env(glue_dir, extra_env),
                          capture_output=True, text=True, timeout=timeout, check=False)


def _bench_args(args: list, results_dir, module: str) -> list:
    """Records and Hydra's own run folders both under `results_dir`, never in the repository."""
    return ["-m", module, *args, f"results_dir={results_dir}",
            f"hydra.run.dir={results_dir}/_hydra/run", f"hydra.sweep.dir={results_dir}/_hydra/sweep"]


def run_bench(args: list[str], glue_dir, results_dir, module: str = "bench", timeout: int = 300,
              extra_env: dict | None = None) -> subprocess.CompletedProcess:
    return run_python(_bench_args(args, results_dir, module), glue_dir, timeout=timeout, extra_env=extra_env)


def start_bench(args: list[str], glue_dir, results_dir) -> subprocess.Popen:
    """`python -m bench` left running, in its own process group so a test can signal the whole
    sweep (parent and cell) the way Ctrl-C in a terminal does."""
    return subprocess.Popen([sys.executable, *_bench_args(args, results_dir, "bench")], cwd=REPO,
                            env=bench_env(glue_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=_sigint_default)  # noqa: PLW1509 - no threads before exec


def _sigint_default() -> None:
    """A test suite started in the background (`cmd &`, nohup) inherits SIGINT *ignored*, and Python
    then never turns Ctrl-C into KeyboardInterrupt: the Ctrl-C test would hang on a healthy harness.
    Restore the default so the child starts as it would from a terminal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def kill_leftovers(marker: str) -> list[int]:
    """SIGKILL every process whose command line contains `marker` (a test's own tmp folder): a held
    cell must not outlive a failed test and eat a core for the rest of the suite."""
    killed = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker in cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                pid = int(cmdline.parent.name)
                if pid != os.getpid():
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
        except (OSError, ValueError):
            continue
    return killed


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


def run_main(main, args: list, glue_dir=None) -> subprocess.CompletedProcess:
    """An entry point's `main(argv)` called in this process, with what it prints captured: the same
    parsing, code and exit status as `python -m <module>` without the seconds of a fresh interpreter's
    imports. For tests of what a command computes and prints; each entry point keeps at least one test
    through `run_python`, which is what a user runs. argparse's own exits (SystemExit) become the status;
    `glue_dir` is BENCH_GLUE_DIR during the call, as `run_python` sets it for a command."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    argv = [str(a) for a in args]
    saved = os.environ.get("BENCH_GLUE_DIR")
    if glue_dir is not None:
        os.environ["BENCH_GLUE_DIR"] = str(glue_dir)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            if isinstance(exc.code, str):
                err.write(exc.code + "\n")
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            if saved is None:
                os.environ.pop("BENCH_GLUE_DIR", None)
            else:
                os.environ["BENCH_GLUE_DIR"] = saved
    return subprocess.CompletedProcess(argv, code or 0, out.getvalue(), err.getvalue())
