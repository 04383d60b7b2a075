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


def tokens_cost(
    prices: TokenPrices, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0
) -> float:
    """USD. ``prompt_tokens`` counts the ``cached_tokens`` among them, as OpenAI's usage does."""
    cached_price = prices.cached_input_per_1k
    cached = min(cached_tokens, prompt_tokens) if cached_price is not None else 0
    return (
        (prompt_tokens - cached) * prices.input_per_1k
        + cached * (cached_price or 0.0)
        + completion_tokens * prices.output_per_1k
    ) / 1000
