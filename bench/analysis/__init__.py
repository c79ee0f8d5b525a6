"""Statistics on finished results: intervals and paired tests, chance baselines and collapse, Pareto fronts.

Pure functions of numbers and predictions files: no model, no training, so the report and the gate can
use them on records alone.
"""
