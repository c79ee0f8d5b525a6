"""Settings: the typed schema every option is checked against, where the configs are, method labels.

The lowest layer beside bench.errors: it imports nothing else of peft-bench, so any module may use it.
"""

from bench.config import resolvers as _resolvers  # noqa: F401 - registers the resolvers conf/ uses (method=peft, model=auto)
