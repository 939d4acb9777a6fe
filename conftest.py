"""Registers the paddle-llm-bench pytest plugin for `pytest benchmarks` and `pytest tests`."""

pytest_plugins = ["paddle_llm_bench.plugin"]
