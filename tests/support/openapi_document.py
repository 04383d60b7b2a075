"""An app's OpenAPI document as it serves it at ``/schema/openapi.json``, read without starting
the app (nothing its lifespan opens is needed for the document)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Litestar
from litestar.serialization import encode_json


def published(app: Litestar) -> dict[str, Any]:
    """The document, encoded as the app encodes it and decoded back to plain JSON values."""
    document: dict[str, Any] = msgspec.json.decode(encode_json(app.openapi_schema.to_schema()))
    return document
