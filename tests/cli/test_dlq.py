"""``pas dlq``: a poison document and a document whose LLM call was refused land in the
processor's DLQ; the command lists them, replays the one that can succeed once the backend is
fixed, refuses the other unless forced, and leaves the DLQ as it was."""

from __future__ import annotations

import json
import uuid
from typing import Any

import msgspec
from aiokafka import AIOKafkaProducer, ConsumerRecord

from libs.cli.dlq_reading import count_letters
from libs.common.kafka.records import dead_letter
from libs.common.kafka.topics import ensure_topics
from libs.common.kafka.unreadable import CORRUPT_BATCH, HEADER_NAME_NOT_UTF8
from libs.common.schemas.documents import DeadLetter
from services.kafka_llm_processor.send_samples import documents
from tests.cli.conftest import pas
from tests.kafka_llm_processor.conftest import Topics, as_messages, collect, send
from tests.support.asgi_server import serve_asgi
from tests.support.openai_responder import OpenAIResponder
from tests.support.topic_reader import read_until_quiet
from tests.support.unreadable_records import RawRecord, send_one_batch

REFUSED = (400, b'{"error": {"message": "bad request", "type": "invalid_request_error"}}')


def listed(env: dict[str, str], dlq: str) -> list[dict[str, Any]]:
    shown = pas("dlq", "list", dlq, "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    return [json.loads(line) for line in shown.stdout.splitlines()]


async def test_replay_sends_what_can_succeed_and_refuses_what_cannot(
    kafka_bootstrap: str, topics: Topics, start_processor: Any
) -> None:
    backend = OpenAIResponder(reply=REFUSED)
    [doc] = [msgspec.structs.replace(d, task="summary") for d in documents(1)]
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "INPUT_TOPIC": topics.input}
    with serve_asgi(backend) as url:
        start_processor(f"{url}/v1", PROCESSOR_MAX_ATTEMPTS="2")
        await send(kafka_bootstrap, topics.input, [(b"poison", b"{not json"), *as_messages([doc])])
        letters: list[DeadLetter] = await collect(kafka_bootstrap, topics.dlq, 2)
        by_key = {letter.key: letter for letter in letters}
        assert by_key["poison"].error_type == "invalid_document"
        assert by_key[doc.doc_id].error_type == "PermanentLLMError"

        # Listed: both, with where they sit, why, and how often they were tried.
        table = pas("dlq", "list", topics.dlq, env=env)
        assert table.returncode == 0, table.stderr
        for key, kind in (("poison", "invalid_document"), (doc.doc_id, "PermanentLLMError")):
            [line] = [line for line in table.stdout.splitlines() if key in line]
            assert kind in line
        rows = {row["envelope"]["key"]: row for row in listed(env, topics.dlq)}
        assert set(rows) == {"poison", doc.doc_id}
        poison_at = f"{rows['poison']['partition']}:{rows['poison']['offset']}"
        failed_at = f"{rows[doc.doc_id]['partition']}:{rows[doc.doc_id]['offset']}"

        shown = pas("dlq", "show", topics.dlq, failed_at, env=env)
        assert shown.returncode == 0, shown.stderr
        assert '"error_type": "PermanentLLMError"' in shown.stdout
        assert f'"doc_id": "{doc.doc_id}"' in shown.stdout  # the original, pretty-printed

        # A dry run says what would happen and publishes nothing.
        dry = pas("dlq", "replay", topics.dlq, "--all", "--dry-run", env=env)
        assert dry.returncode == 1
        assert "would replay" in dry.stdout

        # The backend is fixed; every letter is asked for: the poison one is refused by name.
        backend.reply = None
        replayed = pas("dlq", "replay", topics.dlq, "--all", env=env)
        assert replayed.returncode == 1, replayed.stdout + replayed.stderr
        assert poison_at in replayed.stderr
        assert "invalid_document" in replayed.stderr
        assert "replayed 1, refused 1" in replayed.stdout

        results = await collect(kafka_bootstrap, topics.output, 1)

        # Asked again, a letter replayed before is refused by name (its original would be
        # processed twice), until --again.
        twice = pas("dlq", "replay", topics.dlq, "--offset", failed_at, env=env)
        assert twice.returncode == 1, twice.stdout + twice.stderr
        assert f"{failed_at} (replayed already as {topics.input}/" in twice.stderr
        rows = {row["envelope"]["key"]: row for row in listed(env, topics.dlq)}
        assert len(rows[doc.doc_id]["replayed_as"]) == 1
        assert rows["poison"]["replayed_as"] == []

    [result] = results
    assert result.doc_id == doc.doc_id
    assert result.status == "ok"
    # Sent again as a new record of the input topic, with its key and the replay's headers.
    sent = await read_until_quiet(kafka_bootstrap, topics.input)
    replays = [r for r in sent if dict(r.headers).get("x-pas-replayed-from")]
    assert len(replays) == 1
    [again] = replays
    assert result.source_offset == f"{again.topic}/{again.partition}/{again.offset}"
    assert again.key == doc.doc_id.encode()
    assert json.loads(again.value) == json.loads(by_key[doc.doc_id].original)
    headers = dict(again.headers)
    assert headers["x-pas-replay-attempt"] == b"1"
    assert headers["x-pas-replayed-from"] == f"{topics.dlq}/{failed_at.replace(':', '/')}".encode()
    # The DLQ still holds both letters, originals intact: it is the audit trail.
    after = {row["envelope"]["key"]: row for row in listed(env, topics.dlq)}
    assert set(after) == {"poison", doc.doc_id}
    assert after["poison"]["envelope"]["original"] == "{not json"
    assert after[doc.doc_id]["envelope"]["original"] == by_key[doc.doc_id].original


