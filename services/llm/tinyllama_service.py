"""TinyLlama wrapper: ``uvicorn services.llm.tinyllama_service:app --port 8051``.

Embedded SmolLM2 by default; ``TINYLLAMA_BACKEND=ollama`` serves tinyllama:1.1b from the
Ollama on 11435.
"""

from __future__ import annotations

from typing import ClassVar

from litestar import Litestar

from libs.common.constants import TINYLLAMA_PORT
from libs.common.settings import build_or_exit
from services.llm.profiles import TINYLLAMA
from services.llm.service import build_runtime, create_llm_app
from services.llm.settings import LLMServiceSettings


class TinyLlamaSettings(LLMServiceSettings, frozen=True, kw_only=True):
    env_prefix: ClassVar[str] = "TINYLLAMA_"
    port: int = TINYLLAMA_PORT


def create_app(settings: TinyLlamaSettings) -> Litestar:
    return create_llm_app(build_runtime(settings, TINYLLAMA))


app = build_or_exit(create_app, TinyLlamaSettings)
