"""Run a PAS service as a real uvicorn process, the way the start scripts do."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Self

import httpx

from libs.common.kit.child_process import ChildProcess

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers_200(
    process: subprocess.Popen[bytes], url: str, timeout_s: float, interval_s: float = 0.1
) -> bool:
    """Whether ``url`` answers 200 before ``timeout_s`` passes, asked every ``interval_s``
    while ``process`` runs (False as soon as it exits)."""
    deadline = time.monotonic() + timeout_s
    # One client for the whole wait: a new one (httpx.get) loads the CA bundle, 40 ms of CPU
    # here, so ten polls a second took 40 % of a core from the service starting.
    with httpx.Client(timeout=1.0) as http:
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if http.get(url).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(interval_s)
    return False


class ServiceProcess(ChildProcess):
    """One uvicorn process; ``stop()`` sends SIGTERM like an operator would (``with`` starts it
    with ``start()``'s defaults and stops it)."""

    def __init__(self, app: str, port: int, env: Mapping[str, str], log_path: Path) -> None:
        self.app = app
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self._env = {**os.environ, "PAS_ENV_FILE": "", **env}
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, *, ready_timeout_s: float = 60.0, ready_path: str = "/health") -> Self:
        """Start it and wait until ``ready_path`` answers 200. The wait includes the interpreter's
        start and the imports (a runner's take seconds, and ten times that on a machine other
        jobs load): a readiness deadline, not a measure of anything."""
        log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                self.app,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--no-access-log",
            ],
            cwd=REPO_ROOT,
            env=self._env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        if answers_200(self._process, f"{self.url}{ready_path}", ready_timeout_s):
            return self
        if self._process.poll() is not None:
            raise RuntimeError(f"{self.app} exited early:\n{self.logs()}")
        self.stop()
        raise RuntimeError(f"{self.app} did not become healthy:\n{self.logs()}")

    def stop(self, *, timeout_s: float = 15.0) -> int:
        if self._process is None:
            return 0
        self._process.send_signal(signal.SIGTERM)
        try:
            code = self._process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            code = self._process.wait()
        self._process = None
        return code

    def kill(self) -> None:
        """SIGKILL: a crash, with no graceful shutdown (and so no deregistration)."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    @property
    def pid(self) -> int:
        """The running process's id."""
        if self._process is None:
            raise RuntimeError(f"{self.app} is not running")
        return self._process.pid

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class ServiceProcesses:
    """The uvicorn processes one test starts, each logging to a file of its own in ``logs``
    (``<name>-<n>.log``); ``stop_all`` stops them, the last started first."""

    def __init__(self, logs: Path) -> None:
        self._logs = logs
        self._started: list[ServiceProcess] = []

    def start(
        self, app: str, env: Mapping[str, str], *, name: str, port: int | None = None
    ) -> ServiceProcess:
        log_path = self._logs / f"{name}-{len(self._started)}.log"
        process = ServiceProcess(app, port or free_port(), env, log_path).start()
        self._started.append(process)
        return process

    def stop_all(self) -> None:
        while self._started:
            self._started.pop().stop()
