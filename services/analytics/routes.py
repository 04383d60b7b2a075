"""HTTP surface of the collector: ingest, analytics queries, exports, rollup, the dashboard."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import structlog
from litestar import Controller, Response, get, post
from litestar.di import NamedDependency
from litestar.exceptions import ClientException
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIFormat, OpenAPIType, Schema
from litestar.params import FromQuery, JSONBody, QueryParameter
from litestar.response import Stream

from libs.common.kit import problem_responses
from libs.common.kit.openapi import answered_also_as
from libs.common.kit.streaming import closes_when_sent
from libs.common.schemas.usage import (
    Bucket,
    CostReport,
    EventBatch,
    GroupBy,
    IngestResult,
    ModelReport,
    RollupResult,
    ScoreReport,
    Trend,
    TrendMetric,
    WorkflowReport,
)
from services.analytics import results
from services.analytics.event_body import EventBatchBody
from services.analytics.exports import FILE_SUFFIXES, MEDIA_TYPES
from services.analytics.ingest import Ingestor, NewRows
from services.analytics.metrics import AnalyticsMetrics
from services.analytics.query_params import (
    Filter,
    From,
    To,
    invalid,
    parse_moment,
    period,
    text_filter,
    time_window,
)
from services.analytics.refusals import RowKind, count_batch, refused_kinds, store_apart
from services.analytics.retention import roll_up, rollup_cutoff
from services.analytics.settings import AnalyticsSettings
from services.analytics.store import (
    AnalyticsStore,
    ExportFormat,
    ExportKind,
    TrendFilter,
)

logger = structlog.get_logger("pas.analytics.routes")

STATIC_DIR = Path(__file__).parent / "static"
_REFUSALS_NAMED = 3
"""Refused events named in a 422's detail and in the log (every one is in its errors)."""


class EventsController(Controller):
    tags = ("ingest",)

    @post(
        "/events",
        status_code=200,
        responses=problem_responses(400, 401, 413, 422),
        summary="Store a batch of usage events, workflow outcomes and quality scores (each "
        "stored once by key)",
        description="422: the store refused events for what they hold (a constraint, a value "
        "it cannot hold); each is named in `errors` (`field`: `usage[i]`, `runs[i]` or "
        "`scores[i]`, its place in the body), and every other event of the batch is stored.",
        dto=EventBatchBody,
        return_dto=None,
    )
    async def ingest(
        self, data: JSONBody[EventBatch], ingestor: NamedDependency[Ingestor]
    ) -> IngestResult:
        """Store the batch, each event once by its key.

        Events the store refuses for what they hold (``refusals.py``: a value it cannot hold,
        a constraint, what the wire types could not foresee) are not the whole batch's fault:
        the batch is taken apart, every other event is stored, and the answer is a 422 naming
        each refused event (its place in the body, its id, the store's error). The client so
        knows exactly which events were not stored; sending the whole batch again after
        mending them is harmless (what is stored is stored once). Any other failure (the store
        away, a bug) is a 500, and says nothing of what was stored: send the batch again."""
        new = NewRows()
        usage, runs, scores = data.usage, data.runs, data.scores
        refused = await store_apart(ingestor, usage, runs, source="http", new=new, scores=scores)
        result = count_batch(
            ingestor, refused, new, usage=len(usage), runs=len(runs), scores=len(scores)
        )
        if refused:
            raise store_refused(data, refused_kinds(refused, len(usage), len(runs)), result)
        return result


