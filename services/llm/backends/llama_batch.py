"""Continuous batching on one llama.cpp context: several answers decoded in one pass a token.

A CPU reads the model's weights once per decoding pass whether the pass advances one
sequence or several, so answering four requests together costs little more than answering
one (llama.cpp's server, Ollama and vLLM batch the same way). The engine owns a context with
``slots`` sequences, each with its own cache cells (not a unified cache: its attention then
differs in the last bits from a lone request's), and runs on one thread:

- a new request's prompt is read alone, in chunks of ``n_batch`` tokens, exactly as it would
  be were it the only request, and its first token is sampled at once; the start it shares
  with a prompt read before, still in some slot's cache or saved to host memory when its slot
  was taken (``PromptStore``), is taken from there instead of read again, where that leaves
  the answer unchanged (``reusable_prefix``; both in ``prompt_cache.py``);
- then each pass feeds every running sequence its last token in one ``llama_decode`` and
  samples each sequence's next token with its own sampler chain (its JSON grammar, its
  temperature and seed), so a sequence joins or leaves the batch between two passes.

Each row of a pass is computed as it would be alone, so at temperature 0 an answer is the same
text whatever else is in the batch (tests/llm/test_batching.py). Work that must not overlap a
pass (scoring, tokenizing) runs on the same thread between passes through :meth:`call`.

The module passes 400 lines because the engine is one loop over one context: taking requests,
the pass, sampling and ending a sequence share its slots, batch and cache cells, and none reads
without the others. The sampler chain, the grammar check and the stop-string search are plain
functions at the end; the asyncio side (turns, deadlines, streams) is ``embedded.py``.
"""

from __future__ import annotations

import codecs
import ctypes
import math
import os
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Final, TypeVar

import llama_cpp as llama
import msgspec
import numpy as np
import structlog

from libs.common.errors import BackendUnavailable
from libs.common.schemas.llm import TokenLogprob, TopLogprob
from services.llm.backends.prompt_cache import (
    KeptPrompt,
    PromptStore,
    StoredPrompt,
    fresh_chunk,
    reusable_prefix,
    row_class,
)

logger = structlog.get_logger("pas.llm.batch")

T = TypeVar("T")
_PIECE_BYTES: Final = 256


class Finished(msgspec.Struct):
    text: str
    finish_reason: str
    completion_tokens: int
    prompt_eval_ns: int
    eval_ns: int
    logprobs: list[TokenLogprob] | None = None
    cached_tokens: int = 0
    """The prompt's first tokens taken from a cache rather than read."""


DEFAULT_LAST_N: Final = 64
"""How many of the answer's last tokens the penalties and DRY look back over, unless asked
otherwise (llama.cpp's and Ollama's default)."""


class Penalties(msgspec.Struct, frozen=True):
    """llama.cpp's penalties on repeating the answer's own last ``last_n`` tokens: a token seen
    there has its logit divided by ``repeat`` (multiplied, when negative), then lowered by
    ``frequency`` for each time it was seen and by ``presence`` once."""

    last_n: int = DEFAULT_LAST_N
    repeat: float = 1.0
    frequency: float = 0.0
    presence: float = 0.0

    @property
    def active(self) -> bool:
        return self.last_n != 0 and (
            self.repeat != 1.0 or self.frequency != 0.0 or self.presence != 0.0
        )


class Dry(msgspec.Struct, frozen=True):
    """llama.cpp's DRY ("don't repeat yourself"): a token that would extend a stretch of the
    answer's last ``last_n`` tokens repeating an earlier one, past ``allowed_length`` tokens,
    is lowered by ``multiplier * base ** (length - allowed_length)``. Unlike the penalties, a
    figure said once is not touched: only loops are. ``breakers`` end a stretch."""

    multiplier: float
    base: float = 1.75
    allowed_length: int = 2
    last_n: int = DEFAULT_LAST_N
    breakers: tuple[str, ...] = ("\n", ":", '"', "*")


class Sampling(msgspec.Struct, frozen=True):
    """How a sequence picks its tokens (llama-cpp-python's defaults where a request is silent)."""

    temperature: float
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    seed: int | None = None
    grammar: str | None = None
    """GBNF whose ``root`` rule every answer must match."""
    penalties: Penalties | None = None
    """Applied first, as llama-cpp-python's chain does; None or inactive: none."""
    dry: Dry | None = None
    """After the penalties; a grammar's greedy token is then always found by the whole chain
    (which tokens DRY lowers is not known before it runs)."""
    logit_bias: tuple[tuple[int, float], ...] = ()
    """(token, bias) added to the logits first, as llama.cpp's own chain does; a grammar's
    greedy token is then found by the whole chain too."""


