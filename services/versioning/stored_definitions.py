"""How a stored definition is read: what the version manager took once, and refuses now, is
mended on the way in, so that every version ever tagged stays readable.

Versions are immutable git tags: a rule added to ``WorkflowDefinition`` later must not make an
older version unreadable (a 500 on its every read, a champion no run can use). So each rule a
release adds and an older release did not have is met here, for stored content only; writes
meet the strict type alone.

- An empty stop sequence (``parameters.stop: [""]``, taken until 2026-12-07) is dropped, not
  kept under a looser type (``libs/common/schemas/empty_stops.py`` says why). The file in git
  keeps it (a tag is never rewritten); a rollback to the version writes the definition without
  it.
"""

from __future__ import annotations

import msgspec

from libs.common.schemas.empty_stops import decode_dropping_empty_stops
from libs.common.schemas.versioning import WorkflowDefinition

_decode_definition = msgspec.json.Decoder(WorkflowDefinition)


class StoredDefinition(msgspec.Struct, frozen=True, kw_only=True):
    definition: WorkflowDefinition
    dropped_stops: int
    """Empty stop sequences the stored file held and the definition leaves out."""


def read_stored_definition(content: bytes) -> StoredDefinition:
    """The definition a version's file holds, with what later releases refuse left out."""
    definition, dropped = decode_dropping_empty_stops(content, _decode_definition, "parameters")
    return StoredDefinition(definition=definition, dropped_stops=dropped)
