"""How LLM nodes reach a model: ChatOllama (in a GenAI span) on an Ollama-compatible API, or an
OpenAI-compatible ``/v1`` (the provider router) through a small LangChain adapter;
configuration chooses.

Both take ``format=<JSON schema>`` for structured answers, which a PAS LLM service turns into a
grammar on the model, so a node gets JSON of the asked shape or an error, never prose to parse.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from typing import Any, TypeVar

import httpx
import msgspec
from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import LLMResult

from libs.common.clients.llm_errors import LLMRefused, LLMTransientError, refused_as_too_long
from libs.common.clients.openai_client import OpenAIClient
from libs.common.clients.openai_compat import openai_base_url
from libs.common.schemas.json_schema import inline_schema
from libs.common.schemas.usage import HEADER_WORKFLOW_ID, HEADER_WORKFLOW_RUN_ID
from libs.common.schemas.workflows import LLMUsage, WorkflowParameters
from libs.common.token_prices import tokens_cost
from libs.common.unreadable_json import why_unreadable
from services.langgraph_runner.errors import AnswerUnusable
from services.langgraph_runner.openai_chat import COST_KEY, OpenAICompatibleChat
from services.langgraph_runner.settings import ModelPrice, RunnerSettings

AnswerT = TypeVar("AnswerT", bound=msgspec.Struct)


def is_transient(exc: Exception) -> bool:
    """Worth retrying the node: the model was unreachable, slow, overloaded or failed inside.

    A refused request (4xx), an unusable answer or a bug in a node is not: retrying gives the
    same result, so the run fails at once with the reason.
    """
    if isinstance(exc, LLMTransientError | httpx.TransportError | ConnectionError | TimeoutError):
        return True
    if isinstance(exc, httpx.HTTPStatusError):
        # PAS's own nodes raise PAS's errors; a node of an extra workflow
        # (RUNNER_EXTRA_WORKFLOWS) may call a service with httpx and ``raise_for_status``.
        code = exc.response.status_code
        return code >= 500 or code == 429
    return False


def is_context_overflow(exc: Exception) -> bool:
    """The model refused the prompt as longer than its context (a 400 saying so), through
    either API: the text is to be read in parts (``libs/common/text_parts.py``)."""
    return isinstance(exc, LLMRefused) and refused_as_too_long(exc)


class LLMPrices:
    """What a call costs: as the endpoint stated it (``usage.cost``, see ``openai_chat.py``),
    else its tokens at the answering model's price in ``RUNNER_LLM_PRICES`` (else 0)."""

    def __init__(self, prices: Sequence[ModelPrice] = ()) -> None:
        self._by_model = {price.model: price for price in prices}

    def cost(
        self,
        metadata: Mapping[str, Any],
        prompt_tokens: int,
        completion_tokens: int,
        cached_tokens: int = 0,
        written_tokens: int = 0,
    ) -> float:
        stated = metadata.get(COST_KEY)
        if isinstance(stated, int | float) and not isinstance(stated, bool) and stated >= 0:
            return float(stated)
        # OpenAI-compatible answers name the model in ``model_name``, Ollama's in ``model``.
        model = metadata.get("model_name") or metadata.get("model")
        price = self._by_model.get(model) if isinstance(model, str) else None
        if price is None:
            return 0.0
        return tokens_cost(price, prompt_tokens, completion_tokens, cached_tokens, written_tokens)


class RunUsageCallback(AsyncCallbackHandler):
    """Counts a run's LLM calls, tokens and cost; attached to the run's config, so every chat
    model a node invokes reports here."""

    # Only LLM ends matter; skipping the rest keeps LangChain from calling in on every node.
    @property
    def ignore_chain(self) -> bool:
        return True

    @property
    def ignore_agent(self) -> bool:
        return True

    @property
    def ignore_retriever(self) -> bool:
        return True

    @property
    def ignore_custom_event(self) -> bool:
        return True

    def __init__(self, start: LLMUsage | None = None, prices: LLMPrices | None = None) -> None:
        base = start or LLMUsage()
        self.calls = base.calls
        self.prompt_tokens = base.prompt_tokens
        self.completion_tokens = base.completion_tokens
        self.cost_usd = base.cost_usd
        self._prices = prices or LLMPrices()

    async def on_llm_end(self, response: LLMResult, **_: Any) -> None:
        for generations in response.generations:
            for generation in generations:
                self.calls += 1
                message = getattr(generation, "message", None)
                usage = getattr(message, "usage_metadata", None) or {}
                prompt = int(usage.get("input_tokens", 0))
                completion = int(usage.get("output_tokens", 0))
                details = usage.get("input_token_details") or {}
                cached = int(details.get("cache_read", 0))
                written = int(details.get("cache_creation", 0))
                self.prompt_tokens += prompt
                self.completion_tokens += completion
                metadata = getattr(message, "response_metadata", None) or {}
                self.cost_usd += self._prices.cost(metadata, prompt, completion, cached, written)

    def snapshot(self) -> LLMUsage:
        return LLMUsage(
            calls=self.calls,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            cost_usd=self.cost_usd,
        )