async def test_forced_replay_sends_a_refused_letter_and_its_new_letter_counts_the_replay(
    kafka_bootstrap: str, topics: Topics, start_processor: Any
) -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    with serve_asgi(OpenAIResponder()) as url:
        start_processor(f"{url}/v1")
        await send(kafka_bootstrap, topics.input, [(b"poison", b'{"doc_id": "x", "title": 42}')])
        [letter] = await collect(kafka_bootstrap, topics.dlq, 1)
        [row] = listed(env, topics.dlq)
        at = f"{row['partition']}:{row['offset']}"

        refused = pas("dlq", "replay", topics.dlq, "--offset", at, env=env)
        assert refused.returncode == 1
        assert at in refused.stderr
        forced = pas("dlq", "replay", topics.dlq, "--offset", at, "--force", env=env)
        assert forced.returncode == 0, forced.stdout + forced.stderr

        letters = await collect(kafka_bootstrap, topics.dlq, 2)

    assert letter.error_type == "invalid_document"
    again = letters[1]
    assert again.error_type == "invalid_document"
    assert again.original == letter.original
    assert again.headers["x-pas-replay-attempt"] == "1"
    assert again.headers["x-pas-replayed-from"] == f"{topics.dlq}/{at.replace(':', '/')}"
    # Listed with the replay counted; no letter at an offset that does not exist.
    table = pas("dlq", "list", topics.dlq, "--error-type", "invalid_document", env=env)
    assert "2 of 2 letter(s)" in table.stdout
    missing = pas("dlq", "replay", topics.dlq, "--offset", "0:999", env=env)
    assert missing.returncode == 1
    assert "no letter at 0:999" in missing.stderr


def test_a_topic_that_does_not_exist_is_named(kafka_bootstrap: str) -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}

    shown = pas("dlq", "list", "no-such-dlq-topic", env=env)

    assert shown.returncode == 1
    assert "no topic no-such-dlq-topic" in shown.stderr


