"""The provider router: ``uvicorn services.provider_router.provider_router:app --port 6103``."""

from __future__ import annotations

import asyncio
from collections import ChainMap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from functools import partial

import structlog
from litestar import Litestar, Router
from litestar.di import Provide

from libs.common.clients.registry import RegistryClient
from libs.common.errors import SettingsError
from libs.common.kafka.usage_publisher import UsagePublisher
from libs.common.kit import HealthReport, create_service
from libs.common.settings import build_or_exit, env_names
from services.provider_router.answer_cache import AnswerCache
from services.provider_router.candidates import LOCAL_PROVIDER, remote_candidates
from services.provider_router.costs import CostLedger
from services.provider_router.desk_keys import (
    GATE_STATE,
    DeskKey,
    KeyGate,
    load_keys,
    unknown_providers,
)
from services.provider_router.dispatcher import Dispatcher
from services.provider_router.file_watch import WatchedFile, reloads_counter, watching
from services.provider_router.metrics import PoolCollector, RouterMetrics, cache_bytes_gauge
from services.provider_router.pool import CandidatePool
from services.provider_router.registry_watch import follow_registry
from services.provider_router.routes import (
    ROUTING_STATE,
    RouterController,
    Routing,
    provide_routing,
)
from services.provider_router.settings import RouterSettings
from services.provider_router.shared_pace import SharedPace
from services.provider_router.store import store_for_url
from services.provider_router.upstreams import Upstreams, upstream_session

logger = structlog.get_logger("pas.router")


async def _health(pool: CandidatePool, synced: asyncio.Event, use_registry: bool) -> HealthReport:
    usable = [c for c in pool.all() if pool.why_unusable(c) is None]
    details: dict[str, object] = {
        "candidates": len(pool.all()),
        "usable": len(usable),
        "registry_synced": synced.is_set() or not use_registry,
    }
    return HealthReport(status="healthy" if usable else "degraded", details=details)


def _providers_known(pool: CandidatePool) -> set[str]:
    return pool.remote_providers() | {LOCAL_PROVIDER}


def _keys_checked(keys: list[DeskKey], pool: CandidatePool, path: str | None) -> list[DeskKey]:
    """``keys``, unless one names a provider the router has no model of: refused."""
    unknown = unknown_providers(keys, _providers_known(pool))
    if unknown:
        named = "; ".join(f"key {name!r} names {', '.join(p)}" for name, p in unknown.items())
        raise SettingsError(
            "ROUTER_KEYS_FILE",
            f"{path}: {named}: no such provider (known: "
            f"{', '.join(sorted(_providers_known(pool)))})",
        )
    return keys


def _take_providers(path: str, pool: CandidatePool, keys: KeyGate) -> None:
    """A provider a key is kept to may leave (a compromised one must be able to): said; what
    only such providers served is refused to the key (403) until it is changed."""
    pool.set_remote(remote_candidates(path))
    for name, unknown in unknown_providers(keys.keys, _providers_known(pool)).items():
        logger.warning(
            "a desk key names providers the router no longer has; what only they served is refused",
            key=name,
            providers=unknown,
        )


def _watched_files(
    settings: RouterSettings, pool: CandidatePool, keys: KeyGate
) -> list[WatchedFile]:
    """The providers and keys files, each taken again when it changes."""
    return [
        WatchedFile(name, path, take)
        for name, path, take in (
            ("providers", settings.providers_file, lambda p: _take_providers(p, pool, keys)),
            (
                "keys",
                settings.keys_file,
                lambda p: keys.replace(_keys_checked(load_keys(p), pool, p)),
            ),
        )
        if path
    ]


def _key_gate(settings: RouterSettings, pool: CandidatePool, ledger: CostLedger) -> KeyGate:
    keys = KeyGate(
        _keys_checked(load_keys(settings.keys_file), pool, settings.keys_file),
        router_token=settings.token,
        spent_today=ledger.key_spent_today,
    )
    if keys.keys and not keys.has_router_token:
        logger.warning(
            "desk keys without ROUTER_TOKEN: every routed request needs a desk key, and no "
            "token may read every desk's spend (GET /costs); set ROUTER_TOKEN for operators",
            keys=len(keys.keys),
        )
    return keys


