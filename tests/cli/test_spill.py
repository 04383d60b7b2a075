"""``pas spill``: a document whose LLM call was refused while the DLQ took nothing is spilled
by the processor (its /health counts it); the command lists it, and once the backend is fixed
replays it to the input topic, where the processor answers it; what was replayed leaves the
spill file, kept beside it, and a second replay finds nothing to send."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from subprocess import DEVNULL
from typing import Any

import httpx
import msgspec

from libs.common.kafka.spill import SpilledRecord
from libs.common.kafka.topics import ensure_topics
from services.kafka_llm_processor.send_samples import documents
from tests.cli.conftest import pas
from tests.cli.test_dlq import REFUSED
from tests.kafka_llm_processor.conftest import Topics, as_messages, collect, send
from tests.kafka_llm_processor.test_unpublishable import NO_SUCH_TOPIC
from tests.support.asgi_server import serve_asgi
from tests.support.openai_responder import OpenAIResponder
from tests.support.polling import poll_async
from tests.support.processes import REPO_ROOT
from tests.support.topic_reader import read_until_quiet

REFUSED_TOPIC = "no such/topic"
"""A name Kafka does not allow: its send is retried until the deadline (REPLAY_DEADLINE_S)."""


async def waiting_in_spill(url: str) -> int:
    async with httpx.AsyncClient() as http:
        spilled: int = (await http.get(f"{url}/health")).json()["details"]["spilled"]
    return spilled


async def test_a_spilled_document_is_replayed_to_its_topic_and_answered(
    kafka_bootstrap: str, topics: Topics, start_processor: Any, tmp_path: Path
) -> None:
    spill_file = tmp_path / "spill" / "spilled.jsonl"  # start_processor's PROCESSOR_SPILL_DIR
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "PROCESSOR_SPILL_DIR": str(spill_file.parent),
    }
    backend = OpenAIResponder(reply=REFUSED)
    [doc] = [msgspec.structs.replace(d, task="summary") for d in documents(1)]
    with serve_asgi(backend) as url:
        processor = start_processor(
            f"{url}/v1",
            DLQ_TOPIC=NO_SUCH_TOPIC,
            PROCESSOR_MAX_ATTEMPTS="1",
            PROCESSOR_PUBLISH_DEADLINE_S="5",
        )
        await send(kafka_bootstrap, topics.input, as_messages([doc]))
        assert await poll_async(
            lambda: spill_file.exists() and spill_file.read_bytes().count(b"\n") == 1,
            timeout_s=60,
        ), "nothing spilled"
        [line] = spill_file.read_bytes().splitlines()
        spilled = msgspec.json.decode(line, type=SpilledRecord)

        before = await waiting_in_spill(processor.url)
        listed = pas("spill", "list", "--json", env=env)
        table = pas("spill", "list", env=env)
        dry = pas("spill", "replay", "--dry-run", env=env)
        untouched = spill_file.read_bytes()

        backend.reply = None  # the cause is fixed
        replayed = pas("spill", "replay", env=env)
        [result] = await collect(kafka_bootstrap, topics.output, 1)
        again = pas("spill", "replay", env=env)
        after = await waiting_in_spill(processor.url)

    assert (before, after) == (1, 0)  # the processor's /health counts what waits there
    [row] = [json.loads(text) for text in listed.stdout.splitlines()]
    assert listed.returncode == 0, listed.stderr
    assert row["number"] == 1
    assert row["record"]["error_type"] == "PermanentLLMError"
    assert row["record"]["topic"] == topics.input
    assert doc.doc_id in table.stdout
    assert "PermanentLLMError" in table.stdout
    # A dry run publishes nothing and leaves the file as it was.
    assert dry.returncode == 0, dry.stderr
    assert "would replay 1 of 1" in dry.stdout
    assert untouched == line + b"\n"
    # Replayed: answered by the processor from the input topic, with the replay's headers.
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "replayed 1 of 1" in replayed.stdout
    assert result.doc_id == doc.doc_id
    assert result.status == "ok"
    sent = await read_until_quiet(kafka_bootstrap, topics.input)
    [copy] = [r for r in sent if dict(r.headers).get("x-pas-replayed-from")]
    assert result.source_offset == f"{copy.topic}/{copy.partition}/{copy.offset}"
    assert (copy.key, copy.value) == (spilled.key, spilled.value)
    headers = dict(copy.headers)
    assert headers["x-pas-replay-attempt"] == b"1"
    assert headers["x-pas-replayed-from"] == (
        f"spill/{spilled.topic}/{spilled.partition}/{spilled.offset}".encode()
    )
    # Out of the spill file, kept beside it; nothing left to send.
    assert spill_file.read_bytes() == b""
    [kept] = spill_file.parent.glob("spilled.jsonl.replayed-*")
    assert kept.read_bytes() == line + b"\n"
    assert again.returncode == 0, again.stderr
    assert "nothing to replay" in again.stdout


def test_a_line_that_holds_no_record_stays_and_is_named(tmp_path: Path) -> None:
    spill_file = tmp_path / "spilled.jsonl"
    spill_file.write_bytes(b"{cut short by a full disk\n")

    replayed = pas("spill", "replay", str(spill_file), env={})
    missing = pas("spill", "list", str(tmp_path / "none.jsonl"), env={})

    assert replayed.returncode == 1
    assert "line 1" in replayed.stderr
    assert "not a spilled record" in replayed.stderr
    assert spill_file.read_bytes() == b"{cut short by a full disk\n"
    assert missing.returncode == 0
    assert "nothing was spilled there" in missing.stderr


async def test_a_replay_interrupted_leaves_in_the_file_only_what_was_not_acknowledged(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Ctrl-C while one record waits out its deadline (its topic a name the broker refuses):
    the record acknowledged before stays acknowledged. The file was rewritten only once every
    send had ended, so it kept both, and the next replay sent the first one twice."""
    run = uuid.uuid4().hex[:8]
    topic = f"spill-replay-{run}"
    await ensure_topics(kafka_bootstrap, {topic: 1})
    spill_file = tmp_path / "spilled.jsonl"
    spill_file.write_bytes(
        b"".join(
            msgspec.json.encode(spilled_record(to, offset)) + b"\n"
            for offset, to in enumerate((topic, REFUSED_TOPIC))
        )
    )
    command = [sys.executable, "-m", "libs.cli", "spill", "replay", str(spill_file)]
    environment = {
        **os.environ,
        "PAS_ENV_FILE": "",
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "REPLAY_DEADLINE_S": "600",  # the refused one waits until the interruption, however slow
    }
    replaying = await asyncio.create_subprocess_exec(
        *command,
        cwd=REPO_ROOT,
        env=environment,
        stdout=DEVNULL,
        stderr=DEVNULL,
        # Ctrl-C as a terminal delivers it: a test run in the background (CI) ignores SIGINT,
        # and a child inherits that, so it would not hear the interruption at all.
        preexec_fn=_sigint_by_default,
    )
    try:
        found = []
        for _ in range(60):  # until the broker holds the first (or the test gives up)
            if found := await read_until_quiet(kafka_bootstrap, topic, quiet_ms=500):
                break
        [sent] = found
        replaying.send_signal(signal.SIGINT)  # the other still waits for the broker
        try:
            await asyncio.wait_for(replaying.wait(), timeout=15)
        except TimeoutError:
            # As a person would: a second Ctrl-C interrupts even what holds the first up.
            replaying.send_signal(signal.SIGINT)
            await asyncio.wait_for(replaying.wait(), timeout=60)
    finally:
        if replaying.returncode is None:
            replaying.kill()

    assert replaying.returncode != 0
    assert dict(sent.headers)["x-pas-replayed-from"] == f"spill/{topic}/0/0".encode()
    [left] = spill_file.read_bytes().splitlines()
    assert msgspec.json.decode(left, type=SpilledRecord).topic == REFUSED_TOPIC
    [kept] = [name for name in os.listdir(tmp_path) if name.startswith("spilled.jsonl.replayed-")]
    assert msgspec.json.decode((tmp_path / kept).read_bytes(), type=SpilledRecord).topic == topic


def _sigint_by_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def spilled_record(topic: str, offset: int) -> SpilledRecord:
    return SpilledRecord(
        consumer="kafka_llm_processor",
        topic=topic,
        partition=0,
        offset=offset,
        timestamp_ms=0,
        key=b"doc",
        value=b"{}",
        error="the DLQ took nothing",
        error_type="PublishFailed",
        attempts=1,
        refused=[],
        spilled_at=datetime.now(UTC),
    )
