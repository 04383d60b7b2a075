"""The prompt store kept across restarts (``services/llm/backends/prompt_file.py``): prompts
saved when an engine or a service stops are found in the cache by the next one, and the
answers from them are, to the bit, a fresh read's; a file made with other settings, or one
that cannot be read, is passed over. On the real model and a real service process stopped
with SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import llama_cpp
import pytest

from libs.common.schemas.documents import Task
from services.kafka_llm_processor.prompts import INSTRUCTIONS
from services.kafka_llm_processor.send_samples import sample_documents
from services.llm.backends.llama_batch import BatchEngine
from services.llm.backends.prompt_cache import TILED_ROWS, PromptStore, StoredPrompt
from services.llm.backends.prompt_file import identity, load_prompts, save_prompts
from services.llm.model_files import packaged_gguf
from services.llm.weight_conversion import batchable_weights
from tests.llm.test_prompt_reuse import ask, chat, result
from tests.support.llm_service import start_llm_service
from tests.support.model_threads import batch_threads

STORE_BYTES = 64 * 2**20


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return batchable_weights(packaged_gguf(), tmp_path_factory.mktemp("weights"), threads=2)


@pytest.fixture(scope="module")
def model(weights: Path) -> Iterator[Any]:
    loaded = llama_cpp.llama_model_load_from_file(
        str(weights).encode(), llama_cpp.llama_model_default_params()
    )
    yield loaded
    llama_cpp.llama_model_free(loaded)


def engine_on(model: Any, store: PromptStore | None, context_per_slot: int = 1024) -> BatchEngine:
    return BatchEngine(
        model,
        slots=2,
        context_per_slot=context_per_slot,
        n_threads=None,
        n_threads_batch=batch_threads(),
        reuse_prompts=store is not None,
        prompt_store=store,
    )


def agents(engine: BatchEngine) -> list[list[int]]:
    """Three agents' prompts: a system prompt of its task and a document each."""
    documents = sample_documents()
    tasks: tuple[Task, ...] = ("summary", "key_figures", "sentiment")
    return [
        engine.tokenize(chat(INSTRUCTIONS[t], documents[i].content)) for i, t in enumerate(tasks)
    ]


def test_prompts_saved_by_one_engine_are_taken_by_the_next_and_answer_alike(
    model: Any, weights: Path, tmp_path: Path
) -> None:
    """Three agents on two slots; the engine stops and its prompts (the store's and the
    slots') go to a file; a new engine reads it back and each agent's next turn takes its
    prompt from there: the answer and its log-probabilities are those of a whole read."""
    path = tmp_path / "llama31_8b.prompts"
    first = engine_on(model, PromptStore(STORE_BYTES))
    try:
        asked = agents(first)
        for tokens in asked:
            result(ask(first, tokens, 4))
        kept = first.call(first.prompts_to_keep).result()
        made_with = identity(weights, first.state_settings)
        save_prompts(kept, path, made_with)
        latest = kept[-1]
        # A file holds only what a start reads back: the latest prompts that fit the store.
        assert first.prompt_store is not None
        first.prompt_store.capacity_bytes = len(latest.state)
        fitting = first.call(first.prompts_to_keep).result()
    finally:
        first.close()
    assert [prompt.kept.tokens for prompt in fitting] == [latest.kept.tokens]
    assert len(kept) == len(asked)  # one in the store, two in the slots
    # A store with room for one prompt reads the one used last.
    small = PromptStore(len(latest.state))
    assert load_prompts(small, path, made_with) == 1
    assert small.stored()[0].kept.tokens == latest.kept.tokens
    assert bytes(small.stored()[0].state) == bytes(latest.state)

    store = PromptStore(STORE_BYTES)
    second, whole = engine_on(model, store), engine_on(model, None)
    try:
        assert identity(weights, second.state_settings) == made_with
        assert load_prompts(store, path, made_with) == len(asked)
        follow_up = [tokens + second.tokenize("Go on.<|im_end|>\n") for tokens in asked]
        again = [result(ask(second, tokens, 6)) for tokens in follow_up]
        want = [result(ask(whole, tokens, 6)) for tokens in follow_up]
        restored = second.prompts_restored
    finally:
        second.close()
        whole.close()

    for tokens, answer, fresh in zip(asked, again, want, strict=True):
        assert answer.cached_tokens >= len(tokens) - TILED_ROWS
        assert (answer.text, answer.logprobs) == (fresh.text, fresh.logprobs)
    assert restored == len(asked)


