"""OpenAPI schemas for PAS wire types taken from msgspec itself.

Litestar drops constraints that sit inside containers (``list[Annotated[str, Meta(...)]]``) and
does not say when unknown fields are forbidden, so the published schema would accept what the
service refuses. msgspec generates the exact JSON Schema of the Struct it decodes with; this
plugin hands that to Litestar.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, Reference, Schema
from litestar.plugins import OpenAPISchemaPlugin
from litestar.typing import FieldDefinition

from libs.common.schemas.json_schema import inline_schema

_WIRE_MODULES = ("libs.common.schemas.",)
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")
_NESTED_ONE = {"items", "additional_properties", "schema_not", "contains"}
_NESTED_MANY = {"any_of", "one_of", "all_of", "prefix_items"}
_NESTED_MAP = {"properties", "pattern_properties"}
_RENAMED = {"not": "schema_not", "$schema": "schema_"}


def _snake(key: str) -> str:
    return _RENAMED.get(key) or _CAMEL.sub("_", key).lower()


def schema_from_json_schema(node: dict[str, Any]) -> Schema | Reference:
    """Turn a JSON Schema dict into Litestar's ``Schema`` objects."""
    if "$ref" in node:
        return Reference(ref=node["$ref"])
    kwargs: dict[str, Any] = {}
    for key, value in node.items():
        kwargs[_snake(key)] = _convert(_snake(key), value)
    return Schema(**kwargs)


def _convert(name: str, value: Any) -> Any:
    if name in _NESTED_ONE and isinstance(value, dict):
        return schema_from_json_schema(value)
    if name in _NESTED_MANY:
        return [schema_from_json_schema(item) for item in value]
    if name in _NESTED_MAP:
        return {k: schema_from_json_schema(v) for k, v in value.items()}
    if name == "type":
        return [OpenAPIType(v) for v in value] if isinstance(value, list) else OpenAPIType(value)
    return value


class WireTypeSchemaPlugin(OpenAPISchemaPlugin):
    """Document every Struct from ``libs.common.schemas`` by msgspec's own JSON Schema."""

    @staticmethod
    def is_plugin_supported_type(value: Any) -> bool:
        return (
            isinstance(value, type)
            and issubclass(value, msgspec.Struct)
            and value.__module__.startswith(_WIRE_MODULES)
        )

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: Any) -> Schema:
        schema = schema_from_json_schema(inline_schema(field_definition.annotation))
        assert isinstance(schema, Schema)
        return schema


def documented_answer(data_container: Any, description: str) -> ResponseSpec:
    """A handler's 200 documented by the type it answers with, and without examples: Litestar
    would make them up from the type (random values, new at each start: an ``index`` of 9849,
    a ``logprob`` of -9e8), which mislead a reader and change the document at every start."""
    return ResponseSpec(data_container, generate_examples=False, description=description)


def answered_also_as(content: Mapping[str, Schema]) -> type[Operation]:
    """An operation whose 200 may also come in these media types, each with its schema: a
    stream (``stream: true``), a file. A ``ResponseSpec`` gives a status one media type, or
    none when the handler returns a ``Stream``."""

    @dataclass
    class OperationAnsweredAlsoAs(Operation):
        def __post_init__(self) -> None:
            ok = (self.responses or {}).get("200")
            if ok is not None and not isinstance(ok, Reference):
                added = {kind: OpenAPIMediaType(schema=schema) for kind, schema in content.items()}
                ok.content = {**(ok.content or {}), **added}

    return OperationAnsweredAlsoAs
