"""The Llama 3.1 8B wrapper on the embedded model (SmolLM2-135M) as a process of its own, for
the tests and benches that need a real model behind a PAS LLM service."""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx

from tests.support.metrics_text import sample_value
from tests.support.processes import ServiceProcess, free_port

LLM_APP = "services.llm.llama31_8b_service:app"

T = TypeVar("T")


def start_llm_service(
    log_path: Path, env: Mapping[str, str], *, ready_timeout_s: float = 60
) -> ServiceProcess:
    """Started and ready: not registered, 1,024 tokens of context, unless ``env`` says
    otherwise (any of the service's variables)."""
    port = free_port()
    return ServiceProcess(
        LLM_APP,
        port,
        {
            "LLAMA31_8B_PORT": str(port),
            "LLAMA31_8B_REGISTER": "false",
            "LLAMA31_8B_CONTEXT_LENGTH": "1024",
            **env,
        },
        log_path,
    ).start(ready_timeout_s=ready_timeout_s)


def measure_on_llm_service(url: str | None, measure: Callable[[str], Coroutine[Any, Any, T]]) -> T:
    """``measure(url)`` against the service at ``url``, or, when ``url`` is None, against one
    started for it and stopped after: a bench's ``--url`` choice."""
    if url:
        return asyncio.run(measure(url))
    with tempfile.TemporaryDirectory() as tmp:
        service = start_llm_service(Path(tmp) / "llm.log", {"LOG_LEVEL": "WARNING"})
        try:
            return asyncio.run(measure(service.url))
        finally:
            service.stop()


def run_answers_bench(
    description: str,
    default_rounds: int,
    measure: Callable[[str, int], Coroutine[Any, Any, list[str]]],
) -> None:
    """The command line of a bench that asks an LLM service questions for some rounds and
    compares answers across runs: ``--rounds``, ``--url`` (see ``measure_on_llm_service``)
    and ``--save FILE``, the answers ``measure(url, rounds)`` returns, as JSON."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rounds", type=int, default=default_rounds)
    parser.add_argument("--url", help="an LLM service already running (default: start one)")
    parser.add_argument("--save", type=Path, help="write the answers here (JSON), to compare runs")
    args = parser.parse_args()
    answers = measure_on_llm_service(args.url, lambda url: measure(url, args.rounds))
    if args.save is not None:
        args.save.write_text(json.dumps(answers, indent=1))


def token_counts(usage: dict[str, Any]) -> dict[str, Any]:
    """A usage object without what the prompt cache gave (that depends on what came before)."""
    return {name: value for name, value in usage.items() if name != "prompt_tokens_details"}


async def prompt_token_counts(llm: httpx.AsyncClient) -> dict[str, float]:
    """The service's prompt tokens so far, by how they got into a cache: read, or reused."""
    text = (await llm.get("/metrics")).text
    return {
        source: sample_value(text, "pas_llm_prompt_tokens_total", source=source)
        for source in ("read", "reused")
    }
