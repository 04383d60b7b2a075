"""Embeddings from the embedded model through OpenAI's ``/v1/embeddings`` and Ollama's
``/api/embed`` (and its older ``/api/embeddings``): a unit vector per text, in order, the same
for a text alone or among others, nearer for texts that say the same thing; what cannot be
embedded is a 400 naming the input."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from litestar.testing import AsyncTestClient

from libs.common.kafka.topics import ensure_topics
from libs.common.schemas.embeddings import MAX_INPUTS
from tests.llm.conftest import CHAT, ON_THE_MODULES_LOOP
from tests.support.llm_service import start_llm_service
from tests.support.usage_topic import usage_events

Client = AsyncTestClient[Any]

TEXTS = [
    "Apple's quarterly revenue rose 8% to $94.9 billion.",
    "Apple's sales for the quarter grew 8%, to $94.9 billion.",
    "Heavy rain is forecast for the weekend.",
]


async def _vectors(llm: Client, body: dict[str, Any]) -> np.ndarray[Any, Any]:
    response = await llm.post("/v1/embeddings", json=body)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert [item["index"] for item in data] == list(range(len(data)))
    return np.array([item["embedding"] for item in data])


@ON_THE_MODULES_LOOP
async def test_openai_embeddings_are_unit_vectors_nearer_for_the_same_meaning(
    shared_llm: Client,
) -> None:
    response = await shared_llm.post("/v1/embeddings", json={"input": TEXTS})
    vectors = await _vectors(shared_llm, {"input": TEXTS})

    body = response.json()
    assert body["object"] == "list"
    assert body["model"] == "smollm2-135m-instruct"
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > len(TEXTS)
    assert vectors.shape == (3, 576)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    similar, unrelated = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert similar > unrelated


@ON_THE_MODULES_LOOP
async def test_a_text_has_the_same_vector_alone_among_others_and_in_base64(
    shared_llm: Client,
) -> None:
    together = await _vectors(shared_llm, {"input": TEXTS})

    alone = await _vectors(shared_llm, {"input": TEXTS[1]})
    packed = await shared_llm.post(
        "/v1/embeddings", json={"input": TEXTS[1], "encoding_format": "base64"}
    )

    assert np.allclose(alone[0], together[1], atol=1e-6)
    unpacked = np.frombuffer(base64.b64decode(packed.json()["data"][0]["embedding"]), "<f4")
    assert np.array_equal(unpacked, np.asarray(alone[0], dtype=np.float32))


@ON_THE_MODULES_LOOP
async def test_ollama_embed_gives_the_same_vectors_and_truncates_unless_told_not_to(
    shared_llm: Client,
) -> None:
    openai = await _vectors(shared_llm, {"input": TEXTS})
    long_text = "The desk hedged its bond book again. " * 300  # past the 1,024-token context

    ollama = await shared_llm.post("/api/embed", json={"input": TEXTS})
    truncated = await shared_llm.post("/api/embed", json={"input": long_text})
    refused = await shared_llm.post("/api/embed", json={"input": long_text, "truncate": False})

    assert ollama.status_code == 200
    assert np.allclose(np.array(ollama.json()["embeddings"]), openai, atol=1e-6)
    assert ollama.json()["prompt_eval_count"] > 0
    assert truncated.status_code == 200
    assert truncated.json()["prompt_eval_count"] == 1024
    assert refused.status_code == 400
    assert "input[0] is" in refused.json()["detail"]


@ON_THE_MODULES_LOOP
async def test_ollamas_older_embeddings_endpoint_gives_a_texts_vector(shared_llm: Client) -> None:
    openai = await _vectors(shared_llm, {"input": TEXTS[0]})

    older = await shared_llm.post("/api/embeddings", json={"model": "smollm2", "prompt": TEXTS[0]})

    assert older.status_code == 200
    assert np.allclose(np.array(older.json()["embedding"]), openai[0], atol=1e-6)


@ON_THE_MODULES_LOOP
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"input": ["Bonds", ""]}, "input[1]"),
        ({"input": ["Bonds", "\u0016"]}, "input[1] has no token"),  # the tokenizer drops it
        ({"input": []}, "input"),
        ({"input": ["Bonds"] * (MAX_INPUTS + 1)}, "input"),
        ({"input": [[1, 2, 3]]}, "input"),
        ({"input": "Bonds", "encoding_format": "hex"}, "encoding_format"),
        ({"input": "Bonds", "dimensions": 256}, "dimensions"),
        ({"input": "The desk hedged. " * 600}, "input[0] is"),
    ],
    ids=[
        "empty text",
        "no token",
        "no text",
        "too many",
        "tokens",
        "encoding",
        "dimensions",
        "too long",
    ],
)
async def test_what_cannot_be_embedded_is_a_400_naming_it(
    shared_llm: Client, body: dict[str, Any], field: str
) -> None:
    response = await shared_llm.post("/v1/embeddings", json=body)

    assert response.status_code == 400, response.text
    assert field in response.json()["detail"]


async def test_an_embeddings_call_is_reported_as_one_on_the_usage_topic(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = f"usage-{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka_bootstrap, {topic: 1})
    service = start_llm_service(
        tmp_path / "llm.log",
        {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "LLAMA31_8B_USAGE_TOPIC": topic},
    )
    try:
        async with httpx.AsyncClient(base_url=service.url, timeout=60) as http:
            embedded = (await http.post("/v1/embeddings", json={"input": TEXTS})).json()
            await http.post("/v1/chat/completions", json={**CHAT, "max_tokens": 4})
        events = await usage_events(kafka_bootstrap, topic)
    finally:
        service.stop()

    by_capability = {event.capability: event for event in events}
    assert len(events) == 2
    assert set(by_capability) == {"embeddings", None}  # the chat answer has none
    embeddings = by_capability["embeddings"]
    assert embeddings.prompt_tokens == embedded["usage"]["prompt_tokens"]
    assert (embeddings.completion_tokens, embeddings.status) == (0, "ok")
