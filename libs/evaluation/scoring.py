"""The evaluation's metrics, as pure functions of answers and expectations (docs/quality.md).

Key figures. A predicted value **matches** an expected value when, after normalisation, they
are the same figure ("exact after normalisation"):

- both values state quantities (``libs/common/grounding.quantities``): they state the same
  number of them and each one, in order, equals its counterpart under ``Quantity.matches``
  with the signs left out (``$89.5 billion`` = ``89,500 million`` = ``USD 89.5bn``; ``4.1
  percent`` = ``4.1%``; ``a loss of $12 million`` = ``-$12 million``). Signs are left out
  because the expected values carry a fall in words as often as with a minus sign, and the
  figure's name says which way it went;
- neither states a quantity: their texts are equal once casefolded and with runs of blanks
  made one (``Q3 2025`` = ``q3  2025``);
- one states quantities and the other none: no match.

Each expected figure is matched by at most one predicted figure (a maximum one-to-one
matching), so a figure listed twice counts once. Precision is matched / predicted, recall is
matched / expected, summed over the documents first (micro-averaged); F1 is their harmonic
mean, per document and over the set.

Summaries. Besides faithfulness (``libs/common/grounding``), **repetition**: the share of a
summary's word trigrams that repeat an earlier one of it, casefolded. A summary that never says
the same three words twice scores 0; a model caught in a loop ("Microsoft Cloud Microsoft Cloud
...") nears 1. Above ``REPETITIVE`` a summary counts as repetitive.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from libs.common.grounding import Quantity, quantities

REPETITIVE = 0.2
"""The repetition above which a summary is counted as repetitive."""
_NGRAM = 3

LABELS = ("positive", "neutral", "negative")
"""Sentiment labels, in the order of the confusion matrix's rows (expected) and columns
(predicted)."""


def _unsigned(quantity: Quantity) -> Quantity:
    return Quantity(quantity.value, quantity.measure, False, quantity.currency)


def _same_quantity(a: Quantity, b: Quantity) -> bool:
    a, b = _unsigned(a), _unsigned(b)
    return a.matches(b) or b.matches(a)


def _plain(text: str) -> str:
    return " ".join(text.casefold().split())


def values_match(predicted: str, expected: str) -> bool:
    """Whether ``predicted`` is the figure ``expected`` (the module docstring's rule)."""
    stated, wanted = quantities(predicted), quantities(expected)
    if stated or wanted:
        return len(stated) == len(wanted) and all(
            _same_quantity(a, b) for a, b in zip(stated, wanted, strict=True)
        )
    return bool(_plain(predicted)) and _plain(predicted) == _plain(expected)


def matched_figures(predicted: Sequence[str], expected: Sequence[str]) -> int:
    """How many expected values the predicted ones match, one to one (maximum matching:
    Kuhn's augmenting paths, a handful of figures a side)."""
    edges = [[j for j, e in enumerate(expected) if values_match(p, e)] for p in predicted]
    owner: dict[int, int] = {}  # expected index -> predicted index matched to it

    def augment(i: int, seen: set[int]) -> bool:
        for j in edges[i]:
            if j in seen:
                continue
            seen.add(j)
            if j not in owner or augment(owner[j], seen):
                owner[j] = i
                return True
        return False

    return sum(1 for i in range(len(predicted)) if augment(i, set()))


@dataclass(frozen=True, slots=True)
class FigureCounts:
    matched: int
    predicted: int
    expected: int

    @property
    def precision(self) -> float | None:
        """``None`` when nothing was predicted (precision of nothing is undefined)."""
        return self.matched / self.predicted if self.predicted else None

    @property
    def recall(self) -> float | None:
        return self.matched / self.expected if self.expected else None

    @property
    def f1(self) -> float:
        """0.0 when nothing matched (also when nothing was predicted)."""
        if not self.matched:
            return 0.0
        return 2 * self.matched / (self.predicted + self.expected)


def figure_counts(predicted: Sequence[str], expected: Sequence[str]) -> FigureCounts:
    return FigureCounts(matched_figures(predicted, expected), len(predicted), len(expected))


def micro(counts: Iterable[FigureCounts]) -> FigureCounts:
    """The counts summed over documents: micro-averaged precision, recall and F1."""
    matched = predicted = expected = 0
    for c in counts:
        matched, predicted, expected = (
            matched + c.matched,
            predicted + c.predicted,
            expected + c.expected,
        )
    return FigureCounts(matched, predicted, expected)


def confusion(pairs: Iterable[tuple[str, str]]) -> list[list[int]]:
    """3x3 counts of ``(expected, predicted)`` label pairs, rows and columns in ``LABELS``
    order."""
    matrix = [[0] * len(LABELS) for _ in LABELS]
    for expected, predicted in pairs:
        matrix[LABELS.index(expected)][LABELS.index(predicted)] += 1
    return matrix


def repetition(text: str) -> float:
    """The share of ``text``'s word trigrams that repeat an earlier one (0.0 for a text too
    short to have two)."""
    words = text.casefold().split()
    grams = [tuple(words[i : i + _NGRAM]) for i in range(len(words) - _NGRAM + 1)]
    if not grams:
        return 0.0
    return 1 - len(set(grams)) / len(grams)


def share(flags: Sequence[bool]) -> float | None:
    """The share of true flags; ``None`` for none at all."""
    return sum(flags) / len(flags) if flags else None


def mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in (0, 100]): a value that was measured, never an
    interpolation between two."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]
