"""How a stored definition is read: what the version manager took once, and refuses now, is
mended on the way in, so that every version ever tagged stays readable.

Versions are immutable git tags: a rule added to ``WorkflowDefinition`` later must not make an
older version unreadable (a 500 on its every read, a champion no run can use). So each rule a
release adds and an older release did not have is met here, for stored content only; writes
meet the strict type alone.

- An empty stop sequence (``parameters.stop: [""]``, taken until 2026-12-07) is dropped, not
  kept under a looser type: it asks nothing a model can do (it is found before every
  character), so the version means the same without it, and the runner, which would pass it
  on to its LLM calls, never sees it. A backend passes it over (the PAS LLM service), refuses
  the call or stops at once: dropped, every backend runs the version as the first does. The
  file in git keeps it (a tag is never rewritten); a rollback to the version writes the
  definition without it.
"""

from __future__ import annotations

from typing import Any

import msgspec

from libs.common.schemas.versioning import WorkflowDefinition

_decode_json = msgspec.json.Decoder().decode


class StoredDefinition(msgspec.Struct, frozen=True, kw_only=True):
    definition: WorkflowDefinition
    dropped_stops: int
    """Empty stop sequences the stored file held and the definition leaves out."""


def read_stored_definition(content: bytes) -> StoredDefinition:
    """The definition a version's file holds, with what later releases refuse left out."""
    document = _decode_json(content)
    dropped = _drop_empty_stops(document)
    return StoredDefinition(
        definition=msgspec.convert(document, WorkflowDefinition), dropped_stops=dropped
    )


def _drop_empty_stops(document: Any) -> int:
    """Leaves ``parameters.stop`` of the decoded file without empty texts; how many it had.
    Anything else wrong is left for the conversion to report."""
    if not isinstance(document, dict):
        return 0
    parameters = document.get("parameters")
    if not isinstance(parameters, dict) or not isinstance(parameters.get("stop"), list):
        return 0
    stops: list[Any] = parameters["stop"]
    kept = [stop for stop in stops if stop != ""]
    parameters["stop"] = kept
    return len(stops) - len(kept)
