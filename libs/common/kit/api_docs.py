"""Every service's API pages under ``/schema``: Swagger UI from files PAS ships, so they work on a
machine that reaches no CDN, as a trading desk's often does.

Litestar's own pages (Redoc, Swagger UI, RapiDoc, Stoplight) load their scripts, styles and
icons from a CDN: offline they stay blank. Here Swagger UI (``static/swagger-ui``: version
``SWAGGER_UI_VERSION`` of the ``swagger-ui-dist`` npm package, Apache-2.0, its LICENSE and
NOTICE beside it) is served by the service itself under ``/schema/assets``, and is the page at
``/schema``. ``/schema/openapi.json`` and ``/schema/openapi.yaml`` are the document itself.
Another version: its package's ``swagger-ui-bundle.js``, ``swagger-ui-standalone-preset.js``,
``swagger-ui.css`` (each with its ``.LICENSE.txt``), ``favicon-32x32.png``, LICENSE and NOTICE
in place of these, and ``SWAGGER_UI_VERSION`` changed.
"""

from __future__ import annotations

from pathlib import Path

from litestar import Router
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin, YamlRenderPlugin
from litestar.static_files import create_static_files_router

SWAGGER_UI_VERSION = "5.36.0"
SWAGGER_UI_FILES = Path(__file__).parent / "static" / "swagger-ui"
SCHEMA_PATH = "/schema"
ASSETS_PATH = f"{SCHEMA_PATH}/assets"


def openapi_config(*, title: str, version: str, description: str | None) -> OpenAPIConfig:
    """The OpenAPI document at ``/schema/openapi.json`` and its page at ``/schema``."""
    swagger = SwaggerRenderPlugin(
        js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
        css_url=f"{ASSETS_PATH}/swagger-ui.css",
        standalone_preset_js_url=f"{ASSETS_PATH}/swagger-ui-standalone-preset.js",
        favicon=f"<link rel='icon' type='image/png' href='{ASSETS_PATH}/favicon-32x32.png'>",
    )
    return OpenAPIConfig(
        title=title,
        version=version,
        description=description,
        path=SCHEMA_PATH,
        render_plugins=[swagger, YamlRenderPlugin()],
    )


def api_page_assets() -> Router:
    """Swagger UI's files, at ``/schema/assets``; left out of the document."""
    return create_static_files_router(
        path=ASSETS_PATH, directories=[SWAGGER_UI_FILES], include_in_schema=False
    )
