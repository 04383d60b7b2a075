"""A document's text as the clauses a key point may copy: its sentences, and a long sentence
cut where it joins clauses ("..., and ...", "...; ..."), then at its commas, each at most a
given length. A key point chosen among them says what the document says, word for word."""

from __future__ import annotations

import re

# A sentence ends at ., ! or ? (perhaps inside a closing quote or bracket) before a space and
# a word, a number or an opening quote ("... year over year. iPhone revenue"); or at a line
# break. (\u2018-\u201d are the curly quotes.)
_SENTENCE_END = re.compile(
    r"(?:(?<=[.!?])|(?<=[.!?][\"'\u2019\u201d)]))\s+(?=[\"'\u2018\u201c(]?[\w$€£¥])|\s*\n\s*"
)
# Abbreviations whose point ends no sentence: "Brands, Inc. (the", "U.S. Treasury", "Dr. Lee".
_ABBREVIATION_END = re.compile(
    r"(?:\b(?:Inc|Corp|Co|Ltd|Plc|LLC|Mr|Mrs|Ms|Dr|Prof|St|No|Jr|Sr|vs|approx|est|"
    r"Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec|e\.g|i\.e|cf)|\b[A-Z](?:\.[A-Z])*)\.$"
)
# Where a sentence joins clauses: the joining word goes, the clauses stay.
_CLAUSE_JOIN = re.compile(r",\s+(?:and|but|while|whereas|which|as)\s+|;\s+")
_COMMA = re.compile(r",\s+")
_EDGE = " \t.;,"


def clauses(text: str, *, max_chars: int) -> list[str]:
    """The clauses of ``text`` in order, each once, each at most ``max_chars`` long, without
    their closing point. A part with no place to cut is cut at its last space within
    ``max_chars`` (its opening words)."""
    found: dict[str, None] = {}
    for sentence in _sentences(text):
        for clause in _cut(sentence, max_chars):
            if clause := clause.strip(_EDGE):
                found.setdefault(clause)
    return list(found)


def _sentences(text: str) -> list[str]:
    """The sentences, as slices of ``text``: a piece after an abbreviation goes on with it,
    with what stood between them ("Inc. (the", a line break too)."""
    text = text.strip()
    spans: list[tuple[int, int]] = []
    start = 0
    for end in [*_SENTENCE_END.finditer(text), None]:
        stop = len(text) if end is None else end.start()
        if spans and _ABBREVIATION_END.search(text, spans[-1][0], spans[-1][1]):
            spans[-1] = (spans[-1][0], stop)
        else:
            spans.append((start, stop))
        if end is not None:
            start = end.end()
    return [text[first:last] for first, last in spans]


def _cut(sentence: str, max_chars: int) -> list[str]:
    if len(sentence) <= max_chars:
        return [sentence]
    for separator in (_CLAUSE_JOIN, _COMMA):
        parts = _parts(sentence, separator)
        if len(parts) > 1:
            return [
                piece
                for start, end in _packed(parts, max_chars)
                for piece in _cut(sentence[start:end], max_chars)
            ]
    head = sentence[: max_chars + 1]
    return [head[: head.rfind(" ")] if " " in head else head[:max_chars]]


def _parts(sentence: str, separator: re.Pattern[str]) -> list[tuple[int, int]]:
    """Where the parts between ``separator``'s matches start and end."""
    starts, ends = [0], []
    for match in separator.finditer(sentence):
        ends.append(match.start())
        starts.append(match.end())
    ends.append(len(sentence))
    return list(zip(starts, ends, strict=True))


def _packed(parts: list[tuple[int, int]], max_chars: int) -> list[tuple[int, int]]:
    """Neighbouring parts taken together again, with what joined them, while they fit
    ``max_chars``: a sentence cut at every comma would give "up 13 percent year over year"
    alone."""
    packed = [parts[0]]
    for start, end in parts[1:]:
        if end - packed[-1][0] <= max_chars:
            packed[-1] = (packed[-1][0], end)
        else:
            packed.append((start, end))
    return packed
