"""A document longer than the model's context read in parts, against the same document read
whole by the same model given a context that holds it.

The annual report of ``tests/support/annual_report.py`` (about 2,700 tokens), once for each of
the processor's tasks, asked as the processor asks (``services/kafka_llm_processor``: the
task's grounded schema, asked again when not grounded, read in parts on a context refusal).
The same embedded model on two LLM services started side by side: 2,048 tokens of context (the
report is read in parts) and 4,096 (it is read whole). Each round asks every task of both,
alternating which goes first, each round's report under a title of its own (so the prompt
cache cannot spare a read). The figure: seconds a document in parts against whole, and the
tokens each read.

Run: ``.venv/bin/python -m bench.long_documents [--rounds 2]`` (a few minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import msgspec

from libs.common.schemas.documents import FinancialDocument, Task
from services.kafka_llm_processor.grounded import GroundedAnswer, answer_grounded
from services.kafka_llm_processor.llm_client import LLMAnswer, LLMClient
from services.kafka_llm_processor.long_documents import answer_in_parts
from services.kafka_llm_processor.prompts import answer_schema, messages_for
from services.kafka_llm_processor.settings import ProcessorSettings
from tests.support.annual_report import annual_report
from tests.support.llm_service import start_llm_service

TASKS: tuple[Task, ...] = ("summary", "key_figures", "sentiment")


async def answered(llm: LLMClient, document: FinancialDocument) -> tuple[float, GroundedAnswer]:
    """Seconds to the document's answer, as the processor makes it (no retries: none fail)."""
    settings = ProcessorSettings()

    async def whole(part: FinancialDocument) -> GroundedAnswer:
        schema = answer_schema(part)

        async def ask(wrong: list[str]) -> LLMAnswer:
            return await llm.ask(
                messages_for(part, wrong=wrong),
                max_tokens=settings.max_tokens,
                json_schema=schema,
            )

        return await answer_grounded(part, ask, ask_again=settings.grounding_retry)

    started = time.perf_counter()
    answer = await answer_in_parts(document, whole, max_parts=settings.max_parts)
    return time.perf_counter() - started, answer


async def measure(short_url: str, long_url: str, rounds: int) -> None:
    short = LLMClient(f"{short_url}/v1", model=None, timeout_s=600)
    long = LLMClient(f"{long_url}/v1", model=None, timeout_s=600)
    seconds: dict[tuple[Task, str], list[float]] = {}
    try:
        for round_number in range(1, rounds + 1):
            for task in TASKS:
                # A title of its own each round: read afresh, not from the prompt cache.
                document = msgspec.structs.replace(
                    annual_report(f"bench-{task}", task),
                    title=f"Northwind Holdings annual report, copy {round_number}",
                )
                ways = (("parts", short), ("whole", long))
                for name, llm in ways if round_number % 2 else ways[::-1]:
                    took, answer = await answered(llm, document)
                    seconds.setdefault((task, name), []).append(took)
                    print(
                        f"round {round_number} {task:11} {name:5} {took:6.2f} s, "
                        f"{answer.parts} part(s), {answer.prompt_tokens} prompt and "
                        f"{answer.completion_tokens} completion tokens, {answer.questions} "
                        f"question(s)"
                    )
    finally:
        await short.aclose()
        await long.aclose()
    print("\ntask         in parts (2,048)  whole (4,096)  ratio (medians)")
    for task in TASKS:
        parts = statistics.median(seconds[(task, "parts")])
        whole = statistics.median(seconds[(task, "whole")])
        print(f"{task:11} {parts:13.2f} s {whole:12.2f} s {parts / whole:8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        short = start_llm_service(
            Path(tmp) / "short.log", {"LLAMA31_8B_CONTEXT_LENGTH": "2048", "LOG_LEVEL": "WARNING"}
        )
        long = start_llm_service(
            Path(tmp) / "long.log", {"LLAMA31_8B_CONTEXT_LENGTH": "4096", "LOG_LEVEL": "WARNING"}
        )
        try:
            asyncio.run(measure(short.url, long.url, args.rounds))
        finally:
            short.stop()
            long.stop()


if __name__ == "__main__":
    main()
