"""``POST /events`` bodies, read straight from their bytes into an :class:`EventBatch`.

Litestar reads a JSON body into Python objects and then converts them into the handler's type,
checking every text field against the no-NUL pattern on the way: measured on the bench's
batches that was about as much CPU as storing the events (docs/benchmarks.md, analytics). This
DTO, Litestar's extension point for reading a request body, decodes the bytes in one pass
instead, with the NUL-free types when the body holds no NUL escape
(:mod:`services.analytics.nul_free`). What a client sees does not change: the OpenAPI schema
is the plain ``EventBatch`` one, and a refused body is the same 400 naming the field (a body
with a NUL takes the strict types, whose refusal names it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, cast

import msgspec
from litestar.dto import MsgspecDTO
from litestar.exceptions import ClientException, SerializationException, ValidationException

from libs.common.schemas.nul_escape import may_hold_nul
from libs.common.schemas.usage import EventBatch, QualityScore, UsageEvent, WorkflowRun
from libs.common.unreadable_json import NESTED_TOO_DEEP
from services.analytics.nul_free import NulFreeRun, NulFreeUsage

if TYPE_CHECKING:
    from litestar._openapi.schema_generation import SchemaCreator
    from litestar.dto._backend import DTOBackend
    from litestar.openapi.spec import Reference, Schema
    from litestar.typing import FieldDefinition


_BATCH_LIMIT = msgspec.Meta(max_length=50_000)


class _NulFreeBatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """:class:`EventBatch` from a body without NUL (scores are few: they keep the strict type)."""

    usage: Annotated[list[NulFreeUsage], _BATCH_LIMIT] = msgspec.field(default_factory=list)
    runs: Annotated[list[NulFreeRun], _BATCH_LIMIT] = msgspec.field(default_factory=list)
    scores: Annotated[list[QualityScore], _BATCH_LIMIT] = msgspec.field(default_factory=list)


assert _NulFreeBatch.__struct_fields__ == EventBatch.__struct_fields__
_decode_strict = msgspec.json.Decoder(EventBatch).decode
_decode_nul_free = msgspec.json.Decoder(_NulFreeBatch).decode


def decode_event_batch(body: bytes) -> EventBatch:
    """The batch in ``body``; raises msgspec's ``DecodeError`` (or its ``ValidationError``)
    exactly as decoding it as an ``EventBatch`` would."""
    if may_hold_nul(body):
        return _decode_strict(body)
    batch = _decode_nul_free(body)
    # Struct construction checks nothing: the lists (already checked) are handed over; their
    # items are subclasses of the strict types.
    return EventBatch(
        usage=cast("list[UsageEvent]", batch.usage),
        runs=cast("list[WorkflowRun]", batch.runs),
        scores=batch.scores,
    )


class EventBatchBody(MsgspecDTO[EventBatch]):
    """Reads the ``data`` of ``POST /events`` with :func:`decode_event_batch`; give it as the
    handler's ``dto`` with ``return_dto=None``."""

    def decode_bytes(self, value: bytes) -> Any:
        try:
            return decode_event_batch(value)
        except msgspec.ValidationError as exc:
            # Litestar's own refusal of a handler's data: the message, and the JSON path
            # as its key (the problem handler names the field from them).
            message, _, where = str(exc).partition(" - at `$.")
            error = {"message": message, "key": where.rstrip("`") or "data", "source": "body"}
            raise ValidationException(
                detail=f"Validation failed for POST {self.asgi_connection.url.path}",
                extra=[error],
            ) from exc
        except msgspec.DecodeError as exc:
            raise SerializationException(str(exc)) from exc
        except RecursionError as exc:
            # Past msgspec's depth (its RecursionError is not a DecodeError): the answer
            # Litestar's own reading of a body gets (libs/common/kit/problems.py).
            raise ClientException(f"body: {NESTED_TOO_DEEP}") from exc

    @classmethod
    def create_for_field_definition(
        cls,
        field_definition: FieldDefinition,
        handler_id: str,
        backend_cls: type[DTOBackend] | None = None,
    ) -> None:
        """Nothing to build: the body is decoded by :func:`decode_event_batch`."""

    @classmethod
    def create_openapi_schema(
        cls, field_definition: FieldDefinition, handler_id: str, schema_creator: SchemaCreator
    ) -> Reference | Schema:
        """The schema of the handler's own type, as without a DTO."""
        return schema_creator.for_field_definition(field_definition)
