"""A document's key figures as it pairs them: each quantity it writes with the name it gives it.

A small model asked for key figures names them badly when it writes the names itself: it
lists the company's name, or one name for two figures ("Apple: 13 percent", "Apple Inc.: 13
percent"). The pairs a filing writes are plain to read, though: ``quarterly revenue of $89.5
billion``, ``Net income was $72.4 billion``, ``up 13 percent`` (a change of the figure named
before it), ``or $3.04 per share``, ``to $211.9 billion``, ``a $2.9 billion FDIC special
assessment``. :func:`named_figures` reads them, so that a model can be asked to choose among
them (its schema then holds a name and its value together) instead of pairing them itself.

How a figure's name is found, from the words right before its quantity in the same sentence:

- words that only link a name to its number (``was``, ``of``, ``a record``, ``totalled``) are
  passed over;
- the name is the run of words before them back to a word that starts a clause (a verb of
  reporting such as ``posted`` or ``declared``, ``and``, ``which``, a comma), without a leading
  article, and kept to ``NAME_CHARS`` by cutting a trailing ``for the quarter``;
- a change (``up 13 percent``, ``increased 8%``, ``revenue increased $13.6 billion``, ``cut
  its policy rate by 25 basis points``) is named after the figure it changes, as ``<name>
  change``, its value keeping the word that says which way (``up 13 percent``); ``or 7%``
  after it is the same change again; ``rose to $1.14 billion`` is the level, not a change;
- ``or $16.23 per share``, ``to $211.9 billion`` and ``plus or minus 2%`` follow the figure
  named before them (a figure per share is named so);
- a quantity with no name before it, or right after ``an additional`` or a verb (``the bank
  processed 18,000 suspicious transactions``), takes the words after it; else the words after
  the sentence's verb of reporting (``NVIDIA reported revenue``).

Bare numbers that measure nothing (a year, a day, the ``1`` of ``Tier 1``) are no figures: a
figure has a currency, a percentage, a scale (``1.8 million``) or thousands grouped by commas.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from libs.common.grounding import quantity_matches

NAME_CHARS = 60
"""The longest name or value given (longer names lose a trailing ``for the quarter``)."""


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_SENTENCE_END = re.compile(r"[.;:!?](?:\s|$)")
_WORD = re.compile(r"[A-Za-z0-9][\w&'/-]*")
# Between a name and its number: "revenue was $56.2 billion", "a record $14.51 billion".
_LINKING = _words(
    """
    was were is are of at a an the record about approximately nearly roughly some totalled
    totaled total totaling totalling reached reaching came in stood stand stands now amounted
    to be
    """
)
# Words that start the clause a name is in: the name is after them.
_CLAUSE_STARTS = _words(
    """
    and or but which that while with reported reports report posted posts announced
    announces declared declares set sets said says delivered delivers expects expected
    bringing including included includes reaching ended ending compared against versus
    on by during from
    """
)
_ARTICLES = _words("a an the its their our")
_DIRECTIONS = _words(
    """
    up increased increase increases rose rises grew grows gained gains jumped climbed widened
    down decreased decrease decreases fell falls declined declines dropped drops lost eased
    slowed narrowed
    """
)
"""Words that make the number after them a change: ``up 13 percent``."""
_MOVES = _DIRECTIONS | _words(
    "cut cuts raised raises lowered lowers hiked hikes reduced reduces lifted trimmed"
)
"""Verbs of a change said with "by": ``cut its policy rate by 25 basis points``."""
_NAMED_AFTER = _words("an additional further another new")
"""Words right before a number whose name comes after it."""
_NOT_IN_A_NAME_AFTER = _CLAUSE_STARTS | _LINKING | _DIRECTIONS | _words("per from in for")
_COUNTED = _words("delivered produced sold shipped added hired repurchased")
"""Verbs before a count, said after its name: ``vehicles delivered``."""
_REPORTING = _words("reported posted announced")
_TRAILING_PHRASE = re.compile(r"\s+(?:for|in|of|during|over|at)\s+\S.*$")
_PER_SHARE = re.compile(r"\s*per\s+(?:diluted\s+)?share\b", re.IGNORECASE)
_ENDS_WITH_OR = re.compile(r"(?:^|\W)or$")
_ENDS_WITH_TO = re.compile(r"(?:^|\W)to$")
_AFTER = re.compile(r"\s+((?:[A-Za-z][\w&'-]*\s?){1,4})")
_AFTER_LEAD = re.compile(r"\s+(?:in|of)\s+(?=[A-Za-z])")


@dataclass(frozen=True, slots=True)
class NamedFigure:
    name: str
    value: str


def named_figures(text: str) -> list[NamedFigure]:
    """Every figure ``text`` names (see the module), each pair once, in order."""
    figures: dict[tuple[str, str], None] = {}
    clause_start = 0  # after the sentence's start or its last quantity, whichever is later
    previous: _Figure | None = None  # the sentence's last figure named
    scanned_to = 0  # sentence ends are looked for once: a table of bare numbers moves no clause
    for match in quantity_matches(text):
        start, end = match.start(), match.end()
        # From where the last look ended (less one: an end is two characters at most), never
        # before the clause: scanning from the clause each time was quadratic in the numbers.
        boundary = _last_sentence_end(text, max(clause_start, scanned_to - 1), start)
        scanned_to = start
        if boundary is not None:
            clause_start, previous = boundary, None
        if not _measures_something(text, match):
            continue
        per_share = _PER_SHARE.match(text, end)
        value = match.group(0).strip() + (" per share" if per_share else "")
        figure = _figure(text, text[clause_start:start], end, value, previous)
        clause_start = per_share.end() if per_share else end
        if figure is None:
            continue
        previous = figure
        if len(figure.value) <= NAME_CHARS:
            figures[(figure.name, figure.value)] = None
    return [NamedFigure(name, value) for name, value in figures]


@dataclass(frozen=True, slots=True)
class _Figure:
    name: str
    value: str
    base: str
    """The name of the figure itself, a change's too (``revenue`` for ``revenue change``)."""
    direction: str | None = None


