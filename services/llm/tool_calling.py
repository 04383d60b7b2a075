"""Tool calling on any model: the tools go into the prompt, the answer is held to a JSON schema
of the calls they allow, and the JSON read back becomes OpenAI's (or Ollama's) ``tool_calls``.

A model without tool training (SmolLM2) cannot call tools by its chat template, so the services
do what llama.cpp's server does for such models (its "generic" format): the model answers
``{"tool_calls": [{"name": ..., "arguments": {...}}]}`` or ``{"response": ...}``, and the
schema (a grammar on the embedded model, structured output on a remote one) admits only the
tools given, each with its own ``parameters``. So an answer is always a well-formed call of a
tool that exists, whatever the model; whether it is the right call is the model's part.

Earlier turns are written back so that any chat template (and any remote server) reads them:
an assistant's calls as that JSON, a tool's result as a user turn "Result of <tool>: <result>".
(Given the result as JSON, ``{"tool_response": ...}``, SmolLM2 called the same tool again; in
these words it answered from the result.)
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Sequence
from typing import Any, Final, Literal, overload

import msgspec

from libs.common.errors import InvalidRequest
from libs.common.schemas.llm import (
    ChatMessage,
    FunctionCall,
    NamedToolChoice,
    ToolCall,
    ToolChoice,
    ToolDefinition,
)
from libs.common.unreadable_json import UNREADABLE_JSON, why_unreadable
from services.llm.backends.base import Completion, Generation, StreamEvent, TextDelta, Turn
from services.llm.call_stream import ArgumentsWritten, CallStarted, CallStream, new_call_id

ANY_OBJECT: Final = {"type": "object"}
_encode = msgspec.json.Encoder().encode


class ToolAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """What the model answered: tool calls, or text for the user (``content``)."""

    content: str | None
    calls: list[ToolCall] | None


class ToolUse:
    """The tools a request offers and how the model may use them."""

    def __init__(
        self, tools: Sequence[ToolDefinition], *, forced: str | None, required: bool, parallel: bool
    ) -> None:
        self.tools = list(tools)
        self.forced = forced
        """The one tool the model must call (a named ``tool_choice``)."""
        self.required = required or forced is not None
        self.parallel = parallel and forced is None

    def instructions(self) -> str:
        """The tools as signatures, ``name(argument, ...): description``, and how to answer.
        Their schemas stay out of the prompt (the answer's schema holds the arguments to
        them): given the tools as JSON with their schemas, SmolLM2 called the right tool for
        the right company 10 times in 24, and 20 given signatures (bench/tool_calls.py)."""
        listed = "\n".join(
            f"- {tool.function.name}({', '.join(_argument_names(tool))})"
            + (f": {tool.function.description}" if tool.function.description else "")
            for tool in self._callable()
        )
        calls = '{"tool_calls": [{"name": <tool name>, "arguments": {<its parameters>}}]}'
        if self.forced is not None:
            how = f"Call the tool {self.forced}. Answer in JSON: {calls}."
        elif self.required:
            how = f"Call one or more of these tools. Answer in JSON: {calls}."
        else:
            # Of four wordings tried, the one that called the right tool most (18 of 24, against
            # 14, 6 and 1) and answered from a tool's result as often (docs/benchmarks.md).
            how = (
                "Use a tool only when the question needs data a tool gives. To call tools, "
                f'answer in JSON: {calls}. Otherwise answer in JSON: {{"response": <your answer>}}.'
            )
        return f"You can call these tools:\n{listed}\n{how}"

    def schema(self, response: dict[str, Any] | None) -> dict[str, Any]:
        """The JSON Schema of an answer: calls of the given tools (each with its parameters),
        or, unless a call is required, ``{"response": ...}`` valid for ``response`` (the
        request's own format; any text when it has none)."""
        definitions: dict[str, Any] = {}
        variants = []
        for index, tool in enumerate(self._callable()):
            key = f"tool_{index}"
            definitions.update(_hoisted(tool.function.parameters or ANY_OBJECT, key))
            variants.append(
                {
                    "type": "object",
                    "properties": {
                        "name": {"const": tool.function.name},
                        "arguments": {"$ref": f"#/$defs/{key}"},
                    },
                    "required": ["name", "arguments"],
                }
            )
        calls: dict[str, Any] = {
            "type": "array",
            "items": variants[0] if len(variants) == 1 else {"anyOf": variants},
            "minItems": 1,
        }
        if not self.parallel:
            calls["maxItems"] = 1
        called = {"type": "object", "properties": {"tool_calls": calls}, "required": ["tool_calls"]}
        if self.required:
            return {**called, "$defs": definitions}
        answered = {
            "type": "object",
            "properties": {"response": response or {"type": "string"}},
            "required": ["response"],
        }
        return {"anyOf": [called, answered], "$defs": definitions}

    def read(self, text: str, ids: Sequence[str] = ()) -> ToolAnswer | None:
        """The answer's calls or response; None when it is not the JSON asked for (calls cut
        at ``max_tokens``), which is then given as it is. A text response cut short is what
        it says up to the cut, as it was streamed (:func:`response_so_far`). ``ids``: those
        of the first calls, already given in a stream."""
        try:
            answer = msgspec.json.decode(text)
        except UNREADABLE_JSON:  # nested too deep too: a model may answer bracket after bracket
            said = response_so_far(text)
            return None if said is None else ToolAnswer(content=said, calls=None)
        if isinstance(answer, dict) and isinstance(answer.get("tool_calls"), list):
            known = {tool.function.name for tool in self.tools}
            calls = []
            for index, call in enumerate(answer["tool_calls"]):
                if not isinstance(call, dict) or call.get("name") not in known:
                    return None
                arguments = call.get("arguments", {})
                calls.append(
                    ToolCall(
                        id=ids[index] if index < len(ids) else new_call_id(),
                        function=FunctionCall(
                            name=call["name"], arguments=_encode(arguments).decode()
                        ),
                    )
                )
            return ToolAnswer(content=None, calls=calls)
        if isinstance(answer, dict) and "response" in answer:
            said = answer["response"]
            return ToolAnswer(
                content=said if isinstance(said, str) else _encode(said).decode(), calls=None
            )
        return None

    def _callable(self) -> list[ToolDefinition]:
        if self.forced is None:
            return self.tools
        return [tool for tool in self.tools if tool.function.name == self.forced]


class CallsMade(msgspec.Struct, frozen=True, kw_only=True):
    """A stream event: the answer's tool calls, read once it is whole."""

    calls: list[ToolCall]


WholeCallEvent = TextDelta | CallsMade | Completion
ToolEvent = TextDelta | CallStarted | ArgumentsWritten | CallsMade | Completion


@overload
def tool_events(
    events: AsyncGenerator[StreamEvent, None], tools: ToolUse, *, piecewise: Literal[False] = ...
) -> AsyncGenerator[WholeCallEvent, None]: ...
@overload
def tool_events(
    events: AsyncGenerator[StreamEvent, None], tools: ToolUse, *, piecewise: Literal[True]
) -> AsyncGenerator[ToolEvent, None]: ...


async def tool_events(
    events: AsyncGenerator[StreamEvent, None], tools: ToolUse, *, piecewise: bool = False
) -> AsyncGenerator[ToolEvent, None]:
    """An answer with tools as the client sees it: a text response's text as it comes (not
    its JSON), calls once the answer is whole, then the completion (its log-probabilities are
    those of the JSON written, all with it). ``piecewise``: each call's name as soon as it is
    written and its arguments as they come too (``call_stream.py``); the calls whole still
    follow, with the same ids, for what was not streamed (a call a remote model wrote in
    another order). Calls cut short by ``max_tokens`` then end there, as OpenAI's do."""
    written, said = "", 0
    calls = CallStream([tool.function.name for tool in tools.tools]) if piecewise else None
    try:
        async for event in events:
            if isinstance(event, Completion):
                answer = tools.read(event.text, calls.ids if calls else ())
                if answer is not None and answer.calls is not None:
                    yield CallsMade(calls=answer.calls)
                elif calls is None or not calls.begun:
                    text = event.text if answer is None else answer.content or ""
                    if len(text) > said:
                        yield TextDelta(text=text[said:])
                yield event
                continue
            written += event.text
            if calls is not None:
                for piece in calls.read(written):
                    yield piece
            so_far = response_so_far(written)
            if so_far is not None and len(so_far) > said:
                yield TextDelta(text=so_far[said:])
                said = len(so_far)
    finally:
        await events.aclose()


_RESPONSE_OPENING: Final = re.compile(r'\s*\{\s*"response"\s*:\s*"')


def response_so_far(text: str) -> str | None:
    """The text of a ``{"response": "..."}`` answer as far as ``text`` goes (an answer being
    made, or cut short), to stream it as it comes; None when the answer is not a text
    response (calls, or a response in a JSON format of the request's own)."""
    opening = _RESPONSE_OPENING.match(text)
    if opening is None:
        return None
    body = text[opening.end() :]
    index, end = 0, len(body)
    high_surrogate_at = -1  # a pair's first half, useless until its second comes
    while index < len(body):
        char = body[index]
        if char == '"':
            return str(msgspec.json.decode(f'"{body[:index]}"'))
        if char != "\\":
            index += 1
            continue
        unicode = body[index + 1 : index + 2] == "u"
        step = 6 if unicode else 2
        if index + step > len(body):  # an escape cut in the middle
            end = index
            break
        is_high = unicode and body[index + 2 : index + 4].lower() in _HIGH_SURROGATE_STARTS
        high_surrogate_at = index if is_high else -1
        index += step
    if high_surrogate_at != -1 and high_surrogate_at + 6 >= end:
        end = high_surrogate_at
    try:
        return str(msgspec.json.decode(f'"{body[:end]}"'))
    except msgspec.DecodeError:
        return None


_HIGH_SURROGATE_STARTS: Final = frozenset({"d8", "d9", "da", "db"})


def _argument_names(tool: ToolDefinition) -> list[str]:
    properties = (tool.function.parameters or {}).get("properties")
    return [str(name) for name in properties] if isinstance(properties, dict) else []


def tool_use_of(
    tools: Sequence[ToolDefinition] | None, choice: ToolChoice | None, parallel: bool
) -> ToolUse | None:
    """The request's tools as the model may use them; None when it may not call any."""
    if not tools:
        if choice is not None and choice != "none":
            raise InvalidRequest("tool_choice: name tools to choose from (tools is empty)")
        return None
    names = [tool.function.name for tool in tools]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise InvalidRequest(f"tools: each function's name must be unique ({', '.join(twice)})")
    for index, tool in enumerate(tools):
        parameters = tool.function.parameters
        if parameters is not None and parameters.get("type", "object") != "object":
            raise InvalidRequest(
                f"tools[{index}].function.parameters: a JSON Schema of an object is required"
            )
    if choice == "none":
        return None
    forced = None
    if isinstance(choice, NamedToolChoice):
        forced = choice.function.name
        if forced not in names:
            raise InvalidRequest(f"tool_choice.function.name: no tool is named {forced!r}")
    return ToolUse(tools, forced=forced, required=choice == "required", parallel=parallel)


def conversation(messages: Sequence[ChatMessage]) -> list[Turn]:
    """The messages as turns any chat template reads: an assistant's tool calls as the JSON a
    model answers them in, a tool's result as a user turn naming the call's tool: by
    ``tool_call_id``, else by the name the message gives (Ollama's ``tool_name``), else the
    next call not yet answered (the ``ollama`` client sends neither)."""
    called: dict[str, str] = {}
    unanswered: list[str] = []  # the last calls' ids, in order, until a result answers them
    turns = []
    for index, message in enumerate(messages):
        if message.role == "assistant" and message.tool_calls:
            calls = []
            unanswered = [call.id for call in message.tool_calls]
            for number, call in enumerate(message.tool_calls):
                called[call.id] = call.function.name
                try:
                    arguments = msgspec.json.decode(call.function.arguments or "{}")
                except UNREADABLE_JSON as exc:
                    raise InvalidRequest(
                        f"messages[{index}].tool_calls[{number}].function.arguments: "
                        f"not JSON ({why_unreadable(exc)})"
                    ) from exc
                calls.append({"name": call.function.name, "arguments": arguments})
            turns.append(Turn(role="assistant", content=_encode({"tool_calls": calls}).decode()))
        elif message.role == "tool":
            answered = message.tool_call_id
            if answered not in called and not message.name and unanswered:
                answered = unanswered[0]
            if answered in unanswered:
                unanswered.remove(answered)
            name = called.get(answered or "", message.name or "")
            turns.append(Turn(role="user", content=f"Result of {name}: {message.text()}"))
        else:
            role = "system" if message.role == "developer" else message.role
            turns.append(Turn(role=role, content=message.text()))
    return turns


def offering_tools(generation: Generation, use: ToolUse) -> Generation:
    """``generation`` with the tools offered: said in the system turn (added first when there
    is none), and the answer held to :meth:`ToolUse.schema`, whose text response keeps the
    request's own JSON format (any object for JSON mode)."""
    said = use.instructions()
    turns = generation.messages
    if turns and turns[0].role == "system":
        turns = [Turn(role="system", content=f"{turns[0].content}\n\n{said}"), *turns[1:]]
    else:
        turns = [Turn(role="system", content=said), *turns]
    response = ANY_OBJECT if generation.json_mode else generation.json_schema
    return msgspec.structs.replace(
        generation, messages=turns, json_schema=use.schema(response), json_mode=False
    )


def _hoisted(parameters: dict[str, Any], key: str) -> dict[str, Any]:
    """``parameters`` as definitions of the answer's schema: itself under ``key``, and its own
    ``$defs``/``definitions`` beside it as ``key_<name>``, with its references pointed there
    (a reference is read from the root of the whole schema)."""
    own = {**parameters}
    nested: dict[str, Any] = {}
    for where in ("$defs", "definitions"):
        found = own.pop(where, {})
        if not isinstance(found, dict):
            raise InvalidRequest(f"tools: parameters.{where} must be an object of schemas")
        nested.update(found)

    def moved(node: Any) -> Any:
        if isinstance(node, dict):
            copied = {name: moved(value) for name, value in node.items()}
            ref = copied.get("$ref")
            if isinstance(ref, str):
                if ref == "#":
                    copied["$ref"] = f"#/$defs/{key}"
                else:
                    for prefix in ("#/$defs/", "#/definitions/"):
                        if ref.startswith(prefix):
                            copied["$ref"] = f"#/$defs/{key}_{ref[len(prefix) :]}"
            return copied
        if isinstance(node, list):
            return [moved(value) for value in node]
        return node

    hoisted = {key: moved(own)}
    hoisted.update({f"{key}_{name}": moved(value) for name, value in nested.items()})
    return hoisted
