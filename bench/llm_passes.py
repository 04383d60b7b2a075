"""What one llama.cpp decoding pass costs, by the rows it decodes, its threads and attention.

The LLM services decode a lone answer on one thread (half the cores) and a batch of answers on
every core (services/llm/backends/llama_batch.py), so ``bench.llm_batching``'s ratio cannot
pass what the model's own passes allow: a pass of four rows on two threads against four passes
of one row on one thread. This bench times bare ``llama_decode`` calls on the weights the
services load (the shipped file converted to Q8_0), in a context made as the engine makes its
own (a cache per sequence, one sequence a row), with no HTTP, sampling or Python between
passes beyond filling the batch.

``--weights`` times the shipped file rounded to another type instead (once, in a temporary
directory): types whose batches llama.cpp multiplies with other kernels, its repacked ones
(Q4_0, IQ4_NL) among them. docs/benchmarks.md has what they gave and docs/quality.md what they
cost in answers.

Run: ``.venv/bin/python -m bench.llm_passes [--passes 40] [--prompt 60] [--weights Q8_0 ...]
2>/dev/null`` (about twenty seconds a type; llama.cpp logs to stderr).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import llama_cpp as llama

from services.llm.backends.llama_batch import sequences_context_params
from services.llm.model_files import packaged_gguf
from services.llm.weight_conversion import batchable_weights, quantize

SLOTS = 4
CONTEXT_PER_SLOT = 1024
WEIGHT_TYPES = {
    "Q4_1": None,  # as shipped
    "Q8_0": None,  # as the services convert it
    "Q5_0": llama.LLAMA_FTYPE_MOSTLY_Q5_0,
    "Q4_K_M": llama.LLAMA_FTYPE_MOSTLY_Q4_K_M,
    "Q4_0": llama.LLAMA_FTYPE_MOSTLY_Q4_0,
    "IQ4_NL": llama.LLAMA_FTYPE_MOSTLY_IQ4_NL,
    "BF16": llama.LLAMA_FTYPE_MOSTLY_BF16,
}


class Batch:
    def __init__(self, size: int) -> None:
        self.raw = llama.llama_batch_init(size, 0, 1)

    def fill(self, rows: list[tuple[int, int, int]]) -> Any:
        """``rows`` of (token, position, sequence); every row asks for its logits."""
        for row, (token, position, sequence) in enumerate(rows):
            self.raw.token[row] = token
            self.raw.pos[row] = position
            self.raw.n_seq_id[row] = 1
            self.raw.seq_id[row][0] = sequence
            self.raw.logits[row] = True
        self.raw.n_tokens = len(rows)
        return self.raw


@contextmanager
def context(model: Any, threads: int, flash_attention: bool) -> Iterator[Any]:
    params = sequences_context_params(SLOTS, CONTEXT_PER_SLOT, 512, flash_attention)
    params.n_threads = params.n_threads_batch = threads
    ctx = llama.llama_init_from_model(model, params)
    try:
        yield ctx
    finally:
        llama.llama_free(ctx)


def decode(ctx: Any, batch: Any) -> None:
    if llama.llama_decode(ctx, batch) != 0:
        raise RuntimeError("llama_decode failed")


def measure(model: Any, threads: int, flash_attention: bool, passes: int, prompt: int) -> str:
    batch = Batch(max(prompt, SLOTS))
    with context(model, threads, flash_attention) as ctx:
        memory = llama.llama_get_memory(ctx)
        for sequence in range(SLOTS - 1, 0, -1):  # the first decode of a context warms it up
            decode(ctx, batch.fill([(100 + i, i, sequence) for i in range(prompt)]))
        started = time.perf_counter()
        decode(ctx, batch.fill([(100 + i, i, 0) for i in range(prompt)]))
        prompt_ms = (time.perf_counter() - started) * 1000
        pass_ms = {}
        for rows in (1, 2, 4):
            started = time.perf_counter()
            for step in range(passes):
                decode(ctx, batch.fill([(200 + step, prompt + step, s) for s in range(rows)]))
            pass_ms[rows] = (time.perf_counter() - started) * 1000 / passes
            for sequence in range(SLOTS):  # back to the prompt alone
                llama.llama_memory_seq_rm(memory, sequence, prompt, -1)
    return (
        f"{threads:>7} {'on' if flash_attention else 'off':>6} "
        + " ".join(f"{pass_ms[rows]:>10.1f}" for rows in (1, 2, 4))
        + f" {1000 / pass_ms[1]:>10.0f} {4000 / pass_ms[4]:>10.0f} {prompt_ms:>12.0f}"
    )


def weights_of_type(name: str, directory: Path) -> Path:
    """The shipped weights as ``name``: the file itself, the services' copy, or rounded."""
    if name == "Q4_1":
        return packaged_gguf()
    file_type = WEIGHT_TYPES[name]
    if file_type is None:
        return batchable_weights(packaged_gguf(), directory)
    path = directory / f"{name}.gguf"
    quantize(packaged_gguf(), path, file_type=file_type)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=40, help="passes timed per row count")
    parser.add_argument("--prompt", type=int, default=60, help="tokens in each sequence first")
    parser.add_argument(
        "--weights", nargs="+", choices=WEIGHT_TYPES, default=["Q8_0"], help="weight types"
    )
    args = parser.parse_args()
    llama.llama_backend_init()
    with tempfile.TemporaryDirectory() as tmp:
        print("ms a pass by rows, tokens/s, ms to read the prompt")
        print(
            f"{'weights':>7} {'threads':>7} {'flash':>6} {'1 row':>10} {'2 rows':>10} "
            f"{'4 rows':>10} {'1 row t/s':>10} {'4 rows t/s':>10} {'prompt ms':>12}"
        )
        for name in args.weights:
            weights = weights_of_type(name, Path(tmp))
            model = llama.llama_model_load_from_file(
                str(weights).encode(), llama.llama_model_default_params()
            )
            try:
                for threads in (1, 2):
                    for flash_attention in (False, True):
                        line = measure(model, threads, flash_attention, args.passes, args.prompt)
                        print(f"{name:>7} {line}", flush=True)
            finally:
                llama.llama_model_free(model)


if __name__ == "__main__":
    main()
