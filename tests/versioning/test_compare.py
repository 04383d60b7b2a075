"""Compare: the exact added, removed and modified JSON paths of a known pair, and git's diff."""

from __future__ import annotations

from tests.versioning.conftest import WORKFLOW, Client, create_version, definition_json, problem

BEFORE = definition_json(
    prompts={"system": "You are a financial analyst.", "classify": "Which desk?"},
    parameters={"temperature": 0.2, "stop": ["</answer>"]},
    metadata={"owner": "desk-a", "tags": ["fx"]},
)
AFTER = definition_json(
    prompts={"system": "You are a careful financial analyst.", "review": "Check the figures."},
    capability="reasoning",
    parameters={"temperature": 0.0, "max_tokens": 512, "stop": ["</answer>", "\n\n"]},
    metadata={"tags": ["fx"], "sla_s": 30, "a/b~c": True},
)


async def test_compare_names_every_changed_path(versioning: Client) -> None:
    await create_version(versioning, BEFORE)
    await create_version(versioning, AFTER)

    response = await versioning.get(f"/workflows/{WORKFLOW}/compare?v1=1&v2=2")

    assert response.status_code == 200, response.text
    diff = response.json()
    assert (diff["v1"], diff["v2"]) == (1, 2)
    assert sorted(diff["added"], key=lambda a: a["path"]) == [
        {"path": "/metadata/a~1b~0c", "value": True},
        {"path": "/metadata/sla_s", "value": 30},
        {"path": "/parameters/stop/1", "value": "\n\n"},
        {"path": "/prompts/review", "value": "Check the figures."},
    ]
    assert sorted(diff["removed"], key=lambda r: r["path"]) == [
        {"path": "/metadata/owner", "value": "desk-a"},
        {"path": "/prompts/classify", "value": "Which desk?"},
    ]
    assert sorted(diff["modified"], key=lambda m: m["path"]) == [
        {"path": "/capability", "old": None, "new": "reasoning"},
        {"path": "/parameters/max_tokens", "old": None, "new": 512},
        {"path": "/parameters/temperature", "old": 0.2, "new": 0.0},
        {
            "path": "/prompts/system",
            "old": "You are a financial analyst.",
            "new": "You are a careful financial analyst.",
        },
    ]
    text = diff["unified_diff"]
    assert f"--- v1/workflows/{WORKFLOW}.json" in text
    assert f"+++ v2/workflows/{WORKFLOW}.json" in text
    assert '-    "temperature": 0.2,' in text
    assert '+    "temperature": 0.0,' in text
    assert '+    "review": "Check the figures.",' in text


async def test_compare_backwards_swaps_added_and_removed(versioning: Client) -> None:
    await create_version(versioning, BEFORE)
    await create_version(versioning, AFTER)

    forward = (await versioning.get(f"/workflows/{WORKFLOW}/compare?v1=1&v2=2")).json()
    backward = (await versioning.get(f"/workflows/{WORKFLOW}/compare?v1=2&v2=1")).json()

    assert {a["path"] for a in backward["added"]} == {r["path"] for r in forward["removed"]}
    assert {r["path"] for r in backward["removed"]} == {a["path"] for a in forward["added"]}
    assert [(m["old"], m["new"]) for m in backward["modified"]] == [
        (m["new"], m["old"]) for m in forward["modified"]
    ]


async def test_a_version_compared_with_itself_has_no_changes(versioning: Client) -> None:
    await create_version(versioning, BEFORE)
    same = (await versioning.get(f"/workflows/{WORKFLOW}/compare?v1=1&v2=1")).json()
    assert (same["added"], same["removed"], same["modified"], same["unified_diff"]) == (
        [],
        [],
        [],
        "",
    )


async def test_compare_needs_two_existing_versions(versioning: Client) -> None:
    await create_version(versioning, BEFORE)
    assert (
        "version 7"
        in problem(await versioning.get(f"/workflows/{WORKFLOW}/compare?v1=1&v2=7"), 404)["detail"]
    )
    assert (
        "v2" in problem(await versioning.get(f"/workflows/{WORKFLOW}/compare?v1=1"), 400)["detail"]
    )
