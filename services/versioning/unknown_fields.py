"""Name every unknown key of a request body, not only the first one msgspec stops at.

Used as a ``before_request`` hook: it reads the (cached) body before Litestar decodes it into
the handler's Struct. A body that is not JSON (or nested too deep to read) is left to
Litestar, which reports it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import msgspec.inspect as mi
from litestar import Request
from litestar.exceptions import ValidationException

from libs.common.unreadable_json import UNREADABLE_JSON

BeforeRequest = Callable[[Request[Any, Any, Any]], Awaitable[None]]


def unknown_fields(value: Any, struct_type: type[msgspec.Struct]) -> list[tuple[str, list[str]]]:
    """``(path, allowed field names)`` for each key of ``value`` the Struct does not have,
    looking into nested Structs too."""
    found: list[tuple[str, list[str]]] = []
    _visit(value, mi.type_info(struct_type), "", found)
    return found


def _visit(value: Any, info: mi.Type, path: str, found: list[tuple[str, list[str]]]) -> None:
    if isinstance(info, mi.UnionType):
        for member in info.types:
            if isinstance(member, mi.StructType):
                _visit(value, member, path, found)
        return
    if not isinstance(info, mi.StructType) or not isinstance(value, dict):
        return
    fields = {field.encode_name: field for field in info.fields}
    for key, item in value.items():
        where = f"{path}.{key}" if path else str(key)
        field = fields.get(key)
        if field is None:
            if info.forbid_unknown_fields:
                found.append((where, sorted(fields)))
        else:
            _visit(item, field.type, where, found)


def name_unknown_fields(struct_type: type[msgspec.Struct]) -> BeforeRequest:
    async def check(request: Request[Any, Any, Any]) -> None:
        try:
            value = msgspec.json.decode(await request.body())
        except UNREADABLE_JSON:  # nested too deep too: Litestar reads it and says so
            return
        unknown = unknown_fields(value, struct_type)
        if unknown:
            raise ValidationException(
                detail="unknown fields: " + ", ".join(path for path, _ in unknown),
                extra=[
                    {
                        "key": path,
                        "message": f"unknown field (expected one of: {', '.join(allowed)})",
                        "source": "body",
                    }
                    for path, allowed in unknown
                ],
            )

    return check
