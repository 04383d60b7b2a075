"""The SQL both stores run, written once: DuckDB and PostgreSQL differ only in percentiles and
time buckets (a :class:`Dialect`).

Every statement takes the window as ``$1`` (start, inclusive) and ``$2`` (end, exclusive).
Raw rows and hourly rollups are read together (``UNION ALL``), so a total does not change when
rows are rolled up; percentiles can only come from raw rows.
Identifiers below come from fixed tables in this module, never from a request; values are
always bound parameters. The module passes 400 lines because it is every statement both stores
run: written in one place, the two cannot drift apart.
"""

# ruff: noqa: S608  (SQL is assembled from this module's constants only, see above)

from __future__ import annotations

from collections.abc import Callable
from typing import Final, NamedTuple

from libs.common.schemas.usage import Bucket, GroupBy, TrendMetric

USAGE: Final = "pas_analytics_usage"
RUNS: Final = "pas_analytics_runs"
USAGE_HOURLY: Final = "pas_analytics_usage_hourly"
RUNS_HOURLY: Final = "pas_analytics_runs_hourly"
META: Final = "pas_analytics_meta"
SCORES: Final = "pas_analytics_scores"


class Dialect(NamedTuple):
    percentile: Callable[[str, float], str]
    """``(column, fraction) -> SQL`` of the continuous (interpolated) percentile."""
    bucket: Callable[[str, str], str]
    """``(unit, column) -> SQL`` of the start of the column's minute, hour or day (UTC)."""


DUCKDB = Dialect(
    percentile=lambda column, fraction: f"quantile_cont({column}, {fraction})",
    # time_bucket is several times faster than date_trunc on TIMESTAMPTZ in DuckDB.
    bucket=lambda unit, column: f"time_bucket(INTERVAL '1 {unit}', {column})",
)
POSTGRES = Dialect(
    percentile=lambda column, fraction: (
        f"percentile_cont({fraction}) WITHIN GROUP (ORDER BY {column})"
    ),
    bucket=lambda unit, column: f"date_trunc('{unit}', {column})",
)


GROUP_COLUMNS: Final[dict[GroupBy, str]] = {
    "model": "model",
    "workflow": "workflow_id",
    "provider": "provider",
    "capability": "capability",
    "service": "service",
    "desk": "desk",
}

ADDED_USAGE_COLUMNS: Final = (
    ("desk", "VARCHAR", "VARCHAR NOT NULL DEFAULT ''"),
    ("cached_tokens", "INTEGER NOT NULL DEFAULT 0", "BIGINT NOT NULL DEFAULT 0"),
    ("cache_write_tokens", "INTEGER NOT NULL DEFAULT 0", "BIGINT NOT NULL DEFAULT 0"),
)
"""Usage columns added after the tables were first made, each last in its tables, in this
order: its name, its definition in the raw table and in the hourly one (DuckDB's type names;
PostgreSQL reads VARCHAR as TEXT). A store made before one gains it when it opens; its old rows
hold the default (no desk, nothing cached or written)."""

HOURLY_USAGE_DIMENSIONS: Final = (
    "service", "provider", "model", "capability", "workflow_id", "status", "desk",
)  # fmt: skip
"""What the hourly usage table holds one row an hour for each value of: every dimension a
report groups by (``''`` for none)."""

HOURLY_USAGE_KEY: Final = f"(hour, {', '.join(HOURLY_USAGE_DIMENSIONS)})"
"""The hourly usage table's primary key in DuckDB (whose ART index takes keys of any length).
PostgreSQL keys the table by the hour and a digest of the dimensions instead
(``postgres_schema.HOURLY_USAGE_DIGEST_KEY``): a btree entry holds at most 2704 bytes, and
seven names of up to 256 characters, up to 4 bytes each, do not fit."""

BUCKET_UNITS: Final[dict[Bucket, str]] = {"1m": "minute", "1h": "hour", "1d": "day"}

USAGE_COLUMNS: Final = (
    "event_id",
    "ts",
    "service",
    "provider",
    "model",
    "capability",
    "workflow_id",
    "run_id",
    "request_id",
    "prompt_tokens",
    "completion_tokens",
    "latency_ms",
    "cost_usd",
    "status",
    "error",
    # Added later, last: stores made before them only gain columns (their stores add them).
    "desk",
    "cached_tokens",
    "cache_write_tokens",
)
RUN_COLUMNS: Final = ("run_id", "status", "ts", "workflow_id", "duration_ms", "source", "error")

