"""Settings: the typed schema every option is checked against, where the configs are, method labels.

The lowest layer beside bench.errors: it imports nothing else of peft-bench, so any module may use it.
"""
from bench.config import method_tags as _method_tags

# `${methods_tagged:TAG}` resolves in every config composed in a process that uses peft-bench: the CLI's,
# Hydra's compose API in bench.params and the tests, and a sweeper resolving an experiment's method list.
_method_tags.register()
