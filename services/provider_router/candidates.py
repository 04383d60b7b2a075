"""Who can answer: local LLM agents from the registry and remote providers from a TOML file."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from libs.common.errors import SettingsError
from libs.common.schemas.agents import RegisteredAgent
from libs.common.token_prices import tokens_cost

ProviderKind = Literal["local", "openai", "anthropic"]
LOCAL_PROVIDER = "local"
"""The provider name of PAS's own LLM services (found in the registry)."""
"""``local``: a PAS LLM service; ``openai``: any OpenAI-compatible API; ``anthropic``: Messages."""

Price = Annotated[float, msgspec.Meta(ge=0)]
Limit = Annotated[int, msgspec.Meta(ge=1)]


class Candidate(msgspec.Struct, frozen=True, kw_only=True):
    """One model at one place, with what it can do and what it costs."""

    id: str
    provider: str
    kind: ProviderKind
    model: str
    endpoint: str
    capabilities: frozenset[str]
    vision: bool = False
    """It takes images in a request (OpenAI's ``image_url`` parts): a request holding one goes
    only to such candidates."""
    input_per_1k: float = 0.0
    output_per_1k: float = 0.0
    cached_input_per_1k: float | None = None
    """What an input token the provider took from its prompt cache costs (OpenAI's and
    Anthropic's cost a tenth to a half of one read); ``None``: what any input token does."""
    cache_write_per_1k: float | None = None
    """What an input token written to the provider's prompt cache costs (Anthropic's: 1.25
    times an input token, for a five-minute entry); ``None``: what any input token does."""
    cache_prompts: bool = False
    """Mark each request's system prompt and conversation for the provider's prompt cache
    where the caller marked nothing (Anthropic's ``cache_control``)."""
    agent_id: str | None = None
    api_key: str | None = None
    unavailable: str | None = None
    """Why it cannot be used (no API key), or None."""
    daily_budget_usd: float | None = None
    rpm: int | None = None
    """The provider's limit on requests a minute to this model (passed over at it)."""
    tpm: int | None = None
    """The provider's limit on tokens a minute to this model (passed over at it)."""

    @property
    def blended_price(self) -> float:
        return self.input_per_1k + self.output_per_1k

    def cost(
        self,
        prompt_tokens: int,
        completion_tokens: int,
        cached_tokens: int = 0,
        written_tokens: int = 0,
    ) -> float:
        return tokens_cost(self, prompt_tokens, completion_tokens, cached_tokens, written_tokens)


def local_candidates(agents: list[RegisteredAgent], token: str | None = None) -> list[Candidate]:
    """Passing REST agents that say which model they run are LLM candidates; ``token`` is
    what the PAS LLM services ask of callers when they are guarded."""
    found = []
    for agent in agents:
        model = agent.metadata.get("model")
        if agent.status != "passing" or agent.transport != "rest" or not isinstance(model, str):
            continue
        found.append(
            Candidate(
                id=f"{LOCAL_PROVIDER}/{agent.agent_id}",
                provider=LOCAL_PROVIDER,
                kind="local",
                model=model,
                endpoint=agent.endpoint.rstrip("/"),
                capabilities=frozenset(agent.capabilities),
                # The PAS LLM services read text only; an agent serving a vision model says so.
                vision=agent.metadata.get("vision") is True,
                input_per_1k=agent.cost_per_1k_tokens,
                output_per_1k=agent.cost_per_1k_tokens,
                agent_id=agent.agent_id,
                api_key=token,
            )
        )
    return found


class ModelEntry(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    capabilities: list[str]
    vision: bool = False
    """The model takes images (requests holding images go only to such models)."""
    input_per_1k: Price = 0.0
    output_per_1k: Price = 0.0
    cached_input_per_1k: Price | None = None
    cache_write_per_1k: Price | None = None
    rpm: Limit | None = None
    tpm: Limit | None = None


class ProviderEntry(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    kind: Literal["openai", "anthropic"] = "openai"
    base_url: str
    api_key_env: str | None = None
    """Environment variable holding the key; keys are never written in the file."""
    daily_budget_usd: Price | None = None
    cache_prompts: bool = False
    """Anthropic only: mark every request's system prompt and conversation so far for its
    prompt cache, unless the caller marked parts itself (opt-in: a write costs more than a
    read of the same tokens, and pays only when the same start comes back within minutes)."""
    models: list[ModelEntry]


class ProvidersFile(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    providers: list[ProviderEntry] = msgspec.field(default_factory=list)


def remote_candidates(path: str | None, environ: dict[str, str] | None = None) -> list[Candidate]:
    if not path:
        return []
    env = os.environ if environ is None else environ
    try:
        config = msgspec.convert(tomllib.loads(Path(path).read_text()), ProvidersFile)
    except (OSError, tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
        raise SettingsError("ROUTER_PROVIDERS_FILE", f"{path}: {exc}") from exc
    found = []
    for provider in config.providers:
        if provider.cache_prompts and provider.kind != "anthropic":
            # OpenAI-compatible servers cache prompt starts by themselves, unmarked.
            raise SettingsError(
                "ROUTER_PROVIDERS_FILE",
                f'{path}: provider {provider.name!r}: cache_prompts is for kind = "anthropic"',
            )
        key = env.get(provider.api_key_env) if provider.api_key_env else None
        missing = (
            f"no API key: set {provider.api_key_env}" if provider.api_key_env and not key else None
        )
        for model in provider.models:
            found.append(
                Candidate(
                    id=f"{provider.name}/{model.name}",
                    provider=provider.name,
                    kind=provider.kind,
                    model=model.name,
                    endpoint=provider.base_url.rstrip("/"),
                    capabilities=frozenset(model.capabilities),
                    vision=model.vision,
                    input_per_1k=model.input_per_1k,
                    output_per_1k=model.output_per_1k,
                    cached_input_per_1k=model.cached_input_per_1k,
                    cache_write_per_1k=model.cache_write_per_1k,
                    cache_prompts=provider.cache_prompts,
                    rpm=model.rpm,
                    tpm=model.tpm,
                    api_key=key,
                    unavailable=missing,
                    daily_budget_usd=provider.daily_budget_usd,
                )
            )
    return found
