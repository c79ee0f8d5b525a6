"""Modules that combine: soups across seeds, multi-task merges, transfer of trained deltas.

Reads kept deltas (`save_delta=true`) and writes ordinary records with `composed_from` (the source
records, which must exist) and `composition` (how), so the report, intervals and paired tests work
on them unchanged. CLI: `python -m bench.compose soup|merge|transfer` (docs/compose.md).
"""
