"""The embedded model decodes overlapping requests together (continuous batching), and an
answer does not depend on what shares its batch: at temperature 0, or at a given seed, each is
the answer the same request gets alone. The real model, in a uvicorn process, over HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.kafka_llm_processor.send_samples import sample_documents
from services.llm.backends.prompt_cache import TILED_ROWS
from tests.support.llm_service import prompt_token_counts, start_llm_service, token_counts
from tests.support.metrics_text import sample_value
from tests.support.processes import ServiceProcess

SENTIMENT = {
    "type": "object",
    "properties": {"sentiment": {"type": "string", "enum": ["positive", "negative", "neutral"]}},
    "required": ["sentiment"],
}
# Different prompts, lengths, samplers: greedy, a JSON grammar, a seeded draw, a stop string,
# penalties on repeating.
REQUESTS: list[dict[str, Any]] = [
    {"content": "Summarize: Apple's quarterly revenue rose 5% to 90 billion dollars."},
    {
        "content": "What is the sentiment of: the bond market sold off sharply today?",
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "sentiment", "schema": SENTIMENT},
        },
    },
    {"content": "Explain settlement risk in FX trading.", "temperature": 0.8, "seed": 7},
    {"content": "List three risks of holding corporate bonds.", "stop": ["3."]},
    {
        "content": "Repeat after me: buy, buy, buy, buy, buy, buy.",
        "frequency_penalty": 0.5,
        "presence_penalty": 0.5,
        "repeat_penalty": 1.3,
    },
]


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[int, ServiceProcess]]:
    """The Llama 3.1 8B wrapper on the embedded model, by LLAMA31_8B_PARALLEL (2, 4)."""
    logs = tmp_path_factory.mktemp("batching")
    started: dict[int, ServiceProcess] = {}
    try:
        for parallel in (2, 4):
            log = Path(logs / f"parallel{parallel}.log")
            started[parallel] = start_llm_service(log, {"LLAMA31_8B_PARALLEL": str(parallel)})
        yield started
    finally:
        for process in started.values():
            process.stop()


def chat(request: dict[str, Any], max_tokens: int = 32) -> dict[str, Any]:
    body = {k: v for k, v in request.items() if k != "content"}
    return {
        "messages": [{"role": "user", "content": request["content"]}],
        "temperature": 0,
        "max_tokens": max_tokens,
        **body,
    }


async def decoding_counts(llm: httpx.AsyncClient) -> tuple[float, float]:
    """(passes, tokens those passes made) from the service's /metrics."""
    text = (await llm.get("/metrics")).text
    return (
        sample_value(text, "pas_llm_decode_passes_total"),
        sample_value(text, "pas_llm_decode_sequence_steps_total"),
    )


def answer(response: Any) -> tuple[Any, ...]:
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    return (
        choice["message"]["content"],
        choice["finish_reason"],
        token_counts(response.json()["usage"]),
    )


async def ask_alone_then_together(
    llm: httpx.AsyncClient, bodies: list[dict[str, Any]]
) -> tuple[list[httpx.Response], list[httpx.Response], float, float]:
    """The requests one at a time, then all at once; the passes and tokens of the second."""
    alone = [await llm.post("/v1/chat/completions", json=body) for body in bodies]
    passes_before, steps_before = await decoding_counts(llm)
    together = await asyncio.gather(
        *(llm.post("/v1/chat/completions", json=body) for body in bodies)
    )
    passes, steps = await decoding_counts(llm)
    return alone, list(together), passes - passes_before, steps - steps_before


async def test_answers_decoded_together_are_the_answers_decoded_alone(
    services: dict[int, ServiceProcess],
) -> None:
    async with httpx.AsyncClient(base_url=services[4].url, timeout=120) as llm:
        alone, together, passes, steps = await ask_alone_then_together(
            llm, [chat(r) for r in REQUESTS]
        )

    assert [answer(r) for r in together] == [answer(r) for r in alone]
    assert json.loads(answer(together[1])[0])["sentiment"] in {"positive", "negative", "neutral"}
    # Some passes advanced several answers at once: the requests were decoded together.
    assert steps > passes > 0


async def test_the_prompt_tokens_a_request_takes_from_the_cache_are_counted(
    services: dict[int, ServiceProcess],
) -> None:
    """usage says how many prompt tokens came from the cache, /metrics adds them up, and the
    tokens read and reused make the prompt."""
    body = chat({"content": "Name the G10 currencies and their central banks."})
    async with httpx.AsyncClient(base_url=services[2].url, timeout=120) as llm:
        before = await prompt_token_counts(llm)
        usages = [(await llm.post("/v1/chat/completions", json=body)).json()["usage"] for _ in "ab"]
        after = await prompt_token_counts(llm)

    cached = [usage["prompt_tokens_details"]["cached_tokens"] for usage in usages]
    assert 0 < cached[1] < usages[1]["prompt_tokens"]  # the repeat, but its last rows
    assert after["reused"] - before["reused"] == sum(cached)
    read_and_reused = sum(after[source] - before[source] for source in ("read", "reused"))
    assert read_and_reused == sum(usage["prompt_tokens"] for usage in usages)