def test_copies_taken_for_a_file_while_answers_run_change_no_answer(model: Any) -> None:
    """A service writes its file while it answers: the idle slots' prompts are copied between
    passes, again and again here, while six agents' turns (follow-ups included) run on two
    slots. Every answer and its log-probabilities are those of an engine left alone, and
    what was copied is whole (as many tokens as rows)."""
    calm, busy = (
        engine_on(model, PromptStore(STORE_BYTES)),
        engine_on(model, PromptStore(STORE_BYTES)),
    )
    copies: list[list[StoredPrompt]] = []
    try:
        first = agents(busy)
        turns = [*first, *(tokens + busy.tokenize("Go on.<|im_end|>\n") for tokens in first)]
        want = [result(ask(calm, tokens, 6)) for tokens in turns]
        asked = [ask(busy, tokens, 6) for tokens in turns]
        while not all(done.is_set() for done in asked):
            copies.append(busy.call(busy.prompts_to_keep).result())
        got = [result(done) for done in asked]
    finally:
        calm.close()
        busy.close()

    assert [(a.text, a.logprobs) for a in got] == [(a.text, a.logprobs) for a in want]
    assert len(copies) > 1, len(copies)
    assert any(copies)
    assert all(len(p.kept.tokens) == len(p.kept.classes) for c in copies for p in c)


def test_a_prompt_file_made_otherwise_or_unreadable_is_passed_over(
    model: Any, weights: Path, tmp_path: Path
) -> None:
    path = tmp_path / "llama31_8b.prompts"
    engine = engine_on(model, PromptStore(STORE_BYTES))
    try:
        result(ask(engine, agents(engine)[0], 2))
        kept = engine.call(engine.prompts_to_keep).result()
        settings = engine.state_settings
        made_with = identity(weights, settings)
        save_prompts(kept, path, made_with)
    finally:
        engine.close()

    assert len(kept) == 1
    store = PromptStore(STORE_BYTES)
    assert load_prompts(store, path, {**made_with, "context_per_slot": 2048}) == 0
    assert load_prompts(store, path, identity(packaged_gguf(), settings)) == 0  # the Q5_1 file
    assert load_prompts(store, path, {**made_with, "llama_cpp": "0.0.1"}) == 0
    assert load_prompts(PromptStore(1000), path, made_with) == 0  # larger than that store
    assert load_prompts(store, path, made_with) == 1  # the file itself is sound
    store = PromptStore(STORE_BYTES)
    assert load_prompts(store, tmp_path / "none.prompts", made_with) == 0
    path.write_bytes(path.read_bytes()[:1000])  # cut short, as a full disk leaves it
    assert load_prompts(store, path, made_with) == 0
    path.write_bytes(b"not a prompt file")
    assert load_prompts(store, path, made_with) == 0
    assert len(store) == 0


def summary_request() -> dict[str, Any]:
    return {
        "messages": [
            {"role": "system", "content": INSTRUCTIONS["summary"]},
            {"role": "user", "content": sample_documents()[0].content},
        ],
        "temperature": 0,
        "max_tokens": 16,
    }


