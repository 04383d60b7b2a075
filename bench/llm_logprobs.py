"""What asking for logprobs costs on the embedded model: the same requests with and without
``logprobs`` (and with ``top_logprobs: 20``, the most OpenAI allows), on one LLM service.

Each round sends the four prompts one at a time in each of the three ways (the order of the
ways rotates by round), and counts completion tokens per second of wall time; the ratios are
against the requests without logprobs. The answers are compared too: asking for logprobs must
not change a word of them.

Run: ``.venv/bin/python -m bench.llm_logprobs [--rounds 6] [--max-tokens 64] [--url URL]``
(about two minutes). Without ``--url`` it starts the Llama 3.1 8B wrapper on the embedded model.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import httpx

from bench.llm_batching import PROMPTS, body
from tests.support.llm_service import measure_on_llm_service

WAYS: dict[str, dict[str, Any]] = {
    "without": {},
    "logprobs": {"logprobs": True},
    "top 20": {"logprobs": True, "top_logprobs": 20},
}


async def one_at_a_time(
    client: httpx.AsyncClient, max_tokens: int, extra: dict[str, Any]
) -> tuple[float, list[str]]:
    """Completion tokens a second over the four prompts, and their answers."""
    started, tokens, texts = time.perf_counter(), 0, []
    for prompt in PROMPTS:
        response = await client.post("/v1/chat/completions", json=body(prompt, max_tokens, **extra))
        response.raise_for_status()
        reply = response.json()
        tokens += reply["usage"]["completion_tokens"]
        texts.append(reply["choices"][0]["message"]["content"])
    return tokens / (time.perf_counter() - started), texts


async def measure(url: str, rounds: int, max_tokens: int) -> None:
    names = list(WAYS)
    rates: dict[str, list[float]] = {name: [] for name in names}
    answers: set[tuple[str, ...]] = set()
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        await one_at_a_time(client, 8, {})  # warm-up
        print(f"{'round':>5} " + " ".join(f"{name + ' tok/s':>16}" for name in names))
        for index in range(rounds):
            order = names[index % 3 :] + names[: index % 3]
            for name in order:
                rate, texts = await one_at_a_time(client, max_tokens, WAYS[name])
                rates[name].append(rate)
                answers.add(tuple(texts))
            print(f"{index + 1:>5} " + " ".join(f"{rates[n][-1]:>16.1f}" for n in names))
    base = statistics.median(rates["without"])
    print(
        "median: "
        + ", ".join(
            f"{name} {statistics.median(rates[name]):.1f} tok/s "
            f"({statistics.median(rates[name]) / base:.3f}x)"
            for name in names
        )
        + f"; the same answers every way and round: {len(answers) == 1}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--url", help="an LLM service already running (default: start one)")
    args = parser.parse_args()
    measure_on_llm_service(args.url, lambda url: measure(url, args.rounds, args.max_tokens))


if __name__ == "__main__":
    main()
