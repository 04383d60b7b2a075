"""Llama 3.1 8B wrapper: ``uvicorn services.llm.llama31_8b_service:app --port 8050``.

Embedded SmolLM2 by default; ``LLAMA31_8B_BACKEND=ollama`` serves llama3.1:8b from Ollama.
"""

from __future__ import annotations

from typing import ClassVar

from litestar import Litestar

from libs.common.constants import LLAMA31_8B_PORT
from libs.common.settings import build_or_exit
from services.llm.profiles import LLAMA31_8B
from services.llm.service import build_runtime, create_llm_app
from services.llm.settings import LLMServiceSettings


class Llama31Settings(LLMServiceSettings, frozen=True, kw_only=True):
    env_prefix: ClassVar[str] = "LLAMA31_8B_"
    port: int = LLAMA31_8B_PORT


def create_app(settings: Llama31Settings) -> Litestar:
    return create_llm_app(build_runtime(settings, LLAMA31_8B))


app = build_or_exit(create_app, Llama31Settings)
