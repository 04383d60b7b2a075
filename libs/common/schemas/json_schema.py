"""JSON Schemas of wire types, from msgspec, with their definitions inlined."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec


def inline_schema(struct: Any) -> dict[str, Any]:
    """``struct``'s JSON Schema without ``$ref``s (PAS wire types are not recursive), as
    grammar-constrained generation and OpenAPI operations want it. The keywords beside a
    ``$ref`` (msgspec writes a ``Meta``'s ``description`` or ``extra_json_schema`` there, and
    JSON Schema 2020-12 applies them with the reference) stay: see :func:`merge_beside_ref`."""
    document = msgspec.json.schema(struct)
    definitions = document.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                beside = {k: inline(v) for k, v in node.items() if k != "$ref"}
                return merge_beside_ref(inline(definitions[ref.removeprefix("#/$defs/")]), beside)
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    result: dict[str, Any] = inline(document)
    return result


def merge_beside_ref(definition: dict[str, Any], beside: dict[str, Any]) -> dict[str, Any]:
    """One schema that asks what ``{"$ref": <definition>, **beside}`` asks: a keyword only one
    of them holds (or both alike) as it is; one both hold with different values from each, in
    an ``allOf``, since a value of one would overwrite the other's (two ``not``s, two sets of
    ``properties``) and both must hold. ``allOf``s of both are joined."""
    merged = dict(definition)
    from_definition: dict[str, Any] = {}
    from_beside: dict[str, Any] = {}
    for key, value in beside.items():
        if key not in merged or merged[key] == value:
            merged[key] = value
        elif key == "allOf":
            merged[key] = [*merged[key], *value]
        else:
            from_definition[key] = merged.pop(key)
            from_beside[key] = value
    if from_beside:
        merged["allOf"] = [*merged.get("allOf", []), from_definition, from_beside]
    return merged


def choice_chain(
    choices: Sequence[dict[str, Any]], *, prefix: str, most: int | None = None
) -> tuple[dict[str, str], dict[str, Any]]:
    """A ``$ref`` and the ``$defs`` behind it for an ordered pick among ``choices`` (object
    schemas): the first, then perhaps ``next``, one of the later ones, and so on, at most
    ``most`` in all. So none comes twice and they keep their order, which a grammar-constrained
    list cannot say (asked for a list, a small model at temperature 0 gives one item again and
    again). The pick starts at the first choice. Unbounded, choice ``i`` is ``<prefix><i>``; a
    choice that a pick bounded by ``most`` reaches with fewer picks left than choices after it
    is defined again for those (``<prefix><i>_<left>``), so the definitions grow as ``most``
    times the choices."""
    definitions: dict[str, Any] = {}

    def define(index: int, left: int) -> str:
        later_ones = len(choices) - index - 1
        name = f"{prefix}{index}" if left >= later_ones else f"{prefix}{index}_{left}"
        if name in definitions:
            return name
        choice = dict(choices[index])
        definitions[name] = choice  # before the later ones: the definitions keep their order
        if later_ones and left:
            after = range(index + 1, len(choices))
            refs = [{"$ref": f"#/$defs/{define(later, left - 1)}"} for later in after]
            choice["properties"] = {**choice["properties"], "next": {"anyOf": refs}}
        return name

    if not choices:
        raise ValueError("a pick needs at least one choice")
    start = define(0, (len(choices) if most is None else most) - 1)
    return {"$ref": f"#/$defs/{start}"}, definitions
