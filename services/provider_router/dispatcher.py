"""Choose candidates for a request and call them in order until one answers.

Each candidate gets ``1 + retries`` attempts (exponential backoff with jitter) for failures that
may pass (timeouts, 5xx, 429); a refused connection, or a candidate refusing the router itself
(401, 403, 404, a redirect: its entry's fault), moves on at once. A circuit breaker per
candidate stops traffic to one that keeps failing until a probe succeeds; every call holds an
admission from it, settled however the call ends (see ``circuit_breaker.py``).

The module passes 400 lines because a call is one sequence over the pool's state for its
candidate: planned, admitted, attempted (plain or streamed), then booked (live stats, pace,
spend, metrics, the usage event, the decision's log line) however it ends; the parts that
stand alone are apart (``stream_relay.py``, ``upstreams.py``, ``strategies.py``).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncGenerator
from typing import Any, Literal

import msgspec
import structlog

from libs.common.errors import PASError
from libs.common.genai_tracing import (
    CHAT,
    EMBEDDINGS,
    ModelCallSpan,
    current_call,
    genai_span,
    record_cancelled,
    record_error,
    record_usage,
    start_genai_span,
)
from libs.common.kafka.usage_publisher import UsagePublisher
from libs.common.retries import retried
from libs.common.schemas.llm import Usage
from libs.common.schemas.usage import UsageStatus, new_usage_event
from services.provider_router.candidates import Candidate
from services.provider_router.circuit_breaker import Admission
from services.provider_router.desk_keys import KeyGate
from services.provider_router.metrics import RouterMetrics
from services.provider_router.pool import CandidatePool
from services.provider_router.store_rows import UsageRecord
from services.provider_router.strategies import Strategy, rank
from services.provider_router.stream_relay import RelayedStream
from services.provider_router.upstream_errors import (
    UpstreamFailed,
    UpstreamMisconfigured,
    UpstreamRefused,
)
from services.provider_router.upstreams import Upstreams, usage_in

logger = structlog.get_logger("pas.router")


class NoCandidate(PASError):
    status_code = 404


class AllCandidatesFailed(PASError):
    status_code = 503


class AllCandidatesMisconfigured(AllCandidatesFailed):
    """Every candidate refused the router itself (a key, a model or an address of its entry):
    a bad gateway, not the caller's fault, nor one that passes by waiting."""

    status_code = 502


def _none_answered(failures: list[str], misconfigured: int) -> AllCandidatesFailed:
    """The error for a call no candidate answered; ``misconfigured``: how many of the
    ``failures`` were a candidate refusing the router (:class:`UpstreamMisconfigured`)."""
    reasons = "; ".join(failures)
    if failures and misconfigured == len(failures):
        return AllCandidatesMisconfigured(
            "every candidate refused the router's call (its key, model or address in the "
            f"candidate's entry; the request was not refused): {reasons}"
        )
    return AllCandidatesFailed(f"all candidates failed: {reasons}")


class Considered(msgspec.Struct, kw_only=True):
    id: str
    usable: bool
    reason: str | None = None


class RoutePlan(msgspec.Struct, kw_only=True):
    ordered: list[Candidate]
    considered: list[Considered]
    reason: str


Operation = Literal["chat", "embeddings"]
"""What a routed call asks of its candidate."""


class RouteAsk(msgspec.Struct, kw_only=True):
    """What a request asks of the router."""

    capability: str | None
    model: str | None
    strategy: Strategy
    prefer_local: bool
    images: bool = False
    """The request holds images: only candidates that take them (``vision``) serve it."""
    request_id: str | None = None
    workflow_id: str | None = None
    run_id: str | None = None
    key: str | None = None
    """The desk key that sent it (``desk_keys.py``), whose spend and pace it counts to."""
    providers: frozenset[str] | None = None
    """The providers its desk key may be routed to; None: any."""
    offering: list[Candidate] | None = None
    """The pool's candidates offering what it asks, when looked up already (a keyed
    request's, its key asked about them first); None: the plan looks them up."""


