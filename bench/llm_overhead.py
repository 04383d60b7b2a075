"""What a PAS LLM service adds on top of llama.cpp itself.

Baseline: llama-cpp-python called directly in this process (``create_chat_completion``).
Ours: ``POST /chat/completions`` on the Llama 3.1 8B wrapper running as a real uvicorn process
with the same weights (the shipped file as the service converts it), prompt and settings
(temperature 0, same max_tokens, same context length, flash attention on as the service has it).
Requests alternate between the two so that both see the same machine state.

Run: ``.venv/bin/python -m bench.llm_overhead`` (about a minute).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import httpx
from llama_cpp import Llama

from libs.common.kit.logging import configure_logging
from services.llm.model_files import packaged_gguf
from services.llm.weight_conversion import batchable_weights
from tests.support.processes import ServiceProcess, free_port

ROUNDS = 20
MAX_TOKENS = 64
CONTEXT = 2048
MESSAGES = [
    {"role": "system", "content": "You are a concise analyst on a trading desk."},
    {"role": "user", "content": "Explain what a bond's yield to maturity tells an investor."},
]


def main() -> None:
    configure_logging("WARNING")
    with tempfile.TemporaryDirectory() as tmp:
        # The weights the service loads: the shipped file converted for batches, made here.
        weights = batchable_weights(packaged_gguf(), Path(tmp) / "models")
        llm = Llama(model_path=str(weights), n_ctx=CONTEXT, flash_attn=True, verbose=False)
        service = ServiceProcess(
            "services.llm.llama31_8b_service:app",
            free_port(),
            {
                "LLAMA31_8B_REGISTER": "false",
                "LLAMA31_8B_CONTEXT_LENGTH": str(CONTEXT),
                "LLAMA31_8B_WEIGHTS_CACHE_DIR": str(Path(tmp) / "models"),
                "LOG_LEVEL": "WARNING",
            },
            Path(tmp) / "service.log",
        ).start()
        direct_s: list[float] = []
        direct_tokens: list[int] = []
        served_s: list[float] = []
        served_tokens: list[int] = []
        texts: set[tuple[str, str]] = set()
        try:
            with httpx.Client(base_url=service.url, timeout=120) as http:
                for _ in range(ROUNDS):
                    started = time.perf_counter()
                    direct = llm.create_chat_completion(
                        messages=MESSAGES,  # type: ignore[arg-type]
                        temperature=0,
                        max_tokens=MAX_TOKENS,
                    )
                    direct_s.append(time.perf_counter() - started)
                    direct_tokens.append(direct["usage"]["completion_tokens"])  # type: ignore[index]

                    started = time.perf_counter()
                    served = http.post(
                        "/chat/completions",
                        json={"messages": MESSAGES, "temperature": 0, "max_tokens": MAX_TOKENS},
                    ).json()
                    served_s.append(time.perf_counter() - started)
                    served_tokens.append(served["usage"]["completion_tokens"])
                    texts.add(
                        (
                            direct["choices"][0]["message"]["content"] or "",  # type: ignore[index]
                            served["choices"][0]["message"]["content"],
                        )
                    )
        finally:
            service.stop()

    d50, s50 = statistics.median(direct_s), statistics.median(served_s)
    d_rate = statistics.median(t / s for t, s in zip(direct_tokens, direct_s, strict=True))
    s_rate = statistics.median(t / s for t, s in zip(served_tokens, served_s, strict=True))
    same = all(a == b for a, b in texts)
    print(f"rounds={ROUNDS} max_tokens={MAX_TOKENS} completion_tokens={served_tokens[0]}")
    print(f"direct llama-cpp-python   p50 {d50 * 1e3:7.1f} ms  {d_rate:6.1f} tok/s")
    print(f"PAS service over HTTP     p50 {s50 * 1e3:7.1f} ms  {s_rate:6.1f} tok/s")
    print(f"added latency p50         {(s50 - d50) * 1e3:7.1f} ms")
    print(f"ratio service/direct      {s50 / d50:7.3f} x latency, {s_rate / d_rate:5.3f} x tok/s")
    print(f"same text both ways at temperature 0: {same}")


if __name__ == "__main__":
    main()
