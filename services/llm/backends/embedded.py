"""llama.cpp in-process (llama-cpp-python): the default backend, no server and no GPU needed.

Answers are decoded in batches (``llama_batch.py``): up to ``parallel`` requests share each
decoding pass, and more wait their turn in arrival order (``asyncio.Semaphore`` is FIFO).
Everything that touches the model runs on the batch engine's thread, so the event loop never
blocks. Generation always streams inside, which lets a timeout or a gone client stop it
between tokens.

Scoring (the TLC classifier) runs on the model's own single-sequence context, between two
passes. It keeps the model's state after the fixed head of a prompt (the instruction and
worked examples, all turns but the last) for a few heads, so that each call reads only its own
question: the head is most of the prompt and reading it is most of the time.

The module passes 400 lines because generation and scoring are one backend: they share the
model, its chat template, the turns and the engine's thread. The decoding itself is
``llama_batch.py``; what stands apart here is small and at the end: the batch engine's metrics
collector and the JSON-schema grammar fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import math
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import numpy as np
import structlog
from llama_cpp import (
    Llama,
    llama_state_seq_get_data,
    llama_state_seq_get_size,
    llama_state_seq_set_data,
)
from llama_cpp.llama_chat_format import Jinja2ChatFormatter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from libs.common.errors import BackendTimeout, BackendUnavailable, InvalidRequest, PASError
from libs.common.schemas.llm import TokenLogprob
from services.llm.backends.base import (
    BackendHealth,
    Completion,
    Embeddings,
    Generation,
    ModelDescription,
    StreamEvent,
    TextDelta,
    Turn,
)
from services.llm.backends.embedding_model import EmbeddingModel
from services.llm.backends.json_grammar import json_grammar
from services.llm.backends.llama_batch import (
    DEFAULT_LAST_N,
    BatchEngine,
    Dry,
    Finished,
    Penalties,
    Sampling,
    SequenceRequest,
    check_grammar,
)
from services.llm.backends.prompt_cache import PromptStore, StoredPrompt
from services.llm.backends.prompt_file import (
    Identity,
    identity,
    load_prompts,
    remove_unfinished,
    save_prompts,
)
from services.llm.weight_conversion import batchable_weights

logger = structlog.get_logger("pas.llm.embedded")

DEFAULT_TEMPERATURE = 0.8
# Used when a GGUF file carries no chat template of its own.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Model states kept after prompt heads: the classifier asks with three (domain, task, method).
KEPT_HEADS = 4


class _Prepared(msgspec.Struct):
    tokens: list[int]
    max_tokens: int
    sampling: Sampling
    stop: list[str]


T = TypeVar("T")


_Item = TextDelta | Completion | BaseException


class EmbeddedBackend:
    kind = "embedded"

    def __init__(
        self,
        model_path: Path,
        *,
        served_name: str | None,
        n_ctx: int,
        n_threads: int | None,
        n_threads_batch: int | None = None,
        timeout_s: float,
        default_max_tokens: int,
        parallel: int = 4,
        weights_cache_dir: Path | None = None,
        flash_attention: bool = True,
        reuse_prompts: bool = True,
        prompt_store_bytes: int = 0,
        prompt_file: Path | None = None,
        prompt_save_interval_s: float = 0,
    ) -> None:
        """``prompt_file``: where the prompt store is written when the service stops and read
        from when it starts (``prompt_file.py``); None keeps it in memory only. With
        ``prompt_save_interval_s`` it is also written that often while new answers come."""
        self.location = str(model_path)
        self._reuse_prompts = reuse_prompts
        self._prompt_store_bytes = prompt_store_bytes
        self._prompt_file = prompt_file
        self._prompts_made_with: Identity = {}
        self._prompt_save_interval_s = prompt_save_interval_s
        # The engine's ``answers_ended`` when the prompt file was last written.
        self._prompts_saved_after = 0
        self._stopping = asyncio.Event()
        self._prompt_saver: asyncio.Task[None] | None = None
        self._model_path = model_path
        # None: the file is loaded as it is; else Q4_1/Q5_1 weights are converted for batching.
        self._weights_cache_dir = weights_cache_dir
        self._flash_attention = flash_attention
        self._served_name = served_name
        self._n_ctx = n_ctx
        self._n_threads = n_threads
        self._n_threads_batch = n_threads_batch
        self._timeout_s = timeout_s
        self._default_max_tokens = default_max_tokens
        self._parallel = parallel
        # A turn is a sequence of the batch (or a scoring call): ``parallel`` of them at once.
        self._turns = asyncio.Semaphore(parallel)
        self._engine: BatchEngine | None = None
        self._embedder: EmbeddingModel | None = None
        self._llm: Any = None
        self._formatter: Any = None
        self._description = ModelDescription(name=served_name or _served_name_for(model_path))
        self.waiting = 0
        self._producers: set[asyncio.Task[None]] = set()
        self._heads: OrderedDict[tuple[int, ...], bytes] = OrderedDict()
        self.collectors: Sequence[Collector] = (_BatchingCollector(self),)

    @property
    def model(self) -> ModelDescription:
        return self._description

    async def start(self) -> None:
        if not self._model_path.is_file():
            raise BackendUnavailable(f"no GGUF model file at {self._model_path}")
        await asyncio.to_thread(self._load)
        if self._prompt_file is not None and self._prompt_save_interval_s > 0:
            self._prompt_saver = asyncio.create_task(self._save_prompts_every())
        logger.info(
            "model loaded",
            path=self.location,
            model=self._description.name,
            context_length=self._n_ctx,
            parallel=self._parallel,
        )

    def _load(self) -> None:
        weights = self._model_path
        if self._weights_cache_dir is not None:
            weights = batchable_weights(
                weights, self._weights_cache_dir, threads=self._n_threads_batch
            )
            self.location = str(weights)
        llm = Llama(
            model_path=str(weights),
            n_ctx=self._n_ctx,
            n_threads=self._n_threads,
            n_threads_batch=self._n_threads_batch,
            flash_attn=self._flash_attention,
            verbose=False,
        )
        metadata: dict[str, str] = llm.metadata
        eos = llm.detokenize([llm.token_eos()], special=True).decode(errors="ignore")
        bos = llm.detokenize([llm.token_bos()], special=True).decode(errors="ignore")
        self._formatter = Jinja2ChatFormatter(
            template=metadata.get("tokenizer.chat_template") or CHATML_TEMPLATE,
            eos_token=eos,
            bos_token=bos,
            stop_token_ids=[llm.token_eos()],
        )
        self._engine = BatchEngine(
            llm.model,
            slots=self._parallel,
            context_per_slot=self._n_ctx,
            n_threads=self._n_threads,
            n_threads_batch=self._n_threads_batch,
            flash_attention=self._flash_attention,
            reuse_prompts=self._reuse_prompts,
            prompt_store=(
                PromptStore(self._prompt_store_bytes) if self._prompt_store_bytes else None
            ),
        )
        self._llm = llm
        if self._prompt_file is not None and self._engine.prompt_store is not None:
            self._prompts_made_with = identity(weights, self._engine.state_settings)
            remove_unfinished(self._prompt_file)
            read = load_prompts(
                self._engine.prompt_store, self._prompt_file, self._prompts_made_with
            )
            logger.info("prompts read back", path=str(self._prompt_file), prompts=read)
        self._embedder = EmbeddingModel(
            weights,
            n_ctx=self._n_ctx,
            n_threads=self._n_threads_batch,
            flash_attention=self._flash_attention,
        )
        self._description = ModelDescription(
            name=self._served_name or _served_name_for(self._model_path),
            family=metadata.get("general.architecture", ""),
            parameter_size=metadata.get("general.size_label", ""),
            quantization=_quantization(weights.name),
            context_length=self._n_ctx,
            size_bytes=weights.stat().st_size,
        )

    async def close(self) -> None:
        self._stopping.set()
        if self._prompt_saver is not None:  # a save under way ends first
            await self._prompt_saver
        # Every turn taken: the answers under way are finished first.
        for _ in range(self._parallel):
            await self._turns.acquire()
        self._heads.clear()
        engine, self._engine = self._engine, None
        llm, self._llm = self._llm, None
        embedder, self._embedder = self._embedder, None
        if embedder is not None:
            await asyncio.to_thread(embedder.close)
        if engine is not None:
            await self._save_prompts(engine)
            await asyncio.to_thread(engine.close)  # before the model its context reads
        if llm is not None:
            await asyncio.to_thread(llm.close)
        for _ in range(self._parallel):  # whoever still waits hears the model is gone
            self._turns.release()

    async def _save_prompts_every(self) -> None:
        while not self._stopping.is_set():
            try:
                await asyncio.wait_for(self._stopping.wait(), self._prompt_save_interval_s)
            except TimeoutError:
                if self._engine is not None:
                    await self._save_prompts(self._engine)

    async def _save_prompts(self, engine: BatchEngine) -> None:
        """The store's prompts and the idle slots', to ``prompt_file``, when an answer ended
        since it was last written (a file read back at start and nothing asked since is left
        as it is)."""
        if self._prompt_file is None or engine.prompt_store is None:
            return
        ended = engine.answers_ended
        if ended == self._prompts_saved_after:
            return

        def prompts_to_keep() -> tuple[list[StoredPrompt], float]:
            started = time.perf_counter()
            return engine.prompts_to_keep(), time.perf_counter() - started

        try:
            prompts, paused_s = await asyncio.wrap_future(engine.call(prompts_to_keep))
            started = time.perf_counter()
            if prompts:
                await asyncio.to_thread(
                    save_prompts, prompts, self._prompt_file, self._prompts_made_with
                )
        except Exception:  # a cache: the service goes on (or stops) all the same
            logger.exception("prompts not saved", path=str(self._prompt_file))
            return
        self._prompts_saved_after = ended
        logger.info(
            "prompts saved",
            path=str(self._prompt_file),
            prompts=len(prompts),
            bytes=sum(len(prompt.state) for prompt in prompts),
            # Answers wait while the slots' prompts are copied, not while the file is written.
            decoding_paused_ms=round(paused_s * 1000, 2),
            written_ms=round((time.perf_counter() - started) * 1000, 2),
        )

    async def probe(self) -> BackendHealth:
        if self._engine is None:
            return BackendHealth(answers=False, detail="model not loaded")
        detail = (
            f"loaded in process; {self._engine.running} of {self._parallel} sequences "
            f"decoding, {self.waiting} request(s) waiting"
        )
        store = self._engine.prompt_store
        if store is not None:
            detail += f"; {len(store)} prompt(s) stored ({store.bytes / 2**20:.1f} MiB)"
        return BackendHealth(answers=True, detail=detail)

    async def complete(self, generation: Generation) -> Completion:
        final: Completion | None = None
        stream = self.stream(generation)
        try:
            async for event in stream:
                if isinstance(event, Completion):
                    final = event
        finally:
            await stream.aclose()
        assert final is not None
        return final

    async def stream(self, generation: Generation) -> AsyncGenerator[StreamEvent, None]:
        # The model's turn belongs to a producer task, not to this generator: a consumer that
        # vanishes without closing us (a client gone mid-stream) cannot keep the model, since
        # the producer stops at the end of the answer or at the deadline whatever happens here.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout_s
        queue: asyncio.Queue[_Item] = asyncio.Queue()
        cancel = threading.Event()
        producer = asyncio.create_task(self._produce(generation, queue, cancel, deadline))
        self._producers.add(producer)
        producer.add_done_callback(self._producers.discard)
        try:
            while True:
                try:
                    async with asyncio.timeout_at(deadline):
                        item = await queue.get()
                except TimeoutError:
                    raise BackendTimeout(
                        f"the model did not finish within LLM timeout {self._timeout_s:g}s"
                    ) from None
                if isinstance(item, PASError):
                    raise item
                if isinstance(item, BaseException):
                    raise BackendUnavailable(f"llama.cpp failed: {item}") from item
                if isinstance(item, Completion):
                    yield item
                    return
                yield item
        finally:
            cancel.set()

    async def _produce(
        self,
        generation: Generation,
        queue: asyncio.Queue[_Item],
        cancel: threading.Event,
        deadline: float,
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            engine = await self._take_turn(deadline)
        except PASError as exc:
            queue.put_nowait(exc)
            return
        try:
            started = time.perf_counter_ns()
            prepared = await self._on_model_thread(partial(self._prepare, generation))
            outcome: asyncio.Future[Finished | BaseException | None] = loop.create_future()
            engine.submit(
                SequenceRequest(
                    tokens=prepared.tokens,
                    max_tokens=prepared.max_tokens,
                    sampling=prepared.sampling,
                    stop=prepared.stop,
                    emit=partial(_call_soon, loop, partial(_put_delta, queue)),
                    finish=partial(_call_soon, loop, _settle, outcome),
                    cancel=cancel,
                    until=time.monotonic() + max(0.0, deadline - loop.time()),
                    logprobs=generation.logprobs,
                )
            )
            try:
                finished = await asyncio.shield(outcome)
            except asyncio.CancelledError:
                cancel.set()  # the engine ends the sequence at its next pass
                await outcome  # its slot is free before the turn is given back
                raise
            if isinstance(finished, BaseException):
                queue.put_nowait(finished)
            elif finished is not None:
                queue.put_nowait(
                    Completion(
                        text=finished.text,
                        finish_reason="length" if finished.finish_reason == "length" else "stop",
                        prompt_tokens=len(prepared.tokens),
                        completion_tokens=finished.completion_tokens,
                        prompt_eval_ns=finished.prompt_eval_ns,
                        eval_ns=finished.eval_ns,
                        total_ns=time.perf_counter_ns() - started,
                        logprobs=finished.logprobs,
                        cached_tokens=finished.cached_tokens,
                    )
                )
        except Exception as exc:
            queue.put_nowait(exc)
        finally:
            self._turns.release()

    async def score_choices(self, messages: list[Turn], choices: list[str]) -> list[float]:
        """Log-probability of each choice as the whole answer; ``InvalidRequest`` when the
        prompt and the longest choice do not fit the model's context."""
        return await self._in_turn(partial(self._score, messages, choices))

    async def embed(self, texts: list[str], *, truncate: bool) -> Embeddings:
        return await self._in_turn(partial(self._embed, texts, truncate))

    async def _in_turn(self, work: Callable[[], T]) -> T:
        """Run ``work`` on the engine's thread, between two decoding passes, once a turn is
        free (a scoring or embedding call takes one, as an answer does)."""
        loop = asyncio.get_running_loop()
        await self._take_turn(loop.time() + self._timeout_s)
        try:
            return await self._on_model_thread(work)
        finally:
            self._turns.release()

    async def _take_turn(self, deadline: float) -> BatchEngine:
        self.waiting += 1
        try:
            async with asyncio.timeout_at(deadline):
                await self._turns.acquire()
        except TimeoutError:
            raise BackendTimeout(
                f"waited {self._timeout_s:g}s for the model; {self.waiting - 1} request(s) "
                "were ahead (raise LLM_TIMEOUT or add replicas)"
            ) from None
        finally:
            self.waiting -= 1
        if self._engine is None:
            self._turns.release()
            raise BackendUnavailable("the model is not loaded (service starting or stopping)")
        return self._engine

    async def _on_model_thread(self, work: Callable[[], T]) -> T:
        """Run ``work`` on the engine's thread, between two decoding passes."""
        assert self._engine is not None
        return await asyncio.wrap_future(self._engine.call(work))

    # -- on the model's thread -----------------------------------------------------------------

    def _embed(self, texts: list[str], truncate: bool) -> Embeddings:
        assert self._embedder is not None  # made with the engine a turn was taken on
        return self._embedder.embed(texts, truncate=truncate)

    def _prompt_tokens(self, messages: list[Turn]) -> list[int]:
        rendered = self._formatter(messages=[msgspec.structs.asdict(m) for m in messages])
        tokens: list[int] = self._llm.tokenize(
            rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True
        )
        return tokens

    def _prepare(self, generation: Generation) -> _Prepared:
        tokens = self._prompt_tokens(generation.messages)
        room = self._n_ctx - len(tokens)
        if room < 1:
            raise InvalidRequest(
                f"the prompt is {len(tokens)} tokens; the model's context is {self._n_ctx} "
                "tokens: shorten the messages"
            )
        max_tokens = generation.max_tokens or min(self._default_max_tokens, room)
        if max_tokens > room:
            raise InvalidRequest(
                f"the prompt ({len(tokens)} tokens) plus max_tokens ({max_tokens}) exceed the "
                f"model's context of {self._n_ctx} tokens: lower max_tokens to at most {room}"
            )
        grammar = None
        if generation.json_schema is not None or generation.json_mode:
            grammar = json_grammar(generation.json_schema)
            if not check_grammar(self._llm.model, grammar):
                raise InvalidRequest(
                    "cannot constrain output to this JSON schema: llama.cpp "
                    "refused the grammar made from it"
                )
        temperature = (
            DEFAULT_TEMPERATURE if generation.temperature is None else (generation.temperature)
        )
        sampling = Sampling(
            temperature=temperature,
            seed=generation.seed,
            grammar=grammar,
            penalties=self._penalties(generation),
            dry=self._dry(generation),
            logit_bias=self._logit_bias(generation),
        )
        # A field the request leaves out keeps llama-cpp-python's default (Sampling's).
        asked = {
            name: value
            for name in ("top_p", "top_k", "min_p")
            if (value := getattr(generation, name)) is not None
        }
        sampling = msgspec.structs.replace(sampling, **asked)
        return _Prepared(
            tokens=tokens,
            max_tokens=max_tokens,
            sampling=sampling,
            stop=[*generation.stop, self._formatter.eos_token],
        )

    def _logit_bias(self, generation: Generation) -> tuple[tuple[int, float], ...]:
        biases = generation.logit_bias or {}
        vocabulary = self._llm.n_vocab()
        for token in biases:
            if token >= vocabulary:
                raise InvalidRequest(
                    f"logit_bias: token {token} is not in the model's vocabulary of "
                    f"{vocabulary} tokens"
                )
        return tuple(sorted(biases.items()))

    def _penalties(self, generation: Generation) -> Penalties | None:
        """llama.cpp's penalties from the request's (OpenAI's or Ollama's names); none unless
        asked for, as OpenAI and llama-cpp-python default. A window of -1 is the context."""
        asked = (
            generation.repeat_penalty,
            generation.frequency_penalty,
            generation.presence_penalty,
        )
        if all(value is None for value in asked):
            return None
        return Penalties(
            last_n=self._window(generation.repeat_last_n),
            repeat=1.0 if generation.repeat_penalty is None else generation.repeat_penalty,
            frequency=generation.frequency_penalty or 0.0,
            presence=generation.presence_penalty or 0.0,
        )

    def _dry(self, generation: Generation) -> Dry | None:
        """llama.cpp's DRY when the request asks for it (a multiplier above 0), with llama.cpp
        server's defaults for what it leaves out."""
        if not generation.dry_multiplier:
            return None
        dry = Dry(multiplier=generation.dry_multiplier)
        if generation.dry_base is not None:
            dry = msgspec.structs.replace(dry, base=generation.dry_base)
        if generation.dry_allowed_length is not None:
            dry = msgspec.structs.replace(dry, allowed_length=generation.dry_allowed_length)
        if generation.dry_penalty_last_n is not None:
            dry = msgspec.structs.replace(dry, last_n=self._window(generation.dry_penalty_last_n))
        return dry

    def _window(self, last_n: int | None) -> int:
        """A penalty's look-back in tokens: the default when unnamed, the context for -1."""
        if last_n is None:
            return DEFAULT_LAST_N
        return self._n_ctx if last_n == -1 else last_n

    def _score(self, messages: list[Turn], choices: list[str]) -> list[float]:
        llm = self._llm
        prompt = self._prompt_tokens(messages)
        answers = [llm.tokenize(c.encode("utf-8"), add_bos=False, special=False) for c in choices]
        # The prompt and every answer but its last token go through the model: past the
        # context, llama.cpp fails ("llama_decode returned 1"), so say what is too long first.
        longest = max((len(tokens) for tokens in answers), default=1)
        if len(prompt) + longest - 1 > self._n_ctx:
            raise InvalidRequest(
                f"the prompt ({len(prompt)} tokens) and its longest answer ({longest} tokens) "
                f"exceed the model's context of {self._n_ctx} tokens"
            )
        self._read_prompt(prompt, self._head_length(messages, prompt))
        after_prompt = _log_softmax(self._last_logits())
        scores = []
        for tokens in answers:
            llm.n_tokens = len(prompt)  # rewind to the end of the prompt
            total = float(after_prompt[tokens[0]])
            for position, token in enumerate(tokens[:-1]):
                llm.eval([token])
                total += float(_log_softmax(self._last_logits())[tokens[position + 1]])
            scores.append(total)
        llm.n_tokens = len(prompt)
        return scores

    def _head_length(self, messages: list[Turn], prompt: list[int]) -> int:
        """How many tokens of ``prompt`` all turns but the last make (at least one is left)."""
        if len(messages) < 2:
            return 0
        try:
            head = self._prompt_tokens(messages[:-1])
        except Exception:  # a chat template may refuse a conversation ending with the assistant
            return 0
        length = 0
        for ours, theirs in zip(head, prompt[:-1], strict=False):
            if ours != theirs:
                break
            length += 1
        return length

    def _read_prompt(self, prompt: list[int], head: int) -> None:
        """Evaluate ``prompt``, starting from the kept state after its head when there is one."""
        llm = self._llm
        key = tuple(prompt[:head])
        kept = self._heads.get(key) if head else None
        if kept is not None and self._restore(kept, prompt[:head]):
            self._heads.move_to_end(key)
        else:
            llm.reset()
            if head:
                llm.eval(prompt[:head])
                self._heads[key] = self._snapshot()
                while len(self._heads) > KEPT_HEADS:
                    self._heads.popitem(last=False)
        llm.eval(prompt[head:])

    def _snapshot(self) -> bytes:
        context = self._llm._ctx.ctx
        size = llama_state_seq_get_size(context, 0)
        buffer = (ctypes.c_uint8 * size)()
        written = llama_state_seq_get_data(context, buffer, size, 0)
        return bytes(buffer)[:written]

    def _restore(self, state: bytes, tokens: list[int]) -> bool:
        llm = self._llm
        llm._ctx.kv_cache_seq_rm(0, 0, -1)
        buffer = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
        if llama_state_seq_set_data(llm._ctx.ctx, buffer, len(state), 0) != len(state):
            return False
        llm.input_ids[: len(tokens)] = tokens
        llm.n_tokens = len(tokens)
        return True

    def _last_logits(self) -> np.ndarray[Any, np.dtype[np.float32]]:
        # llama-cpp-python keeps no logits without logits_all; read the context's last row.
        pointer = self._llm._ctx.get_logits()
        return np.ctypeslib.as_array(pointer, shape=(self._llm.n_vocab(),)).copy()