class SequenceRequest(msgspec.Struct):
    """One answer to make. ``emit`` and ``finish`` are called on the engine's thread."""

    tokens: list[int]
    max_tokens: int
    sampling: Sampling
    stop: list[str]
    emit: Callable[[str, list[TokenLogprob] | None], None]
    """Text as it is made, with the log-probabilities of the tokens that start in it (when
    asked for)."""
    finish: Callable[[Finished | BaseException | None], None]
    """Called once: the answer, the error that ended it, or None when it was stopped."""
    cancel: threading.Event
    until: float
    """``time.monotonic()`` past which the answer is abandoned."""
    logprobs: int | None = None
    """None: none; N: each token's log-probability and the N likeliest tokens at its place."""


class _Running:
    """A sequence in the batch: its slot, sampler and text so far."""

    def __init__(self, request: SequenceRequest, slot: int, sampler: Any) -> None:
        self.request = request
        self.slot = slot
        self.sampler = sampler
        # Greedy under a grammar: the chain's grammar sampler, to check the likeliest token
        # alone first (see ``BatchEngine._sample``).
        sampling = request.sampling
        penalties = sampling.penalties if sampling.penalties and sampling.penalties.active else None
        self.greedy_grammar = (
            llama.llama_sampler_chain_get(sampler, 0 if penalties is None else 1)
            if sampling.grammar is not None
            and sampling.temperature == 0
            and sampling.dry is None
            and not sampling.logit_bias
            else None
        )
        # With penalties, the chain's first sampler and the tokens it has seen (the same as
        # its own window), to find the likeliest token after penalties without the grammar.
        self.penalties = (
            None
            if penalties is None or self.greedy_grammar is None
            else llama.llama_sampler_chain_get(sampler, 0)
        )
        self.recent: deque[int] = deque(maxlen=0 if penalties is None else penalties.last_n)
        self.position = len(request.tokens)
        self.cached = 0  # the prompt's first tokens taken from a cache
        self.pending = -1  # the token sampled last, fed in the next pass
        self.generated = 0
        # Bytes that are not UTF-8 are dropped, as llama-cpp-python drops them (and so are
        # those of a character the answer ended in the middle of).
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="ignore")
        self.text = ""
        self.emitted = 0  # characters of ``text`` already sent
        self.started = time.perf_counter_ns()
        self.first_token_at: int | None = None
        # Asked for: each token's log-probabilities, with where its text starts in ``text``.
        self.logprobs: list[tuple[int, TokenLogprob]] | None = (
            None if request.logprobs is None else []
        )
        self.logprobs_emitted = 0  # entries of ``logprobs`` already sent


class _Call:
    def __init__(self, work: Callable[[], Any]) -> None:
        self.work = work
        self.future: Future[Any] = Future()


_CLOSE: Final = object()


