"""When a streamed tool call shows: its name and its first arguments against the call whole.

``bench.tool_calls``'s market tools and tool questions, asked one at a time (the tools
offered, the model choosing, as Ollama's API has it), temperature 0, streamed from the same
service two ways, which goes first alternating: OpenAI's chat completions, which give a
call's id and name as soon as the name is written and its arguments piece by piece
(``services/llm/call_stream.py``), and Ollama's ``/api/chat``, which gives a call whole, as
Ollama does (and as the OpenAI stream did before). Measured from the request: the call's
name, its first piece of arguments, and the end of the answer; questions answered with a
call both ways.

Run: ``.venv/bin/python -m bench.tool_call_stream [--url http://127.0.0.1:8050]`` (a service
is started for the run without ``--url``; under a minute on the embedded model).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import httpx

from bench.tool_calls import TOOLS, tool_questions
from tests.support.llm_service import measure_on_llm_service

MAX_TOKENS = 64


Times = tuple[float, float, float]


async def openai_stream(client: httpx.AsyncClient, question: str) -> Times | None:
    """Seconds to the call's name, to its first arguments, to the end; None without a call."""
    body = {
        "messages": [{"role": "user", "content": question}],
        "tools": TOOLS,
        "temperature": 0,
        "max_tokens": MAX_TOKENS,
        "stream": True,
    }
    started = time.perf_counter()
    named = argued = None
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            choices = json.loads(line[len("data: ") :])["choices"]
            for part in (choices[0]["delta"].get("tool_calls") or []) if choices else []:
                now = time.perf_counter() - started
                named = named if named is not None else now
                if part["function"].get("arguments") and argued is None:
                    argued = now
    end = time.perf_counter() - started
    return None if named is None or argued is None else (named, argued, end)


async def ollama_stream(client: httpx.AsyncClient, question: str) -> Times | None:
    body = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": question}],
        "tools": TOOLS,
        "options": {"temperature": 0, "num_predict": MAX_TOKENS},
        "stream": True,
    }
    started = time.perf_counter()
    called = None
    async with client.stream("POST", "/api/chat", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if line and json.loads(line).get("message", {}).get("tool_calls") and called is None:
                called = time.perf_counter() - started
    end = time.perf_counter() - started
    return None if called is None else (called, called, end)


async def measure(url: str) -> None:
    questions = [question for question, _, _ in tool_questions()]
    figures: dict[str, list[Times]] = {"openai": [], "ollama": []}
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        await openai_stream(client, questions[0])  # the tools' prompt read once, for both
        for number, question in enumerate(questions):
            ways = {"openai": openai_stream, "ollama": ollama_stream}
            order = list(ways) if number % 2 == 0 else list(reversed(ways))
            timed = {way: await ways[way](client, question) for way in order}
            if timed["openai"] is not None and timed["ollama"] is not None:
                figures["openai"].append(timed["openai"])
                figures["ollama"].append(timed["ollama"])
    print(f"{len(figures['openai'])} of {len(questions)} questions called a tool both ways;")
    print("p50 ms from the request:")
    print("| stream | the call's name | its first arguments | the answer's end |")
    print("| --- | --- | --- | --- |")
    for way, label in (("ollama", "a call whole (/api/chat)"), ("openai", "piecewise (/v1)")):
        named, argued, end = (statistics.median(f[i] for f in figures[way]) for i in range(3))
        print(f"| {label} | {named * 1000:.0f} | {argued * 1000:.0f} | {end * 1000:.0f} |")
    whole = statistics.median(f[0] for f in figures["ollama"])
    named = statistics.median(f[0] for f in figures["openai"])
    print(f"the call's name, piecewise against whole: {named / whole:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an LLM service already running (default: start one)")
    measure_on_llm_service(parser.parse_args().url, measure)


if __name__ == "__main__":
    main()
