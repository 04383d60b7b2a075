"""What one router hop costs: PAS's provider router, and LiteLLM's proxy, against calling the
backend directly, in the same run.

The backend is a fast OpenAI-compatible responder (``tests.support.openai_responder``) in its
own uvicorn process. PAS's router and LiteLLM's proxy each run as their own process and
forward to it. Latency (p50, p99) and requests/s at concurrency 1 and 64 come from wrk when
Debian's ``wrk`` is installed (else from an httpx client, which is itself the limit). LiteLLM
runs from its own virtualenv with a pinned release (``litellm[proxy]==1.100.3``), created by
this script under .pas/bench/ on first use; pass ``--no-litellm`` to skip it. ``--workers N``
also measures the router run as N uvicorn worker processes (uvicorn's ``--workers``), beside
the single process.

Run: ``.venv/bin/python -m bench.router_overhead [--workers 2]`` (a few minutes; the first run
installs LiteLLM).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import msgspec

from tests.support.processes import REPO_ROOT, ServiceProcess, free_port

LITELLM_VERSION = "1.100.3"
# Pinned on purpose: LiteLLM once shipped a compromised release; never install it unpinned.
LITELLM_REQUIREMENT = f"litellm[proxy]=={LITELLM_VERSION}"
LITELLM_VENV = REPO_ROOT / ".pas" / "bench" / "litellm-venv"
SEQUENTIAL = 400
CONCURRENT = 3000
CONCURRENCY = 64
WRK_SECONDS = 10
BODY = {
    "model": "fast-model",
    "messages": [{"role": "user", "content": "Price of a 10y bond?"}],
    "max_tokens": 8,
}


def litellm_binary() -> Path:
    binary = LITELLM_VENV / "bin" / "litellm"
    if not binary.exists():
        print(f"installing {LITELLM_REQUIREMENT} into {LITELLM_VENV} ...")
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        subprocess.run(
            [str(LITELLM_VENV / "bin" / "pip"), "install", "-q", LITELLM_REQUIREMENT],
            check=True,
        )
    return binary


class LiteLLMProxy:
    def __init__(self, backend_url: str, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = workdir / "litellm.yaml"
        config.write_text(
            "model_list:\n"
            "  - model_name: fast-model\n"
            "    litellm_params:\n"
            "      model: openai/fast-model\n"
            f"      api_base: {backend_url}/v1\n"
            "      api_key: unused\n"
            "litellm_settings:\n"
            "  telemetry: false\n"
        )
        self._log = (workdir / "litellm.log").open("wb")
        env = {**os.environ, "LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False"}
        self._process = subprocess.Popen(
            [
                str(litellm_binary()),
                "--config",
                str(config),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--num_workers",
                "1",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=workdir,
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if (
                    httpx.post(f"{self.url}/v1/chat/completions", json=BODY, timeout=5).status_code
                    == 200
                ):
                    return
            except httpx.HTTPError:
                pass
            if self._process.poll() is not None:
                raise RuntimeError((workdir / "litellm.log").read_text()[-3000:])
            time.sleep(0.5)
        raise RuntimeError("LiteLLM's proxy did not answer in 180 s")

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait(20)
        self._log.close()


async def latencies(url: str, count: int) -> list[float]:
    samples = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        for _ in range(20):  # warm up connections and caches
            (await http.post("/v1/chat/completions", json=BODY)).raise_for_status()
        for _ in range(count):
            started = time.perf_counter()
            (await http.post("/v1/chat/completions", json=BODY)).raise_for_status()
            samples.append(time.perf_counter() - started)
    return samples


WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
"""


class LoadResult(msgspec.Struct):
    p50_ms: float
    p99_ms: float
    requests_per_s: float


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def load_with_wrk(
    url: str,
    concurrency: int,
    workdir: Path,
    *,
    path: str = "/v1/chat/completions",
    script_text: str | None = None,
) -> LoadResult:
    """Latency percentiles and requests/s from wrk (Debian's package), a load generator that
    is not itself the limit; ``script_text``: wrk's Lua script (default: POST the chat body)."""
    script = workdir / "post.lua"
    script.write_text(script_text or WRK_SCRIPT.format(body=json.dumps(BODY)))
    result = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{concurrency}",
            f"-d{WRK_SECONDS}s",
            "--latency",
            "-s",
            str(script),
            f"{url}{path}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    out = result.stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors or "Socket errors" in out:
        raise RuntimeError(f"{url} failed requests under load:\n{out}")
    p50 = re.search(r"\s50%\s+([\d.]+)(us|ms|s)", out)
    p99 = re.search(r"\s99%\s+([\d.]+)(us|ms|s)", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not (p50 and p99 and rps):
        raise RuntimeError(f"wrk printed no latency distribution:\n{out}")
    return LoadResult(_ms(*p50.groups()), _ms(*p99.groups()), float(rps[1]))


async def throughput(url: str, count: int, concurrency: int) -> float:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        remaining = count

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                (await http.post("/v1/chat/completions", json=BODY)).raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return count / (time.perf_counter() - started)


def p(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, int(len(ordered) * q + 0.5) - 1)] * 1000


