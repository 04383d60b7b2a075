"""Path and query parameters with the same constraints as the wire types they carry.

Litestar builds its parameter validation from ``Parameter(...)`` alone and drops the
``msgspec.Meta`` of an ``Annotated`` type, so the constraints are copied over here.
"""

from __future__ import annotations

import typing
from typing import Any

import msgspec
from litestar.params import Parameter


def constrained(annotated: Any, description: str) -> Any:
    """``Parameter(...)`` carrying the pattern and bounds of an ``Annotated[..., Meta]``."""
    meta = next(m for m in typing.get_args(annotated)[1:] if isinstance(m, msgspec.Meta))
    bounds = {
        name: getattr(meta, name)
        for name in ("pattern", "min_length", "max_length", "ge", "le")
        if getattr(meta, name) is not None
    }
    return Parameter(description=description, **bounds)
