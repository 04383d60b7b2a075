"""The runner's document_analysis on the evaluation set: how many answers are grounded at the
first question, what they say, and what the runs cost, for one runner or two builds side by
side.

Every document of ``libs/evaluation/data/documents.jsonl`` (52) goes to ``POST
/workflows/document_analysis/runs?wait=true`` of each runner, four at a time, one runner after
the other. Printed per runner: runs grounded at the first question (``path`` is one
``analyse``), runs that ended ``ungrounded``, runs that failed, questions asked, completion
tokens, and the median seconds a run; then what the answers say: the share of the analysts'
key figures (the set's ``expected_key_figures``) whose value the key points state, key points
a run, and summaries that repeat themselves (``libs/evaluation/scoring.py``). Start the
runners (from each tree) on one LLM service; at temperature 0 their answers do not change from
one measurement to the next.

Run: ``.venv/bin/python -m bench.document_grounding --url http://127.0.0.1:6130 [--url ...]``
(two to four minutes a runner on the embedded model).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import httpx

from libs.common.grounding import quantities
from libs.evaluation.eval_set import DEFAULT_SET, EvalDocument, load
from libs.evaluation.scoring import REPETITIVE, repetition

CONCURRENCY = 4


async def _run(
    client: httpx.AsyncClient, url: str, document: EvalDocument
) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    response = await client.post(
        f"{url}/workflows/document_analysis/runs?wait=true",
        json={
            "input": {
                "content": document.content,
                "title": document.title,
                "doc_type": document.doc_type,
            }
        },
    )
    response.raise_for_status()
    run: dict[str, Any] = response.json()
    return run, time.perf_counter() - started


def figures_stated(points: list[str], expected_values: list[str]) -> int:
    """How many of ``expected_values`` the points state: every quantity of the value is one
    the points write (``$4.82 billion`` = ``4.82 billion dollars``)."""
    stated = [q for point in points for q in quantities(point)]
    return sum(
        1
        for value in expected_values
        if (wanted := quantities(value))
        and all(any(q.matches(s) or s.matches(q) for s in stated) for q in wanted)
    )


async def measure(url: str) -> str:
    documents = load(DEFAULT_SET, split="all")
    slots = asyncio.Semaphore(CONCURRENCY)
    async with httpx.AsyncClient(timeout=900) as client:

        async def one(document: EvalDocument) -> tuple[dict[str, Any], float]:
            async with slots:
                return await _run(client, url, document)

        runs = await asyncio.gather(*(one(d) for d in documents))
    results = [run for run, _ in runs]
    asked = [run["path"].count("analyse") for run in results]
    statuses = [(run.get("output") or {}).get("status") for run in results]
    first = sum(
        1
        for run, asks, status in zip(results, asked, statuses, strict=True)
        if run["status"] == "success" and asks == 1 and status == "ok"
    )
    ungrounded = statuses.count("ungrounded")
    failed = sum(1 for run in results if run["status"] != "success")
    tokens = sum(run["usage"]["completion_tokens"] for run in results)
    median_s = statistics.median(seconds for _, seconds in runs)
    outputs = [run.get("output") or {} for run in results]
    expected = [[f.value for f in document.expected_key_figures] for document in documents]
    covered = sum(
        figures_stated(output.get("key_points", []), values)
        for output, values in zip(outputs, expected, strict=True)
    )
    points = sum(len(output.get("key_points", [])) for output in outputs)
    repetitive = sum(1 for o in outputs if repetition(o.get("summary", "")) > REPETITIVE)
    return (
        f"{url}: {len(runs)} documents, grounded at the first question {first}, ended "
        f"ungrounded {ungrounded}, failed {failed}, questions {sum(asked)}, completion tokens "
        f"{tokens}, median run {median_s:.1f} s; key figures the key points state "
        f"{covered} of {sum(map(len, expected))}, key points {points}, repetitive summaries "
        f"{repetitive}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", action="append", required=True, help="a runner's base URL")
    args = parser.parse_args()
    for url in args.url:
        print(asyncio.run(measure(url)), flush=True)


if __name__ == "__main__":
    main()
