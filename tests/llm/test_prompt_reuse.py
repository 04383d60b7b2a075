"""The batch engine takes the start a prompt shares with one read before from a slot's cache
instead of reading it again, and the answer does not change: every token and its
log-probabilities are, to the bit, those of an engine that reads every prompt whole. On the
real model, the shipped weights and the services' Q8_0 copy, flash attention on and off;
prompts that share a chat template, a system prompt, a conversation, or cut anywhere around
llama.cpp's chunk and tile sizes."""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Iterator
from typing import Any

import llama_cpp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from libs.common.schemas.documents import Task
from services.kafka_llm_processor.prompts import INSTRUCTIONS
from services.kafka_llm_processor.send_samples import sample_documents
from services.llm.backends.llama_batch import BatchEngine, Finished, Sampling, SequenceRequest
from services.llm.backends.prompt_cache import (
    TILED_ROWS,
    KeptPrompt,
    PromptStore,
    StoredPrompt,
    reusable_prefix,
    row_class,
)
from services.llm.model_files import packaged_gguf
from services.llm.weight_conversion import batchable_weights
from tests.support.model_threads import batch_threads

N_BATCH = 512


def ask(engine: BatchEngine, tokens: list[int], max_tokens: int = 6) -> threading.Event:
    """Submit greedy ``tokens`` with log-probabilities; the event's ``outcome`` is the result.
    A few tokens are enough: the first is read off the prompt's last row, and each next one
    attends to every row kept, reused or read."""
    done = threading.Event()

    def finish(outcome: Finished | BaseException | None) -> None:
        done.outcome = outcome  # type: ignore[attr-defined]
        done.set()

    engine.submit(
        SequenceRequest(
            tokens=tokens,
            max_tokens=max_tokens,
            sampling=Sampling(temperature=0),
            stop=[],
            emit=lambda _text, _logprobs: None,
            finish=finish,
            cancel=threading.Event(),
            until=time.monotonic() + 300,
            logprobs=3,
        )
    )
    return done


def result(done: threading.Event) -> Finished:
    assert done.wait(300), "no answer within 300 s"
    outcome = done.outcome  # type: ignore[attr-defined]
    assert isinstance(outcome, Finished), outcome
    return outcome


def chat(system: str, user: str) -> str:
    return (
        f"<|im_start|>system\n{system}<|im_end|>\n"
        f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
    )


def prompts(engine: BatchEngine, *, every_cut: bool = True) -> list[list[int]]:
    """Prompts in an order where later ones share starts with earlier ones, of every kind;
    without ``every_cut``, fewer of each: cut at the tile's edge and the chunk's only."""
    tokenize = engine.tokenize
    documents = sample_documents()
    processor = [
        tokenize(chat(INSTRUCTIONS[task], document.content))
        for document in documents[:3]
        for task in ("summary", "sentiment")
    ]
    short = [
        tokenize(chat("You are a helpful assistant.", "Explain settlement risk in FX trading.")),
        tokenize(chat("You are a helpful assistant.", "Explain settlement risk in bonds.")),
    ]
    long = tokenize(chat(INSTRUCTIONS["summary"], " ".join(d.content for d in documents)))[:640]
    other = tokenize(" ".join(d.title for d in documents))
    # Cut around the tile (64 rows), the chunk (512) and one row, and followed by other text.
    cuts = [41, 63, 64, 65, 128, 511, 512, 513, 530, 577, 640] if every_cut else [63, 65, 513]
    around = [long[:cut] for cut in cuts] + [long[:cut] + other[:9] for cut in cuts[::3]]
    conversation = processor[0] + tokenize("The summary.<|im_end|>\n<|im_start|>user\nMore?")
    if not every_cut:
        processor = processor[:2]
    return [*processor, *short, long, long, *around, conversation, processor[1]]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The shipped weights and the services' Q8_0 copy of them, loaded."""
    converted = batchable_weights(packaged_gguf(), tmp_path_factory.mktemp("weights"), threads=2)
    loaded = {
        name: llama_cpp.llama_model_load_from_file(
            str(path).encode(), llama_cpp.llama_model_default_params()
        )
        for name, path in {"shipped": packaged_gguf(), "q8_0": converted}.items()
    }
    yield loaded
    for model in loaded.values():
        llama_cpp.llama_model_free(model)


