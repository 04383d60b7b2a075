"""The first turns after a restart: the embedded model's prompt store kept in a file, or not.

Six agents (``bench.llm_prompt_store``'s: their own instruction and sample document each)
ask their first question on the Llama 3.1 8B wrapper; the service is stopped with SIGTERM
and started again, and each agent goes on with its conversation ("Go on."), temperature 0.
With ``LLAMA31_8B_PROMPT_STORE_DIR`` the stopping service writes its prompts to a file and
the new one reads them back, so each agent's prompt comes from the cache; without, the new
service reads every prompt whole. The two ways alternate, a round each. Measured: each
turn's time to its first streamed token after the restart, the prompt tokens the restarted
service read and reused (``/metrics``), how long stopping and starting took, how long writing
the file held decoding up (the slots' prompts copied, the service's "prompts saved" log line)
and took, and whether the answers are the same either way.

Run: ``.venv/bin/python -m bench.llm_prompt_restart [--rounds 2]`` (about a minute).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.llm_prompt_store import conversations, turn
from tests.support.llm_service import prompt_token_counts, start_llm_service
from tests.support.processes import ServiceProcess


def started(log: Path, store_dir: Path | None) -> tuple[ServiceProcess, float]:
    env = {"LOG_LEVEL": "WARNING"}
    if store_dir is not None:
        env = {"LOG_LEVEL": "INFO", "LLAMA31_8B_PROMPT_STORE_DIR": str(store_dir)}
    began = time.perf_counter()
    service = start_llm_service(log, env)
    return service, time.perf_counter() - began


def stopped(service: ServiceProcess) -> float:
    began = time.perf_counter()
    service.stop(timeout_s=60)
    return time.perf_counter() - began


@dataclass
class Round:
    firsts: list[float]  # each agent's first turn after the restart: time to first token
    answers: list[str]
    read: float  # prompt tokens the restarted service read
    reused: float  # and took from its cache
    stop_s: float  # SIGTERM to exit (the file written)
    start_s: float  # start to healthy (the file read)
    saved: dict[str, float] | None  # the file's write: decoding paused, written (ms)

    @property
    def median_first(self) -> float:
        return statistics.median(self.firsts)


async def one_round(workdir: Path, keep: bool) -> Round:
    store_dir = workdir / "prompts" if keep else None
    talks = conversations()
    service, _ = started(workdir / "before.log", store_dir)
    try:
        async with httpx.AsyncClient(base_url=service.url, timeout=600) as client:
            for messages in talks:
                _, answer = await turn(client, messages)
                messages.append({"role": "assistant", "content": answer})
    finally:
        stop_s = stopped(service)
    saved = _save_figures(workdir / "before.log")
    service, start_s = started(workdir / "after.log", store_dir)
    try:
        async with httpx.AsyncClient(base_url=service.url, timeout=600) as client:
            firsts, answers = [], []
            for messages in talks:
                messages.append({"role": "user", "content": "Go on."})
                first, answer = await turn(client, messages)
                firsts.append(first)
                answers.append(answer)
            counts = await prompt_token_counts(client)
    finally:
        stopped(service)
    read, reused = counts.get("read", 0), counts.get("reused", 0)
    return Round(firsts, answers, read, reused, stop_s, start_s, saved)


def _save_figures(log: Path) -> dict[str, float] | None:
    """What the service's "prompts saved" line says of the write (none without a file)."""
    for line in log.read_text().splitlines():
        if '"prompts saved"' in line:
            entry = json.loads(line)
            return {name: entry[name] for name in ("decoding_paused_ms", "written_ms", "bytes")}
    return None


async def measure(rounds: int) -> None:
    results: dict[bool, list[Round]] = {True: [], False: []}
    for _ in range(rounds):
        for keep in (False, True):
            with tempfile.TemporaryDirectory() as tmp:
                results[keep].append(await one_round(Path(tmp), keep))
    print(
        "| prompts kept in a file | first turns after the restart: time to first token, "
        "p50 / mean | prompt tokens read / reused | stop, start | file: decoding paused, "
        "written, MiB |"
    )
    for keep in (False, True):
        for number, figures in enumerate(results[keep], 1):
            print(
                f"| {'yes' if keep else 'no'}, run {number} | "
                f"{figures.median_first * 1000:.1f} / {statistics.mean(figures.firsts) * 1000:.1f}"
                f" ms | {figures.read:.0f} / {figures.reused:.0f} | "
                f"{figures.stop_s:.2f} s, {figures.start_s:.2f} s | {_saved(figures)} |"
            )
    pairs = list(zip(results[True], results[False], strict=True))
    ratios = ", ".join(f"{kept.median_first / none.median_first:.2f}" for kept, none in pairs)
    print(f"p50 time to first token, kept / not kept: {ratios}")
    print(f"answers the same either way: {all(k.answers == n.answers for k, n in pairs)}")


def _saved(figures: Round) -> str:
    if figures.saved is None:
        return "-"
    paused, written = figures.saved["decoding_paused_ms"], figures.saved["written_ms"]
    return f"{paused:.1f} ms, {written:.1f} ms, {figures.saved['bytes'] / 2**20:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    asyncio.run(measure(parser.parse_args().rounds))


if __name__ == "__main__":
    main()
