"""A write transaction on an aiosqlite connection: committed when its block ends, rolled back
when the block raises.

Python's sqlite3 (and so aiosqlite) begins a transaction by itself before a write and leaves it
open when a statement fails. The connection then keeps the database's write lock (every other
connection waits, then fails with "database is locked"), and the next write's commit makes
durable whatever the failed write had done before its failure, which its caller was told
failed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiosqlite


@asynccontextmanager
async def write_transaction(db: aiosqlite.Connection) -> AsyncIterator[aiosqlite.Connection]:
    """``async with write_transaction(db):`` around the statements of one write. On a
    connection in autocommit mode (``isolation_level=None``) it begins the transaction itself,
    ``IMMEDIATE``: the write lock is taken first, not half-way through."""
    if db.isolation_level is None:
        await db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        await db.rollback()
        raise
    await db.commit()