# Raw and rolled-up usage as one relation; ``calls`` and ``latency_ms`` are sums per row. A
# rollup keeps an absent capability, workflow or desk as '' (a key column): an empty one is
# read as absent on both sides, so that a rollup merges no group into another.
_USAGE_ALL = f"""
usage_all AS (
    SELECT ts, service, provider, model, NULLIF(capability, '') AS capability,
           NULLIF(workflow_id, '') AS workflow_id, NULLIF(desk, '') AS desk, status, 1 AS calls,
           prompt_tokens, completion_tokens, cost_usd, latency_ms, cached_tokens,
           cache_write_tokens
    FROM {USAGE} WHERE ts >= $1 AND ts < $2 {{usage_filter}}
    UNION ALL
    SELECT hour, service, provider, model, NULLIF(capability, ''), NULLIF(workflow_id, ''),
           NULLIF(desk, ''), status, calls, prompt_tokens, completion_tokens, cost_usd,
           latency_ms_sum, cached_tokens, cache_write_tokens
    FROM {USAGE_HOURLY} WHERE hour >= $1 AND hour < $2 {{hourly_usage_filter}}
)"""

_RUNS_ALL = f"""
runs_all AS (
    SELECT ts, workflow_id, status, 1 AS runs FROM {RUNS}
    WHERE ts >= $1 AND ts < $2 {{runs_filter}}
    UNION ALL
    SELECT hour, workflow_id, status, runs FROM {RUNS_HOURLY}
    WHERE hour >= $1 AND hour < $2 {{runs_filter}}
)"""


def _usage_all(usage_filter: str = "", hourly_usage_filter: str = "") -> str:
    return _USAGE_ALL.format(usage_filter=usage_filter, hourly_usage_filter=hourly_usage_filter)


def costs(group_by: GroupBy) -> str:
    key = GROUP_COLUMNS[group_by]
    return f"""
WITH {_usage_all()}
SELECT {key} AS key, sum(calls), sum(prompt_tokens), sum(completion_tokens), sum(cost_usd),
       sum(cached_tokens), sum(cache_write_tokens)
FROM usage_all GROUP BY {key}
ORDER BY 5 DESC, 1 NULLS LAST"""


def workflow_stats(dialect: Dialect) -> str:
    percentile = dialect.percentile
    return f"""
WITH runs_raw AS (
    SELECT workflow_id, count(*) AS runs, count(*) FILTER (WHERE status = 'success') AS ok,
           count(*) FILTER (WHERE status = 'ungrounded') AS ungrounded,
           {percentile("duration_ms", 0.5)} AS p50,
           {percentile("duration_ms", 0.95)} AS p95,
           {percentile("duration_ms", 0.99)} AS p99
    FROM {RUNS} WHERE ts >= $1 AND ts < $2 GROUP BY workflow_id
), runs_rolled AS (
    SELECT workflow_id, sum(runs) AS runs, sum(runs) FILTER (WHERE status = 'success') AS ok,
           sum(runs) FILTER (WHERE status = 'ungrounded') AS ungrounded
    FROM {RUNS_HOURLY} WHERE hour >= $1 AND hour < $2 GROUP BY workflow_id
), {_usage_all()}, spend AS (
    SELECT workflow_id, sum(calls) AS calls, sum(prompt_tokens + completion_tokens) AS tokens,
           sum(cost_usd) AS cost
    FROM usage_all WHERE workflow_id IS NOT NULL GROUP BY workflow_id
), ids AS (
    SELECT workflow_id FROM runs_raw UNION SELECT workflow_id FROM runs_rolled
    UNION SELECT workflow_id FROM spend
)
SELECT ids.workflow_id,
       coalesce(r.runs, 0) + coalesce(h.runs, 0),
       coalesce(r.ok, 0) + coalesce(h.ok, 0),
       r.p50, r.p95, r.p99,
       coalesce(r.ungrounded, 0) + coalesce(h.ungrounded, 0),
       coalesce(s.calls, 0), coalesce(s.tokens, 0), coalesce(s.cost, 0)
FROM ids
LEFT JOIN runs_raw r ON r.workflow_id = ids.workflow_id
LEFT JOIN runs_rolled h ON h.workflow_id = ids.workflow_id
LEFT JOIN spend s ON s.workflow_id = ids.workflow_id
ORDER BY 1"""


