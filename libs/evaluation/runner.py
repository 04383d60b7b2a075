"""Ask an OpenAI-compatible endpoint for each document's answer the way the Kafka processor
does (``services/kafka_llm_processor/processor.py``): its messages, JSON schemas and decoding
from ``prompts.py``, its LLM client, temperature 0; an answer whose key figures or reason the
document does not hold is asked once more with the stricter instruction. What the processor
would dead-letter (a refused or failed call, an answer that is not the asked JSON) is an
*unusable* answer here, kept with its reason."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from libs.common.retries import retried
from libs.common.schemas.documents import FinancialDocument, KeyFigure, Sentiment, Task
from libs.common.schemas.usage import HEADER_WORKFLOW_ID, HEADER_WORKFLOW_RUN_ID
from libs.evaluation.eval_set import EvalDocument
from services.kafka_llm_processor.grounded import answer_grounded
from services.kafka_llm_processor.llm_client import (
    LLMAnswer,
    LLMClient,
    PermanentLLMError,
    TransientLLMError,
)
from services.kafka_llm_processor.prompts import (
    AnswerUnusable,
    again,
    answer_schema,
    messages_for,
)

TRANSIENT_ATTEMPTS = 3
"""Calls per question when the endpoint fails transiently (a timeout, a 5xx, a 429)."""


@dataclass(frozen=True, slots=True)
class Prompting:
    """What one document's question is asked with."""

    workflow_id: str
    """The workflow the answer is scored under (analytics, the version manager)."""
    instruction: str | None = None
    """Replaces the processor's instruction for the task (a version's prompt); ``None``: the
    processor's own. The stricter addition still follows it on the second question."""
    model: str | None = None
    max_tokens: int = 384
    workflow_version: int | None = None
    experiment_id: str | None = None
    variant: str | None = None


@dataclass(slots=True)
class Answered:
    """One document's answer to one task, after the grounding check (and its retry)."""

    document: EvalDocument
    task: Task
    run_id: str
    prompting: Prompting
    text: str | None = None
    model: str | None = None
    key_figures: list[KeyFigure] | None = None
    sentiment: Sentiment | None = None
    grounded_first: bool | None = None
    """Key figures and sentiment: the first answer was grounded (before the retry)."""
    ungrounded: list[str] = field(default_factory=list)
    """What the final answer states that the document does not hold."""
    unusable: str | None = None
    """Why there is no usable answer (what the processor would dead-letter with)."""
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    """From the first question to the final answer, the grounding retry included."""

    @property
    def structured(self) -> bool:
        return self.task != "summary"

    @property
    def grounded(self) -> bool | None:
        """Key figures and sentiment: the final answer is usable and grounded."""
        if not self.structured:
            return None
        return self.unusable is None and not self.ungrounded


class Asker:
    """Questions to one endpoint, a client per model asked (a version may name its own)."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None,
        timeout_s: float,
        grounding_retry: bool = True,
        retry_wait_s: float = 0.5,
        sampling: Mapping[str, Any] | None = None,
    ) -> None:
        self._url = url
        self._sampling = dict(sampling or {})
        self._grounding_retry = grounding_retry
        self._api_key = api_key
        self._timeout_s = timeout_s
        self._retry_wait_s = retry_wait_s
        self._clients: dict[str | None, LLMClient] = {}

    def _client(self, model: str | None) -> LLMClient:
        if model not in self._clients:
            self._clients[model] = LLMClient(
                self._url, model=model, timeout_s=self._timeout_s, api_key=self._api_key
            )
        return self._clients[model]

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()

    async def answer(
        self, document: EvalDocument, task: Task, run_id: str, prompting: Prompting
    ) -> Answered:
        result = Answered(document=document, task=task, run_id=run_id, prompting=prompting)
        question = document.as_task(task)
        client = self._client(prompting.model)
        # The LLM service (or router) attributes the calls' usage to this evaluation answer.
        headers = {HEADER_WORKFLOW_ID: prompting.workflow_id, HEADER_WORKFLOW_RUN_ID: run_id}
        schema = answer_schema(question)  # read from the content once, for every question

        async def ask(wrong: list[str]) -> LLMAnswer:
            def once() -> Awaitable[LLMAnswer]:
                result.calls += 1
                return client.ask(
                    _messages(question, prompting.instruction, wrong=wrong),
                    max_tokens=prompting.max_tokens,
                    json_schema=schema,
                    sampling=self._sampling,
                    headers=headers,
                )

            answer = await retried(
                once,
                on=TransientLLMError,
                attempts=TRANSIENT_ATTEMPTS,
                give_up_after_s=None,
                wait_initial=self._retry_wait_s,
                wait_jitter=self._retry_wait_s,
                wait_max=self._retry_wait_s * 16,
            )
            # Kept even when the answer proves unusable: what it said, and what it cost.
            result.text, result.model = answer.text, answer.model
            result.prompt_tokens += answer.prompt_tokens
            result.completion_tokens += answer.completion_tokens
            return answer

        started = time.perf_counter()
        try:
            answered = await answer_grounded(question, ask, ask_again=self._grounding_retry)
        except (TransientLLMError, PermanentLLMError, AnswerUnusable) as exc:
            result.unusable = f"{type(exc).__name__}: {exc}"
        else:
            result.text = answered.text
            result.key_figures, result.sentiment = answered.key_figures, answered.sentiment
            result.ungrounded = answered.ungrounded
            if result.structured:
                result.grounded_first = answered.first_grounded
        result.latency_ms = round((time.perf_counter() - started) * 1000, 1)
        return result


def _messages(
    document: FinancialDocument, instruction: str | None, *, wrong: list[str]
) -> list[dict[str, str]]:
    messages = messages_for(document, wrong=wrong)
    if instruction is not None:
        extra = again(document.task, wrong=wrong)
        messages[0] = {"role": "system", "content": instruction + extra}
    return messages


async def run_bounded(
    jobs: Sequence[Callable[[], Awaitable[Answered]]], concurrency: int
) -> list[Answered]:
    """Run the jobs, at most ``concurrency`` at once; the answers in the jobs' order."""
    gate = asyncio.Semaphore(concurrency)

    async def bounded(job: Callable[[], Awaitable[Answered]]) -> Answered:
        async with gate:
            return await job()

    return list(await asyncio.gather(*(bounded(job) for job in jobs)))
