"""``python -m libs.evaluation`` scores exactly what a known model answers.

The model is ``tests/support/openai_responder.py``'s ``OpenAIResponder`` (a scripted server
speaking OpenAI's documented chat completion wire format) served over loopback HTTP, scripted
per document of the first four ``dev`` documents: all expected key figures / a figure too
many, dropped when asked strictly / an invented figure / no JSON at all; sentiments right,
wrong, ungrounded and grounded on the retry; summaries faithful, invented, without numbers.
The report's precision, recall, accuracy, faithfulness and grounding rates must be the
fractions that follows from the script, and the gate's exit code must follow its thresholds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest

from libs.common.schemas.documents import Task
from libs.common.schemas.usage import ScoreReport
from libs.evaluation import scoring
from libs.evaluation.cli import main
from libs.evaluation.eval_set import EvalDocument
from libs.evaluation.report import EvalReport, decode
from tests.evaluation.scripted import (
    INVENTED,
    UNFOUNDED_REASON,
    dev_documents,
    expected_figures,
    figures,
    grounded_reason,
    scripted_model,
    sentiment,
)
from tests.support.analytics_collector import start_collector
from tests.support.asgi_server import serve_asgi
from tests.support.openai_responder import OpenAIResponder
from tests.support.processes import ServiceProcess, ServiceProcesses, free_port

DOCS = dev_documents()[:4]
LABELS = ("positive", "neutral", "negative")


def script(document: EvalDocument, task: Task, strictly: bool, system: str) -> str:
    n = [d.doc_id for d in DOCS].index(document.doc_id)
    first = document.expected_key_figures[0]
    if task == "key_figures":
        return [
            expected_figures(document),
            figures((first.name, first.value))
            if strictly
            else figures((first.name, first.value), ("orders", INVENTED)),
            figures(("revenue", INVENTED)),
            "Sorry, I cannot list figures.",
        ][n]
    if task == "sentiment":
        right, reason = document.expected_sentiment, grounded_reason(document)
        wrong = LABELS[(LABELS.index(right) + 1) % 3]
        return [
            sentiment(right, reason),
            sentiment(wrong, reason),
            sentiment(right, UNFOUNDED_REASON),
            sentiment(right, reason if strictly else UNFOUNDED_REASON),
        ][n]
    return [
        document.reference_summary,
        f"Revenue reached {INVENTED}.",
        "The company reported its results. The company reported its results again.",
        document.reference_summary,
    ][n]


@pytest.fixture
def model() -> Iterator[tuple[str, OpenAIResponder]]:
    responder = OpenAIResponder(model="scripted", answer_for=scripted_model(script))
    with serve_asgi(responder) as url:
        yield f"{url}/v1", responder


@pytest.fixture
def analytics(service_processes: ServiceProcesses, tmp_path: Path) -> ServiceProcess:
    return start_collector(service_processes, tmp_path)


def run(url: str, out: Path, *extra: str) -> tuple[int, EvalReport]:
    code = main(["--url", url, "--limit", "4", "--out", str(out), *extra])
    return code, decode((out / "report.json").read_bytes())


def test_the_report_gives_the_fractions_the_script_makes(
    model: tuple[str, OpenAIResponder],
    analytics: ServiceProcess,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, responder = model
    code, report = run(url, tmp_path, "--analytics-url", analytics.url, "--concurrency", "3")

    sizes = [len(d.expected_key_figures) for d in DOCS]
    assert code == 0
    assert report.key_figures is not None
    assert (report.key_figures.matched, report.key_figures.predicted) == (
        sizes[0] + 1,
        sizes[0] + 2,
    )
    assert report.headline.precision == (sizes[0] + 1) / (sizes[0] + 2)
    assert report.headline.recall == (sizes[0] + 1) / sum(sizes)
    assert report.headline.sentiment_accuracy == 3 / 4
    assert report.sentiment is not None
    assert sum(map(sum, report.sentiment.confusion)) == 4
    assert report.headline.faithfulness == 2 / 3
    assert report.summary is not None
    assert (report.summary.with_numbers, report.summary.without_numbers) == (3, 1)
    by_task = {s.task: s for s in report.tasks}
    assert (by_task["key_figures"].grounded_before, by_task["key_figures"].grounded_after) == (
        1 / 4,
        2 / 4,
    )
    assert (by_task["sentiment"].grounded_before, by_task["sentiment"].grounded_after) == (
        2 / 4,
        3 / 4,
    )
    assert (report.headline.grounding_before, report.headline.grounding_after) == (3 / 8, 5 / 8)
    assert [(u.doc_id, u.task) for u in by_task["key_figures"].unusable] == [
        (DOCS[3].doc_id, "key_figures")
    ]
    assert "AnswerUnusable" in by_task["key_figures"].unusable[0].reason

    # Per answer: the scores the experiment and analytics get, the retry where it was asked.
    rows = {(r.doc_id, r.task): r for r in report.answers}
    assert [rows[d.doc_id, "key_figures"].score for d in DOCS] == [
        1.0,
        2 / (1 + sizes[1]),
        0.0,
        0.0,
    ]
    assert [rows[d.doc_id, "key_figures"].calls for d in DOCS] == [1, 2, 2, 1]
    assert [rows[d.doc_id, "summary"].score for d in DOCS] == [1.0, 0.0, None, 1.0]
    assert rows[DOCS[1].doc_id, "summary"].unfounded == [INVENTED]
    assert all(r["temperature"] == 0 for r in responder.requests)
    assert len(responder.requests) == sum(r.calls for r in report.answers) == 4 * 3 + 2 + 2

    # The scores analytics holds: one per scored answer, plus grounded per structured one.
    held = httpx.get(f"{analytics.url}/analytics/scores")
    assert held.status_code == 200, held.text
    lines = {
        (line.workflow_id, line.metric): line
        for line in msgspec.json.decode(held.content, type=ScoreReport).scores
    }
    sentiment = {
        metric: (line.count, line.mean)
        for (workflow_id, metric), line in lines.items()
        if workflow_id == "kafka_llm_processor.sentiment"
    }
    assert sentiment == {"sentiment_correct": (4, 3 / 4), "grounded": (4, 3 / 4)}
    assert sum(line.count for line in lines.values()) == 4 + 4 + 3 + 4 + 4
    assert {workflow_id for workflow_id, _ in lines} == {
        "kafka_llm_processor.key_figures",
        "kafka_llm_processor.sentiment",
        "kafka_llm_processor.summary",
    }
    assert {line.model for line in lines.values()} == {"scripted"}

    html = (tmp_path / "report.html").read_text()
    assert "<svg" in html
    assert "<script" not in html
    assert "<link" not in html
    printed = capsys.readouterr().out
    assert "precision" in printed
    assert f"analytics: {4 + 4 + 3 + 4 + 4} scores sent" in printed


@pytest.mark.parametrize(("margin", "expected_code"), [(-0.01, 0), (0.01, 1)])
def test_the_gate_fails_on_each_metric_under_its_threshold(
    model: tuple[str, OpenAIResponder],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    margin: float,
    expected_code: int,
) -> None:
    url, _ = model
    sizes = [len(d.expected_key_figures) for d in DOCS]
    thresholds = {
        "--min-precision": (sizes[0] + 1) / (sizes[0] + 2),
        "--min-recall": (sizes[0] + 1) / sum(sizes),
        "--min-sentiment-accuracy": 3 / 4,
        "--min-faithfulness": 2 / 3,
        "--min-grounding-rate": 5 / 8,
    }
    options = [
        part for name, value in thresholds.items() for part in (name, f"{value + margin:.4f}")
    ]
    code, report = run(url, tmp_path, "--task", "all", *options)

    assert code == expected_code
    failed = capsys.readouterr().err
    named = ["precision", "recall", "sentiment accuracy", "faithfulness", "grounding rate"]
    assert [name in failed for name in named] == [expected_code == 1] * len(named)
    assert len(report.gate_failures) == (5 if expected_code else 0)


def test_a_threshold_on_a_metric_not_measured_fails(
    model: tuple[str, OpenAIResponder], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = model
    code, _ = run(url, tmp_path, "--task", "key_figures", "--min-sentiment-accuracy", "0.5")
    assert code == 1
    assert "sentiment accuracy was not measured" in capsys.readouterr().err


def test_bad_arguments_and_an_unreachable_endpoint_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}/v1"
    assert main(["--url", nowhere, "--out", str(tmp_path)]) == 2
    assert "cannot be reached" in capsys.readouterr().err
    assert main(["--url", nowhere, "--workflow", "w", "--version", "2"]) == 2
    assert "--versioning-url" in capsys.readouterr().err
    assert main(["--url", nowhere, "--docs", str(tmp_path / "missing.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["--min-recall", "1.5"])
    assert exited.value.code == 2
    assert not (tmp_path / "report.json").exists()


def test_without_the_retry_the_first_answer_is_the_final_one(
    model: tuple[str, OpenAIResponder], tmp_path: Path
) -> None:
    url, responder = model
    code, report = run(url, tmp_path, "--task", "key_figures", "--no-grounding-retry")

    assert code == 0
    assert (report.headline.grounding_before, report.headline.grounding_after) == (1 / 4, 1 / 4)
    assert len(responder.requests) == 4


def test_sampling_fields_reach_every_question_and_the_report(
    model: tuple[str, OpenAIResponder], tmp_path: Path
) -> None:
    url, responder = model
    sampling = {"frequency_penalty": 0.5, "dry_multiplier": 0.8}
    code, report = run(url, tmp_path, "--task", "summary", "--sampling", json.dumps(sampling))

    assert code == 0
    assert len(responder.requests) == 4
    assert all(
        {**r, **sampling} == r and r["temperature"] == 0 and r["max_tokens"] == 384
        for r in responder.requests
    )
    assert report.config.sampling == sampling
    assert report.summary is not None
    rows = [r for r in report.answers if r.usable]
    assert [r.repetition for r in rows] == [scoring.repetition(r.answer or "") for r in rows]
    assert report.summary.repetition == scoring.mean([r.repetition or 0.0 for r in rows])
    assert report.summary.repetitive == 1  # the one that says its sentence twice


def test_a_summary_ending_in_a_loop_is_scored_as_the_processor_publishes_it(
    tmp_path: Path,
) -> None:
    """The scripted model ends every summary by saying its sentence until the token limit; the
    report holds and scores each one with the loop said once, as the processor publishes it."""
    looped = "The company reported revenue of $4.8 billion for the quarter."

    def looping(document: EvalDocument, task: Task, strictly: bool, system: str) -> str:
        return " ".join([*[looped] * 12, "The company rep"])

    responder = OpenAIResponder(model="scripted", answer_for=scripted_model(looping))
    with serve_asgi(responder) as url:
        code, report = run(f"{url}/v1", tmp_path, "--task", "summary")

    assert code == 0
    assert report.summary is not None
    assert [r.answer for r in report.answers] == [looped] * len(DOCS)
    assert (report.summary.repetition, report.summary.repetitive) == (0.0, 0)
