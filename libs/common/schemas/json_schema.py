"""JSON Schemas of wire types, from msgspec, with their definitions inlined."""

from __future__ import annotations

from typing import Any

import msgspec


def inline_schema(struct: Any) -> dict[str, Any]:
    """``struct``'s JSON Schema without ``$ref``s (PAS wire types are not recursive), as
    grammar-constrained generation and OpenAPI operations want it."""
    document = msgspec.json.schema(struct)
    definitions = document.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(definitions[ref.removeprefix("#/$defs/")])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    result: dict[str, Any] = inline(document)
    return result
