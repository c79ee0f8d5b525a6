"""What a cell costs, measured: parameter counts, peak memory, step timing, storage, model FLOPs and the
machine's matrix-multiply peak (the denominator of MFU).
"""
