"""peft-bench as an installed tool: a wheel built from this repository (not an editable install) holds
the configs and data files it reads, and its `peft-bench` runs a cell from an unrelated folder,
with the user's own task added by `--config-dir`.

Why a real wheel in a fresh virtual environment: every other test imports bench from the clone,
where conf/ sits beside the package, so a wheel without its configs passes all of them (it did:
"Primary config directory not found ... site-packages/conf"). Installing torch and transformers
into the fresh environment would take minutes and the network, so the environment sees the heavy
dependencies through a .pth file naming this interpreter's site-packages. A .pth *path line* adds
the folder but does not run the .pth files inside it, so the clone's editable-install hook cannot
leak in; the test asserts that `bench` and the config dir both resolve inside the fresh venv.
"""
from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.heavy  # scheduled first (tests/conftest.py): its sweeps take tens of seconds

REPO = Path(__file__).resolve().parents[1]
#: what a wheel needs from the repository to build (pyproject's `readme` included)
BUILD_INPUTS = ("pyproject.toml", "README.md", "bench", "conf")
#: suffixes of files under bench/ that the package reads at run time (pyproject's package-data)
PACKAGE_SUFFIXES = (".py", ".json", ".csv", ".yaml")
TIMEOUT = 300


def _run(cmd: list, what: str, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=TIMEOUT, check=False, **kw)
    if p.returncode != 0:
        pytest.fail(f"{what} failed (exit {p.returncode}): {' '.join(map(str, cmd))}\n"
                    f"{p.stdout[-3000:]}\n{p.stderr[-3000:]}", pytrace=False)
    return p


def _require_build_tools() -> None:
    """Building offline needs the build backend in this environment (`--no-build-isolation`); its absence
    is a broken dev setup (`make setup` installs both), reported as a failure, never a skip."""
    missing = [m for m in ("setuptools", "wheel", "pip") if not _importable(m)]
    if missing:
        pytest.fail(f"cannot build the wheel offline: {', '.join(missing)} not importable by {sys.executable} "
                    "(run `make setup`)", pytrace=False)


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _env(glue_dir: Path) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               BENCH_GLUE_DIR=str(glue_dir), PYTHONUNBUFFERED="1", PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    for key in ("PYTHONPATH", "PYTHONHOME", "BENCH_INVOCATION", "BENCH_RESULTS_DIR", "BENCH_CACHE_DIR", "VIRTUAL_ENV"):
        env.pop(key, None)
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the build inputs so that no build/ or egg-info lands in the repo
    (other sessions work in it at the same time)."""
    _require_build_tools()
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    for name in BUILD_INPUTS:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, src / name)
    out = root / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", out, src], "building the wheel", env=dict(os.environ, PIP_NO_INDEX="1"))
    (found,) = out.glob("peft_bench-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv holding the wheel (installed before the dependency .pth exists, with
    --ignore-installed, so pip never sees, let alone touches, the clone's editable install)."""
    root = tmp_path_factory.mktemp("venv") / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", root], "creating the venv")
    python = root / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
          "--ignore-installed", "-q", wheel], "installing the wheel", env=dict(os.environ, PIP_NO_INDEX="1"))
    purelib = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        "asking the venv for its site-packages").stdout.strip())
    deps = [p for p in dict.fromkeys(site.getsitepackages() + [sysconfig.get_paths()["purelib"]]) if Path(p).is_dir()]
    (purelib / "_peft_bench_test_deps.pth").write_text("".join(f"{p}\n" for p in deps))
    return root


