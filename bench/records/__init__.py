"""Records: the one file format every part of peft-bench agrees on, the environment each carries, and the
results layer through which every reader (report, gate, reproduction) finds them.
"""
