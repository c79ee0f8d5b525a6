"""The install contract: pyproject states ranges (a user's own torch stays), constraints.txt pins what CI tests."""
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, pinned = line.partition("==")
            assert pinned, f"constraints.txt: {line!r} is not pinned with =="
            pins[name.strip().lower().replace("_", "-")] = pinned.strip()
    return pins


def test_pyproject_declares_ranges_not_pins():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pinned = [d for d in deps if any(s.operator in ("==", "===") for s in Requirement(d).specifier)]
    assert not pinned, f"pyproject.toml pins {pinned}: state the supported range, pin in constraints.txt"


def test_the_lock_pins_every_dependency_inside_its_declared_range():
    pins = _pins()
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in deps:
        req = Requirement(dep)
        name = req.name.lower().replace("_", "-")
        assert name in pins, f"constraints.txt has no pin for {req.name}"
        assert Version(pins[name]) in req.specifier, f"constraints.txt pins {name}=={pins[name]} outside {dep}"


def test_this_environment_is_the_locked_one():
    """The installed core stack is the one constraints.txt pins, so the suite tests what the lock says."""
    pins = _pins()
    for name in ("torch", "transformers", "peft", "datasets", "accelerate", "hydra-core", "numpy", "pandas"):
        try:
            installed = version(name)
        except PackageNotFoundError:
            raise AssertionError(f"{name} is not installed") from None
        assert Version(installed).public == Version(pins[name]).public, (
            f"{name} {installed} installed, constraints.txt pins {pins[name]}: run `make setup` again")
