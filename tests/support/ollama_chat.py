"""A stand-in for Ollama's chat API, which cannot run here: it answers ``POST /api/chat`` in
Ollama's documented wire format (one JSON object, ``stream: false``) with scripted answers, and
records each request's body and headers. Serve it with ``tests.support.asgi_server``."""

from __future__ import annotations

import json
from typing import Any

from tests.support.asgi_server import read_body


class OllamaChat:
    def __init__(self, answers: list[str]) -> None:
        """``answers`` in turn, the last one again once they run out."""
        self.answers = answers
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        request = json.loads(await read_body(receive))
        self.requests.append(request)
        self.headers.append({k.decode().lower(): v.decode() for k, v in scope["headers"]})
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        body = {
            "model": request["model"],
            "created_at": "2026-12-03T09:00:00Z",
            "message": {"role": "assistant", "content": answer},
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": 12,
            "eval_count": 3,
        }
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": json.dumps(body).encode()})
