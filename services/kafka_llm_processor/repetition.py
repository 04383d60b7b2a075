"""A summary that ends in a loop, cut after the loop's first turn.

A small model at temperature 0 often ends a summary by saying one sentence, or one run of words,
again and again until ``max_tokens`` ("... 3.4 times EBITDA. The company's net debt rose to
£2.3bn, pushing leverage to 3.4 times EBITDA. The company's net debt rose ..."). Penalties
against repetition stop the loops but make the model invent figures (docs/quality.md,
"Repetition"), so the loop is cut after the answer instead: what it says once is kept, the
copies and the unfinished last one go. Only a loop that runs to the end of the answer is cut
(that is how a looping model stops: at its token limit); a sentence said again mid-answer is
the model's wording, and left as it is.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"\S+")
_SENTENCE_ENDS = (".", "!", "?", '."', ".)")
LONG_UNIT = 8
"""Words from which two turns of a unit make a loop; a shorter unit needs three turns."""
SHORTEST_LOOP = 8
"""Words a loop must cover, so that "very, very" or a repeated initial is never cut."""


def cut_loop(text: str) -> str:
    """``text`` up to the end of the first turn of the loop it ends with; ``text`` itself when
    it does not end in one. Words compare casefolded, and the last word may be cut short (the
    token limit falls anywhere)."""
    # A loop's last word begins an earlier word too: where it occurs once, there is none (most
    # answers; found without splitting the text into words).
    folded = text.casefold()
    ending = folded.rsplit(None, 1)
    if len(ending) < 2 or folded.count(ending[-1]) < 2:
        return text
    spans = [match.span() for match in _WORD.finditer(text)]
    words = [text[start:end].casefold() for start, end in spans]
    found = _closing_loop(words)
    if found is None:
        return text
    start, period = found
    # A turn may begin mid-sentence (the loop's sentence ended a sentence said before it):
    # keep up to the first sentence end within the next turn when there is one, so that the
    # loop's sentence is kept once and whole. A sentence ends where the next word starts with
    # a capital ("Inc. (Form" does not end one).
    last = next(
        (
            index
            for index in range(start + period - 1, start + 2 * period - 1)
            if words[index].endswith(_SENTENCE_ENDS) and text[spans[index + 1][0]].isupper()
        ),
        start + period - 1,
    )
    # A turn's last word may end with a comma that led into the next turn.
    return text[: spans[last][1]].rstrip(",;:- \n\t")


def _closing_loop(words: list[str]) -> tuple[int, int] | None:
    """(first word, words a turn) of the earliest-starting loop that runs to the end of
    ``words``, the shortest turn among those; ``None`` when there is none."""
    count = len(words)
    best: tuple[int, int] | None = None
    for period in range(1, count // 2 + 1):
        # Walk back from the end while each word equals the one a turn before it.
        position = count - 1
        if position - period >= 0 and words[position - period].startswith(words[position]):
            position -= 1  # the last word, perhaps cut short by the token limit
        else:
            continue
        while position - period >= 0 and words[position] == words[position - period]:
            position -= 1
        start = position + 1 - period
        span = count - start
        turns = span / period
        if span < SHORTEST_LOOP or turns < (2 if period >= LONG_UNIT else 3):
            continue
        if best is None or start < best[0]:
            best = (start, period)
    return best
