"""The batch engine on the real model, below the service: a sequence moved to a lower slot when
the ones below it finish (so that one pass decodes every sequence) keeps its answer, a
sequence whose caller went away frees its slot, greedy answers under a JSON grammar, with or
without penalties on repeating, are the ones the whole sampler chain gives, and answers
decoded together are the ones decoded alone with flash attention on or off."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import llama_cpp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from libs.common.schemas.documents import Task
from services.kafka_llm_processor.prompts import INSTRUCTIONS, SCHEMAS
from services.kafka_llm_processor.send_samples import sample_documents
from services.llm.backends.json_grammar import json_grammar
from services.llm.backends.llama_batch import (
    BatchEngine,
    Finished,
    Penalties,
    Sampling,
    SequenceRequest,
    _likeliest,
)
from services.llm.model_files import packaged_gguf
from tests.support.model_threads import batch_threads

PROMPT = (
    "<|im_start|>user\nExplain settlement risk in FX trading.<|im_end|>\n<|im_start|>assistant\n"
)


class Answer:
    """One request to the engine, and what came back."""

    def __init__(
        self,
        engine: BatchEngine,
        max_tokens: int,
        prompt: str = PROMPT,
        grammar: str | None = None,
        penalties: Penalties | None = None,
    ) -> None:
        self.cancel = threading.Event()
        self.done = threading.Event()
        self.texts: list[str] = []
        self.outcome: Finished | BaseException | None = None
        engine.submit(
            SequenceRequest(
                tokens=engine.call(lambda: engine.tokenize(prompt)).result(),
                max_tokens=max_tokens,
                sampling=Sampling(temperature=0, grammar=grammar, penalties=penalties),
                stop=[],
                emit=lambda text, _logprobs: self.texts.append(text),
                finish=self._finish,
                cancel=self.cancel,
                until=time.monotonic() + 120,
            )
        )

    def _finish(self, outcome: Finished | BaseException | None) -> None:
        self.outcome = outcome
        self.done.set()

    def result(self) -> Finished | BaseException | None:
        assert self.done.wait(120), "no answer within 120 s"
        return self.outcome


class WholeChainEngine(BatchEngine):
    """The engine as it was before it checked a greedy token alone: every token from the whole
    chain (the grammar run over the whole vocabulary, then greedy)."""

    def _sample(self, sequence: Any, row: int) -> int:
        return int(llama_cpp.llama_sampler_sample(sequence.sampler, self._ctx, row))


@pytest.fixture(scope="module")
def model() -> Iterator[Any]:
    model = llama_cpp.llama_model_load_from_file(
        str(packaged_gguf()).encode(), llama_cpp.llama_model_default_params()
    )
    yield model
    llama_cpp.llama_model_free(model)


@pytest.fixture(scope="module")
def engine(model: Any) -> Iterator[BatchEngine]:
    engine = BatchEngine(
        model, slots=4, context_per_slot=512, n_threads=None, n_threads_batch=batch_threads()
    )
    yield engine
    engine.close()


def test_a_sequence_moved_to_a_lower_slot_keeps_its_answer(engine: BatchEngine) -> None:
    alone = Answer(engine, 48).result()
    assert isinstance(alone, Finished)

    # Three answers take three consecutive slots. Once each has made a few tokens, the middle
    # one goes away: the top one is moved down into its slot (one pass decodes consecutive
    # slots only) and finishes there.
    answers = [Answer(engine, 48) for _ in range(3)]
    deadline = time.monotonic() + 60
    while min(len(a.texts) for a in answers) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert min(len(a.texts) for a in answers) >= 3, "the answers never started"
    by_slot = engine.call(
        lambda: [s.request.cancel for _, s in sorted(engine._running.items())]
    ).result()
    moves_before = engine.moves
    [middle] = [a for a in answers if a.cancel is by_slot[1]]
    middle.cancel.set()

    kept = [a for a in answers if a is not middle]
    finished = [a.result() for a in kept]
    assert middle.result() is None  # stopped, not failed
    assert engine.moves > moves_before
    for answer, outcome in zip(kept, finished, strict=True):
        assert isinstance(outcome, Finished)
        assert outcome.text == alone.text
        assert "".join(answer.texts) == outcome.text
    assert engine.running == 0


@pytest.mark.parametrize("flash_attention", [True, False], ids=["flash", "plain"])
def test_answers_decoded_together_are_the_answers_alone_with_either_attention(
    model: Any, flash_attention: bool
) -> None:
    engine = BatchEngine(
        model,
        slots=4,
        context_per_slot=512,
        n_threads=None,
        n_threads_batch=batch_threads(),
        flash_attention=flash_attention,
    )
    try:
        prompts = [_question(d.content, "summary") for d in sample_documents()[:4]]
        alone = [Answer(engine, 32, prompt).result() for prompt in prompts]
        passes_before, steps_before = engine.passes, engine.sequence_steps
        together = [Answer(engine, 32, prompt) for prompt in prompts]
        batched = [answer.result() for answer in together]
        passes, steps = engine.passes - passes_before, engine.sequence_steps - steps_before
    finally:
        engine.close()

    assert all(isinstance(answer, Finished) and answer.text for answer in alone)
    assert [a.text for a in batched] == [a.text for a in alone]  # type: ignore[union-attr]
    assert steps > passes > 0  # passes advanced several answers at once


def _question(document: str, task: Task) -> str:
    return (
        f"<|im_start|>system\n{INSTRUCTIONS[task]}<|im_end|>\n"
        f"<|im_start|>user\n{document}<|im_end|>\n<|im_start|>assistant\n"
    )


JSON_TASKS: tuple[Task, ...] = ("key_figures", "sentiment")


def test_greedy_answers_under_a_json_grammar_are_the_whole_chain_s(
    model: Any, engine: BatchEngine
) -> None:
    whole_chain = WholeChainEngine(
        model, slots=4, context_per_slot=512, n_threads=None, n_threads_batch=batch_threads()
    )
    try:
        asked = [
            (_question(document.content, task), json_grammar(SCHEMAS[task]))
            for document in sample_documents()[:2]
            for task in JSON_TASKS
        ]
        shortcuts_before = engine.grammar_shortcuts
        answers = [Answer(engine, 96, prompt, grammar) for prompt, grammar in asked]
        expected = [Answer(whole_chain, 96, prompt, grammar) for prompt, grammar in asked]
        got = [answer.result() for answer in answers]
        want = [answer.result() for answer in expected]
    finally:
        whole_chain.close()

    assert all(isinstance(answer, Finished) for answer in got)
    assert [a.text for a in got] == [w.text for w in want]  # type: ignore[union-attr]
    assert engine.grammar_shortcuts > shortcuts_before  # the check alone was taken
    assert whole_chain.grammar_shortcuts == 0


PENALTIES = Penalties(last_n=64, repeat=1.3, frequency=0.5, presence=0.5)


def test_penalised_greedy_answers_under_a_json_grammar_are_the_whole_chain_s(
    model: Any, engine: BatchEngine
) -> None:
    """The likeliest token after the penalties, checked alone against the grammar, is the one
    the chain (penalties over the whole vocabulary, grammar, greedy) picks; and the penalties
    change what the model repeats."""
    whole_chain = WholeChainEngine(
        model, slots=4, context_per_slot=512, n_threads=None, n_threads_batch=batch_threads()
    )
    try:
        asked = [
            (_question(document.content, "key_figures"), json_grammar(SCHEMAS["key_figures"]))
            for document in sample_documents()[:3]
        ]
        shortcuts_before = engine.grammar_shortcuts
        answers = [Answer(engine, 96, p, g, PENALTIES) for p, g in asked]
        expected = [Answer(whole_chain, 96, p, g, PENALTIES) for p, g in asked]
        plain = [Answer(engine, 96, p, g) for p, g in asked]
        got = [answer.result() for answer in answers]
        want = [answer.result() for answer in expected]
        unpenalised = [answer.result() for answer in plain]
    finally:
        whole_chain.close()

    assert all(isinstance(answer, Finished) for answer in [*got, *unpenalised])
    assert [a.text for a in got] == [w.text for w in want]  # type: ignore[union-attr]
    assert engine.grammar_shortcuts > shortcuts_before
    assert [a.text for a in got] != [u.text for u in unpenalised]  # type: ignore[union-attr]


@settings(max_examples=300, deadline=None)
@given(
    arrays(
        np.float32,
        st.integers(1, 5000),
        elements=st.floats(-40, 40, width=32) | st.sampled_from([0.0, 1.5, -3.0]),
    ),
    st.integers(0, 20),
)
def test_the_likeliest_tokens_are_the_largest_logits_largest_first(
    logits: np.ndarray[Any, Any], count: int
) -> None:
    """Near the peak, far from it, flat or tied: what a full sort gives (ties, any of them)."""
    found = _likeliest(logits, float(logits.max()), count)

    assert len(found) == min(count, logits.size)
    assert [float(logits[t]) for t in found] == sorted(map(float, logits), reverse=True)[:count]
    assert len(set(found)) == len(found)