class Choice(msgspec.Struct):
    choice: str


Turn = tuple[str, str]
"""``("system" | "user" | "assistant", text)``."""


def _messages(turns: Sequence[Turn]) -> list[BaseMessage]:
    kinds: dict[str, type[BaseMessage]] = {
        "system": SystemMessage,
        "user": HumanMessage,
        "assistant": AIMessage,
    }
    return [kinds[role](content=text) for role, text in turns]


def parse_answer(text: str, answer_type: type[AnswerT]) -> AnswerT:
    """``text`` as ``answer_type``; :class:`AnswerUnusable` if it is not that JSON (nested
    too deep to read included: msgspec and ``json`` raise ``RecursionError`` for it)."""
    try:
        return msgspec.json.decode(text, type=answer_type)
    except msgspec.ValidationError as exc:
        raise AnswerUnusable(
            f"the model's answer is not a {answer_type.__name__} ({exc}): {text[:200]!r}"
        ) from exc
    except msgspec.DecodeError as exc:
        # Some grammars let a raw newline or tab into a JSON string; the answer is still
        # what was asked, so read it the way Python's lenient decoder does.
        try:
            return msgspec.convert(json.loads(text, strict=False), answer_type)
        except RecursionError as deep:  # malformed early, and nested too deep further on
            raise _not_the_asked_json(text, answer_type, deep) from exc
        except (ValueError, msgspec.ValidationError):
            raise _not_the_asked_json(text, answer_type, exc) from exc
    except RecursionError as exc:
        raise _not_the_asked_json(text, answer_type, exc) from exc


def _not_the_asked_json(
    text: str, answer_type: type[msgspec.Struct], exc: msgspec.DecodeError | RecursionError
) -> AnswerUnusable:
    return AnswerUnusable(
        f"the model's answer is not the asked {answer_type.__name__} JSON "
        f"({why_unreadable(exc)}): {text[:200]!r}"
    )


_run_headers: ContextVar[dict[str, str] | None] = ContextVar("pas_runner_run", default=None)


def attribute_llm_calls(workflow_id: str, run_id: str) -> None:
    """From now on in this task (a run) and the tasks it starts (its nodes), LLM calls carry
    the run's ids, so that their usage events count toward the workflow in analytics."""
    _run_headers.set({HEADER_WORKFLOW_ID: workflow_id, HEADER_WORKFLOW_RUN_ID: run_id})


def _run_headers_now() -> dict[str, str]:
    return _run_headers.get() or {}


async def _add_run_headers(request: httpx.Request) -> None:
    request.headers.update(_run_headers_now())


class CallSettings(msgspec.Struct, frozen=True, kw_only=True):
    """What one chat model asks every call with: a run's parameters over the runner's
    defaults, the node's bound on tokens. Hashable: the gateway keeps one model per value."""

    model: str
    capability: str | None
    temperature: float
    top_p: float | None
    max_tokens: int
    seed: int
    stop: tuple[str, ...]
    timeout_s: float | None
    """The whole call's bound; ``None``: the runner's ``llm_timeout_s`` as its client has it
    (connecting, and every wait for the answer's next bytes)."""