# Without flash attention only one row (a matrix times a vector) differs from several. The
# services' weights and attention are read at every cut; the others (weights read row by row, a
# user's file that could not be converted; attention without flash) at the tile's and the
# chunk's edges, which is where they differ from it (each prompt is a model's read of a few
# hundred rows on the suite's busy cores).
@pytest.mark.parametrize(
    ("weights", "flash_attention"),
    [
        pytest.param("shipped", True, marks=pytest.mark.slow, id="shipped-flash"),
        pytest.param("q8_0", True, id="q8_0-flash"),
        pytest.param("q8_0", False, marks=pytest.mark.slow, id="q8_0-plain"),
    ],
)
def test_an_answer_from_a_reused_prompt_start_is_the_answer_from_a_whole_read(
    models: dict[str, Any], weights: str, flash_attention: bool
) -> None:
    model = models[weights]
    engines = {
        reuse: BatchEngine(
            model,
            slots=4,
            context_per_slot=1024,
            n_threads=None,
            n_threads_batch=batch_threads(),
            flash_attention=flash_attention,
            reuse_prompts=reuse,
        )
        for reuse in (True, False)
    }
    try:
        asked = prompts(engines[True], every_cut=(weights, flash_attention) == ("q8_0", True))
        reused = [result(ask(engines[True], tokens)) for tokens in asked]
        # Together too: starts come from slots whose answers are still being decoded.
        together = [result(done) for done in [ask(engines[True], t) for t in asked[:4]]]
        # A prompt asked twice (to be found in the cache the second time) is read whole once.
        by_prompt: dict[tuple[int, ...], Finished] = {}
        for tokens in asked:
            if tuple(tokens) not in by_prompt:
                by_prompt[tuple(tokens)] = result(ask(engines[False], tokens))
        whole = [by_prompt[tuple(tokens)] for tokens in asked]
        counts = {reuse: engine.prompt_tokens_reused for reuse, engine in engines.items()}
    finally:
        for engine in engines.values():
            engine.close()

    for got, want in zip([*reused, *together], [*whole, *whole[:4]], strict=True):
        assert got.text == want.text
        assert got.logprobs == want.logprobs  # every token's figures, to the bit
    assert counts[False] == 0
    assert all(w.cached_tokens == 0 for w in by_prompt.values())
    assert counts[True] == sum(r.cached_tokens for r in [*reused, *together])
    print([r.cached_tokens for r in reused], [len(t) for t in asked])
    again = next(i for i in range(1, len(asked)) if asked[i] == asked[i - 1])  # the long one
    assert reused[again].cached_tokens >= len(asked[again]) - TILED_ROWS


def test_agents_taking_turns_each_find_their_conversation_in_the_cache(
    models: dict[str, Any],
) -> None:
    """Three agents with system prompts of their own ask one after another, each going on
    with its conversation: each finds all of it but the rows read last, in the slot it used
    (the others' caches stay: a new answer takes the slot used longest ago)."""
    engine = BatchEngine(
        models["q8_0"],
        slots=4,
        context_per_slot=1024,
        n_threads=None,
        n_threads_batch=batch_threads(),
    )
    try:
        documents = sample_documents()
        tasks: tuple[Task, ...] = ("summary", "key_figures", "sentiment")
        agents = [chat(INSTRUCTIONS[task], documents[i].content) for i, task in enumerate(tasks)]
        first = [engine.tokenize(agent) for agent in agents]
        for tokens in first:
            result(ask(engine, tokens, 4))
        follow_up = [tokens + engine.tokenize("Go on.<|im_end|>\n") for tokens in first]
        again = [result(ask(engine, tokens, 4)) for tokens in follow_up]
    finally:
        engine.close()

    for tokens, answer in zip(first, again, strict=True):
        assert answer.cached_tokens >= len(tokens) - TILED_ROWS


def test_an_engine_that_does_not_reuse_reads_every_prompt_whole(models: dict[str, Any]) -> None:
    engine = BatchEngine(
        models["q8_0"],
        slots=2,
        context_per_slot=512,
        n_threads=None,
        n_threads_batch=batch_threads(),
        reuse_prompts=False,
    )
    try:
        tokens = engine.tokenize(chat("You are a helpful assistant.", "Define a swap."))
        answers = [result(ask(engine, tokens, 4)) for _ in range(2)]
        read = engine.prompt_tokens_read
    finally:
        engine.close()
    assert [a.cached_tokens for a in answers] == [0, 0]
    assert read == 2 * len(tokens)


def read_whole(prompt: list[int], n_batch: int) -> KeptPrompt:
    """What a slot keeps of ``prompt`` read fresh: chunks of ``n_batch``, each of its class."""
    kept = KeptPrompt()
    for start in range(0, len(prompt), n_batch):
        chunk = prompt[start : start + n_batch]
        kept.extend(chunk, row_class(len(chunk)))
    return kept