class BatchEngine:
    """A llama.cpp context decoding up to ``slots`` sequences together, on its own thread."""

    def __init__(
        self,
        model: Any,
        *,
        slots: int,
        context_per_slot: int,
        n_threads: int | None,
        n_threads_batch: int | None = None,
        n_batch: int = 512,
        flash_attention: bool = True,
        reuse_prompts: bool = True,
        prompt_store: PromptStore | None = None,
    ) -> None:
        """``prompt_store``: where a slot's prompt goes when a new answer takes its cache, for
        a later prompt that goes on with it (only with ``reuse_prompts``)."""
        self.slots = slots
        self._n_batch = n_batch
        self._reuse_prompts = reuse_prompts
        self.prompt_store = prompt_store if reuse_prompts else None
        # Copying another slot's cache copies all its cells (llama.cpp copies whole streams):
        # 4,096 cells took what reading 7 prompt tokens takes here; ask for twice that gain.
        self._copy_worth = max(context_per_slot // 256, 1)
        self._kept = [KeptPrompt() for _ in range(slots)]
        self._last_used = [0] * slots  # when each slot last took an answer, counted in answers
        self._used = 0
        self._vocab = llama.llama_model_get_vocab(model)
        params = sequences_context_params(slots, context_per_slot, n_batch, flash_attention)
        self._context_per_slot = context_per_slot
        self._flash_attention = flash_attention
        # llama-cpp-python's threads: a pass of one token (a lone answer) on ``n_threads``,
        # default half the cores; prompts and passes of several sequences on
        # ``n_threads_batch``, default every core.
        # A pass's threads wait for one another at each step, so on a busy machine a pass on
        # every core keeps waiting for preempted threads: a lone answer made 9 tokens/s on
        # two threads and 35 on one here. A batch pays that wait once for all its sequences.
        cores = len(os.sched_getaffinity(0))
        params.n_threads = n_threads or max(cores // 2, 1)
        params.n_threads_batch = n_threads_batch or cores
        self._ctx = llama.llama_init_from_model(model, params)
        if not self._ctx:
            raise BackendUnavailable("llama.cpp could not create a batching context")
        self._memory = llama.llama_get_memory(self._ctx)
        self._batch = llama.llama_batch_init(max(n_batch, slots), 0, 1)
        self._inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._running: dict[int, _Running] = {}
        self.passes = 0  # decoding passes made (a prompt's reading is not one)
        self.sequence_steps = 0  # tokens those passes made, one per sequence a pass
        self.moves = 0  # sequences moved to a lower slot
        self.grammar_shortcuts = 0  # greedy tokens the grammar allowed when checked alone
        self.prompt_tokens_read = 0
        self.prompt_tokens_reused = 0  # taken from a cache instead of read
        self.prompts_restored = 0  # prompts put back in a slot from the prompt store
        self.answers_ended = 0  # slots freed by an answer done, stopped or failed
        self._queued: deque[SequenceRequest] = deque()  # submitted while every slot was taken
        self._piece = ctypes.create_string_buffer(_PIECE_BYTES)
        self._pieces: dict[int, bytes] = {}  # each token's bytes, once looked up
        self._n_vocab = llama.llama_vocab_n_tokens(self._vocab)
        self._thread = threading.Thread(target=self._loop, name="llama-batch", daemon=True)
        self._thread.start()

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def state_settings(self) -> dict[str, str | int | bool]:
        """The settings a sequence's cells depend on beyond the weights: what a prompt saved
        from this engine needs of another to be put back there (``prompt_file.py``)."""
        return {
            "context_per_slot": self._context_per_slot,
            "n_batch": self._n_batch,
            "flash_attention": self._flash_attention,
            "n_threads": llama.llama_n_threads(self._ctx),
            "n_threads_batch": llama.llama_n_threads_batch(self._ctx),
        }

    def prompts_to_keep(self) -> list[StoredPrompt]:
        """What a prompt file keeps (``prompt_file.py``): the prompts of the slots no answer is
        using that the store does not hold, and the store's, the most recently used that fit
        in the store's capacity (all a start reads back), least recently used first. Run it
        through :meth:`call`; the store is left as it was."""
        store = self.prompt_store
        if store is None:
            return []
        room = store.capacity_bytes
        from_slots = []
        idle = (slot for slot in range(self.slots) if slot not in self._running)
        for slot in sorted(idle, key=lambda slot: self._last_used[slot], reverse=True):
            if store.holds(self._kept[slot]):
                continue
            copied = self._copy_of(slot, room)  # a copy only of what fits: a slot may be large
            if copied is not None:
                from_slots.append(copied)
                room -= len(copied.state)
        from_store = []
        for stored in reversed(store.stored()):
            if len(stored.state) > room:
                break
            from_store.append(stored)
            room -= len(stored.state)
        return [*reversed(from_store), *reversed(from_slots)]

    def submit(self, request: SequenceRequest) -> None:
        """Queue an answer: it starts in the next free slot, in the order submitted."""
        self._inbox.put(request)

    def call(self, work: Callable[[], T]) -> Future[T]:
        """Run ``work`` on the engine's thread between two passes."""
        call = _Call(work)
        self._inbox.put(call)
        return call.future

    def close(self) -> None:
        """Stop the thread (unfinished answers end with an error) and free the context."""
        self._inbox.put(_CLOSE)
        self._thread.join()
        llama.llama_batch_free(self._batch)
        llama.llama_free(self._ctx)

    # -- on the engine's thread ----------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            try:
                if not self._serve_once():
                    return
            except Exception as exc:  # a fault of ours: no answer under way may wait forever
                logger.exception("the batch engine failed; ending the answers under way")
                self._end_all(BackendUnavailable(f"the batch engine failed: {exc}"))

    def _serve_once(self) -> bool:
        """Take what arrived, start what fits, run one pass; False once closed."""
        # Wait for work only when nothing is being decoded.
        try:
            item = self._inbox.get(block=not self._running)
        except queue.Empty:
            item = None
        while item is not None:
            if item is _CLOSE:
                self._end_all(BackendUnavailable("the model is stopping"))
                return False
            if isinstance(item, _Call):
                _run_call(item)
            else:
                self._queued.append(item)
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                item = None
        while self._queued and len(self._running) < self.slots:
            request = self._queued.popleft()
            try:
                self._start(request)
            except Exception as exc:
                logger.exception("a sequence failed to start")
                request.finish(exc)
        if self._running:
            if not self._queued:
                self._close_gaps()
            self._pass()
        return True

    def _close_gaps(self) -> None:
        """Move the sequences of the highest slots down into the free ones between, until the
        running sequences hold consecutive slots and one pass decodes them all (see
        ``_pass``). A move copies the sequence's cache cells as they are, so its answer does
        not change; the copy left behind stays a cache for a later prompt."""
        while gaps := self._gaps():
            top, free = max(self._running), gaps[0]
            self._store(free)
            sequence = self._running.pop(top)
            # llama.cpp copies another cache's cells at the next decode, before that decode
            # writes anything: the source's data is still there then.
            llama.llama_memory_seq_cp(self._memory, top, free, -1, -1)
            self._kept[free] = self._kept[top].copy()
            sequence.slot = free
            self._running[free] = sequence
            self.moves += 1

    def _gaps(self) -> list[int]:
        """The free slots between running sequences."""
        if not self._running:
            return []
        return [s for s in range(min(self._running), max(self._running)) if s not in self._running]

    def _start(self, request: SequenceRequest) -> None:
        tokens = request.tokens
        reusable = [
            reusable_prefix(kept, tokens, self._n_batch) if self._reuse_prompts else 0
            for kept in self._kept
        ]
        stored, restorable = (
            self.prompt_store.best(tokens, self._n_batch) if self.prompt_store else (None, 0)
        )
        slot = self._slot_for(reusable)
        if reusable[slot] < len(self._kept[slot].tokens):
            self._store(slot)  # the new prompt leaves some of the slot's kept prompt out
        if stored is not None and restorable >= max(reusable) + self._copy_worth:
            reusable[slot] = restorable if self._restore(slot, stored) else 0
        sequence = _Running(request, slot, _sampler_chain(self._vocab, request.sampling))
        self._running[slot] = sequence
        self._used += 1
        self._last_used[slot] = self._used
        try:
            begin = sequence.cached = self._take_prefix(slot, reusable)
            # Chunks end where a fresh read's end (every n_batch tokens, and the prompt's
            # end), so each row is computed in the row class a fresh read gives it.
            while begin < len(tokens):
                _, end = fresh_chunk(begin, len(tokens), self._n_batch)
                self._batch.n_tokens = 0
                for position in range(begin, end):
                    self._add(tokens[position], position, slot, logits=position == end - 1)
                self._decode()
                self._kept[slot].extend(tokens[begin:end], row_class(end - begin))
                begin = end
            self.prompt_tokens_read += len(tokens) - sequence.cached
            self.prompt_tokens_reused += sequence.cached
            self._advance(sequence, self._batch.n_tokens - 1)
        except BaseException:
            self._forget(slot)
            if self._running.get(slot) is sequence:
                self._release(sequence)  # the caller reports the error
            raise

    def _slot_for(self, reusable: list[int]) -> int:
        """The free slot a new answer takes: one that keeps the running sequences' slots
        consecutive (a pass decodes them in one step only so: see ``_pass``); of those, the
        one whose cache the prompt goes on with (at least half of it reused, as llama.cpp's
        server picks a slot by prompt similarity), the longest reuse first; else the one used
        longest ago. A cache is so kept for the prompt that goes on with it: agents or
        conversations taking turns each find their own."""
        if not self._running:
            candidates = list(range(self.slots))
        else:
            low, high = min(self._running), max(self._running)
            candidates = self._gaps() or [s for s in (low - 1, high + 1) if 0 <= s < self.slots]

        def preference(slot: int) -> tuple[int, int]:
            kept = len(self._kept[slot].tokens)
            goes_on = reusable[slot] > 0 and 2 * reusable[slot] >= kept
            return (reusable[slot] if goes_on else 0, -self._last_used[slot])

        return max(candidates, key=preference)

    def _take_prefix(self, slot: int, reusable: list[int]) -> int:
        """Leave in ``slot``'s cache the longest start of the prompt any slot's cache holds
        as a fresh read would have computed it (``reusable``, by slot), copied from that slot
        when it is worth a copy; how many tokens that is."""
        donor = max(range(self.slots), key=lambda s: reusable[s])
        if reusable[donor] < reusable[slot] + self._copy_worth:
            donor = slot
        length = reusable[donor]
        if donor != slot:
            # The whole stream is copied at the next decode, before that decode writes.
            llama.llama_memory_seq_cp(self._memory, donor, slot, -1, -1)
            self._kept[slot] = self._kept[donor].head(length)
        else:
            self._kept[slot].cut(length)
        llama.llama_memory_seq_rm(self._memory, slot, length, -1)
        return length

    def _store(self, slot: int) -> None:
        """Save ``slot``'s kept prompt to the prompt store, unless it holds it already or it
        is too short to be worth keeping."""
        store = self.prompt_store
        if store is None or store.holds(self._kept[slot]):
            return
        copied = self._copy_of(slot, store.capacity_bytes)
        if copied is not None:
            store.add(copied)

    def _copy_of(self, slot: int, most_bytes: int) -> StoredPrompt | None:
        """``slot``'s kept prompt, its cells copied to host memory; None when it is too short
        to be worth keeping, larger than ``most_bytes``, or llama.cpp did not give it."""
        kept = self._kept[slot]
        if len(kept.tokens) < self._copy_worth:
            return None
        # The answer's rows after the prompt are not kept (decoded one by one, they are not
        # what a prompt read computes); the new answer drops them anyway.
        llama.llama_memory_seq_rm(self._memory, slot, len(kept.tokens), -1)
        size = llama.llama_state_seq_get_size(self._ctx, slot)
        if size > most_bytes:
            return None
        state = (ctypes.c_uint8 * size)()
        if llama.llama_state_seq_get_data(self._ctx, state, size, slot) != size:
            return None
        return StoredPrompt(kept.copy(), state)

    def _restore(self, slot: int, stored: StoredPrompt) -> bool:
        """Put ``stored`` back in ``slot``'s cache, in place of what it held; ``False``, the
        slot left empty, when llama.cpp did not take it."""
        assert self.prompt_store is not None
        self._forget(slot)
        if not llama.llama_state_seq_set_data(self._ctx, stored.state, len(stored.state), slot):
            logger.warning("llama.cpp did not take a stored prompt back", slot=slot)
            return False
        self._kept[slot] = stored.kept.copy()
        self.prompt_store.taken(stored)
        self.prompts_restored += 1
        return True

    def _forget(self, slot: int) -> None:
        """Empty ``slot``'s cache."""
        llama.llama_memory_seq_rm(self._memory, slot, -1, -1)
        self._kept[slot] = KeptPrompt()

    def _pass(self) -> None:
        self._batch.n_tokens = 0
        now = time.monotonic()
        # Rows in slot order: llama.cpp decodes sequences of separate caches in one step only
        # when their ids ascend one by one (0, 1, 2... or 1, 2, 3...); other orders, or a gap,
        # split the pass (measured: two sequences as 0, 1 make 122 tokens/s; as 1, 0 or 0, 2,
        # 50; 1, 2 and 2, 3 as fast as 0, 1). A new answer takes a gap a finished one left, or
        # a slot next to the running ones (``_slot_for``).
        batch: list[_Running] = []  # a sequence's row in the pass is its place here
        for _, sequence in sorted(self._running.items()):
            request = sequence.request
            if request.cancel.is_set() or now > request.until:
                logger.info(
                    "generation stopped before its end",
                    reason="the caller went away" if request.cancel.is_set() else "LLM timeout",
                    tokens_made=sequence.generated,
                )
                self._end(sequence, None)
                continue
            self._add(sequence.pending, sequence.position, sequence.slot, logits=True)
            sequence.position += 1
            batch.append(sequence)
        if not batch:
            return
        try:
            self._decode()
        except BackendUnavailable as exc:
            for sequence in batch:
                self._end(sequence, exc)
                self._forget(sequence.slot)
            return
        self.passes += 1
        self.sequence_steps += len(batch)
        for row, sequence in enumerate(batch):
            try:
                self._advance(sequence, row)
            except Exception as exc:
                logger.exception("a sequence failed", slot=sequence.slot)
                if self._running.get(sequence.slot) is sequence:
                    self._end(sequence, exc)

    def _add(self, token: int, position: int, slot: int, *, logits: bool) -> None:
        batch, row = self._batch, self._batch.n_tokens
        batch.token[row] = token
        batch.pos[row] = position
        batch.n_seq_id[row] = 1
        batch.seq_id[row][0] = slot
        batch.logits[row] = logits
        batch.n_tokens = row + 1

    def _decode(self) -> None:
        code = llama.llama_decode(self._ctx, self._batch)
        if code != 0:
            raise BackendUnavailable(f"llama_decode returned {code}")

    def _sample(self, sequence: _Running, row: int) -> int:
        """The sequence's next token from ``row``'s logits, accepted by its sampler chain.

        Greedy under a grammar, the likeliest token is checked alone first, as llama.cpp's own
        sampling does: when the grammar allows it, it is the token the whole chain would pick
        (the likeliest of the allowed tokens), without running the grammar over the whole
        vocabulary, which costs about as much as the pass itself here. When it does not, the
        chain runs as usual."""
        grammar = sequence.greedy_grammar
        if grammar is not None:
            logits = np.ctypeslib.as_array(
                llama.llama_get_logits_ith(self._ctx, row), shape=(self._n_vocab,)
            )
            if sequence.penalties is None:
                best = int(logits.argmax())  # the first of equals, as llama.cpp's greedy picks
                logit = float(logits[best])
            else:
                best, logit = _penalized_best(logits, sequence.recent, sequence.penalties)
            candidate = llama.llama_token_data(best, logit, 0.0)
            alone = llama.llama_token_data_array(
                data=ctypes.pointer(candidate), size=1, selected=-1, sorted=False
            )
            llama.llama_sampler_apply(grammar, ctypes.byref(alone))
            if candidate.logit != -math.inf:
                llama.llama_sampler_accept(sequence.sampler, best)
                self.grammar_shortcuts += 1
                sequence.recent.append(best)
                return best
        token = int(llama.llama_sampler_sample(sequence.sampler, self._ctx, row))
        sequence.recent.append(token)
        return token

    def _advance(self, sequence: _Running, row: int) -> None:
        """Sample the sequence's next token from ``row``'s logits; end it or keep it going."""
        token = self._sample(sequence, row)
        if sequence.first_token_at is None:
            sequence.first_token_at = time.perf_counter_ns()
        request = sequence.request
        if llama.llama_vocab_is_eog(self._vocab, token):
            self._complete(sequence, "stop")
            return
        sequence.generated += 1
        piece = self._token_bytes(token)
        if sequence.logprobs is not None:
            entry = self._token_logprob(row, token, piece, request.logprobs or 0)
            sequence.logprobs.append((len(sequence.text), entry))
        sequence.text += sequence.decoder.decode(piece)
        stop_at = _first_stop(sequence.text, request.stop, sequence.emitted)
        if stop_at is not None:
            sequence.text = sequence.text[:stop_at]
            self._complete(sequence, "stop")
            return
        if sequence.generated >= request.max_tokens:
            self._complete(sequence, "length")
            return
        # Hold back what could be the start of a stop string.
        safe = len(sequence.text) - _stop_prefix_length(sequence.text, request.stop)
        if safe > sequence.emitted:
            self._emit(sequence, safe)
        sequence.pending = token

    def _emit(self, sequence: _Running, end: int) -> None:
        """Send the text up to ``end``, with the log-probabilities of the tokens that start in
        it (one that runs into text held back for a stop string goes with its start)."""
        logprobs = None
        if sequence.logprobs is not None:
            first = sequence.logprobs_emitted
            while (
                sequence.logprobs_emitted < len(sequence.logprobs)
                and sequence.logprobs[sequence.logprobs_emitted][0] < end
            ):
                sequence.logprobs_emitted += 1
            logprobs = [entry for _, entry in sequence.logprobs[first : sequence.logprobs_emitted]]
        sequence.request.emit(sequence.text[sequence.emitted : end], logprobs)
        sequence.emitted = end

    def _complete(self, sequence: _Running, reason: str) -> None:
        if len(sequence.text) > sequence.emitted:
            self._emit(sequence, len(sequence.text))
        ended = time.perf_counter_ns()
        first = sequence.first_token_at or ended
        finished = Finished(
            text=sequence.text,
            finish_reason=reason,
            completion_tokens=len(self.tokenize(sequence.text)),
            prompt_eval_ns=first - sequence.started,
            eval_ns=ended - first,
            logprobs=None
            if sequence.logprobs is None
            # A stop string's tokens are cut with its text.
            else [entry for start, entry in sequence.logprobs if start < len(sequence.text)],
            cached_tokens=sequence.cached,
        )
        self._end(sequence, finished)

    def _end(self, sequence: _Running, outcome: Finished | BaseException | None) -> None:
        self._release(sequence)
        sequence.request.finish(outcome)

    def _release(self, sequence: _Running) -> None:
        """Free the sequence's slot and its sampler; its cache cells stay for a later prompt
        (``_take_prefix`` removes what that does not share)."""
        del self._running[sequence.slot]
        llama.llama_sampler_free(sequence.sampler)
        self.answers_ended += 1

    def _end_all(self, error: BaseException) -> None:
        for sequence in list(self._running.values()):
            self._end(sequence, error)
        for slot in range(self.slots):
            self._forget(slot)
        while self._queued:
            self._queued.popleft().finish(error)
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _Call):
                item.future.cancel()
            elif isinstance(item, SequenceRequest):
                item.finish(error)

    def _token_logprob(self, row: int, token: int, piece: bytes, top: int) -> TokenLogprob:
        """``token``'s log-probability in ``row``'s logits, the model's own distribution (before
        penalties, grammar and temperature, as vLLM and OpenAI give them), and the ``top``
        likeliest tokens there."""
        logits = np.ctypeslib.as_array(
            llama.llama_get_logits_ith(self._ctx, row), shape=(self._n_vocab,)
        )
        peak = float(logits.max())
        # float32 terms summed in float64: llama.cpp server's figures to float32 precision,
        # at a tenth of the time of converting the row first.
        normaliser = peak + math.log(float(np.exp(logits - peak).sum(dtype=np.float64)))
        alternatives = []
        for other in _likeliest(logits, peak, top):
            raw = piece if other == token else self._token_bytes(other)
            alternatives.append(
                TopLogprob(
                    token=raw.decode("utf-8", errors="replace"),
                    logprob=float(logits[other]) - normaliser,
                    bytes=list(raw),
                )
            )
        return TokenLogprob(
            token=piece.decode("utf-8", errors="replace"),
            logprob=float(logits[token]) - normaliser,
            bytes=list(piece),
            top_logprobs=alternatives,
        )

    def _token_bytes(self, token: int) -> bytes:
        known = self._pieces.get(token)
        if known is not None:
            return known
        size = llama.llama_token_to_piece(self._vocab, token, self._piece, _PIECE_BYTES, 0, False)
        if size < 0:  # longer than the buffer: ask again with room for it
            buffer = ctypes.create_string_buffer(-size)
            size = llama.llama_token_to_piece(self._vocab, token, buffer, -size, 0, False)
            piece = buffer.raw[:size]
        else:
            piece = self._piece.raw[:size]
        self._pieces[token] = piece
        return piece

    def tokenize(self, text: str) -> list[int]:
        data = text.encode("utf-8")
        room = len(data) + 8
        tokens = (llama.llama_token * room)()
        count = llama.llama_tokenize(self._vocab, data, len(data), tokens, room, False, False)
        return list(tokens[: max(count, 0)])


def sequences_context_params(
    slots: int, context_per_slot: int, n_batch: int, flash_attention: bool
) -> Any:
    """llama.cpp context parameters for ``slots`` sequences, each with a cache of its own of
    ``context_per_slot`` cells (threads left at llama.cpp's defaults)."""
    params = llama.llama_context_default_params()
    params.n_ctx = context_per_slot * slots
    params.n_batch = n_batch
    params.n_ubatch = n_batch
    params.n_seq_max = slots
    params.kv_unified = False
    # Flash attention: each row still attends to its own cache alone, so an answer is the same
    # batched or alone; the logits' last bits differ from attention without it.
    params.flash_attn_type = (
        llama.LLAMA_FLASH_ATTN_TYPE_ENABLED
        if flash_attention
        else llama.LLAMA_FLASH_ATTN_TYPE_DISABLED
    )
    return params


def _run_call(call: _Call) -> None:
    if call.future.set_running_or_notify_cancel():
        try:
            call.future.set_result(call.work())
        except BaseException as exc:
            call.future.set_exception(exc)


def _grammar_sampler(vocab: Any, grammar: str) -> Any:
    """A sampler held to ``grammar`` (GBNF from its ``root`` rule); NULL when llama.cpp
    refuses the grammar."""
    return llama.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")


def check_grammar(model: Any, grammar: str) -> bool:
    """Whether llama.cpp parses ``grammar``."""
    sampler = _grammar_sampler(llama.llama_model_get_vocab(model), grammar)
    if not sampler:
        return False
    llama.llama_sampler_free(sampler)
    return True


def _penalized_best(logits: np.ndarray, recent: deque[int], penalties: Any) -> tuple[int, float]:
    """The likeliest token once the penalties sampler has lowered the tokens in ``recent``,
    and its logit, as greedy would pick it (the first of equals). The penalised logits come
    from the sampler itself, so they are llama.cpp's to the last bit; the others are as they
    are, so their best is the argmax with the penalised ones left out."""
    seen = sorted(set(recent))
    if not seen:
        best = int(logits.argmax())
        return best, float(logits[best])
    others = logits.copy()
    others[seen] = -np.inf
    best = int(others.argmax())
    logit = float(others[best])
    lowered = (llama.llama_token_data * len(seen))(
        *(llama.llama_token_data(token, float(logits[token]), 0.0) for token in seen)
    )
    array = llama.llama_token_data_array(data=lowered, size=len(seen), selected=-1, sorted=False)
    llama.llama_sampler_apply(penalties, ctypes.byref(array))
    for entry in lowered:
        token, value = int(entry.id), float(entry.logit)
        if value > logit or (value == logit and token < best):
            best, logit = token, value
    return best, logit


def _sampler_chain(vocab: Any, sampling: Sampling) -> Any:
    """The chain llama-cpp-python builds for a completion: penalties, grammar, then greedy at
    temperature 0, else top-k, top-p, min-p, temperature and a seeded draw."""
    chain = llama.llama_sampler_chain_init(llama.llama_sampler_chain_default_params())
    if sampling.logit_bias:
        biases = (llama.llama_logit_bias * len(sampling.logit_bias))(
            *(llama.llama_logit_bias(token, bias) for token, bias in sampling.logit_bias)
        )
        llama.llama_sampler_chain_add(
            chain,
            llama.llama_sampler_init_logit_bias(
                llama.llama_vocab_n_tokens(vocab), len(sampling.logit_bias), biases
            ),
        )
    penalties = sampling.penalties
    if penalties is not None and penalties.active:
        llama.llama_sampler_chain_add(
            chain,
            llama.llama_sampler_init_penalties(
                llama.llama_vocab_n_tokens(vocab),
                penalties.last_n,
                penalties.repeat,
                penalties.frequency,
                penalties.presence,
            ),
        )
    if sampling.dry is not None:
        dry = sampling.dry
        breakers = (ctypes.c_char_p * len(dry.breakers))(*(b.encode() for b in dry.breakers))
        llama.llama_sampler_chain_add(
            chain,
            llama.llama_sampler_init_dry(
                vocab,
                dry.multiplier,
                dry.base,
                dry.allowed_length,
                dry.last_n,
                breakers,
                len(dry.breakers),
            ),
        )
    if sampling.grammar is not None:
        grammar = _grammar_sampler(vocab, sampling.grammar)
        if not grammar:
            llama.llama_sampler_free(chain)
            raise ValueError("llama.cpp refused the grammar")
        llama.llama_sampler_chain_add(chain, grammar)
    if sampling.temperature == 0:
        llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_greedy())
        return chain
    seed = random.getrandbits(32) if sampling.seed is None else sampling.seed & 0xFFFFFFFF
    for sampler in (
        llama.llama_sampler_init_top_k(sampling.top_k),
        llama.llama_sampler_init_top_p(sampling.top_p, 1),
        llama.llama_sampler_init_min_p(sampling.min_p, 1),
        llama.llama_sampler_init_temp(sampling.temperature),
        llama.llama_sampler_init_dist(seed),
    ):
        llama.llama_sampler_chain_add(chain, sampler)
    return chain


