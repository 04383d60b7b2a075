"""The evaluation report: its wire types (``report.json`` is an :class:`EvalReport`), the
per-answer rows and the metrics over them (definitions in ``scoring.py`` and
docs/quality.md)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from libs.common.grounding import Source, faithfulness, unfounded_numbers
from libs.common.schemas.documents import KeyFigure, Sentiment, SentimentLabel, Task
from libs.evaluation import scoring
from libs.evaluation.eval_set import ExpectedFigure
from libs.evaluation.runner import Answered


class EvalConfig(msgspec.Struct, kw_only=True):
    """What was run (no secrets)."""

    url: str
    model: str | None
    tasks: list[Task]
    split: str
    limit: int | None
    docs: str
    concurrency: int
    max_tokens: int
    timeout_s: float
    grounding_retry: bool = True
    temperature: float = 0.0
    sampling: dict[str, Any] = msgspec.field(default_factory=dict)
    """Request fields asked with besides the processor's (``--sampling``)."""
    workflow: str | None = None
    version: int | None = None
    alias: str | None = None
    experiment: str | None = None
    versioning_url: str | None = None
    analytics_url: str | None = None
    thresholds: dict[str, float] = msgspec.field(default_factory=dict)


class AnswerRow(msgspec.Struct, kw_only=True):
    """One document's answer to one task, with its scores."""

    run_id: str
    """``<eval id>/<doc id>/<task>``: the analytics score's and the experiment outcome's id."""
    doc_id: str
    task: Task
    split: str
    workflow_id: str
    workflow_version: int | None = None
    experiment_id: str | None = None
    variant: str | None = None
    model: str | None = None
    usable: bool
    reason: str | None = None
    """Why the answer is unusable (the processor would dead-letter it)."""
    answer: str | None = None
    calls: int
    latency_ms: float
    prompt_tokens: int
    completion_tokens: int
    grounded_first: bool | None = None
    grounded: bool | None = None
    ungrounded: list[str] = msgspec.field(default_factory=list)
    key_figures: list[KeyFigure] | None = None
    expected_key_figures: list[ExpectedFigure] | None = None
    matched: int | None = None
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None
    sentiment: Sentiment | None = None
    expected_sentiment: SentimentLabel | None = None
    correct: bool | None = None
    faithfulness: float | None = None
    """Summary: share of its quantities the document holds; ``None`` when it states none."""
    unfounded: list[str] = msgspec.field(default_factory=list)
    """Summary: the quantities it states that the document does not."""
    repetition: float | None = None
    """Summary: the share of its word trigrams that repeat an earlier one (``scoring``)."""
    score: float | None = None
    """key_figures: F1; sentiment: 1.0 or 0.0; summary: faithfulness (``None`` when it states
    no number); an unusable answer: 0.0."""


class Unusable(msgspec.Struct, kw_only=True):
    doc_id: str
    task: Task
    reason: str


class TaskStats(msgspec.Struct, kw_only=True):
    task: Task
    documents: int
    usable: int
    unusable: list[Unusable]
    latency_p50_ms: float | None
    """Nearest rank, over the usable answers (the grounding retry included)."""
    latency_p95_ms: float | None
    prompt_tokens: int
    completion_tokens: int
    grounded_before: float | None = None
    """Key figures and sentiment: share of the documents whose first answer was grounded."""
    grounded_after: float | None = None
    """... whose final answer (after the stricter retry) was usable and grounded."""


class KeyFigureMetrics(msgspec.Struct, kw_only=True):
    documents: int
    matched: int
    predicted: int
    expected: int
    precision: float | None
    recall: float | None
    f1: float
    mean_document_f1: float | None


class SentimentMetrics(msgspec.Struct, kw_only=True):
    documents: int
    correct: int
    accuracy: float | None
    """Over every document asked: an unusable answer is not a correct one."""
    labels: list[str]
    confusion: list[list[int]]
    """Rows: expected label; columns: predicted label (usable answers), in ``labels`` order."""


class SummaryMetrics(msgspec.Struct, kw_only=True):
    documents: int
    with_numbers: int
    without_numbers: int
    faithfulness: float | None
    """Mean over the usable summaries that state a number."""
    repetition: float | None = None
    """Mean over the usable summaries."""
    repetitive: int = 0
    """Usable summaries whose repetition is above ``scoring.REPETITIVE``."""