def store_refused(
    batch: EventBatch, refused: list[tuple[RowKind, int, Exception]], result: IngestResult
) -> ClientException:
    """The 422 of a batch whose ``refused`` events the store would not hold (the rest of it
    stored, as ``result`` counts): each is named in its errors, the first few in its detail
    too (what a client's exception shows) and in the log."""
    errors = [
        {
            "key": f"{kind}[{index}]",
            "message": f"{_event_name(batch, kind, index)} refused by the store: "
            f"{type(error).__name__}: {error}",
            "source": "body",
        }
        for kind, index, error in refused
    ]
    first = [f"{e['key']}: {e['message']}" for e in errors[:_REFUSALS_NAMED]]
    more = f"; and {len(errors) - len(first)} more (in errors)" if len(errors) > len(first) else ""
    detail = (
        f"the store refused {len(errors)} of the batch's events for what they hold, and stored "
        f"the other {result.received} ({result.stored} new, {result.duplicates} already held); "
        f"refused: {'; '.join(first)}{more}"
    )
    logger.warning(
        "POST /events: the store refused events; the rest stored",
        refused_count=len(errors),
        refused=first,
        taken=result.received,
        stored=result.stored,
        duplicates=result.duplicates,
    )
    return ClientException(status_code=422, detail=detail, extra=errors)


def _event_name(batch: EventBatch, kind: RowKind, index: int) -> str:
    """What names the event ``index`` of ``kind`` in ``batch``: its id."""
    if kind == "usage":
        return f"usage event {batch.usage[index].event_id!r}"
    if kind == "runs":
        return f"run {batch.runs[index].run_id!r}"
    score = batch.scores[index]
    return f"score {score.metric!r} of run {score.run_id!r}"


class AnalyticsController(Controller):
    path = "/analytics"
    tags = ("analytics",)

    @get(
        "/workflows",
        responses=problem_responses(400),
        summary="Per workflow: runs, success rate, p50/p95/p99 duration, LLM calls and cost",
    )
    async def workflows(
        self, store: NamedDependency[AnalyticsStore], start: From = None, to: To = None
    ) -> WorkflowReport:
        window = time_window(start, to)
        return WorkflowReport(period=period(window), workflows=await store.workflow_stats(window))

    @get(
        "/costs",
        responses=problem_responses(400),
        summary="Tokens and cost per model, workflow, provider, capability, service or desk",
    )
    async def costs(
        self,
        store: NamedDependency[AnalyticsStore],
        start: From = None,
        to: To = None,
        group_by: FromQuery[GroupBy] = "model",
    ) -> CostReport:
        window = time_window(start, to)
        groups = await store.costs(window, group_by)
        return CostReport(
            period=period(window),
            group_by=group_by,
            groups=groups,
            total=results.cost_total(groups),
        )

    @get(
        "/trends",
        responses=problem_responses(400),
        summary="One metric as a time series in 1m, 1h or 1d buckets",
    )
    async def trends(
        self,
        *,
        store: NamedDependency[AnalyticsStore],
        settings: NamedDependency[AnalyticsSettings],
        metric: FromQuery[TrendMetric],
        bucket: FromQuery[Bucket] = "1h",
        start: From = None,
        to: To = None,
        workflow_id: Filter = None,
        model: Filter = None,
        desk: Filter = None,
    ) -> Trend:
        window = time_window(start, to)
        points = results.bucket_count(window.start, window.end, bucket)
        if points > settings.max_trend_points:
            raise invalid(
                "bucket",
                f"{bucket} buckets from {window.start.isoformat()} to {window.end.isoformat()} "
                f"give {points} points; the limit is {settings.max_trend_points}: use a larger "
                "bucket or a shorter window",
            )
        where = TrendFilter(workflow_id=workflow_id, model=model, desk=desk)
        return Trend(
            metric=metric,
            bucket=bucket,
            period=period(window),
            points=await store.trend(metric, bucket, window, where),
        )

    @get(
        "/models",
        responses=problem_responses(400),
        summary="Per model: calls, error rate, latency percentiles, tokens/s, cost",
    )
    async def models(
        self, store: NamedDependency[AnalyticsStore], start: From = None, to: To = None
    ) -> ModelReport:
        window = time_window(start, to)
        return ModelReport(period=period(window), models=await store.model_stats(window))

    @get(
        "/scores",
        responses=problem_responses(400),
        summary="Answer quality per workflow version and model: count and mean of each measure",
    )
    async def scores(
        self,
        store: NamedDependency[AnalyticsStore],
        start: From = None,
        to: To = None,
        workflow_id: Annotated[str | None, text_filter("Only this workflow's scores")] = None,
    ) -> ScoreReport:
        window = time_window(start, to)
        lines = await store.score_stats(window, workflow_id)
        return ScoreReport(period=period(window), scores=lines)


