"""llama.cpp in-process (llama-cpp-python): the default backend, no server and no GPU needed.

One model instance serves one request at a time, so requests take turns in arrival order
(``asyncio.Lock`` is FIFO); the model runs on its own thread so the event loop never blocks.
Generation always streams inside, which lets a timeout or a gone client stop it between tokens.

Scoring (the TLC classifier) keeps the model's state after the fixed head of a prompt (the
instruction and worked examples, all turns but the last) for a few heads, so that each call
reads only its own question: the head is most of the prompt and reading it is most of the time.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import structlog

from libs.common.errors import BackendTimeout, BackendUnavailable, InvalidRequest, PASError
from services.llm.backends.base import (
    BackendHealth,
    Completion,
    Generation,
    ModelDescription,
    StreamEvent,
    TextDelta,
    Turn,
)

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
    kwargs: dict[str, Any]


class _Finished(msgspec.Struct):
    text: str
    finish_reason: str
    completion_tokens: int
    prompt_eval_ns: int
    eval_ns: int


_Item = str | Completion | BaseException


class EmbeddedBackend:
    kind = "embedded"

    def __init__(
        self,
        model_path: Path,
        *,
        served_name: str | None,
        n_ctx: int,
        n_threads: int | None,
        timeout_s: float,
        default_max_tokens: int,
    ) -> None:
        self.location = str(model_path)
        self._model_path = model_path
        self._served_name = served_name
        self._n_ctx = n_ctx
        self._n_threads = n_threads
        self._timeout_s = timeout_s
        self._default_max_tokens = default_max_tokens
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama")
        self._turn = asyncio.Lock()
        self._llm: Any = None
        self._formatter: Any = None
        self._description = ModelDescription(name=served_name or _served_name_for(model_path))
        self.waiting = 0
        self._producers: set[asyncio.Task[None]] = set()
        self._heads: OrderedDict[tuple[int, ...], bytes] = OrderedDict()

    @property
    def model(self) -> ModelDescription:
        return self._description

    async def start(self) -> None:
        if not self._model_path.is_file():
            raise BackendUnavailable(f"no GGUF model file at {self._model_path}")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._load)
        logger.info(
            "model loaded",
            path=self.location,
            model=self._description.name,
            context_length=self._n_ctx,
        )

    def _load(self) -> None:
        from llama_cpp import Llama  # noqa: PLC0415  (heavy import, only for this backend)
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter  # noqa: PLC0415

        llm = Llama(
            model_path=str(self._model_path),
            n_ctx=self._n_ctx,
            n_threads=self._n_threads,
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
        self._llm = llm
        self._description = ModelDescription(
            name=self._served_name or _served_name_for(self._model_path),
            family=metadata.get("general.architecture", ""),
            parameter_size=metadata.get("general.size_label", ""),
            quantization=_quantization(self._model_path.name),
            context_length=self._n_ctx,
            size_bytes=self._model_path.stat().st_size,
        )

    async def close(self) -> None:
        async with self._turn:
            self._heads.clear()
            if self._llm is not None:
                llm, self._llm = self._llm, None
                await asyncio.get_running_loop().run_in_executor(self._executor, llm.close)
        self._executor.shutdown(wait=True)

    async def probe(self) -> BackendHealth:
        if self._llm is None:
            return BackendHealth(answers=False, detail="model not loaded")
        return BackendHealth(
            answers=True, detail=f"loaded in process; {self.waiting} request(s) waiting"
        )

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
                yield TextDelta(text=item)
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
            await self._take_turn(deadline)
        except PASError as exc:
            queue.put_nowait(exc)
            return
        try:
            started = time.perf_counter_ns()
            prepared = await loop.run_in_executor(self._executor, self._prepare, generation)

            def emit(text: str) -> None:
                loop.call_soon_threadsafe(queue.put_nowait, text)

            until = time.monotonic() + max(0.0, deadline - loop.time())
            finished = await loop.run_in_executor(
                self._executor, self._generate, prepared, emit, cancel, until
            )
            if finished is not None:
                queue.put_nowait(
                    Completion(
                        text=finished.text,
                        finish_reason="length" if finished.finish_reason == "length" else "stop",
                        prompt_tokens=len(prepared.tokens),
                        completion_tokens=finished.completion_tokens,
                        prompt_eval_ns=finished.prompt_eval_ns,
                        eval_ns=finished.eval_ns,
                        total_ns=time.perf_counter_ns() - started,
                    )
                )
        except Exception as exc:
            queue.put_nowait(exc)
        finally:
            self._turn.release()

    async def score_choices(self, messages: list[Turn], choices: list[str]) -> list[float]:
        """Log-probability of each choice as the whole answer; ``InvalidRequest`` when the
        prompt and the longest choice do not fit the model's context."""
        loop = asyncio.get_running_loop()
        await self._take_turn(loop.time() + self._timeout_s)
        try:
            return await loop.run_in_executor(self._executor, self._score, messages, choices)
        finally:
            self._turn.release()

    # -- on the model's thread -----------------------------------------------------------------

    async def _take_turn(self, deadline: float) -> None:
        self.waiting += 1
        try:
            async with asyncio.timeout_at(deadline):
                await self._turn.acquire()
        except TimeoutError:
            raise BackendTimeout(
                f"waited {self._timeout_s:g}s for the model; {self.waiting - 1} request(s) "
                "were ahead (raise LLM_TIMEOUT or add replicas)"
            ) from None
        finally:
            self.waiting -= 1
        if self._llm is None:
            self._turn.release()
            raise BackendUnavailable("the model is not loaded (service starting or stopping)")

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
        kwargs: dict[str, Any] = {
            "max_tokens": max_tokens,
            "temperature": (
                DEFAULT_TEMPERATURE if generation.temperature is None else generation.temperature
            ),
            "stop": [*generation.stop, self._formatter.eos_token],
        }
        if generation.top_p is not None:
            kwargs["top_p"] = generation.top_p
        if generation.seed is not None:
            kwargs["seed"] = generation.seed
        if generation.json_schema is not None or generation.json_mode:
            kwargs["grammar"] = _json_grammar(generation.json_schema)
        return _Prepared(tokens=tokens, kwargs=kwargs)

    def _generate(
        self,
        prepared: _Prepared,
        emit: Callable[[str], None],
        cancel: threading.Event,
        until: float,
    ) -> _Finished | None:
        """Run on the model's thread; text goes out through ``emit`` as it is made."""
        started = time.perf_counter_ns()
        first: int | None = None
        parts: list[str] = []
        finish = "stop"
        # Evaluate the whole prompt every time: llama-cpp-python would otherwise reuse the
        # previous request's matching prefix and evaluate only the rest, and logits computed in
        # a different batch shape differ in the last bits, enough to flip a greedy choice. The
        # same request must give the same text at temperature 0.
        self._llm.reset()
        chunks = self._llm.create_completion(prepared.tokens, stream=True, **prepared.kwargs)
        for chunk in chunks:
            if cancel.is_set() or time.monotonic() > until:
                chunks.close()
                logger.info(
                    "generation stopped before its end",
                    reason="the caller went away" if cancel.is_set() else "LLM timeout",
                    tokens_made=len(parts),
                )
                return None
            choice = chunk["choices"][0]
            if first is None:
                first = time.perf_counter_ns()
            if choice["text"]:
                parts.append(choice["text"])
                emit(choice["text"])
            if choice["finish_reason"]:
                finish = choice["finish_reason"]
        ended = time.perf_counter_ns()
        text = "".join(parts)
        counted = self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        first = first or ended
        return _Finished(
            text=text,
            finish_reason=finish,
            completion_tokens=len(counted),
            prompt_eval_ns=first - started,
            eval_ns=ended - first,
        )

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
        from llama_cpp import llama_state_seq_get_data, llama_state_seq_get_size  # noqa: PLC0415

        context = self._llm._ctx.ctx
        size = llama_state_seq_get_size(context, 0)
        buffer = (ctypes.c_uint8 * size)()
        written = llama_state_seq_get_data(context, buffer, size, 0)
        return bytes(buffer)[:written]

    def _restore(self, state: bytes, tokens: list[int]) -> bool:
        from llama_cpp import llama_state_seq_set_data  # noqa: PLC0415

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


