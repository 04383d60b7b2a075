"""A stand-in for Ollama's chat API, which cannot run here: it answers ``POST /api/chat`` in
Ollama's documented wire format (one JSON object, ``stream: false``) with scripted answers, and
records each request's body and headers. Serve it with ``tests.support.asgi_server``.

Given a ``context`` (tokens, counted here as words), it treats a longer prompt as Ollama does:
by default it cuts it and answers 200 (``prompt_eval_count`` half the context and two, as
Ollama reports a cut prompt); with ``truncate: false`` it answers Ollama's 400, whose body
names both sizes (``exceed_context_size_error``). ``delay_s`` makes it answer that late (a slow
model); ``body`` has it answer ``status`` (200 unless given) with those bytes instead (a server
whose answer cannot be read; Ollama's ``{"error": ...}`` with a 4xx or 5xx, or as a line of a
200 answer, which is how Ollama says a model failed while answering)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.support.asgi_server import read_body


def overflow_body(tokens: int, context: int) -> bytes:
    """Ollama's answer to ``truncate: false`` on a prompt longer than the context: the
    runner's error, as JSON, inside Ollama's ``error`` string."""
    inner = {
        "error": {
            "code": 400,
            "message": f"request ({tokens} tokens) exceeds the available context size "
            f"({context} tokens), try increasing it",
            "type": "exceed_context_size_error",
            "n_prompt_tokens": tokens,
            "n_ctx": context,
        }
    }
    return json.dumps({"error": json.dumps(inner)}).encode()


class OllamaChat:
    def __init__(
        self,
        answers: list[str],
        *,
        context: int | None = None,
        delay_s: float = 0.0,
        body: bytes | None = None,
        status: int = 200,
    ) -> None:
        """``answers`` in turn, the last one again once they run out."""
        self.answers = answers
        self.context = context
        self.delay_s = delay_s
        self.body = body
        self.status = status
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.answered = 0
        self.cut = 0
        """Prompts cut to the context and answered anyway (Ollama's default)."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        request = json.loads(await read_body(receive))
        self.requests.append(request)
        self.headers.append({k.decode().lower(): v.decode() for k, v in scope["headers"]})
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.body is not None:
            await _respond(send, self.status, self.body)
            return
        tokens = sum(len(m.get("content", "").split()) for m in request.get("messages", ()))
        if self.context is not None and tokens > self.context:
            if request.get("truncate") is False:
                await _respond(send, 400, overflow_body(tokens, self.context))
                return
            self.cut += 1
            tokens = self.context // 2 + 2
        self.answered += 1
        answer = self.answers[min(self.answered, len(self.answers)) - 1]
        body = {
            "model": request["model"],
            "created_at": "2026-12-03T09:00:00Z",
            "message": {"role": "assistant", "content": answer},
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": tokens if self.context is not None else 12,
            "eval_count": 3,
        }
        await _respond(send, 200, json.dumps(body).encode())


async def _respond(send: Any, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})
