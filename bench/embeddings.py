"""What a PAS LLM service adds to llama.cpp's embeddings.

Baseline: llama-cpp-python's ``Llama.embed`` called directly in this process, on the weights the
service loads (the shipped file as the service converts it), mean pooling, normalised, the same
context and flash attention. Ours: ``POST /v1/embeddings`` on the Llama 3.1 8B wrapper running
as a real uvicorn process. The texts are the sentences of the seven sample documents, sent in
requests of ``--batch`` texts; requests alternate between the two so that both see the same
machine state, and the vectors are compared.

Run: ``.venv/bin/python -m bench.embeddings [--rounds 10] [--batch 16]`` (about a minute).
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import llama_cpp
import numpy as np
from llama_cpp import Llama

from libs.common.kit.logging import configure_logging
from services.kafka_llm_processor.send_samples import sample_documents
from services.llm.model_files import packaged_gguf
from services.llm.weight_conversion import batchable_weights
from tests.support.llm_service import start_llm_service

CONTEXT = 2048


def sentences() -> list[str]:
    text = " ".join(f"{doc.title}. {doc.content}" for doc in sample_documents())
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if len(s.strip()) > 20]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="requests of each kind")
    parser.add_argument("--batch", type=int, default=16, help="texts a request")
    args = parser.parse_args()
    configure_logging("WARNING")
    texts = sentences()
    batches = [
        [texts[(start + i) % len(texts)] for i in range(args.batch)]
        for start in range(0, args.rounds * args.batch, args.batch)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        weights = batchable_weights(packaged_gguf(), Path(tmp) / "models")
        llm = Llama(
            model_path=str(weights),
            embedding=True,
            pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
            n_ctx=CONTEXT,
            n_batch=CONTEXT,
            n_ubatch=CONTEXT,
            flash_attn=True,
            verbose=False,
        )
        service = start_llm_service(
            Path(tmp) / "service.log",
            {
                "LLAMA31_8B_CONTEXT_LENGTH": str(CONTEXT),
                "LLAMA31_8B_WEIGHTS_CACHE_DIR": str(Path(tmp) / "models"),
                "LOG_LEVEL": "WARNING",
            },
        )
        direct_s: list[float] = []
        served_s: list[float] = []
        largest_difference = 0.0
        try:
            with httpx.Client(base_url=service.url, timeout=120) as http:
                http.post("/v1/embeddings", json={"input": texts[0]})  # opens its context
                for batch in batches:
                    started = time.perf_counter()
                    direct = np.array(llm.embed(batch, normalize=True))
                    direct_s.append(time.perf_counter() - started)

                    started = time.perf_counter()
                    served = http.post("/v1/embeddings", json={"input": batch}).json()
                    served_s.append(time.perf_counter() - started)
                    vectors = np.array([item["embedding"] for item in served["data"]])
                    largest_difference = max(
                        largest_difference, float(np.abs(vectors - direct).max())
                    )
        finally:
            service.stop()
            llm.close()
    direct_p50, served_p50 = statistics.median(direct_s), statistics.median(served_s)
    print(f"{len(batches)} requests of {args.batch} texts each way ({len(texts)} sentences)")
    print(
        f"direct llama-cpp-python: p50 {direct_p50 * 1000:.1f} ms, "
        f"{args.batch / direct_p50:.0f} texts/s"
    )
    print(
        f"PAS /v1/embeddings:      p50 {served_p50 * 1000:.1f} ms, "
        f"{args.batch / served_p50:.0f} texts/s"
    )
    print(
        f"latency ratio {served_p50 / direct_p50:.3f}x; largest difference between the "
        f"vectors {largest_difference:.2e}"
    )


if __name__ == "__main__":
    main()
