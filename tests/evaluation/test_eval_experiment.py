"""An A/B test of two prompts decided on answer quality: the real version manager (a uvicorn
process on a git repository, with a write token) holds two versions of a key figure workflow
and an experiment between them on metric ``score``; ``libs.evaluation --experiment`` asks each
document with the version the experiment assigns it and records the answer's F1 as the
outcome's score. The model (``OpenAIResponder``, a scripted OpenAI-compatible server) answers
the expected figures to one prompt and an invented figure to the other."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from libs.common.schemas.documents import Task
from libs.common.schemas.versioning import ExperimentDetail
from libs.evaluation.cli import main
from libs.evaluation.eval_set import EvalDocument
from libs.evaluation.report import decode
from tests.evaluation.scripted import (
    INVENTED,
    dev_documents,
    expected_figures,
    figures,
    scripted_model,
)
from tests.support.asgi_server import serve_asgi
from tests.support.openai_responder import OpenAIResponder
from tests.support.processes import ServiceProcess, free_port

# The version manager's ids have no dots: the processor's workflow under another name (one per
# test, as the tests share the service).
WORKFLOW = "kafka_llm_processor_key_figures"
FIXED = "kafka_llm_processor_key_figures_fixed"
TOKEN = "eval-test-token"
GOOD = "GOOD: list the key figures the document reports, each with its name and value."
BAD = "BAD: list some key figures, each with its name and value."
DOCS = dev_documents()[:12]


def script(document: EvalDocument, task: Task, strictly: bool, system: str) -> str:
    assert task == "key_figures"
    if system.startswith(GOOD):
        return expected_figures(document)
    return figures(("revenue", INVENTED))


@pytest.fixture(scope="module")
def versioning(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    folder = tmp_path_factory.mktemp("versioning")
    process = ServiceProcess(
        "services.versioning.app:app",
        free_port(),
        {"VERSIONING_REPO_PATH": str(folder / "repo"), "VERSIONING_TOKEN": TOKEN},
        folder / "versioning.log",
    ).start()
    try:
        with httpx.Client(
            base_url=process.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
        ) as client:
            yield client
    finally:
        process.stop()


@pytest.fixture
def model() -> Iterator[tuple[str, OpenAIResponder]]:
    responder = OpenAIResponder(model="scripted", answer_for=scripted_model(script))
    with serve_asgi(responder) as url:
        yield f"{url}/v1", responder


def create_version(
    client: httpx.Client, prompt: str, workflow: str = WORKFLOW, **definition: Any
) -> int:
    response = client.post(
        f"/workflows/{workflow}/versions",
        json={
            "definition": {"workflow_id": workflow, "prompts": {"key_figures": prompt}}
            | definition,
            "author": {"name": "Eval Test", "email": "eval@pas.invalid"},
            "message": f"Prompt {prompt[:4]}",
        },
    )
    assert response.status_code == 201, response.text
    version: int = response.json()["version"]
    return version


def test_the_experiment_s_score_means_follow_the_prompts(
    versioning: httpx.Client,
    model: tuple[str, OpenAIResponder],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, responder = model
    good = create_version(versioning, GOOD, model="good-model", parameters={"max_tokens": 200})
    bad = create_version(versioning, BAD)
    response = versioning.post(
        "/experiments",
        json={
            "workflow_id": WORKFLOW,
            "variants": {"A": good, "B": bad},
            "metric": "score",
            "min_samples": 2,
            "salt": "eval-prompts",
        },
    )
    assert response.status_code == 201, response.text
    experiment_id = response.json()["id"]
    monkeypatch.setenv("VERSIONING_TOKEN", TOKEN)

    code = main(
        [
            "--url", url, "--task", "key_figures", "--limit", str(len(DOCS)),
            "--versioning-url", str(versioning.base_url), "--experiment", experiment_id,
            "--out", str(tmp_path / "ab"),
        ]
    )  # fmt: skip

    assert code == 0
    detail = msgspec.json.decode(
        versioning.get(f"/experiments/{experiment_id}").content, type=ExperimentDetail
    )
    planned = {v: [d.doc_id for d in DOCS if detail.variant_for(d.doc_id) == v] for v in "AB"}
    assert planned["A"], "the salt should split twelve documents"
    assert planned["B"], "the salt should split twelve documents"
    results = {v.variant: v for v in detail.results.variants}
    assert (results["A"].scored, results["B"].scored) == (len(planned["A"]), len(planned["B"]))
    assert results["A"].scored + results["B"].scored == len(DOCS)
    assert (results["A"].score_mean, results["B"].score_mean) == (1.0, 0.0)
    assert (results["A"].successes, results["B"].successes) == (len(planned["A"]), 0)

    report = decode((tmp_path / "ab" / "report.json").read_bytes())
    assert {(r.doc_id, r.variant, r.workflow_version) for r in report.answers} == {
        (doc_id, v, good if v == "A" else bad) for v in "AB" for doc_id in planned[v]
    }
    asked_good = [r for r in responder.requests if r["messages"][0]["content"].startswith(GOOD)]
    assert {(r["model"], r["max_tokens"]) for r in asked_good} == {("good-model", 200)}
    assert len(asked_good) == len(planned["A"])


def test_a_fixed_version_or_alias_replaces_the_instruction(
    versioning: httpx.Client, model: tuple[str, OpenAIResponder], tmp_path: Path
) -> None:
    url, _ = model
    good = create_version(versioning, GOOD, FIXED)
    bad = create_version(versioning, BAD, FIXED)
    common = ["--url", url, "--task", "key_figures", "--limit", "3"]
    common += ["--versioning-url", str(versioning.base_url), "--workflow", FIXED]

    assert main([*common, "--version", str(bad), "--out", str(tmp_path / "bad")]) == 0
    assert main([*common, "--alias", "champion", "--out", str(tmp_path / "champion")]) == 0
    assert main([*common, "--version", "9", "--out", str(tmp_path / "none")]) == 2

    by_bad = decode((tmp_path / "bad" / "report.json").read_bytes())
    by_champion = decode((tmp_path / "champion" / "report.json").read_bytes())
    assert (by_bad.headline.precision, by_bad.headline.recall) == (0.0, 0.0)
    assert by_champion.headline.precision == by_champion.headline.recall == 1.0
    assert {r.workflow_version for r in by_champion.answers} == {good}
    assert {r.workflow_id for r in by_bad.answers} == {FIXED}
