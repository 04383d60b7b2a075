"""The GBNF grammar a JSON answer is held to, made from a JSON Schema by llama-cpp-python's
converter with three of its faults mended (all fixed in llama.cpp's own converter since)."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

from llama_cpp.llama_grammar import JSON_GBNF, RESERVED_NAMES, SchemaConverter

from libs.common.errors import InvalidRequest
from services.llm.backends.integer_range import (
    Alternative,
    gbnf,
    integer_alternatives,
)
from services.llm.backends.number_range import number_alternatives
from services.llm.backends.schema_bounds import integer_bounds, number_bounds

# The converter lets a string hold any character but a quote or a backslash, raw newlines and
# other control characters included, which JSON forbids: a model then writes
# `"value": "}]}\n{"` and the answer does not parse. llama.cpp's own converter (and
# llama-cpp-python's free-form JSON grammar) exclude them; so does the rule put in its place.
_LAX_STRING_CHAR = 'char ::= [^"\\\\] |'
_JSON_STRING_CHAR = 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |'

_LITERAL_ESCAPE = re.compile(r'[\r\n"\\]')
_LITERAL_ESCAPES = {"\r": "\\r", "\n": "\\n", '"': '\\"', "\\": "\\\\"}


class _Converter(SchemaConverter):
    """The converter writing a literal's backslashes as GBNF escapes (its own leaves them
    raw, so a JSON string with a quote in it, an enum of `said "record"`, JSON `"said
    \\"record\\""`, became a literal that llama.cpp refuses to parse), and holding an integer
    or a number to its schema's bounds (its own reads none: ``integer_range.py``,
    ``number_range.py``)."""

    def visit(self, schema: Any, name: str) -> Any:
        # The converter's methods, typed as what they are (it has no annotations).
        add_rule: Callable[[str, str], str] = self._add_rule
        visit: Callable[[Any, str], Any] = super().visit
        alternatives = _bounded(schema)
        if alternatives is None:
            return visit(schema, name)
        rule_name = name + "-" if name in RESERVED_NAMES else name or "root"
        return add_rule(rule_name, f"({gbnf(alternatives)}) space")

    def _format_literal(self, literal: str) -> str:
        escaped = _LITERAL_ESCAPE.sub(lambda match: _LITERAL_ESCAPES[match.group(0)], literal)
        return f'"{escaped}"'


def _bounded(schema: Any) -> list[Alternative] | None:
    """The alternatives of an integer or a number whose schema bounds it, else None."""
    kind = schema.get("type") if isinstance(schema, dict) else None
    if kind == "integer":
        least, greatest = integer_bounds(schema)
        if least is not None or greatest is not None:
            return integer_alternatives(least, greatest)
    elif kind == "number":
        lower, upper = number_bounds(schema)
        if lower is not None or upper is not None:
            return number_alternatives(lower, upper)
    return None


_new_converter: Callable[..., Any] = _Converter
"""A converter, typed as what it is to the code here (llama-cpp-python's has no annotations)."""


def json_grammar(schema: dict[str, Any] | None) -> str:
    """The GBNF text an answer must match: any JSON value, or one valid for ``schema``.
    Raises :class:`InvalidRequest` for a schema the converter cannot read."""
    if schema is None:
        return JSON_GBNF
    converter = _new_converter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    try:
        # resolve_refs rewrites the references in place: the caller's schema stays as it was.
        resolved = converter.resolve_refs(copy.deepcopy(schema), "request")
        converter.visit(resolved, "")
        rules: str = converter.format_grammar()
    except Exception as exc:
        raise InvalidRequest(f"cannot constrain output to this JSON schema: {exc}") from exc
    return rules.replace(_LAX_STRING_CHAR, _JSON_STRING_CHAR)
