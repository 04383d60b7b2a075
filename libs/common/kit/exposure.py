"""A service that other machines can reach does not start with its writes open.

Bound to loopback (the default), a service without a token is reachable from this machine
only. Bound anywhere else (``0.0.0.0``, a LAN address, a host name) it refuses to start unless
a token guards its writes, or ``PAS_ALLOW_UNAUTHENTICATED=1`` says that running open is meant
(behind a proxy that authenticates, say).

The address checked is the one the server really binds: uvicorn's ``--host`` (or
``UVICORN_HOST``, or uvicorn's own default, loopback) when the process is uvicorn's command
line, as in the start scripts and the README; else the service's ``<PREFIX>HOST`` setting, which
``python -m services.kafka_llm_processor`` binds. Under another server (gunicorn), set
``<PREFIX>HOST`` (or ``PAS_HOST``) to the address it binds.

The port is found the same way (:func:`listen_port`): a service run as ``uvicorn <app> --port
N`` reports and registers N, whatever ``<PREFIX>PORT`` says.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import PurePath

from libs.common.errors import SettingsError

UNIX_SOCKET = "unix socket"
_UVICORN_DEFAULT_HOST = "127.0.0.1"
_UVICORN_DEFAULT_PORT = 8000
_LOCAL_NAMES = frozenset({"localhost", "ip6-localhost", "ip6-loopback", UNIX_SOCKET})


def _is_uvicorn_command(argv: Sequence[str]) -> bool:
    if not argv:
        return False
    program = PurePath(argv[0])
    return program.name == "uvicorn" or (
        program.name == "__main__.py" and program.parent.name == "uvicorn"
    )


def _option(argv: Sequence[str], name: str) -> str | None:
    for position, argument in enumerate(argv):
        if argument == name and position + 1 < len(argv):
            return argv[position + 1]
        if argument.startswith(f"{name}="):
            return argument.split("=", 1)[1]
    return None


def listen_host(
    configured: str,
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """The address this process's server listens on (see the module)."""
    argv = sys.argv if argv is None else argv
    environ = os.environ if environ is None else environ
    if not _is_uvicorn_command(argv):
        return configured
    if _option(argv, "--uds") or environ.get("UVICORN_UDS"):
        return UNIX_SOCKET
    return _option(argv, "--host") or environ.get("UVICORN_HOST") or _UVICORN_DEFAULT_HOST


def listen_port(
    configured: int,
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """The port this process's server listens on: uvicorn's ``--port`` (or ``UVICORN_PORT``,
    or uvicorn's own default, 8000) when the process is uvicorn's command line and listens on
    TCP; else ``configured``, the service's ``<PREFIX>PORT`` setting."""
    argv = sys.argv if argv is None else argv
    environ = os.environ if environ is None else environ
    if not _is_uvicorn_command(argv) or listen_host("", argv, environ) == UNIX_SOCKET:
        return configured
    if _option(argv, "--fd") or environ.get("UVICORN_FD"):  # a socket opened by another
        return configured
    given = _option(argv, "--port") or environ.get("UVICORN_PORT")
    try:
        return int(given) if given else _UVICORN_DEFAULT_PORT
    except ValueError:  # uvicorn refuses it before the app is served
        return configured


def is_loopback(host: str) -> bool:
    """Only this machine can connect: a loopback address, ``localhost`` or a unix socket."""
    name = host.strip().strip("[]").lower()
    if name in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def refuse_open_exposure(
    *,
    service: str,
    host: str,
    token: str | None,
    allowed: bool,
    token_variables: Sequence[str],
) -> None:
    """Raise :class:`SettingsError` when ``host`` is reachable from other machines and no
    token guards the writes, unless running open was ``allowed``."""
    if token or allowed or is_loopback(host):
        return
    first, *fallbacks = token_variables
    either = f" (or {', '.join(fallbacks)})" if fallbacks else ""
    raise SettingsError(
        first,
        f"{service} would listen on {host}, which other machines can reach, with no token: "
        f"anyone there could call its write endpoints. Set {first}{either} to a secret, "
        "listen on 127.0.0.1, or set PAS_ALLOW_UNAUTHENTICATED=1 to run it open on purpose",
    )
