"""What a failing upstream may do to a routed call: how its failure reaches the caller, and
whether the next candidate is asked.

The providers are OpenAI-compatible servers played by fakes speaking OpenAI's documented
chat-completions wire format (``tests/support/openai_responder.py``), made to fail in the
way under test: an error page, a status, a stream cut short.
"""

from __future__ import annotations

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
