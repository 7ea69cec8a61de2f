"""Data: read a user's tables, parse labels, build the task's labeled splits, and the one rule for "texts".

Submodules are imported by name (`gendistill.data.task`); this face imports nothing, so the torch-free predictor
can use `gendistill.data.texts` without pulling in pandas.
"""
