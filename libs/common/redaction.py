"""The one redactor: what PAS writes out (logs, ``/health``, settings dumps, problem bodies)
passes through here so that a secret never leaves the process in clear.

Two things are masked:

- **Secret fields**, by name: a field, key or parameter whose name has a part ``token``,
  ``secret``, ``password`` (``passwd``, ``pwd``), ``credential(s)``, ``authorization``,
  ``cookie``, ``sig``/``signature``, ``apikey``, or ends in ``_key`` (``api_key``,
  ``private_key``, ``x-api-key``). Parts are split on ``_``, ``-``, ``.`` and camelCase, so
  that ``registry_token`` and ``apiKey`` are secrets and ``max_tokens`` or ``prompt_tokens``
  are not. A bare ``key`` field (a Kafka message key) is not a secret; a bare ``key=`` inside
  text is (``?key=`` is how several APIs take theirs).
- **Secrets inside text**: the user information of any URL (``postgresql://pas:hunter2@db``
  becomes ``postgresql://pas:***@db``, ``https://ghp_abc@github.com`` becomes
  ``https://***@github.com``), secret ``name=value`` pairs in query strings and libpq DSNs
  (``?api_key=...``, ``&sig=...``, ``password=...``), bearer tokens (``Bearer abc`` becomes
  ``Bearer ***``) and the value of an ``Authorization`` header written out as text.

Redaction is one-way and keeps the shape of what it masks, so that a reader still sees which
host, user or parameter was meant.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MASK = "***"

_SECRET_PARTS = frozenset(
    {
        "token",
        "secret",
        "password",
        "passwd",
        "pwd",
        "credential",
        "credentials",
        "authorization",
        "cookie",
        "sig",
        "signature",
        "apikey",
    }
)
_NAME_PARTS = re.compile(r"[_.\-\s]+")
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")

# Anything that may hide a secret has one of these; text without them is returned as it is.
_SUSPECT = re.compile(r"@|=|bearer|authorization", re.IGNORECASE)
# scheme://userinfo@ : userinfo runs to the last "@" before the path, query or fragment.
_URL_USERINFO = re.compile(
    r"(?P<scheme>\b[a-z][a-z0-9+.-]*://)(?P<userinfo>[^/?#\s@]*(?:@[^/?#\s@]*)*)@",
    re.IGNORECASE,
)
# name=value after a start, "?", "&", ";", whitespace, a comma or an opening bracket/quote.
_NAME_VALUE = re.compile(
    r"(?P<lead>(?:^|[?&;\s,(\"']))(?P<name>[A-Za-z0-9_.\-]+)=(?P<value>[^&;\s#,)\"']+)"
)
_BEARER = re.compile(r"\b(?P<scheme>bearer)\s+(?!realm\b)[A-Za-z0-9._~+/\-]+=*", re.IGNORECASE)
# "Authorization: Basic dXNlcjpwYXNz" (or any scheme), as a header line or a repr of headers.
_AUTHORIZATION = re.compile(
    r"(?P<lead>\bauthorization[\"']?\s*[:=]\s*[\"']?)(?P<scheme>[A-Za-z]+\s+)?+"
    r"[^\s\"',;<*][^\s\"',;]*",
    re.IGNORECASE,
)


def _parts(name: str) -> list[str]:
    return [p for p in _NAME_PARTS.split(_CAMEL_BOUNDARY.sub("_", name).lower()) if p]


def is_secret_name(name: str) -> bool:
    """Whether a field, key or parameter of this name holds a secret (see the module)."""
    parts = _parts(name)
    if any(part in _SECRET_PARTS for part in parts):
        return True
    return len(parts) > 1 and parts[-1] == "key"


def _is_secret_parameter(name: str) -> bool:
    return is_secret_name(name) or _parts(name) == ["key"]


def _mask_userinfo(match: re.Match[str]) -> str:
    userinfo = match["userinfo"]
    user, colon, _password = userinfo.partition(":")
    kept = f"{user}:{MASK}" if colon and user else MASK
    return f"{match['scheme']}{kept}@"


def _mask_parameter(match: re.Match[str]) -> str:
    if not _is_secret_parameter(match["name"]):
        return match.group(0)
    return f"{match['lead']}{match['name']}={MASK}"


def redact_text(text: str) -> str:
    """``text`` with the credentials of URLs, secret parameters and bearer tokens masked."""
    if not _SUSPECT.search(text):
        return text
    text = _URL_USERINFO.sub(_mask_userinfo, text)
    text = _NAME_VALUE.sub(_mask_parameter, text)
    text = _BEARER.sub(lambda m: f"{m['scheme']} {MASK}", text)
    return _AUTHORIZATION.sub(lambda m: f"{m['lead']}{m['scheme'] or ''}{MASK}", text)


def redact_value(name: str, value: Any) -> Any:
    """``value`` fit to be shown under ``name``: masked whole when the name says it is a
    secret, else with the secrets inside its text (recursively through dicts and lists)."""
    if is_secret_name(name):
        return MASK if value not in (None, "", b"") else value
    return redact_nested(value)


def redact_nested(value: Any) -> Any:
    """Strings redacted as text, mappings by key, sequences item by item; the rest as is."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return redact_mapping(value)
    if isinstance(value, list):
        return [redact_nested(item) for item in value]
    if isinstance(value, tuple):
        return tuple(redact_nested(item) for item in value)
    return value


def redact_mapping(values: Mapping[Any, Any]) -> dict[Any, Any]:
    """A copy of ``values`` with every entry passed through :func:`redact_value`."""
    return {key: redact_value(str(key), value) for key, value in values.items()}
