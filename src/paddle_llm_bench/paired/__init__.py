"""Paired, interleaved A/B measurement: one worker process per side, alternating turns in random order.

- ``protocol``: the JSON-lines messages between the coordinator and a worker.
- ``worker``: ``python -m paddle_llm_bench.paired.worker`` — one side; loads a case once, warms up, and
  runs measured turns on request with the suite's own measuring code.
- ``sides``: what a side is (a Python with Paddle and this project) and how one is checked.
- ``engine``: the coordinator — blocks of fresh workers, randomized turns, adaptive length.
- ``stats``: pure paired statistics (Hodges-Lehmann per block, Student-t over blocks, verdicts).
- ``results``: the typed records of a paired comparison, its JSON document and its verdicts.
- ``render``: tables, Markdown, CSV, JSON and the forest plot of ratios.
"""
