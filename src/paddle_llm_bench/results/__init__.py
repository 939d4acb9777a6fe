"""Saved runs and baselines on disk: atomic files, baseline storage and merging, the gate over stored baselines,
shard merging, pytest-benchmark saves.
"""
