"""The start and stop scripts trust a PID file only while its process is the one they started.

A PID file outlives a reboot, an OOM kill or a ``kill -9``; once its PID is another process's,
a start script said "already running" (exit 0, nothing listening) and ``stop_all.sh`` sent that
process SIGTERM, then SIGKILL. Beside each PID file the scripts keep when the process began
(``/proc/PID/stat``): a PID file whose process began at another time is stale and removed.
A process that is the one started but no longer listens is stopping (killed by hand a moment
before): the start script waits for it to go, then starts the service again.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.support.processes import REPO_ROOT, free_port

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


def _script(name: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", f"scripts/{name}"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def _environment(tmp_path: Path, port: int) -> dict[str, str]:
    return {
        **os.environ,
        "PAS_ENV_FILE": "",
        "PAS_HOME": str(tmp_path / "pas"),
        "PAS_PYTHON": sys.executable,
        "REGISTRY_PORT": str(port),
        "REGISTRY_DATABASE_URL": f"sqlite:///{tmp_path}/registry.db",
    }


def _start_then_stop(
    home: Path, env: dict[str, str], pid: int, started_at: str
) -> tuple[subprocess.CompletedProcess[str], str, subprocess.CompletedProcess[str]]:
    """The registry's start script, then stop_all.sh, over a registry PID file naming ``pid``
    (begun at ``started_at``); and the PID recorded between the two."""
    (home / "run").mkdir(parents=True)
    (home / "run" / "registry.pid").write_text(f"{pid}\n")
    (home / "run" / "registry.started").write_text(f"{started_at}\n")
    started = _script("start_registry.sh", env)
    recorded = (home / "run" / "registry.pid").read_text().strip()
    return started, recorded, _script("stop_all.sh", env)


def test_a_pid_file_of_another_process_is_neither_trusted_nor_signalled(tmp_path: Path) -> None:
    home = tmp_path / "pas"
    port = free_port()
    bystander = subprocess.Popen(["sleep", "300"])
    try:
        # The registry's PID file, its PID since taken by an unrelated process.
        started, recorded, stopped = _start_then_stop(
            home, _environment(tmp_path, port), bystander.pid, "1"
        )

        assert started.returncode == 0, started.stdout + started.stderr
        assert f"registry up on http://127.0.0.1:{port}" in started.stdout
        assert recorded != str(bystander.pid)
        assert stopped.returncode == 0, stopped.stderr
        assert "registry stopped" in stopped.stdout
        assert bystander.poll() is None  # never signalled
        assert list((home / "run").iterdir()) == []
    finally:
        bystander.kill()
        bystander.wait()


def test_a_service_still_stopping_is_waited_for_then_started_again(tmp_path: Path) -> None:
    port = free_port()
    # The registry as a SIGTERM a moment ago left it: its own process (the PID file and the
    # start time are its), no longer listening, gone two seconds later.
    stopping = subprocess.Popen(["sleep", "2"])
    # Reaped as it exits, as init reaps a service the scripts started: a zombie would stay.
    threading.Thread(target=stopping.wait, daemon=True).start()
    started_at = Path(f"/proc/{stopping.pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    try:
        started, recorded, stopped = _start_then_stop(
            tmp_path / "pas", _environment(tmp_path, port), stopping.pid, started_at
        )
    finally:
        stopping.kill()
        stopping.wait()

    assert started.returncode == 0, started.stdout + started.stderr
    assert "already running" not in started.stdout
    assert f"registry up on http://127.0.0.1:{port}" in started.stdout
    assert recorded != str(stopping.pid)
    assert stopped.returncode == 0, stopped.stderr
