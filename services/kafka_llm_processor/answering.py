"""One document answered in its slot: decoded, asked whole or in parts (``long_documents.py``),
each answer judged for grounding (``grounded.py``) and retried while the LLM fails transiently;
the result it gives, or :class:`Unanswerable` with what its dead letter is to say.

Publishing that result, dead-lettering and spilling are the processor's (``processor.py``)."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from datetime import UTC, datetime

import msgspec
import structlog
from aiokafka import ConsumerRecord

from libs.common.kafka.rejection import Rejection
from libs.common.retries import retried, retry_llm_errors
from libs.common.schemas.documents import (
    DocumentResult,
    FinancialDocument,
    processor_run_id,
    processor_workflow_id,
)
from libs.common.schemas.usage import HEADER_WORKFLOW_ID, HEADER_WORKFLOW_RUN_ID
from libs.common.text_parts import TooManyParts
from services.kafka_llm_processor.grounded import GroundedAnswer, answer_grounded
from services.kafka_llm_processor.llm_client import (
    LLMAnswer,
    LLMClient,
    PermanentLLMError,
    TransientLLMError,
)
from services.kafka_llm_processor.long_documents import answer_in_parts
from services.kafka_llm_processor.metrics import ProcessorMetrics
from services.kafka_llm_processor.prompts import AnswerUnusable, answer_schema, messages_for
from services.kafka_llm_processor.settings import ProcessorSettings

logger = structlog.get_logger("pas.processor")

_decode_document = msgspec.json.Decoder(FinancialDocument).decode


class Unanswerable(Exception):
    """A document that cannot be answered: it goes to the DLQ with ``rejection``'s kind and
    reason, after ``attempts`` calls to the LLM."""

    def __init__(self, reason: str, attempts: int, kind: str) -> None:
        super().__init__(reason)
        self.rejection = Rejection(kind, reason)
        self.attempts = attempts


class DocumentAnswerer:
    def __init__(
        self, settings: ProcessorSettings, llm: LLMClient, metrics: ProcessorMetrics
    ) -> None:
        self._settings = settings
        self._llm = llm
        self._metrics = metrics

    async def answer(self, record: ConsumerRecord[bytes, bytes], started: float) -> DocumentResult:
        """The result of the document ``record`` holds (``started``: when its slot took it, a
        ``time.perf_counter()``); raises :class:`Unanswerable`."""
        if record.value is None:
            # A tombstone (a record without a value) deletes a key; it is no document.
            raise Unanswerable("a tombstone: a record without a value", 0, "tombstone")
        if len(record.value) > self._settings.max_message_bytes:
            size, limit = len(record.value), self._settings.max_message_bytes
            raise Unanswerable(f"message of {size} bytes (limit {limit})", 0, "too_large")
        try:
            document = _decode_document(record.value)
        except msgspec.DecodeError as exc:
            raise Unanswerable(f"not a financial document: {exc}", 0, "invalid_document") from exc
        source_offset = f"{record.topic}/{record.partition}/{record.offset}"
        # The LLM service's usage events then count toward this document's run in analytics.
        attribution = {
            HEADER_WORKFLOW_ID: processor_workflow_id(document.task),
            HEADER_WORKFLOW_RUN_ID: processor_run_id(document.doc_id, source_offset),
        }
        attempts = 0

        # answer_whole and ask hand back what they start rather than awaiting it: one
        # coroutine fewer each, whose frame every answer would come back through.
        def answer_whole(part: FinancialDocument) -> Awaitable[GroundedAnswer]:
            """``part`` (the document, or a part of it) asked whole."""
            schema = answer_schema(part)  # read from the content once, for every question

            def ask(wrong: list[str]) -> Awaitable[LLMAnswer]:
                if wrong:
                    self._metrics.grounding_retries.labels(part.task).inc()
                calls = 0

                def once() -> Awaitable[LLMAnswer]:
                    nonlocal attempts, calls
                    attempts, calls = attempts + 1, calls + 1
                    if calls > 1:
                        self._metrics.retries.inc()
                    return self._llm.ask(
                        messages_for(part, wrong=wrong),
                        max_tokens=self._settings.max_tokens,
                        json_schema=schema,
                        headers=attribution,
                    )

                return retried(
                    once,
                    on=retry_llm_errors(TransientLLMError),
                    attempts=self._settings.max_attempts,
                    give_up_after_s=None,
                    wait_initial=self._settings.retry_backoff_s,
                    wait_jitter=self._settings.retry_backoff_s,
                    wait_max=self._settings.retry_backoff_s * 16,
                )

            return answer_grounded(part, ask, ask_again=self._settings.grounding_retry)

        try:
            answered = await answer_in_parts(
                document, answer_whole, max_parts=self._settings.max_parts
            )
        except TooManyParts as exc:
            raise Unanswerable(str(exc), attempts, "too_long") from exc
        except (TransientLLMError, PermanentLLMError, AnswerUnusable) as exc:
            kind = type(exc).__name__
            raise Unanswerable(f"{kind}: {exc}", attempts, kind) from exc
        if answered.parts > 1:
            self._metrics.read_in_parts.labels(document.task).inc()
            logger.info("read in parts", doc_id=document.doc_id, parts=answered.parts)
        if answered.ungrounded:
            self._metrics.ungrounded.labels(document.task).inc()
            logger.info("ungrounded answer", doc_id=document.doc_id, ungrounded=answered.ungrounded)
        if answered.loop_cut:
            self._metrics.loops_cut.labels(document.task).inc()
            logger.info(
                "a looping answer was cut after its first turn",
                doc_id=document.doc_id,
                characters_cut=answered.loop_cut,
            )
        return DocumentResult(
            doc_id=document.doc_id,
            task=document.task,
            status="ungrounded" if answered.ungrounded else "ok",
            answer=answered.text,
            key_figures=answered.key_figures,
            sentiment=answered.sentiment,
            model=answered.answer.model,
            prompt_tokens=answered.prompt_tokens,
            completion_tokens=answered.completion_tokens,
            processing_ms=round((time.perf_counter() - started) * 1000, 1),
            attempts=attempts,
            source_offset=source_offset,
            processed_at=datetime.now(UTC),
            ungrounded=answered.ungrounded,
            parts=answered.parts,
        )
