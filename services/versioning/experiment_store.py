"""Experiments and their outcomes in SQLite, next to the git repository.

Experiments are small records rewritten on every change; outcomes are rows in arrival order.
An outcome may carry a key (the run id): another outcome with the same key for the same
experiment replaces its figures and keeps its place, so Kafka's at-least-once delivery and a
client's retry count once, and a resumed run's latest result is the one that counts.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import aiosqlite
import msgspec
import numpy as np

from libs.common.schemas.versioning import Experiment
from libs.common.sqlite_writes import WriteTransactions
from services.versioning.statistics import VariantSamples

_KEYS_PER_QUERY = 500
_encode = msgspec.json.Encoder().encode
_decode_experiment = msgspec.json.Decoder(Experiment).decode

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS experiments (
        id TEXT PRIMARY KEY,
        workflow_id TEXT NOT NULL,
        status TEXT NOT NULL,
        record BLOB NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS outcomes (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        experiment_id TEXT NOT NULL REFERENCES experiments (id),
        variant TEXT NOT NULL,
        unit TEXT NOT NULL,
        success INTEGER NOT NULL,
        latency_ms REAL NOT NULL,
        cost REAL NOT NULL,
        score REAL,
        source TEXT NOT NULL,
        outcome_key TEXT,
        recorded_at TEXT NOT NULL
    )""",
    """CREATE UNIQUE INDEX IF NOT EXISTS outcomes_once
        ON outcomes (experiment_id, outcome_key) WHERE outcome_key IS NOT NULL""",
    "CREATE INDEX IF NOT EXISTS outcomes_by_variant ON outcomes (experiment_id, variant, seq)",
)


@dataclass(frozen=True, slots=True)
class OutcomeRow:
    experiment_id: str
    variant: str
    unit: str
    success: bool
    latency_ms: float
    cost: float
    score: float | None
    source: str
    key: str | None
    recorded_at: datetime


class ExperimentStore:
    """One SQLite file in WAL mode, fully synchronous: an outcome acknowledged (over REST, or
    by a Kafka commit) is on disk."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._connection: aiosqlite.Connection | None = None
        self._writes = WriteTransactions()

    @property
    def _db(self) -> aiosqlite.Connection:
        assert self._connection is not None, "ExperimentStore.open() was not awaited"
        return self._connection

    async def open(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = db = await aiosqlite.connect(self._path)
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=FULL")
        await db.execute("PRAGMA foreign_keys=ON")
        for statement in _SCHEMA:
            await db.execute(statement)
        await db.commit()

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    async def experiments(self) -> list[Experiment]:
        async with self._db.execute("SELECT record FROM experiments ORDER BY rowid") as cursor:
            return [_decode_experiment(row[0]) async for row in cursor]

    async def save(self, experiment: Experiment) -> None:
        async with self._writes.write(self._db) as db:
            await db.execute(
                "INSERT INTO experiments (id, workflow_id, status, record) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET status = excluded.status, record = excluded.record",
                (experiment.id, experiment.workflow_id, experiment.status, _encode(experiment)),
            )

    async def add_outcomes(self, rows: list[OutcomeRow]) -> int:
        """Store the rows in one transaction; returns how many were new. A row whose key is
        known replaces the stored one's figures (its place in arrival order stays)."""
        db = self._db
        known = await self._known_keys(rows)
        new = 0
        for row in rows:
            if row.key is None:
                new += 1
            elif (row.experiment_id, row.key) not in known:
                known.add((row.experiment_id, row.key))
                new += 1
        async with self._writes.write(db):
            await db.executemany(
                "INSERT INTO outcomes (experiment_id, variant, unit, success, latency_ms, cost, "
                "score, source, outcome_key, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (experiment_id, outcome_key) WHERE outcome_key IS NOT NULL DO UPDATE "
                "SET success = excluded.success, latency_ms = excluded.latency_ms, "
                "cost = excluded.cost, score = excluded.score, source = excluded.source, "
                "recorded_at = excluded.recorded_at",
                [
                    (
                        row.experiment_id,
                        row.variant,
                        row.unit,
                        int(row.success),
                        row.latency_ms,
                        row.cost,
                        row.score,
                        row.source,
                        row.key,
                        row.recorded_at.isoformat(),
                    )
                    for row in rows
                ],
            )
        return new

    async def _known_keys(self, rows: list[OutcomeRow]) -> set[tuple[str, str]]:
        wanted: defaultdict[str, set[str]] = defaultdict(set)
        for row in rows:
            if row.key is not None:
                wanted[row.experiment_id].add(row.key)
        known: set[tuple[str, str]] = set()
        for experiment_id, keys in wanted.items():
            ordered = sorted(keys)
            for start in range(0, len(ordered), _KEYS_PER_QUERY):
                chunk = ordered[start : start + _KEYS_PER_QUERY]
                marks = ", ".join("?" * len(chunk))
                query = (
                    "SELECT outcome_key FROM outcomes WHERE experiment_id = ? "  # noqa: S608
                    f"AND outcome_key IN ({marks})"
                )
                async with self._db.execute(query, (experiment_id, *chunk)) as cursor:
                    known.update([(experiment_id, row[0]) async for row in cursor])
        return known

    async def counts(self, experiment_id: str | None = None) -> dict[str, dict[str, int]]:
        """Outcomes per experiment and variant (of one experiment, or all)."""
        query = "SELECT experiment_id, variant, COUNT(*) FROM outcomes"
        parameters: tuple[str, ...] = ()
        if experiment_id is not None:
            query += " WHERE experiment_id = ?"
            parameters = (experiment_id,)
        found: defaultdict[str, dict[str, int]] = defaultdict(dict)
        async with self._db.execute(f"{query} GROUP BY experiment_id, variant", parameters) as c:
            async for experiment, variant, count in c:
                found[experiment][variant] = int(count)
        return dict(found)

    async def samples(
        self, experiment_id: str, *, first: int | None = None, scored_only: bool = False
    ) -> dict[str, VariantSamples]:
        """The outcomes of each variant as arrays; with ``first``, only each variant's first
        ``first`` outcomes in arrival order (the fixed-horizon sample); with ``scored_only``,
        only outcomes that have a score."""
        columns = "variant, success, latency_ms, cost, score"
        where = "experiment_id = ?" + (" AND score IS NOT NULL" if scored_only else "")
        if first is None:
            query = f"SELECT {columns} FROM outcomes WHERE {where} ORDER BY seq"  # noqa: S608
            parameters: tuple[object, ...] = (experiment_id,)
        else:
            query = (
                f"SELECT {columns} FROM (SELECT {columns}, ROW_NUMBER() OVER "  # noqa: S608
                f"(PARTITION BY variant ORDER BY seq) AS n FROM outcomes WHERE {where}) "
                "WHERE n <= ?"
            )
            parameters = (experiment_id, first)
        rows: defaultdict[str, list[tuple[int, float, float, float | None]]] = defaultdict(list)
        async with self._db.execute(query, parameters) as cursor:
            async for variant, success, latency, cost, score in cursor:
                rows[variant].append((success, latency, cost, score))
        return {variant: _as_arrays(values) for variant, values in rows.items()}


def _as_arrays(values: list[tuple[int, float, float, float | None]]) -> VariantSamples:
    success, latency, cost, score = zip(*values, strict=True)
    return VariantSamples(
        success=np.array(success, dtype=np.bool_),
        latency_ms=np.array(latency, dtype=np.float64),
        cost=np.array(cost, dtype=np.float64),
        score=np.array([np.nan if s is None else s for s in score], dtype=np.float64),
    )
