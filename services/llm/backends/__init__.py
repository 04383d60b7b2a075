"""Model backends, chosen per service by ``<PREFIX>BACKEND`` (or ``LLM_BACKEND``)."""

from __future__ import annotations

from pathlib import Path

from libs.common.settings import env_names, require_extra
from services.llm.backends.base import ChatBackend
from services.llm.backends.ollama import OllamaBackend
from services.llm.backends.openai import OpenAIBackend
from services.llm.model_files import packaged_gguf
from services.llm.profiles import LLMProfile
from services.llm.settings import LLMServiceSettings


def backend_for(settings: LLMServiceSettings, profile: LLMProfile) -> ChatBackend:
    if settings.backend == "ollama":
        return OllamaBackend(
            settings.ollama_base_url or profile.ollama_url,
            model=settings.model_name or profile.ollama_model,
            timeout_s=settings.timeout_s,
        )
    if settings.backend == "openai":
        return OpenAIBackend(
            settings.openai_base_url,
            model=settings.model_name,
            api_key=settings.openai_api_key,
            timeout_s=settings.timeout_s,
        )
    require_extra(
        env_names(type(settings), "backend")[0],
        "the embedded backend",
        "embedded",
        ("llama_cpp",),
        otherwise=", or set it to ollama or openai",
    )
    # Here, not at the top: llama.cpp is the embedded extra's, which a host that runs only
    # remote backends leaves out (deploy/README.md).
    from services.llm.backends.embedded import EmbeddedBackend  # noqa: PLC0415

    return EmbeddedBackend(
        Path(settings.model_path) if settings.model_path else packaged_gguf(),
        served_name=settings.model_name,
        n_ctx=settings.context_length,
        n_threads=settings.threads,
        n_threads_batch=settings.batch_threads,
        timeout_s=settings.timeout_s,
        default_max_tokens=settings.default_max_tokens,
        parallel=settings.parallel,
        weights_cache_dir=Path(settings.weights_cache_dir) if settings.convert_weights else None,
        flash_attention=settings.flash_attention,
        reuse_prompts=settings.prompt_cache,
        prompt_store_bytes=settings.prompt_store_mb * 2**20,
        prompt_file=(
            Path(settings.prompt_store_dir) / f"{profile.service}.prompts"
            if settings.prompt_store_dir
            else None
        ),
        prompt_save_interval_s=settings.prompt_save_interval_s,
    )