async def test_dlq_list_without_a_topic_counts_the_letters_of_every_dlq(
    kafka_bootstrap: str,
) -> None:
    """``pas dlq list`` alone: each of PAS's four DLQs (as the services' settings name them)
    with its letters by error type and the newest failure; a DLQ not created yet counts none.
    Several topics read at once is where a seek racing the consumer's first reset showed."""
    run = uuid.uuid4().hex[:8]
    names = {
        "DLQ_TOPIC": f"documents-dlq-{run}",
        "RUNNER_DLQ_TOPIC": f"events-dlq-{run}",
        "ANALYTICS_DLQ_TOPIC": f"analytics-dlq-{run}",
        "VERSIONING_DLQ_TOPIC": f"versioning-dlq-{run}",
    }
    created = [names["DLQ_TOPIC"], names["RUNNER_DLQ_TOPIC"], names["VERSIONING_DLQ_TOPIC"]]
    await ensure_topics(kafka_bootstrap, dict.fromkeys(created, 1))
    letters = [
        letter_of("invalid_document"),
        letter_of("PermanentLLMError"),
        letter_of("invalid_document"),
    ]
    await send(
        kafka_bootstrap,
        names["DLQ_TOPIC"],
        [(b"k", msgspec.json.encode(letter)) for letter in letters] + [(b"k", b"not a letter")],
    )
    await send(
        kafka_bootstrap,
        names["VERSIONING_DLQ_TOPIC"],
        [(b"k", msgspec.json.encode(letter_of("invalid_outcome")))],
    )
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, **names}

    shown = pas("dlq", "list", "--json", env=env)
    table = pas("dlq", "list", env=env)

    assert shown.returncode == 0, shown.stderr
    counts = {row["dlq"]: row for row in map(json.loads, shown.stdout.splitlines())}
    assert list(counts) == list(names.values())
    documents = counts[names["DLQ_TOPIC"]]
    assert documents["written_by"] == "kafka_llm_processor"
    assert documents["letters"] == 4
    assert documents["error_types"] == {
        "invalid_document": 2,
        "PermanentLLMError": 1,
        "unreadable": 1,
    }
    newest = max(letter.failed_at for letter in letters)
    assert documents["newest_failed_at"] == msgspec.json.encode(newest).decode().strip('"')
    assert counts[names["RUNNER_DLQ_TOPIC"]]["letters"] == 0
    assert counts[names["RUNNER_DLQ_TOPIC"]]["exists"] is True
    assert counts[names["ANALYTICS_DLQ_TOPIC"]]["exists"] is False
    assert counts[names["VERSIONING_DLQ_TOPIC"]]["error_types"] == {"invalid_outcome": 1}
    assert table.returncode == 0, table.stderr
    assert "0 (no topic yet)" in table.stdout


async def test_a_letter_the_broker_refuses_is_named_and_the_others_still_go(
    kafka_bootstrap: str,
) -> None:
    """Letters are sent one by one: one whose source topic the broker refuses (a name Kafka
    does not allow) was a traceback that hid what went out before it and left the rest
    unsent. Then ``--again`` sends a letter replayed before once more."""
    run = uuid.uuid4().hex[:8]
    dlq, source = f"replay-dlq-{run}", f"replay-source-{run}"
    await ensure_topics(kafka_bootstrap, {dlq: 1, source: 1})
    bad, first, last = (letter_of("PermanentLLMError") for _ in range(3))
    bad = msgspec.structs.replace(bad, topic="no such/topic")
    first, last = (msgspec.structs.replace(letter, topic=source) for letter in (first, last))
    await send(kafka_bootstrap, dlq, [(b"k", msgspec.json.encode(x)) for x in (first, bad, last)])
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "REPLAY_DEADLINE_S": "3"}

    replayed = pas("dlq", "replay", dlq, "--all", env=env)
    again = pas("dlq", "replay", dlq, "--offset", "0:2", "--again", env=env)
    sent = await read_until_quiet(kafka_bootstrap, source)

    assert replayed.returncode == 1, replayed.stdout + replayed.stderr
    assert "replayed 2, refused 0, not sent 1" in replayed.stdout
    assert "not sent: 0:1 (no such/topic" in replayed.stderr
    assert "Traceback" not in replayed.stderr
    assert again.returncode == 0, again.stdout + again.stderr
    assert [dict(r.headers)["x-pas-replayed-from"] for r in sent] == [
        f"{dlq}/0/0".encode(),
        f"{dlq}/0/2".encode(),
        f"{dlq}/0/2".encode(),
    ]
    rows = {row["offset"]: row["replayed_as"] for row in listed(env, dlq)}
    assert rows == {0: [f"{source}/0/0"], 1: [], 2: [f"{source}/0/1", f"{source}/0/2"]}


