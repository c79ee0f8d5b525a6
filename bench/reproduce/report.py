"""Report files for `bench.reproduce`: Markdown, CSV and one self-contained index.html per report, in
the style of the comparison report (bench.report): the same neutral `Table`, renderers and CSS."""
from __future__ import annotations

import html
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from bench.report.html import CSS
from bench.report.tables import Table, to_html, to_markdown, to_text


def write_report(out: str | Path, title: str, intro: list[str], tables: list[Table],
                 frames: dict[str, pd.DataFrame], notes: list[str] | None = None) -> dict[str, Path]:
    """Write reproduce.md, <name>.csv for each frame, and index.html into `out`; returns the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    paths: dict[str, Path] = {}
    md = [f"# {title}", "", *intro, ""]
    for t in tables:
        md += [to_markdown(t), ""]
    if notes:
        md += ["### Notes", ""] + [f"- {n}" for n in notes] + [""]
    md.append(f"_Generated {stamp} by `python -m bench.reproduce`._")
    paths["md"] = out / "reproduce.md"
    paths["md"].write_text("\n".join(md) + "\n", encoding="utf-8")
    for name, frame in frames.items():
        paths[name] = out / f"{name}.csv"
        frame.to_csv(paths[name], index=False, na_rep="")
    body = [f"<h1>{html.escape(title)}</h1>"] + [f"<p>{html.escape(line)}</p>" for line in intro if line]
    for i, t in enumerate(tables):
        body.append(f'<div class="scroll">{to_html(t, f"t{i}")}</div>')
    if notes:
        body.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    links = " ".join(f'<a href="{p.name}">{p.name}</a>' for k, p in paths.items() if k != "md")
    body.append(f"<p>Data: {links} · <a href=\"reproduce.md\">reproduce.md</a> · generated {stamp}</p>")
    paths["html"] = out / "index.html"
    paths["html"].write_text(
        f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
        f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n", encoding="utf-8")
    return paths


def table_from_frame(frame: pd.DataFrame, title: str, caption: str, status_col: str | None = None,
                     columns: list[str] | None = None) -> Table:
    """A display Table from a frame of already formatted strings; `status_col` (verdicts) colours cells."""
    columns = columns or list(frame.columns)
    t = Table(title, caption, list(columns))
    for _, r in frame.iterrows():
        t.rows.append(["" if pd.isna(r[c]) else str(r[c]) for c in columns])
        st = _status(str(r[status_col])) if status_col else ""
        t.status.append([st if c in ("verdict", status_col) else "" for c in columns])
    return t


def _status(verdict: str) -> str:
    v = verdict.lower()
    if v.startswith(("match", "holds", "reproduced")):
        return "ok"
    if v.startswith(("no match", "does not hold", "not reproduced", "failed")):
        return "failed"
    if v.startswith(("mixed", "config", "not ", "no published")):
        return "missing"
    return ""


__all__ = ["Table", "table_from_frame", "to_text", "write_report"]
