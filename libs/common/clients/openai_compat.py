"""Small facts about OpenAI-compatible servers that several PAS parts need."""

from __future__ import annotations


def openai_base_url(url: str) -> str:
    """Accept ``http://host:8000`` as well as ``http://host:8000/v1``."""
    url = url.rstrip("/")
    return url if url.endswith("/v1") else f"{url}/v1"
