"""The spill file: records read back byte for byte, one a line; a file that cannot be written
says so; a replayer that takes it keeps what it keeps and records what it took, while an append
meanwhile waits and lands after what is kept; an append to a file removed meanwhile makes a new
one."""

from __future__ import annotations

import asyncio
import fcntl
import os
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from libs.common.kafka.spill import SpilledRecord, SpillFailed, SpillFile, TakenSpill
from tests.kafka.test_records import MiB, consumed


async def test_spilled_records_read_back_byte_for_byte_one_per_line(tmp_path: Path) -> None:
    spill = SpillFile(tmp_path / "spill" / "processor", consumer="pas-kafka-llm-processor")
    not_utf8 = b"\xff\xfe binary \x00 payload"
    first = consumed(not_utf8, headers=[("traceparent", b"00-abc-01")])
    second = consumed(b"x" * MiB, key=None)

    path = await spill.append(
        first, error="why", error_type="invalid", attempts=1, refused=["dlq: refused"]
    )
    await spill.append(second, error="why", error_type="too_large", attempts=0, refused=[])

    lines = path.read_bytes().splitlines()
    assert path == tmp_path / "spill" / "processor" / "spilled.jsonl"
    assert len(lines) == 2
    found = [msgspec.json.decode(line, type=SpilledRecord) for line in lines]
    assert found[0].value == not_utf8
    assert found[0].key == b"doc-1"
    assert found[0].headers == [("traceparent", b"00-abc-01")]
    assert (found[0].topic, found[0].partition, found[0].offset) == ("financial-documents", 2, 41)
    assert found[0].refused == ["dlq: refused"]
    assert found[0].consumer == "pas-kafka-llm-processor"
    assert found[0].spilled_at <= datetime.now(UTC)
    assert found[1].value == b"x" * MiB
    assert found[1].key is None


async def test_a_header_without_a_value_reads_back_as_one_and_a_file_from_before_still_reads(
    tmp_path: Path,
) -> None:
    spill = SpillFile(tmp_path, consumer="c")
    headers = [("no-value", None), ("empty", b""), ("id", b"7")]
    path = await spill.append(
        consumed(b"v", headers=headers), error="e", error_type="t", attempts=0, refused=[]
    )
    # A line as spill files were written before: every header with a value, base64.
    with path.open("ab") as file:
        file.write(
            b'{"consumer":"c","topic":"t","partition":0,"offset":1,"timestamp_ms":0,'
            b'"key":null,"value":"dg==","headers":[["no-value",""],["id","Nw=="]],'
            b'"error":"e","error_type":"t","attempts":0,"refused":[],'
            b'"spilled_at":"2025-01-01T00:00:00Z"}\n'
        )

    with TakenSpill(path) as taken:
        now, before = (line.record for line in taken.lines)

    assert now is not None
    assert now.headers == headers
    assert before is not None
    assert before.headers == [("no-value", b""), ("id", b"7")]


async def test_a_spill_file_that_cannot_be_written_says_so(tmp_path: Path) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("where the spill directory should be")
    spill = SpillFile(blocked / "spill", consumer="c")

    with pytest.raises(SpillFailed) as raised:
        await spill.append(consumed(b"v"), error="e", error_type="t", attempts=0, refused=[])

    assert str(blocked) in str(raised.value)
    assert blocked.read_text() == "where the spill directory should be"


async def spilled(spill: SpillFile, *values: bytes) -> Path:
    for value in values:
        path = await spill.append(
            consumed(value, key=value), error="e", error_type="t", attempts=1, refused=[]
        )
    return path


async def test_a_taken_spill_keeps_what_is_kept_and_records_what_was_taken(tmp_path: Path) -> None:
    path = await spilled(SpillFile(tmp_path, consumer="c"), b"one", b"two", b"three")
    with path.open("ab") as file:
        file.write(b"{not a spilled record\n")

    with TakenSpill(path) as taken:
        lines = taken.lines
        record = taken.keep({2, 4})

    assert [line.number for line in lines] == [1, 2, 3, 4]
    assert [line.record.key for line in lines[:3] if line.record] == [b"one", b"two", b"three"]
    assert lines[3].record is None
    assert lines[3].unreadable is not None
    assert "not a spilled record" in lines[3].unreadable
    kept = path.read_bytes().splitlines()
    assert [msgspec.json.decode(kept[0], type=SpilledRecord).key, kept[1]] == [
        b"two",
        b"{not a spilled record",
    ]
    assert record is not None
    assert record.name.startswith("spilled.jsonl.replayed-")
    taken_out = record.read_bytes().splitlines()
    assert [msgspec.json.decode(line, type=SpilledRecord).key for line in taken_out] == [
        b"one",
        b"three",
    ]


async def test_an_append_while_the_spill_is_taken_waits_and_lands_after_what_is_kept(
    tmp_path: Path,
) -> None:
    spill = SpillFile(tmp_path, consumer="c")
    path = await spilled(spill, b"replayed")

    with TakenSpill(path) as taken:
        appending = asyncio.ensure_future(spilled(spill, b"meanwhile"))
        await asyncio.sleep(0.3)
        waited = not appending.done()
        taken.keep(set())
    await appending

    assert waited
    [line] = path.read_bytes().splitlines()
    assert msgspec.json.decode(line, type=SpilledRecord).key == b"meanwhile"


async def test_an_append_to_a_file_removed_meanwhile_makes_a_new_one(tmp_path: Path) -> None:
    spill = SpillFile(tmp_path, consumer="c")
    path = await spilled(spill, b"before")
    held = os.open(path, os.O_RDONLY)
    fcntl.flock(held, fcntl.LOCK_EX)
    appending = asyncio.ensure_future(spilled(spill, b"after"))
    await asyncio.sleep(0.3)
    path.unlink()  # an operator removed it while the append waited for the lock
    os.close(held)
    await appending

    [line] = path.read_bytes().splitlines()
    assert msgspec.json.decode(line, type=SpilledRecord).key == b"after"


def test_nothing_spilled_is_no_file_to_take(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError), TakenSpill(tmp_path / "spilled.jsonl"):
        pass
