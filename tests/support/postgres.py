"""A PostgreSQL database of its own for each pytest-xdist worker (and for a run in one process).

The PostgreSQL store tests create, truncate and drop their tables in the database that
``PAS_TEST_POSTGRES_DSN`` names. Two workers on one database reset each other's tables, so each
worker gets a sibling database (``<name>_gw0``, ``<name>_gw1``..., ``<name>_main`` with ``-n
0``), created on first use and emptied at the start of the worker's run, and the variable is
pointed at it before any test module reads it: the database it names is left as it was. The
role in the DSN needs ``CREATEDB`` (``.ci/run`` grants it).
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql


def worker_dsn(dsn: str, worker: str) -> str:
    """The DSN of ``worker``'s own database: the same server and role, the name suffixed."""
    parts = urlsplit(dsn)
    database = parts.path.lstrip("/") or "postgres"
    return urlunsplit(parts._replace(path=f"/{database}_{worker}"))


def fresh_database(dsn: str, worker: str) -> str:
    """Create (or empty) ``worker``'s database next to the one ``dsn`` names; return its DSN."""
    own_dsn = worker_dsn(dsn, worker)
    name = urlsplit(own_dsn).path.lstrip("/")
    # CREATE/DROP DATABASE cannot run inside a transaction block.
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return own_dsn
