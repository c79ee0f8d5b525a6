"""Run the project's commands in a process of their own, as a user would. The one place tests start a
process, so every command sees the same offline, isolated environment.

`run_python(["-m", module, ...])` runs the module's `__main__` in a child forked from a warm server
process (multiprocessing's forkserver with torch, transformers, peft, Hydra and the project already
imported): the same argv, environment, working folder, `__main__` code, exit status, stdout and stderr
as `python -m module`, without the ~8 CPU-seconds a fresh interpreter spends importing peft. The server
never runs a torch operation, so a forked child may use torch's OpenMP threads (a child forked from a
process that did would hang: the reason the pytest worker itself is not forked), which is the same rule
`bench.sweep.execute` follows for its cells. A command whose behaviour depends on a fresh interpreter
(`-c` code, `PYTHONPATH`, variables read when a library is imported, signals to a process group) gets
one: `fresh=True`, `start_bench`, or an environment variable outside `_WARM_SAFE_ENV`."""
from __future__ import annotations

import atexit
import json
import multiprocessing
import os
import re
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


# Variables the project reads while it runs (not when a library is imported): a warm child sees them.
# PYTHONPATH is applied to the child's sys.path as the interpreter would (nothing on it is preloaded).
_WARM_SAFE_ENV = re.compile(r"BENCH_\w+|TOKENIZERS_PARALLELISM|PYTHONUNBUFFERED|PYTHONPATH")
# What the warm server imports once (this module first: it notes the environment before the others
# set their defaults in it); each is imported by some command the tests run.
_PRELOAD = ["clitools", "torch", "transformers", "peft", "datasets", "evaluate", "hydra", "pandas",
            "matplotlib.pyplot", "bench.cli", "bench.recipe.finetune", "bench.report.__main__"]
_WARM = None
# The environment when this module was imported: in the warm server, before any preloaded module ran.
_ENV_AT_IMPORT = dict(os.environ)


def run_python(args: list, glue_dir=None, cwd=REPO, timeout: int = 300, extra_env: dict | None = None,
               fresh: bool = False) -> subprocess.CompletedProcess:
    """`python <args>` (e.g. ["-m", "bench.report", folder]); the exit status is the caller's to check.
    `-m` commands run in a warm forked child unless `fresh` (or `extra_env` names a variable a fresh
    interpreter must see at import: see the module docstring)."""
    args = [str(a) for a in args]
    env = bench_env(glue_dir, extra_env)
    warm = (not fresh and len(args) >= 2 and args[0] == "-m"
            and all(_WARM_SAFE_ENV.fullmatch(k) for k in (extra_env or {})))
    if warm:
        return _run_warm(args[1], args[2:], env, Path(cwd), timeout)
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def _run_warm(module: str, argv: list[str], env: dict, cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    """`python -m module argv...` in a child of the warm server; a timeout kills it and raises
    subprocess.TimeoutExpired, as subprocess.run does."""
    import tempfile

    global _WARM
    if _WARM is None:
        _WARM = multiprocessing.get_context("forkserver")
        _WARM.set_forkserver_preload(_PRELOAD)
    cmd = [sys.executable, "-m", module, *argv]
    with tempfile.TemporaryDirectory(prefix="warm-run-") as tmp:
        out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
        child = _WARM.Process(target=_warm_child, args=(module, argv, env, str(cwd), str(out), str(err)),
                              name=f"python -m {module}")
        child.start()
        child.join(timeout)
        if child.is_alive():
            child.kill()
            child.join()
            raise subprocess.TimeoutExpired(cmd, timeout, _read(out), _read(err))
        code = child.exitcode
        return subprocess.CompletedProcess(cmd, code, _read(out), _read(err))


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


def _warm_child(module: str, argv: list[str], env: dict, cwd: str, out: str, err: str) -> None:
    """The child's side: become `python -m module argv` (environment, folder, sys.path[0], argv,
    stdio, default signal handlers), run the module as __main__, run the exit handlers a normal
    interpreter exit runs, and leave with the status `python` would."""
    import io
    import runpy
    import threading

    set_at_import = {k: v for k, v in os.environ.items() if _ENV_AT_IMPORT.get(k) != v}
    server_path = [p for p in _ENV_AT_IMPORT.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ.clear()
    os.environ.update(env)
    for key, value in set_at_import.items():  # what the preloaded modules set as defaults when imported
        os.environ.setdefault(key, value)
    os.chdir(cwd)
    own_path = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    rest = [p for p in sys.path[1:] if p not in server_path and p not in map(os.path.abspath, server_path)]
    sys.path[:] = [cwd, *own_path, *rest]
    sys.argv = [module, *argv]
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    fd_in = os.open(os.devnull, os.O_RDONLY)
    os.dup2(fd_in, 0)
    for fd, path in ((1, out), (2, err)):
        f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(f, fd)
        os.close(f)
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
    sys.stdout = sys.__stdout__ = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8",
                                                   line_buffering=True, write_through=True)
    sys.stderr = sys.__stderr__ = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8",
                                                   errors="backslashreplace", line_buffering=True,
                                                   write_through=True)
    code = 0
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except KeyboardInterrupt:
        code = 128 + signal.SIGINT
    except BaseException:  # noqa: BLE001 - what the interpreter does with an uncaught exception
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        threading._shutdown()  # non-daemon threads, joined as at interpreter exit
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
    os._exit(code)


def _bench_args(args: list, results_dir, module: str) -> list:
    """Records and Hydra's own run folders both under `results_dir`, never in the repository."""
    return ["-m", module, *args, f"results_dir={results_dir}",
            f"hydra.run.dir={results_dir}/_hydra/run", f"hydra.sweep.dir={results_dir}/_hydra/sweep"]


def run_bench(args: list[str], glue_dir, results_dir, module: str = "bench", timeout: int = 300,
              extra_env: dict | None = None, fresh: bool = False) -> subprocess.CompletedProcess:
    """`python -m bench ARGS` writing under `results_dir`. `fresh=True` where the records' memory is
    compared with a figure measured in a fresh interpreter: a warm child's resident set includes
    everything the server preloaded (pandas, matplotlib, evaluate...), ~25 % more peak RSS on tiny_bert."""
    return run_python(_bench_args(args, results_dir, module), glue_dir, timeout=timeout, extra_env=extra_env,
                      fresh=fresh)


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
