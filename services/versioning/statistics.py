"""Experiment results: per-variant summaries and scipy's significance tests.

- Success rate: Pearson's chi-square test on the 2x2 table without continuity correction
  (the same p-value as the two-proportion z-test), or Fisher's exact test when an expected
  cell count is below 5, where the chi-square approximation is poor.
- Latency and score: Welch's t-test (unequal variances).
- With more than two variants every variant is tested against the control, at ``alpha``
  divided by the number of comparisons (Bonferroni), per metric.
- Sample ratio mismatch: chi-square goodness of fit of the counts against the split.

scipy is imported by the functions that test, on the first analysis: importing it took about
1.1 s, a third of the version manager's start, which most starts never use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from libs.common.schemas.versioning import (
    Comparison,
    Experiment,
    ExperimentResults,
    Metric,
    SampleRatioCheck,
    SignificanceTest,
    VariantResult,
)

METRICS: tuple[Metric, ...] = ("success_rate", "latency_ms", "score")
SRM_THRESHOLD = 0.001
_MIN_EXPECTED_FOR_CHI_SQUARE = 5.0


@dataclass(frozen=True)
class VariantSamples:
    """One variant's outcomes as arrays; ``score`` holds NaN where a run had no score."""

    success: npt.NDArray[np.bool_]
    latency_ms: npt.NDArray[np.float64]
    cost: npt.NDArray[np.float64]
    score: npt.NDArray[np.float64]

    @property
    def count(self) -> int:
        return int(self.success.size)

    @property
    def scores(self) -> npt.NDArray[np.float64]:
        return self.score[~np.isnan(self.score)]

    def sample_size(self, metric: Metric) -> int:
        return int(self.scores.size) if metric == "score" else self.count

    def value(self, metric: Metric) -> float | None:
        """The variant's observed success rate or mean."""
        data = self.data(metric)
        return float(data.mean()) if data.size else None

    def data(self, metric: Metric) -> npt.NDArray[np.float64]:
        if metric == "success_rate":
            return self.success.astype(np.float64)
        return self.latency_ms if metric == "latency_ms" else self.scores

    @classmethod
    def empty(cls) -> VariantSamples:
        return cls(
            success=np.zeros(0, dtype=np.bool_),
            latency_ms=np.zeros(0),
            cost=np.zeros(0),
            score=np.zeros(0),
        )


def analyse(experiment: Experiment, samples: dict[str, VariantSamples]) -> ExperimentResults:
    by_variant = {name: samples.get(name) or VariantSamples.empty() for name in experiment.split}
    comparisons = [
        comparison
        for metric in METRICS
        for comparison in compare_to_control(experiment, by_variant, metric)
    ]
    primary = [c for c in comparisons if c.metric == experiment.metric]
    return ExperimentResults(
        metric=experiment.metric,
        alpha=experiment.alpha,
        min_samples=experiment.min_samples,
        ready=is_ready(experiment, by_variant, experiment.metric),
        total=sum(s.count for s in by_variant.values()),
        variants=[
            summarise(name, experiment.variants[name], experiment.split[name], data)
            for name, data in sorted(by_variant.items())
        ],
        comparisons=comparisons,
        winner=pick_winner(experiment.control, primary),
        sample_ratio=sample_ratio_check(experiment.split, by_variant),
    )


def is_ready(experiment: Experiment, samples: dict[str, VariantSamples], metric: Metric) -> bool:
    return all(
        samples[name].sample_size(metric) >= experiment.min_samples for name in experiment.split
    )


def compare_to_control(
    experiment: Experiment, samples: dict[str, VariantSamples], metric: Metric
) -> list[Comparison]:
    control = samples[experiment.control]
    others = [name for name in sorted(experiment.split) if name != experiment.control]
    alpha = experiment.alpha / len(others)
    ready = is_ready(experiment, samples, metric)
    found: list[Comparison] = []
    for name in others:
        variant = samples[name]
        if metric == "success_rate":
            test, statistic, p_value = two_proportion_test(variant, control)
        else:
            test, statistic, p_value = welch_test(variant.data(metric), control.data(metric))
        if test is None:
            continue
        mine, theirs = variant.value(metric), control.value(metric)
        difference = None if mine is None or theirs is None else mine - theirs
        better = None
        if difference is not None and difference != 0:
            better = difference < 0 if metric == "latency_ms" else difference > 0
        found.append(
            Comparison(
                variant=name,
                control=experiment.control,
                metric=metric,
                test=test,
                statistic=statistic,
                p_value=p_value,
                difference=difference,
                alpha=alpha,
                significant=ready and p_value is not None and p_value < alpha,
                better=better,
            )
        )
    return found


