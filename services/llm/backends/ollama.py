"""An Ollama server through its HTTP API (``/api/chat``, ``/api/tags``)."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Sequence
from typing import Any, Final

import httpx
import msgspec
from prometheus_client.registry import Collector

from libs.common.errors import BackendUnavailable, InvalidRequest
from libs.common.schemas.embeddings import OllamaEmbedResponse
from libs.common.schemas.llm import TokenLogprob
from libs.common.schemas.ollama import OllamaChatResponse
from libs.common.unreadable_json import UNREADABLE_JSON, why_unreadable
from services.llm.backends.base import (
    DRY_FIELDS,
    PENALTY_FIELDS,
    BackendHealth,
    Completion,
    Embeddings,
    Generation,
    ModelDescription,
    StreamEvent,
    TextDelta,
    collect,
    logprobs_if_asked,
)
from services.llm.backends.remote import backend_call, raise_for_backend_status

_decode_chunk = msgspec.json.Decoder(OllamaChatResponse).decode
_decode_embed = msgspec.json.Decoder(OllamaEmbedResponse).decode

_OPTIONS: Final = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "max_tokens": "num_predict",
    "seed": "seed",
    **{name: name for name in PENALTY_FIELDS},
}
"""A Generation's fields sent as Ollama's ``options`` when set: ours to Ollama's names."""


class _Named(msgspec.Struct):
    name: str


class _Tags(msgspec.Struct):
    """Just what the probe needs of Ollama's model list."""

    models: list[_Named]


class OllamaBackend:
    kind = "ollama"
    collectors: Sequence[Collector] = ()

    def __init__(
        self, base_url: str, *, model: str, timeout_s: float, context_length: int | None = None
    ) -> None:
        self.location = base_url.rstrip("/")
        self._timeout_s = timeout_s
        self._description = ModelDescription(name=model, context_length=context_length)
        self._http = httpx.AsyncClient(base_url=self.location, timeout=timeout_s)

    @property
    def model(self) -> ModelDescription:
        return self._description

    async def start(self) -> None:
        """Nothing to load here; an Ollama that is down now may be up by the first request."""

    async def close(self) -> None:
        await self._http.aclose()

    async def probe(self) -> BackendHealth:
        try:
            async with backend_call("Ollama", self.location, self._timeout_s):
                response = await self._http.get("/api/tags", timeout=5)
                await raise_for_backend_status("Ollama", response)
        except BackendUnavailable as exc:
            return BackendHealth(answers=False, detail=str(exc))
        except Exception as exc:
            return BackendHealth(answers=False, detail=str(exc))
        try:
            names = {m.name for m in msgspec.json.decode(response.content, type=_Tags).models}
        except UNREADABLE_JSON as exc:
            return BackendHealth(
                answers=False,
                detail=f"Ollama's /api/tags was not understood: {why_unreadable(exc)}",
            )
        if self._description.name not in names:
            return BackendHealth(
                answers=False,
                detail=f"Ollama answers but has no model {self._description.name!r}; "
                f"run: ollama pull {self._description.name}",
            )
        return BackendHealth(answers=True, detail=f"Ollama at {self.location} serves the model")

    def _unusable(
        self, what: str, exc: msgspec.DecodeError | RecursionError, answer: bytes
    ) -> BackendUnavailable:
        """A 2xx answer that cannot be read (malformed, the wrong shape, nested too deep): the
        backend failing, as the OpenAI backend reports an unusable answer, not a 500."""
        sent = answer[:200].decode(errors="replace")
        return BackendUnavailable(
            f"Ollama at {self.location} answered {what} that cannot be read "
            f"({why_unreadable(exc)}): {sent}"
        )

    def _body(self, generation: Generation, *, stream: bool) -> dict[str, Any]:
        if asked := [key for key in DRY_FIELDS if getattr(generation, key) is not None]:
            raise InvalidRequest(f"{', '.join(asked)}: Ollama has no DRY sampler")
        if generation.logit_bias:
            raise InvalidRequest("logit_bias: Ollama has no logit bias")
        options: dict[str, Any] = {
            theirs: value
            for ours, theirs in _OPTIONS.items()
            if (value := getattr(generation, ours)) is not None
        }
        if generation.stop:
            options["stop"] = generation.stop
        body: dict[str, Any] = {
            "model": self._description.name,
            "messages": [msgspec.structs.asdict(m) for m in generation.messages],
            "stream": stream,
            "options": options,
            # Ollama cuts a prompt longer than the context and answers 200 from what is left
            # unless told not to (older releases ignore the field and still cut). A 400 naming
            # the context instead is what callers read long documents in parts on.
            "truncate": False,
        }
        if generation.logprobs is not None:  # Ollama 0.12.11 and later
            body["logprobs"] = True
            if generation.logprobs:
                body["top_logprobs"] = generation.logprobs
        if generation.json_schema is not None:
            body["format"] = generation.json_schema
        elif generation.json_mode:
            body["format"] = "json"
        return body

    async def complete(self, generation: Generation) -> Completion:
        return await collect(self.stream(generation))

    async def embed(self, texts: list[str], *, truncate: bool) -> Embeddings:
        body = {"model": self._description.name, "input": texts, "truncate": truncate}
        async with backend_call("Ollama", self.location, self._timeout_s):
            response = await self._http.post("/api/embed", json=body)
            await raise_for_backend_status("Ollama", response)
        try:
            answer = _decode_embed(response.content)
        except UNREADABLE_JSON as exc:
            raise self._unusable("embeddings", exc, response.content) from exc
        if len(answer.embeddings) != len(texts):
            raise BackendUnavailable(
                f"Ollama answered {len(answer.embeddings)} vectors for {len(texts)} texts"
            )
        return Embeddings(
            vectors=answer.embeddings,
            prompt_tokens=answer.prompt_eval_count,
            total_ns=answer.total_duration,
        )

    async def stream(self, generation: Generation) -> AsyncGenerator[StreamEvent, None]:
        started = time.perf_counter_ns()
        parts: list[str] = []
        logprobs: list[TokenLogprob] = []
        delivered = 0  # of ``logprobs``, given with a delta
        async with (
            backend_call("Ollama", self.location, self._timeout_s),
            self._http.stream("POST", "/api/chat", json=self._body(generation, stream=True)) as r,
        ):
            await raise_for_backend_status("Ollama", r)
            async for line in r.aiter_lines():
                if not line.strip():
                    continue
                try:
                    chunk = _decode_chunk(line)
                except UNREADABLE_JSON as exc:
                    raise self._unusable("a chat chunk", exc, line.encode()) from exc
                logprobs.extend(chunk.logprobs or ())
                if chunk.message.content:
                    parts.append(chunk.message.content)
                    yield TextDelta(
                        text=chunk.message.content,
                        logprobs=logprobs_if_asked(generation, logprobs[delivered:]),
                    )
                    delivered = len(logprobs)
                if chunk.done:
                    yield Completion(
                        text="".join(parts),
                        finish_reason="length" if chunk.done_reason == "length" else "stop",
                        prompt_tokens=chunk.prompt_eval_count,
                        cached_tokens=chunk.prompt_eval_cached_count,
                        completion_tokens=chunk.eval_count,
                        prompt_eval_ns=chunk.prompt_eval_duration,
                        eval_ns=chunk.eval_duration,
                        total_ns=chunk.total_duration or time.perf_counter_ns() - started,
                        logprobs=logprobs_if_asked(generation, logprobs),
                    )
                    return
        raise BackendUnavailable("Ollama ended the stream without a final 'done' message")
