"""A real OTLP/HTTP trace endpoint for tests, run in its own process.

``POST /v1/traces`` takes what the SDK's exporter sends (an ``ExportTraceServiceRequest``,
protobuf, gzip'ed or not), decodes it with ``opentelemetry-proto`` and keeps every span;
``GET /spans`` answers them as a JSON list (ids in hex, attributes as plain values, the
resource's ``service.name`` on each, links as ``{trace_id, span_id, attributes}``). Start it
with :class:`OTLPReceiver`:

    with OTLPReceiver() as receiver:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url}
        ...
        spans = receiver.wait_for(lambda spans: ..., "what")
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tests.support.polling import poll
from tests.support.processes import REPO_ROOT, answers_200, free_port

Span = dict[str, Any]

_SPAN_KINDS = ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return {item.key: _value(item.value) for item in value.kvlist_value.values}
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind) if kind else None


def decode(body: bytes) -> list[Span]:
    """The spans of one export request, flattened."""
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans: list[Span] = []
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    {
                        "service": resource.get("service.name"),
                        "scope": scope_spans.scope.name,
                        "name": span.name,
                        "kind": _SPAN_KINDS[span.kind],
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent_span_id": span.parent_span_id.hex(),
                        "start_ns": span.start_time_unix_nano,
                        "end_ns": span.end_time_unix_nano,
                        "status": {"code": span.status.code, "message": span.status.message},
                        "attributes": {a.key: _value(a.value) for a in span.attributes},
                        "links": [
                            {
                                "trace_id": link.trace_id.hex(),
                                "span_id": link.span_id.hex(),
                                "attributes": {a.key: _value(a.value) for a in link.attributes},
                            }
                            for link in span.links
                        ],
                    }
                )
    return spans


def one(spans: list[Span], **match: Any) -> Span:
    """The one span whose fields match; fails naming how many did."""
    found = [s for s in spans if all(s.get(k) == v for k, v in match.items())]
    assert len(found) == 1, f"{len(found)} spans match {match}: {[s['name'] for s in spans]}"
    return found[0]


def ancestors(span: Span, trace: list[Span]) -> set[str]:
    """The ids of every span above ``span`` in ``trace``."""
    by_id = {s["span_id"]: s for s in trace}
    found: set[str] = set()
    parent = span["parent_span_id"]
    while parent:
        found.add(parent)
        parent = by_id[parent]["parent_span_id"]
    return found


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        if self.path != "/v1/traces":
            self.send_error(404)
            return
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        try:
            spans = decode(body)
        except Exception as exc:
            self.send_error(400, f"not an ExportTraceServiceRequest: {exc}")
            return
        with self.server.lock:
            self.server.spans.extend(spans)
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def do_GET(self) -> None:
        if self.path == "/health":
            answer = b"{}"
        elif self.path == "/spans":
            with self.server.lock:
                answer = json.dumps(self.server.spans).encode()
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    def __init__(self, port: int) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.lock = threading.Lock()
        self.spans: list[Span] = []


class OTLPReceiver:
    """The receiver as a child process (``python -m tests.support.otlp_receiver PORT``)."""

    def __init__(self, log_path: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        # One client for every read of the spans: a new one loads the CA bundle (40 ms of CPU).
        self._http = httpx.Client(timeout=10)

    def __enter__(self) -> OTLPReceiver:
        log = self._log_path.open("ab") if self._log_path else subprocess.DEVNULL
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.otlp_receiver", str(self.port)],
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        if answers_200(self._process, f"{self.url}/health", timeout_s=30, interval_s=0.05):
            return self
        self.__exit__()
        raise RuntimeError("the OTLP receiver did not start")

    def __exit__(self, *_exc: object) -> None:
        self._http.close()
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)
            self._process = None

    def spans(self) -> list[Span]:
        found: list[Span] = self._http.get(f"{self.url}/spans").json()
        return found

    def wait_for(
        self, check: Callable[[list[Span]], bool], what: str, timeout_s: float = 30
    ) -> list[Span]:
        """Every span received once ``check`` holds for them; fails naming ``what``."""
        spans = poll(self.spans, until=check, timeout_s=timeout_s, interval_s=0.1)
        names = sorted({f"{s['service']}: {s['name']}" for s in spans})
        assert check(spans), f"never received {what}; received {names}"
        return spans


def main() -> None:
    _Server(int(sys.argv[1])).serve_forever()


if __name__ == "__main__":
    main()
