"""Agents taking turns on more than the slots: the embedded model's prompt store, or none.

Six agents, each with its own instruction and sample document (prompts of 150 to 250 tokens),
ask one after another, then go on with their conversations turn by turn (their answer so far,
then "Go on."), temperature 0. The LLM service has four slots (``LLM_PARALLEL``), so an agent's
slot has been taken by others before its next turn: with slots alone it reads its whole
conversation again; with the prompt store (``LLM_PROMPT_STORE_MB``) its prompt comes back from
host memory. Measured: each turn's time to its first streamed token, and the prompt tokens the
service read and reused (``/metrics``); the answers are compared with another run's by
``--save``.

Run: ``LLAMA31_8B_PROMPT_STORE_MB=0|128 .venv/bin/python -m bench.llm_prompt_store
[--rounds 3] [--url URL] [--save FILE]`` (under a minute). Without ``--url`` it starts the
Llama 3.1 8B wrapper on the embedded model with its defaults.
"""

from __future__ import annotations

import json
import statistics
import time

import httpx

from libs.common.schemas.documents import Task
from services.kafka_llm_processor.prompts import INSTRUCTIONS
from services.kafka_llm_processor.send_samples import sample_documents
from tests.support.llm_service import prompt_token_counts, run_answers_bench

AGENTS = 6
TASKS: tuple[Task, ...] = ("summary", "key_figures", "sentiment")


def conversations() -> list[list[dict[str, str]]]:
    documents = sample_documents()
    return [
        [
            {"role": "system", "content": INSTRUCTIONS[TASKS[i % len(TASKS)]]},
            {"role": "user", "content": documents[i % len(documents)].content},
        ]
        for i in range(AGENTS)
    ]


async def turn(client: httpx.AsyncClient, messages: list[dict[str, str]]) -> tuple[float, str]:
    """Time to the first streamed text, and the answer."""
    body = {"messages": messages, "temperature": 0, "max_tokens": 16, "stream": True}
    started, first, parts = time.perf_counter(), None, []
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            choices = json.loads(line[len("data: ") :])["choices"]
            if choices and (text := choices[0]["delta"].get("content")):
                first = first if first is not None else time.perf_counter() - started
                parts.append(text)
    return first if first is not None else time.perf_counter() - started, "".join(parts)


async def measure(url: str, rounds: int) -> list[str]:
    """Prints the figures; the answers of the timed turns."""
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        talks = conversations()
        for messages in talks:  # each agent's first question
            _, answer = await turn(client, messages)
            messages.append({"role": "assistant", "content": answer})
        before = await prompt_token_counts(client)
        firsts, answers = [], []
        for _ in range(rounds):
            for messages in talks:
                messages.append({"role": "user", "content": "Go on."})
                first, answer = await turn(client, messages)
                messages.append({"role": "assistant", "content": answer})
                firsts.append(first)
                answers.append(answer)
        after = await prompt_token_counts(client)
    read = after.get("read", 0) - before.get("read", 0)
    reused = after.get("reused", 0) - before.get("reused", 0)
    print(
        f"{len(firsts)} turns of {AGENTS} agents: time to first token p50 "
        f"{statistics.median(firsts) * 1000:.1f} ms, mean {statistics.mean(firsts) * 1000:.1f} "
        f"ms; prompt tokens read {read:.0f}, reused {reused:.0f} "
        f"({reused / max(read + reused, 1):.0%} reused)"
    )
    return answers


def main() -> None:
    run_answers_bench(__doc__.splitlines()[0], 3, measure)


if __name__ == "__main__":
    main()