def model_stats(dialect: Dialect) -> str:
    percentile = dialect.percentile
    return f"""
WITH {_usage_all()}, totals AS (
    SELECT model, provider, sum(calls) AS calls,
           coalesce(sum(calls) FILTER (WHERE status = 'error'), 0) AS errors,
           sum(latency_ms) AS latency_sum,
           sum(completion_tokens) FILTER (WHERE status = 'ok') AS ok_completion,
           sum(latency_ms) FILTER (WHERE status = 'ok') AS ok_latency,
           sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens,
           sum(cost_usd) AS cost
    FROM usage_all GROUP BY model, provider
), spread AS (
    SELECT model, provider,
           {percentile("latency_ms", 0.5)} AS p50,
           {percentile("latency_ms", 0.95)} AS p95,
           {percentile("latency_ms", 0.99)} AS p99
    FROM {USAGE} WHERE ts >= $1 AND ts < $2 GROUP BY model, provider
)
SELECT t.model, t.provider, t.calls, t.errors, t.latency_sum, t.ok_completion, t.ok_latency,
       t.prompt_tokens, t.completion_tokens, t.cost, s.p50, s.p95, s.p99
FROM totals t LEFT JOIN spread s ON s.model = t.model AND s.provider = t.provider
ORDER BY t.calls DESC, t.model, t.provider"""


# metric -> (relation it reads, aggregate over it)
_RUN_METRICS: Final[dict[TrendMetric, str]] = {
    "runs": "sum(runs)",
    "failures": "coalesce(sum(runs) FILTER (WHERE status = 'error'), 0)",
    "success_rate": "coalesce(sum(runs) FILTER (WHERE status = 'success'), 0) * 1.0 / sum(runs)",
}
_USAGE_METRICS: Final[dict[TrendMetric, str]] = {
    "llm_calls": "sum(calls)",
    "llm_errors": "coalesce(sum(calls) FILTER (WHERE status = 'error'), 0)",
    "error_rate": "coalesce(sum(calls) FILTER (WHERE status = 'error'), 0) * 1.0 / sum(calls)",
    "tokens": "sum(prompt_tokens + completion_tokens)",
    "cost": "sum(cost_usd)",
}
_RAW_PERCENTILES: Final[dict[TrendMetric, tuple[str, str, float]]] = {
    "duration_p50": (RUNS, "duration_ms", 0.5),
    "duration_p95": (RUNS, "duration_ms", 0.95),
    "duration_p99": (RUNS, "duration_ms", 0.99),
    "latency_p50": (USAGE, "latency_ms", 0.5),
    "latency_p95": (USAGE, "latency_ms", 0.95),
    "latency_p99": (USAGE, "latency_ms", 0.99),
}
ADDITIVE_METRICS: Final = frozenset(
    {"runs", "failures", "llm_calls", "llm_errors", "tokens", "cost"}
)
"""Metrics whose empty buckets are 0 (the others have no value there)."""


def trend(
    metric: TrendMetric,
    bucket: Bucket,
    dialect: Dialect,
    *,
    workflow_id: str | None,
    model: str | None,
    desk: str | None = None,
) -> tuple[str, list[str]]:
    """The time series' SQL and the filter values that follow ``$1, $2``. A model or desk
    filter does not apply to run metrics (runs have neither)."""
    when = dialect.bucket(BUCKET_UNITS[bucket], "ts")
    about_runs = metric in _RUN_METRICS or metric.startswith("duration")
    params: list[str] = []
    conditions = []
    for column, value in (("workflow_id", workflow_id), ("model", model), ("desk", desk)):
        if value is not None and not (about_runs and column != "workflow_id"):
            params.append(value)
            conditions.append(f"AND {column} = ${2 + len(params)}")
    where = " ".join(conditions)
    if metric in _RUN_METRICS:
        sql = f"""
WITH {_RUNS_ALL.format(runs_filter=where)}
SELECT {when} AS t, {_RUN_METRICS[metric]} FROM runs_all
GROUP BY 1 ORDER BY 1"""
    elif metric in _USAGE_METRICS:
        sql = f"""
WITH {_usage_all(where, where)}
SELECT {when} AS t, {_USAGE_METRICS[metric]} FROM usage_all
GROUP BY 1 ORDER BY 1"""
    else:
        table, column, fraction = _RAW_PERCENTILES[metric]
        sql = f"""
SELECT {when} AS t, {dialect.percentile(column, fraction)} FROM {table}
WHERE ts >= $1 AND ts < $2 {where}
GROUP BY 1 ORDER BY 1"""
    return sql, params