class LLMGateway:
    """Chat models for LLM nodes, one per :class:`CallSettings`, built on first use."""

    def __init__(self, settings: RunnerSettings) -> None:
        self._settings = settings
        self._models: dict[CallSettings, BaseChatModel] = {}
        self._openai: OpenAIClient | None = None

    @property
    def describe(self) -> dict[str, Any]:
        s = self._settings
        return {"api": s.llm_api, "url": s.llm_url, "model": s.llm_model}

    def cannot_apply(self, parameters: WorkflowParameters) -> str | None:
        """Why this runner's API cannot make calls as ``parameters`` ask (``None``: it can)."""
        if parameters.capability is not None and self._settings.llm_api == "ollama":
            return (
                f"capability {parameters.capability!r} is routed by the provider router "
                "(RUNNER_LLM_API=openai); the Ollama API serves a model by its name only, "
                "so give a model instead"
            )
        return None

    def call_settings(self, parameters: WorkflowParameters, max_tokens: int) -> CallSettings:
        """``parameters`` over the runner's defaults; ``max_tokens`` is the node's bound."""
        s = self._settings
        # A run that names its model asks that model: the router would route by a capability
        # sent along (the runner's default one) and answer from another.
        capability = parameters.capability
        if capability is None and parameters.model is None:
            capability = s.llm_capability
        return CallSettings(
            model=parameters.model or s.llm_model,
            capability=capability,
            temperature=(
                s.llm_temperature if parameters.temperature is None else parameters.temperature
            ),
            top_p=parameters.top_p,
            max_tokens=min(max_tokens, parameters.max_tokens or s.llm_max_tokens, s.llm_max_tokens),
            seed=0 if parameters.seed is None else parameters.seed,
            stop=tuple(parameters.stop),
            timeout_s=parameters.timeout_s,
        )

    def chat_model(self, parameters: WorkflowParameters, max_tokens: int) -> BaseChatModel:
        call = self.call_settings(parameters, max_tokens)
        chat = self._models.get(call)
        if chat is None:
            chat = self._models[call] = self._build(call)
        return chat

    def _build(self, call: CallSettings) -> BaseChatModel:
        s = self._settings
        if s.llm_api == "ollama":
            # Imported for this API only: the ollama library and langchain-ollama are a third
            # of a second of a runner's start that the OpenAI-compatible API does not need.
            from services.langgraph_runner.ollama_chat import (  # noqa: PLC0415
                RefuseOverlongPrompts,
                TracedChatOllama,
            )

            # Ollama itself takes no key; a PAS LLM service with a token, or an authenticating
            # proxy in front of Ollama, takes it as a bearer token (as the OpenAI path sends it).
            client: dict[str, Any] = {"timeout": call.timeout_s or s.llm_timeout_s}
            if s.llm_api_key:
                client["headers"] = {"Authorization": f"Bearer {s.llm_api_key}"}
            # Ollama's options under their own names: num_predict is max_tokens.
            return TracedChatOllama(
                base_url=s.llm_url,
                model=call.model,
                temperature=call.temperature,
                top_p=call.top_p,
                num_predict=call.max_tokens,
                seed=call.seed,
                stop=list(call.stop) or None,
                call_timeout_s=call.timeout_s,
                client_kwargs=client,
                async_client_kwargs={
                    "event_hooks": {"request": [_add_run_headers]},
                    "transport": RefuseOverlongPrompts(),
                },
            )
        if self._openai is None:
            self._openai = OpenAIClient(
                openai_base_url(s.llm_url), api_key=s.llm_api_key, timeout_s=s.llm_timeout_s
            )
        return OpenAICompatibleChat(
            model=call.model,
            temperature=call.temperature,
            top_p=call.top_p,
            max_tokens=call.max_tokens,
            seed=call.seed,
            stop=list(call.stop),
            timeout_s=call.timeout_s,
            capability=call.capability,
            client=self._openai,
            call_headers=_run_headers_now,
            longest_wait_s=s.node_retry_max_s,
        )

    async def text(
        self, turns: Sequence[Turn], parameters: WorkflowParameters, *, max_tokens: int
    ) -> str:
        reply = await self.chat_model(parameters, max_tokens).ainvoke(_messages(turns))
        return str(reply.content).strip()

    async def structured(
        self,
        turns: Sequence[Turn],
        parameters: WorkflowParameters,
        answer_type: type[AnswerT],
        *,
        max_tokens: int,
        schema: dict[str, Any] | None = None,
    ) -> AnswerT:
        """The model's answer as ``answer_type``, its JSON constrained by the type's schema
        (or by ``schema``, a narrower one built at run time: choices from the state, say).

        Bound every string and list in ``answer_type`` so that the answer closes within
        ``max_tokens``; a cut-short answer raises :class:`AnswerUnusable`.
        """
        chat = self.chat_model(parameters, max_tokens)
        answer_format = schema if schema is not None else inline_schema(answer_type)
        reply = await chat.ainvoke(_messages(turns), format=answer_format)
        return parse_answer(str(reply.content), answer_type)

    async def choose(
        self,
        turns: Sequence[Turn],
        parameters: WorkflowParameters,
        options: Sequence[str],
    ) -> str:
        """One of ``options``, picked by the model (a grammar allows nothing else)."""
        if len(options) == 1:
            return options[0]
        schema = {
            "type": "object",
            "properties": {"choice": {"type": "string", "enum": list(options)}},
            "required": ["choice"],
        }
        answer = await self.structured(turns, parameters, Choice, max_tokens=24, schema=schema)
        if answer.choice not in options:
            raise AnswerUnusable(f"the model chose {answer.choice!r}, not one of {list(options)}")
        return answer.choice

    async def aclose(self) -> None:
        if self._openai is not None:
            await self._openai.aclose()
