"""The batch engine on the real model, below the service: a sequence moved to a lower slot when
the ones below it finish (so that one pass decodes every sequence) keeps its answer, and a
sequence whose caller went away frees its slot."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import llama_cpp
import pytest

from services.llm.backends.llama_batch import BatchEngine, Finished, Sampling, SequenceRequest
from services.llm.model_files import packaged_gguf

PROMPT = (
    "<|im_start|>user\nExplain settlement risk in FX trading.<|im_end|>\n<|im_start|>assistant\n"
)


class Answer:
    """One request to the engine, and what came back."""

    def __init__(self, engine: BatchEngine, max_tokens: int) -> None:
        self.cancel = threading.Event()
        self.done = threading.Event()
        self.texts: list[str] = []
        self.outcome: Finished | BaseException | None = None
        engine.submit(
            SequenceRequest(
                tokens=engine.call(lambda: engine.tokenize(PROMPT)).result(),
                max_tokens=max_tokens,
                sampling=Sampling(temperature=0),
                stop=[],
                emit=self.texts.append,
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


@pytest.fixture(scope="module")
def engine() -> Iterator[BatchEngine]:
    model = llama_cpp.llama_model_load_from_file(
        str(packaged_gguf()).encode(), llama_cpp.llama_model_default_params()
    )
    engine = BatchEngine(model, slots=4, context_per_slot=512, n_threads=None)
    yield engine
    engine.close()
    llama_cpp.llama_model_free(model)


def test_a_sequence_moved_to_a_lower_slot_keeps_its_answer(engine: BatchEngine) -> None:
    alone = Answer(engine, 48).result()
    assert isinstance(alone, Finished)

    # Two long answers take slots 0 and 1; ours takes slot 2. Once ours has made a few tokens,
    # the two go away: ours is moved down to slot 0 and finishes there.
    first, second = Answer(engine, 400), Answer(engine, 400)
    ours = Answer(engine, 48)
    deadline = time.monotonic() + 60
    while len(ours.texts) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(ours.texts) >= 3, "our answer never started"
    moves_before = engine.moves
    first.cancel.set()
    second.cancel.set()

    moved = ours.result()
    assert [first.result(), second.result()] == [None, None]  # stopped, not failed
    assert engine.moves > moves_before
    assert isinstance(moved, Finished)
    assert moved.text == alone.text
    assert "".join(ours.texts) == moved.text
    assert engine.running == 0
