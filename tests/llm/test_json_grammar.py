"""The grammar the embedded backend constrains JSON answers with: JSON strings may not hold raw
control characters (RFC 8259), which llama-cpp-python's schema converter lets through (a model
then wrote `"value": "}]}\\n{"`, and the answer did not parse)."""

from __future__ import annotations

from typing import Any

import pytest

from libs.common.schemas.json_schema import inline_schema
from services.kafka_llm_processor.prompts import SCHEMAS
from services.langgraph_runner.workflows.document_analysis import Analysis
from services.llm.backends.embedded import _json_grammar

STRICT_CHAR = r'char ::= [^"\\\x7F\x00-\x1F] |'


@pytest.mark.parametrize(
    "schema",
    [SCHEMAS["key_figures"], SCHEMAS["sentiment"], inline_schema(Analysis)],
    ids=["key_figures", "sentiment", "document_analysis"],
)
def test_strings_in_a_schema_s_grammar_exclude_control_characters(schema: dict[str, Any]) -> None:
    rules = _json_grammar(schema).splitlines()

    [char] = [rule for rule in rules if rule.startswith("char ::=")]
    assert char.startswith(STRICT_CHAR), char
