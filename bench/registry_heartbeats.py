"""Heartbeats a second: how many agents one registry process keeps alive.

10,000 agents on a 10 s TTL send 1,000 heartbeats a second. wrk (Debian's ``wrk``) posts
``/agents/{id}/heartbeat`` round the registered agents, at 1 and 16 connections, against:

- the registry as deployed (uvicorn, SQLite, INFO logs: the operator's default);
- the baseline: a bare Litestar app under uvicorn with the same route, which updates a dict
  and answers a small JSON body (the framework's floor: no kit, no metrics, no logs).

The ratio registry / bare is what PAS's service kit and catalog cost a heartbeat.

Run: ``.venv/bin/python -m bench.registry_heartbeats [--agents 1000] [--rounds 2]`` (about a
minute a round).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

import httpx
import msgspec

from bench.registry_discovery import make_agents
from bench.router_overhead import load_with_wrk
from tests.support.processes import ServiceProcess, free_port

CONCURRENCIES = (1, 16)

BARE_APP = """
from datetime import datetime, timezone

from litestar import Litestar, post

beats: dict[str, datetime] = {}


@post("/agents/{agent_id:str}/heartbeat", status_code=200)
async def heartbeat(agent_id: str) -> dict[str, str]:
    beats[agent_id] = datetime.now(timezone.utc)
    return {"agent_id": agent_id, "status": "passing"}


app = Litestar([heartbeat])
"""

ROUND_ROBIN = """
counter = 0
request = function()
    counter = counter % {agents}
    counter = counter + 1
    return wrk.format("POST", string.format("/agents/agent_%05d/heartbeat", counter - 1))
end
"""


async def register(url: str, agents: int) -> None:
    definitions = make_agents()[:agents]
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        for definition in definitions:
            response = await http.post("/register", content=msgspec.json.encode(definition))
            response.raise_for_status()


def heartbeats_a_second(url: str, agents: int, work: Path) -> dict[int, float]:
    script = ROUND_ROBIN.format(agents=agents)
    return {
        concurrency: load_with_wrk(
            url, concurrency, work, path="/", script_text=script
        ).requests_per_s
        for concurrency in CONCURRENCIES
    }


def one_round(agents: int, work: Path) -> dict[str, dict[int, float]]:
    (work / "bare_heartbeats.py").write_text(BARE_APP)
    with ExitStack() as started:  # the bare app stopped too when the registry fails to start
        bare = ServiceProcess(
            "bare_heartbeats:app", free_port(), {"PYTHONPATH": str(work)}, work / "bare.log"
        ).start(ready_path="/schema")
        started.callback(bare.stop)
        registry = ServiceProcess(
            "services.registry.registry_service:app",
            free_port(),
            {"REGISTRY_DATABASE_URL": f"sqlite:///{work}/registry.db", "LOG_LEVEL": "INFO"},
            work / "registry.log",
        ).start()
        started.callback(registry.stop)
        asyncio.run(register(registry.url, agents))
        return {
            "bare Litestar": heartbeats_a_second(bare.url, agents, work),
            "registry": heartbeats_a_second(registry.url, agents, work),
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("needs Debian's wrk: apt-get install wrk")
    ratios: dict[int, list[float]] = {c: [] for c in CONCURRENCIES}
    for number in range(1, args.rounds + 1):
        with tempfile.TemporaryDirectory() as tmp:
            rates = one_round(args.agents, Path(tmp))
            lines = Path(tmp, "registry.log").read_text().count("\n")
        for concurrency in CONCURRENCIES:
            bare, ours = rates["bare Litestar"][concurrency], rates["registry"][concurrency]
            ratios[concurrency].append(ours / bare)
            print(
                f"round {number}, {concurrency:>2} connections: registry {ours:7.0f} "
                f"heartbeats/s | bare Litestar {bare:7.0f} | ratio {ours / bare:.2f}",
                flush=True,
            )
        print(f"round {number}: the registry wrote {lines} log lines", flush=True)
    for concurrency, values in ratios.items():
        print(f"median ratio at {concurrency} connections: {statistics.median(values):.2f}")


if __name__ == "__main__":
    main()
