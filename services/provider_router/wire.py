"""The router's own request and answer bodies (extending the OpenAI-compatible ones of
``libs/common/schemas``): ``/route``'s question and decision, chat and embeddings with how to
route them, the lists of candidates and desk keys."""

from __future__ import annotations

from typing import Annotated

import msgspec

from libs.common.schemas.embeddings import EmbeddingRequest
from libs.common.schemas.llm import ChatCompletionRequest
from libs.common.schemas.workflows import MODEL_OR_CAPABILITY_SCHEMA
from services.provider_router.desk_keys import KeyState
from services.provider_router.dispatcher import Considered
from services.provider_router.pool import CandidateState
from services.provider_router.strategies import Strategy


class RouteRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Where a task would go: by a capability or by a model, not both (chat, given both,
    routes by the capability; a plan of the two together would show what no call does)."""

    capability: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    model: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | None = None
    prefer_local: bool = True
    strategy: Strategy = "balanced"
    images: bool = False
    """The task holds images: only candidates that take them (``vision``)."""

    def __post_init__(self) -> None:
        if self.model is not None and self.capability is not None:
            raise ValueError(
                f"give a model ({self.model!r}) or a capability ({self.capability!r}), not both"
            )


RouteBody = Annotated[RouteRequest, msgspec.Meta(extra_json_schema=MODEL_OR_CAPABILITY_SCHEMA)]
"""``/route``'s body as its schema says it: the "not both" of ``__post_init__`` included."""


class RoutedTo(msgspec.Struct, kw_only=True):
    provider: str
    model: str
    endpoint: str
    agent_id: str | None
    candidate_id: str


class RouteDecision(RoutedTo, kw_only=True):
    reason: str
    fallbacks: list[RoutedTo]
    considered: list[Considered]


class RouterChatRequest(ChatCompletionRequest, kw_only=True):
    """OpenAI's chat request plus how to route it."""

    strategy: Strategy = "balanced"
    prefer_local: bool = True


class RouterEmbeddingRequest(EmbeddingRequest, kw_only=True):
    """OpenAI's embeddings request plus how to route it (by ``capability`` or ``model``)."""

    capability: str | None = None
    strategy: Strategy = "balanced"
    prefer_local: bool = True


class ProviderList(msgspec.Struct, kw_only=True):
    candidates: list[CandidateState]


class KeyList(msgspec.Struct, kw_only=True):
    keys: list[KeyState]
