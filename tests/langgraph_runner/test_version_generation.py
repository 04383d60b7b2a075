"""A run that takes its definition from the version manager makes its LLM calls the way the
version says: its ``top_p``, ``seed``, stop sequences and per-call ``timeout_s``, and the
``capability`` the provider router picks a model by, not only its model and temperature. The
run records what was applied, and a version whose parameters this runner's backend cannot
apply is refused, not run as something else under the version's number.

Ollama and an OpenAI-compatible provider (the router, vLLM) cannot run here: their servers are
stand-ins speaking the documented wire formats (``tests/support/ollama_chat.py``: Ollama's
``POST /api/chat`` with its ``options``; ``tests/support/openai_responder.py``: OpenAI's
``POST /v1/chat/completions`` with the router's ``capability`` field), recording what the
runner sent. The last tests run on the real embedded model (a PAS LLM service on llama.cpp).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.langgraph_runner.test_versions import add_version
from tests.support.asgi_server import serve_asgi
from tests.support.ollama_chat import OllamaChat
from tests.support.openai_responder import OpenAIResponder
from tests.support.processes import ServiceProcess
from tests.versioning.conftest import versioning_process_factory

__all__ = ["versioning_process_factory"]  # the fixture, imported for these tests

GENERATION = {
    "temperature": 0.4,
    "top_p": 0.85,
    "seed": 4242,
    "stop": ["\n\n", "END"],
    "max_tokens": 64,
    "timeout_s": 30.0,
}


async def ask_probe(runner: Any, log: Path, **request: Any) -> dict[str, Any]:
    """A probe run whose node ``b`` makes one LLM call, waited for."""
    response = await runner.post(
        "/workflows/probe/runs?wait=true",
        json={"input": {"log": str(log), "ask": "What moves bond prices?"}, **request},
    )
    assert response.status_code == 200, response.text
    run: dict[str, Any] = response.json()
    return run


async def test_a_version_s_generation_and_capability_reach_the_openai_wire(
    make_runner: Callable[..., Any],
    versioning_process_factory: Callable[..., ServiceProcess],
    tmp_path: Path,
) -> None:
    versioning = versioning_process_factory()
    version = await add_version(
        versioning.url, model=None, capability="summarize", parameters=GENERATION
    )
    upstream = OpenAIResponder("routed-model")
    with serve_asgi(upstream) as url:
        runner = await make_runner(
            versioning_url=versioning.url, llm_api="openai", llm_url=f"{url}/v1"
        )
        run = await ask_probe(runner, tmp_path / "probe.log")

    assert run["status"] == "success", run
    [sent] = upstream.requests
    assert sent["capability"] == "summarize"
    assert sent["temperature"] == 0.4
    assert sent["top_p"] == 0.85
    assert sent["seed"] == 4242
    assert sent["stop"] == ["\n\n", "END"]
    assert sent["max_tokens"] == 16, "the node's own bound is below the version's"
    # The record says what the calls were made with, the version's number among it.
    recorded = run["parameters"]
    assert recorded["version"] == str(version)
    assert recorded["capability"] == "summarize"
    assert recorded["model"] is None
    assert (recorded["top_p"], recorded["seed"], recorded["stop"]) == (0.85, 4242, ["\n\n", "END"])
    assert recorded["timeout_s"] == 30.0


async def test_a_version_naming_a_model_is_asked_by_that_model_not_the_runner_s_capability(
    make_runner: Callable[..., Any],
    versioning_process_factory: Callable[..., ServiceProcess],
    tmp_path: Path,
) -> None:
    """The router routes by ``capability`` when a request has one, whatever its model: a
    runner configured with a capability sent it along with the version's model, and the
    router answered from another model than the version names."""
    versioning = versioning_process_factory()
    await add_version(versioning.url, model="model-one", capability="summarize")
    upstream = OpenAIResponder("model-one")
    with serve_asgi(upstream) as url:
        runner = await make_runner(
            versioning_url=versioning.url,
            llm_api="openai",
            llm_url=f"{url}/v1",
            llm_capability="reasoning",
        )
        run = await ask_probe(runner, tmp_path / "probe.log")

    assert run["status"] == "success", run
    [sent] = upstream.requests
    assert sent["model"] == "model-one"
    assert "capability" not in sent
    assert run["parameters"]["capability"] is None, "the version's model is what was asked"


async def test_a_version_s_generation_reaches_ollama_s_options(
    make_runner: Callable[..., Any],
    versioning_process_factory: Callable[..., ServiceProcess],
    tmp_path: Path,
) -> None:
    versioning = versioning_process_factory()
    await add_version(versioning.url, model="model-one", parameters=GENERATION)
    server = OllamaChat(["Rates."])
    with serve_asgi(server) as url:
        runner = await make_runner(versioning_url=versioning.url, llm_api="ollama", llm_url=url)
        run = await ask_probe(runner, tmp_path / "probe.log")

    assert run["status"] == "success", run
    [sent] = server.requests
    assert sent["model"] == "model-one"
    options = sent["options"]
    assert options["temperature"] == 0.4
    assert options["top_p"] == 0.85
    assert options["seed"] == 4242
    assert options["stop"] == ["\n\n", "END"]
    assert options["num_predict"] == 16


@pytest.mark.parametrize("api", ["openai", "ollama"])
async def test_a_version_s_timeout_bounds_each_call(
    api: str,
    make_runner: Callable[..., Any],
    versioning_process_factory: Callable[..., ServiceProcess],
    tmp_path: Path,
) -> None:
    """The server takes 5 s to answer; the version allows a call 0.5 s (the runner's own
    bound, ``RUNNER_LLM_TIMEOUT_S``, is 120 s): the call is given up after the version's."""
    versioning = versioning_process_factory()
    await add_version(versioning.url, model="model-one", parameters={"timeout_s": 0.5})
    server: Any = OpenAIResponder("model-one", delay_s=5.0) if api == "openai" else None
    if server is None:
        server = OllamaChat(["Rates."], delay_s=5.0)
    with serve_asgi(server) as url:
        runner = await make_runner(
            versioning_url=versioning.url,
            llm_api=api,
            llm_url=f"{url}/v1" if api == "openai" else url,
            node_max_attempts=1,
        )
        started = time.monotonic()
        run = await ask_probe(runner, tmp_path / "probe.log")
        took_s = time.monotonic() - started

    assert run["status"] == "error", run
    assert len(server.requests) == 1, "the request went out"
    assert took_s < 4.0, f"the call waited {took_s:.1f} s, past the version's 0.5 s"
    assert "0.5" in run["error"], run["error"]
    assert run["parameters"]["timeout_s"] == 0.5


