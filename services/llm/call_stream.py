"""Tool calls read as the model writes them, so that a stream gives each call's name as soon
as it is written and its arguments piece by piece, as OpenAI, vLLM and llama.cpp's server
stream them (Ollama sends a call whole).

The answer with tools is ``{"tool_calls": [{"name": ..., "arguments": {...}}, ...]}``
(``tool_calling.py``), which the embedded model's grammar writes in that order; a remote
server held to the same schema may write the keys otherwise, and then the calls it has not
begun are left to be given whole once the answer is read (``CallsMade``). The arguments go
out as the model writes them, less the blanks between JSON tokens: joined, they are the same
JSON value as the answer read whole gives.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from typing import Final

import msgspec

_BLANKS: Final = " \t\n\r"


def new_call_id() -> str:
    """A tool call's id, in OpenAI's form (``call_`` and 24 characters)."""
    return f"call_{uuid.uuid4().hex[:24]}"


class CallStarted(msgspec.Struct, frozen=True, kw_only=True):
    """A stream event: a call's name is written; its arguments follow."""

    index: int  # the call's place among the answer's calls
    id: str
    name: str


class ArgumentsWritten(msgspec.Struct, frozen=True, kw_only=True):
    """A stream event: the next piece of call ``index``'s arguments (JSON text)."""

    index: int
    text: str


class _NeedMore(Exception):
    """The text ends before the part being read does."""


class _NotCalls(Exception):
    """The text is not calls in the order read here."""


class CallStream:
    """Reads an answer's text as it grows (:meth:`read`): the calls begun, and the pieces of
    their arguments, each given once. A call of a tool not in ``names`` (a remote model
    that did not keep to the schema) is not begun: the answer is then read whole."""

    def __init__(self, names: Collection[str]) -> None:
        self._names = frozenset(names)
        self.ids: list[str] = []  # each call begun, in order
        self._position = 0  # where reading goes on from
        self._state = "opening"  # opening, head, arguments, after, done, off
        self._depth = 0  # of the arguments' brackets
        self._in_string = False
        self._escaped = False

    @property
    def begun(self) -> int:
        return len(self.ids)

    def read(self, text: str) -> list[CallStarted | ArgumentsWritten]:
        """What ``text`` (the answer so far, each time longer) adds."""
        events: list[CallStarted | ArgumentsWritten] = []
        try:
            while self._state not in ("done", "off"):
                if self._state == "arguments":
                    piece = self._arguments(text)
                    if piece:
                        events.append(ArgumentsWritten(index=self.begun - 1, text=piece))
                    if self._state == "arguments":
                        break
                else:
                    self._step(text, events)
        except _NeedMore:
            pass
        except _NotCalls:
            self._state = "off"
        return events

    def _step(self, text: str, events: list[CallStarted | ArgumentsWritten]) -> None:
        at = self._position
        if self._state == "opening":
            for literal in ("{", '"tool_calls"', ":", "["):
                at = _literal(text, at, literal)
            self._state = "head"
        elif self._state == "head":
            for literal in ("{", '"name"', ":"):
                at = _literal(text, at, literal)
            at, name = _string(text, at)
            if name not in self._names:
                raise _NotCalls
            for literal in (",", '"arguments"', ":"):
                at = _literal(text, at, literal)
            at = _literal(text, at, "{") - 1  # the arguments begin with their bracket
            call_id = new_call_id()
            self.ids.append(call_id)
            events.append(CallStarted(index=self.begun - 1, id=call_id, name=name))
            self._state = "arguments"
        elif self._state == "after":
            at = _literal(text, at, "}")
            at = _blank(text, at)
            following = text[at : at + 1]
            if not following:
                raise _NeedMore
            if following not in ",]":
                raise _NotCalls
            at += 1
            self._state = "head" if following == "," else "done"
        self._position = at

    def _arguments(self, text: str) -> str:
        """The arguments' text from where the last read stopped, blanks between tokens left
        out; ``after`` once their closing bracket is read."""
        kept = []
        at = self._position
        while at < len(text):
            char = text[at]
            at += 1
            if self._in_string:
                kept.append(char)
                if self._escaped:
                    self._escaped = False
                elif char == "\\":
                    self._escaped = True
                elif char == '"':
                    self._in_string = False
                continue
            if char in _BLANKS:
                continue
            kept.append(char)
            if char == '"':
                self._in_string = True
            elif char in "{[":
                self._depth += 1
            elif char in "}]":
                self._depth -= 1
                if self._depth == 0:
                    self._state = "after"
                    break
        self._position = at
        return "".join(kept)


def _blank(text: str, at: int) -> int:
    while at < len(text) and text[at] in _BLANKS:
        at += 1
    return at


def _literal(text: str, at: int, literal: str) -> int:
    at = _blank(text, at)
    written = text[at : at + len(literal)]
    if written != literal:
        raise _NeedMore if literal.startswith(written) else _NotCalls
    return at + len(literal)


def _string(text: str, at: int) -> tuple[int, str]:
    """A JSON string from ``at`` (blanks first): where it ends, and its value."""
    start = _literal(text, at, '"')
    index = start
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char == '"':
            try:
                return index + 1, str(msgspec.json.decode(text[start - 1 : index + 1]))
            except msgspec.DecodeError as exc:
                raise _NotCalls from exc
        index += 1
    raise _NeedMore
