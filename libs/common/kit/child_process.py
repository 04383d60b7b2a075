"""A child process its owner starts and stops (the embedded broker, a service under test), and
a ``with`` block that does both."""

from __future__ import annotations

import subprocess
from types import TracebackType
from typing import Self


class ChildProcess:
    """Subclasses start ``_process`` in ``start()`` and end it in ``stop()``. In a ``with``
    block it is started on entry unless it already runs, and stopped on exit, whatever ended
    the block."""

    _process: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> object:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self if self._process is not None else self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
