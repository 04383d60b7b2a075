"""An OpenAI-compatible upstream that answers from a script: the router's circuit breaker
and a client's waits are tested against it.

Each chat request takes the next act of ``script`` (the last act repeats for every request
after): ``"ok"`` answers as :class:`OpenAIResponder` does (plain or SSE), a number answers
that HTTP status with an OpenAI-style error body (and ``reply_headers``: a ``Retry-After``),
and ``"hold"`` starts an SSE answer, sends its first chunk and then holds the rest until the
caller goes away (what a slow model does to a client that leaves mid-answer).
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

from tests.support.asgi_server import read_body
from tests.support.openai_responder import ANSWER, OpenAIResponder

Act = Literal["ok", "hold"] | int


class ScriptedUpstream(OpenAIResponder):
    def __init__(self, model: str, script: list[Act]) -> None:
        super().__init__(model)
        self.script = list(script)
        self.acts: list[Act] = []
        """The act each chat request got, in order."""
        self.callers_gone = 0
        """Held answers whose caller went away."""
        self.arrivals: list[float] = []
        """When each chat request came (``time.monotonic``)."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/chat/completions"):
            await super().__call__(scope, receive, send)
            return
        body = await read_body(receive)
        request = json.loads(body or b"{}")
        act = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        self.arrivals.append(time.monotonic())
        self.acts.append(act)
        self.requests.append(request)
        if act == "ok":
            await self._answer(request, send)
        elif act == "hold":
            await self._hold(receive, send)
        else:
            await self._fail(send, act, self.reply_headers)

    async def _hold(self, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        chunk = {
            "id": "chatcmpl-held",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": self.model,
            "choices": [{"index": 0, "delta": {"content": ANSWER[0]}, "finish_reason": None}],
        }
        await send(
            {
                "type": "http.response.body",
                "body": f"data: {json.dumps(chunk)}\n\n".encode(),
                "more_body": True,
            }
        )
        while (await receive())["type"] != "http.disconnect":
            pass
        self.callers_gone += 1

    @staticmethod
    async def _fail(send: Any, status: int, headers: dict[str, str]) -> None:
        error = {"error": {"message": f"scripted {status}", "type": "invalid_request_error"}}
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    *((k.lower().encode(), v.encode()) for k, v in headers.items()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": json.dumps(error).encode()})
