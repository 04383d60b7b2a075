"""A/B statistics on seeded simulations, through the HTTP API.

Seeded means fully: the outcome draws and the experiments' assignment salts are fixed, so
every run of these tests sees the same data.

A runner's loop is simulated: assign a unit, run the variant (a draw from that variant's true
success rate or latency), record the outcome. A real difference must be found significant and
promoted to champion, in the experiment and in git; no difference must be found significant
about ``alpha`` of the time over many seeds.
"""

from __future__ import annotations

import json
import random
import sqlite3
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import msgspec
import numpy as np
from git import Repo
from scipy import stats

from libs.common.schemas.versioning import Experiment
from services.versioning.settings import VersioningSettings
from tests.versioning.conftest import WORKFLOW, Client, create_version, definition_json

Draw = Callable[[random.Random, str], dict[str, Any]]


async def two_versions(client: Client) -> None:
    await create_version(client, definition_json(model="llama3.1:8b"))
    await create_version(client, definition_json(model="llama3.1:70b"))


async def start(client: Client, **request: Any) -> dict[str, Any]:
    response = await client.post(
        "/experiments", json={"workflow_id": WORKFLOW, "variants": {"A": 1, "B": 2}, **request}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def success_draw(rates: dict[str, float]) -> Draw:
    def draw(rng: random.Random, variant: str) -> dict[str, Any]:
        return {"success": rng.random() < rates[variant], "latency_ms": rng.uniform(200, 900)}

    return draw


def latency_draw(means: dict[str, float], sd: float = 150.0) -> Draw:
    def draw(rng: random.Random, variant: str) -> dict[str, Any]:
        return {"success": True, "latency_ms": max(0.0, rng.gauss(means[variant], sd))}

    return draw


async def run_units(
    client: Client,
    experiment: dict[str, Any],
    draw: Draw,
    *,
    units: int,
    seed: int,
    batch: int = 100,
) -> dict[str, list[dict[str, Any]]]:
    """Assign each unit over HTTP, draw its outcome, record outcomes in batches; returns the
    outcomes per variant in the order they were sent."""
    rng = random.Random(seed)
    sent: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
    pending: list[dict[str, Any]] = []
    for n in range(units):
        unit = f"seed{seed}-doc-{n}"
        assigned = await client.post(f"/experiments/{experiment['id']}/assign", json={"unit": unit})
        variant = assigned.json()["variant"]
        outcome = {
            "unit": unit,
            "variant": variant,
            "outcome_id": f"run-{unit}",
            **draw(rng, variant),
        }
        sent[variant].append(outcome)
        pending.append(outcome)
        if len(pending) == batch or n == units - 1:
            response = await client.post(f"/experiments/{experiment['id']}/outcomes", json=pending)
            assert response.status_code == 200, response.text
            pending = []
    return sent


async def test_a_better_success_rate_is_found_and_promoted(
    versioning: Client, git_repo: Callable[[], Repo]
) -> None:
    await two_versions(versioning)
    experiment = await start(
        versioning, min_samples=300, alpha=0.05, auto_promote=True, salt="better-success"
    )

    sent = await run_units(
        versioning, experiment, success_draw({"A": 0.30, "B": 0.50}), units=700, seed=11
    )

    done = (await versioning.get(f"/experiments/{experiment['id']}")).json()
    decision = done["decision"]
    assert decision["winner"] == "B"
    assert decision["samples_per_variant"] == 300
    (comparison,) = decision["comparisons"]
    # The decision looked at each variant's first 300 outcomes, with scipy's chi-square test.
    table = [
        [sum(o["success"] for o in sent[v][:300]), sum(not o["success"] for o in sent[v][:300])]
        for v in ("B", "A")
    ]
    expected = stats.chi2_contingency(table, correction=False)
    assert comparison["test"] == "chi-square"
    assert np.isclose(comparison["p_value"], expected.pvalue)
    assert comparison["p_value"] < 0.05
    assert comparison["significant"]
    assert comparison["better"]
    # Promoted: in the experiment...
    assert done["status"] == "stopped"
    assert done["promotion"]["variant"] == "B"
    assert (done["promotion"]["version"], done["promotion"]["previous_version"]) == (2, 1)
    assert done["results"]["winner"] == "B"
    # ...in the service...
    assert (await versioning.get(f"/workflows/{WORKFLOW}")).json()["version"] == 2
    # ...and in git.
    head = git_repo().head.commit
    assert head.hexsha == done["promotion"]["commit"]
    message = str(head.message)
    assert f"Experiment {experiment['id']}: variant B (version 2) won on success_rate" in message
    assert f"PAS-Experiment: {experiment['id']}" in message
    assert json.loads((head.tree / f"aliases/{WORKFLOW}.json").data_stream.read()) == {
        "champion": 2
    }
    # A promoted experiment is over: runs go to the champion again.
    assert (
        await versioning.post(f"/experiments/{experiment['id']}/assign", json={"unit": "late"})
    ).status_code == 409


async def test_lower_latency_is_found_with_welch_and_promoted(versioning: Client) -> None:
    await two_versions(versioning)
    experiment = await start(
        versioning, metric="latency_ms", min_samples=150, auto_promote=True, salt="faster"
    )

    sent = await run_units(
        versioning, experiment, latency_draw({"A": 900.0, "B": 820.0}), units=400, seed=5
    )

    done = (await versioning.get(f"/experiments/{experiment['id']}")).json()
    (comparison,) = done["decision"]["comparisons"]
    expected = stats.ttest_ind(
        [o["latency_ms"] for o in sent["B"][:150]],
        [o["latency_ms"] for o in sent["A"][:150]],
        equal_var=False,
    )
    assert comparison["test"] == "welch-t"
    assert np.isclose(comparison["p_value"], expected.pvalue)
    assert comparison["difference"] < 0, "B is faster"
    assert done["decision"]["winner"] == "B"
    assert done["promotion"]["variant"] == "B"
    assert (await versioning.get(f"/workflows/{WORKFLOW}")).json()["version"] == 2
    by_variant = {v["variant"]: v for v in done["results"]["variants"]}
    latencies = sorted(o["latency_ms"] for o in sent["A"])
    nearest_rank_p95 = latencies[int(np.ceil(0.95 * len(latencies))) - 1]
    assert np.isclose(by_variant["A"]["latency_p95_ms"], nearest_rank_p95)
    assert np.isclose(by_variant["A"]["latency_mean_ms"], np.mean(latencies))


async def test_equal_variants_are_not_promoted(
    versioning: Client, git_repo: Callable[[], Repo]
) -> None:
    await two_versions(versioning)
    head = git_repo().head.commit.hexsha
    experiment = await start(versioning, min_samples=300, auto_promote=True, salt="equal")

    await run_units(versioning, experiment, success_draw({"A": 0.4, "B": 0.4}), units=700, seed=3)

    done = (await versioning.get(f"/experiments/{experiment['id']}")).json()
    assert done["decision"] is not None
    assert done["decision"]["winner"] is None
    assert done["decision"]["comparisons"][0]["p_value"] >= 0.05
    assert done["promotion"] is None
    assert done["status"] == "running"
    assert (await versioning.get(f"/workflows/{WORKFLOW}")).json()["version"] == 1
    assert git_repo().head.commit.hexsha == head, "nothing committed"


async def false_positive_rate(
    client: Client, *, metric: str, draw: Draw, seeds: int, min_samples: int, alpha: float
) -> int:
    """Run ``seeds`` experiments where A and B are the same; count auto-promotions."""
    promoted = 0
    for seed in range(seeds):
        experiment = await start(
            client,
            metric=metric,
            min_samples=min_samples,
            alpha=alpha,
            auto_promote=True,
            salt=f"aa-{metric}-{seed}",
        )
        local = msgspec.convert(experiment, Experiment)
        rng = random.Random(seed)
        outcomes: list[dict[str, Any]] = []
        per_variant: defaultdict[str, int] = defaultdict(int)
        n = 0
        while min(per_variant["A"], per_variant["B"]) < min_samples:
            unit = f"fp{seed}-{n}"
            n += 1
            variant = local.variant_for(unit)
            if per_variant[variant] < min_samples:
                per_variant[variant] += 1
                outcomes.append({"unit": unit, **draw(rng, variant)})
        response = await client.post(f"/experiments/{experiment['id']}/outcomes", json=outcomes)
        assert response.status_code == 200, response.text
        done = (await client.get(f"/experiments/{experiment['id']}")).json()
        assert done["decision"] is not None
        if done["decision"]["winner"] is not None:
            promoted += 1
            assert done["promotion"] is not None
        else:
            await client.post(f"/experiments/{experiment['id']}/stop")
    return promoted


async def test_false_positive_rate_stays_near_alpha(versioning: Client) -> None:
    """300 A/A experiments per metric (same true rate or latency on both sides)."""
    await two_versions(versioning)
    seeds, alpha = 300, 0.05

    rates = {
        "success_rate (chi-square)": await false_positive_rate(
            versioning,
            metric="success_rate",
            draw=success_draw({"A": 0.3, "B": 0.3}),
            seeds=seeds,
            min_samples=100,
            alpha=alpha,
        ),
        "latency_ms (Welch)": await false_positive_rate(
            versioning,
            metric="latency_ms",
            draw=latency_draw({"A": 800.0, "B": 800.0}),
            seeds=seeds,
            min_samples=100,
            alpha=alpha,
        ),
    }

    for name, promoted in rates.items():
        print(f"\nfalse-positive rate, {name}: {promoted}/{seeds} = {promoted / seeds:.1%}")
        # Consistent with alpha: a binomial test does not reject rate == alpha at 1%.
        assert stats.binomtest(promoted, seeds, alpha).pvalue > 0.01, (name, promoted)


async def test_small_samples_use_fishers_exact_test(versioning: Client) -> None:
    await two_versions(versioning)
    experiment = await start(versioning, min_samples=8, salt="small-sample")
    local = msgspec.convert(experiment, Experiment)
    wins = {"A": [True] + [False] * 7, "B": [True] * 7 + [False]}
    outcomes: list[dict[str, Any]] = []
    n = 0
    while wins["A"] or wins["B"]:
        unit = f"small-{n}"
        n += 1
        variant = local.variant_for(unit)
        if wins[variant]:
            outcomes.append({"unit": unit, "success": wins[variant].pop(), "latency_ms": 100.0})
    await versioning.post(f"/experiments/{experiment['id']}/outcomes", json=outcomes)

    done = (await versioning.get(f"/experiments/{experiment['id']}")).json()

    (comparison,) = done["decision"]["comparisons"]
    assert comparison["test"] == "fisher-exact"
    assert np.isclose(comparison["p_value"], stats.fisher_exact([[7, 1], [1, 7]]).pvalue)
    assert done["decision"]["winner"] == "B"
    assert done["promotion"] is None, "auto_promote was off"
    assert done["status"] == "running"


async def test_scores_are_compared_only_where_runs_were_scored(versioning: Client) -> None:
    await two_versions(versioning)
    experiment = await start(versioning, metric="score", min_samples=60, salt="scores")
    local = msgspec.convert(experiment, Experiment)
    rng = random.Random(8)
    outcomes: list[dict[str, Any]] = []
    for n in range(300):
        unit = f"scored-{n}"
        variant = local.variant_for(unit)
        score = None if n % 3 == 0 else rng.gauss(0.70 if variant == "A" else 0.78, 0.1)
        outcomes.append({"unit": unit, "success": True, "latency_ms": 50.0, "score": score})
    await versioning.post(f"/experiments/{experiment['id']}/outcomes", json=outcomes)

    done = (await versioning.get(f"/experiments/{experiment['id']}")).json()

    scored = {
        v: [
            o["score"]
            for o in outcomes
            if o["score"] is not None and local.variant_for(o["unit"]) == v
        ]
        for v in ("A", "B")
    }
    by_variant = {v["variant"]: v for v in done["results"]["variants"]}
    assert by_variant["A"]["scored"] == len(scored["A"])
    assert np.isclose(by_variant["B"]["score_mean"], np.mean(scored["B"]))
    score_test = next(c for c in done["results"]["comparisons"] if c["metric"] == "score")
    assert np.isclose(
        score_test["p_value"], stats.ttest_ind(scored["B"], scored["A"], equal_var=False).pvalue
    )
    assert done["decision"]["metric"] == "score"
    assert done["decision"]["winner"] == "B"


async def test_three_variants_are_tested_against_the_control_with_bonferroni(
    versioning: Client,
) -> None:
    for _ in range(3):
        await create_version(versioning)
    response = await versioning.post(
        "/experiments",
        json={
            "workflow_id": WORKFLOW,
            "variants": {"A": 1, "B": 2, "C": 3},
            "control": "A",
            "alpha": 0.05,
            "min_samples": 30,
            "salt": "three-ways",
        },
    )
    experiment = response.json()
    local = msgspec.convert(experiment, Experiment)
    rng = random.Random(2)
    outcomes: list[dict[str, Any]] = [
        {"unit": f"u{n}", "success": rng.random() < 0.5, "latency_ms": rng.uniform(1, 2)}
        for n in range(150)
    ]
    await versioning.post(f"/experiments/{experiment['id']}/outcomes", json=outcomes)

    results = (await versioning.get(f"/experiments/{experiment['id']}")).json()["results"]

    primary = [c for c in results["comparisons"] if c["metric"] == "success_rate"]
    assert [(c["variant"], c["control"], c["alpha"]) for c in primary] == [
        ("B", "A", 0.025),
        ("C", "A", 0.025),
    ]
    counts = {v["variant"]: v["count"] for v in results["variants"]}
    assert counts == {
        name: sum(local.variant_for(o["unit"]) == name for o in outcomes) for name in "ABC"
    }


async def test_a_lopsided_sample_is_flagged_as_a_sample_ratio_mismatch(versioning: Client) -> None:
    """Outcomes of B runs going missing (a broken logger) must not pass unnoticed."""
    await two_versions(versioning)
    experiment = await start(versioning, salt="srm")
    local = msgspec.convert(experiment, Experiment)
    outcomes: list[dict[str, Any]] = [
        {"unit": f"u{n}", "success": True, "latency_ms": 10.0}
        for n in range(600)
        if local.variant_for(f"u{n}") == "A" or n % 3 == 0
    ]
    await versioning.post(f"/experiments/{experiment['id']}/outcomes", json=outcomes)

    results = (await versioning.get(f"/experiments/{experiment['id']}")).json()["results"]

    assert results["sample_ratio"]["mismatch"] is True
    assert results["sample_ratio"]["p_value"] < 0.001


async def test_an_outcome_sent_again_counts_once_and_the_latest_wins(versioning: Client) -> None:
    await two_versions(versioning)
    experiment = await start(versioning)
    target = f"/experiments/{experiment['id']}/outcomes"
    failed = {"unit": "doc-9", "success": False, "latency_ms": 120.0, "outcome_id": "run-9"}
    resumed = {**failed, "success": True, "latency_ms": 480.0}

    first = (await versioning.post(target, json=failed)).json()
    retried = (await versioning.post(target, json=failed)).json()
    latest = (await versioning.post(target, json=[resumed, resumed])).json()

    assert (first["recorded"], first["duplicates"]) == (1, 0)
    assert (retried["recorded"], retried["duplicates"]) == (0, 1)
    assert (latest["recorded"], latest["duplicates"]) == (0, 2)
    results = (await versioning.get(f"/experiments/{experiment['id']}")).json()["results"]
    (variant,) = [v for v in results["variants"] if v["count"]]
    assert (variant["count"], variant["successes"], variant["latency_mean_ms"]) == (1, 1, 480.0)


async def test_a_promotion_stopped_after_its_commit_is_recorded_as_that_commit_made_it(
    versioning: Client, git_repo: Callable[[], Repo], versioning_settings: VersioningSettings
) -> None:
    """A stop between the promotion's git commit and its record in the experiment store (made
    here by a trigger that refuses the record, then dropped): the next outcome finishes the
    promotion without a second commit, and records the champion it replaced and the commit
    that moved it, not "version 2 replaced version 2" and no commit."""
    await two_versions(versioning)
    experiment = await start(versioning, min_samples=20, auto_promote=True, salt="interrupted")
    database = sqlite3.connect(versioning_settings.database_file())
    database.execute(
        "CREATE TRIGGER stop_before_promotion BEFORE UPDATE ON experiments "
        "WHEN json_extract(NEW.record, '$.promotion') IS NOT NULL "
        "BEGIN SELECT RAISE(ABORT, 'stopped'); END"
    )
    database.commit()
    outcomes = []
    for n in range(80):
        assigned = await versioning.post(
            f"/experiments/{experiment['id']}/assign", json={"unit": f"u{n}"}
        )
        variant = assigned.json()["variant"]
        success = (variant == "B") != (n < 2)  # B nearly always succeeds, A nearly never
        outcomes.append(
            {"unit": f"u{n}", "variant": variant, "outcome_id": f"u{n}", "success": success}
            | {"latency_ms": 500.0}
        )
    path = f"/experiments/{experiment['id']}/outcomes"
    # Decided and committed, not recorded: the request fails as the stop would have ended it.
    assert (await versioning.post(path, json=outcomes)).status_code == 500
    moved = git_repo().head.commit
    assert f"PAS-Experiment: {experiment['id']}" in str(moved.message)
    assert (await versioning.get(f"/experiments/{experiment['id']}")).json()["promotion"] is None
    database.execute("DROP TRIGGER stop_before_promotion")
    database.commit()
    database.close()

    late = outcomes[0] | {"outcome_id": "late"}
    assert (await versioning.post(path, json=[late])).status_code == 200

    done = (await versioning.get(f"/experiments/{experiment['id']}")).json()
    assert done["status"] == "stopped"
    promotion = done["promotion"]
    assert (promotion["version"], promotion["previous_version"]) == (2, 1)
    assert promotion["commit"] == moved.hexsha == git_repo().head.commit.hexsha
    assert (await versioning.get(f"/workflows/{WORKFLOW}")).json()["version"] == 2