def success_rates() -> str:
    return f"""
WITH {_RUNS_ALL.format(runs_filter="")}
SELECT workflow_id, coalesce(sum(runs) FILTER (WHERE status = 'success'), 0) * 1.0 / sum(runs)
FROM runs_all GROUP BY workflow_id"""


# --- ingest of runs: one statement per batch, one list per column -----------------------------

_RUN_BATCH = """(
    SELECT unnest($1::text[]) AS run_id, unnest($2::text[]) AS status,
           unnest($3::timestamptz[]) AS ts, unnest($4::text[]) AS workflow_id,
           unnest($5::float8[]) AS duration_ms, unnest($6::text[]) AS source,
           unnest($7::text[]) AS error
) batch"""

# A run counts once, with its latest outcome: a newer outcome replaces the stored one, an
# older or repeated one is not stored. Run both in one transaction.
DELETE_SUPERSEDED_RUNS: Final = f"""
DELETE FROM {RUNS} WHERE EXISTS (
    SELECT 1 FROM {_RUN_BATCH}
    WHERE batch.run_id = {RUNS}.run_id AND {RUNS}.ts < batch.ts
)"""

INSERT_RUNS: Final = f"""
INSERT INTO {RUNS} ({", ".join(RUN_COLUMNS)})
SELECT run_id, status, ts, workflow_id, duration_ms, source, error FROM {_RUN_BATCH}
WHERE NOT EXISTS (
    SELECT 1 FROM {RUNS} stored WHERE stored.run_id = batch.run_id AND stored.ts >= batch.ts
)
ON CONFLICT DO NOTHING
RETURNING run_id"""


# --- retention --------------------------------------------------------------------------------


def roll_up_usage(key: str) -> str:
    """Raw usage before ``$1`` added to the hourly rows of its hour and dimensions, the table's
    ``key`` (the store's, in parentheses) telling which row that is."""
    return f"""
INSERT INTO {USAGE_HOURLY} (hour, service, provider, model, capability, workflow_id, desk,
                            status, calls, prompt_tokens, completion_tokens, cost_usd,
                            latency_ms_sum, cached_tokens, cache_write_tokens)
SELECT date_trunc('hour', ts), service, provider, model, coalesce(capability, ''),
       coalesce(workflow_id, ''), coalesce(desk, ''), status, count(*), sum(prompt_tokens),
       sum(completion_tokens), sum(cost_usd), sum(latency_ms), sum(cached_tokens),
       sum(cache_write_tokens)
FROM {USAGE} WHERE ts < $1
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
ON CONFLICT {key} DO UPDATE SET
    calls = {USAGE_HOURLY}.calls + excluded.calls,
    prompt_tokens = {USAGE_HOURLY}.prompt_tokens + excluded.prompt_tokens,
    completion_tokens = {USAGE_HOURLY}.completion_tokens + excluded.completion_tokens,
    cost_usd = {USAGE_HOURLY}.cost_usd + excluded.cost_usd,
    latency_ms_sum = {USAGE_HOURLY}.latency_ms_sum + excluded.latency_ms_sum,
    cached_tokens = {USAGE_HOURLY}.cached_tokens + excluded.cached_tokens,
    cache_write_tokens = {USAGE_HOURLY}.cache_write_tokens + excluded.cache_write_tokens"""


ROLL_UP_RUNS: Final = f"""
INSERT INTO {RUNS_HOURLY} (hour, workflow_id, status, runs, duration_ms_sum, timed_runs)
SELECT date_trunc('hour', ts), workflow_id, status, count(*), coalesce(sum(duration_ms), 0),
       count(duration_ms)
FROM {RUNS} WHERE ts < $1
GROUP BY 1, 2, 3
ON CONFLICT (hour, workflow_id, status) DO UPDATE SET
    runs = {RUNS_HOURLY}.runs + excluded.runs,
    duration_ms_sum = {RUNS_HOURLY}.duration_ms_sum + excluded.duration_ms_sum,
    timed_runs = {RUNS_HOURLY}.timed_runs + excluded.timed_runs"""

DELETE_ROLLED_USAGE: Final = f"DELETE FROM {USAGE} WHERE ts < $1"
DELETE_ROLLED_RUNS: Final = f"DELETE FROM {RUNS} WHERE ts < $1"
SET_HORIZON: Final = f"""
INSERT INTO {META} (key, value) VALUES ('rolled_up_before', $1)
ON CONFLICT (key) DO UPDATE SET value = greatest({META}.value, excluded.value)"""