def _purelib(venv: Path) -> Path:
    return Path(_run([venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     "asking the venv for its site-packages").stdout.strip()).resolve()


def test_wheel_holds_every_module_config_and_data_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    want = {f"bench/{p.relative_to(REPO / 'bench').as_posix()}" for p in (REPO / "bench").rglob("*")
            if p.is_file() and p.suffix in PACKAGE_SUFFIXES and "__pycache__" not in p.parts}
    want |= {f"bench/conf/{p.relative_to(REPO / 'conf').as_posix()}" for p in (REPO / "conf").rglob("*.yaml")}
    missing = sorted(want - names)
    assert not missing, (f"the wheel lacks {len(missing)} file(s) of the repository, e.g. {missing[:8]}: a new "
                         "subpackage of bench/ must be listed in [tool.setuptools] packages of pyproject.toml, a new kind "
                         "of data file in package-data; conf/ ships through package-dir \"bench.conf\" = \"conf\"")
    assert "bench/conf/config.yaml" in names and "bench/model_configs/tiny-bert/config.json" in names
    assert not any(n.startswith("conf/") for n in names), "conf/ must ship inside bench/, not as a top-level package"


def test_installed_tool_runs_from_another_folder(venv, tmp_path, glue_dir):
    work = tmp_path / "elsewhere"  # a folder with no bench/ and no conf/ in it
    work.mkdir()
    env = _env(glue_dir)
    purelib = _purelib(venv)

    where = _run([venv / "bin" / "python", "-c",
                  "import json, bench, bench.config.confdir as c; print(json.dumps([bench.__file__, str(c.conf_dir())]))"],
                 "importing bench in the venv", cwd=work, env=env)
    bench_file, conf = (Path(p).resolve() for p in json.loads(where.stdout.strip().splitlines()[-1]))
    assert bench_file.is_relative_to(purelib), f"bench imported from {bench_file}, not the wheel in {purelib}"
    assert conf == purelib / "bench" / "conf", f"built-in configs read from {conf}, not from the wheel"

    # The user's own task, in their own config folder, on their own data (absolute root).
    data = tmp_path / "data"
    data.mkdir()
    for split, n in (("train", 48), ("dev", 16)):
        rows = [f"{'a fine warm film' if i % 2 else 'a dull cold film'} {i},{'positive' if i % 2 else 'negative'}"
                for i in range(n)]
        (data / f"{split}.csv").write_text("text,sentiment\n" + "\n".join(rows) + "\n")
    mine = tmp_path / "my_conf"
    (mine / "task").mkdir(parents=True)
    (mine / "task" / "my_reviews.yaml").write_text(
        "name: my_reviews\nkind: classification\ntext_fields: [text]\nlabel_field: sentiment\n"
        "labels: [negative, positive]\nmetrics: [accuracy]\nheadline: accuracy\n"
        f"root: {data}\nsplits:\n  train: {{path: train.csv, format: csv}}\n  dev: {{path: dev.csv, format: csv}}\n"
        "eval_splits: [dev]\nhub: null\n")

    # `python -m bench` finds the wheel's configs first and the user's folder beside them.
    info = _run([venv / "bin" / "python", "-m", "bench", "--config-dir", mine, "--info", "searchpath"],
                "python -m bench --info searchpath", cwd=work, env=env)
    assert str(purelib / "bench" / "conf") in info.stdout, info.stdout
    assert str(mine) in info.stdout, info.stdout

    results = tmp_path / "results"
    tool = venv / "bin" / "peft-bench"
    assert tool.is_file(), f"the wheel installed no console script {tool}"
    p = subprocess.run([str(tool), "--config-dir", str(mine), "-m", "task=sst2,my_reviews", "method=head_only",
                        "model=tiny_bert", "train=quick", "train.max_train_samples=32", "train.threads=1",
                        "inference.enabled=false", f"results_dir={results}"],
                       cwd=work, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    recs = {r["task"]: r for r in (json.loads(f.read_text()) for f in (results / "adhoc").glob("*.json"))}
    assert set(recs) == {"sst2", "my_reviews"}, p.stdout[-3000:]
    for task, rec in recs.items():
        assert rec["status"] == "ok", (task, rec.get("error"))
        assert 0 <= rec["metrics"]["accuracy"] <= 1
        assert rec["env"]["bench"], "the record does not name the installed peft-bench version"
        assert rec["env"]["git_commit"] is None  # an installed wheel has no repository of its own
