"""The training loop (a lean loop whose timed regions are ours), the forward passes it shares with
evaluation and inference, rung states of pruned studies, the progress display.
"""
