"""Schemathesis's coverage cases built when a test runs (tests/support/coverage_cases.py) are
the cases it builds at collection: the same requests in the same order, and none was built
when the test was collected. Each session runs in a process of its own, one with schemathesis
as it comes and one with the deferral."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

APP = """
import json
import os
from typing import Annotated, Literal

import msgspec
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from litestar import Litestar, post


class Order(msgspec.Struct):
    quantity: Annotated[int, msgspec.Meta(ge=1, le=10)]
    side: Literal["buy", "sell"]
    note: Annotated[str, msgspec.Meta(max_length=8)] = ""


@post("/orders")
async def place(data: Order) -> Order:
    return data


schema = schemathesis.openapi.from_asgi("/schema/openapi.json", Litestar([place]))


@schema.parametrize()
@settings(phases=[Phase.explicit], deadline=None, suppress_health_check=list(HealthCheck))
def test_orders(case: schemathesis.Case) -> None:
    with open(os.environ["CASES_FILE"], "a") as cases:
        seen = [case.meta.phase.name.value, case.body]
        cases.write(json.dumps(seen, default=lambda value: type(value).__name__) + "\\n")
"""

DEFERRED = """
from tests.support.coverage_cases import PENDING

pytest_plugins = ["tests.support.coverage_cases"]

def pytest_collection_finish(session):
    import os
    with open(os.environ["CASES_FILE"] + ".pending", "w") as out:
        out.write(str(sum(hasattr(item.obj, PENDING) for item in session.items)))
"""

PLUGINS = (
    "--disable-plugin-autoload",
    "-p",
    "_hypothesis_pytestplugin",
    "-p",
    "schemathesis.pytest.plugin",
)
"""The plugins a session needs, named as pyproject.toml's addopts name them: no others are
loaded, nor their packages' assertions rewritten."""


def cases_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, conftest: str
) -> list[list[object]]:
    pytester.makeconftest(conftest)
    pytester.makepyfile(test_orders=APP)
    cases = pytester.path / "cases.jsonl"
    cases.unlink(missing_ok=True)
    monkeypatch.setenv("CASES_FILE", str(cases))
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parents[2]))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *PLUGINS)
    assert result.ret == pytest.ExitCode.OK, result.outlines
    return [json.loads(line) for line in cases.read_text().splitlines()]


def test_cases_built_on_call_are_the_cases_built_at_collection(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    eager = cases_run(pytester, monkeypatch, "")
    deferred = cases_run(pytester, monkeypatch, DEFERRED)
    assert any(phase == "coverage" for phase, _ in eager), eager
    assert deferred == eager
    # Collected with its coverage cases still to build.
    assert (pytester.path / "cases.jsonl.pending").read_text() == "1"
