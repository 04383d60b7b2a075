"""Measure answer quality: the Kafka processor's tasks over the evaluation set, scored.

Each document of ``libs/evaluation/data/documents.jsonl`` (the ``dev`` split by default) is asked
for its key figures, sentiment and summary through any OpenAI-compatible endpoint, exactly as
the processor asks (its prompts, JSON schemas, decoding and grounding retry, temperature 0),
and the answers are scored against the expected ones: key figure precision and recall,
sentiment accuracy, summary faithfulness, grounding before and after the retry, latency,
tokens and unusable answers. Writes ``report.json`` and ``report.html`` to ``--out`` (default
``.pas/eval/<eval id>/``) and prints a summary. Definitions and examples: docs/quality.md.

Run: ``.venv/bin/python -m libs.evaluation --url http://127.0.0.1:8050/v1 [--task all]
[--split dev] [--limit N]``; ``--min-precision 0.6`` (and the other ``--min-*``) makes it a CI
gate.

Exit codes: 0 done (every threshold met), 1 a threshold was not met (each named), 2 bad
arguments, an endpoint or service that cannot be reached, or scores that could not be sent.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from libs.common.clients.analytics import AnalyticsError
from libs.common.clients.llm_errors import LLMError, LLMRefused, LLMUnusableAnswer
from libs.common.clients.openai_client import OpenAIClient
from libs.common.clients.openai_compat import openai_base_url
from libs.common.clients.versioning import (
    VersioningClient,
    VersioningError,
    VersioningUnavailable,
)
from libs.common.constants import LLAMA31_8B_PORT
from libs.common.schemas.documents import Task
from libs.evaluation import analytics, eval_set, report, versions
from libs.evaluation.html_report import write_html
from libs.evaluation.runner import Answered, Asker, Prompting, run_bounded

TASKS: tuple[Task, ...] = ("key_figures", "sentiment", "summary")
DEFAULT_MAX_TOKENS = 384
"""The processor's default (``PROCESSOR_MAX_TOKENS``)."""
DEFAULT_TIMEOUT_S = 60.0
"""The processor's default (``LLM_TIMEOUT``)."""


class Unready(Exception):
    """Something the evaluation needs is wrong or out of reach (exit 2)."""


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive whole number")
    return value


_ASKED_BY_THE_PROCESSOR = {"messages", "temperature", "max_tokens", "response_format", "model"}


def _sampling(text: str) -> dict[str, Any]:
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("a JSON object of request fields is expected")
    if taken := sorted(_ASKED_BY_THE_PROCESSOR & value.keys()):
        raise argparse.ArgumentTypeError(
            f"{', '.join(taken)}: set as the processor sets it (see --model, --max-tokens)"
        )
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m libs.evaluation",
        description="Score the Kafka processor's answers on the evaluation set (docs/quality.md).",
    )
    p.add_argument("--task", choices=[*TASKS, "all"], default="all")
    p.add_argument("--split", choices=["dev", "heldout", "all"], default="dev")
    p.add_argument("--limit", type=_positive, help="the first N documents of the split, per task")
    p.add_argument("--docs", type=Path, default=eval_set.DEFAULT_SET, help="the set (JSONL)")
    p.add_argument(
        "--url",
        default=f"http://127.0.0.1:{LLAMA31_8B_PORT}/v1",
        help="OpenAI-compatible base URL: a PAS LLM service, the router, vLLM, Ollama",
    )
    p.add_argument("--model", help="model to ask (default: the server's)")
    p.add_argument("--concurrency", type=_positive, default=1)
    p.add_argument("--max-tokens", type=_positive, default=DEFAULT_MAX_TOKENS)
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per call")
    p.add_argument(
        "--no-grounding-retry",
        dest="grounding_retry",
        action="store_false",
        help="do not ask an ungrounded answer again (as PROCESSOR_GROUNDING_RETRY=false)",
    )
    p.add_argument(
        "--sampling",
        type=_sampling,
        default={},
        metavar="JSON",
        help="more request fields for every question, e.g. '{\"frequency_penalty\": 0.5}' "
        "(the processor asks with none)",
    )
    p.add_argument("--out", type=Path, help="report folder (default .pas/eval/<eval id>/)")

    v = p.add_argument_group("version manager")
    v.add_argument("--versioning-url", help="the version manager, e.g. http://127.0.0.1:6140")
    v.add_argument("--workflow", help="workflow id (its prompts replace the processor's)")
    pick = v.add_mutually_exclusive_group()
    pick.add_argument("--version", type=_positive, help="the workflow's version N")
    pick.add_argument("--alias", help="the version an alias names (default: champion)")
    pick.add_argument(
        "--experiment",
        help="ask each document with the version this experiment assigns it, "
        "and record its outcome with the answer's score",
    )
    v.add_argument("--token", help="write token (default: env VERSIONING_TOKEN or PAS_TOKEN)")

    a = p.add_argument_group("analytics")
    a.add_argument("--analytics-url", help="send the per-answer scores to {url}/events")
    a.add_argument(
        "--analytics-token", help="write token (default: env ANALYTICS_TOKEN or PAS_TOKEN)"
    )

    g = p.add_argument_group("CI gate: exit 1 when a metric is under its threshold")
    for option in report.GATES:
        g.add_argument(f"--{option.replace('_', '-')}", type=_fraction, metavar="X")
    return p


