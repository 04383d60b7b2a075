"""Embeddings of the embedded model: the mean of its last hidden states over a text's tokens,
normalised to length 1 (as Ollama gives a chat model's), from a llama.cpp context of its own.

The context is made at the first request (a second view of the same mapped weights, its own
cache for one context's worth of tokens): a service that is never asked for embeddings pays
nothing. Texts are read together in as few passes as fit, each as its own sequence; a text
gets the same vector alone or among others to about 1e-8. Not thread-safe: the embedded
backend calls it on its model thread, between two decoding passes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import llama_cpp
from llama_cpp import Llama

from libs.common.errors import InvalidRequest
from services.llm.backends.base import Embeddings


class EmbeddingModel:
    def __init__(
        self, weights: Path, *, n_ctx: int, n_threads: int | None, flash_attention: bool
    ) -> None:
        self._weights = weights
        self._n_ctx = n_ctx
        self._n_threads = n_threads  # every pass here reads many tokens: None is every core
        self._flash_attention = flash_attention
        self._llm: Any = None

    def embed(self, texts: list[str], *, truncate: bool) -> Embeddings:
        started = time.perf_counter_ns()
        llm = self._model()
        for index, text in enumerate(texts):
            count = len(llm.tokenize(text.encode(), add_bos=True))
            # The tokenizer drops some characters (control characters): a text of only those
            # has no token to pool, and llama.cpp fails, or worse, on an empty sequence.
            if count == 0:
                raise InvalidRequest(f"input[{index}] has no token the model reads")
            if count > self._n_ctx and not truncate:
                raise InvalidRequest(
                    f"input[{index}] is {count} tokens; the model's context is "
                    f"{self._n_ctx} tokens: shorten it"
                )
        vectors, tokens = llm.embed(texts, normalize=True, truncate=True, return_count=True)
        return Embeddings(
            vectors=vectors, prompt_tokens=tokens, total_ns=time.perf_counter_ns() - started
        )

    def close(self) -> None:
        llm, self._llm = self._llm, None
        if llm is not None:
            llm.close()

    def _model(self) -> Any:
        if self._llm is None:
            # A whole text must be read in one pass to pool it: the batch is the context.
            self._llm = Llama(
                model_path=str(self._weights),
                embedding=True,
                pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
                n_ctx=self._n_ctx,
                n_batch=self._n_ctx,
                n_ubatch=self._n_ctx,
                n_threads_batch=self._n_threads,
                flash_attn=self._flash_attention,
                verbose=False,
            )
        return self._llm
