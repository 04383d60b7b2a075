"""Assignment is sticky and stateless: same unit, same variant, on every replica and restart;
the split holds over many units."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import msgspec

from libs.common.schemas.versioning import Experiment
from tests.versioning.conftest import WORKFLOW, Client, create_version


async def start_experiment(client: Client, **request: Any) -> dict[str, Any]:
    if not (await client.get("/workflows")).json()["workflows"]:
        await create_version(client)
        await create_version(client)
    response = await client.post(
        "/experiments",
        json={"workflow_id": WORKFLOW, "variants": {"A": 1, "B": 2}, **request},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def assign(client: Client, experiment_id: str, unit: str) -> dict[str, Any]:
    response = await client.post(f"/experiments/{experiment_id}/assign", json={"unit": unit})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_the_same_unit_always_gets_the_same_variant(
    make_versioning: Callable[..., Any],
) -> None:
    first = await make_versioning()
    experiment = await start_experiment(first)
    units = [f"doc-{n}" for n in range(200)]
    answers = {u: await assign(first, experiment["id"], u) for u in units}
    for unit in units[:50]:
        again = await assign(first, experiment["id"], unit)
        assert again == answers[unit]
    assert {a["variant"] for a in answers.values()} == {"A", "B"}
    assert all(a["version"] == {"A": 1, "B": 2}[a["variant"]] for a in answers.values())

    # A second replica on the same data answers the same without any per-unit state...
    replica = await make_versioning()
    for unit in units:
        assert await assign(replica, experiment["id"], unit) == answers[unit]
    # ...and so does anyone holding the experiment (salt and split), with no call at all.
    local = msgspec.convert(experiment, Experiment)
    assert all(local.variant_for(u) == answers[u]["variant"] for u in units)


async def test_a_fifty_fifty_split_holds_over_ten_thousand_units(versioning: Client) -> None:
    """48-52% is four standard deviations either side of 50% for 10,000 units."""
    experiment = await start_experiment(versioning, split={"A": 0.5, "B": 0.5}, salt="split")

    counts = Counter(
        [
            (await assign(versioning, experiment["id"], f"unit-{n}"))["variant"]
            for n in range(10_000)
        ]
    )

    share_a = counts["A"] / 10_000
    print(f"\n50/50 split over 10,000 units: A {share_a:.2%}, B {counts['B'] / 10_000:.2%}")
    assert 0.48 <= share_a <= 0.52
    metrics = (await versioning.get("/metrics")).text
    assert (
        f'pas_versioning_assignments_total{{experiment_id="{experiment["id"]}",variant="A"}}'
        in metrics
    )


async def test_an_uneven_split_of_three_variants_holds(versioning: Client) -> None:
    for _ in range(3):
        await create_version(versioning)
    response = await versioning.post(
        "/experiments",
        json={
            "workflow_id": WORKFLOW,
            "variants": {"control": 1, "bigger_model": 2, "new_prompt": 3},
            "split": {"control": 0.6, "bigger_model": 0.3, "new_prompt": 0.1},
            "salt": "fixed-salt-for-the-test",
        },
    )
    experiment = response.json()
    assert experiment["control"] == "bigger_model", "default control: first name in sort order"

    counts = Counter(
        [(await assign(versioning, experiment["id"], f"desk-{n}"))["variant"] for n in range(3_000)]
    )

    for name, share in {"control": 0.6, "bigger_model": 0.3, "new_prompt": 0.1}.items():
        assert abs(counts[name] / 3_000 - share) < 0.03, counts


async def test_the_salt_decides_and_separate_experiments_are_independent(
    versioning: Client,
) -> None:
    first = await start_experiment(versioning, salt="desk-rollout")
    await versioning.post(f"/experiments/{first['id']}/stop")
    same_salt = await start_experiment(versioning, salt="desk-rollout")
    await versioning.post(f"/experiments/{same_salt['id']}/stop")
    other_salt = await start_experiment(versioning)
    units = [f"user-{n}" for n in range(400)]
    local = [msgspec.convert(e, Experiment) for e in (first, same_salt, other_salt)]

    assert [local[0].variant_for(u) for u in units] == [local[1].variant_for(u) for u in units]
    agreement = sum(local[0].variant_for(u) == local[2].variant_for(u) for u in units) / 400
    assert 0.4 < agreement < 0.6, "a fresh salt reshuffles units independently"
    assert (await assign(versioning, other_salt["id"], units[0]))["variant"] == local[
        2
    ].variant_for(units[0])
