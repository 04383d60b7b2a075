"""Tool calls on an LLM service: does the model call the right tool with the right ticker, and
does it answer in text when no tool is needed; what the tools cost in prompt tokens and time.

Three market tools (price, volatility over some days, latest news), questions that each need
one of them for one of four tickers, and questions that need none. Each question is asked with
``tool_choice`` ``auto`` and ``required`` (the tool questions) at temperature 0, four at a
time; the same questions without tools are the baseline of the time and prompt size. Printed:
for each way, calls of the right tool, with the right ticker as well, answers in text, answers
cut at ``max_tokens``; prompt tokens and seconds a question, with tools against without.

Run: ``.venv/bin/python -m bench.tool_calls [--url http://127.0.0.1:8050]`` (a service is
started for the run without ``--url``; about a minute on the embedded model).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

import httpx

from tests.support.llm_service import measure_on_llm_service

CONCURRENCY = 4
MAX_TOKENS = 64
TICKERS = {"AAPL": "Apple", "MSFT": "Microsoft", "NVDA": "Nvidia", "TSLA": "Tesla"}
TICKER = {"type": "string", "enum": list(TICKERS)}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_price",
            "description": "Latest share price of a company, by its ticker",
            "parameters": {
                "type": "object",
                "properties": {"ticker": TICKER},
                "required": ["ticker"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_volatility",
            "description": "Annualised volatility of a company's shares over the last days",
            "parameters": {
                "type": "object",
                "properties": {"ticker": TICKER, "days": {"type": "integer"}},
                "required": ["ticker", "days"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_news",
            "description": "Latest news headlines about a company",
            "parameters": {
                "type": "object",
                "properties": {"ticker": TICKER},
                "required": ["ticker"],
            },
        },
    },
]
ASKED = {
    "get_price": ["What is {name}'s share price?", "How much does one {name} share cost now?"],
    "get_volatility": [
        "How volatile has {name} stock been over the last 30 days?",
        "What is the volatility of {name} shares this quarter?",
    ],
    "get_news": ["What is the latest news about {name}?", "Any recent headlines on {name}?"],
}
WITHOUT_TOOLS = [
    "What is a bond?",
    "Say hello.",
    "What does a central bank do?",
    "Define inflation in one sentence.",
]


def tool_questions() -> list[tuple[str, str, str]]:
    """(question, the tool it needs, the ticker it names)."""
    return [
        (template.format(name=name), tool, ticker)
        for tool, templates in ASKED.items()
        for template in templates
        for ticker, name in TICKERS.items()
    ]


async def ask(
    client: httpx.AsyncClient, question: str, extra: dict[str, Any]
) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    response = await client.post(
        "/v1/chat/completions",
        json={
            "messages": [{"role": "user", "content": question}],
            "temperature": 0,
            "max_tokens": MAX_TOKENS,
            **extra,
        },
    )
    response.raise_for_status()
    return response.json(), time.perf_counter() - started


async def ask_all(
    client: httpx.AsyncClient, questions: list[str], extra: dict[str, Any]
) -> list[tuple[dict[str, Any], float]]:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(question: str) -> tuple[dict[str, Any], float]:
        async with gate:
            return await ask(client, question, extra)

    return await asyncio.gather(*(one(q) for q in questions))


def tally(answers: list[dict[str, Any]], expected: list[tuple[str, str] | None]) -> dict[str, int]:
    counts = {"right tool": 0, "right tool and ticker": 0, "text": 0, "cut": 0, "other call": 0}
    for answer, wanted in zip(answers, expected, strict=True):
        choice = answer["choices"][0]
        calls = choice["message"]["tool_calls"]
        if choice["finish_reason"] == "length":
            counts["cut"] += 1
        elif not calls:
            counts["text"] += 1
        elif wanted is not None and calls[0]["function"]["name"] == wanted[0]:
            counts["right tool"] += 1
            ticker = json.loads(calls[0]["function"]["arguments"]).get("ticker")
            counts["right tool and ticker"] += ticker == wanted[1]
        else:
            counts["other call"] += 1
    return counts


async def measure(url: str) -> None:
    questions = tool_questions()
    texts = [q for q, _, _ in questions]
    wanted: list[tuple[str, str] | None] = [(tool, ticker) for _, tool, ticker in questions]
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:
        await ask(client, "Warm up.", {})
        plain = await ask_all(client, texts, {})
        auto = await ask_all(client, texts, {"tools": TOOLS})
        required = await ask_all(client, texts, {"tools": TOOLS, "tool_choice": "required"})
        no_tool = await ask_all(client, WITHOUT_TOOLS, {"tools": TOOLS})
    print(f"{len(texts)} questions that need a tool, {len(WITHOUT_TOOLS)} that need none")
    none_needed: list[tuple[str, str] | None] = [None] * len(WITHOUT_TOOLS)
    for way, results, expected in (
        ("auto", auto, wanted),
        ("required", required, wanted),
        ("auto, no tool needed", no_tool, none_needed),
    ):
        print(f"{way}: {tally([a for a, _ in results], expected)}")

    def prompt_tokens(results: list[tuple[dict[str, Any], float]]) -> float:
        return float(statistics.median(a["usage"]["prompt_tokens"] for a, _ in results))

    def seconds(results: list[tuple[dict[str, Any], float]]) -> float:
        return statistics.median(s for _, s in results)

    print(
        f"prompt tokens a question (median): {prompt_tokens(plain):.0f} without tools, "
        f"{prompt_tokens(auto):.0f} with"
    )
    print(
        f"seconds a question (median, {CONCURRENCY} at a time): {seconds(plain):.2f} without "
        f"tools, {seconds(auto):.2f} auto ({seconds(auto) / seconds(plain):.2f}x), "
        f"{seconds(required):.2f} required ({seconds(required) / seconds(plain):.2f}x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an LLM service already running (default: start one)")
    args = parser.parse_args()
    measure_on_llm_service(args.url, measure)


if __name__ == "__main__":
    main()
