"""index.html: one self-contained page per report (inline CSS, no network, plots linked relatively).

The page is what a reader opens first, so it holds everything needed to trust the numbers: the
tables, the plots, which cells failed or never ran (with the error), which record files could not
be read, conflicting reruns, the run environments, and a link to every raw record. Records are
not copied: links are relative paths from the report folder to the record files, so the report
stays valid as long as the report and results folders keep their relative position.

A small inline script marks on load whether every image decoded (`data-images-ok` on <body>) and
shows a banner when not; scripts/check_report_browser.py reads that mark from a headless browser.
"""
from __future__ import annotations

import functools
import html
import math
import os
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from bench.analysis.aggregate import Aggregation

from .plots import Plot
from .tables import details_table, main_table, to_html, verdict_notes_markdown, verdict_tables

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:1.5em auto;
max-width:1400px;padding:0 1em;color:#222;line-height:1.35}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.8em 0 1.4em;font-size:.86em}
caption{caption-side:top;text-align:left;padding:.3em 0;max-width:1100px;color:#444}
th,td{border-top:1px solid #ddd;border-bottom:1px solid #ddd;padding:.25em .6em;text-align:right;
white-space:nowrap}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
td.failed{background:#fbe3e3;color:#900}td.missing{background:#fff3d6;color:#8a5a00}
td.partial{background:#fffbe8}td.wrap{white-space:normal;text-align:left;max-width:40em}
td.left{text-align:left}td.better{background:#e3f4e3}td.worse{background:#fbe3e3}
.figs{display:flex;flex-wrap:wrap;gap:1em}figure{margin:0;border:1px solid #ddd;padding:.5em;max-width:660px}
figure img{max-width:100%;height:auto}figcaption{font-size:.82em;color:#444}
.note{color:#8a5a00}.banner{background:#900;color:#fff;padding:.5em;display:none}
nav a{margin-right:1em}code{font-size:.9em}
table.plain th{text-align:left}.scroll{overflow-x:auto}
"""

SELF_CHECK = """
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); });
  document.body.dataset.imageCount = String(imgs.length);
  document.body.dataset.tableCount = String(document.querySelectorAll("table").length);
  document.body.dataset.brokenImages = broken.map(function (i) { return i.getAttribute("src"); }).join(" ");
  document.body.dataset.imagesOk = broken.length === 0 ? "true" : "false";
  if (broken.length) {
    var b = document.getElementById("broken-banner");
    b.textContent = broken.length + " image(s) failed to load: " + document.body.dataset.brokenImages;
    b.style.display = "block";
  }
});
"""


ENV_FIELDS = ("device", "cuda_device_name", "cpu_model", "torch_threads", "python", "torch", "transformers",
              "peft", "datasets", "evaluate", "hydra", "platform", "hostname", "git_commit", "git_dirty")


def env_summary(records: list[dict]) -> pd.DataFrame:
    """Distinct run environments (record `env`) with how many records and which models used each.

    Several rows mean the compared numbers come from different machines, library versions or
    commits, which a reader must know. Columns: ENV_FIELDS..., n_records, models.
    """
    rows = []
    for rec in records:
        env = rec.get("env") if isinstance(rec.get("env"), dict) else {}
        rows.append({f: ("" if env.get(f) is None else str(env.get(f))) for f in ENV_FIELDS}
                    | {"model": str(rec.get("model"))})
    if not rows:
        return pd.DataFrame(columns=list(ENV_FIELDS) + ["n_records", "models"])
    frame = pd.DataFrame(rows)
    out = frame.groupby(list(ENV_FIELDS), sort=True, dropna=False).agg(
        n_records=("model", "size"), models=("model", lambda s: ", ".join(sorted(set(s)))))
    return out.reset_index().sort_values("n_records", ascending=False, kind="stable").reset_index(drop=True)


def esc(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return html.escape(str(x))


@functools.lru_cache(maxsize=4096)
def _rel_dir(directory: str, out: str) -> str:
    # Resolving is the slow part (a stat per path component) and records share few folders.
    return Path(os.path.relpath(Path(directory).resolve(), Path(out).resolve())).as_posix()


def rel_href(target: str | os.PathLike, out: Path) -> str:
    """URL-quoted path of `target` relative to the report folder (method labels contain [ ] =)."""
    directory, name = os.path.split(os.fspath(target))
    rel = _rel_dir(directory or ".", str(out))
    return quote(name if rel == "." else f"{rel}/{name}")


def _record_role(r, kept) -> str:
    """What a raw record is to the report: a learning-rate trial, a superseded record, or (empty) a kept one."""
    if getattr(r, "study_role", None) == "trial":
        return " (lr trial)"
    return "" if r.path in kept else " (superseded)"


def _link(target, out: Path, text: str | None = None) -> str:
    if not isinstance(target, str) or not target:
        return ""
    return f'<a href="{rel_href(target, out)}">{esc(text or Path(target).name)}</a>'


def _shown(path: Path, root: Path) -> str:
    """A file's name as the reader knows it: relative to the results folder when inside it."""
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def frame_html(frame: pd.DataFrame, raw_cols: set[str] = frozenset(), wrap: set[str] = frozenset(),
               table_id: str = "") -> str:
    """Simple escaped table; columns in raw_cols hold ready-made HTML (links)."""
    head = "".join(f"<th>{esc(c)}</th>" for c in frame.columns)
    rows = []
    for vals in frame.itertuples(index=False):
        tds = []
        for c, v in zip(frame.columns, vals):
            cls = ' class="wrap"' if c in wrap else ' class="left"'
            tds.append(f"<td{cls}>{v if c in raw_cols else esc(v)}</td>")
        rows.append("<tr>" + "".join(tds) + "</tr>")
    ident = f' id="{esc(table_id)}"' if table_id else ""
    return (f'<div class="scroll"><table class="plain"{ident}><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def failures_section(agg: Aggregation, out: Path) -> str:
    fail = agg.failures()
    if fail.empty:
        return "<p>None: every model × method × task × seed cell of the grid has an ok record.</p>"
    logs = []
    for path, log in zip(fail["path"], fail["error_log"]):
        lp = Path(path).parent / log if isinstance(path, str) and isinstance(log, str) else None
        logs.append(_link(str(lp), out) if lp is not None and lp.is_file() else "")
    show = pd.DataFrame({
        "model": fail["model"], "method": fail["method_label"], "task": fail["task"], "seed": fail["seed"],
        "status": fail["status"], "error type": fail["error_type"], "message": fail["error_message"],
        "phase": fail["error_phase"], "where": fail["error_where"],
        "record": [_link(p, out) for p in fail["path"]], "log": logs})
    return (f"<p>{len(fail)} grid cell(s) without an ok record. The grid is every model × method × task × "
            "seed combination seen in any record of that model; <i>missing</i> means no record exists.</p>"
            + frame_html(show, raw_cols={"record", "log"}, wrap={"message"}, table_id="failures-table"))


def conflicts_section(agg: Aggregation, out: Path) -> str:
    c = agg.conflicts
    if c.empty:
        return "<p>None: one record per model × method × task × seed.</p>"
    show = pd.DataFrame({
        "model": c["model"], "method": c["method_label"], "task": c["task"], "seed": c["seed"],
        "records": c["n_records"], "kind": c["kind"], "kept (newest)": [_link(p, out) for p in c["kept_path"]],
        "kept hash": c["kept_config_hash"],
        "dropped": ["<br>".join(_link(p, out) for p in str(d).split(";") if p) for d in c["dropped_paths"]],
        "dropped hashes": c["dropped_config_hashes"]})
    return ("<p>Several records for one seed cell: the newest (finished_at) is used, the others are ignored.</p>"
            + frame_html(show, raw_cols={"kept (newest)", "dropped"}))


def bad_section(bad: list, out: Path, results_dir: Path) -> str:
    if not bad:
        return "<p>None.</p>"
    show = pd.DataFrame({"file": [_link(str(b.path), out, _shown(b.path, results_dir)) for b in bad],
                         "problem": [b.reason for b in bad]})
    return frame_html(show, raw_cols={"file"}, wrap={"problem"})


def records_section(agg: Aggregation, out: Path) -> str:
    parts = []
    recs = agg.records.sort_values(["model", "method_label", "task", "seed"])
    kept = set(agg.kept["path"])
    for model, sub in recs.groupby("model", sort=True):
        links = [f"<tr><td class=left>{esc(r.method_label)}</td><td class=left>{esc(r.task)}</td><td>{r.seed}</td>"
                 f"<td class=left>{esc(r.status)}{_record_role(r, kept)}</td>"
                 f"<td class=left>{_link(r.path, out)}</td></tr>" for r in sub.itertuples(index=False)]
        parts.append(f"<details><summary>{esc(model)}: {len(sub)} record(s)</summary><table class='plain'><thead><tr>"
                     "<th>method</th><th>task</th><th>seed</th><th>status</th><th>record</th></tr></thead>"
                     f"<tbody>{''.join(links)}</tbody></table></details>")
    return "\n".join(parts)


def verdicts_section(agg: Aggregation) -> str:
    """Pairwise verdict matrices per model and task, with the notes on pairs that were not tested."""
    head, *notes = verdict_notes_markdown(agg).strip().split("\n")
    items = "".join(f"<li>{esc(n[2:])}</li>" for n in notes if n.startswith("- "))
    parts = [f'<p>{esc(head)} <a href="pairwise.csv">pairwise.csv</a></p>']
    if items:
        parts.append(f"<details><summary>{len(agg.notes)} note(s): pairs not tested, collapsed runs, tasks without "
                     f"a verdict</summary><ul>{items}</ul></details>")
    for i, m in enumerate(agg.models):
        parts += [f'<div class="scroll">{to_html(t, f"verdict-{i}-{j}")}</div>'
                  for j, t in enumerate(verdict_tables(agg, m))]
    return "\n".join(parts)


def plots_section(plots: list[Plot], model: str) -> str:
    figs = []
    for p in (p for p in plots if p.model == model):
        note = f'<br><span class="note">{esc(p.note)}</span>' if p.note else ""
        figs.append(f'<figure><a href="{quote(p.svg)}"><img src="{quote(p.png)}" alt="{esc(p.title)}" '
                    f'loading="eager"></a><figcaption>{esc(p.title)} (<a href="{quote(p.svg)}">SVG</a>, '
                    f'<a href="{quote(p.png)}">PNG</a>){note}</figcaption></figure>')
    return f'<div class="figs">{"".join(figs)}</div>'


def write_index(out: Path, name: str, agg: Aggregation, records: list[dict], bad: list,
                results_dir: Path, plots: list[Plot], table_paths: dict[str, Path], extra_html: str = "") -> Path:
    """Write `out/index.html`; every href/src is a relative path to an existing file or an anchor."""
    counts = agg.records["status"].value_counts()
    stats = ", ".join(f"{counts.get(s, 0)} {s}" for s in ("ok", "failed", "interrupted"))
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    env = env_summary(records)
    commits = sorted(set(env["git_commit"])) if not env.empty else []
    env_note = (f'<p class="note">Records come from {len(env)} different environments '
                f'({len(commits)} git commit(s)): compare with care.</p>' if len(env) > 1 else "")
    body = [f"<h1>PEFT benchmark report: {esc(name)}</h1>",
            '<div id="broken-banner" class="banner"></div>',
            (f"<p>Results folder: <code>{esc(results_dir)}</code> — generated {now} from result records only "
             f"(nothing re-run). Models: {esc(', '.join(agg.models))}. Records: {stats}; "
             f"{len(bad)} unreadable; {len(agg.conflicts)} seed cell(s) with several records.</p>"),
            ('<nav><a href="#tables">tables</a><a href="#verdicts">verdicts</a><a href="#plots">plots</a>'
             '<a href="#failures">failed/missing</a>'
             '<a href="#conflicts">conflicts</a><a href="#bad">unreadable</a><a href="#env">environment</a>'
             '<a href="#details">per-task details</a><a href="#records">raw records</a></nav>'),
            "<p>Downloads: " + ", ".join(f'<a href="{quote(p.name)}">{esc(p.name)}</a>' for p in table_paths.values())
            + ' (CSV: raw 0-1 values, mean/std/n of every metric and measurement; see docs/report.md).</p>',
            '<h2 id="tables">Main tables</h2>']
    body += [f'<div class="scroll">{to_html(main_table(agg, m), f"main-{i}")}</div>' for i, m in enumerate(agg.models)]
    body += ['<h2 id="verdicts">Pairwise verdicts</h2>', verdicts_section(agg)]
    body.append(extra_html)  # e.g. the inference section (bench/report/inference.py)
    body.append('<h2 id="plots">Plots</h2>')
    for m in agg.models:
        body += [f"<h3>{esc(m)}</h3>", plots_section(plots, m)]
    body += ['<h2 id="failures">Failed or missing cells</h2>', failures_section(agg, out),
             '<h2 id="conflicts">Conflicting records</h2>', conflicts_section(agg, out),
             '<h2 id="bad">Unreadable record files</h2>', bad_section(bad, out, results_dir),
             '<h2 id="env">Environment</h2>', env_note,
             frame_html(env.rename(columns={"n_records": "records"})) if not env.empty else "<p>No env.</p>",
             '<h2 id="details">Per-task details</h2>']
    body += [f"<details><summary>{esc(m)}</summary>{to_html(details_table(agg, m), f'details-{i}')}</details>"
             for i, m in enumerate(agg.models)]
    body += ['<h2 id="records">Raw records</h2>',
             "<p>Links point to the record files where they are (relative paths, nothing copied).</p>",
             records_section(agg, out)]
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>Report {esc(name)}</title><style>{CSS}</style><script>{SELF_CHECK}</script></head>\n"
            "<body>\n" + "\n".join(body) + "\n</body></html>\n")
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
