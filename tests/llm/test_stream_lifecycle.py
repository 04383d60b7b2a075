"""A client that walks away from a stream gives the model back at once, every choice's."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.llm.conftest import LLAMA_APP
from tests.support.processes import ServiceProcess, free_port


@pytest.mark.parametrize("n", [1, 3])
def test_an_abandoned_stream_stops_generating_and_frees_the_model(tmp_path: Path, n: int) -> None:
    service = ServiceProcess(
        LLAMA_APP,
        free_port(),
        {"LLAMA31_8B_REGISTER": "false", "LLAMA31_8B_CONTEXT_LENGTH": "2048"},
        tmp_path / "llm.log",
    ).start()
    long_answer = {
        "messages": [{"role": "user", "content": "Write a very long history of bond markets."}],
        "max_tokens": 1800,
        "stream": True,
        "n": n,
    }
    with httpx.Client(base_url=service.url, timeout=60) as http:
        with http.stream("POST", "/v1/chat/completions", json=long_answer) as stream:
            for received, _line in enumerate(stream.iter_lines()):
                if received == 4:
                    break  # the client leaves mid-answer
        follow_up = http.post(
            "/chat/completions",
            json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4},
        )
    service.stop()

    assert follow_up.status_code == 200
    stops = [
        json.loads(line)
        for line in service.logs().splitlines()
        if "generation stopped before its end" in line
    ]
    assert [s["reason"] for s in stops] == ["the caller went away"] * n
    assert all(s["tokens_made"] < 1800 for s in stops)
