"""What a model call's tokens cost at prices per 1,000 tokens: the router's spend and the
runner's run cost price them alike."""

from __future__ import annotations

from typing import Protocol


class TokenPrices(Protocol):
    """USD per 1,000 tokens (the router's candidates and the runner's model prices)."""

    @property
    def input_per_1k(self) -> float: ...

    @property
    def output_per_1k(self) -> float: ...

    @property
    def cached_input_per_1k(self) -> float | None:
        """A prompt token a server's prompt cache gave; ``None``: what any prompt token costs."""

    @property
    def cache_write_per_1k(self) -> float | None:
        """A prompt token written to a provider's prompt cache (Anthropic bills 1.25 times its
        input price for a five-minute entry); ``None``: what any prompt token costs."""


def tokens_cost(
    prices: TokenPrices,
    prompt_tokens: int,
    completion_tokens: int,
    cached_tokens: int = 0,
    written_tokens: int = 0,
) -> float:
    """USD. ``prompt_tokens`` counts the ``cached_tokens`` (read from a prompt cache) and the
    ``written_tokens`` (written to it) among them, as OpenAI's usage does."""
    cached_price = prices.cached_input_per_1k
    cached = min(cached_tokens, prompt_tokens) if cached_price is not None else 0
    written_price = prices.cache_write_per_1k
    written = min(written_tokens, prompt_tokens - cached) if written_price is not None else 0
    return (
        (prompt_tokens - cached - written) * prices.input_per_1k
        + cached * (cached_price or 0.0)
        + written * (written_price or 0.0)
        + completion_tokens * prices.output_per_1k
    ) / 1000
