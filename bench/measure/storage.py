"""Storage size: what a method must save to be used again (its delta), measured on disk.

Why on disk and not from parameter counts: formats differ (peft's adapter folder, safetensors,
configs), and the number a user pays for is the folder's bytes."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path


def folder_bytes(folder: str | Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def measure_storage(method, model, keep_in: str | Path | None = None) -> dict:
    """Save what the method must save and measure it on disk; keep it only when asked."""
    if keep_in is not None:
        folder = Path(keep_in)
        if folder.exists():
            shutil.rmtree(folder)
        method.save_delta(model, folder)
        size = folder_bytes(folder)
        kept = str(folder)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-delta-") as tmp:
            method.save_delta(model, Path(tmp) / "delta")
            size = folder_bytes(Path(tmp) / "delta")
        kept = None
    return {"bytes": int(size), "what": method.delta_holds, "kept_at": kept}
