"""Prometheus metrics of the runner."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.registry import Collector


class RunnerMetrics:
    def __init__(self) -> None:
        self.runs_started = Counter(
            "pas_runner_runs_started",
            "Runs started or resumed",
            ["workflow", "source"],
            registry=None,
        )
        self.runs_finished = Counter(
            "pas_runner_runs_finished",
            "Runs that stopped, by the status they stopped in",
            ["workflow", "status"],
            registry=None,
        )
        self.run_seconds = Histogram(
            "pas_runner_run_seconds",
            "Time a run spent running, to its end (success or error): its waits not included",
            ["workflow"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900),
            registry=None,
        )
        self.runs_recovered = Counter(
            "pas_runner_runs_recovered",
            "Runs resumed from their checkpoint, left pending or running by a runner that "
            "stopped (this one before a restart, or another replica)",
            ["workflow"],
            registry=None,
        )
        self.runs_taken_over = Counter(
            "pas_runner_runs_taken_over",
            "Runs taken over from another replica whose lease expired (also counted in "
            "runs_recovered when resumed)",
            ["workflow"],
            registry=None,
        )
        self.node_updates = Counter(
            "pas_runner_node_updates",
            "Node executions completed",
            ["workflow", "node"],
            registry=None,
        )
        self.active_runs = Gauge(
            "pas_runner_active_runs", "Runs in this process now", registry=None
        )
        self.events = Counter(
            "pas_runner_events",
            "workflow-events records by outcome (accepted, duplicate, dead_lettered; retried: "
            "a start tried again while the version manager or the run store was away)",
            ["outcome"],
            registry=None,
        )
        self.dead_lettered = Counter(
            "pas_runner_events_dead_lettered",
            "Events sent to the DLQ, by reason",
            ["reason"],
            registry=None,
        )
        self.results_published = Counter(
            "pas_runner_results_published",
            "workflow.completed / workflow.failed events published",
            ["event_type"],
            registry=None,
        )
        self.outcomes_reported = Counter(
            "pas_runner_outcomes_reported",
            "Ended runs reported, by channel (kafka, versioning) and result (ok; refused: the "
            "version manager will never take it; skipped: a cancelled run, no outcome)",
            ["channel", "result"],
            registry=None,
        )
        self.llm_tokens = Counter(
            "pas_runner_llm_tokens", "LLM tokens used by finished runs", ["kind"], registry=None
        )

    @property
    def collectors(self) -> list[Collector]:
        return [
            self.runs_started,
            self.runs_finished,
            self.run_seconds,
            self.runs_recovered,
            self.runs_taken_over,
            self.node_updates,
            self.active_runs,
            self.events,
            self.dead_lettered,
            self.results_published,
            self.outcomes_reported,
            self.llm_tokens,
        ]
