"""From the wire formats (OpenAI, Ollama) to one ``Generation``, and back."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import msgspec

from libs.common.errors import InvalidRequest
from libs.common.schemas.llm import (
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionRequest,
    ChatMessage,
    ChoiceLogprobs,
    FunctionCall,
    PromptTokensDetails,
    ToolCall,
    Usage,
)
from libs.common.schemas.ollama import (
    GenerateRequest,
    OllamaChatRequest,
    OllamaFunctionCall,
    OllamaMessage,
    OllamaOptions,
    OllamaTimings,
    OllamaToolCall,
)
from services.llm.backends.base import Completion, Generation, Turn
from services.llm.tool_calling import ToolUse, conversation, offering_tools, tool_use_of

_TEXT_ONLY = (
    "this service's model reads text only; send images to a model that takes them (the "
    "provider router routes a request with images to one whose providers file says vision)"
)


_NO_THINKING = "this service's model answers without a reasoning trace first; leave it out"


def from_openai(request: ChatCompletionRequest) -> tuple[Generation, ToolUse | None]:
    """The request as a generation, and the tools it lets the model call (None: none)."""
    logprobs = _logprobs_asked(request.logprobs, request.top_logprobs)
    json_schema = None
    json_mode = False
    fmt = request.response_format
    if fmt is not None and fmt.type == "json_schema":
        if fmt.json_schema is None or not fmt.json_schema.schema_:
            raise InvalidRequest("response_format.json_schema.schema: a JSON schema is required")
        json_schema = fmt.json_schema.schema_
    elif fmt is not None and fmt.type == "json_object":
        json_schema = fmt.schema_ or None
        json_mode = json_schema is None
    if request.functions is not None or request.function_call is not None:
        raise InvalidRequest(
            "functions, function_call: OpenAI's legacy function calling is not served; send "
            "each function as a tool ({'type': 'function', 'function': ...}) and tool_choice"
        )
    for index, message in enumerate(request.messages):
        if message.has_images():
            raise InvalidRequest(f"messages[{index}].content: image_url parts: {_TEXT_ONLY}")
    if request.audio is not None or set(request.modalities or ["text"]) != {"text"}:
        raise InvalidRequest("audio, modalities: this service answers in text only")
    if request.web_search_options is not None:
        raise InvalidRequest(
            "web_search_options: this service does not search the web; put what the model "
            "should read in the messages"
        )
    if request.reasoning_effort is not None:
        raise InvalidRequest(f"reasoning_effort: {_NO_THINKING}")
    tools = tool_use_of(request.tools, request.tool_choice, bool(request.parallel_tool_calls))
    generation = Generation(
        messages=conversation(request.messages),
        temperature=request.temperature,
        top_p=request.top_p,
        top_k=request.top_k,
        min_p=request.min_p,
        max_tokens=request.max_completion_tokens or request.max_tokens,
        stop=[request.stop] if isinstance(request.stop, str) else list(request.stop or []),
        seed=request.seed,
        json_schema=json_schema,
        json_mode=json_mode,
        repeat_penalty=request.repeat_penalty,
        repeat_last_n=request.repeat_last_n,
        frequency_penalty=request.frequency_penalty,
        presence_penalty=request.presence_penalty,
        dry_multiplier=request.dry_multiplier,
        dry_base=request.dry_base,
        dry_allowed_length=request.dry_allowed_length,
        dry_penalty_last_n=request.dry_penalty_last_n,
        logprobs=logprobs,
        logit_bias=_token_biases(request.logit_bias),
    )
    return (generation if tools is None else offering_tools(generation, tools)), tools


def _token_biases(biases: dict[str, float] | None) -> dict[int, float] | None:
    """OpenAI's ``logit_bias`` with its keys (digits: the wire type holds them so) read as
    the token ids they are."""
    return {int(key): bias for key, bias in biases.items()} if biases else None


def _ollama_generation(
    messages: list[Turn], request: GenerateRequest | OllamaChatRequest
) -> Generation:
    o = request.options or OllamaOptions()
    fmt = request.format
    return Generation(
        messages=messages,
        temperature=o.temperature,
        top_p=o.top_p,
        top_k=o.top_k,
        min_p=o.min_p,
        # Ollama's -1 (until done) and -2 (fill the context) mean "no limit of your own".
        max_tokens=o.num_predict if o.num_predict is not None and o.num_predict > 0 else None,
        seed=o.seed,
        stop=list(o.stop or []),
        json_schema=fmt if isinstance(fmt, dict) else None,
        json_mode=fmt == "json",
        repeat_penalty=o.repeat_penalty,
        repeat_last_n=o.repeat_last_n,
        frequency_penalty=o.frequency_penalty,
        presence_penalty=o.presence_penalty,
        logprobs=_logprobs_asked(request.logprobs, request.top_logprobs),
    )


def _logprobs_asked(logprobs: bool, top_logprobs: int | None) -> int | None:
    if top_logprobs is not None and not logprobs:
        raise InvalidRequest("top_logprobs: set logprobs to true as well")
    return (top_logprobs or 0) if logprobs else None


def from_ollama_generate(request: GenerateRequest) -> Generation:
    if request.raw:
        raise InvalidRequest("raw: prompts are always formatted with the model's chat template")
    if request.images:
        raise InvalidRequest(f"images: {_TEXT_ONLY}")
    if request.suffix:
        raise InvalidRequest("suffix: fill-in-the-middle is not served; ask for the text whole")
    if request.template:
        raise InvalidRequest("template: prompts are always formatted with the model's template")
    _refuse_thinking(request.think)
    messages = [Turn(role="system", content=request.system)] if request.system else []
    messages.append(Turn(role="user", content=request.prompt))
    return _ollama_generation(messages, request)


def from_ollama_chat(request: OllamaChatRequest) -> tuple[Generation, ToolUse | None]:
    """The request as a generation, and the tools it lets the model call (None: none)."""
    for index, message in enumerate(request.messages):
        if message.images:
            raise InvalidRequest(f"messages[{index}].images: {_TEXT_ONLY}")
    _refuse_thinking(request.think)
    messages = conversation([_as_openai(m) for m in request.messages])
    # Ollama has no tool_choice or parallel_tool_calls: the model calls a tool or answers.
    tools = tool_use_of(request.tools, None, parallel=False)
    generation = _ollama_generation(messages, request)
    return (generation if tools is None else offering_tools(generation, tools)), tools


def _refuse_thinking(think: bool | str | None) -> None:
    """Ollama's ``think``: false (or absent) is what is served; asking for it is refused, as
    Ollama refuses it for a model without a reasoning trace."""
    if think not in (None, False):
        raise InvalidRequest(f"think: {_NO_THINKING} (or false)")


def _as_openai(message: OllamaMessage) -> ChatMessage:
    """An Ollama message in OpenAI's shape (arguments as JSON text). Ollama's calls have no
    ids: its results name their tool, or answer the calls in order."""
    calls = None
    if message.tool_calls:
        calls = [
            ToolCall(
                id=call.id or f"ollama_{index}",
                function=FunctionCall(
                    name=call.function.name,
                    arguments=msgspec.json.encode(call.function.arguments).decode(),
                ),
            )
            for index, call in enumerate(message.tool_calls)
        ]
    return ChatMessage(
        role=message.role,
        content=message.content,
        tool_calls=calls,
        name=message.tool_name,
        tool_call_id=message.tool_call_id,
    )


def ollama_calls(calls: list[ToolCall]) -> list[OllamaToolCall]:
    """Calls in Ollama's shape: arguments as objects, no ids."""
    return [
        OllamaToolCall(
            function=OllamaFunctionCall(
                name=call.function.name, arguments=msgspec.json.decode(call.function.arguments)
            )
        )
        for call in calls
    ]


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def to_openai(
    completions: list[Completion], model: str, request_id: str, tools: ToolUse | None = None
) -> ChatCompletion:
    """The answers as one chat completion, a choice each in order."""
    choices = []
    for index, completion in enumerate(completions):
        message, finish_reason = _answer_message(completion, tools)
        choices.append(
            ChatChoice(
                index=index,
                message=message,
                finish_reason=finish_reason,
                logprobs=choice_logprobs(completion),
            )
        )
    return ChatCompletion(
        id=request_id,
        created=int(time.time()),
        model=model,
        choices=choices,
        usage=usage_of(completions),
    )


