"""Example external methods for peft-bench (not part of the `bench` package).

Put this folder on PYTHONPATH and its conf/ on Hydra's search path:

    PYTHONPATH=examples/plugins python -m bench --config-dir examples/plugins/conf method=layernorm_tuning
"""
