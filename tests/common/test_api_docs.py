"""``/schema``: each service's API page, Swagger UI from files the service serves itself, so it
works on a machine that reaches no CDN (these machines reach none: Litestar's default pages,
which load theirs from one, stayed blank here)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.registry.registry_service import create_app
from services.registry.settings import RegistrySettings
from tests.support.asgi_server import serve_asgi
from tests.support.browser import ARTIFACTS, HeadlessChromium, chromium_binary

# What the page loads: scripts, styles, its icon.
_LOADED = re.compile(r"""(?:src|href)=["']([^"']+)["']""")


@pytest.fixture
def registry_url(tmp_path: Path) -> Iterator[str]:
    """The registry's app on a loopback port: its pages need none of what its lifespan opens."""
    app = create_app(RegistrySettings(database_url=f"sqlite:///{tmp_path}/registry.db"))
    with serve_asgi(app) as url:
        yield url


def test_the_page_loads_only_what_the_service_itself_serves(registry_url: str) -> None:
    with httpx.Client(base_url=registry_url, timeout=30) as http:
        page = http.get("/schema")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        loaded = _LOADED.findall(page.text)
        assert len(loaded) == 4, loaded  # the icon, the styles, the bundle, its preset
        for url in loaded:
            assert url.startswith("/schema/assets/"), url
            asset = http.get(url)
            assert asset.status_code == 200, url
            kind = asset.headers["content-type"]
            assert kind.split("/")[0] in ("text", "image"), (url, kind)
        document = http.get("/schema/openapi.json").json()
        assert not any(path.startswith("/schema") for path in document["paths"])


@pytest.mark.skipif(chromium_binary() is None, reason="needs Debian's chromium package")
async def test_the_page_shows_every_operation_in_headless_chromium(registry_url: str) -> None:
    binary = chromium_binary()
    assert binary is not None
    async with httpx.AsyncClient(base_url=registry_url) as http:
        document: dict[str, Any] = (await http.get("/schema/openapi.json")).json()
    operations = sum(
        method in ("get", "post", "put", "patch", "delete")
        for path in document["paths"].values()
        for method in path
    )
    browser = HeadlessChromium(binary).start()
    try:
        async with browser.open_page() as page:
            # Generous: Chromium on the suite's busy cores.
            await page.navigate(f"{registry_url}/schema", timeout_s=90)
            shown = await page.wait_for(
                f"document.querySelectorAll('.opblock').length === {operations}", timeout_s=90
            )
            title = await page.evaluate("document.querySelector('.title')?.textContent")
            await page.screenshot(ARTIFACTS / "registry-api-page.png")
            problems = page.problems
    finally:
        browser.stop()

    assert shown is True, f"{operations} operations in the document; problems: {problems}"
    assert title is not None
    assert title.startswith("PAS registry")
    assert problems == []
