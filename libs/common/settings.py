"""Settings read once from the environment (and ``.env``) into a frozen msgspec Struct.

Each field ``name`` of a settings Struct is read from ``<PREFIX><NAME>``; a field may list
further variable names in the Struct's ``env_aliases`` (for names shared by all services, such
as ``REGISTRY_URL`` or ``LOG_LEVEL``). A missing variable keeps the field's default; a bad one
raises :class:`SettingsError` naming the variable.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

import msgspec
from dotenv import dotenv_values

from libs.common.errors import SettingsError
from libs.common.redaction import redact_value

SettingsT = TypeVar("SettingsT", bound="BaseSettings")
BuiltT = TypeVar("BuiltT")

_ERROR_PATH = re.compile(r" - at `\$\.(?P<field>\w+)")
_SEQUENCE_TYPES = (list, tuple, set, frozenset)


class BaseSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every service's settings; subclasses set ``env_prefix``."""

    env_prefix: ClassVar[str] = ""
    env_aliases: ClassVar[Mapping[str, tuple[str, ...]]] = {}

    def as_run(self) -> Self:
        """These settings as this process runs them; a subclass whose fields the process's
        command line can override reads them here (``ServiceSettings``: the port)."""
        return self

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict fit for a log line or a page: secret fields masked, and the
        credentials inside URLs and DSNs (see :mod:`libs.common.redaction`)."""
        values = msgspec.structs.asdict(self)
        return {name: redact_value(name, value) for name, value in values.items()}


def env_names(settings_type: type[BaseSettings], field_name: str) -> tuple[str, ...]:
    """The variables a field is read from, most specific first."""
    own = f"{settings_type.env_prefix}{field_name.upper()}"
    return (own, *settings_type.env_aliases.get(field_name, ()))


POSTGRES_EXTRA = ("psycopg", "psycopg_pool")
"""What the postgres extra installs that every PostgreSQL store needs (``pyproject.toml``)."""


def require_extra(
    variable: str, what: str, extra: str, modules: tuple[str, ...], *, otherwise: str = ""
) -> None:
    """For ``what`` ``variable`` asks (a PostgreSQL DSN, the embedded backend): stop at start
    with a line naming it when the optional ``extra``'s ``modules`` are not installed, instead
    of failing later (in an import, or the lifespan) with a traceback. ``otherwise``: what
    else the variable may say, for the line."""
    missing = [module for module in modules if importlib.util.find_spec(module) is None]
    if missing:
        raise SettingsError(
            variable,
            f"{what} needs the {extra} extra ({', '.join(missing)} not installed): install PAS "
            f"with it (bash scripts/setup.sh installs every extra){otherwise}",
        )


def require_postgres_extra(variable: str, *, modules: tuple[str, ...] = POSTGRES_EXTRA) -> None:
    """For the PostgreSQL DSN ``variable`` gives (see :func:`require_extra`)."""
    require_extra(variable, "a PostgreSQL DSN", "postgres", modules)


def _is_sequence(annotation: Any) -> bool:
    origin = typing.get_origin(annotation) or annotation
    if origin in _SEQUENCE_TYPES:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_is_sequence(arg) for arg in typing.get_args(annotation))
    return False


def _parse_sequence(raw: str) -> Any:
    stripped = raw.strip()
    if stripped.startswith("["):
        return msgspec.json.decode(stripped)
    return [item.strip() for item in stripped.split(",") if item.strip()]


def load_settings(
    settings_type: type[SettingsT],
    environ: Mapping[str, str] | None = None,
    env_file: str | Path | None = None,
) -> SettingsT:
    """Build ``settings_type`` from ``environ`` (default: ``os.environ`` over ``.env``).

    ``env_file`` defaults to ``$PAS_ENV_FILE`` or ``.env`` in the working directory; an empty
    ``PAS_ENV_FILE`` turns the file off (tests do, to stay hermetic).
    """
    if env_file is None:
        env_file = os.environ.get("PAS_ENV_FILE", ".env")
    source: dict[str, str | None] = {}
    if env_file and Path(env_file).is_file():
        source.update(dotenv_values(env_file))
    source.update(os.environ if environ is None else environ)

    hints = typing.get_type_hints(settings_type)
    raw: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for field in msgspec.structs.fields(settings_type):
        for variable in env_names(settings_type, field.name):
            value = source.get(variable)
            if value is None or value == "":
                continue
            origin[field.name] = variable
            if _is_sequence(hints[field.name]):
                try:
                    raw[field.name] = _parse_sequence(value)
                except msgspec.DecodeError as exc:
                    raise SettingsError(variable, f"not a JSON list: {exc}") from exc
            else:
                raw[field.name] = value
            break
    try:
        settings = msgspec.convert(raw, settings_type, strict=False)
    except msgspec.ValidationError as exc:
        message = str(exc)
        match = _ERROR_PATH.search(message)
        field_name = match["field"] if match else ""
        variable = origin.get(field_name) or env_names(settings_type, field_name or "?")[0]
        raise SettingsError(variable, _ERROR_PATH.sub("", message)) from exc
    return settings.as_run()


def load_settings_or_exit(settings_type: type[SettingsT]) -> SettingsT:
    """Like :func:`load_settings`, but a bad value stops the process with a one-line reason."""
    return build_or_exit(lambda settings: settings, settings_type)


def build_or_exit(factory: Callable[[SettingsT], BuiltT], settings_type: type[SettingsT]) -> BuiltT:
    """Load the settings and build from them (an app, usually); a bad value, found by either,
    stops the process with a one-line reason naming the variable."""
    try:
        return factory(load_settings(settings_type))
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
