"""A/B experiments: sticky assignment, outcomes, results, a fixed-horizon decision and
auto-promotion of the winner to ``champion``.

Assignment is stateless (a hash of the experiment's salt and the unit), so nothing is stored
per unit and every replica agrees. Outcomes are stored in SQLite. Results are computed from all
outcomes on demand; the *decision* is made once, on the first ``min_samples`` outcomes of each
variant, as soon as every variant has them. Testing again after every new outcome and promoting
on the first p < alpha ("peeking") would promote a variant that is no better far more often
than ``alpha``; one planned look keeps the false-positive rate at ``alpha``.

The module passes 400 lines because an experiment's life is one sequence under one lock:
creation, outcomes (REST and Kafka), the decision and the promotion each change the same
records. The tests themselves are ``statistics.py``, the outcomes' storage
``experiment_store.py`` and the reading of result events ``outcome_consumer.py``.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec
import structlog

from libs.common.schemas.versioning import (
    CHAMPION,
    Assignment,
    Decision,
    Experiment,
    ExperimentDetail,
    ExperimentRequest,
    ExperimentStatus,
    OutcomeReceipt,
    OutcomeRequest,
    Promotion,
)
from services.versioning.catalog import VersionCatalog
from services.versioning.errors import Conflict, ExperimentNotFound, InvalidInput
from services.versioning.experiment_store import ExperimentStore, OutcomeRow
from services.versioning.metrics import VersioningMetrics
from services.versioning.statistics import (
    VariantSamples,
    analyse,
    compare_to_control,
    is_ready,
    pick_winner,
)

logger = structlog.get_logger("pas.versioning.experiments")

TRAILER_EXPERIMENT = "PAS-Experiment"
_SPLIT_TOLERANCE = 1e-6

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """An outcome read from a ``workflow-results`` event, before it is checked."""

    experiment_id: str
    workflow_id: str
    unit: str
    variant: str | None
    workflow_version: int | None
    success: bool
    latency_ms: float
    cost: float
    score: float | None
    key: str | None


class ExperimentBook:
    def __init__(
        self,
        store: ExperimentStore,
        catalog: VersionCatalog,
        metrics: VersioningMetrics,
        *,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._catalog = catalog
        self._metrics = metrics
        self._clock = clock
        self._experiments: dict[str, Experiment] = {}
        self._counts: dict[str, dict[str, int]] = {}
        # Serialises changes to experiment records, so that a decision is made once.
        self._lock = asyncio.Lock()

    async def load(self) -> None:
        self._lock = asyncio.Lock()
        self._experiments = {e.id: e for e in await self._store.experiments()}
        self._counts = await self._store.counts()
        logger.info(
            "experiments loaded",
            experiments=len(self._experiments),
            running=self.running_count(),
        )
        # A decision or promotion a stop interrupted is finished now.
        for experiment in list(self._experiments.values()):
            if experiment.status == "running":
                await self._conclude_if_due(experiment.id)

    # -- reads --------------------------------------------------------------------------------

    def running_count(self) -> int:
        return sum(1 for e in self._experiments.values() if e.status == "running")

    def find(
        self, *, workflow_id: str | None = None, status: ExperimentStatus | None = None
    ) -> list[Experiment]:
        return [
            e
            for e in self._experiments.values()
            if (workflow_id is None or e.workflow_id == workflow_id)
            and (status is None or e.status == status)
        ]

    def get(self, experiment_id: str) -> Experiment:
        try:
            return self._experiments[experiment_id]
        except KeyError:
            raise ExperimentNotFound(experiment_id) from None

    async def detail(self, experiment_id: str) -> ExperimentDetail:
        experiment = self.get(experiment_id)
        samples = await self._store.samples(experiment_id)
        results = await asyncio.to_thread(analyse, experiment, samples)
        return ExperimentDetail(**msgspec.structs.asdict(experiment), results=results)

    def assign(self, experiment_id: str, unit: str) -> Assignment:
        experiment = self._running(experiment_id)
        variant = experiment.variant_for(unit)
        self._metrics.assignments.labels(experiment_id, variant).inc()
        return Assignment(
            experiment_id=experiment_id,
            workflow_id=experiment.workflow_id,
            unit=unit,
            variant=variant,
            version=experiment.variants[variant],
        )

    def _running(self, experiment_id: str) -> Experiment:
        experiment = self.get(experiment_id)
        if experiment.status != "running":
            raise Conflict(
                f"experiment {experiment_id!r} is stopped ({experiment.stop_reason}); run the "
                f"workflow's champion instead"
            )
        return experiment

    # -- writes -------------------------------------------------------------------------------

    async def create(self, request: ExperimentRequest) -> Experiment:
        split = self._checked_split(request)
        control = request.control or sorted(request.variants)[0]
        if control not in request.variants:
            raise InvalidInput(
                f"control: {control!r} is not one of the variants ({', '.join(request.variants)})"
            )
        for name, version in request.variants.items():
            if not self._catalog.has_version(request.workflow_id, version):
                raise InvalidInput(
                    f"variants.{name}: workflow {request.workflow_id!r} has no version {version}"
                )
        async with self._lock:
            running = self.find(workflow_id=request.workflow_id, status="running")
            if running:
                raise Conflict(
                    f"experiment {running[0].id!r} is already running on workflow "
                    f"{request.workflow_id!r}; stop it first (a run must know which one it is in)"
                )
            experiment = Experiment(
                id=f"exp_{uuid.uuid4().hex[:12]}",
                workflow_id=request.workflow_id,
                variants=dict(sorted(request.variants.items())),
                split=split,
                metric=request.metric,
                min_samples=request.min_samples,
                alpha=request.alpha,
                auto_promote=request.auto_promote,
                control=control,
                salt=request.salt or secrets.token_hex(8),
                description=request.description,
                created_at=self._clock(),
            )
            await self._store.save(experiment)
            self._experiments[experiment.id] = experiment
        logger.info(
            "experiment started",
            experiment_id=experiment.id,
            workflow_id=experiment.workflow_id,
            variants=experiment.variants,
            split=experiment.split,
            metric=experiment.metric,
            auto_promote=experiment.auto_promote,
        )
        return experiment

    @staticmethod
    def _checked_split(request: ExperimentRequest) -> dict[str, float]:
        names = sorted(request.variants)
        if request.split is None:
            return dict.fromkeys(names, 1 / len(names))
        missing = sorted(set(names) - set(request.split))
        extra = sorted(set(request.split) - set(names))
        if missing or extra:
            problems = []
            if missing:
                problems.append(f"no share for {', '.join(missing)}")
            if extra:
                problems.append(f"{', '.join(extra)} not among the variants")
            raise InvalidInput(f"split: {'; '.join(problems)}")
        total = math.fsum(request.split.values())
        if abs(total - 1.0) > _SPLIT_TOLERANCE:
            raise InvalidInput(f"split: the shares sum to {total:g}; they must sum to 1")
        return {name: request.split[name] for name in names}

    async def stop(self, experiment_id: str, reason: str | None) -> Experiment:
        async with self._lock:
            experiment = self.get(experiment_id)
            if experiment.status == "stopped":
                return experiment
            experiment = await self._update(
                experiment,
                status="stopped",
                stopped_at=self._clock(),
                stop_reason=reason or "stopped by request",
            )
        logger.info("experiment stopped", experiment_id=experiment_id, reason=reason)
        return experiment

    async def record(
        self, experiment_id: str, outcomes: list[OutcomeRequest], *, source: str = "rest"
    ) -> OutcomeReceipt:
        experiment = self._running(experiment_id)
        now = self._clock()
        rows = []
        for index, outcome in enumerate(outcomes):
            assigned = experiment.variant_for(outcome.unit)
            if outcome.variant is not None and outcome.variant != assigned:
                where = f"outcomes[{index}]" if len(outcomes) > 1 else "variant"
                raise InvalidInput(
                    f"{where}: unit {outcome.unit!r} is assigned to variant {assigned!r}, "
                    f"not {outcome.variant!r}"
                )
            rows.append(
                OutcomeRow(
                    experiment_id=experiment_id,
                    variant=assigned,
                    unit=outcome.unit,
                    success=outcome.success,
                    latency_ms=outcome.latency_ms,
                    cost=outcome.cost,
                    score=outcome.score,
                    source=source,
                    key=outcome.outcome_id,
                    recorded_at=now,
                )
            )
        recorded = await self._store_rows(rows, source)
        await self._conclude_if_due(experiment_id)
        return OutcomeReceipt(
            experiment_id=experiment_id,
            recorded=recorded,
            duplicates=len(rows) - recorded,
            samples=dict(self._counts.get(experiment_id, {})),
        )

    async def record_runs(self, runs: list[RunOutcome]) -> list[str | None]:
        """Store the runs that are valid outcomes; for each run, ``None`` or why it is not."""
        now = self._clock()
        rows: list[OutcomeRow] = []
        verdicts: list[str | None] = []
        for run in runs:
            verdict, row = self._check_run(run, now)
            verdicts.append(verdict)
            if row is not None:
                rows.append(row)
        if rows:
            await self._store_rows(rows, "kafka")
            for experiment_id in {row.experiment_id for row in rows}:
                await self._conclude_if_due(experiment_id)
        return verdicts

    def _check_run(self, run: RunOutcome, now: datetime) -> tuple[str | None, OutcomeRow | None]:
        experiment = self._experiments.get(run.experiment_id)
        if experiment is None:
            return "unknown_experiment", None
        if experiment.status != "running":
            return "experiment_stopped", None
        if run.workflow_id != experiment.workflow_id:
            return "workflow_mismatch", None
        assigned = experiment.variant_for(run.unit)
        if run.variant is not None and run.variant != assigned:
            return "variant_mismatch", None
        if (
            run.workflow_version is not None
            and run.workflow_version != experiment.variants[assigned]
        ):
            return "version_mismatch", None
        return None, OutcomeRow(
            experiment_id=run.experiment_id,
            variant=assigned,
            unit=run.unit,
            success=run.success,
            latency_ms=run.latency_ms,
            cost=run.cost,
            score=run.score,
            source="kafka",
            key=run.key,
            recorded_at=now,
        )

    async def _store_rows(self, rows: list[OutcomeRow], source: str) -> int:
        recorded = await self._store.add_outcomes(rows)
        self._metrics.outcomes.labels(source, "recorded").inc(recorded)
        if len(rows) > recorded:
            self._metrics.outcomes.labels(source, "replaced").inc(len(rows) - recorded)
        touched = {row.experiment_id for row in rows}
        for experiment_id in touched:
            self._counts[experiment_id] = (await self._store.counts(experiment_id)).get(
                experiment_id, {}
            )
        return recorded

    # -- the decision -------------------------------------------------------------------------

    async def _conclude_if_due(self, experiment_id: str) -> None:
        async with self._lock:
            experiment = self._experiments[experiment_id]
            if experiment.status != "running":
                return
            if experiment.decision is None:
                experiment = await self._decide_if_due(experiment)
            if (
                experiment.decision is not None
                and experiment.decision.winner is not None
                and experiment.auto_promote
                and experiment.promotion is None
            ):
                await self._promote(experiment, experiment.decision)

    async def _decide_if_due(self, experiment: Experiment) -> Experiment:
        counts = self._counts.get(experiment.id, {})
        if any(counts.get(name, 0) < experiment.min_samples for name in experiment.split):
            return experiment
        first = await self._store.samples(
            experiment.id, first=experiment.min_samples, scored_only=experiment.metric == "score"
        )
        samples = {name: first.get(name) or VariantSamples.empty() for name in experiment.split}
        if not is_ready(experiment, samples, experiment.metric):
            return experiment
        comparisons = await asyncio.to_thread(
            compare_to_control, experiment, samples, experiment.metric
        )
        decision = Decision(
            decided_at=self._clock(),
            samples_per_variant=experiment.min_samples,
            metric=experiment.metric,
            winner=pick_winner(experiment.control, comparisons),
            comparisons=comparisons,
        )
        logger.info(
            "experiment decided",
            experiment_id=experiment.id,
            winner=decision.winner,
            p_values={c.variant: c.p_value for c in comparisons},
        )
        return await self._update(experiment, decision=decision)

    async def _promote(self, experiment: Experiment, decision: Decision) -> None:
        winner = decision.winner
        assert winner is not None
        version = experiment.variants[winner]
        lines = [
            f"{c.variant} vs {c.control}: {c.metric} {c.difference:+.6g}, "
            f"p={c.p_value:.3g} ({c.test}, alpha {c.alpha:g})"
            for c in decision.comparisons
            if c.difference is not None and c.p_value is not None
        ]
        message = (
            f"Experiment {experiment.id}: variant {winner} (version {version}) won on "
            f"{decision.metric} after {decision.samples_per_variant} outcomes per variant\n\n"
            + "\n".join(lines)
        )
        trailers = {TRAILER_EXPERIMENT: experiment.id}
        try:
            move = await self._catalog.move_alias(
                experiment.workflow_id, CHAMPION, version, message=message, trailers=trailers
            )
            if not move.changed:
                # Moved already: by this promotion, if a stop came before it was recorded
                # here; that commit says what the champion was before.
                move = (
                    await self._catalog.recorded_move(
                        experiment.workflow_id, CHAMPION, version, trailers
                    )
                    or move
                )
        except Exception:
            # The decision stays; the promotion is tried again on the next outcome or start.
            logger.exception("auto-promotion failed", experiment_id=experiment.id)
            return
        promotion = Promotion(
            variant=winner,
            version=version,
            alias=CHAMPION,
            previous_version=move.previous,
            commit=move.commit,
            promoted_at=move.moved_at,
        )
        await self._update(
            experiment,
            promotion=promotion,
            status="stopped",
            stopped_at=self._clock(),
            stop_reason=f"auto-promoted variant {winner} (version {version}) to {CHAMPION}",
        )
        self._metrics.promotions.inc()
        logger.info(
            "experiment winner promoted",
            experiment_id=experiment.id,
            variant=winner,
            version=version,
            previous=move.previous,
            commit=move.commit,
        )

    async def _update(self, experiment: Experiment, **changes: object) -> Experiment:
        updated = msgspec.structs.replace(experiment, **changes)
        await self._store.save(updated)
        self._experiments[updated.id] = updated
        return updated
