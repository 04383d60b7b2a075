"""Graph state as JSON: node updates hold LangChain messages, ``Send`` packets, interrupts,
dates; clients of the stream and of ``GET /runs`` get plain JSON values."""

from __future__ import annotations

from typing import Any, NamedTuple

import msgspec
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langgraph.types import Command, Interrupt, Send

_SCALARS = (str, int, float, bool, type(None))


MAX_NESTING = 64
"""How deep a value from a caller (an interrupt's answer, a run's metadata) may nest: LangGraph's
checkpoint serializer gives up at a few hundred levels, and the run then fails."""


class JsonShape(NamedTuple):
    depth: int
    """How deep the value nests (a scalar: 0)."""
    holds_nul: bool
    """Whether a text in it (a key too) holds U+0000."""


def json_shape(value: Any) -> JsonShape:
    """How deep ``value`` nests and whether a text in it holds U+0000, found in one walk
    without recursion (a caller's value may nest deeper than Python's stack)."""
    deepest, nul = 0, False
    pending = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            nul = nul or "\x00" in item
            continue
        if isinstance(item, dict):
            pending += [(child, depth + 1) for child in (*item.keys(), *item.values())]
        elif isinstance(item, list | tuple):
            pending += [(child, depth + 1) for child in item]
        else:
            continue
        deepest = max(deepest, depth + 1)
    return JsonShape(deepest, nul)


def json_value(value: Any) -> Any:
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, dict):
        return {str(key): json_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_value(item) for item in value]
    if isinstance(value, BaseMessage):
        return _message(value)
    if isinstance(value, Send):
        return {"send": value.node, "arg": json_value(value.arg)}
    if isinstance(value, Interrupt):
        return {"interrupt_id": value.id, "value": json_value(value.value)}
    if isinstance(value, Command):
        return {
            "goto": json_value(value.goto),
            "update": json_value(value.update),
            "resume": json_value(value.resume),
        }
    try:
        return msgspec.to_builtins(value)
    except TypeError:
        return repr(value)


def _message(message: BaseMessage) -> dict[str, Any]:
    found: dict[str, Any] = {"type": message.type, "content": json_value(message.content)}
    if isinstance(message, AIMessage) and message.tool_calls:
        found["tool_calls"] = [
            {"id": call["id"], "name": call["name"], "args": json_value(call["args"])}
            for call in message.tool_calls
        ]
    if isinstance(message, ToolMessage):
        found.update(name=message.name, tool_call_id=message.tool_call_id, status=message.status)
    return found
