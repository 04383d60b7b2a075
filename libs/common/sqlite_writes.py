"""Write transactions on one aiosqlite connection: one at a time, committed when the block
ends, rolled back when it raises.

Python's sqlite3 (and so aiosqlite) begins a transaction by itself before a write and leaves it
open when a statement fails. The connection then keeps the database's write lock (every other
connection waits, then fails with "database is locked"), and the next write's commit makes
durable whatever the failed write had done before its failure, which its caller was told
failed. One at a time: coroutines sharing the connection would otherwise share a transaction,
each one's commit or rollback taking the other's statements with it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiosqlite


class WriteTransactions:
    """The write transactions of one connection (a store keeps one of these beside it)."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def write(self, db: aiosqlite.Connection) -> AsyncIterator[aiosqlite.Connection]:
        """``async with transactions.write(db) as db:`` around the statements of one write. On
        a connection in autocommit mode (``isolation_level=None``) it begins the transaction
        itself, ``IMMEDIATE``: the write lock is taken first, not half-way through."""
        async with self._lock:
            if db.isolation_level is None:
                await db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                await db.rollback()
                raise
            await db.commit()
