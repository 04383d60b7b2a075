"""A minimal OpenAI-compatible chat server (pure ASGI), for tests and benchmarks.

It answers ``/v1/chat/completions`` (plain and SSE with a usage chunk) and ``/v1/models`` in
OpenAI's documented wire format, with a fixed answer. ``delay_s`` makes it slow,
``break_stream_after`` makes a stream stop after that many chunks, without its end,
``stream_usage=False`` leaves out the final usage chunk (as servers that ignore
``stream_options`` do), ``chunk_gap_s`` waits that long before each streamed chunk (a stream
a client can leave half way), and ``reply=(status, body)`` answers every chat request with that
status and raw body instead (an error, or a 200 that is not a chat completion), with
``reply_headers`` (a 429's ``Retry-After``, say).
``answer_for(request)`` gives a non-streamed answer's text from the request (a scripted model).
``cached_tokens`` says that many of the prompt's tokens came from a prompt cache
(``usage.prompt_tokens_details``), ``written_tokens`` that many were written to one
(``usage.cache_creation_input_tokens``: not OpenAI's field but Anthropic's, as the provider
router and LiteLLM pass it on in OpenAI's shape).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from tests.support.asgi_server import read_body

ANSWER = ["Rates ", "and ", "prices ", "move ", "inversely."]


class OpenAIResponder:
    def __init__(
        self,
        model: str = "fast-model",
        *,
        delay_s: float = 0.0,
        break_stream_after: int | None = None,
        stream_usage: bool = True,
        reply: tuple[int, bytes] | None = None,
        reply_headers: dict[str, str] | None = None,
        models_reply: bytes | None = None,
        chunk_gap_s: float = 0.0,
        answer_for: Callable[[dict[str, Any]], str] | None = None,
        cached_tokens: int | None = None,
        written_tokens: int | None = None,
    ) -> None:
        self.model = model
        self.delay_s = delay_s
        self.break_stream_after = break_stream_after
        self.stream_usage = stream_usage
        self.reply = reply
        self.reply_headers = reply_headers or {}
        self.models_reply = models_reply
        """``GET /models``'s 200 body, when given (``reply`` leaves the model list as it is)."""
        self.chunk_gap_s = chunk_gap_s
        self.answer_for = answer_for
        self.cached_tokens = cached_tokens
        self.written_tokens = written_tokens
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.in_flight = 0
        self.most_in_flight = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        if scope["path"].endswith("/models") and self.models_reply is not None:
            await self._send_json_bytes(send, self.models_reply)
            return
        if scope["path"].endswith("/models"):
            await self._json(
                send,
                {"object": "list", "data": [{"id": self.model, "object": "model", "created": 0}]},
            )
            return
        if scope["path"] in ("/health",):
            await self._json(send, {"status": "healthy"})
            return
        request = json.loads(body or b"{}")
        self.requests.append(request)
        self.headers.append({k.decode().lower(): v.decode() for k, v in scope["headers"]})
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self._answer(request, send)
        finally:
            self.in_flight -= 1

    async def _answer(self, request: dict[str, Any], send: Any) -> None:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.reply is not None:
            status, body = self.reply
            extra = [(k.encode(), v.encode()) for k, v in self.reply_headers.items()]
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [(b"content-type", b"application/json"), *extra],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        usage: dict[str, Any] = {
            "prompt_tokens": 11,
            "completion_tokens": len(ANSWER),
            "total_tokens": 11 + len(ANSWER),
        }
        if self.cached_tokens is not None:
            usage["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
        if self.written_tokens is not None:
            usage["cache_creation_input_tokens"] = self.written_tokens
        if not request.get("stream"):
            text = self.answer_for(request) if self.answer_for else "".join(ANSWER)
            await self._json(
                send,
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "created": 0,
                    "model": self.model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage,
                },
            )
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        for i, word in enumerate(ANSWER):
            if self.break_stream_after is not None and i >= self.break_stream_after:
                raise ConnectionResetError("responder broke the stream on purpose")
            if self.chunk_gap_s:
                await asyncio.sleep(self.chunk_gap_s)
            chunk = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": self.model,
                "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}],
            }
            await send(
                {
                    "type": "http.response.body",
                    "body": f"data: {json.dumps(chunk)}\n\n".encode(),
                    "more_body": True,
                }
            )
        final = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": self.model,
            "choices": [],
            "usage": usage,
        }
        last = f"data: {json.dumps(final)}\n\n" if self.stream_usage else ""
        await send({"type": "http.response.body", "body": f"{last}data: [DONE]\n\n".encode()})

    @classmethod
    async def _json(cls, send: Any, payload: dict[str, Any]) -> None:
        await cls._send_json_bytes(send, json.dumps(payload).encode())

    @staticmethod
    async def _send_json_bytes(send: Any, data: bytes) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": data})


# For ``uvicorn tests.support.openai_responder:app`` (the benchmarks' backend).
app = OpenAIResponder()
# A stream of one chunk a second: a client leaves it half way.
slow_stream_app = OpenAIResponder(chunk_gap_s=1.0)