_NEAR_PEAK: Final = 12.0
"""Logits this far below the largest are looked through first for the likeliest tokens."""
_SORTED_AT_MOST: Final = 2048


def _likeliest(logits: np.ndarray[Any, Any], peak: float, count: int) -> list[int]:
    """The ``count`` tokens of largest logit, largest first (the lower id first among equals).
    Exact: when at least ``count`` logits lie within ``_NEAR_PEAK`` of the peak, those hold
    them all, and sorting a few is far cheaper than partitioning the vocabulary (0.46 ms)."""
    count = min(count, logits.size)
    if count == 0:
        return []
    near = np.flatnonzero(logits >= peak - _NEAR_PEAK)
    if near.size < count:
        near = np.argpartition(logits, -count)[-count:]
    elif near.size > _SORTED_AT_MOST:  # a flat distribution: partition the few first
        near = near[np.argpartition(logits[near], -count)[-count:]]
    order = np.lexsort((near, -logits[near]))[:count]
    return [int(t) for t in near[order]]


def _first_stop(text: str, stops: list[str], emitted: int) -> int | None:
    """Where the earliest stop string in ``text`` begins, looking only where a new one could
    be (text before ``emitted`` held none)."""
    found: int | None = None
    for stop in stops:
        if not stop:
            continue
        at = text.find(stop, max(0, emitted - len(stop) + 1))
        if at != -1 and (found is None or at < found):
            found = at
    return found


def _stop_prefix_length(text: str, stops: list[str]) -> int:
    """The length of the longest end of ``text`` that begins a stop string."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if stop.startswith(text[-size:]):
                longest = size
                break
    return longest