# --- exports ----------------------------------------------------------------------------------

EXPORT_COLUMNS: Final[dict[str, tuple[str, ...]]] = {
    "usage": (
        "event_id",
        "timestamp",
        "service",
        "provider",
        "model",
        "capability",
        "workflow_id",
        "run_id",
        "request_id",
        "prompt_tokens",
        "completion_tokens",
        "latency_ms",
        "cost_usd",
        "status",
        "error",
        "desk",
        "cached_tokens",
        "cache_write_tokens",
    ),
    "runs": ("run_id", "workflow_id", "status", "timestamp", "duration_ms", "source", "error"),
    "usage_hourly": (
        "hour",
        "service",
        "provider",
        "model",
        "capability",
        "workflow_id",
        "status",
        "calls",
        "prompt_tokens",
        "completion_tokens",
        "cost_usd",
        "latency_ms_sum",
        "desk",
        "cached_tokens",
        "cache_write_tokens",
    ),
    "runs_hourly": ("hour", "workflow_id", "status", "runs", "duration_ms_sum", "timed_runs"),
}

EXPORTS: Final[dict[str, str]] = {
    "usage": f"""
SELECT event_id, ts AS timestamp, service, provider, model, capability, workflow_id, run_id,
       request_id, prompt_tokens, completion_tokens, latency_ms, cost_usd, status, error, desk,
       cached_tokens, cache_write_tokens
FROM {USAGE} WHERE ts >= $1 AND ts < $2 ORDER BY ts, event_id""",
    "runs": f"""
SELECT run_id, workflow_id, status, ts AS timestamp, duration_ms, source, error
FROM {RUNS} WHERE ts >= $1 AND ts < $2 ORDER BY ts, run_id, status""",
    "usage_hourly": f"""
SELECT hour, service, provider, model, capability, workflow_id, status, calls, prompt_tokens,
       completion_tokens, cost_usd, latency_ms_sum, desk, cached_tokens, cache_write_tokens
FROM {USAGE_HOURLY} WHERE hour >= $1 AND hour < $2
ORDER BY hour, service, provider, model, capability, workflow_id, status, desk""",
    "runs_hourly": f"""
SELECT hour, workflow_id, status, runs, duration_ms_sum, timed_runs
FROM {RUNS_HOURLY} WHERE hour >= $1 AND hour < $2 ORDER BY hour, workflow_id, status""",
}


# --- quality scores: few (one per evaluated answer and measure), kept raw --------------------

SCORE_COLUMNS: Final = (
    "run_id", "metric", "ts", "workflow_id", "workflow_version", "model", "value", "source",
)  # fmt: skip


def scores_table(text: str, double: str) -> str:
    """``text`` and ``double``: the dialect's names of those types."""
    return f"""CREATE TABLE IF NOT EXISTS {SCORES} (
        run_id {text} NOT NULL, metric {text} NOT NULL, ts TIMESTAMPTZ NOT NULL,
        workflow_id {text} NOT NULL, workflow_version INTEGER, model {text} NOT NULL,
        value {double} NOT NULL, source {text} NOT NULL,
        PRIMARY KEY (run_id, metric))"""


# A score sent again for the same answer and measure replaces the stored one (a re-evaluation).
UPSERT_SCORES: Final = f"""
INSERT INTO {SCORES} ({", ".join(SCORE_COLUMNS)})
SELECT * FROM (
    SELECT unnest($1::text[]), unnest($2::text[]), unnest($3::timestamptz[]),
           unnest($4::text[]), unnest($5::integer[]), unnest($6::text[]),
           unnest($7::double precision[]), unnest($8::text[])
) batch
ON CONFLICT (run_id, metric) DO UPDATE SET
    ts = excluded.ts, workflow_id = excluded.workflow_id,
    workflow_version = excluded.workflow_version, model = excluded.model,
    value = excluded.value, source = excluded.source"""

# $3: one workflow's scores only, or NULL for every workflow's.
SCORE_STATS: Final = f"""
SELECT workflow_id, workflow_version, model, metric, count(*), avg(value), min(value), max(value)
FROM {SCORES}
WHERE ts >= $1 AND ts < $2 AND ($3::text IS NULL OR workflow_id = $3::text)
GROUP BY workflow_id, workflow_version, model, metric
ORDER BY workflow_id, workflow_version NULLS FIRST, model, metric"""
