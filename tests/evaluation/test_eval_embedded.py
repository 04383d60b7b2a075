"""``python -m libs.evaluation`` end to end on the real thing: a PAS LLM service (the Llama 3.1 8B
wrapper on the embedded SmolLM2 model) answers a small slice of the set, every task. The report
must decode into its type with every rate in [0, 1], the HTML must carry its chart, and at
temperature 0 a second run must give the same answers (shape and determinism, not wording)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from libs.evaluation.report import EvalReport, decode
from tests.support.processes import REPO_ROOT, ServiceProcess, free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def llm_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    service = ServiceProcess(
        "services.llm.llama31_8b_service:app",
        free_port(),
        {"LLAMA31_8B_REGISTER": "false", "LLAMA31_8B_CONTEXT_LENGTH": "2048"},
        tmp_path_factory.mktemp("llm") / "llm.log",
    ).start()
    yield f"{service.url}/v1"
    service.stop()


def evaluate(url: str, out: Path, *options: str) -> EvalReport:
    done = subprocess.run(
        [sys.executable, "-m", "libs.evaluation", "--url", url, "--out", str(out), *options],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "report:" in done.stdout
    return decode((out / "report.json").read_bytes())


def rates(report: EvalReport) -> list[float | None]:
    h = report.headline
    values = [h.precision, h.recall, h.sentiment_accuracy, h.faithfulness]
    values += [h.grounding_before, h.grounding_after]
    for stats in report.tasks:
        values += [stats.grounded_before, stats.grounded_after]
    return values + [row.score for row in report.answers]


def test_a_slice_on_the_embedded_model_is_scored_and_repeatable(
    llm_url: str, tmp_path: Path
) -> None:
    report = evaluate(llm_url, tmp_path / "first", "--limit", "1", "--task", "all")
    again = evaluate(llm_url, tmp_path / "again", "--limit", "1", "--task", "key_figures")

    assert [(s.task, s.documents) for s in report.tasks] == [
        ("key_figures", 1),
        ("sentiment", 1),
        ("summary", 1),
    ]
    assert all(0.0 <= value <= 1.0 for value in rates(report) if value is not None)
    assert report.headline.grounding_before is not None
    assert report.key_figures is not None
    assert report.key_figures.expected > 0
    assert all(row.calls >= 1 for row in report.answers)
    assert all(row.usable == (row.reason is None) for row in report.answers)
    assert sum(s.completion_tokens for s in report.tasks) > 0
    html = (tmp_path / "first" / "report.html").read_text()
    assert "<svg" in html

    first = {(r.doc_id, r.task): (r.answer, r.calls, r.grounded) for r in report.answers}
    [repeated] = again.answers
    assert (repeated.answer, repeated.calls, repeated.grounded) == first[
        repeated.doc_id, repeated.task
    ]
