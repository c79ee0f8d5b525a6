"""Settings: the typed schema every option is checked against, where the configs are, method labels.

The lowest layer beside bench.errors: it imports nothing else of peft-bench, so any module may use it.
Importing it registers the OmegaConf resolvers conf/ uses, so they resolve in every config composed in a
process that uses peft-bench (the CLI's, Hydra's compose API in bench.params and the tests, and a sweeper
resolving an experiment's method list): `${methods_tagged:TAG}` (bench/config/method_tags.py) and the
resolvers of method=peft and model=auto (bench/config/resolvers.py). It also stores the nodes conf/config.yaml
takes from Hydra's ConfigStore (bench/config/store.py: the method node open to any field, judged by the method).
"""
from bench.config import method_tags as _method_tags
from bench.config import resolvers as _resolvers  # noqa: F401 - registers its resolvers on import
from bench.config import store as _store

_method_tags.register()
_store.register()