class GroundingMetrics(msgspec.Struct, kw_only=True):
    answers: int
    """Key figure and sentiment documents asked."""
    before: float | None
    after: float | None


class Headline(msgspec.Struct, kw_only=True):
    precision: float | None = None
    recall: float | None = None
    sentiment_accuracy: float | None = None
    faithfulness: float | None = None
    grounding_before: float | None = None
    grounding_after: float | None = None


class EvalReport(msgspec.Struct, kw_only=True):
    eval_id: str
    started_at: datetime
    finished_at: datetime
    config: EvalConfig
    headline: Headline
    tasks: list[TaskStats]
    key_figures: KeyFigureMetrics | None = None
    sentiment: SentimentMetrics | None = None
    summary: SummaryMetrics | None = None
    grounding: GroundingMetrics | None = None
    answers: list[AnswerRow]
    gate_failures: list[str] = msgspec.field(default_factory=list)
    """Each ``--min-*`` threshold the run fell short of."""


# --- rows ------------------------------------------------------------------------------------


def row_of(answered: Answered) -> AnswerRow:
    document, task = answered.document, answered.task
    usable = answered.unusable is None
    row = AnswerRow(
        run_id=answered.run_id,
        doc_id=document.doc_id,
        task=task,
        split=document.split,
        workflow_id=answered.prompting.workflow_id,
        workflow_version=answered.prompting.workflow_version,
        experiment_id=answered.prompting.experiment_id,
        variant=answered.prompting.variant,
        model=answered.model,
        usable=usable,
        reason=answered.unusable,
        answer=answered.text,
        calls=answered.calls,
        latency_ms=answered.latency_ms,
        prompt_tokens=answered.prompt_tokens,
        completion_tokens=answered.completion_tokens,
        grounded_first=answered.grounded_first,
        grounded=answered.grounded,
        ungrounded=answered.ungrounded,
    )
    if task == "key_figures":
        predicted = (answered.key_figures or []) if usable else []
        counts = scoring.figure_counts(
            [f.value for f in predicted], [f.value for f in document.expected_key_figures]
        )
        row.key_figures = answered.key_figures if usable else None
        row.expected_key_figures = document.expected_key_figures
        row.matched, row.precision, row.recall = counts.matched, counts.precision, counts.recall
        row.f1 = row.score = counts.f1
    elif task == "sentiment":
        row.expected_sentiment = document.expected_sentiment
        row.sentiment = answered.sentiment if usable else None
        row.correct = row.sentiment is not None and row.sentiment.label == row.expected_sentiment
        row.score = 1.0 if row.correct else 0.0
    elif usable and answered.text is not None:
        source = Source.of(f"{document.title}\n{document.content}")
        row.faithfulness = row.score = faithfulness(answered.text, source)
        row.unfounded = unfounded_numbers(answered.text, source)
        row.repetition = scoring.repetition(answered.text)
    else:
        row.score = 0.0
    return row


# --- metrics ---------------------------------------------------------------------------------


def task_stats(task: Task, rows: Sequence[AnswerRow]) -> TaskStats:
    usable = [r for r in rows if r.usable]
    latencies = [r.latency_ms for r in usable]
    stats = TaskStats(
        task=task,
        documents=len(rows),
        usable=len(usable),
        unusable=[
            Unusable(doc_id=r.doc_id, task=task, reason=r.reason or "")
            for r in rows
            if not r.usable
        ],
        latency_p50_ms=scoring.percentile(latencies, 50),
        latency_p95_ms=scoring.percentile(latencies, 95),
        prompt_tokens=sum(r.prompt_tokens for r in rows),
        completion_tokens=sum(r.completion_tokens for r in rows),
    )
    if task != "summary":
        stats.grounded_before = scoring.share([r.grounded_first is True for r in rows])
        stats.grounded_after = scoring.share([r.grounded is True for r in rows])
    return stats


def key_figure_metrics(rows: Sequence[AnswerRow]) -> KeyFigureMetrics:
    counts = scoring.micro(
        scoring.FigureCounts(
            r.matched or 0, len(r.key_figures or []), len(r.expected_key_figures or [])
        )
        for r in rows
    )
    return KeyFigureMetrics(
        documents=len(rows),
        matched=counts.matched,
        predicted=counts.predicted,
        expected=counts.expected,
        precision=counts.precision,
        recall=counts.recall,
        f1=counts.f1,
        mean_document_f1=scoring.mean([r.f1 or 0.0 for r in rows]),
    )