def _answer_message(completion: Completion, tools: ToolUse | None) -> tuple[AssistantMessage, str]:
    """The assistant's message and finish reason: its calls ("tool_calls") when it called
    tools, else its text (a tool answer's ``response``, or the text as it came when the JSON
    was cut short)."""
    read = None if tools is None else tools.read(completion.text)
    if read is None:
        return AssistantMessage(content=completion.text), completion.finish_reason
    if read.calls is not None:
        return AssistantMessage(content=None, tool_calls=read.calls), "tool_calls"
    return AssistantMessage(content=read.content), completion.finish_reason


def choice_logprobs(completion: Completion) -> ChoiceLogprobs | None:
    """The answer's token log-probabilities as OpenAI gives them (null when not asked)."""
    if completion.logprobs is None:
        return None
    return ChoiceLogprobs(content=completion.logprobs)


def usage_of(completions: list[Completion]) -> Usage:
    """The tokens of a request's answers: its prompt once (as OpenAI counts it for ``n``
    choices), every answer's own."""
    first = completions[0]
    completion_tokens = sum(completion.completion_tokens for completion in completions)
    return Usage(
        prompt_tokens=first.prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=first.prompt_tokens + completion_tokens,
        prompt_tokens_details=None
        if first.cached_tokens is None
        else PromptTokensDetails(cached_tokens=first.cached_tokens),
    )


def ollama_timings(completion: Completion) -> OllamaTimings:
    return OllamaTimings(
        total_duration=completion.total_ns,
        load_duration=0,
        prompt_eval_count=completion.prompt_tokens,
        prompt_eval_cached_count=completion.cached_tokens,
        prompt_eval_duration=completion.prompt_eval_ns,
        eval_count=completion.completion_tokens,
        eval_duration=completion.eval_ns,
    )


def ollama_timestamp() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")