_EXPORTED = {
    MEDIA_TYPES["csv"]: Schema(
        type=OpenAPIType.STRING, description="format=csv: a header, a row a line"
    ),
    MEDIA_TYPES["json"]: Schema(
        type=OpenAPIType.STRING, description="format=json: a JSON object a row, a line each"
    ),
    MEDIA_TYPES["parquet"]: Schema(
        type=OpenAPIType.STRING,
        format=OpenAPIFormat.BINARY,
        description="format=parquet: one Parquet file",
    ),
}
"""What an export's 200 is, by ``format``: each as the file it streams."""


class ReportsController(Controller):
    tags = ("reports",)

    @get(
        "/reports/export",
        operation_class=answered_also_as(_EXPORTED),
        responses={
            200: ResponseSpec(None, description="The rows, streamed (CSV, JSON lines or Parquet)"),
            **problem_responses(400),
        },
        summary="Stream stored rows as CSV, JSON lines or Parquet",
    )
    async def export(
        self,
        *,
        store: NamedDependency[AnalyticsStore],
        settings: NamedDependency[AnalyticsSettings],
        format: FromQuery[ExportFormat] = "csv",
        kind: FromQuery[ExportKind] = "usage",
        start: From = None,
        to: To = None,
    ) -> Stream:
        window = time_window(start, to)
        body = store.export(kind, format, window, settings.export_chunk_rows)
        name = (
            f"pas-{kind}-{window.start:%Y%m%dT%H%M%SZ}-{window.end:%Y%m%dT%H%M%SZ}"
            f".{FILE_SUFFIXES[format]}"
        )
        return Stream(
            body,
            media_type=MEDIA_TYPES[format],
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
            background=closes_when_sent(body),  # type: ignore[arg-type]
        )


class AdminController(Controller):
    tags = ("operations",)

    @post(
        "/admin/rollup",
        status_code=200,
        responses=problem_responses(400, 401),
        summary="Roll raw rows older than `before` (default: the retention age) up now",
    )
    async def rollup(
        self,
        store: NamedDependency[AnalyticsStore],
        metrics: NamedDependency[AnalyticsMetrics],
        settings: NamedDependency[AnalyticsSettings],
        before: Annotated[
            str | None,
            QueryParameter(
                max_length=64,
                description="Roll up rows older than this hour boundary (ISO 8601).",
            ),
        ] = None,
    ) -> RollupResult:
        now = datetime.now(UTC)
        if before is None:
            if settings.raw_retention_s == 0:
                raise invalid("before", "required while ANALYTICS_RAW_RETENTION_S is 0")
            cutoff = rollup_cutoff(now, settings.raw_retention_s)
        else:
            cutoff = parse_moment("before", before)
            if cutoff != cutoff.replace(minute=0, second=0, microsecond=0):
                raise invalid("before", "must be an hour boundary, such as 2025-01-01T10:00Z")
        return await roll_up(store, metrics, cutoff)


@functools.cache
def dashboard_page(refresh_s: float) -> bytes:
    """The page with its refresh interval filled in (read once per interval)."""
    html = (STATIC_DIR / "dashboard.html").read_text()
    return html.replace("{{REFRESH_S}}", f"{refresh_s:g}").encode()


class DashboardController(Controller):
    tags = ("dashboard",)
    include_in_schema = False

    @get("/dashboard", media_type="text/html", summary="The analytics dashboard")
    async def dashboard(self, settings: NamedDependency[AnalyticsSettings]) -> Response[Any]:
        return Response(
            dashboard_page(settings.dashboard_refresh_s),
            media_type="text/html; charset=utf-8",
            headers={"Cache-Control": "no-cache"},
        )