def sentiment_metrics(rows: Sequence[AnswerRow]) -> SentimentMetrics:
    correct = sum(1 for r in rows if r.correct)
    return SentimentMetrics(
        documents=len(rows),
        correct=correct,
        accuracy=correct / len(rows) if rows else None,
        labels=list(scoring.LABELS),
        confusion=scoring.confusion(
            (r.expected_sentiment, r.sentiment.label)
            for r in rows
            if r.sentiment is not None and r.expected_sentiment is not None
        ),
    )


def summary_metrics(rows: Sequence[AnswerRow]) -> SummaryMetrics:
    stated = [r.faithfulness for r in rows if r.faithfulness is not None]
    repetition = [r.repetition for r in rows if r.repetition is not None]
    return SummaryMetrics(
        documents=len(rows),
        with_numbers=len(stated),
        without_numbers=sum(1 for r in rows if r.usable and r.faithfulness is None),
        faithfulness=scoring.mean(stated),
        repetition=scoring.mean(repetition),
        repetitive=sum(1 for share in repetition if share > scoring.REPETITIVE),
    )


def build(
    *,
    eval_id: str,
    started_at: datetime,
    finished_at: datetime,
    config: EvalConfig,
    answers: Sequence[Answered],
) -> EvalReport:
    rows = [row_of(a) for a in answers]
    by_task = {task: [r for r in rows if r.task == task] for task in config.tasks}
    structured = [r for r in rows if r.task != "summary"]
    report = EvalReport(
        eval_id=eval_id,
        started_at=started_at,
        finished_at=finished_at,
        config=config,
        headline=Headline(),
        tasks=[task_stats(task, task_rows) for task, task_rows in by_task.items()],
        answers=rows,
    )
    if "key_figures" in by_task:
        report.key_figures = key_figure_metrics(by_task["key_figures"])
        report.headline.precision = report.key_figures.precision
        report.headline.recall = report.key_figures.recall
    if "sentiment" in by_task:
        report.sentiment = sentiment_metrics(by_task["sentiment"])
        report.headline.sentiment_accuracy = report.sentiment.accuracy
    if "summary" in by_task:
        report.summary = summary_metrics(by_task["summary"])
        report.headline.faithfulness = report.summary.faithfulness
    if structured:
        report.grounding = GroundingMetrics(
            answers=len(structured),
            before=scoring.share([r.grounded_first is True for r in structured]),
            after=scoring.share([r.grounded is True for r in structured]),
        )
        report.headline.grounding_before = report.grounding.before
        report.headline.grounding_after = report.grounding.after
    return report


# --- the gate --------------------------------------------------------------------------------

GATES = {
    "min_precision": ("key figure precision", "precision"),
    "min_recall": ("key figure recall", "recall"),
    "min_sentiment_accuracy": ("sentiment accuracy", "sentiment_accuracy"),
    "min_faithfulness": ("summary faithfulness", "faithfulness"),
    "min_grounding_rate": ("grounding rate (after the retry)", "grounding_after"),
}
"""``--min-*`` option (dest) -> (what it is called, the headline field it bounds)."""


def gate_failures(headline: Headline, thresholds: dict[str, float]) -> list[str]:
    """Each threshold the headline falls short of; a metric the run did not measure (its task
    not run, no summary with a number) fails its threshold too: a gate must not pass unseen."""
    failures = []
    for option, minimum in thresholds.items():
        name, field = GATES[option]
        value = getattr(headline, field)
        if value is None:
            failures.append(f"{name} was not measured (threshold {minimum:g})")
        elif value < minimum:
            failures.append(f"{name} {value:.3f} is under its threshold {minimum:g}")
    return failures


# --- files -----------------------------------------------------------------------------------


def encode(report: EvalReport) -> bytes:
    return msgspec.json.format(msgspec.json.encode(report), indent=2)


def decode(data: bytes) -> EvalReport:
    return msgspec.json.decode(data, type=EvalReport)


def write_json(report: EvalReport, path: Path) -> None:
    path.write_bytes(encode(report) + b"\n")