class Served(msgspec.Struct, kw_only=True):
    candidate: Candidate
    fallbacks: list[str]
    plan: RoutePlan


class Dispatcher:
    def __init__(
        self,
        pool: CandidatePool,
        upstreams: Upstreams,
        metrics: RouterMetrics,
        *,
        retries: int,
        retry_backoff_s: float,
        usage: UsagePublisher | None = None,
        keys: KeyGate | None = None,
    ) -> None:
        self._pool = pool
        self._keys = keys
        self._upstreams = upstreams
        self._metrics = metrics
        self._usage = usage
        self._retries = retries
        self._backoff_s = retry_backoff_s
        self._turns = itertools.count()

    def plan(self, ask: RouteAsk) -> RoutePlan:
        if ask.capability is None and ask.model is None:
            raise NoCandidate("say what is needed: a capability, or a model a candidate serves")
        matching = (
            self._pool.offering(ask.capability, ask.model) if ask.offering is None else ask.offering
        )
        wanted = f"capability {ask.capability!r}" if ask.capability else f"model {ask.model!r}"
        if not matching:
            raise NoCandidate(f"no candidate offers {wanted}")
        if ask.images and not any(c.vision for c in matching):
            raise NoCandidate(
                f"no candidate for {wanted} takes images: {', '.join(c.id for c in matching)} "
                "read text only (one that takes them says vision = true in the providers file or "
                "in its agent's metadata)"
            )
        considered, usable = [], []
        for candidate in matching:
            why_not = (
                f"not among the providers key {ask.key!r} may be routed to"
                if ask.providers is not None and candidate.provider not in ask.providers
                else "reads text only; the request holds images"
                if ask.images and not candidate.vision
                else self._pool.why_unusable(candidate)
            )
            considered.append(Considered(id=candidate.id, usable=why_not is None, reason=why_not))
            if why_not is None:
                usable.append(candidate)
        ordered = rank(
            usable,
            self._pool.stats,
            ask.strategy,
            prefer_local=ask.prefer_local,
            turn=next(self._turns),
        )
        if not ordered:
            reasons = "; ".join(f"{c.id}: {c.reason}" for c in considered)
            raise AllCandidatesFailed(f"every candidate for {wanted} is unusable now: {reasons}")
        first = ordered[0]
        stats = self._pool.stats[first.id]
        reason = (
            f"{ask.strategy}{' with prefer_local' if ask.prefer_local else ''}: {first.id} "
            f"(price {first.blended_price:g}/1k, latency "
            f"{f'{stats.latency_ms:.0f} ms' if stats.latency_ms else 'not measured yet'}, "
            f"{stats.in_flight} in flight) of {len(ordered)} usable"
        )
        return RoutePlan(ordered=ordered, considered=considered, reason=reason)

    async def complete(
        self, ask: RouteAsk, body: dict[str, Any], operation: Operation = "chat"
    ) -> tuple[bytes, Served]:
        """The first answer a candidate gives, in plan order: a chat completion, or the
        ``embeddings`` of ``body``'s input."""
        plan = self.plan(ask)
        failures: list[str] = []
        misconfigured = 0
        for position, candidate in enumerate(plan.ordered):
            # Asked of no candidate that cannot do it: no call, no verdict on its health.
            cannot = self._upstreams.why_cannot_serve(candidate, body, operation) or (
                self._unusable_since_planned(candidate, position)
            )
            if cannot is not None:
                failures.append(f"{candidate.id}: {cannot}")
                continue
            admission = self._pool.breakers[candidate.id].admit()
            if admission is None:
                failures.append(f"{candidate.id}: circuit open")
                continue
            # Leaving this block any way but a verdict (cancelled, a bug) frees a probe's slot.
            # One GenAI span per candidate tried: a fallback shows as a failed sibling.
            arguments = _span_arguments(ask, candidate, failures, operation)
            with admission, genai_span(**arguments) as span:
                started = time.perf_counter()
                try:
                    payload = await self._attempt(candidate, body, ask, admission, operation)
                except UpstreamFailed as exc:
                    record_error(span, exc)
                    failures.append(f"{candidate.id}: {exc}")
                    misconfigured += isinstance(exc, UpstreamMisconfigured)
                    self._metrics.fallbacks.labels(candidate.provider, candidate.model).inc()
                    continue
                served = Served(candidate=candidate, fallbacks=failures, plan=plan)
                usage = usage_in(payload)
                cost = self._settle(ask, served, usage, time.perf_counter() - started)
                _record(span, usage, cost)
                admission.succeeded()
                return payload, served
        raise _none_answered(failures, misconfigured)

    def _unusable_since_planned(self, candidate: Candidate, position: int) -> str | None:
        """Why the plan's candidate at ``position`` may no longer be tried, or None. A
        fallback is asked again: while the candidates before it were tried, other calls may
        have used up its pace or its budget, or a 429 paused it. (The first is asked nothing
        new: no other call ran since the plan.)"""
        return None if position == 0 else self._pool.why_unusable(candidate)

    async def _attempt(
        self,
        candidate: Candidate,
        body: dict[str, Any],
        ask: RouteAsk,
        admission: Admission,
        operation: Operation,
    ) -> bytes:
        stats = self._pool.stats[candidate.id]
        pace = self._pool.rates[candidate.id]
        forwarded = {**body, "model": candidate.model}
        call = self._upstreams.embed if operation == "embeddings" else self._upstreams.complete

        failed: list[UpstreamFailed] = []

        async def once() -> bytes:
            held_back = self._pool.why_held_back(candidate) if failed else None
            if held_back is not None:
                # Not the candidate's failure: its circuit is not told; the next one is asked.
                reason = f"{failed[-1]}; not asked again: {held_back}"
                raise UpstreamFailed(reason, retryable=False)
            stats.in_flight += 1
            started = time.perf_counter()
            pace.started()
            try:
                return await call(candidate, forwarded, ask.request_id)
            except UpstreamRefused:
                admission.succeeded()  # the caller's problem: the candidate is alive
                raise
            except UpstreamFailed as exc:
                self._failed(ask, candidate, admission, exc, started)
                failed.append(exc)
                raise
            finally:
                stats.in_flight -= 1

        # stamina's retries, its setup left out of a call answered at once (retries.py).
        return await retried(
            once,
            on=_retryable,
            attempts=1 + self._retries,
            give_up_after_s=None,
            wait_initial=self._backoff_s,
            wait_jitter=self._backoff_s,
            wait_max=self._backoff_s * 8,
        )

    def _failed(
        self,
        ask: RouteAsk,
        candidate: Candidate,
        admission: Admission,
        exc: UpstreamFailed,
        started: float,
    ) -> None:
        """A failed attempt at ``candidate``, counted: its circuit, a pause it asked for (a
        429's ``Retry-After``), the failure reported."""
        self._pool.stats[candidate.id].failed += 1
        admission.failed(str(exc))
        if exc.retry_after_s is not None:
            self._pool.rates[candidate.id].pause(exc.retry_after_s, _cut(str(exc)))
        self._report(ask, candidate, "error", time.perf_counter() - started, str(exc))

    async def stream(self, ask: RouteAsk, body: dict[str, Any]) -> tuple[RelayedStream, Served]:
        """Fail over until one candidate sends its first bytes; after that, pass them through."""
        plan = self.plan(ask)
        failures: list[str] = []
        misconfigured = 0
        # The router needs the usage to count the call, whether or not the caller asked for it.
        asked_options = body.get("stream_options") or {}
        forwarded_base = {
            **body,
            "stream": True,
            "stream_options": {**asked_options, "include_usage": True},
        }
        for position, candidate in enumerate(plan.ordered):
            cannot = self._upstreams.why_cannot_serve(candidate, forwarded_base, "chat") or (
                self._unusable_since_planned(candidate, position)
            )
            if cannot is not None:
                failures.append(f"{candidate.id}: {cannot}")
                continue
            admission = self._pool.breakers[candidate.id].admit()
            if admission is None:
                failures.append(f"{candidate.id}: circuit open")
                continue
            stats = self._pool.stats[candidate.id]
            pace = self._pool.rates[candidate.id]
            started = time.perf_counter()
            stats.in_flight += 1
            relayed: RelayedStream | None = None
            # Ended by the relay when the stream ends or breaks (it outlives this handler).
            span = start_genai_span(**_span_arguments(ask, candidate, failures))
            try:
                pace.started()
                with current_call(span):
                    chunks = await self._upstreams.open_stream(
                        candidate, {**forwarded_base, "model": candidate.model}, ask.request_id
                    )
                served = Served(candidate=candidate, fallbacks=failures, plan=plan)
                # From here the relay owns the admission and the in-flight count.
                relayed = self._relay(
                    ask,
                    served,
                    chunks,
                    started,
                    admission,
                    span=span,
                    usage_asked=bool(asked_options.get("include_usage")),
                )
            except UpstreamRefused as exc:
                admission.succeeded()  # the caller's problem: the candidate is alive
                record_error(span, exc)
                raise
            except UpstreamFailed as exc:
                record_error(span, exc)
                self._failed(ask, candidate, admission, exc, started)
                failures.append(f"{candidate.id}: {exc}")
                misconfigured += isinstance(exc, UpstreamMisconfigured)
                self._metrics.fallbacks.labels(candidate.provider, candidate.model).inc()
            else:
                return relayed, served
            finally:
                if relayed is None:
                    span.end()
                    stats.in_flight -= 1
                    admission.release()
        raise _none_answered(failures, misconfigured)

    def _relay(
        self,
        ask: RouteAsk,
        served: Served,
        chunks: AsyncGenerator[bytes, None],
        started: float,
        admission: Admission,
        *,
        span: ModelCallSpan,
        usage_asked: bool,
    ) -> RelayedStream:
        candidate = served.candidate

        def ended(usage: Usage | None) -> None:
            cost = self._settle(ask, served, usage, time.perf_counter() - started)
            _record(span, usage, cost)
            span.end()

        def broke(reason: str) -> None:
            self._report(ask, candidate, "error", time.perf_counter() - started, reason)
            record_error(span, UpstreamFailed(reason, retryable=False))
            span.end()

        def abandoned() -> None:
            # The client left (or the response never started): the span still ends, marked.
            record_cancelled(span, "the stream was closed before its end")
            span.end()

        return RelayedStream(
            chunks,
            candidate_id=candidate.id,
            admission=admission,
            stats=self._pool.stats[candidate.id],
            usage_asked=usage_asked,
            on_end=ended,
            on_break=broke,
            on_abandon=abandoned,
        )

    def _settle(
        self, ask: RouteAsk, served: Served, usage: Usage | None, elapsed_s: float
    ) -> float:
        """Book a success: live stats, spend, metrics and the decision log line (the caller
        tells the circuit); returns what the call cost."""
        candidate = served.candidate
        prompt = usage.prompt_tokens if usage else 0
        completion = usage.completion_tokens if usage else 0
        self._pool.stats[candidate.id].record(elapsed_s, completion)
        self._pool.rates[candidate.id].used(prompt + completion)
        if ask.key is not None and self._keys is not None:
            self._keys.used(ask.key, prompt + completion)
        cost = (
            candidate.cost(
                prompt,
                completion,
                usage.cached_tokens or 0,
                usage.cache_creation_input_tokens or 0,
            )
            if usage
            else 0.0
        )
        self._pool.ledger.record(
            UsageRecord(
                at=time.time(),
                provider=candidate.provider,
                model=candidate.model,
                capability=ask.capability or "",
                prompt_tokens=prompt,
                completion_tokens=completion,
                cost_usd=cost,
                key=ask.key or "",
            )
        )
        m = self._metrics
        m.decisions.labels(candidate.provider, candidate.model, ask.strategy).inc()
        m.latency.labels(candidate.provider, candidate.model).observe(elapsed_s)
        m.tokens.labels(candidate.provider, candidate.model, "prompt").inc(prompt)
        m.tokens.labels(candidate.provider, candidate.model, "completion").inc(completion)
        # Of the prompt's tokens (counted there too), those a provider's prompt cache gave and
        # took: how well a cache pays is read off these.
        if usage and usage.cached_tokens:
            m.tokens.labels(candidate.provider, candidate.model, "cache_read").inc(
                usage.cached_tokens
            )
        if usage and usage.cache_creation_input_tokens:
            m.tokens.labels(candidate.provider, candidate.model, "cache_write").inc(
                usage.cache_creation_input_tokens
            )
        m.cost.labels(candidate.provider, candidate.model).inc(cost)
        self._report(ask, candidate, "ok", elapsed_s, usage=usage, cost=cost)
        logger.info(
            "route decision",
            capability=ask.capability,
            model_asked=ask.model,
            strategy=ask.strategy,
            prefer_local=ask.prefer_local,
            considered=[msgspec.structs.asdict(c) for c in served.plan.considered],
            reason=served.plan.reason,
            served_by=candidate.id,
            fallbacks=served.fallbacks,
            latency_ms=round(elapsed_s * 1000, 2),
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost_usd=cost,
        )
        return cost

    def _report(
        self,
        ask: RouteAsk,
        candidate: Candidate,
        status: UsageStatus,
        elapsed_s: float,
        error: str | None = None,
        *,
        usage: Usage | None = None,
        cost: float = 0.0,
    ) -> None:
        """One usage event per call to a candidate, when publishing is on (never blocks)."""
        if self._usage is None:
            return
        self._usage.publish(
            new_usage_event(
                service="provider_router",
                provider=candidate.provider,
                model=candidate.model,
                status=status,
                prompt_tokens=usage.prompt_tokens if usage else 0,
                completion_tokens=usage.completion_tokens if usage else 0,
                latency_ms=elapsed_s * 1000,
                cost_usd=cost,
                request_id=ask.request_id,
                capability=ask.capability,
                workflow_id=ask.workflow_id,
                run_id=ask.run_id,
                error=error,
                desk=ask.key,
                cached_tokens=(usage.cached_tokens or 0) if usage else 0,
                cache_write_tokens=(usage.cache_creation_input_tokens or 0) if usage else 0,
            )
        )


def _span_arguments(
    ask: RouteAsk, candidate: Candidate, failures: list[str], operation: Operation = "chat"
) -> dict[str, Any]:
    return {
        "operation": EMBEDDINGS if operation == "embeddings" else CHAT,
        "model": candidate.model,
        "provider": candidate.provider,
        "attributes": {
            "pas.candidate": candidate.id,
            "pas.strategy": ask.strategy,
            "pas.fallback_index": len(failures),
        },
    }


def _record(span: ModelCallSpan, usage: Usage | None, cost: float) -> None:
    record_usage(
        span,
        input_tokens=usage.prompt_tokens if usage else None,
        output_tokens=usage.completion_tokens if usage else None,
        cached_input_tokens=usage.cached_tokens if usage else None,
        cache_written_input_tokens=usage.cache_creation_input_tokens if usage else None,
        cost_usd=cost,
    )


def _retryable(exc: Exception) -> bool:
    """Worth another attempt at the same candidate: not when it asked for a pause (the next
    candidate is asked instead)."""
    return isinstance(exc, UpstreamFailed) and exc.retryable and exc.retry_after_s is None


def _cut(reason: str) -> str:
    return reason if len(reason) <= 120 else reason[:117] + "..."
