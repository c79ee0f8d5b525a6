"""The recipe: one (model, task, method, seed) cell from config to record (bench/recipe/finetune.py), the
whole-config check it and the CLI run, starting from another cell's delta, the experiment trackers.
"""