async def test_a_record_aiokafka_cannot_read_is_listed_as_unreadable_beside_the_letters(
    kafka_bootstrap: str,
) -> None:
    """A record whose header name is not UTF-8 made aiokafka raise while reading the DLQ:
    ``pas dlq list`` ended in a traceback and listed nothing. Then it was named on stderr and
    left out of the listing and the counts. It is counted now, as ``unreadable``, at its
    coordinates, which ``pas dlq show`` names it by, and stderr no longer says it was
    skipped."""
    run = uuid.uuid4().hex[:8]
    dlq = f"unreadable-dlq-{run}"
    await ensure_topics(kafka_bootstrap, {dlq: 1})
    kinds = ["invalid_document", "unreadable one", "PermanentLLMError", "invalid_outcome"]
    raw = [RawRecord(b"k", msgspec.json.encode(letter_of(kind))) for kind in kinds]
    raw[1] = RawRecord(b"k", raw[1].value, [(b"\xff\xfetrace", b"t-1")])
    await send_one_batch(kafka_bootstrap, dlq, 0, raw[:3])
    await send_one_batch(kafka_bootstrap, dlq, 0, raw[3:])
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}

    rows = listed(env, dlq)
    table = pas("dlq", "list", dlq, env=env)
    shown = pas("dlq", "show", dlq, "0:1", env=env)
    # What ``pas dlq list`` alone prints a line of (its CLI path: the test above).
    [count] = await count_letters(kafka_bootstrap, {dlq: "kafka_llm_processor"})

    assert [(row["offset"], (row["envelope"] or {}).get("error_type")) for row in rows] == [
        (0, "invalid_document"),
        (1, None),
        (2, "PermanentLLMError"),
        (3, "invalid_outcome"),
    ]
    unreadable = "record unreadable: header name not UTF-8"
    assert rows[1]["unreadable"].startswith(unreadable)
    assert table.returncode == 0, table.stderr
    assert "Traceback" not in table.stderr
    assert f"{dlq}: 4 of 4 letter(s)" in table.stdout
    [row] = [line for line in table.stdout.splitlines() if " 0:1 " in line]
    assert "unreadable" in row
    assert unreadable in row
    # Listed, so not said to be skipped (stderr said so until 2026-12-07).
    assert "skipped" not in table.stderr
    assert count.letters == 4
    assert count.error_types == {
        "invalid_document": 1,
        "unreadable": 1,
        "PermanentLLMError": 1,
        "invalid_outcome": 1,
    }
    assert shown.returncode == 1
    assert f"{dlq} 0:1: {unreadable}" in shown.stderr
    assert "holds no record" not in shown.stderr


def test_an_error_type_without_a_topic_is_a_usage_error() -> None:
    picked = pas("dlq", "list", "--error-type", "invalid_document", env={})

    assert picked.returncode == 2
    assert "--error-type needs the TOPIC" in picked.stderr


def letter_of(error_type: str) -> DeadLetter:
    """The envelope a service writes for a record that failed with ``error_type``."""
    record = ConsumerRecord("source", 0, 7, 0, 0, b"k", b"{}", None, len(b"k"), len(b"{}"), [])
    return dead_letter(record, error=f"failed: {error_type}", error_type=error_type, attempts=1)


# -- records that are not text -----------------------------------------------------------------

Headers = list[tuple[str, bytes | None]]


