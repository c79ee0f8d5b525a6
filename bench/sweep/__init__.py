"""Sweeps of cells: isolation, resume and the ledger (execute), claims across launches, the tuning
protocol (study), the cost pass, the end-of-sweep summary.
"""
