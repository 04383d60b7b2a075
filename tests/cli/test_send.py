"""``pas send`` to a real processor on a fake OpenAI-compatible backend (its documented wire
format): documents from files or the samples, and their results when asked to wait."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from services.kafka_llm_processor.send_samples import documents
from tests.cli.conftest import pas
from tests.kafka_llm_processor.conftest import Topics
from tests.support.asgi_server import serve_asgi
from tests.support.openai_responder import OpenAIResponder


def test_send_files_and_samples_and_wait_for_their_results(
    kafka_bootstrap: str, topics: Topics, start_processor: Any, tmp_path: Path
) -> None:
    [doc] = documents(1)
    given = tmp_path / "doc.json"
    given.write_bytes(msgspec.json.encode(doc))
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "INPUT_TOPIC": topics.input,
        "OUTPUT_TOPIC": topics.output,
        "DLQ_TOPIC": topics.dlq,
    }
    with serve_asgi(OpenAIResponder()) as url:
        start_processor(f"{url}/v1")
        sent = pas("send", str(given), "--sample", "2", "--task", "summary", "--wait", env=env)

    assert sent.returncode == 0, sent.stdout + sent.stderr
    lines = sent.stdout.splitlines()
    assert len([line for line in lines if line.startswith("sent ")]) == 3
    assert f"sent {doc.doc_id} as {topics.input}/" in sent.stdout
    # describe(): one line per result, with the task and status, then the answer.
    answered = [line for line in lines if "[summary, ok," in line]
    assert len(answered) == 3
    assert any(line.startswith(doc.doc_id) for line in answered)


def test_a_bad_file_is_named_with_its_field(tmp_path: Path) -> None:
    [doc] = documents(1)
    bad = json.loads(msgspec.json.encode(doc))
    bad["title"] = 42
    given = tmp_path / "bad.json"
    given.write_text(json.dumps([json.loads(msgspec.json.encode(doc)), bad]))

    shown = pas("send", str(given), env={})

    assert shown.returncode == 1
    assert str(given) in shown.stderr
    assert "$[1].title" in shown.stderr
