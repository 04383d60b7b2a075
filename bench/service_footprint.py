"""Memory and CPU of each PAS service as the image runs it: what deploy/k8s requests.

Each service is started the way the image starts it (``python -m scripts.serve NAME``), on a
free port, with the embedded broker and the embedded model (SmolLM2), its stores in a
temporary directory. Once ``/health`` answers, the bench sends a little work (a hundred
``GET /health``; one short chat completion to each LLM service, so that the model is loaded
and has run) and reads from ``/proc``: the resident set after that work, its peak
(``VmHWM``) and the CPU seconds the process used since it started. The baseline is the same
interpreter running ``import uvicorn`` and sleeping, the floor any PAS process stands on.

Run: ``.venv/bin/python -m bench.service_footprint`` (about a minute).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bench.process_stats import cpu_seconds, memory_kib
from bench.scratch import broker_in_scratch
from libs.common.kafka.topics import ensure_topics
from scripts.serve import SERVICES
from tests.support.processes import REPO_ROOT, answers_200, free_port

LLM_SERVICES = ("llama31_8b", "tinyllama", "tlc_classifier")
HEALTH_REQUESTS = 100
READY_TIMEOUT_S = 120.0


def wait_healthy(process: subprocess.Popen[bytes], url: str) -> None:
    if not answers_200(process, url, READY_TIMEOUT_S, interval_s=0.2):
        raise RuntimeError(f"{url}: not healthy within {READY_TIMEOUT_S} s (exit {process.poll()})")


def exercise(name: str, base: str) -> None:
    with httpx.Client(base_url=base, timeout=120.0) as client:
        for _ in range(HEALTH_REQUESTS):
            client.get("/health").raise_for_status()
        if name in LLM_SERVICES and name != "tlc_classifier":
            client.post(
                "/v1/chat/completions",
                json={
                    "messages": [{"role": "user", "content": "Name one bond rating."}],
                    "max_tokens": 16,
                    "temperature": 0,
                },
            ).raise_for_status()
        elif name == "tlc_classifier":
            client.post(
                "/classify_domain", json={"query": "Wire 5m USD to the custodian today."}
            ).raise_for_status()


def measure(name: str, environ: dict[str, str], log: Path) -> tuple[int, int, float]:
    port = free_port()
    service = SERVICES[name]
    env = {**environ, f"{service.env_prefix}PORT": str(port)}
    with log.open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "scripts.serve", name],
            cwd=environ["PAS_BENCH_CWD"],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_healthy(process, f"{base}/health")
        exercise(name, base)
        status = memory_kib(process.pid)
        return status["VmRSS"], status["VmHWM"], cpu_seconds(process.pid)
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def baseline(environ: dict[str, str]) -> tuple[int, int, float]:
    process = subprocess.Popen(
        [sys.executable, "-c", "import time, uvicorn, litestar; time.sleep(60)"], env=environ
    )
    try:
        time.sleep(3)
        status = memory_kib(process.pid)
        return status["VmRSS"], status["VmHWM"], cpu_seconds(process.pid)
    finally:
        process.kill()
        process.wait()


def main() -> None:
    with broker_in_scratch(prefix="pas-footprint-") as (work, broker):
        asyncio.run(ensure_topics(broker.bootstrap_servers))
        environ = {
            **os.environ,
            "PAS_ENV_FILE": "",
            "PAS_HOST": "127.0.0.1",
            "PYTHONPATH": str(REPO_ROOT),
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "PAS_BENCH_CWD": str(work),
            "REGISTRY_URL": "http://127.0.0.1:9",  # no registry: registration retries
            "LOG_LEVEL": "WARNING",
        }
        rows = [("baseline: python + uvicorn + litestar imported", *baseline(environ))]
        for name in SERVICES:
            rows.append((name, *measure(name, environ, work / f"{name}.log")))
    print(f"{'process':<48} {'RSS MiB':>8} {'peak MiB':>9} {'CPU s':>6}")
    for name, rss, peak, cpu in rows:
        print(f"{name:<48} {rss / 1024:>8.0f} {peak / 1024:>9.0f} {cpu:>6.1f}")


if __name__ == "__main__":
    main()