def fast_provider_file(work: Path, backend_url: str) -> Path:
    """A router providers file with one provider, ``fast``, at the responder on ``backend_url``."""
    providers = work / "providers.toml"
    providers.write_text(
        f'[[providers]]\nname = "fast"\nbase_url = "{backend_url}/v1"\n'
        '[[providers.models]]\nname = "fast-model"\ncapabilities = ["bench"]\n'
    )
    return providers


def start_router(providers: Path, work: Path, workers: int) -> ServiceProcess:
    return ServiceProcess(
        "services.provider_router.provider_router:app",
        free_port(),
        {
            "ROUTER_USE_REGISTRY": "false",
            "ROUTER_PROVIDERS_FILE": str(providers),
            "ROUTER_DATABASE_URL": f"sqlite:///{work}/router-spend-{workers}.db",
            "LOG_LEVEL": "WARNING",
            "WEB_CONCURRENCY": str(workers),  # uvicorn's --workers
        },
        work / f"router-{workers}.log",
    ).start()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-litellm", action="store_true")
    parser.add_argument(
        "--workers", type=int, default=1, help="also measure the router as N worker processes"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        backend = ServiceProcess(
            "tests.support.openai_responder:app", free_port(), {}, work / "backend.log"
        ).start(ready_path="/v1/models")
        providers = fast_provider_file(work, backend.url)
        routers = {
            "pas router": start_router(providers, work, workers=1),
            **(
                {f"pas router x{args.workers}": start_router(providers, work, args.workers)}
                if args.workers > 1
                else {}
            ),
        }
        targets = {"direct": backend.url, **{name: r.url for name, r in routers.items()}}
        litellm = None if args.no_litellm else LiteLLMProxy(backend.url, work)
        if litellm:
            targets["litellm proxy"] = litellm.url
        try:
            results: dict[str, dict[int, LoadResult]] = {}
            for name, url in targets.items():
                if shutil.which("wrk"):
                    results[name] = {c: load_with_wrk(url, c, work) for c in (1, CONCURRENCY)}
                else:
                    seq = asyncio.run(latencies(url, SEQUENTIAL))
                    rps = asyncio.run(throughput(url, CONCURRENT, CONCURRENCY))
                    one = LoadResult(p(seq, 0.5), p(seq, 0.99), 1 / statistics.fmean(seq))
                    results[name] = {1: one, CONCURRENCY: LoadResult(0.0, 0.0, rps)}
        finally:
            if litellm:
                litellm.stop()
            for router in routers.values():
                router.stop()
            backend.stop()

    direct = results["direct"]
    header = ("path", "conc", "p50 ms", "p99 ms", "added p50", "added p99", "req/s", "vs direct")
    print("{:<16} {:>5} {:>8} {:>8} {:>10} {:>10} {:>9} {:>10}".format(*header))
    for name, by_concurrency in results.items():
        for conc, r in by_concurrency.items():
            d = direct[conc]
            print(
                f"{name:<16} {conc:>5} {r.p50_ms:8.2f} {r.p99_ms:8.2f} {r.p50_ms - d.p50_ms:10.2f} "
                f"{r.p99_ms - d.p99_ms:10.2f} {r.requests_per_s:9.0f} "
                f"{r.requests_per_s / d.requests_per_s:10.2f}"
            )
    if "litellm proxy" in results:
        lite = results["litellm proxy"]
        for name in routers:
            pas = results[name]
            for conc in (1, CONCURRENCY):
                added_pas = pas[conc].p50_ms - direct[conc].p50_ms
                added_lite = lite[conc].p50_ms - direct[conc].p50_ms
                print(
                    f"{name}, concurrency {conc}: adds {added_pas:.2f} ms at p50, LiteLLM "
                    f"{added_lite:.2f} ms ({added_pas / max(added_lite, 1e-9):.2f} of it); serves "
                    f"{pas[conc].requests_per_s / lite[conc].requests_per_s:.1f}x LiteLLM's req/s"
                )


if __name__ == "__main__":
    main()