async def test_a_capability_an_ollama_runner_cannot_route_by_is_refused_not_run(
    make_runner: Callable[..., Any],
    versioning_process_factory: Callable[..., ServiceProcess],
    tmp_path: Path,
) -> None:
    """Ollama's API serves the model it is asked by name: a version asking a capability
    instead would run on the runner's default model under the version's number."""
    versioning = versioning_process_factory()
    await add_version(versioning.url, model=None, capability="summarize")
    server = OllamaChat(["Rates."])
    with serve_asgi(server) as url:
        runner = await make_runner(versioning_url=versioning.url, llm_api="ollama", llm_url=url)
        refused = await runner.post(
            "/workflows/probe/runs?wait=true",
            json={"input": {"log": str(tmp_path / "probe.log"), "ask": "Rates?"}},
        )
        asked = await runner.post(
            "/workflows/probe/runs?wait=true",
            json={
                "input": {"log": str(tmp_path / "probe.log"), "ask": "Rates?"},
                "parameters": {"capability": "summarize"},
            },
        )
        listed = await runner.get("/runs")

    assert refused.status_code == 502, refused.text
    assert "version 1 of 'probe' cannot be run" in refused.json()["detail"]
    assert "capability" in refused.json()["detail"]
    assert asked.status_code == 400, asked.text
    assert "capability" in asked.json()["detail"]
    assert listed.json()["runs"] == []
    assert server.requests == []


async def test_a_request_may_not_name_both_a_model_and_a_capability(
    make_runner: Callable[..., Any], tmp_path: Path
) -> None:
    runner = await make_runner(llm_api="openai")
    response = await runner.post(
        "/workflows/probe/runs",
        json={
            "input": {"log": str(tmp_path / "probe.log")},
            "parameters": {"model": "m", "capability": "summarize"},
        },
    )

    assert response.status_code == 400, response.text
    assert "capability" in response.text


# -- the real embedded model ----------------------------------------------------------------


async def _champion(url: str, version: int) -> None:
    async with httpx.AsyncClient(base_url=url) as http:
        moved = await http.put("/workflows/probe/aliases/champion", json={"version": version})
    assert moved.status_code == 200, moved.text


async def _answer(runner: Any, log: Path) -> str:
    run = await ask_probe(runner, log)
    assert run["status"] == "success", run
    answer: str = run["output"]["answer"]
    return answer


async def test_a_version_s_stop_sequence_cuts_the_embedded_model_s_answer(
    make_runner: Callable[..., Any],
    versioning_process_factory: Callable[..., ServiceProcess],
    llm_process: ServiceProcess,
    tmp_path: Path,
) -> None:
    versioning = versioning_process_factory()
    log = tmp_path / "probe.log"
    await add_version(versioning.url, model=None, parameters={"temperature": 0.0})
    runner = await make_runner(versioning_url=versioning.url, llm_url=llm_process.url)
    whole = await _answer(runner, log)
    words = whole.split()
    assert len(words) >= 4, f"too short an answer to cut: {whole!r}"
    stop = f" {words[2]}"
    cut_at = whole.index(stop)
    second = await add_version(
        versioning.url, model=None, parameters={"temperature": 0.0, "stop": [stop]}
    )
    await _champion(versioning.url, second)

    cut = await _answer(runner, log)

    assert cut == whole[:cut_at].strip(), (whole, stop, cut)


async def test_a_version_s_seed_decides_the_embedded_model_s_sampled_answer(
    make_runner: Callable[..., Any],
    versioning_process_factory: Callable[..., ServiceProcess],
    llm_process: ServiceProcess,
    tmp_path: Path,
) -> None:
    """At a high temperature the answer is a draw: the same seed draws the same answer, and
    other seeds draw others (the runner once sent seed 0 whatever the version said)."""
    versioning = versioning_process_factory()
    log = tmp_path / "probe.log"
    hot = {"temperature": 1.5, "top_p": 1.0}
    runner = await make_runner(versioning_url=versioning.url, llm_url=llm_process.url)
    answers: dict[int, list[str]] = {}
    for seed in (11, 12, 13):
        version = await add_version(versioning.url, model=None, parameters={**hot, "seed": seed})
        await _champion(versioning.url, version)
        answers[seed] = [await _answer(runner, log), await _answer(runner, log)]

    for seed, (first, again) in answers.items():
        assert first == again, f"seed {seed} drew two answers: {first!r}, {again!r}"
    assert len({first for first, _ in answers.values()}) > 1, answers