async def send_records(
    bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes | None, Headers]]
) -> None:
    """Send (key, value, headers) in order to partition 0: a value of ``None`` is a
    tombstone, a header's ``None`` a header without a value."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for key, value, headers in records:
            await producer.send_and_wait(topic, value, key=key, headers=headers, partition=0)
    finally:
        await producer.stop()


async def replays_of(bootstrap: str, topic: str) -> dict[str, ConsumerRecord[bytes, bytes]]:
    """The records ``pas dlq replay`` sent to ``topic``, by the letter each came from."""
    return {
        replayed_from.decode(): record
        for record in await read_until_quiet(bootstrap, topic)
        if (replayed_from := dict(record.headers).get("x-pas-replayed-from")) is not None
    }


async def test_records_that_are_not_text_are_dead_lettered_and_replayed_byte_for_byte(
    kafka_bootstrap: str, topics: Topics, start_processor: Any
) -> None:
    """A Latin-1 document, one with a binary key and binary, repeated and valueless headers,
    one with a key over 1 KiB, and a tombstone: the processor's letters keep each record
    exactly, ``pas dlq list|show`` show its binary parts readably, and ``pas dlq replay``
    sends each back as it was (the long key from the source topic, the letter holding its
    first 1 KiB only)."""
    [doc] = [msgspec.structs.replace(d, task="summary", title="Résultats") for d in documents(1)]
    text = msgspec.json.encode(doc)
    latin1 = text.replace("Résultats".encode(), "Résultats".encode("latin-1"))
    binary_headers: Headers = [("trace", b"\xff\x00\x01"), ("tag", b"a"), ("tag", b"b")]
    binary_headers.append(("flag", None))
    sent: list[tuple[bytes | None, bytes | None, Headers]] = [
        (b"latin-1", latin1, []),
        (b"\xff\xfebinary", text, binary_headers),
        (b"k" * 2000, text, []),
        (b"deleted", None, []),
    ]
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    with serve_asgi(OpenAIResponder(reply=REFUSED)) as url:
        start_processor(f"{url}/v1")
        await send_records(kafka_bootstrap, topics.input, sent)
        letters: list[DeadLetter] = await collect(kafka_bootstrap, topics.dlq, len(sent))
        rows = {row["envelope"]["offset"]: row for row in listed(env, topics.dlq)}
        at = {offset: f"{row['partition']}:{row['offset']}" for offset, row in rows.items()}
        table = pas("dlq", "list", topics.dlq, env=env)
        shown = {offset: pas("dlq", "show", topics.dlq, at[offset], env=env) for offset in (0, 1)}
        replayed = pas("dlq", "replay", topics.dlq, "--all", "--force", env=env)

    by_offset = {letter.offset: letter for letter in letters}
    # Filed with what they are, each holding its record exactly.
    assert by_offset[0].error_type == "invalid_document"
    assert by_offset[0].original_base64 == latin1
    assert "R\ufffdsultats" in by_offset[0].original  # its text, for readers of text
    assert by_offset[1].error_type == "PermanentLLMError"
    assert by_offset[1].exact_key() == b"\xff\xfebinary"
    assert by_offset[1].exact_headers() == binary_headers
    assert by_offset[2].key_clipped is True
    assert by_offset[3].error_type == "tombstone"
    assert by_offset[3].tombstone is True
    # Shown readably: the bytes that are not text as \xNN.
    assert table.returncode == 0, table.stderr
    assert "\\xff\\xfebinary" in table.stdout
    assert "R\\xe9sultats" in shown[0].stdout
    assert "trace: \\xff\\x00\\x01\n  tag: a\n  tag: b\n  flag: (no value)" in shown[1].stdout, (
        shown[1].stdout[:3000]
    )
    # Sent back byte for byte: key, value (a tombstone as one) and headers.
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "replayed 4, refused 0" in replayed.stdout
    replays = await replays_of(kafka_bootstrap, topics.input)
    for offset, (key, value, headers) in enumerate(sent):
        again = replays[f"{topics.dlq}/{at[offset].replace(':', '/')}"]
        assert (again.key, again.value) == (key, value)
        assert list(again.headers)[:-2] == headers
        assert [name for name, _ in again.headers][-2:] == [
            "x-pas-replay-attempt",
            "x-pas-replayed-from",
        ]


async def test_a_letter_that_does_not_hold_its_original_is_refused_unless_the_source_does(
    kafka_bootstrap: str,
) -> None:
    """Letters written before originals were kept exactly hold a Latin-1 original as text
    (U+FFFD where its bytes were): not its bytes, as its sha256 says. Such a letter, and a
    clipped one, are replayed from the source topic when the record is still there, and are
    refused by name otherwise, even with --force, rather than sending another record; so are
    letters of records no Kafka client could read. The refusal says what is wrong at the
    source: the record gone, there but unreadable (said to be gone until 2026-12-07), or
    another (other bytes, a tombstone or not), or a letter with no sha256 to check it by."""
    run = uuid.uuid4().hex[:8]
    dlq, source = f"lossy-dlq-{run}", f"lossy-source-{run}"
    # Apart from ``source``: the record on it would make reading ``source`` raise.
    unreadable_source = f"lossy-unreadable-source-{run}"
    await ensure_topics(kafka_bootstrap, {dlq: 1, source: 1, unreadable_source: 1})
    latin1 = '{"title": "Résultats"}'.encode("latin-1")
    await send_records(kafka_bootstrap, source, [(b"kept", latin1, [("h", b"\xff")])])
    await send_one_batch(
        kafka_bootstrap, unreadable_source, 0, [RawRecord(b"k", b"x" * 100, [(b"\xfe", b"t")])]
    )

    def lossy_letter(offset: int) -> DeadLetter:
        """As dead letters were written before: the original as text only."""
        record = consumed_from(source, offset, b"kept", latin1)
        written = dead_letter(record, error="503", error_type="TransientLLMError", attempts=5)
        return msgspec.structs.replace(written, original_base64=None, headers_base64=None)

    clipped = dead_letter(
        consumed_from(source, 9, b"gone", b"x" * 100),
        error="503",
        error_type="TransientLLMError",
        attempts=5,
        keep_bytes=10,
    )
    # Records no Kafka client could build (work_loop.py): one whose header name is not UTF-8,
    # held with U+FFFD in that name; one of a corrupt batch, held not at all.
    unreadable = dead_letter(
        consumed_from(source, 0, b"kept", latin1),
        error="record unreadable: header name not UTF-8",
        error_type=HEADER_NAME_NOT_UTF8,
        attempts=0,
    )
    corrupt = dead_letter(
        consumed_from(source, 0, b"kept", latin1),
        error="record unreadable: its batch's CRC is corrupt",
        error_type=CORRUPT_BATCH,
        attempts=0,
        original_known=False,
    )

    def clipped_from(topic: str, value: bytes) -> DeadLetter:
        """A clipped letter of a record at 0:0 of ``topic`` whose value was ``value``."""
        record = consumed_from(topic, 0, b"k", value)
        return dead_letter(
            record, error="503", error_type="TransientLLMError", attempts=5, keep_bytes=10
        )

    unreadable_at_source = clipped_from(unreadable_source, b"x" * 100)
    other_bytes = clipped_from(source, b"x" * 100)
    no_sha256 = msgspec.structs.replace(other_bytes, original_sha256=None)
    a_tombstone = msgspec.structs.replace(other_bytes, tombstone=True)
    letters = [
        *(lossy_letter(0), lossy_letter(5), clipped, unreadable, corrupt),
        *(unreadable_at_source, other_bytes, no_sha256, a_tombstone),
    ]
    await send(kafka_bootstrap, dlq, [(b"k", msgspec.json.encode(x)) for x in letters])
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}

    replayed = pas("dlq", "replay", dlq, "--all", "--force", env=env)
    replays = await replays_of(kafka_bootstrap, source)

    assert replayed.returncode == 1, replayed.stdout + replayed.stderr
    assert "replayed 1, refused 8" in replayed.stdout
    assert "0:1 (original does not match its original_sha256" in replayed.stderr
    assert f"and the record is no longer on {source} at 0:5)" in replayed.stderr
    assert (
        f"0:2 (original (100 bytes) clipped, and the record is no longer on {source} at 0:9)"
        in replayed.stderr
    )
    assert (
        f"0:5 (original (100 bytes) clipped, and the record on {unreadable_source} at 0:0 is "
        "there but no Kafka client reads it (record unreadable: header name not UTF-8"
    ) in replayed.stderr
    assert (
        f"0:6 (original (100 bytes) clipped, and the record on {source} at 0:0 is another: its "
        "value does not match the letter's original_sha256)"
    ) in replayed.stderr
    assert (
        "0:7 (original (100 bytes) clipped, and the letter has no original_sha256 (written "
        f"before it was kept) to check the record on {source} at 0:0 against)"
    ) in replayed.stderr
    assert (
        f"0:8 (original (100 bytes) clipped, and the record on {source} at 0:0 is another: it "
        "is not a tombstone and the letter's is)"
    ) in replayed.stderr
    assert "no longer whole" not in replayed.stderr
    assert "0:3 (header_name_not_utf8: a record no Kafka client reads" in replayed.stderr
    assert "0:4 (corrupt_record_batch: a record no Kafka client reads" in replayed.stderr
    # The one whose record is still on its topic went out as that record, byte for byte.
    assert list(replays) == [f"{dlq}/0/0"]
    again = replays[f"{dlq}/0/0"]
    assert (again.key, again.value, list(again.headers)[:1]) == (b"kept", latin1, [("h", b"\xff")])


def consumed_from(
    topic: str, offset: int, key: bytes, value: bytes
) -> ConsumerRecord[bytes, bytes]:
    headers = [("h", b"\xff")]
    return ConsumerRecord(topic, 0, offset, 0, 0, key, value, None, len(key), len(value), headers)
