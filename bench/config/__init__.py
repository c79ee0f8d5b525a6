"""Settings: the typed schema every option is checked against, where the configs are, method labels.

The lowest layer beside bench.errors: it imports nothing else of peft-bench, so any module may use it.
"""
