"""What a failing upstream may do to a routed call: how its failure reaches the caller, and
whether the next candidate is asked.

The providers are OpenAI-compatible servers played by fakes speaking OpenAI's documented
chat-completions wire format (``tests/support/openai_responder.py``), made to fail in the
way under test: an error page, a status, a stream cut short.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.provider_router.conftest import ask, providers_file
from tests.support.asgi_server import serve_asgi
from tests.support.openai_responder import OpenAIResponder

BROKEN = "broken/broken-model"
BACKUP = "backup/backup-model"


def broken_then_backup(tmp_path: Path, broken_url: str, backup_url: str) -> str:
    """``broken`` and ``backup``, both serving capability ``faults``; the ``cost`` strategy
    asks ``broken`` (the cheaper) first."""
    return providers_file(
        tmp_path,
        f"""
[[providers]]
name = "broken"
base_url = "{broken_url}/v1"
[[providers.models]]
name = "broken-model"
capabilities = ["faults"]
input_per_1k = 0.1
output_per_1k = 0.1

[[providers]]
name = "backup"
base_url = "{backup_url}/v1"
[[providers.models]]
name = "backup-model"
capabilities = ["faults"]
input_per_1k = 1.0
output_per_1k = 1.0
""",
    )


NGINX_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n"
)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize(
    "error_body",
    [NGINX_502, "サーバーが過負荷です".encode()],
    ids=["html-with-crlf", "beyond-latin-1"],
)
async def test_a_fallback_reason_from_any_error_body_is_a_safe_header(
    make_router: Any, tmp_path: Path, stream: bool, error_body: bytes
) -> None:
    """The first candidate answers 502 with a proxy's HTML page (CRLFs) or 503 with text
    beyond Latin-1; the backup answers, and its answer reaches the caller with the reason in
    ``X-PAS-Fallback-Reasons`` as printable ASCII on one line."""
    status = 502 if error_body == NGINX_502 else 503
    broken = OpenAIResponder("broken-model", reply=(status, error_body))
    backup = OpenAIResponder("backup-model")
    with serve_asgi(broken) as broken_url, serve_asgi(backup) as backup_url:
        router = await make_router(
            use_registry=False,
            providers_file=broken_then_backup(tmp_path, broken_url, backup_url),
            retries=0,
        )
        answer = await router.post(
            "/v1/chat/completions", json=ask("faults", strategy="cost", stream=stream)
        )

    assert answer.status_code == 200, answer.text
    assert answer.headers["x-pas-candidate"] == BACKUP
    reasons = answer.headers["x-pas-fallback-reasons"]
    assert reasons.startswith(f"{BROKEN}: answered {status}: ")
    assert all(" " <= c <= "~" for c in reasons), reasons
    assert "  " not in reasons
    assert len(reasons) <= 2000


REVOKED_KEY = json.dumps(
    {
        "error": {
            "message": "Incorrect API key provided: sk-abc***xyz",
            "type": "invalid_request_error",
            "code": "invalid_api_key",
        }
    }
).encode()


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        (401, {}),
        (403, {}),
        (404, {}),
        (301, {"location": "https://api.example.com/v1/chat/completions"}),
    ],
    ids=["revoked-key", "forbidden", "retired-model", "redirect"],
)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_a_candidate_refusing_the_router_falls_back_and_counts_against_it(
    make_router: Any, tmp_path: Path, status: int, headers: dict[str, str], stream: bool
) -> None:
    """A refusal of the router rather than of the request (a revoked key, a forbidden
    project, a retired model, an ``http://`` address of an ``https`` API) is the candidate's
    entry's fault: the backup answers, the refusing candidate is asked once a call (no
    retry), and its circuit opens after ``breaker_failures`` of them."""
    broken = OpenAIResponder("broken-model", reply=(status, REVOKED_KEY), reply_headers=headers)
    backup = OpenAIResponder("backup-model")
    with serve_asgi(broken) as broken_url, serve_asgi(backup) as backup_url:
        router = await make_router(
            use_registry=False,
            providers_file=broken_then_backup(tmp_path, broken_url, backup_url),
            retries=2,
            breaker_failures=2,
            breaker_cooldown_s=600,
        )
        answers = [
            await router.post(
                "/v1/chat/completions", json=ask("faults", strategy="cost", stream=stream)
            )
            for _ in range(3)
        ]
        rows = {c["id"]: c for c in (await router.get("/providers")).json()["candidates"]}

    assert [a.status_code for a in answers] == [200, 200, 200], answers[0].text
    assert [a.headers["x-pas-candidate"] for a in answers] == [BACKUP] * 3
    assert f"{BROKEN}: answered {status}" in answers[0].headers["x-pas-fallback-reasons"]
    assert len(broken.requests) == 2  # once a call, until its circuit opened
    assert rows[BROKEN]["circuit"] == "open"
    assert rows[BROKEN]["failed"] == 2


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_every_candidate_refusing_the_router_is_a_502_naming_them(
    make_router: Any, tmp_path: Path, stream: bool
) -> None:
    """Both candidates' keys are revoked: the caller gets a 502 naming each candidate and
    its answer, never the upstreams' 401 (which would read as the router refusing the
    caller's own token)."""
    first = OpenAIResponder("broken-model", reply=(401, REVOKED_KEY))
    second = OpenAIResponder("backup-model", reply=(401, REVOKED_KEY))
    with serve_asgi(first) as first_url, serve_asgi(second) as second_url:
        router = await make_router(
            use_registry=False,
            providers_file=broken_then_backup(tmp_path, first_url, second_url),
            retries=0,
        )
        answer = await router.post(
            "/v1/chat/completions", json=ask("faults", strategy="cost", stream=stream)
        )

    assert answer.status_code == 502, answer.text
    assert "www-authenticate" not in answer.headers
    detail = answer.json()["detail"]
    assert f"{BROKEN}: answered 401" in detail
    assert f"{BACKUP}: answered 401" in detail


@pytest.mark.parametrize("status", [400, 413, 422])
async def test_a_refusal_of_the_request_itself_is_passed_on_without_fallback(
    make_router: Any, tmp_path: Path, status: int
) -> None:
    """A request the candidate finds malformed, too large or unprocessable would be refused
    by any: the caller gets that status and body, the backup is not asked, and the
    candidate, which answered, is not counted as failing."""
    error = b'{"error": {"message": "bad request", "type": "invalid_request_error"}}'
    broken = OpenAIResponder("broken-model", reply=(status, error))
    backup = OpenAIResponder("backup-model")
    with serve_asgi(broken) as broken_url, serve_asgi(backup) as backup_url:
        router = await make_router(
            use_registry=False,
            providers_file=broken_then_backup(tmp_path, broken_url, backup_url),
            retries=0,
        )
        answer = await router.post("/v1/chat/completions", json=ask("faults", strategy="cost"))
        rows = {c["id"]: c for c in (await router.get("/providers")).json()["candidates"]}

    assert answer.status_code == status
    assert "bad request" in answer.json()["detail"]
    assert backup.requests == []
    assert rows[BROKEN]["failed"] == 0