async def test_a_service_restarted_finds_its_agents_prompts_in_the_cache(tmp_path: Path) -> None:
    """The Llama 3.1 8B wrapper with ``LLAMA31_8B_PROMPT_STORE_DIR``, stopped with SIGTERM
    (as ``stop_all.sh`` does) and started again: the same request's prompt comes from the
    cache but for the rows read last, the answer unchanged; without the directory, a
    restarted service reads it whole."""
    request = summary_request()
    env = {"LOG_LEVEL": "INFO", "LLAMA31_8B_PROMPT_STORE_DIR": str(tmp_path / "prompts")}

    stored_at_start: list[str] = []

    async def ask_service(keep: bool, run: int) -> dict[str, Any]:
        service = start_llm_service(tmp_path / f"llm-{keep}-{run}.log", env if keep else {})
        try:
            async with httpx.AsyncClient(base_url=service.url, timeout=120) as client:
                health = (await client.get("/health")).json()
                stored_at_start.append(health["details"]["backend_detail"].split("; ")[-1])
                response = await client.post("/v1/chat/completions", json=request)
            assert response.status_code == 200, response.text
            answer: dict[str, Any] = response.json()
        finally:
            # uvicorn raises SIGTERM again once it has shut down gracefully.
            assert service.stop() in (0, -signal.SIGTERM)
        return answer

    before = await ask_service(True, 1)
    assert (tmp_path / "prompts" / "llama31_8b.prompts").stat().st_size > 0
    after = await ask_service(True, 2)
    forgotten = await ask_service(False, 3)

    assert stored_at_start[0] == stored_at_start[2] == "0 prompt(s) stored (0.0 MiB)"
    assert stored_at_start[1].startswith("1 prompt(s) stored")  # what /health says
    prompt_tokens = before["usage"]["prompt_tokens"]
    assert before["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    assert after["usage"]["prompt_tokens_details"]["cached_tokens"] >= prompt_tokens - TILED_ROWS
    assert forgotten["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    assert after["choices"][0]["message"] == before["choices"][0]["message"]
    assert forgotten["choices"][0]["message"] == before["choices"][0]["message"]


async def test_a_service_killed_finds_the_prompts_it_wrote_while_answering(
    tmp_path: Path,
) -> None:
    """With ``LLAMA31_8B_PROMPT_SAVE_INTERVAL_S`` the service writes its prompts while it
    runs, once an answer ended since the last write (not again while idle); killed with
    SIGKILL (no shutdown, as by the OOM killer), the next start still finds the prompt in the
    cache. A temporary file an hour old (a write killed midway) is removed at that start; a
    recent one (a replica's write under way) is left."""
    store = tmp_path / "prompts"
    saved = store / "llama31_8b.prompts"
    env = {
        "LOG_LEVEL": "INFO",
        "LLAMA31_8B_PROMPT_STORE_DIR": str(store),
        "LLAMA31_8B_PROMPT_SAVE_INTERVAL_S": "0.2",
    }
    request = summary_request()
    service = start_llm_service(tmp_path / "first.log", env)
    try:
        async with httpx.AsyncClient(base_url=service.url, timeout=120) as client:
            before = (await client.post("/v1/chat/completions", json=request)).json()
        for _ in range(600):
            if saved.exists():
                break
            await asyncio.sleep(0.1)
        written = saved.stat().st_mtime_ns
        await asyncio.sleep(1)  # five more intervals, no answer among them
        assert saved.stat().st_mtime_ns == written
        assert service.logs().count('"prompts saved"') == 1
    finally:
        service.kill()

    unfinished, under_way = store / ".llama31_8b.prompts.k1ll3d", store / ".llama31_8b.prompts.n0w"
    unfinished.write_bytes(b"PAS prompts 1\n")
    under_way.write_bytes(b"PAS prompts 1\n")
    two_hours_ago = time.time() - 7200
    os.utime(unfinished, (two_hours_ago, two_hours_ago))
    service = start_llm_service(tmp_path / "second.log", env)
    try:
        async with httpx.AsyncClient(base_url=service.url, timeout=120) as client:
            health = (await client.get("/health")).json()
            after = (await client.post("/v1/chat/completions", json=request)).json()
    finally:
        assert service.stop() in (0, -signal.SIGTERM)

    assert health["details"]["backend_detail"].split("; ")[-1].startswith("1 prompt(s) stored")
    prompt_tokens = after["usage"]["prompt_tokens"]
    assert after["usage"]["prompt_tokens_details"]["cached_tokens"] >= prompt_tokens - TILED_ROWS
    assert after["choices"][0]["message"] == before["choices"][0]["message"]
    assert not unfinished.exists()
    assert under_way.exists()
