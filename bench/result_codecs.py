"""What each ``PROCESSOR_COMPRESSION`` costs the processor: aiokafka's own codec functions (the
ones its record batches call) on a batch of the results the processor publishes, against gzip
(the default, the spec's), in turns.

    .venv/bin/python -m bench.result_codecs [--results 58] [--rounds 5]

58 results a batch is what ``bench.processor_throughput`` hands aiokafka on average (16,000
documents in 275 batches). Prints µs a result and the batch's bytes per codec, and the ratio of
each codec's time to gzip's."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

import msgspec
from aiokafka import codec

from bench.processor_throughput import summaries
from libs.common.schemas.documents import DocumentResult

CODECS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": codec.gzip_encode,
    "zstd": codec.zstd_encode,
    "lz4": codec.lz4_encode,
    "snappy": codec.snappy_encode,
}
"""As aiokafka 0.14's record batches call them: gzip at level 9, zstd at 3, lz4 at 9."""
ANSWER_CHARS = 300
"""About a summary's length under the processor's schema."""


def result_batch(count: int) -> bytes:
    """``count`` results as the processor encodes them, one after another; each answer is the
    start of its own document (the sample documents' text, as varied as theirs)."""
    return b"".join(
        msgspec.json.encode(
            DocumentResult(
                doc_id=document.doc_id,
                task=document.task,
                status="ok",
                answer=document.content[:ANSWER_CHARS],
                model="smollm2-135m-instruct",
                prompt_tokens=412,
                completion_tokens=61,
                processing_ms=1834.2,
                attempts=1,
                source_offset=f"financial-documents/{position % 6}/{position}",
                processed_at=datetime.now(UTC),
            )
        )
        for position, document in enumerate(summaries(count))
    )


def seconds_a_call(compress: Callable[[bytes], bytes], payload: bytes, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        compress(payload)
    return (time.perf_counter() - started) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=int, default=58, help="results in a batch")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=300, help="compressions a codec a round")
    args = parser.parse_args()
    payload = result_batch(args.results)
    timings: dict[str, list[float]] = {name: [] for name in CODECS}
    for _ in range(args.rounds):
        for name, compress in CODECS.items():
            timings[name].append(seconds_a_call(compress, payload, args.calls))
    gzip_s = statistics.median(timings["gzip"])
    print(f"a batch of {args.results} results, {len(payload):,} bytes uncompressed")
    print(f"{'codec':8} {'µs a result':>12} {'batch bytes':>12} {'time / gzip':>12}")
    for name, compress in CODECS.items():
        median_s = statistics.median(timings[name])
        per_result_us = median_s * 1e6 / args.results
        size = len(compress(payload))
        print(f"{name:8} {per_result_us:12.2f} {size:12,} {median_s / gzip_s:12.2f}")


if __name__ == "__main__":
    main()
