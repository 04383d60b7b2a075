"""Which rows of a prompt read before a new prompt can take instead of reading them, and the
prompts kept for that in host memory once no slot's cache holds them.

llama.cpp computes a prompt row in one of three ways by the rows of its chunk (``row_class``),
alike to the bit within a class and not across, so a kept row is taken only where a fresh read
of the new prompt would compute it in the same class (``reusable_prefix``); the batch engine
(``llama_batch.py``) then reads the rest in chunks that end where a fresh read's do.
"""

from __future__ import annotations

import ctypes
from collections import OrderedDict
from typing import Final


class KeptPrompt:
    """The prompt a slot's cache holds from its last answer, which a later prompt may start
    from: each token, and the row class (``row_class``) llama.cpp computed it in."""

    __slots__ = ("classes", "tokens")

    def __init__(self, tokens: list[int] | None = None, classes: bytes | bytearray = b"") -> None:
        self.tokens = tokens or []
        self.classes = bytearray(classes)

    def head(self, length: int) -> KeptPrompt:
        return KeptPrompt(self.tokens[:length], self.classes[:length])

    def copy(self) -> KeptPrompt:
        return self.head(len(self.tokens))

    def cut(self, length: int) -> None:
        del self.tokens[length:], self.classes[length:]

    def extend(self, tokens: list[int], row_class: int) -> None:
        self.tokens.extend(tokens)
        self.classes.extend(bytes([row_class]) * len(tokens))

    def goes_on_from(self, start: KeptPrompt) -> bool:
        """Whether this prompt begins with all of ``start``, each row of the same class."""
        length = len(start.tokens)
        return (
            len(self.tokens) >= length
            and self.tokens[:length] == start.tokens
            and self.classes[:length] == start.classes
        )


TILED_ROWS: Final = 64
"""ggml's CPU flash attention takes a tiled path for a ubatch of at least this many rows of one
sequence (``GGML_FA_TILE_Q``) and a row-by-row path below it."""


def row_class(rows: int) -> int:
    """How llama.cpp's CPU kernels compute the rows of a ubatch of ``rows`` rows: alone (matrix
    times vector), a few (attention row by row), a tile and more (tiled attention).

    A row comes out the same to the bit in any ubatch of its class, whatever shares it, and
    differs in the last bits across classes (measured: a cached prefix then the rest of the
    prompt gives the logits of one whole read exactly when the rest has as many rows as the
    whole read's class needs). So a kept prompt row is reused only where a fresh read would
    have computed it in the same class."""
    return 0 if rows == 1 else 1 if rows < TILED_ROWS else 2


def fresh_chunk(row: int, length: int, n_batch: int) -> tuple[int, int]:
    """Where the chunk holding ``row`` starts and ends when ``length`` tokens are read fresh,
    in chunks of ``n_batch``."""
    start = row - row % n_batch
    return start, min(length, start + n_batch)


def reusable_prefix(kept: KeptPrompt, prompt: list[int], n_batch: int) -> int:
    """How many of ``prompt``'s first tokens ``kept`` can give with the answer unchanged: the
    rows it holds as a fresh read of ``prompt`` (chunks of ``n_batch``) computes them, less
    what reading the rest from there would compute in another class. One token at least is
    left to read, for the logits of the last."""
    length = len(prompt)
    limit = min(len(kept.tokens), length - 1)
    # A fresh read's class is one per chunk, so the kept rows are compared a chunk at a time,
    # with slice comparisons in C (a token at a time took milliseconds at 4,000 tokens).
    shared = 0
    while shared < limit:
        start, end = fresh_chunk(shared, length, n_batch)
        stop = min(end, limit)
        fresh_class = row_class(end - start)
        if (
            kept.tokens[shared:stop] != prompt[shared:stop]
            or kept.classes.count(fresh_class, shared, stop) != stop - shared
        ):
            while kept.tokens[shared] == prompt[shared] and kept.classes[shared] == fresh_class:
                shared += 1
            break
        shared = stop
    if shared == 0:
        return 0
    # The rest is read from ``shared``: its first chunk must be of the class of the chunk a
    # fresh read puts those rows in (the chunks after it are a fresh read's own).
    start, end = fresh_chunk(shared, length, n_batch)
    fresh = row_class(end - start)
    if row_class(end - shared) == fresh:
        return shared
    return start if fresh == 0 else end - (2 if fresh == 1 else TILED_ROWS)


class StoredPrompt:
    """A prompt a slot's cache held, saved to host memory: what ``KeptPrompt`` says of it, and
    llama.cpp's state of the sequence then (its cache cells, ``llama_state_seq_get_data``),
    which ``llama_state_seq_set_data`` puts back in any slot as it was, bit for bit."""

    __slots__ = ("kept", "state")

    def __init__(self, kept: KeptPrompt, state: ctypes.Array[ctypes.c_uint8]) -> None:
        self.kept = kept
        self.state = state


class PromptStore:
    """Prompts saved from the slots whose caches new answers took, within ``capacity_bytes``
    (about 23 KB a token for SmolLM2-135M), the least recently saved or taken going first.
    A slot's cache keeps one prompt; with more agents or conversations taking turns than
    slots, each still finds its own here, restored in well under a millisecond where reading
    it again takes about one a token."""

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = capacity_bytes
        self.bytes = 0
        self._prompts: OrderedDict[int, StoredPrompt] = OrderedDict()

    def __len__(self) -> int:
        return len(self._prompts)

    def stored(self) -> list[StoredPrompt]:
        """Every prompt held, the least recently saved or taken first."""
        return list(self._prompts.values())

    def holds(self, kept: KeptPrompt) -> bool:
        """Whether a stored prompt starts with all of ``kept``, each row of the same class."""
        return any(stored.kept.goes_on_from(kept) for stored in self._prompts.values())

    def add(self, stored: StoredPrompt) -> None:
        """Keep ``stored`` instead of the prompts it goes on from; then, while over capacity,
        drop the least recently used."""
        if len(stored.state) > self.capacity_bytes:
            return
        for key, old in list(self._prompts.items()):
            if stored.kept.goes_on_from(old.kept):
                self._drop(key)
        self._prompts[id(stored)] = stored
        self.bytes += len(stored.state)
        while self.bytes > self.capacity_bytes:
            self._drop(next(iter(self._prompts)))

    def best(self, prompt: list[int], n_batch: int) -> tuple[StoredPrompt | None, int]:
        """The stored prompt that gives the longest start of ``prompt`` (``reusable_prefix``),
        and its length; ``(None, 0)`` when none gives any."""
        found, longest = None, 0
        for stored in self._prompts.values():
            length = reusable_prefix(stored.kept, prompt, n_batch)
            if length > longest:
                found, longest = stored, length
        return found, longest

    def taken(self, stored: StoredPrompt) -> None:
        """``stored`` was used: it is dropped last."""
        if id(stored) in self._prompts:
            self._prompts.move_to_end(id(stored))

    def _drop(self, key: int) -> None:
        self.bytes -= len(self._prompts.pop(key).state)