async def test_a_prompt_whose_slot_was_taken_comes_back_from_the_prompt_store(
    services: dict[int, ServiceProcess],
) -> None:
    """Three conversations on a service of two slots: the first one's slot is taken before it
    goes on, and its prompt is put back from host memory (answers unchanged: test_prompt_reuse)."""
    documents = sample_documents()
    talks = [[{"role": "user", "content": d.content}] for d in documents[:3]]
    async with httpx.AsyncClient(base_url=services[2].url, timeout=120) as llm:
        first = [
            (await llm.post("/v1/chat/completions", json=chat_of(messages, 4))).json()
            for messages in talks
        ]
        restored_before = await metric(llm, "pas_llm_prompts_restored_total")
        going_on = [*talks[0], {"role": "assistant", "content": "I read it."}]
        again = (await llm.post("/v1/chat/completions", json=chat_of(going_on, 8))).json()
        restored = await metric(llm, "pas_llm_prompts_restored_total") - restored_before
        stored_bytes = await metric(llm, "pas_llm_prompt_store_bytes")

    assert restored == 1
    # All of the first prompt but the rows read last (a tile of 64, test_prompt_reuse.py).
    cached = again["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert cached >= first[0]["usage"]["prompt_tokens"] - TILED_ROWS
    assert stored_bytes > 0


def chat_of(messages: list[dict[str, str]], max_tokens: int) -> dict[str, Any]:
    return {"messages": messages, "temperature": 0, "max_tokens": max_tokens}


async def metric(llm: httpx.AsyncClient, name: str) -> float:
    return sample_value((await llm.get("/metrics")).text, name)


async def test_the_logprobs_of_answers_decoded_together_are_those_alone(
    services: dict[int, ServiceProcess],
) -> None:
    """A row of a pass is computed as it would be alone: its logits, to the last bit."""
    bodies = [{**chat(r, 12), "logprobs": True, "top_logprobs": 2} for r in REQUESTS]
    async with httpx.AsyncClient(base_url=services[4].url, timeout=120) as llm:
        alone, together, passes, steps = await ask_alone_then_together(llm, bodies)

    def logprobs(response: httpx.Response) -> Any:
        return response.json()["choices"][0]["logprobs"]["content"]

    assert [logprobs(r) for r in together] == [logprobs(r) for r in alone]
    assert all(logprobs(r) for r in alone)
    assert steps > passes > 0


async def test_a_streamed_answer_in_a_batch_is_the_answer_alone(
    services: dict[int, ServiceProcess],
) -> None:
    async with httpx.AsyncClient(base_url=services[4].url, timeout=120) as llm:
        alone = (await llm.post("/v1/chat/completions", json=chat(REQUESTS[0]))).json()
        stream, *_ = await asyncio.gather(
            llm.post("/v1/chat/completions", json={**chat(REQUESTS[0]), "stream": True}),
            *(llm.post("/v1/chat/completions", json=chat(r)) for r in REQUESTS[1:]),
        )

    lines = [line[len("data: ") :] for line in stream.text.splitlines() if line.startswith("data:")]
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(line) for line in lines[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == alone["choices"][0]["message"]["content"]


async def test_the_batch_holds_at_most_parallel_answers_and_the_rest_wait(
    services: dict[int, ServiceProcess],
) -> None:
    parallel = 2
    async with httpx.AsyncClient(base_url=services[parallel].url, timeout=120) as llm:
        alone, together, passes, steps = await ask_alone_then_together(
            llm, [chat(r, 16) for r in REQUESTS]
        )

    assert [answer(r) for r in together] == [answer(r) for r in alone]
    # Each pass made one token for each answer in it, and held at most ``parallel`` of them.
    assert passes < steps <= parallel * passes


async def test_penalties_on_repeating_lower_what_an_answer_repeats(
    services: dict[int, ServiceProcess],
) -> None:
    """OpenAI's frequency and presence penalties, llama.cpp's repeat penalty and its DRY reach
    the sampler: an answer asked to repeat a word says it fewer times with them."""
    body = chat({"content": "Repeat after me: buy, buy, buy, buy, buy, buy, buy, buy."}, 48)
    penalised = {**body, "frequency_penalty": 1.0, "presence_penalty": 1.0, "repeat_penalty": 1.3}
    dry = {**body, "dry_multiplier": 0.8, "dry_penalty_last_n": -1}
    async with httpx.AsyncClient(base_url=services[2].url, timeout=120) as llm:
        plain = answer(await llm.post("/v1/chat/completions", json=body))[0]
        fewer = answer(await llm.post("/v1/chat/completions", json=penalised))[0]
        unlooped = answer(await llm.post("/v1/chat/completions", json=dry))[0]
        refused = await llm.post("/v1/chat/completions", json={**body, "repeat_penalty": 0})

    assert fewer.lower().count("buy") < plain.lower().count("buy")
    assert unlooped.lower().count("buy") < plain.lower().count("buy")
    assert refused.status_code == 400
    assert "repeat_penalty" in refused.text
