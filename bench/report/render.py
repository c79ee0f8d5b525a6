"""The neutral display `Table` and its renderers (Markdown, LaTeX, HTML, plain text).

A table is built once, as already formatted strings with a status per cell, and rendered per
format, so every format of a report (and of bench.reproduce's reports) shows the same numbers.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field

from bench.records.results import text_table


@dataclass
class Table:
    """A formatted table: `status[i][j]` is ok/partial/failed/missing/'' for styling."""

    title: str
    caption: str
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)
    status: list[list[str]] = field(default_factory=list)
    bold: set[tuple[int, int]] = field(default_factory=set)  # (row, column): tied with the best


def to_markdown(t: Table) -> str:
    def esc(s: str) -> str:
        return str(s).replace("|", "\\|").replace("\n", " ")

    def cell(i: int, j: int, c: str) -> str:
        return f"**{esc(c)}**" if (i, j) in t.bold else esc(c)

    lines = [f"### {esc(t.title)}", "", esc(t.caption), "",
             "| " + " | ".join(esc(h) for h in t.header) + " |",
             "|" + "|".join(":---" if i == 0 else "---:" for i in range(len(t.header))) + "|"]
    lines += ["| " + " | ".join(cell(i, j, c) for j, c in enumerate(row)) + " |" for i, row in enumerate(t.rows)]
    return "\n".join(lines) + "\n"


_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
          "{": r"\{", "}": r"\}", "[": "{[}", "]": "{]}", "<": r"\textless{}", ">": r"\textgreater{}",
          "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(s: str) -> str:
    out = "".join(_LATEX.get(ch, ch) for ch in str(s))
    return out.replace("±", r"$\pm$").replace("×", r"$\times$").replace("–", "--").replace("†", r"\textdagger{}")


def to_latex(t: Table) -> str:
    spec = "l" + "r" * (len(t.header) - 1)
    lines = [r"\begin{table}[ht]", r"\centering", r"\small",
             rf"\caption{{{latex_escape(t.caption)}}}", r"\resizebox{\linewidth}{!}{%",
             rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(latex_escape(h) for h in t.header) + r" \\", r"\midrule"]
    lines += [" & ".join(rf"\textbf{{{latex_escape(c)}}}" if (i, j) in t.bold else latex_escape(c)
                         for j, c in enumerate(row)) + r" \\" for i, row in enumerate(t.rows)]
    lines += [r"\bottomrule", r"\end{tabular}}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def to_html(t: Table, table_id: str = "") -> str:
    ident = f' id="{html.escape(table_id)}"' if table_id else ""
    out = [f"<table{ident}>", f"<caption><b>{html.escape(t.title)}.</b> {html.escape(t.caption)}</caption>",
           "<thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in t.header) + "</tr></thead>", "<tbody>"]
    for i, (row, st) in enumerate(zip(t.rows, t.status)):
        def txt(j: int, c: str, i: int = i) -> str:
            return f"<b>{html.escape(c)}</b>" if (i, j) in t.bold else html.escape(c)
        tds = "".join(f'<td class="{s}">{txt(j, c)}</td>' if s else f"<td>{txt(j, c)}</td>"
                      for j, (c, s) in enumerate(zip(row, st)))
        out.append(f"<tr>{tds}</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def to_text(t: Table, max_width: int = 28) -> str:
    """Fixed-width plain text for the terminal (bench.records.results.text_table): labels left, numbers right."""
    return text_table(t.header, t.rows, right=range(1, len(t.header)), max_width=max_width)
