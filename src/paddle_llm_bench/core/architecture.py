"""A decoder-only LM's shape as its ``config.json`` gives it — the presets' and a checkpoint's alike — typed.
Pure.

Read by the bandwidth ceiling (parameters, KV-cache bytes, weight bytes per token), the shard planner (a case's
cost follows its parameters) and the weight-shape check of a checkpoint; written into the synthetic
checkpoints' ``config.json``. The layout fields every reader needs are checked when a config is read; every
other key of the config (``rope_theta``, ``hidden_act`` ...) is kept as it was, for PaddleNLP.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, PositiveInt


class Architecture(BaseModel):
    """The layout of a Qwen2-style decoder: sizes, layer count, query and key/value heads."""

    model_config = ConfigDict(extra="allow", frozen=True)

    model_type: str = ""  # "qwen2" for every preset and the DeepSeek-R1-Distill-Qwen models
    vocab_size: PositiveInt
    hidden_size: PositiveInt
    intermediate_size: PositiveInt
    num_hidden_layers: PositiveInt
    num_attention_heads: PositiveInt
    num_key_value_heads: PositiveInt | None = None  # grouped-query attention; None: one per query head
    tie_word_embeddings: bool = False  # the output layer is the input embedding
    max_position_embeddings: PositiveInt | None = None

    @classmethod
    def of(cls, config: Mapping[str, object]) -> Architecture:
        """From a config's keys (``config.json``, or PaddleNLP's ``config.to_dict()``); a ``ValueError``
        (pydantic's ``ValidationError``) names a missing or malformed field."""
        return cls.model_validate(dict(config))

    @property
    def kv_heads(self) -> int:
        return self.num_key_value_heads or self.num_attention_heads

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def kv_width(self) -> int:
        """The width of one layer's key (or value) projection: key/value heads x head dim."""
        return self.kv_heads * self.head_dim

    def config(self, **overrides: Any) -> dict[str, Any]:
        """The keyword arguments of PaddleNLP's ``Qwen2Config`` (and a ``config.json``), with ``overrides``."""
        return {**self.model_dump(exclude_none=True), **overrides}
