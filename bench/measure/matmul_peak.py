"""The machine's measured matrix-multiply peak: the denominator of MFU (bench/measure/flops.py).

Why measured and not a datasheet number: a vendor peak for a 2-vCPU cloud guest is unknowable
(turbo, shared cores, AVX-512 down-clocking), and on GPUs the attainable dense peak is well below
the datasheet. A large square product is the fastest thing a framework does with the matrix units,
so model FLOP/s divided by it says how much of the *attainable* matrix speed a cell used. MFU here
is therefore higher than an MFU against a datasheet peak would be; the record says which.

Measured once per (device name, torch threads, precision, torch version) and cached in
`$BENCH_CACHE_DIR/peak_flops.json` (else `$XDG_CACHE_HOME/peft-bench/`, else `~/.cache/peft-bench/`),
because the measurement takes a second or two and must not be repeated for every cell. A peak
measured while other processes used more than QUIET_MAX of the CPU is kept but marked not quiet,
and measured again by the next cell; the cache keeps the best value seen (a peak is a best case, and
a busy machine can only make it look lower: a busy first measurement once put 98 GFLOP/s in the
cache against 209 quiet, and MFU read 1.27).
"""
from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from bench.cores import load_1min
from bench.device import sync

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
SIZE = {"cpu": 2048, "cuda": 8192}  # square matrices: large enough to reach the matrix units' plateau
REPEATS = 10
# share of the CPU other processes may use while the peak is measured (BENCH_PEAK_QUIET_MAX=1 accepts any)
QUIET_MAX = 0.10
BUDGET_S = 4.0  # stop repeating after this long (slow dtypes on CPU), with at least 2 timed products


def cache_file() -> Path:
    root = os.environ.get("BENCH_CACHE_DIR")
    if root:
        return Path(root) / "peak_flops.json"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "peft-bench" / "peak_flops.json"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from bench.records.environment import cpu_model

    return cpu_model()


def key_of(device: torch.device, precision: str) -> str:
    return (f"{device_name(device)}|{device.type}|threads={torch.get_num_threads()}|{precision}"
            f"|torch={torch.__version__}")


def measure(device: torch.device, precision: str, n: int | None = None) -> dict:
    """Best of up to REPEATS timed products of two n x n matrices in the precision's dtype (after one
    untimed product), at the process's current torch thread count."""
    dtype = DTYPES[precision]
    n = n or SIZE.get(device.type, 2048)
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    from bench.measure.timing import ForeignCPU

    torch.matmul(a, b)
    sync(device)
    best, times, start = float("inf"), 0, time.perf_counter()
    with ForeignCPU() as other:
        while times < REPEATS and (times < 2 or time.perf_counter() - start < BUDGET_S):
            t0 = time.perf_counter()
            torch.matmul(a, b)
            sync(device)
            best = min(best, time.perf_counter() - t0)
            times += 1
    load = load_1min()
    return {
        "flops_per_s": 2.0 * n ** 3 / best,
        "device_name": device_name(device), "device": device.type, "threads": torch.get_num_threads(),
        "precision": precision, "dtype": str(dtype).replace("torch.", ""), "torch": torch.__version__,
        "method": f"best of {times} timed torch.matmul of two {n}x{n} {str(dtype).replace('torch.', '')} matrices "
                  f"(2*n^3 FLOPs each) after 1 untimed, {torch.get_num_threads()} torch threads"
                  + ("; synchronised" if device.type == "cuda" else ""),
        "load_avg_1min": load,
        "other_cpu_share": other.frac,
        "quiet": _quiet(other.frac),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _quiet(other_share: float | None) -> bool:
    """Whether other processes left the machine quiet enough. A limit of 1 or more accepts any reading:
    /proc/stat counts in 10 ms ticks, so over a short measurement the share can read above 1."""
    limit = float(os.environ.get("BENCH_PEAK_QUIET_MAX", QUIET_MAX))
    return limit >= 1 or (other_share is not None and other_share <= limit)


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def peak_flops(device: torch.device, precision: str) -> dict:
    """The cached peak for this machine and setting, measured now when there is none. Never raises
    for an unwritable cache: the measurement is then kept in the record only."""
    if precision not in DTYPES:
        return {"flops_per_s": None, "why_not": f"no peak for precision {precision!r}"}
    path, key = cache_file(), key_of(device, precision)
    cached = _read(path).get(key)
    if isinstance(cached, dict) and cached.get("flops_per_s") and cached.get("quiet"):
        return dict(cached, cache=str(path), measured_now=False)
    entry = measure(device, precision)
    if isinstance(cached, dict) and (cached.get("flops_per_s") or 0) > entry["flops_per_s"]:
        # the cache held a higher (so truer) peak from a busy earlier measurement: keep it
        entry = dict(cached, quiet=bool(cached.get("quiet")) or entry["quiet"])
    try:
        from bench.records.schema import atomic_write

        data = _read(path)  # again: another cell may have written meanwhile
        data[key] = entry
        atomic_write(path, "w", lambda fh: json.dump(data, fh, indent=2))
    except OSError:
        pass
    return dict(entry, cache=str(path), measured_now=True)


def main(argv: list[str] | None = None) -> None:
    """`python -m bench.measure.matmul_peak [--precision fp32 bf16] [--threads N] [--again]`: print (and cache) the
    peak a cell at these settings would use; `--again` measures anew, e.g. on a quiet machine."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m bench.measure.matmul_peak", description=main.__doc__)
    ap.add_argument("--precision", nargs="+", default=["fp32"], choices=sorted(DTYPES))
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--again", action="store_true", help="forget the cached value and measure again")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    for precision in args.precision:
        if args.again:
            path, data = cache_file(), _read(cache_file())
            if data.pop(key_of(device, precision), None) is not None:
                path.write_text(json.dumps(data, indent=2), encoding="utf-8")
        p = peak_flops(device, precision)
        print(f"{precision}: {p['flops_per_s'] / 1e9:.1f} GFLOP/s ({p['method']}; "
              f"{'measured now' if p['measured_now'] else 'cached'} in {p['cache']})")


if __name__ == "__main__":
    main()
