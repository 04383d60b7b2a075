"""A Kafka wire proxy that can hold back the broker's acknowledgements of produced records.

Clients connect to the proxy (the broker advertises the proxy's port, so they never go
around it); every request and response passes through unchanged, except that while
``holding`` is set, the broker's responses to Produce requests (API key 0) wait at the proxy.
A producer's records are then in the broker but unacknowledged, as on a slow or overloaded
cluster. Kafka answers a connection's requests in order, so a held response holds the ones
behind it on that connection too, as a slow broker would.

Frames: a request is ``int32 length, int16 api_key, int16 api_version, int32
correlation_id, ...``; a response is ``int32 length, int32 correlation_id, ...``.
"""

from __future__ import annotations

import asyncio
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from libs.common.kafka.broker import EmbeddedBroker
from tests.support.processes import free_port

PRODUCE = 0


class AckDelayProxy:
    def __init__(self, listen_port: int, broker_port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = listen_port
        self._broker_port = broker_port
        self._loop = asyncio.new_event_loop()
        self._released: asyncio.Event | None = None
        self.held_acks = 0
        """Produce responses that waited at the proxy so far."""

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def hold(self) -> None:
        """From now on, Produce responses wait until :meth:`release`."""
        assert self._released is not None
        self._loop.call_soon_threadsafe(self._released.clear)

    def release(self) -> None:
        assert self._released is not None
        self._loop.call_soon_threadsafe(self._released.set)

    @contextmanager
    def running(self) -> Iterator[AckDelayProxy]:
        ready = threading.Event()
        thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        thread.start()
        ready.wait(10)
        try:
            yield self
        finally:
            self.release()
            self._loop.call_soon_threadsafe(self._loop.stop)
            thread.join(10)

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._released = asyncio.Event()
        self._released.set()
        server = self._loop.run_until_complete(
            asyncio.start_server(self._connection, self.host, self.port)
        )
        ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()
            # Connections still open end here, not as coroutines collected after the loop.
            pending = asyncio.all_tasks(self._loop)
            for task in pending:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self._loop.close()

    async def _connection(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        broker_reader, broker_writer = await asyncio.open_connection(self.host, self._broker_port)
        produce_ids: set[int] = set()
        tasks = [
            asyncio.create_task(self._requests(client_reader, broker_writer, produce_ids)),
            asyncio.create_task(self._responses(broker_reader, client_writer, produce_ids)),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for writer in (client_writer, broker_writer):
                with suppress(ConnectionError):
                    writer.close()

    async def _requests(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, produce_ids: set[int]
    ) -> None:
        while frame := await _frame(reader):
            api_key, _, correlation_id = struct.unpack(">hhi", frame[4:12])
            if api_key == PRODUCE:
                produce_ids.add(correlation_id)
            writer.write(frame)
            await writer.drain()

    async def _responses(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, produce_ids: set[int]
    ) -> None:
        assert self._released is not None
        while frame := await _frame(reader):
            (correlation_id,) = struct.unpack(">i", frame[4:8])
            if correlation_id in produce_ids:
                produce_ids.discard(correlation_id)
                if not self._released.is_set():
                    self.held_acks += 1
                    await self._released.wait()
            writer.write(frame)
            await writer.drain()


@contextmanager
def broker_behind_proxy(log_dir: Path) -> Iterator[AckDelayProxy]:
    """An embedded broker of its own, reached only through a proxy (the broker advertises
    the proxy's port)."""
    broker_port, proxy_port = free_port(), free_port()
    with (
        EmbeddedBroker(
            port=broker_port, advertised_port=proxy_port, log_path=log_dir / "broker.log"
        ),
        AckDelayProxy(proxy_port, broker_port).running() as running,
    ):
        yield running


async def _frame(reader: asyncio.StreamReader) -> bytes | None:
    """One whole frame, its length prefix included; ``None`` at the end of the stream."""
    try:
        head = await reader.readexactly(4)
        (length,) = struct.unpack(">i", head)
        return head + await reader.readexactly(length)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
