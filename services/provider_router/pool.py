"""Every candidate the router knows, with its circuit, live stats and budget."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import msgspec

from services.provider_router.candidates import Candidate
from services.provider_router.circuit_breaker import CircuitBreaker, CircuitState
from services.provider_router.costs import CostLedger
from services.provider_router.live_stats import LiveStats
from services.provider_router.rate_limits import RateWindow


class CandidateState(msgspec.Struct, kw_only=True):
    """One row of ``GET /providers``."""

    id: str
    provider: str
    kind: str
    model: str
    endpoint: str
    agent_id: str | None
    capabilities: list[str]
    vision: bool
    """It takes images (requests holding images go only to such candidates)."""
    input_per_1k: float
    output_per_1k: float
    available: bool
    unavailable_reason: str | None
    circuit: CircuitState
    cooling_down_until: datetime | None
    probe_in_flight: bool
    """Half-open and its one probe request is under way."""
    consecutive_failures: int
    last_error: str | None
    latency_ms: float | None
    tokens_per_s: float | None
    in_flight: int
    served: int
    failed: int
    spent_today_usd: float
    daily_budget_usd: float | None
    rpm: int | None
    tpm: int | None
    requests_last_minute: int
    tokens_last_minute: int
    asked_to_wait_s: float | None
    """What is left of a pause the provider asked for (a 429's Retry-After)."""


class CandidatePool:
    def __init__(
        self,
        *,
        breaker_failures: int,
        breaker_cooldown_s: float,
        ewma_alpha: float,
        ledger: CostLedger,
    ) -> None:
        self._breaker_failures = breaker_failures
        self._breaker_cooldown_s = breaker_cooldown_s
        self._alpha = ewma_alpha
        self.ledger = ledger
        self._local: dict[str, Candidate] = {}
        self._remote: dict[str, Candidate] = {}
        # Circuits and stats outlive a candidate leaving and coming back (a restarted service).
        self.breakers: dict[str, CircuitBreaker] = {}
        self.stats: dict[str, LiveStats] = {}
        self.rates: dict[str, RateWindow] = {}

    def set_local(self, candidates: Iterable[Candidate]) -> None:
        self._local = {c.id: c for c in candidates}
        self._track(self._local.values())

    def set_remote(self, candidates: Iterable[Candidate]) -> None:
        self._remote = {c.id: c for c in candidates}
        self._track(self._remote.values())

    def remote_providers(self) -> set[str]:
        """The providers file's providers that have a model here."""
        return {candidate.provider for candidate in self._remote.values()}

    def _track(self, candidates: Iterable[Candidate]) -> None:
        for candidate in candidates:
            if candidate.id not in self.breakers:
                self.breakers[candidate.id] = CircuitBreaker(
                    failures_to_open=self._breaker_failures, cooldown_s=self._breaker_cooldown_s
                )
                self.stats[candidate.id] = LiveStats(self._alpha)
                self.rates[candidate.id] = RateWindow()
            # A reloaded providers file may change the limits; the minute's count stays.
            self.rates[candidate.id].rpm = candidate.rpm
            self.rates[candidate.id].tpm = candidate.tpm

    def all(self) -> list[Candidate]:
        return [*self._local.values(), *self._remote.values()]

    def offering(self, capability: str | None, model: str | None) -> list[Candidate]:
        """The candidates offering ``capability``, else (none asked) serving ``model``, by
        the model's name or the candidate's id: a capability given, the model is not asked."""
        if capability is not None:
            return [c for c in self.all() if capability in c.capabilities]
        return [c for c in self.all() if model is not None and model in (c.model, c.id)]

    def why_unusable(self, candidate: Candidate) -> str | None:
        """None when the candidate may be tried now (its circuit is asked separately)."""
        if candidate.unavailable:
            return candidate.unavailable
        held_back = self.why_held_back(candidate)
        if held_back is not None:
            return held_back
        breaker = self.breakers[candidate.id]
        state = breaker.state
        if state == "open":
            return f"circuit open after: {breaker.last_error}"
        if state == "half_open" and breaker.probing:
            return f"circuit half-open, its probe under way, after: {breaker.last_error}"
        return None

    def why_held_back(self, candidate: Candidate) -> str | None:
        """Why no more requests should go to the candidate now, by what traffic uses up: its
        provider's daily budget, its pace (``rpm``, ``tpm``, a pause it asked for); or None.
        Asked again before a retry, since other calls may have used them up meanwhile."""
        if candidate.daily_budget_usd is not None:
            spent = self.ledger.spent_today(candidate.provider)
            if spent >= candidate.daily_budget_usd:
                return f"daily budget spent ({spent:.4f} of {candidate.daily_budget_usd} USD)"
        return self.rates[candidate.id].why_not()

    def snapshot(self) -> list[CandidateState]:
        rows = []
        now = datetime.now(UTC)
        for candidate in sorted(self.all(), key=lambda c: c.id):
            breaker = self.breakers[candidate.id]
            stats = self.stats[candidate.id]
            reason = self.why_unusable(candidate)
            to_half_open = breaker.seconds_to_half_open
            rate = self.rates[candidate.id]
            requests, tokens = rate.counts()
            paused = rate.paused_for()
            rows.append(
                CandidateState(
                    id=candidate.id,
                    provider=candidate.provider,
                    kind=candidate.kind,
                    model=candidate.model,
                    endpoint=candidate.endpoint,
                    agent_id=candidate.agent_id,
                    capabilities=sorted(candidate.capabilities),
                    vision=candidate.vision,
                    input_per_1k=candidate.input_per_1k,
                    output_per_1k=candidate.output_per_1k,
                    available=reason is None,
                    unavailable_reason=reason,
                    circuit=breaker.state,
                    cooling_down_until=None
                    if to_half_open is None
                    else now + timedelta(seconds=to_half_open),
                    probe_in_flight=breaker.probing,
                    consecutive_failures=breaker.consecutive_failures,
                    last_error=breaker.last_error,
                    latency_ms=round(stats.latency_ms, 2) if stats.latency_ms else None,
                    tokens_per_s=round(stats.tokens_per_s, 1) if stats.tokens_per_s else None,
                    in_flight=stats.in_flight,
                    served=stats.served,
                    failed=stats.failed,
                    spent_today_usd=round(self.ledger.spent_today(candidate.provider), 6),
                    daily_budget_usd=candidate.daily_budget_usd,
                    rpm=candidate.rpm,
                    tpm=candidate.tpm,
                    requests_last_minute=requests,
                    tokens_last_minute=tokens,
                    asked_to_wait_s=None if paused is None else round(paused, 1),
                )
            )
        return rows