def check(args: argparse.Namespace) -> None:
    """What argparse cannot see: options that need one another."""
    picked = args.version is not None or args.alias is not None
    if (picked or args.experiment) and not args.versioning_url:
        raise Unready("--version, --alias and --experiment need --versioning-url")
    if picked and not args.workflow:
        raise Unready("--version and --alias need --workflow (the workflow they belong to)")
    if args.timeout <= 0:
        raise Unready("--timeout must be positive")


def _env(*names: str) -> str | None:
    return next((os.environ[n] for n in names if os.environ.get(n)), None)


async def preflight(url: str, api_key: str | None, timeout_s: float) -> None:
    """Fail early, and clearly, when nothing answers at ``url`` or it refuses the key."""
    client = OpenAIClient(openai_base_url(url), api_key=api_key, timeout_s=timeout_s)
    try:
        await client.models(timeout_s=min(timeout_s, 15.0))
    except LLMRefused as exc:
        if exc.status not in (404, 405):  # a server without a model list is fine
            raise Unready(f"the endpoint refused us: {exc}") from exc
    except LLMUnusableAnswer:
        pass  # a model list we do not understand; the chat answers will tell
    except LLMError as exc:
        raise Unready(f"the endpoint cannot be reached: {exc}") from exc
    finally:
        await client.aclose()


def thresholds_of(args: argparse.Namespace) -> dict[str, float]:
    return {o: getattr(args, o) for o in report.GATES if getattr(args, o) is not None}


async def evaluate(args: argparse.Namespace) -> int:
    check(args)
    started_at = datetime.now(UTC)
    eval_id = f"{started_at:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
    try:
        documents = eval_set.load(args.docs, args.split)
    except eval_set.EvalSetError as exc:
        raise Unready(str(exc)) from exc
    documents = documents[: args.limit] if args.limit else documents
    if not documents:
        raise Unready(f"{args.docs} has no {args.split} documents")
    tasks: list[Task] = list(TASKS) if args.task == "all" else [args.task]
    api_key = _env("PAS_EVAL_API_KEY", "LLM_API_KEY")
    await preflight(args.url, api_key, args.timeout)

    defaults = versions.Defaults(
        model=args.model, max_tokens=args.max_tokens, workflow_id=args.workflow
    )
    versioning = (
        VersioningClient(
            args.versioning_url, token=args.token or _env("VERSIONING_TOKEN", "PAS_TOKEN")
        )
        if args.versioning_url
        else None
    )
    asker = Asker(
        args.url,
        api_key=api_key,
        timeout_s=args.timeout,
        grounding_retry=args.grounding_retry,
        sampling=args.sampling,
    )
    try:
        plan = await _plan(args, documents, tasks, defaults, versioning)
        jobs: list[Callable[[], Awaitable[Answered]]] = [
            _job(asker, document, task, f"{eval_id}/{document.doc_id}/{task}", prompting)
            for document, task, prompting in plan
        ]
        answers = await run_bounded(jobs, args.concurrency)
        config = report.EvalConfig(
            url=args.url,
            model=args.model,
            tasks=tasks,
            split=args.split,
            limit=args.limit,
            docs=str(args.docs),
            concurrency=args.concurrency,
            max_tokens=args.max_tokens,
            timeout_s=args.timeout,
            sampling=args.sampling,
            grounding_retry=args.grounding_retry,
            workflow=args.workflow,
            version=args.version,
            alias=args.alias,
            experiment=args.experiment,
            versioning_url=args.versioning_url,
            analytics_url=args.analytics_url,
            thresholds=thresholds_of(args),
        )
        result = report.build(
            eval_id=eval_id,
            started_at=started_at,
            finished_at=datetime.now(UTC),
            config=config,
            answers=answers,
        )
        result.gate_failures = report.gate_failures(result.headline, config.thresholds)
        out = args.out or Path(".pas") / "eval" / eval_id
        out.mkdir(parents=True, exist_ok=True)
        report.write_json(result, out / "report.json")
        write_html(result, out / "report.html")
        print(summary(result, out))
        sent = await _send(args, result, versioning)
    finally:
        await asker.aclose()
        if versioning is not None:
            await versioning.aclose()
    if not sent:
        return 2
    if result.gate_failures:
        print("GATE FAILED: " + "; ".join(result.gate_failures), file=sys.stderr)
        return 1
    return 0


