"""Task data: readers for task files, task specs (GLUE and user tasks), seeded row choices, tokenisation
and batching, the GLUE metrics.
"""