def _last_sentence_end(text: str, searched_from: int, before: int) -> int | None:
    found = None
    for end in _SENTENCE_END.finditer(text, searched_from, before):
        found = end.end()
    return found


def _measures_something(text: str, match: re.Match[str]) -> bool:
    written = match.group(0)
    start = match.start() + len(written) - len(written.lstrip())
    if start > 0 and (text[start - 1].isalnum() or text[start - 1] == "/"):
        return False  # a piece of "5-1/2" or "FY24"
    if match["currency"] or match["percent"] or match["bp"] or match["scale"]:
        return True
    return "," in match["number"]


def _figure(
    text: str, clause: str, end: int, value: str, previous: _Figure | None
) -> _Figure | None:
    """The figure of the quantity ending at ``end``, written ``value`` (with ``per share``
    when the text says so), ``clause`` the text since the last quantity or sentence end."""
    # Each clause names its own figure: "..., up 21%", "..., or $16.23 per share".
    words = [w.group(0) for w in _WORD.finditer(clause.rsplit(",", 1)[-1])]
    if previous is not None:
        following = _following(clause.lower().rstrip(), words, value, previous)
        if following is not None:
            return following
    if words and words[-1].lower() in _NAMED_AFTER:  # "an additional $3 billion buyback"
        after = _name_after(text, end, words)
        if after:
            return _level(after, value)
    linked = False
    while words and words[-1].lower() in _LINKING:
        linked = True
        words.pop()
    if words and words[-1].lower() in _DIRECTIONS:
        direction = words.pop()
        base = _name_before(words) or (previous.base if previous else "")
        if not base:
            return None
        if linked:  # "net income rose to $1.14 billion": the level, not the change
            return _level(base, value)
        return _Figure(_clip(f"{base} change"), f"{direction} {value}", base, direction)
    if words and words[-1].lower() == "by":  # "cut its policy rate by 25 basis points"
        return _change_by(words[:-1], value)
    if not linked and words and words[-1].lower().endswith("ed"):
        # "the bank processed 18,000 suspicious transactions": a verb, the name after it.
        name = _name_after(text, end, words) or _name_before(words)
    else:
        name = _name_before(words) or _name_after(text, end, words) or _reported(clause)
    if not name:
        return None
    name = _per_share(name, value)
    return _Figure(name, value, name)