def create_app(settings: RouterSettings) -> Litestar:
    store = store_for_url(
        settings.database_url, variable=env_names(RouterSettings, "database_url")[0]
    )
    ledger = CostLedger(
        store, sync_s=settings.spend_sync_s, retention_s=settings.spend_retention_days * 86_400
    )
    pool = CandidatePool(
        breaker_failures=settings.breaker_failures,
        breaker_cooldown_s=settings.breaker_cooldown_s,
        ewma_alpha=settings.ewma_alpha,
        ledger=ledger,
    )
    pool.set_remote(remote_candidates(settings.providers_file))
    keys = _key_gate(settings, pool, ledger)
    # Keys' paces are shared as candidates' are (their names cannot clash: "key:" first).
    pace = SharedPace(store, ChainMap(pool.rates, keys.windows), sync_s=settings.spend_sync_s)
    metrics = RouterMetrics()
    answers = AnswerCache(settings.cache_ttl_s, int(settings.cache_mb * 1024 * 1024))
    usage = (
        UsagePublisher(
            settings.kafka_bootstrap_servers, service="provider_router", topic=settings.usage_topic
        )
        if settings.kafka_bootstrap_servers
        else None
    )
    synced = asyncio.Event()
    reloads = reloads_counter()
    watched = _watched_files(settings, pool, keys)

    @asynccontextmanager
    async def keep_spend(_: Litestar) -> AsyncIterator[None]:
        # First in, last out: spend booked while the other parts stop is still stored, and
        # the calls sent are told to the other routers on the database.
        await ledger.start()
        pace.start()
        try:
            yield
        finally:
            await pace.stop()
            await ledger.stop()

    @asynccontextmanager
    async def run_router(app: Litestar) -> AsyncIterator[None]:
        # The upstream session belongs to the event loop that serves, so it opens here.
        async with upstream_session() as http:
            upstreams = Upstreams(
                http,
                read_timeout_s=settings.request_timeout_s,
                connect_timeout_s=settings.connect_timeout_s,
                usage_reporter="provider_router" if usage else None,
            )
            # Made here: the dispatcher calls through the session this lifespan owns.
            dispatcher = Dispatcher(
                pool,
                upstreams,
                metrics,
                retries=settings.retries,
                retry_backoff_s=settings.retry_backoff_s,
                usage=usage,
                keys=keys,
            )
            app.state[ROUTING_STATE] = Routing(dispatcher, pool, answers, metrics)
            if usage is not None:
                usage.start()
            watch: asyncio.Task[None] | None = None
            registry: RegistryClient | None = None
            if settings.use_registry:
                registry = RegistryClient(settings.registry_url, token=settings.registry_token)
                watch = asyncio.create_task(
                    follow_registry(registry, pool, synced, local_token=settings.local_token)
                )
                # Serve at once if the registry is away; routes fill in when it answers.
                with suppress(TimeoutError):
                    await asyncio.wait_for(synced.wait(), 2.0)
            logger.info("router started", candidates=[c.id for c in pool.all()])
            try:
                yield
            finally:
                if watch is not None:
                    watch.cancel()
                    with suppress(asyncio.CancelledError):
                        await watch
                if registry is not None:
                    await registry.aclose()
                if usage is not None:
                    await usage.stop()

    app = create_service(
        name="provider_router",
        settings=settings,
        description="Routes a task to the cheapest capable model, with fallback and costs.",
        route_handlers=[
            Router(
                "/",
                route_handlers=[RouterController],
                dependencies={"routing": Provide(provide_routing, sync_to_thread=False)},
            )
        ],
        dependencies={
            "pool": pool,
            "settings": settings,
        },
        lifespan=[
            keep_spend,
            run_router,
            lambda _: watching(watched, settings.files_poll_s, reloads),
        ],
        health_check=partial(_health, pool, synced, settings.use_registry),
        collectors=[
            *metrics.collectors,
            reloads,
            PoolCollector(pool, keys),
            cache_bytes_gauge(answers),
            *(usage.collectors if usage else []),
        ],
    )
    app.state[GATE_STATE] = keys
    return app


app = build_or_exit(create_app, RouterSettings)
