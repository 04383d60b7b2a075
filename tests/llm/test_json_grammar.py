"""The grammar the embedded backend constrains JSON answers with: JSON strings may not hold raw
control characters (RFC 8259), which llama-cpp-python's schema converter lets through (a model
then wrote `"value": "}]}\\n{"`, and the answer did not parse); an integer or a number holds
to its bounds, which the converter does not read."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from libs.common.errors import InvalidRequest
from libs.common.schemas.json_schema import inline_schema
from services.kafka_llm_processor.prompts import SCHEMAS
from services.langgraph_runner.workflows.document_analysis import Analysis
from services.llm.backends.integer_range import integer_alternatives, regex
from services.llm.backends.json_grammar import json_grammar
from services.llm.backends.number_range import number_alternatives
from services.llm.backends.schema_bounds import Bound, integer_bounds, number_bounds

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


@given(
    least=st.none() | st.integers(-(10**7), 10**7),
    greatest=st.none() | st.integers(-(10**7), 10**7),
    values=st.lists(st.integers(-(10**8), 10**8), max_size=30),
)
def test_an_integer_range_admits_exactly_the_integers_in_it_as_json_writes_them(
    least: int | None, greatest: int | None, values: list[int]
) -> None:
    assume(least is None or greatest is None or least <= greatest)
    allowed = re.compile(regex(integer_alternatives(least, greatest)))
    near = [b + d for b in (least, greatest, 0) if b is not None for d in (-11, -10, -1, 0, 1, 9)]

    for value in [*values, *near]:
        inside = (least is None or value >= least) and (greatest is None or value <= greatest)
        assert bool(allowed.fullmatch(str(value))) == inside, value
    for written in ("-0", "00", "01", "-01", "+1", "1.0", ""):
        assert not allowed.fullmatch(written)


def test_an_integer_above_a_least_longer_than_the_digit_limit_is_admitted() -> None:
    # Unbounded above, integers are written up to MAX_DIGITS digits, unless the least is longer.
    allowed = re.compile(regex(integer_alternatives(10**17, None)))

    assert allowed.fullmatch(str(10**17))
    assert allowed.fullmatch(str(10**17 + 5))
    assert not allowed.fullmatch(str(10**17 - 1))
    assert not allowed.fullmatch(str(10**15))  # sixteen digits


@pytest.mark.parametrize(
    ("bounds", "expected"),
    [
        ({"minimum": 1, "maximum": 365}, (1, 365)),
        ({"minimum": 0.5, "maximum": 9.5}, (1, 9)),
        ({"exclusiveMinimum": 0, "exclusiveMaximum": 10}, (1, 9)),  # drafts 6 to 2020-12
        ({"minimum": 0, "exclusiveMinimum": True, "maximum": 5}, (1, 5)),  # draft 4
        ({"minimum": 2, "exclusiveMinimum": 5}, (6, None)),
        ({"maximum": -3}, (None, -3)),
        ({"minimum": "1"}, (None, None)),
    ],
)
def test_integer_bounds_as_each_draft_writes_them(
    bounds: dict[str, Any], expected: tuple[int | None, int | None]
) -> None:
    assert integer_bounds({"type": "integer", **bounds}) == expected


def test_an_integer_s_bounds_hold_its_rule_and_bounds_without_an_integer_are_refused() -> None:
    schema = {
        "type": "object",
        "properties": {"days": {"type": "integer", "minimum": 1, "maximum": 365}},
        "required": ["days"],
    }

    [days] = [rule for rule in json_grammar(schema).splitlines() if rule.startswith("days ::=")]

    assert days == (
        'days ::= ([1-9] | [1-9] [0-9] | [1-2] [0-9]{2} | "3" [0-5] [0-9] | "3" "6" [0-5]) space'
    )
    with pytest.raises(InvalidRequest, match="no integer lies between"):
        json_grammar({"type": "integer", "minimum": 3, "maximum": 2})


_BOUND_VALUES = st.decimals(min_value=-100, max_value=100, places=3)
_BOUNDS = st.none() | st.builds(Bound, _BOUND_VALUES, st.booleans())


def _inside(value: Decimal, lower: Bound | None, upper: Bound | None) -> bool:
    above = lower is None or value > lower.value or (value == lower.value and not lower.exclusive)
    below = upper is None or value < upper.value or (value == upper.value and not upper.exclusive)
    return above and below


def _writings(value: Decimal) -> list[str]:
    """``value`` as JSON may write it without an exponent: as it is, with a zero more, and
    as an integer when it is one."""
    text = format(value.normalize(), "f") if value else "0"
    found = [text, text + ("0" if "." in text else ".0")]
    return found + ([text + ".000"] if "." not in text else [])


@given(
    lower=_BOUNDS,
    upper=_BOUNDS,
    values=st.lists(st.decimals(min_value=-200, max_value=200, places=5), max_size=20),
)
def test_a_number_range_admits_exactly_the_numbers_in_it_as_json_writes_them(
    lower: Bound | None, upper: Bound | None, values: list[Decimal]
) -> None:
    assume(lower is None or upper is None or lower.value < upper.value)
    allowed = re.compile(regex(number_alternatives(lower, upper)))
    steps = [Decimal(0), Decimal(1), Decimal("0.1"), Decimal("0.001"), Decimal("0.00001")]
    edges = [b.value for b in (lower, upper) if b is not None] + [Decimal(0)]
    near = [edge + sign * step for edge in edges for step in steps for sign in (1, -1)]

    for value in [*values, *near]:
        for written in _writings(value):
            assert bool(allowed.fullmatch(written)) == _inside(value, lower, upper), written
    for written in ("-0", "-0.0", "00", "01.5", "+1", ".5", "1.", "1e0", "1E-2", ""):
        assert not allowed.fullmatch(written), written


@pytest.mark.parametrize(
    ("bounds", "expected"),
    [
        ({"minimum": 0, "maximum": 1}, (Bound(Decimal(0), False), Bound(Decimal(1), False))),
        ({"exclusiveMinimum": 0.1}, (Bound(Decimal("0.1"), True), None)),  # drafts 6 to 2020-12
        ({"maximum": 2.5, "exclusiveMaximum": True}, (None, Bound(Decimal("2.5"), True))),  # 4
        ({"minimum": 1, "exclusiveMinimum": 1}, (Bound(Decimal(1), True), None)),
        ({"maximum": 5, "exclusiveMaximum": 7}, (None, Bound(Decimal(5), False))),
        ({"minimum": True, "maximum": "3"}, (None, None)),
    ],
)
def test_number_bounds_as_each_draft_writes_them(
    bounds: dict[str, Any], expected: tuple[Bound | None, Bound | None]
) -> None:
    assert number_bounds({"type": "number", **bounds}) == expected


def test_a_number_s_bounds_hold_its_rule_and_bounds_without_a_number_are_refused() -> None:
    schema = {
        "type": "object",
        "properties": {"confidence": {"type": "number", "minimum": 0, "maximum": 1}},
        "required": ["confidence"],
    }

    [rule] = [rule for rule in json_grammar(schema).splitlines() if rule.startswith("confidence ")]

    assert rule == 'confidence ::= ("0" | "0" "." [0-9]{1,16} | "1" | "1" "." "0"{1,16}) space'
    with pytest.raises(InvalidRequest, match="no number lies between"):
        json_grammar({"type": "number", "minimum": 1, "exclusiveMaximum": 1})
