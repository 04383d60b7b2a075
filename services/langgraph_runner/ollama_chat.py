"""ChatOllama with a GenAI span around each call, as the runner's OpenAI-compatible adapter has,
and the transport that has Ollama refuse a prompt longer than the context instead of cutting it.

The span (``chat {model}``, CLIENT, ``gen_ai.provider.name`` ``ollama``) is current while the
request goes out, so the httpx client span and the server's spans hang from it; the token
counts come from Ollama's own ``prompt_eval_count`` and ``eval_count`` (and the answering
model from ``model``) when the final response carries them. Only ``ainvoke``'s path
(``_agenerate``) is traced: the runner neither streams nor calls models synchronously.

The ``ollama`` library reads each answer line with ``json.loads`` inside the call: a line that
is not JSON raises ``JSONDecodeError``, one nested deeper than ``json`` follows raises
``RecursionError``. Either is the server's answer being unreadable, so the call fails with
:class:`AnswerUnusable` saying so, as an unusable answer's content does (``llm.parse_answer``),
not with the decoder's (or the interpreter's) words. An error Ollama answers (``ResponseError``)
leaves the call as PAS's own (``libs/common/clients/llm_errors.py``), as the OpenAI-compatible
client raises them: a 5xx, a 429 or an error line inside the streamed answer is transient,
any other status a refusal, whose text says whether the prompt was too long for the context.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import httpx
import ollama
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult
from langchain_ollama import ChatOllama

from libs.common.clients.llm_errors import LLMError, LLMTransientError, status_failure
from libs.common.genai_tracing import (
    CHAT,
    genai_span,
    record_usage,
    requested_generation,
)
from libs.common.unreadable_json import NESTED_TOO_DEEP
from services.langgraph_runner.errors import AnswerUnusable

PROVIDER = "ollama"

_PROMPT_PATHS = ("/api/chat", "/api/generate")


class RefuseOverlongPrompts(httpx.AsyncBaseTransport):
    """Sends Ollama's ``truncate: false`` with every chat and generate request (unless the
    request says otherwise), so a prompt longer than the context is refused with a 400 naming
    both sizes, not cut with a 200 answered from what is left; the runner reads such a
    document in parts. The ``ollama`` client has no argument for the field, so it is added to
    the body here; a PAS LLM service accepts it too, and an Ollama older than the field
    ignores it."""

    def __init__(self, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self._inner = inner or httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path.endswith(_PROMPT_PATHS):
            body = json.loads(request.content or b"null")
            if isinstance(body, dict) and "truncate" not in body:
                content = json.dumps({**body, "truncate": False}).encode()
                headers = httpx.Headers(request.headers)
                headers["content-length"] = str(len(content))
                request = httpx.Request(
                    request.method,
                    request.url,
                    headers=headers,
                    content=content,
                    extensions=request.extensions,
                )
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def _count(info: Mapping[str, Any], key: str) -> int | None:
    value = info.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _failure(exc: ollama.ResponseError, where: str) -> LLMError:
    # -1: an error line inside a streamed answer (the backend failed mid-way).
    if exc.status_code == -1:
        return LLMTransientError(f"{where} failed while answering: {exc.error}")
    return status_failure(exc.status_code, str(exc.error).encode(), where)


class TracedChatOllama(ChatOllama):
    """:class:`ChatOllama`, each call in a GenAI span with the tokens Ollama reported, and
    bounded whole by ``call_timeout_s``."""

    call_timeout_s: float | None = None
    """How long a call may take, its streamed answer read to the end (``None``: no bound but
    the client's, which httpx applies to each wait for the next bytes, never the whole)."""

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        requested = requested_generation(
            max_tokens=self.num_predict,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=self.seed,
            stop=stop or self.stop,
        )
        with genai_span(CHAT, model=self.model, provider=PROVIDER, attributes=requested) as span:
            try:
                async with asyncio.timeout(self.call_timeout_s):
                    result = await super()._agenerate(messages, stop, run_manager, **kwargs)
            except TimeoutError as exc:
                if self.call_timeout_s is None:
                    raise
                # Say which bound it was: the run's timeout_s, not the client's.
                raise TimeoutError(
                    f"{self.base_url} gave no answer within timeout_s={self.call_timeout_s:g} s"
                ) from exc
            except json.JSONDecodeError as exc:
                raise self._unreadable(str(exc)) from exc
            except RecursionError as exc:
                raise self._unreadable(NESTED_TOO_DEEP) from exc
            except ollama.ResponseError as exc:
                raise _failure(exc, str(self.base_url)) from exc
            final = result.generations[0] if result.generations else None
            info = (final.generation_info if final else None) or {}
            model = info.get("model")
            record_usage(
                span,
                input_tokens=_count(info, "prompt_eval_count"),
                cached_input_tokens=_count(info, "prompt_eval_cached_count"),
                output_tokens=_count(info, "eval_count"),
                response_model=model if isinstance(model, str) else None,
            )
        return result

    def _unreadable(self, why: str) -> AnswerUnusable:
        return AnswerUnusable(f"the answer from {self.base_url} is unreadable: {why}")
