"""Backbones and the task head (bench/models/backbones.py), and the one way to build a cell's model:
backbone + head, then the method validated and applied (bench/models/build.py).
"""