@given(
    st.lists(st.integers(0, 2), min_size=1, max_size=1300),
    st.lists(st.integers(0, 2), min_size=1, max_size=1300),
    st.integers(0, 1300),
    st.sampled_from([8, 64, 100, 512]),
)
def test_a_reusable_prefix_holds_only_rows_a_fresh_read_computes_alike(
    earlier: list[int], tail: list[int], shared: int, n_batch: int
) -> None:
    """Whatever was read before and however much the prompts share: the rows given are the
    prompt's, each of the class a fresh read computes it in; the rest, read from there, gets
    its fresh classes; one row at least is read; and a start is given whenever a whole tile's
    worth of rows (or a chunk's) could be."""
    prompt = earlier[:shared] + tail
    kept = read_whole(earlier, n_batch)
    length = reusable_prefix(kept, prompt, n_batch)
    fresh = read_whole(prompt, n_batch).classes

    assert 0 <= length < len(prompt)
    assert kept.tokens[:length] == prompt[:length]
    assert kept.classes[:length] == fresh[:length]
    if length:
        end = min(len(prompt), length - length % n_batch + n_batch)
        assert row_class(end - length) == fresh[length]
    common = 0
    while common < min(len(earlier), len(prompt) - 1) and earlier[common] == prompt[common]:
        common += 1
    if kept.classes[:common] == fresh[:common] and common >= n_batch + TILED_ROWS:
        assert length > 0


def test_more_agents_than_slots_each_find_their_prompt_in_the_store(
    models: dict[str, Any],
) -> None:
    """Five agents take turns on an engine of two slots: each prompt's slot is taken by
    another agent before it comes back, so it is found in the prompt store (host memory),
    put back bit for bit: the answers and their log-probabilities are a whole read's."""
    store = PromptStore(64 * 2**20)
    engines = {
        reuse: BatchEngine(
            models["q8_0"],
            slots=2,
            context_per_slot=1024,
            n_threads=None,
            n_threads_batch=batch_threads(),
            reuse_prompts=reuse,
            prompt_store=store if reuse else None,
        )
        for reuse in (True, False)
    }
    try:
        documents = sample_documents()
        tasks: tuple[Task, ...] = ("summary", "key_figures", "sentiment", "summary", "sentiment")
        first = [
            engines[True].tokenize(chat(INSTRUCTIONS[task], documents[i].content))
            for i, task in enumerate(tasks)
        ]
        for tokens in first:
            result(ask(engines[True], tokens, 4))
        follow_up = [tokens + engines[True].tokenize("Go on.<|im_end|>\n") for tokens in first]
        again = [result(ask(engines[True], tokens, 6)) for tokens in follow_up]
        whole = [result(ask(engines[False], tokens, 6)) for tokens in follow_up]
        restored = engines[True].prompts_restored
    finally:
        for engine in engines.values():
            engine.close()

    for tokens, answer, want in zip(first, again, whole, strict=True):
        assert answer.cached_tokens >= len(tokens) - TILED_ROWS
        assert (answer.text, answer.logprobs) == (want.text, want.logprobs)
    assert restored >= len(first) - 2  # the last two may still be in the slots
    assert 0 < store.bytes <= store.capacity_bytes


def test_the_prompt_store_keeps_the_latest_prompts_within_its_capacity() -> None:
    """Bytes stand in for llama.cpp's state; a prompt replaces those it goes on from."""

    def stored(tokens: list[int], size: int) -> StoredPrompt:
        kept = KeptPrompt()
        kept.extend(tokens, row_class(len(tokens)))
        return StoredPrompt(kept, (ctypes.c_uint8 * size)())

    store = PromptStore(1000)
    a, b, c = stored([1, 2, 3], 400), stored([4, 5, 6], 400), stored([7, 8, 9], 400)
    store.add(a)
    store.add(b)
    assert store.best([1, 2, 3, 10, 11], n_batch=512) == (a, 3)
    store.taken(a)
    store.add(c)  # over capacity: b, the least recently used, goes
    assert (len(store), store.bytes) == (2, 800)
    assert store.best([4, 5, 6, 10], n_batch=512) == (None, 0)
    longer = stored([1, 2, 3, 10, 11, 12], 500)
    assert store.holds(a.kept)
    assert not store.holds(longer.kept)
    store.add(longer)  # a goes: longer holds all of it
    assert (len(store), store.bytes) == (2, 900)
    # Six of seven tokens would leave one row to read, of another class than a whole read's.
    assert store.best([1, 2, 3, 10, 11, 12, 13], n_batch=512) == (longer, 5)
    store.add(stored(list(range(100)), 1001))  # larger than the whole store: not kept
    assert len(store) == 2