class _BatchingCollector(Collector):
    """The batch engine's counts, read at scrape time (nothing is counted per token here)."""

    def __init__(self, backend: EmbeddedBackend) -> None:
        self._backend = backend

    def collect(self) -> Iterator[Metric]:
        engine, model = self._backend._engine, self._backend.model.name
        passes = CounterMetricFamily(
            "pas_llm_decode_passes",
            "Decoding passes of the embedded model (one token for each sequence in the batch)",
            labels=["model"],
        )
        steps = CounterMetricFamily(
            "pas_llm_decode_sequence_steps",
            "Tokens the decoding passes made: their ratio to the passes is the mean batch",
            labels=["model"],
        )
        decoding = GaugeMetricFamily(
            "pas_llm_sequences_decoding", "Answers in the batch now", labels=["model"]
        )
        prompt_tokens = CounterMetricFamily(
            "pas_llm_prompt_tokens",
            "Prompt tokens of the answers started, by how they got into the cache: read, or "
            "reused from a prompt read before",
            labels=["model", "source"],
        )
        restored = CounterMetricFamily(
            "pas_llm_prompts_restored",
            "Prompts put back in a slot's cache from the prompt store (host memory)",
            labels=["model"],
        )
        stored = GaugeMetricFamily(
            "pas_llm_prompt_store_bytes",
            "Host memory the prompt store holds (LLM_PROMPT_STORE_MB at most)",
            labels=["model"],
        )
        store = engine.prompt_store if engine else None
        passes.add_metric([model], engine.passes if engine else 0)
        steps.add_metric([model], engine.sequence_steps if engine else 0)
        decoding.add_metric([model], engine.running if engine else 0)
        prompt_tokens.add_metric([model, "read"], engine.prompt_tokens_read if engine else 0)
        prompt_tokens.add_metric([model, "reused"], engine.prompt_tokens_reused if engine else 0)
        restored.add_metric([model], engine.prompts_restored if engine else 0)
        stored.add_metric([model], store.bytes if store else 0)
        yield from (passes, steps, decoding, prompt_tokens, restored, stored)


def _log_softmax(logits: np.ndarray[Any, np.dtype[np.float32]]) -> np.ndarray[Any, Any]:
    shifted = logits.astype(np.float64) - float(np.max(logits))
    return shifted - math.log(float(np.exp(shifted).sum()))


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    """Hand ``callback`` to the event loop from the engine's thread (dropped once it closed)."""
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
        loop.call_soon_threadsafe(callback, *args)


def _put_delta(queue: asyncio.Queue[_Item], text: str, logprobs: list[TokenLogprob] | None) -> None:
    queue.put_nowait(TextDelta(text=text, logprobs=logprobs))


def _settle(future: asyncio.Future[Any], outcome: Any) -> None:
    if not future.done():
        future.set_result(outcome)


def _served_name_for(path: Path) -> str:
    """``SmolLM2-135M-Instruct.Q4_1.gguf`` is served as ``smollm2-135m-instruct``."""
    return path.name.split(".")[0].lower()


def _quantization(file_name: str) -> str:
    for part in reversed(Path(file_name).stem.replace("-", ".").split(".")):
        if part.upper().startswith(("Q", "F16", "F32", "BF16", "IQ")):
            return part.upper()
    return ""
