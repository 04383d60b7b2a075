"""The TLC classifier: taxonomy members only, confidences from the model's probabilities."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from litestar.testing import AsyncTestClient

from services.llm.taxonomy import DOMAINS, METHODS, TASKS
from services.llm.tlc_classifier_service import TLCSettings, create_app
from tests.llm.conftest import ON_THE_MODULES_LOOP
from tests.support.model_threads import batch_threads
from tests.support.processes import REPO_ROOT

Client = AsyncTestClient[Any]
QUERY = "What is the role of glucose in diabetes?"


# One service for the module: loading the model and reading each prompt's fixed head once, as
# a running service does (on busy cores, that first read took most of each test's time). It
# also makes every test after the first one a check that earlier requests change no answer.
@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def tlc() -> AsyncIterator[Client]:
    settings = TLCSettings(
        register=False, context_length=1024, log_level="WARNING", batch_threads=batch_threads()
    )
    async with AsyncTestClient(app=create_app(settings)) as client:
        yield client


@ON_THE_MODULES_LOOP
async def test_classify_returns_sorted_taxonomy_members(tlc: Client) -> None:
    body = (await tlc.post("/classify_domain", json={"query": QUERY, "top_k": 5})).json()

    domains = body["domains"]
    confidences = [d["confidence"] for d in domains]
    assert body["query"] == QUERY
    assert len(domains) == 5
    assert all(d["domain"] in DOMAINS for d in domains)
    assert all(0.0 <= c <= 1.0 for c in confidences)
    assert confidences == sorted(confidences, reverse=True)
    assert body["primary_domain"] == domains[0]["domain"]


@ON_THE_MODULES_LOOP
async def test_confidences_are_a_distribution_over_the_whole_taxonomy(tlc: Client) -> None:
    body = (await tlc.post("/classify_domain", json={"query": QUERY, "top_k": 21})).json()

    assert {d["domain"] for d in body["domains"]} == set(DOMAINS)
    assert sum(d["confidence"] for d in body["domains"]) == pytest.approx(1.0, abs=1e-3)


@ON_THE_MODULES_LOOP
async def test_classification_is_deterministic(tlc: Client) -> None:
    request = {"query": "Why did the Roman Empire fall?", "top_k": 3}
    first = (await tlc.post("/classify_domain", json=request)).json()
    second = (await tlc.post("/classify_domain", json=request)).json()
    assert first == second


@ON_THE_MODULES_LOOP
async def test_an_answer_does_not_depend_on_what_was_asked_before(tlc: Client) -> None:
    # The model's state after each prompt's fixed head is kept and reused: the domain step of
    # extract_tmd asks what classify_domain asked, so it must give what a fresh read gave.
    request = {"query": QUERY, "top_k": 21}

    first = (await tlc.post("/classify_domain", json=request)).json()
    tmd = (await tlc.post("/extract_tmd", json={"query": QUERY})).json()
    again = (await tlc.post("/classify_domain", json=request)).json()

    assert again == first
    assert tmd["tmd"]["domain"] == first["primary_domain"]
    assert tmd["confidence"]["domain"] == first["domains"][0]["confidence"]


@ON_THE_MODULES_LOOP
async def test_extract_tmd_gives_labels_from_the_fixed_sets(tlc: Client) -> None:
    body = (
        await tlc.post(
            "/extract_tmd",
            json={"query": QUERY, "context_docs": ["Diabetes is a metabolic disorder..."]},
        )
    ).json()

    assert body["tmd"]["task"] in TASKS
    assert body["tmd"]["method"] in METHODS
    assert body["tmd"]["domain"] in DOMAINS
    assert all(0.0 < body["confidence"][k] <= 1.0 for k in ("task", "method", "domain"))


@ON_THE_MODULES_LOOP
async def test_validate_domain(tlc: Client) -> None:
    exact = (await tlc.post("/validate_domain", json={"domain": "computer science"})).json()
    typo = (await tlc.post("/validate_domain", json={"domain": "MEDCINE"})).json()
    junk = (await tlc.post("/validate_domain", json={"domain": "astrology"})).json()

    assert exact == {
        "domain": "computer science",
        "valid": True,
        "canonical": "COMPUTER_SCIENCE",
        "suggestions": [],
    }
    assert typo["valid"] is False
    assert typo["suggestions"][0] == "MEDICINE"
    assert junk["valid"] is False


@ON_THE_MODULES_LOOP
async def test_bad_input_is_a_400(tlc: Client) -> None:
    empty = await tlc.post("/classify_domain", json={"query": ""})
    too_many = await tlc.post("/classify_domain", json={"query": QUERY, "top_k": 22})

    assert empty.status_code == 400
    assert "query" in empty.json()["detail"]
    assert too_many.status_code == 400
    assert "top_k" in too_many.json()["detail"]


def test_a_backend_without_probabilities_is_refused_at_start() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import services.llm.tlc_classifier_service"],
        cwd=REPO_ROOT,
        env={"PATH": "/usr/bin:/bin", "PAS_ENV_FILE": "", "TLC_BACKEND": "ollama"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "configuration error: TLC_BACKEND" in result.stderr
