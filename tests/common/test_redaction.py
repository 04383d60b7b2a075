"""One redactor for what PAS shows: logs, /health, settings dumps and problem bodies."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any, cast

import httpx
import pytest
from litestar import get

from libs.common.errors import RegistryUnavailable
from libs.common.kit import ServiceSettings, create_service
from libs.common.redaction import is_secret_name, redact_text
from libs.common.settings import load_settings
from services.analytics.settings import AnalyticsSettings
from services.kafka_llm_processor.app import create_app as create_processor
from services.kafka_llm_processor.settings import ProcessorSettings
from services.versioning.settings import VersioningSettings
from tests.support.processes import REPO_ROOT, free_port

SECRET = "hunter2-zz9"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            f"postgresql://pas:{SECRET}@db.internal:5432/pas",
            "postgresql://pas:***@db.internal:5432/pas",
        ),
        (f"https://{SECRET}@github.com/desk/defs.git", "https://***@github.com/desk/defs.git"),
        (
            f"fatal: unable to access 'https://ada:{SECRET}@git.example/r.git/': 403",
            "fatal: unable to access 'https://ada:***@git.example/r.git/': 403",
        ),
        (
            f"http://llm:8000/v1?api_key={SECRET}&model=m&sig={SECRET}",
            "http://llm:8000/v1?api_key=***&model=m&sig=***",
        ),
        (
            f"https://s3.example/o?X-Amz-Credential={SECRET}&X-Amz-Security-Token={SECRET}",
            "https://s3.example/o?X-Amz-Credential=***&X-Amz-Security-Token=***",
        ),
        (f"https://maps.example/api?key={SECRET}", "https://maps.example/api?key=***"),
        (
            f"host=db user=pas password={SECRET} dbname=pas",
            "host=db user=pas password=*** dbname=pas",
        ),
        (f"token={SECRET}", "token=***"),
        (f"Authorization: Bearer {SECRET}", "Authorization: Bearer ***"),
        (f"{{'authorization': 'Basic {SECRET}'}}", "{'authorization': 'Basic ***'}"),
        # Left alone: nothing secret in them.
        ("max_tokens=512 temperature=0.2", "max_tokens=512 temperature=0.2"),
        ("git@github.com:desk/defs.git", "git@github.com:desk/defs.git"),
        ("https://host/path and ada@desk.example", "https://host/path and ada@desk.example"),
        (
            "this endpoint needs 'Authorization: Bearer <token>'",
            "this endpoint needs 'Authorization: Bearer <token>'",
        ),
        ('WWW-Authenticate: Bearer realm="pas"', 'WWW-Authenticate: Bearer realm="pas"'),
    ],
)
def test_secrets_inside_text_are_masked(text: str, shown: str) -> None:
    assert redact_text(text) == shown
    assert redact_text(shown) == shown, "masking twice changes nothing"


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("registry_token", True),
        ("REGISTRY_TOKEN", True),
        ("llm_api_key", True),
        ("x-api-key", True),
        ("apiKey", True),
        ("client_secret", True),
        ("password", True),
        ("authorization", True),
        ("max_tokens", False),
        ("prompt_tokens", False),
        ("key", False),
        ("database_url", False),
        ("checkpoint_dsn", False),
    ],
)
def test_secret_fields_are_known_by_name(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret


def test_settings_dumps_mask_tokens_keys_and_the_credentials_of_urls() -> None:
    versioning = load_settings(
        VersioningSettings,
        {"VERSIONING_REMOTE": f"https://ada:{SECRET}@git.example/defs.git", "PAS_TOKEN": SECRET},
        env_file="",
    )
    analytics = load_settings(
        AnalyticsSettings,
        {"ANALYTICS_DATABASE_URL": f"postgresql://pas:{SECRET}@db/pas"},
        env_file="",
    )
    processor = load_settings(
        ProcessorSettings,
        {"LLM_URL": f"http://llm.internal/v1?api_key={SECRET}", "LLM_API_KEY": SECRET},
        env_file="",
    )

    assert versioning.redacted()["remote"] == "https://ada:***@git.example/defs.git"
    assert versioning.redacted()["token"] == "***"
    assert analytics.redacted()["database_url"] == "postgresql://pas:***@db/pas"
    assert processor.redacted()["llm_url"] == "http://llm.internal/v1?api_key=***"
    assert processor.redacted()["llm_api_key"] == "***"
    assert processor.redacted()["max_tokens"] == 384
    for dump in (versioning.redacted(), analytics.redacted(), processor.redacted()):
        assert SECRET not in str(dump)


async def test_health_shows_the_processors_llm_url_without_its_credentials() -> None:
    app = create_processor(
        ProcessorSettings(
            llm_url=f"http://desk:{SECRET}@llm.internal:8050/v1?api_key={SECRET}",
            bootstrap_servers=f"127.0.0.1:{free_port()}",
            log_level="WARNING",
        )
    )
    transport = httpx.ASGITransport(app=cast(Any, app))
    async with httpx.AsyncClient(transport=transport, base_url="http://processor") as client:
        health = await client.get("/health")

    assert SECRET not in health.text
    assert health.json()["details"]["llm_url"] == (
        "http://desk:***@llm.internal:8050/v1?api_key=***"
    )


async def test_problem_bodies_do_not_quote_credentials() -> None:
    @get("/agents")
    async def agents() -> None:
        raise RegistryUnavailable(f"GET https://svc:{SECRET}@registry.internal/agents failed")

    app = create_service(
        name="probe", settings=ServiceSettings(log_level="CRITICAL"), route_handlers=[agents]
    )
    transport = httpx.ASGITransport(app=cast(Any, app))
    async with httpx.AsyncClient(transport=transport, base_url="http://probe") as client:
        problem = (await client.get("/agents")).json()

    assert problem["detail"] == "GET https://svc:***@registry.internal/agents failed"


_LOGGING_PROGRAM = textwrap.dedent(
    """
    import logging, structlog
    from libs.common.kit.logging import configure_logging

    configure_logging("DEBUG", "json")
    secret = "{secret}"
    log = structlog.get_logger("pas.test")
    log.info("connecting", dsn=f"postgresql://pas:{{secret}}@db/pas", api_key=secret,
             settings={{"registry_token": secret, "max_tokens": 7}}, max_tokens=9)
    log.warning(f"push to https://ada:{{secret}}@git.example/r.git failed")
    try:
        raise RuntimeError(f"GET http://llm/v1?token={{secret}} refused")
    except RuntimeError:
        log.exception("call failed")
    logging.getLogger("uvicorn.error").error("headers: Authorization: Bearer %s", secret)
    """
)


def test_log_lines_mask_secrets_from_structlog_stdlib_and_tracebacks() -> None:
    program = _LOGGING_PROGRAM.format(secret=SECRET)
    ran = subprocess.run(
        [sys.executable, "-c", program],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    lines = [json.loads(line) for line in ran.stdout.splitlines()]

    assert SECRET not in ran.stdout + ran.stderr
    assert len(lines) == 4
    connecting = lines[0]
    assert connecting["dsn"] == "postgresql://pas:***@db/pas"
    assert connecting["api_key"] == "***"
    assert connecting["settings"] == {"registry_token": "***", "max_tokens": 7}
    assert connecting["max_tokens"] == 9
    assert lines[1]["event"] == "push to https://ada:***@git.example/r.git failed"
    assert "token=***" in lines[2]["exception"]
    assert lines[3]["event"] == "headers: Authorization: Bearer ***"
