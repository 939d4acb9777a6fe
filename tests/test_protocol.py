"""The worker protocol's messages: typed on both ends, a line outside the protocol refused by name."""

from __future__ import annotations

import re

import pytest

from paddle_llm_bench.core.config import Case
from paddle_llm_bench.core.metrics import RoundTimes
from paddle_llm_bench.paired.protocol import (
    Failure,
    HelloReply,
    Memory,
    Prepare,
    ProtocolError,
    Quit,
    Turn,
    TurnReply,
    decode_reply,
    decode_request,
    encode,
    failure,
)

CASE = Case("tiny", "float32", "greedy", 8, batch_size=1, prompt_tokens=8)


@pytest.mark.parametrize(
    "request_",
    [Prepare(case=CASE, cache_dir="/c", slot=1, mode="to_static"), Turn(rounds=3, slot=1), Memory(), Quit()],
)
def test_every_request_reads_back_as_it_was_sent(request_: Prepare | Turn | Memory | Quit) -> None:
    assert decode_request(encode(request_)) == request_


@pytest.mark.parametrize(
    ("line", "named"),
    [
        ('{"op": "dance"}', "{'op': 'dance'}: Input tag 'dance' found using 'op' does not match"),  # no such request
        ('{"op": "turn", "rounds": "many"}', "field turn.rounds is 'many'"),
        ('{"op": "turn", "round": 2}', "field turn.round is 2: Extra inputs are not permitted"),  # a misspelt field
        ('{"op": "prepare", "case": {"model": "tiny"}, "cache_dir": "/c"}', "field prepare.case.dtype is missing"),
        ("[1, 2]", "not a protocol message (a JSON object)"),
        ("Traceback (most recent call last):", "not a protocol line"),
    ],
)
def test_a_line_outside_the_protocol_is_refused_by_name(line: str, named: str) -> None:
    with pytest.raises(ProtocolError, match=re.escape(named)):
        decode_request(line)


def test_a_reply_is_the_expected_answer_or_the_reported_failure() -> None:
    rounds = [RoundTimes(0, (5, 9), 10)]
    assert decode_reply(encode(TurnReply(rounds=rounds)), TurnReply) == TurnReply(rounds=rounds)
    reported = decode_reply(encode(failure(MemoryError("out of memory\nin a kernel"))), TurnReply)
    assert reported == Failure(kind="MemoryError", error="out of memory")
    with pytest.raises(ProtocolError, match="round timestamps must not decrease"):  # checked on arrival
        decode_reply('{"ok": true, "rounds": [{"start_ns": 10, "step_ns": [5], "end_ns": 20}]}', TurnReply)
    # a worker of another protocol still says which one it speaks
    assert decode_reply('{"ok": true, "protocol": 99}', HelloReply) == HelloReply(protocol=99)
