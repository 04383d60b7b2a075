"""The spill file: what a consumer keeps on disk when no topic takes a record, and how an
operator takes it back (``pas spill``).

``SpillFile`` is the last resort, for a record that can be published nowhere (its result and
its dead letter both refused, or the deadline passed): one JSON line per record, appended to
``<directory>/spilled.jsonl`` and fsync'ed (the directory too when the file is new), under an
exclusive ``flock`` so that processes may share the directory. A line (``SpilledRecord``) holds
the record's key, value and headers byte for byte (base64), its coordinates, why it could not be
used and why no topic took it. Only once ``append`` returned may the consumer commit past the
record; when it raises ``SpillFailed`` the consumer must not (the record then comes back after a
restart).

``TakenSpill`` is the file held by whoever replays it: locked under the same ``flock`` from the
moment it is read until what was sent is taken out of it, so an append meanwhile waits and
lands after what is kept, neither lost nor sent twice. What was taken out is kept beside the
file (``spilled.jsonl.replayed-<UTC time>``), the record of what was sent; what is kept is
written to a new file renamed over the old one, so a crash leaves one of them whole. An
appender that finds, once it holds the lock, that the path now names another file (that one,
or none: an operator removed it) opens the path again, so no line goes to a file nobody
reads.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

import msgspec
from aiokafka import ConsumerRecord

from libs.common.errors import PASError

SPILL_FILE_NAME = "spilled.jsonl"


class SpillFailed(PASError):
    """A record could not be written to the spill file: do not commit past it."""


class SpilledRecord(msgspec.Struct, kw_only=True):
    """One line of a spill file: a record no topic took, byte for byte, and why."""

    consumer: str
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] = msgspec.field(default_factory=list)
    """A header without a value (Kafka allows one) is null; files written before said it as
    an empty value, and still read."""
    error: str
    """Why the record could not be used (what its dead letter would have said)."""
    error_type: str
    attempts: int
    refused: list[str]
    """Each publication that failed: the topic and why."""
    spilled_at: datetime


_encode_spilled = msgspec.json.Encoder().encode


class SpillFile:
    """The append-only file of records that could be published nowhere (see the module)."""

    def __init__(self, directory: str | Path, *, consumer: str) -> None:
        self.path = Path(directory) / SPILL_FILE_NAME
        self.consumer = consumer

    async def append(
        self,
        record: ConsumerRecord[bytes, bytes],
        *,
        error: str,
        error_type: str,
        attempts: int,
        refused: Sequence[str],
    ) -> Path:
        """Write ``record`` durably; only then may its consumer commit past it."""
        line = _encode_spilled(
            SpilledRecord(
                consumer=self.consumer,
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                timestamp_ms=record.timestamp,
                key=record.key,
                value=record.value,
                headers=list(record.headers),
                error=error,
                error_type=error_type,
                attempts=attempts,
                refused=list(refused),
                spilled_at=datetime.now(UTC),
            )
        )
        try:
            await asyncio.to_thread(self._append, line + b"\n")
        except OSError as exc:
            raise SpillFailed(f"{self.path}: {exc}") from exc
        return self.path

    def waiting(self) -> int:
        """How many lines the file holds (records spilled and not replayed yet); 0 without a
        file. Read without the lock: a line being appended counts once it is whole."""
        try:
            with self.path.open("rb") as file:
                return sum(chunk.count(b"\n") for chunk in iter(lambda: file.read(1 << 20), b""))
        except FileNotFoundError:
            return 0

    def _append(self, line: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = _open_locked(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            size = os.fstat(fd).st_size
            try:
                _write_all(fd, line)
                os.fsync(fd)
            except OSError:
                # No half line for the next record to be glued onto.
                os.ftruncate(fd, size)
                raise
        finally:
            os.close(fd)
        if size == 0:
            _sync_directory(self.path.parent)  # a new file is durable once its entry is


def _open_locked(path: Path, flags: int) -> int:
    """``path`` opened with ``flags`` and exclusively locked (released by the close), the file
    the path names once the lock is held: one renamed or removed while this waited is left."""
    while True:
        fd = os.open(path, flags, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass  # removed while this waited: open it again (O_CREAT makes it anew)
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


class SpillLine(msgspec.Struct, frozen=True, kw_only=True):
    """One line of a spill file: the record it holds, or why it holds none."""

    number: int
    """1 for the first line."""
    record: SpilledRecord | None
    unreadable: str | None = None


_decode_spilled = msgspec.json.Decoder(SpilledRecord).decode


def _read_line(number: int, raw: bytes) -> SpillLine:
    try:
        return SpillLine(number=number, record=_decode_spilled(raw))
    except msgspec.DecodeError as exc:
        return SpillLine(number=number, record=None, unreadable=f"not a spilled record: {exc}")


class TakenSpill:
    """The spill file at ``path``, locked while the block runs: ``lines`` is what it held
    when taken; :meth:`keep` takes every other line out."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[SpillLine] = []
        self._raw: dict[int, bytes] = {}
        self._fd: int | None = None

    def __enter__(self) -> TakenSpill:
        """Raises ``FileNotFoundError`` when nothing was ever spilled there."""
        self._fd = fd = _open_locked(self.path, os.O_RDWR)
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        raw = [line for line in b"".join(chunks).split(b"\n") if line.strip()]
        self._raw = dict(enumerate(raw, start=1))
        self.lines = [_read_line(number, line) for number, line in self._raw.items()]
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def keep(self, numbers: set[int]) -> Path | None:
        """Leave only the lines ``numbers`` in the file; the others are first written, fsync'ed,
        to ``spilled.jsonl.replayed-<UTC time>`` beside it (returned; ``None`` if none)."""
        assert self._fd is not None, "keep() outside the with block"
        taken = [line for number, line in self._raw.items() if number not in numbers]
        if not taken:
            return None
        at = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        record = self.path.with_name(f"{self.path.name}.replayed-{at}")
        _write_synced(record, taken)
        # The rest in a new file put in the old one's place at once: a crash leaves one or the
        # other whole. An append waiting for the lock on the old one then opens the new one.
        kept = [line for number, line in self._raw.items() if number in numbers]
        rest = self.path.with_name(f"{self.path.name}.keeping-{at}")
        _write_synced(rest, kept)
        os.replace(rest, self.path)
        _sync_directory(self.path.parent)
        self._raw = {n: line for n, line in self._raw.items() if n in numbers}
        return record


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _write_synced(path: Path, lines: Sequence[bytes]) -> None:
    """A new file at ``path`` holding ``lines``, on disk once this returns."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        _write_all(fd, b"".join(line + b"\n" for line in lines))
        os.fsync(fd)
    finally:
        os.close(fd)
    _sync_directory(path.parent)


def _sync_directory(directory: Path) -> None:
    """A file created, renamed or removed in ``directory`` is durable once this returns."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
