"""Is an answer's figure in the document it came from? Normalised quantities and the rules
that decide it, shared by the processor, the runner and the evaluation.

A quantity is a number with what it measures (a percentage or an amount) and its sign. Text
is read for quantities however a filing writes them: ``$89.5 billion``, ``89.5B``,
``89,500 million``, ``USD 3.2bn``, ``€450m``, ``12.4%``, ``down 1 percent``, ``-1%``,
``25 basis points`` (= 0.25 percentage points), ``4.25%-4.50%`` (two quantities).

Rules (documented in docs/quality.md):

- A key figure is grounded when every quantity in its value equals one of the document's
  (relative tolerance 1e-9 after scaling, so ``89,500 million`` equals ``$89.5 billion``),
  percentages only against percentages, currencies only against the same currency when both
  name one. A minus sign in the answer needs a negative in the document (a minus sign, or a
  falling word next to the number: ``down 1 percent``, ``a loss of $12 million``, ``12%
  lower``); an answer without a minus sign matches either, since the figure's name or the
  words around it carry the direction, in more ways than a word list knows. A value with no
  number is no figure and is not grounded (a model that lists the company's name as a key
  figure has found none).
- A quantity is said of a metric when a metric's name (``revenue``, ``earnings per share``,
  ``net income``, ... and their other names: ``net sales``, ``EPS``) comes last before it in
  its sentence, or first after it in its clause (``13 percent revenue growth``). A text
  misattributes a quantity the document holds when the text says it of some metric and the
  document says it of others only, everywhere it states it: ``revenue rose 13 percent`` where
  the document has ``earnings per share of $1.46, up 13 percent``. A quantity said of no
  metric it knows, on either side, is not judged.
- A sentiment's reason is grounded when it names at least one content word (not a stop word
  or a word every reason uses, such as *investors*), at least half of its content words occur
  in the document (words compared by their first five letters, so *increase* matches
  *increased*), and every quantity it states is grounded.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

Measure = Literal["percent", "amount"]

_SCALES = {
    "thousand": 1e3,
    "k": 1e3,
    "million": 1e6,
    "mn": 1e6,
    "mln": 1e6,
    "mm": 1e6,
    "m": 1e6,
    "billion": 1e9,
    "bn": 1e9,
    "bln": 1e9,
    "b": 1e9,
    "trillion": 1e12,
    "tn": 1e12,
    "t": 1e12,
}
_CURRENCY_SYMBOLS = {"$": "USD", "€": "EUR", "£": "GBP", "¥": "JPY"}
_CURRENCY_CODES = ("USD", "EUR", "GBP", "JPY", "CHF", "CAD", "AUD", "CNY", "HKD")

_NUMBER = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+"
_SCALE = r"thousand|million|billion|trillion|mln|bln|mn|bn|tn|mm|k|m|b|t"
_PERCENT = r"%|\s?percent(?:age points?)?\b|\s?per\s?cent\b|\s?pct\b|\s?pp\b"
_BASIS_POINTS = r"\s?(?:basis[\s-]points?|bps|bp)\b"
_QUANTITY = re.compile(
    rf"""
    (?P<sign>[-+\u2212\u2013])?\s?
    (?P<currency>[$€£¥]|\b(?:{"|".join(_CURRENCY_CODES)})\s?)?
    (?P<number>{_NUMBER})
    (?:
        (?P<percent>{_PERCENT})
      | (?P<bp>{_BASIS_POINTS})
      | \s?(?P<scale>{_SCALE})\b
    )?
    """,
    re.VERBOSE | re.IGNORECASE,
)
# The most a quantity's match can start before its first digit: a sign, a space, a currency code
# and a space ("- USD 5"), then the point of ".5". No match starts further from a digit.
_LONGEST_LEAD = 7
_DIGIT = re.compile(r"\d")


def quantity_matches(text: str) -> Iterator[re.Match[str]]:
    """What ``_QUANTITY.finditer(text)`` gives, two to three times faster on a filing: that
    pattern opens with optional parts, so ``re`` tries it at every character; here it is tried
    only from a few characters before each digit, the one place a match can start."""
    position = 0
    while (digit := _DIGIT.search(text, position)) is not None:
        match = _QUANTITY.search(text, max(position, digit.start() - _LONGEST_LEAD))
        if match is None:  # cannot happen: the digit alone is a number
            return
        yield match
        position = match.end()


# A word before a number that makes it a fall: "down 1 percent", "a loss of $12 million".
_FALLING = re.compile(
    r"\b(?:down|fell|falls?|fall(?:ing|en)?|declin\w*|decreas\w*|drop\w*|lower|loss(?:es)?|"
    r"negative|minus|shrank|shrink\w*|contract\w*|cut|slid|slump\w*|deficit|lost|slip\w*|"
    r"eas(?:ed|ing)|reduc\w*|weaken\w*|tumbl\w*|plung\w*|sank|sink\w*|retreat\w*|dip\w*|"
    r"shed|erod\w*|lowered|trimm\w*|writ\w* down|impair\w*)\b"
    r"(?:[^\w%]+[a-z]+){0,3}[^\w%]*$",
    re.IGNORECASE,
)
# "12% lower": a fall said after the number.
_FALLING_AFTER = re.compile(
    r"\s*(?:lower|less|down|below|fewer|smaller|weaker|declines?|drops?|falls?|decreases?|"
    r"contraction|loss)\b",
    re.IGNORECASE,
)
# "fell to $12 million": the number after "to" or "at" is the level reached, not the fall.
_LEVEL = re.compile(r"\b(?:to|at|of about|at about)\W*$", re.IGNORECASE)
_RELATIVE_TOLERANCE = 1e-9

# What figures are said of, each with the names filings and summaries give it. A name is one
# metric only: "earnings" alone (net income, or earnings per share) is none.
_METRIC_NAMES: dict[str, tuple[str, ...]] = {
    "revenue": ("revenue", "revenues", "net sales", "sales", "turnover", "top line"),
    "earnings per share": ("earnings per share", "eps", "per diluted share", "per share"),
    "net income": ("net income", "net profit", "net earnings", "net loss"),
    "operating income": ("operating income", "operating profit", "operating loss"),
    "gross margin": ("gross margin",),
    "operating margin": ("operating margin",),
    "dividend": ("dividend", "dividends"),
    "deliveries": ("deliveries", "delivered"),
    "production": ("production", "produced"),
    "free cash flow": ("free cash flow",),
    "operating expenses": ("operating expenses", "opex"),
    "capital ratio": ("common equity tier 1", "cet1"),
    "unemployment": ("unemployment",),
    "inflation": ("inflation",),
}
_METRIC_OF = {name: metric for metric, names in _METRIC_NAMES.items() for name in names}
_METRIC = re.compile(
    rf"\b(?:{'|'.join(sorted(map(re.escape, _METRIC_OF), key=len, reverse=True))})\b",
    re.IGNORECASE,
)
# How far from a quantity its metric's name may be: before it, within its sentence (commas
# crossed: "revenue of $89.5 billion, down 1 percent"); after it, within its clause.
_BEFORE_CHARS = 80
_AFTER_CHARS = 30
_SENTENCE_END = re.compile(r"[.;:!?](?=\s)|\n")
_CLAUSE_END = re.compile(r"[,.;:!?](?=\s|$)|\b(?:and|but|while|whereas)\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Quantity:
    value: float
    """Absolute value: an amount in units (billions multiplied out), a percentage in points."""
    measure: Measure
    negative: bool
    currency: str | None = None

    def matches(self, stated: Quantity) -> bool:
        """Whether ``stated`` (from an answer) is this quantity (from the document)."""
        if self.measure != stated.measure:
            return False
        if self.currency and stated.currency and self.currency != stated.currency:
            return False
        if stated.negative and not self.negative:
            return False
        return math.isclose(self.value, stated.value, rel_tol=_RELATIVE_TOLERANCE)


def quantities(text: str, *, falling_words: bool = False) -> list[Quantity]:
    """Every quantity in ``text``, in order; a range gives both of its ends. A quantity is
    negative by its minus sign, and with ``falling_words`` also by a falling word next to it
    (how a document says it: ``down 1 percent``, ``a 19% decline``)."""
    return [quantity for _, quantity in _read_quantities(text, falling_words=falling_words)]


def _read_quantities(text: str, *, falling_words: bool) -> Iterator[tuple[re.Match[str], Quantity]]:
    """Each quantity in ``text`` with the match it was read from."""
    for match in quantity_matches(text):
        number = float(match["number"].replace(",", ""))
        if match["percent"]:
            measure: Measure = "percent"
        elif match["bp"]:
            measure, number = "percent", number / 100
        else:
            measure = "amount"
            if match["scale"]:
                number *= _SCALES[match["scale"].lower()]
        yield (
            match,
            Quantity(
                value=number,
                measure=measure,
                negative=_is_negative(text, match, falling_words=falling_words),
                currency=_currency(match["currency"]),
            ),
        )


def quantities_as_written(text: str) -> list[str]:
    """Every quantity in ``text`` as ``text`` writes it ("$89.5 billion", "12.4%"), each once,
    in order of first appearance."""
    return list(dict.fromkeys(match.group(0).strip() for match in quantity_matches(text)))


def _is_negative(text: str, match: re.Match[str], *, falling_words: bool) -> bool:
    sign = match["sign"]
    if sign and sign != "+":
        # "4.25%-4.50%": a dash right after a number is a range, not a minus.
        before = text[: match.start()].rstrip()
        return not (before and (before[-1].isdigit() or before[-1] == "%"))
    if not falling_words:
        return False
    before = text[max(0, match.start() - 40) : match.start()]
    if _FALLING_AFTER.match(text, match.end()):
        return True
    return bool(_FALLING.search(before)) and not _LEVEL.search(before)


def _currency(written: str | None) -> str | None:
    if not written:
        return None
    written = written.strip()
    return _CURRENCY_SYMBOLS.get(written, written.upper())


@dataclass(frozen=True, slots=True)
class Source:
    """A document read once for the checks: its quantities (each with where it was read, in
    the same order) and its words."""

    quantities: tuple[Quantity, ...]
    read_at: tuple[re.Match[str], ...]
    stems: frozenset[str]
    text: str

    @classmethod
    def of(cls, text: str) -> Source:
        read = list(_read_quantities(text, falling_words=True))
        return cls(
            tuple(quantity for _, quantity in read),
            tuple(match for match, _ in read),
            frozenset(_stems(text)),
            " ".join(text.split()),
        )

    def has(self, stated: Quantity) -> bool:
        return any(known.matches(stated) for known in self.quantities)


def ungrounded_values(values: Iterable[str], source: Source) -> list[str]:
    """The values (key figures as the answer gave them) that the document does not hold."""
    return [value for value in values if not value_grounded(value, source)]


def value_grounded(value: str, source: Source) -> bool:
    """A key figure's value: a number (or several) the document states. A value without one
    (a company's name, "record high") is no figure, whatever the document says."""
    stated = quantities(value)
    return bool(stated) and all(source.has(q) for q in stated)


def reason_grounded(reason: str, source: Source) -> bool:
    words = _content_stems(reason)
    if not words:
        return False
    found = sum(1 for word in words if word in source.stems)
    return found * 2 >= len(words) and all(source.has(q) for q in quantities(reason))


def unfounded_numbers(text: str, source: Source) -> list[str]:
    """The quantities ``text`` states that the document does not (as written in ``text``)."""
    return [
        match.group(0).strip()
        for match, stated in _read_quantities(text, falling_words=False)
        if not source.has(stated)
    ]


def misattributed(text: str, source: Source) -> list[str]:
    """The quantities ``text`` says of a metric that the document, which holds them, says of
    other metrics only; each as ``text`` writes it, with what each side says it of."""
    found = []
    for match, stated in _read_quantities(text, falling_words=False):
        said_of = _metrics_of(text, match)
        if not said_of:
            continue
        held_as = [
            _metrics_of(at.string, at)
            for known, at in zip(source.quantities, source.read_at, strict=True)
            if known.matches(stated)
        ]
        if held_as and all(metrics and not metrics & said_of for metrics in held_as):
            document_says = sorted(set().union(*held_as))
            found.append(
                f"{match.group(0).strip()} said of {' or '.join(sorted(said_of))}; "
                f"the document's is of {' or '.join(document_says)}"
            )
    return found


def says_of_metrics(text: str) -> bool:
    """Whether ``text`` says any quantity of a metric: what :func:`misattributed` judges (a
    text without one needs no :class:`Source`)."""
    if _DIGIT.search(text) is None:  # most summaries the processor publishes: a quick no
        return False
    return any(_metrics_of(text, match) for match in quantity_matches(text))


def told_wrong(ungrounded: Iterable[str]) -> str:
    """The sentence a question asked again ends with: what the last answer got wrong."""
    return f" Your last answer got these wrong: {'; '.join(ungrounded)}."


def _metrics_of(text: str, match: re.Match[str]) -> frozenset[str]:
    """What the quantity ``match`` is said of: the last metric named before it in its sentence,
    and the first named after it in its clause."""
    before = text[max(0, match.start() - _BEFORE_CHARS) : match.start()]
    if ends := list(_SENTENCE_END.finditer(before)):
        before = before[ends[-1].end() :]
    after = text[match.end() : match.end() + _AFTER_CHARS]
    if end := _CLAUSE_END.search(after):
        after = after[: end.start()]
    named = [*list(_METRIC.finditer(before))[-1:], *list(_METRIC.finditer(after))[:1]]
    return frozenset(_METRIC_OF[name.group(0).lower()] for name in named)


def faithfulness(text: str, source: Source) -> float | None:
    """Share of the quantities in ``text`` (a summary) that the document holds; ``None`` when
    it states none."""
    stated = quantities(text)
    if not stated:
        return None
    return sum(1 for q in stated if source.has(q)) / len(stated)


_WORD = re.compile(r"[a-z]+")
# Words that say nothing about the document: a reason made of them cites nothing.
_STOP_WORDS = frozenset(
    """
    a an and are as at be been but by for from has have in is it its of on or our over
    that the their there this to was were will with which while than then they these those
    document report reports reported company investors investor positive negative neutral
    sentiment overall shows show showing indicates because due news market markets outlook
    very strong weak good bad results result
    """.split()  # noqa: SIM905 (a word list reads better as words)
)


def _stem(word: str) -> str:
    return word[:5]


def _stems(text: str) -> set[str]:
    return {_stem(w) for w in _WORD.findall(text.lower())}


def _content_stems(text: str) -> set[str]:
    return {_stem(w) for w in _WORD.findall(text.lower()) if w not in _STOP_WORDS and len(w) > 2}