async def _plan(
    args: argparse.Namespace,
    documents: Sequence[eval_set.EvalDocument],
    tasks: Sequence[Task],
    defaults: versions.Defaults,
    versioning: VersioningClient | None,
) -> list[tuple[eval_set.EvalDocument, Task, Prompting]]:
    """Each question's prompting, settled before any is asked: a version manager problem
    stops the run before it costs model time."""
    if versioning is None:
        return [(d, t, versions.prompting_of(t, defaults)) for t in tasks for d in documents]
    chooser = versions.VersionChooser(
        versioning,
        defaults,
        workflow_id=args.workflow,
        version=args.version,
        alias=args.alias,
        experiment_id=args.experiment,
    )
    try:
        await chooser.prepare()
        return [(d, t, await chooser.prompting(d.doc_id, t)) for t in tasks for d in documents]
    except VersioningError as exc:
        raise Unready(str(exc)) from exc  # "the version manager answered 404: ..."
    except VersioningUnavailable as exc:
        raise Unready(f"the version manager: {exc}") from exc


def _job(
    asker: Asker, document: eval_set.EvalDocument, task: Task, run_id: str, prompting: Prompting
) -> Callable[[], Awaitable[Answered]]:
    return lambda: asker.answer(document, task, run_id, prompting)


async def _send(
    args: argparse.Namespace, result: report.EvalReport, versioning: VersioningClient | None
) -> bool:
    """Outcomes to the version manager, scores to analytics; False when either failed (the
    report is written already)."""
    ok = True
    if versioning is not None and args.experiment:
        try:
            recorded = await versions.record_outcomes(versioning, result.answers)
            print(f"experiment {args.experiment}: {recorded} outcomes recorded")
        except (VersioningError, VersioningUnavailable) as exc:
            print(f"error: the outcomes were not recorded: {exc}", file=sys.stderr)
            ok = False
    if args.analytics_url:
        scores = analytics.scores_of(
            result.answers, at=result.finished_at, default_model=args.model
        )
        token = args.analytics_token or _env("ANALYTICS_TOKEN", "PAS_TOKEN")
        try:
            taken = await analytics.send_scores(args.analytics_url, scores, token=token)
            print(f"analytics: {taken} scores sent")
        except AnalyticsError as exc:
            print(f"error: the scores were not sent: {exc}", file=sys.stderr)
            ok = False
    return ok


def _n(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def summary(result: report.EvalReport, out: Path) -> str:
    c = result.config
    documents = max((s.documents for s in result.tasks), default=0)
    lines = [
        f"eval {result.eval_id}: {documents} {c.split} documents, model "
        f"{c.model or '(server default)'} at {c.url}"
    ]
    for stats in result.tasks:
        line = f"  {stats.task:<12}"
        if stats.task == "key_figures" and result.key_figures is not None:
            k = result.key_figures
            line += (
                f" precision {_n(k.precision)} recall {_n(k.recall)} F1 {_n(k.f1)} "
                f"({k.matched} of {k.predicted} predicted, {k.expected} expected)"
            )
        elif stats.task == "sentiment" and result.sentiment is not None:
            s = result.sentiment
            line += f" accuracy {_n(s.accuracy)} ({s.correct}/{s.documents})"
        elif stats.task == "summary" and result.summary is not None:
            m = result.summary
            line += (
                f" faithfulness {_n(m.faithfulness)} ({m.with_numbers} with numbers, "
                f"{m.without_numbers} without); repetition {_n(m.repetition)} "
                f"({m.repetitive} repetitive)"
            )
        if stats.grounded_before is not None:
            line += f"; grounded {_n(stats.grounded_before)} -> {_n(stats.grounded_after)}"
        line += (
            f"; p50 {_n(stats.latency_p50_ms and stats.latency_p50_ms / 1000)} s"
            f" p95 {_n(stats.latency_p95_ms and stats.latency_p95_ms / 1000)} s"
            f"; tokens {stats.prompt_tokens}+{stats.completion_tokens}"
            f"; unusable {len(stats.unusable)}"
        )
        lines.append(line)
    lines.append(f"  report: {out / 'report.json'} and {out / 'report.html'}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return asyncio.run(evaluate(args))
    except Unready as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
