"""Where a test's Alertmanager delivers: an HTTP webhook and an SMTP server, each on a free
port in a thread of the test, keeping what they were sent."""

from __future__ import annotations

import email
import json
import socketserver
import threading
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

from tests.support.processes import free_port


class _Server:
    """Runs a socketserver server in a daemon thread for the ``with`` block."""

    server: socketserver.BaseServer

    def __enter__(self) -> Self:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.server.shutdown()
        self.server.server_close()


class WebhookReceiver(_Server):
    """Answers 200 to every POST and keeps its path and JSON body (a Slack incoming webhook's
    contract: Alertmanager's Slack notifier posts its message as JSON)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.received: list[tuple[str, Any]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append((self.path, json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass  # not on the test's output

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)


class SmtpSink(_Server):
    """The SMTP of RFC 5321 that a client without TLS and authentication needs (EHLO, MAIL,
    RCPT, DATA, QUIT); keeps each message's envelope recipients and text."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[tuple[list[str], str]] = []
        messages = self.messages

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, line: str) -> None:
                self.wfile.write(f"{line}\r\n".encode())

            def handle(self) -> None:
                recipients: list[str] = []
                self.reply("220 pas-test SMTP")
                while line := self.rfile.readline().decode(errors="replace"):
                    verb = line[:4].upper()
                    if verb in ("EHLO", "HELO"):
                        self.reply("250 pas-test")
                    elif verb == "MAIL":
                        recipients = []
                        self.reply("250 OK")
                    elif verb == "RCPT":
                        recipients.append(line.split(":", 1)[1].strip().strip("<>"))
                        self.reply("250 OK")
                    elif verb == "DATA":
                        self.reply("354 end with <CRLF>.<CRLF>")
                        text = []
                        while (data := self.rfile.readline().decode(errors="replace")) not in (
                            ".\r\n",
                            "",
                        ):
                            # RFC 5321 4.5.2: a line that starts with a dot came with two.
                            text.append(data[1:] if data.startswith("..") else data)
                        messages.append((recipients, "".join(text)))
                        self.reply("250 OK")
                    elif verb == "QUIT":
                        self.reply("221 bye")
                        return
                    else:  # RSET, NOOP
                        self.reply("250 OK")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", self.port), Handler)

    @property
    def mails(self) -> list[Message]:
        """Each message received, parsed (headers and body)."""
        return [email.message_from_string(text) for _, text in self.messages]
