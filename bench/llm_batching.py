"""Continuous batching on the embedded model: four requests at once against the same four one
at a time, on the same LLM service (temperature 0, the same prompts and max_tokens).

Each round sends the four requests one after another, then all four together (the order of the
two alternates by round), and counts completion tokens per second of wall time for each; the
ratio is the batch's gain, and the answers are compared (the same text both ways, every round).
A lone request's time to its first streamed token is measured too, to compare with another
build (``--url`` points at a service already running, from any tree).

The same four prompts come back every round, so with the service's prompt cache both ways
read almost none of them after the first round. ``--fresh`` gives every round and way prompts
of their own (a numbered memo heading before each question, the chat template's start still
shared, as in real traffic), so each timed request reads its prompt; the texts are then
compared by asking the one-at-a-time prompts together once more, untimed (the cache changes
no answer, tests/llm/test_prompt_reuse.py).

Run: ``.venv/bin/python -m bench.llm_batching [--rounds 5] [--max-tokens 96] [--fresh]
[--url URL]`` (about two minutes). Without ``--url`` it starts the Llama 3.1 8B wrapper on the
embedded model with its defaults (``LLM_PARALLEL`` 4).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any, NamedTuple

import httpx

from tests.support.llm_service import measure_on_llm_service

PROMPTS = [
    "Write a detailed note for a trading desk on the settlement risk of FX trades.",
    "Explain, step by step, how a bond's price moves when interest rates rise.",
    "Describe the main risks of a portfolio of corporate bonds and how to hedge them.",
    "Summarize how a central bank's rate decision affects equity and currency markets.",
]


def body(prompt: str, max_tokens: int, **extra: Any) -> dict[str, Any]:
    return {
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0,
        "max_tokens": max_tokens,
        **extra,
    }


class Run(NamedTuple):
    tokens: int
    seconds: float
    texts: list[str]


async def answer(client: httpx.AsyncClient, prompt: str, max_tokens: int) -> tuple[int, str]:
    """The completion's token count and text."""
    response = await client.post("/v1/chat/completions", json=body(prompt, max_tokens))
    response.raise_for_status()
    reply = response.json()
    return int(reply["usage"]["completion_tokens"]), reply["choices"][0]["message"]["content"]


def memos(number: int) -> list[str]:
    """The four prompts under memo headings of their own (``number``: which set)."""
    return [f"Desk memo {number * 4 + i + 1}. {prompt}" for i, prompt in enumerate(PROMPTS)]


async def one_at_a_time(client: httpx.AsyncClient, max_tokens: int, prompts: list[str]) -> Run:
    started = time.perf_counter()
    answers = [await answer(client, p, max_tokens) for p in prompts]
    return Run(sum(t for t, _ in answers), time.perf_counter() - started, [a for _, a in answers])


async def together(client: httpx.AsyncClient, max_tokens: int, prompts: list[str]) -> Run:
    started = time.perf_counter()
    answers = await asyncio.gather(*(answer(client, p, max_tokens) for p in prompts))
    return Run(sum(t for t, _ in answers), time.perf_counter() - started, [a for _, a in answers])


async def first_token_s(client: httpx.AsyncClient, prompt: str) -> float:
    """Time to the first streamed chunk that carries text."""
    started = time.perf_counter()
    first: float | None = None
    request = body(prompt, 8, stream=True)
    async with client.stream("POST", "/v1/chat/completions", json=request) as response:
        async for line in response.aiter_lines():  # read to the end: the answer finishes
            if first is not None or not line.startswith("data: ") or line == "data: [DONE]":
                continue
            choices = json.loads(line[len("data: ") :])["choices"]
            if choices and choices[0]["delta"].get("content"):
                first = time.perf_counter() - started
    if first is None:
        raise RuntimeError("the stream carried no text")
    return first


async def measure(url: str, rounds: int, max_tokens: int, fresh: bool) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        await one_at_a_time(client, 8, PROMPTS)  # warm-up
        print(
            f"{'round':>5} {'one at a time tok/s':>20} {'4 at once tok/s':>16} {'ratio':>6}"
            f" {'same text':>10}"
        )
        ratios, alone_rates, batch_rates = [], [], []
        texts: set[tuple[str, ...]] = set()
        same_every_round = True
        for index in range(rounds):
            alone_prompts = memos(2 * index) if fresh else PROMPTS
            batch_prompts = memos(2 * index + 1) if fresh else PROMPTS
            if index % 2:
                batch = await together(client, max_tokens, batch_prompts)
                alone = await one_at_a_time(client, max_tokens, alone_prompts)
            else:
                alone = await one_at_a_time(client, max_tokens, alone_prompts)
                batch = await together(client, max_tokens, batch_prompts)
            alone_rate, batch_rate = alone.tokens / alone.seconds, batch.tokens / batch.seconds
            ratios.append(batch_rate / alone_rate)
            alone_rates.append(alone_rate)
            batch_rates.append(batch_rate)
            if fresh:  # the one-at-a-time prompts together, untimed, for their texts
                batch = await together(client, max_tokens, alone_prompts)
            same = alone.texts == batch.texts
            same_every_round = same_every_round and same
            texts.update((tuple(alone.texts), tuple(batch.texts)))
            print(
                f"{index + 1:>5} {alone_rate:>20.1f} {batch_rate:>16.1f} {ratios[-1]:>6.2f}"
                f" {'yes' if same else 'NO':>10}"
            )
        print(
            f"median: one at a time {statistics.median(alone_rates):.1f} tok/s, "
            f"4 at once {statistics.median(batch_rates):.1f} tok/s, "
            f"ratio {statistics.median(ratios):.2f}; the same texts alone and together in "
            f"every round: {same_every_round}"
            + ("" if fresh else f", and the same four in all rounds: {len(texts) == 1}")
        )
        # With --fresh, each a prompt not asked before.
        asked = [memos(2 * rounds + i)[j] for i in range(rounds) for j in range(4)]
        firsts = [await first_token_s(client, p) for p in (asked if fresh else PROMPTS * rounds)]
        print(
            f"lone request, time to first token: p50 {statistics.median(firsts) * 1000:.1f} ms "
            f"over {len(firsts)} requests"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--fresh", action="store_true", help="new prompts every round and way")
    parser.add_argument("--url", help="an LLM service already running (default: start one)")
    args = parser.parse_args()
    measure_on_llm_service(
        args.url, lambda url: measure(url, args.rounds, args.max_tokens, args.fresh)
    )


if __name__ == "__main__":
    main()
