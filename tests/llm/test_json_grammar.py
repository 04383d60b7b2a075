"""The grammar the embedded backend constrains JSON answers with: JSON strings may not hold raw
control characters (RFC 8259), which llama-cpp-python's schema converter lets through (a model
then wrote `"value": "}]}\\n{"`, and the answer did not parse)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from libs.common.schemas.json_schema import inline_schema
from services.kafka_llm_processor.prompts import SCHEMAS
from services.langgraph_runner.workflows.document_analysis import Analysis
from services.llm.backends.json_grammar import json_grammar

STRICT_CHAR = r'char ::= [^"\\\x7F\x00-\x1F] |'


@pytest.mark.parametrize(
    "schema",
    [SCHEMAS["key_figures"], SCHEMAS["sentiment"], inline_schema(Analysis)],
    ids=["key_figures", "sentiment", "document_analysis"],
)
def test_strings_in_a_schema_s_grammar_exclude_control_characters(schema: dict[str, Any]) -> None:
    rules = json_grammar(schema).splitlines()

    [char] = [rule for rule in rules if rule.startswith("char ::=")]
    assert char.startswith(STRICT_CHAR), char


@pytest.mark.parametrize(
    "literal",
    ['said "record"', "C:\\desk", '\\"', "line\nbreak"],
    ids=["quote", "backslash", "both", "newline"],
)
def test_a_literal_s_quotes_and_backslashes_are_escaped_for_gbnf(literal: str) -> None:
    schema = {"type": "object", "properties": {literal: {"const": literal}}, "required": [literal]}

    rules = json_grammar(schema)

    # GBNF reads the literal back as the JSON text of the string: what the answer must hold.
    encoded = json.dumps(literal)
    gbnf = '"' + encoded.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    assert gbnf in rules, rules


def test_the_caller_s_schema_is_left_as_it_was() -> None:
    schema = {
        "$defs": {"a": {"type": "string"}},
        "type": "object",
        "properties": {"x": {"$ref": "#/$defs/a"}},
    }
    before = json.dumps(schema)

    json_grammar(schema)

    assert json.dumps(schema) == before
