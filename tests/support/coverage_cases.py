"""Schemathesis's coverage-phase cases, built when an operation's test runs, not when it is
collected.

Schemathesis builds every operation's coverage cases (its boundary inputs, attached to the
Hypothesis test as explicit examples) while it collects the test. Under pytest-xdist every
worker collects every test, so each of the three built the cases of all 113 fuzzed operations
while only one runs each: 30 s of CPU a worker before its first test, 90 s in all, a third of
it used (py-spy, docs/benchmarks.md). The cases are the same ones, built by schemathesis's own
``add_coverage`` in the worker that runs the test, just before it runs. schemathesis's open
issue 2954 asks for cases built on demand; until it lands this patches its builder (the version
is pinned in requirements.lock; ``tests/common/test_coverage_cases.py`` fails if the builder it
patches changes). A pytest plugin: tests/conftest.py loads it through ``pytest_plugins``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from schemathesis.generation.hypothesis import builder

PENDING = "_pas_coverage_cases_pending"
"""The attribute on a Hypothesis test holding the call that attaches its coverage cases."""


def pytest_configure() -> None:
    """Make schemathesis's test builder leave each test's coverage cases to the test's call."""
    eager = builder.add_coverage

    def add_coverage_later(test: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        setattr(test, PENDING, lambda: eager(test, *args, **kwargs))
        return test

    builder.add_coverage = add_coverage_later


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    """Attach the coverage cases of the test ``item`` runs, once (hypothesis's ``example``
    decorator appends them to the test function itself, which parametrized items share)."""
    obj = getattr(item, "obj", None)
    test = getattr(obj, "__func__", obj)  # a method's function, which holds the examples
    build = getattr(test, PENDING, None)
    if build is not None:
        delattr(test, PENDING)
        build()
