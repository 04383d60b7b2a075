"""An ordered pick among choices as JSON Schema ``$defs``: from the first choice, each ``next``
a later one, at most ``most`` in all; the processor's key figures and the runner's key points
are asked for so."""

from __future__ import annotations

from itertools import combinations
from typing import Any

import pytest

from libs.common.schemas.json_schema import choice_chain
from services.llm.backends.json_grammar import json_grammar


def _choices(count: int) -> list[dict[str, Any]]:
    return [
        {"type": "object", "properties": {"item": {"enum": [f"c{i}"]}}, "required": ["item"]}
        for i in range(count)
    ]


def _picks(start: dict[str, str], definitions: dict[str, Any]) -> set[tuple[str, ...]]:
    """Every pick the schema allows, as the items it holds."""
    found: set[tuple[str, ...]] = set()

    def walk(ref: dict[str, str], before: tuple[str, ...]) -> None:
        choice = definitions[ref["$ref"].removeprefix("#/$defs/")]
        [item] = choice["properties"]["item"]["enum"]
        picked = (*before, item)
        found.add(picked)
        for later in choice["properties"].get("next", {}).get("anyOf", []):
            walk(later, picked)

    walk(start, ())
    return found


def _ordered_from_first(count: int, most: int) -> set[tuple[str, ...]]:
    return {
        ("c0", *(f"c{i}" for i in rest))
        for size in range(most)
        for rest in combinations(range(1, count), size)
    }


def test_unbounded_each_choice_is_defined_once_and_every_pick_keeps_the_order() -> None:
    start, definitions = choice_chain(_choices(4), prefix="figure")

    assert start == {"$ref": "#/$defs/figure0"}
    assert list(definitions) == ["figure0", "figure1", "figure2", "figure3"]
    assert _picks(start, definitions) == _ordered_from_first(4, 4)


@pytest.mark.parametrize(("count", "most"), [(1, 3), (3, 3), (6, 3), (12, 2), (40, 3)])
def test_bounded_picks_are_every_ordered_pick_from_the_first_up_to_most(
    count: int, most: int
) -> None:
    start, definitions = choice_chain(_choices(count), prefix="point", most=most)

    if count <= 12:
        assert _picks(start, definitions) == _ordered_from_first(count, most)
    # The definitions grow as most times the choices, not as the picks.
    assert len(definitions) <= most * count
    # The embedded model's converter makes a grammar of it.
    json_grammar({"type": "object", "properties": {"p": start}, "$defs": definitions})


def test_a_pick_needs_a_choice() -> None:
    with pytest.raises(ValueError, match="at least one choice"):
        choice_chain([], prefix="point")