def _log_softmax(logits: np.ndarray[Any, np.dtype[np.float32]]) -> np.ndarray[Any, Any]:
    shifted = logits.astype(np.float64) - float(np.max(logits))
    return shifted - math.log(float(np.exp(shifted).sum()))


# llama-cpp-python's schema converter lets a string hold any character but a quote or a
# backslash, raw newlines and other control characters included, which JSON forbids: a model
# then writes `"value": "}]}\n{"` and the answer does not parse. llama.cpp's own converter (and
# llama-cpp-python's free-form JSON grammar) exclude them; so does the rule put in its place.
_LAX_STRING_CHAR = 'char ::= [^"\\\\] |'
_JSON_STRING_CHAR = 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |'


def _json_grammar(schema: dict[str, Any] | None) -> Any:
    from llama_cpp.llama_grammar import (  # noqa: PLC0415
        JSON_GBNF,
        LlamaGrammar,
        json_schema_to_gbnf,
    )

    try:
        if schema is None:
            return LlamaGrammar.from_string(JSON_GBNF, verbose=False)
        rules = json_schema_to_gbnf(json.dumps(schema))
        return LlamaGrammar.from_string(
            rules.replace(_LAX_STRING_CHAR, _JSON_STRING_CHAR), verbose=False
        )
    except Exception as exc:
        raise InvalidRequest(f"cannot constrain output to this JSON schema: {exc}") from exc


def _served_name_for(path: Path) -> str:
    """``SmolLM2-135M-Instruct.Q4_1.gguf`` is served as ``smollm2-135m-instruct``."""
    return path.name.split(".")[0].lower()


def _quantization(file_name: str) -> str:
    for part in reversed(Path(file_name).stem.replace("-", ".").split(".")):
        if part.upper().startswith(("Q", "F16", "F32", "BF16", "IQ")):
            return part.upper()
    return ""
