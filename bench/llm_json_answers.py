"""JSON answers on the embedded model: completion tokens per second of the processor's JSON tasks.

The questions are the Kafka processor's own: ``key_figures`` and ``sentiment`` (each with its
JSON schema, which the LLM service turns into a grammar) on the seven sample documents, plainly
and in the stricter wording of a second try, one at a time, temperature 0, through the
processor's LLM client. To compare two builds, run it against a service of each (``--url``,
services started from each tree) and ``--save`` the answers: at temperature 0 they must be the
same texts.

Run: ``.venv/bin/python -m bench.llm_json_answers [--rounds 2] [--url URL] [--save FILE]``
(about a minute and a half a round). Without ``--url`` it starts the Llama 3.1 8B wrapper on
the embedded model with its defaults.
"""

from __future__ import annotations

import statistics
import time

import msgspec

from libs.common.schemas.documents import Task
from services.kafka_llm_processor.llm_client import LLMClient
from services.kafka_llm_processor.prompts import SCHEMAS, messages_for
from services.kafka_llm_processor.send_samples import sample_documents
from tests.support.llm_service import run_answers_bench

JSON_TASKS: tuple[Task, ...] = ("key_figures", "sentiment")
MAX_TOKENS = 384  # the processor's default


async def one_round(llm: LLMClient) -> tuple[list[str], int, float]:
    """Every question once, one at a time: the answers, their tokens and the seconds taken."""
    texts, tokens = [], 0
    started = time.perf_counter()
    for document in sample_documents():
        for task in JSON_TASKS:
            asked = msgspec.structs.replace(document, task=task)
            for strict in (False, True):
                answer = await llm.ask(
                    messages_for(asked, strict=strict),
                    max_tokens=MAX_TOKENS,
                    json_schema=SCHEMAS[task],
                )
                texts.append(answer.text)
                tokens += answer.completion_tokens
    return texts, tokens, time.perf_counter() - started


async def measure(url: str, rounds: int) -> list[str]:
    """Tokens per second, round by round; the answers (the same in every round)."""
    llm = LLMClient(f"{url}/v1", model=None, timeout_s=600)
    try:
        rates, first = [], None
        for index in range(rounds):
            texts, tokens, took = await one_round(llm)
            first = first or texts
            assert texts == first, "the same questions at temperature 0 gave other answers"
            rates.append(tokens / took)
            print(
                f"round {index + 1}: {len(texts)} answers, {tokens} tokens, {took:.1f} s, "
                f"{rates[-1]:.1f} tok/s",
                flush=True,
            )
        print(f"median {statistics.median(rates):.1f} tok/s")
        return first or []
    finally:
        await llm.aclose()


def main() -> None:
    run_answers_bench(__doc__.splitlines()[0], 2, measure)


if __name__ == "__main__":
    main()
