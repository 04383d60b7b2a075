"""Reading what was written before an empty stop sequence was refused.

Until 2026-12-07 a run's parameters (``POST /workflows/{id}/runs``) and a version's definition
took ``stop: [""]``; both refuse it now (``workflows.StopSequences``). What was stored with one
stays readable: a version in git (the version manager), a run's record (the runner's store),
a version an older version manager serves the runner, and a run an older runner serves the
runner's client (``pas trigger``). Each is read with the empty texts left out rather than under
a looser type, so that nothing past the read sees one: an empty stop sequence asks nothing a
model can do (it is found before every character), and a backend passes it over (the PAS LLM
service), refuses the call or stops at once. Left out, every backend runs what it was in as the
first does.

Documents without one are decoded by the strict type alone: the mending costs nothing on them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import msgspec

T = TypeVar("T")

_decode_any = msgspec.json.Decoder().decode


def decode_dropping_empty_stops(
    content: bytes | str, decoder: msgspec.json.Decoder[T], *at: str
) -> tuple[T, int]:
    """``content`` as ``decoder`` reads it, with the empty texts of the ``stop`` list found
    under the keys ``at`` (``"run", "parameters"``: ``content["run"]["parameters"]["stop"]``)
    left out; and how many were. Anything else wrong raises what ``decoder`` raises for it."""
    try:
        return decoder.decode(content), 0
    except msgspec.ValidationError:
        document = _decode_any(content)
        dropped = drop_empty_stops(document, *at)
        if dropped == 0:
            raise
        return msgspec.convert(document, decoder.type), dropped


def reader_dropping_empty_stops(answer_type: type[T], *at: str) -> Callable[[bytes], T]:
    """A reader of ``answer_type`` documents that leaves out the empty stop sequences under
    the keys ``at`` (:func:`decode_dropping_empty_stops`): what a client hands
    ``ServiceClient._decode`` as its ``read``."""
    decoder = msgspec.json.Decoder(answer_type)

    def read(content: bytes) -> T:
        return decode_dropping_empty_stops(content, decoder, *at)[0]

    return read


def drop_empty_stops(document: Any, *at: str) -> int:
    """Leaves the ``stop`` list under the keys ``at`` of a decoded document without empty
    texts; how many it had. A document of another shape is left as it is, for the strict
    type to report."""
    parameters = document
    for key in at:
        if not isinstance(parameters, dict):
            return 0
        parameters = parameters.get(key)
    if not isinstance(parameters, dict) or not isinstance(parameters.get("stop"), list):
        return 0
    stops: list[Any] = parameters["stop"]
    kept = [stop for stop in stops if stop != ""]
    parameters["stop"] = kept
    return len(stops) - len(kept)
