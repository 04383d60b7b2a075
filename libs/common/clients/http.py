"""The HTTP client a PAS client library talks to another PAS service with."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, Self, TypeVar

import httpx
import msgspec

from libs.common.errors import PASError
from libs.common.unreadable_json import UNREADABLE_JSON, why_unreadable

T = TypeVar("T")


def service_http(
    base_url: str,
    *,
    token: str | None,
    timeout_s: float,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """An httpx client on ``base_url`` that sends ``Authorization: Bearer <token>`` when a token
    is given (the services' write endpoints need it when theirs is set)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(
        base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s, transport=transport
    )


def problem_detail(response: httpx.Response) -> str:
    """Why a PAS service refused: its problem body's ``detail``, else the body as text."""
    # RecursionError: a body nested too deep for json, read as text like any other non-JSON.
    with contextlib.suppress(ValueError, RecursionError):
        body = response.json()
        if isinstance(body, dict) and "detail" in body:
            return str(body["detail"])
    return response.text


class ServiceRefused(PASError):
    """A PAS service refused a request (a 4xx): its ``status_code`` and its problem's
    ``detail``. Each client's refusal derives from it and from that client's own error, so a
    caller catches either."""

    service: ClassVar[str] = "the service"
    """Who refused, as the message names it."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(f"{self.service} answered {status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail


class ServiceClient(ABC):
    """What every PAS service's client shares: one httpx client on the service (see
    :func:`service_http`), closed with the client or its ``async with``, and one way to send a
    request that turns what went wrong into the client's own errors: :meth:`_unavailable` when
    the service could not be reached or failed (transport error, timeout, 5xx, or a success
    that :meth:`_decode` cannot read: worth trying again later), :meth:`_refused` when it
    answered with a 4xx (its problem's ``detail``)."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout_s: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = service_http(base_url, token=token, timeout_s=timeout_s, transport=transport)

    @property
    def base_url(self) -> str:
        return str(self._http.base_url)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    @abstractmethod
    def _unavailable(self, reason: str) -> Exception:
        """The error for a service that could not be reached or failed."""

    @abstractmethod
    def _refused(self, status_code: int, detail: str) -> Exception:
        """The error for a request the service refused."""

    async def _request(
        self,
        method: str,
        path: str,
        *,
        request_timeout: httpx.Timeout | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """The service's answer when it is a success; raises the client's errors otherwise."""
        headers = {"Content-Type": "application/json"} if "content" in kwargs else None
        try:
            response = await self._http.request(
                method,
                path,
                headers=headers,
                timeout=httpx.USE_CLIENT_DEFAULT if request_timeout is None else request_timeout,
                **kwargs,
            )
        except httpx.HTTPError as exc:
            raise self._unavailable(
                f"{method} {self.base_url}{path} failed: {type(exc).__name__}: {exc}"
            ) from exc
        if response.status_code >= 500:
            raise self._unavailable(
                f"{method} {self.base_url}{path} answered {response.status_code}: "
                f"{problem_detail(response)}"
            )
        if response.status_code >= 400:
            raise self._refused(response.status_code, problem_detail(response))
        return response

    def _decode(
        self,
        response: httpx.Response,
        answer_type: type[T],
        read: Callable[[bytes], T] | None = None,
    ) -> T:
        """A success's body as ``answer_type`` (by ``read`` where the type needs more than
        msgspec's decoding); one that cannot be read (not JSON, another shape, nested too deep)
        is the service failing, not the caller's bug."""
        try:
            if read is not None:
                return read(response.content)
            return msgspec.json.decode(response.content, type=answer_type)
        except UNREADABLE_JSON as exc:
            raise self._unavailable(
                f"{response.request.method} {response.url} answered {response.status_code} "
                f"with what is not a {answer_type.__name__} ({why_unreadable(exc)}): "
                f"{response.content[:300].decode(errors='replace')}"
            ) from exc