def pick_winner(control: str, comparisons: list[Comparison]) -> str | None:
    """The best variant that beat the control significantly; else the control if it beat
    every other variant significantly; else nobody."""
    winners = [c for c in comparisons if c.significant and c.better]
    if winners:
        lower_is_better = winners[0].metric == "latency_ms"
        best = min(winners, key=lambda c: (c.difference or 0.0) * (1 if lower_is_better else -1))
        return best.variant
    if comparisons and all(c.significant and c.better is False for c in comparisons):
        return control
    return None


def two_proportion_test(
    variant: VariantSamples, control: VariantSamples
) -> tuple[SignificanceTest | None, float | None, float | None]:
    from scipy import stats  # noqa: PLC0415 (see the module's docstring)

    if variant.count == 0 or control.count == 0:
        return None, None, None
    wins_v, wins_c = int(variant.success.sum()), int(control.success.sum())
    table = np.array([[wins_v, variant.count - wins_v], [wins_c, control.count - wins_c]])
    if (table.sum(axis=0) == 0).any():
        # Every run succeeded (or failed) on both sides: the rates are identical.
        return "chi-square", 0.0, 1.0
    expected = stats.contingency.expected_freq(table)
    if expected.min() < _MIN_EXPECTED_FOR_CHI_SQUARE:
        fisher = stats.fisher_exact(table)
        return "fisher-exact", _finite(fisher.statistic), _finite(fisher.pvalue)
    chi2 = stats.chi2_contingency(table, correction=False)
    return "chi-square", _finite(chi2.statistic), _finite(chi2.pvalue)


def welch_test(
    variant: npt.NDArray[np.float64], control: npt.NDArray[np.float64]
) -> tuple[SignificanceTest | None, float | None, float | None]:
    from scipy import stats  # noqa: PLC0415 (see the module's docstring)

    if variant.size < 2 or control.size < 2:
        return None, None, None
    if variant.var() == 0 and control.var() == 0:
        # No spread at all: Welch's statistic is undefined; equal constants do not differ.
        same = bool(variant[0] == control[0])
        return "welch-t", None, 1.0 if same else None
    welch = stats.ttest_ind(variant, control, equal_var=False)
    return "welch-t", _finite(welch.statistic), _finite(welch.pvalue)


def summarise(name: str, version: int, weight: float, data: VariantSamples) -> VariantResult:
    from scipy import stats  # noqa: PLC0415 (see the module's docstring)

    count = data.count
    successes = int(data.success.sum())
    interval = None
    if count:
        ci = stats.binomtest(successes, count).proportion_ci(method="wilson")
        interval = [float(ci.low), float(ci.high)]
    scores = data.scores
    return VariantResult(
        variant=name,
        version=version,
        weight=weight,
        count=count,
        successes=successes,
        success_rate=successes / count if count else None,
        success_rate_ci95=interval,
        latency_mean_ms=float(data.latency_ms.mean()) if count else None,
        latency_p95_ms=(
            float(np.percentile(data.latency_ms, 95, method="inverted_cdf")) if count else None
        ),
        cost_mean=float(data.cost.mean()) if count else None,
        scored=int(scores.size),
        score_mean=float(scores.mean()) if scores.size else None,
    )


def sample_ratio_check(
    split: dict[str, float], samples: dict[str, VariantSamples]
) -> SampleRatioCheck | None:
    from scipy import stats  # noqa: PLC0415 (see the module's docstring)

    names = sorted(split)
    observed = np.array([samples[name].count for name in names], dtype=np.float64)
    total = observed.sum()
    weights = np.array([split[name] for name in names])
    expected = total * weights / weights.sum()
    if expected.min() < _MIN_EXPECTED_FOR_CHI_SQUARE:
        return None
    p_value = float(stats.chisquare(observed, expected).pvalue)
    return SampleRatioCheck(p_value=p_value, mismatch=p_value < SRM_THRESHOLD)


def _finite(value: float) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None
