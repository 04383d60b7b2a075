"""``POST /events`` bodies are read in one pass, with the NUL-free types when no NUL escape is in
the bytes: whatever the body, the outcome must be exactly the strict ``EventBatch`` decoding's
(the same batch, or the same refusal with the same message and path). Over HTTP the refusals
are tested in test_event_bounds.py; this compares the two decodings body by body."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from libs.common.schemas.usage import EventBatch
from services.analytics.event_body import decode_event_batch
from tests.analytics.conftest import run_event, usage_event

NOW = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)


def _body(**batch: Any) -> bytes:
    return msgspec.json.encode(batch)


VALID = {
    "usage and runs": _body(
        usage=[usage_event(NOW), usage_event(NOW, workflow_id="w", capability="c", error="e")],
        runs=[run_event(NOW), run_event(NOW, duration_ms=None, error="why")],
    ),
    "empty": b"{}",
    "scores": _body(
        scores=[
            {
                "run_id": "e/d/summary",
                "workflow_id": "w",
                "model": "m",
                "metric": "f1",
                "value": 1,
                "timestamp": NOW.isoformat(),
            }
        ]
    ),
    "an escaped backslash before u0000 (no NUL, read strictly)": _body(
        usage=[usage_event(NOW, error="\\u0000")]
    ),
}

REFUSED = {
    "too long a model": _body(usage=[usage_event(NOW, model="m" * 257)]),
    "an empty provider": _body(usage=[usage_event(NOW, provider="")]),
    "a negative token count": _body(usage=[usage_event(NOW, prompt_tokens=-1)]),
    "an unknown status": _body(usage=[usage_event(NOW, status="maybe")]),
    "a naive time": _body(usage=[usage_event(NOW, timestamp="2026-12-02T08:00:00")]),
    "too long a run error": _body(runs=[run_event(NOW, error="x" * 2001)]),
    "a run without workflow": _body(runs=[{"run_id": "r", "status": "success"}]),
    "a NUL in a run's source": _body(runs=[run_event(NOW, source="a\u0000")]),
    "a NUL in usage": _body(usage=[usage_event(NOW, service="s\u0000")]),
    "an unknown field": b'{"usage": [], "extra": 1}',
    "not an object": b"[]",
    "not JSON": b"{usage",
}


@pytest.mark.parametrize("body", VALID.values(), ids=VALID.keys())
def test_a_valid_body_gives_the_strict_decoding_s_batch(body: bytes) -> None:
    strict = msgspec.json.decode(body, type=EventBatch)

    batch = decode_event_batch(body)

    assert msgspec.to_builtins(batch) == msgspec.to_builtins(strict)


@pytest.mark.parametrize("body", REFUSED.values(), ids=REFUSED.keys())
def test_a_bad_body_is_refused_as_the_strict_decoding_refuses_it(body: bytes) -> None:
    with pytest.raises(msgspec.DecodeError) as strict:
        msgspec.json.decode(body, type=EventBatch)

    with pytest.raises(msgspec.DecodeError) as fast:
        decode_event_batch(body)

    assert type(fast.value) is type(strict.value)
    assert str(fast.value) == str(strict.value)