def _following(clause: str, words: list[str], value: str, previous: _Figure) -> _Figure | None:
    """The figure when its clause (lower case) goes on from the one before it, else None."""
    if clause.endswith(("plus or minus", "\u00b1")):
        return _Figure(_clip(f"{previous.base} range"), f"plus or minus {value}", previous.base)
    if _ENDS_WITH_OR.search(clause):  # "$13.6 billion or 7%": the same figure again
        if previous.direction:
            shown = f"{previous.direction} {value}"
            return _Figure(previous.name, shown, previous.base, previous.direction)
        return _level(previous.base, value)
    if _ENDS_WITH_TO.search(clause) and _follows(words):
        # "... to $211.9 billion", "... from a year earlier to $412,300": the level reached
        return _level(previous.base, value)
    return None


def _level(base: str, value: str) -> _Figure:
    """The figure ``base`` names itself (not a change of it); per share when ``value`` is."""
    return _Figure(_per_share(base, value), value, base)


def _follows(words: list[str]) -> bool:
    """Whether a clause ending in "to" says where the figure before it went, not its own."""
    own = [w.lower() for w in words[:-1] if w.lower() not in _LINKING]
    return not own or own[0] in _DIRECTIONS or own[0] == "from"


def _change_by(words: list[str], value: str) -> _Figure | None:
    """ "cut its policy rate by 25 basis points", "revenue rose by 5%"."""
    for index in range(len(words) - 1, -1, -1):
        if words[index].lower() in _MOVES:
            verb = words[index]
            base = _name_before(words[index + 1 :]) or _name_before(words[:index])
            if base:
                return _Figure(_clip(f"{base} change"), f"{verb} by {value}", base, verb)
    return None


def _name_before(words: list[str]) -> str:
    """The run of words at the end of ``words`` back to a clause's start, without an article;
    empty when it ends in a number."""
    run: list[str] = []
    for word in reversed(words):
        if word.lower() in _CLAUSE_STARTS:
            break
        run.append(word)
    run.reverse()
    while run and run[0].lower() in _ARTICLES:
        run.pop(0)
    return _clip(" ".join(run)) if run and not run[-1][0].isdigit() else ""


def _name_after(text: str, end: int, words: list[str]) -> str:
    """The words right after the number: "a $2.9 billion FDIC special assessment", and
    "delivered 484,507 vehicles" as "vehicles delivered"."""
    lead = _AFTER_LEAD.match(text, end)  # "$175 million in debtor-in-possession financing"
    after = _AFTER.match(text, lead.end() - 1 if lead else end)
    if after is None:
        return ""
    kept: list[str] = []
    for word in after.group(1).split():
        if word.lower() in _NOT_IN_A_NAME_AFTER:
            break
        kept.append(word)
    if kept and words and words[-1].lower() in _COUNTED:
        kept.append(words[-1].lower())
    return _clip(" ".join(kept))


def _reported(clause: str) -> str:
    """The words after the sentence's verb of reporting: "NVIDIA reported revenue for the
    third quarter ended October 29, 2023, of $18.12 billion"."""
    words = [w.group(0) for w in _WORD.finditer(clause)]
    for index, word in enumerate(words):
        if word.lower() in _REPORTING:
            run = []
            for later in words[index + 1 :]:
                if later.lower() in _CLAUSE_STARTS or later.lower() in {"for", "in"}:
                    break
                run.append(later)
            return _name_before(run)
    return ""


def _per_share(name: str, value: str) -> str:
    if value.endswith(" per share") and "per share" not in name and "per diluted share" not in name:
        return _clip(f"{name} per share")
    return name


def _clip(name: str) -> str:
    while len(name) > NAME_CHARS:
        cut = _TRAILING_PHRASE.sub("", name)
        if cut == name:
            return name[:NAME_CHARS].rsplit(" ", 1)[0]
        name = cut
    return name
