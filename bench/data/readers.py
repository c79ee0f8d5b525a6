"""Low-level readers for task data files (tsv, csv, jsonl, parquet).

Each reader yields `(number, values)`: the 1-based line (row, for parquet) of a record and the
values of the requested fields in the requested order. Every problem raises `DataError` naming
the file and line, because a silently skipped or misparsed row changes a benchmark number
without anyone noticing.

TSVs are split on tabs with no quote handling at all (what `csv.QUOTE_NONE` does): GLUE text
contains lone `"` characters that a quoting reader would treat as the start of a multi-line field.
CSV (the format people export from spreadsheets) is read with standard quoting.
"""
from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMATS = ("tsv", "csv", "jsonl", "parquet")
_SUFFIX_FORMAT = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
_BOM = b"\xef\xbb\xbf"


class DataError(Exception):
    """A data file is missing or malformed; the message names the file (and line) and what was expected."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None,
                 unit: str = "line"):
        self.path, self.line, self.reason = (str(path) if path is not None else None), line, message
        where = ""
        if path is not None:
            where = f"{path}, {unit} {line}: " if line is not None else f"{path}: "
        super().__init__(where + message)


@dataclass(slots=True)
class Example:
    text_a: str
    text_b: str | None
    label: int | float  # class index, or float score for regression


def infer_format(path: str) -> str | None:
    return _SUFFIX_FORMAT.get(Path(path).suffix.lower())


def _field_indices(names: list[str], needed: list[str], path: Path, header: bool) -> list[int]:
    idx = []
    for field in needed:
        hits = [i for i, n in enumerate(names) if n == field]
        if len(hits) != 1:
            what = "header line" if header else "configured `columns`"
            problem = "lacks" if not hits else f"has {len(hits)} copies of"
            raise DataError(f"{what} {problem} column {field!r}; found columns {names}, expected "
                            f"columns {needed} (the task's text_fields and label_field)",
                            path, 1 if header else None)
        idx.append(hits[0])
    return idx


def _rows(path: Path, records: Iterator[tuple[int, list[str]]], header: bool, columns: list[str] | None,
          needed: list[str], sep: str) -> Iterator[tuple[int, list[str]]]:
    """Shared header/column-count/blank-line checks for tsv and csv records."""
    if header:
        first = next(records, None)
        if first is None:
            raise DataError(f"file is empty; expected a header line with columns {columns or needed}", path, 1)
        names = [n.strip() for n in first[1]]
        if columns and names != list(columns):
            raise DataError(f"header is {names}; expected {list(columns)}", path, first[0])
    else:
        names = list(columns)
    idx = _field_indices(names, needed, path, header)
    ncol, blank = len(names), None
    for n, parts in records:
        if not parts or parts == [""]:
            blank = blank or n  # blank lines are only allowed at the end of the file
            continue
        if blank is not None:
            raise DataError(f"empty line; expected {ncol} {sep}-separated columns {names}", path, blank)
        if len(parts) != ncol:
            raise DataError(f"expected {ncol} {sep}-separated columns {names}, found {len(parts)}", path, n)
        yield n, [parts[i] for i in idx]


def _decoded_lines(path: Path) -> list[str]:
    data = path.read_bytes()
    data = data.removeprefix(_BOM)  # MRPC's header starts with a byte order mark
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"not valid UTF-8 ({e.reason} at byte {e.start}); expected UTF-8 text",
                        path, data.count(b"\n", 0, e.start) + 1) from None
    lines = text.split("\n")  # not splitlines(): it also splits on \x1c, \u2028 ... inside text
    if lines and lines[-1] == "":
        lines.pop()
    return [ln.removesuffix("\r") for ln in lines]  # CRLF files


def read_tsv(path: Path, header: bool, columns: list[str] | None, needed: list[str]):
    records = ((i, ln.split("\t")) for i, ln in enumerate(_decoded_lines(path), 1))
    return _rows(path, records, header, columns, needed, "tab")


def read_csv(path: Path, header: bool, columns: list[str] | None, needed: list[str]):
    def records():
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            last = 0
            try:
                for row in reader:
                    yield last + 1, row  # the line the record starts on
                    last = reader.line_num
            except csv.Error as e:
                raise DataError(f"malformed CSV ({e})", path, reader.line_num) from None
            except UnicodeDecodeError as e:
                raise DataError(f"not valid UTF-8 ({e.reason}); expected UTF-8 text", path) from None
    return _rows(path, records(), header, columns, needed, "comma")


def read_jsonl(path: Path, needed: list[str]) -> Iterator[tuple[int, list[Any]]]:
    blank = None
    for n, line in enumerate(_decoded_lines(path), 1):
        if not line.strip():
            blank = blank or n
            continue
        if blank is not None:
            raise DataError("empty line; expected one JSON object per line", path, blank)
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"not valid JSON ({e.msg}); expected one JSON object per line", path, n) from None
        if not isinstance(obj, dict):
            raise DataError(f"expected a JSON object, found {type(obj).__name__}", path, n)
        missing = [k for k in needed if k not in obj]
        if missing:
            raise DataError(f"object lacks field(s) {missing}; has {sorted(obj)}, expected {needed}", path, n)
        yield n, [obj[k] for k in needed]


def read_parquet(path: Path, needed: list[str]) -> Iterator[tuple[int, list[Any]]]:
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
        missing = [k for k in needed if k not in names]
        if missing:
            raise DataError(f"parquet file lacks column(s) {missing}; has {names}, expected {needed}", path)
        table = pq.read_table(path, columns=needed).to_pydict()
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for corrupt files
        raise DataError(f"not a readable parquet file ({type(e).__name__}: {e})", path) from None
    cols = [table[k] for k in needed]
    for n, values in enumerate(zip(*cols), 1):
        yield n, list(values)


def read_records(path: Path, fmt: str, header: bool, columns: list[str] | None, needed: list[str]):
    """Dispatch on format; returns (unit, iterator) where unit names what the numbers count."""
    if fmt == "tsv":
        return "line", read_tsv(path, header, columns, needed)
    if fmt == "csv":
        return "line", read_csv(path, header, columns, needed)
    if fmt == "jsonl":
        return "line", read_jsonl(path, needed)
    if fmt == "parquet":
        return "row", read_parquet(path, needed)
    raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
