"""``pas trigger`` on a real runner process (the deterministic probe workflow of the runner's
tests): over REST, and over Kafka through the runner's topics."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from pathlib import Path

from libs.common.kafka.topics import ensure_topics
from tests.cli.conftest import pas
from tests.langgraph_runner.conftest import runner_process_factory  # noqa: F401
from tests.support.processes import ServiceProcess


def test_trigger_over_rest_waits_for_the_outcome(
    runner_process_factory: Callable[..., ServiceProcess],  # noqa: F811
    tmp_path: Path,
) -> None:
    runner = runner_process_factory()
    env = {"RUNNER_URL": runner.url}
    given = tmp_path / "input.json"
    given.write_text(json.dumps({"log": str(tmp_path / "probe.log"), "value": 7}))
    broken = tmp_path / "broken"
    broken.touch()

    ok = pas("trigger", "probe", "--input", f"@{given}", "--wait", env=env)
    failed = pas(
        "trigger",
        "probe",
        "--input",
        json.dumps({"log": str(tmp_path / "probe.log"), "broken": str(broken)}),
        "--wait",
        env=env,
    )
    unknown = pas("trigger", "no_such_workflow", "--wait", env=env)
    not_json = pas("trigger", "probe", "--input", "{nope", env=env)

    assert ok.returncode == 0, ok.stdout + ok.stderr
    run = json.loads(ok.stdout)
    assert run["status"] == "success"
    assert run["output"] == {"visited": ["a", "b", "c"], "value": 7}
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["status"] == "error"
    assert unknown.returncode == 1
    assert "the runner refused the run (404)" in unknown.stderr
    assert not_json.returncode == 2
    assert "not JSON" in not_json.stderr


def test_trigger_over_kafka_waits_for_the_result_or_the_dead_letter(
    runner_process_factory: Callable[..., ServiceProcess],  # noqa: F811
    kafka_bootstrap: str,
    tmp_path: Path,
) -> None:
    run = uuid.uuid4().hex[:8]
    names = {"events": f"wf-events-{run}", "results": f"wf-results-{run}", "dlq": f"wf-dlq-{run}"}
    asyncio.run(
        ensure_topics(kafka_bootstrap, {names["events"]: 3, names["results"]: 3, names["dlq"]: 1})
    )
    topics = {
        "RUNNER_EVENTS_TOPIC": names["events"],
        "RUNNER_RESULTS_TOPIC": names["results"],
        "RUNNER_DLQ_TOPIC": names["dlq"],
    }
    runner_process_factory(
        RUNNER_BOOTSTRAP_SERVERS=kafka_bootstrap,
        RUNNER_GROUP_ID=f"runner-{run}",
        RUNNER_COMMIT_INTERVAL_S="0.2",
        **topics,
    )
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, **topics}
    given = json.dumps({"log": str(tmp_path / "probe.log"), "value": "x"})

    ok = pas("trigger", "probe", "--kafka", "--input", given, "--wait", env=env)
    unknown = pas("trigger", "no_such_workflow", "--kafka", "--wait", env=env)

    assert ok.returncode == 0, ok.stdout + ok.stderr
    result = json.loads(ok.stdout)
    assert result["event_type"] == "workflow.completed"
    assert result["event_id"].startswith("pas-cli-")
    assert result["payload"]["output"] == {"visited": ["a", "b", "c"], "value": "x"}
    assert unknown.returncode == 1, unknown.stdout + unknown.stderr
    assert "dead-lettered: unknown_workflow" in unknown.stderr
