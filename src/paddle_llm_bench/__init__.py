"""paddle-llm-bench: honest LLM generation benchmarks for PaddlePaddle + PaddleNLP."""

__version__ = "0.1.0"
