"""How many threads a model the tests load in their own process reads prompts on."""

from __future__ import annotations

import os


def batch_threads() -> int | None:
    """``LLM_BATCH_THREADS`` as tests/conftest.py sets it for parallel workers (one: beside the
    other workers, a pass's threads spin waiting for preempted ones), else llama.cpp's default
    (every core). Services the tests start read the variable themselves; settings and engines
    built in process take it from here."""
    value = os.environ.get("LLM_BATCH_THREADS")
    return int(value) if value else None
