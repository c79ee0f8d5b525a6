"""Storage size: what a method must save to be used again (its delta), measured on disk.

Why on disk and not from parameter counts: formats differ (peft's adapter folder, safetensors,
configs), and the number a user pays for is the folder's bytes."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path


def folder_bytes(folder: str | Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def open_like_plain_files(folder: Path) -> None:
    """Give a kept delta's files the mode a plain open() would (safetensors writes 0600): a delta in a
    shared results folder is read by the group's reports and `bench.predict`, as its record is."""
    import os

    from bench.records.schema import plain_mode

    mode = plain_mode()
    for p in Path(folder).rglob("*"):
        if p.is_file() and (p.stat().st_mode & 0o777) != mode:
            os.chmod(p, mode)


def measure_storage(method, model, keep_in: str | Path | None = None) -> dict:
    """Save what the method must save and measure it on disk; keep it only when asked."""
    if keep_in is not None:
        folder = Path(keep_in)
        if folder.exists():
            shutil.rmtree(folder)
        method.save_delta(model, folder)
        open_like_plain_files(folder)
        size = folder_bytes(folder)
        kept = str(folder)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-delta-") as tmp:
            method.save_delta(model, Path(tmp) / "delta")
            size = folder_bytes(Path(tmp) / "delta")
        kept = None
    return {"bytes": int(size), "what": method.delta_holds, "kept_at": kept}
