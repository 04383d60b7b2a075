"""OpenAI's chat completions as the PAS LLM services and the provider router speak them (Ollama's
API is ``ollama.py``, which shares the sampling bounds and tools defined here).

Requests accept fields they do not use (real clients send many); what PAS does not support is
refused by the service with a 400 naming the field, never silently ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

import msgspec

from libs.common.schemas.patterns import TEXT_END

Role = Literal["system", "user", "assistant", "tool", "developer"]
Temperature = Annotated[float, msgspec.Meta(ge=0.0, le=2.0)]
TopP = Annotated[float, msgspec.Meta(gt=0.0, le=1.0)]
TopK = Annotated[int, msgspec.Meta(ge=-1, le=1_000_000)]
"""Draw among this many likeliest tokens only; 0 or -1: all (llama.cpp's, vLLM's, Ollama's)."""
MinP = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
"""Drop tokens less likely than this share of the likeliest one's probability; 0: none."""
MaxTokens = Annotated[int, msgspec.Meta(ge=1, le=131_072)]
LogitBias = Annotated[float, msgspec.Meta(ge=-100.0, le=100.0)]
TokenId = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,9}" + TEXT_END)]
"""A token id as a JSON object's key (OpenAI's ``logit_bias``)."""
Penalty = Annotated[float, msgspec.Meta(ge=-2.0, le=2.0)]
"""OpenAI's frequency and presence penalties: subtracted from a repeated token's logit."""
RepeatPenalty = Annotated[float, msgspec.Meta(gt=0.0, le=2.0)]
"""llama.cpp's and Ollama's: a repeated token's logit divided by it; 1.0 is none."""
RepeatLastN = Annotated[int, msgspec.Meta(ge=-1, le=131_072)]
"""How many of the answer's last tokens count as repeated (Ollama: -1 the whole context)."""


class TextPart(msgspec.Struct, kw_only=True, tag_field="type", tag="text"):
    text: str


_IMAGE_ADDRESS = r"^(https?://|data:image/[A-Za-z0-9.+-]+;base64,)"
ImageAddress = Annotated[str, msgspec.Meta(pattern=_IMAGE_ADDRESS, max_length=20_000_000)]
"""Where an image is: an http(s) URL, or the image itself as a base64 data URL (OpenAI's)."""


class ImageURL(msgspec.Struct, kw_only=True):
    url: ImageAddress
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(msgspec.Struct, kw_only=True, tag_field="type", tag="image_url"):
    """An image in a user's message, for a model that takes images (``vision`` in the
    router's providers file); the PAS LLM services read text only and refuse it with a 400."""

    image_url: ImageURL


ContentPart = TextPart | ImagePart


ToolName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}" + TEXT_END)]
"""OpenAI's rule for a function's name."""


class FunctionCall(msgspec.Struct, kw_only=True):
    name: str
    arguments: str
    """The arguments as a JSON text (OpenAI's shape: a string, not an object)."""


class ToolCall(msgspec.Struct, kw_only=True):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class FunctionDefinition(msgspec.Struct, kw_only=True):
    name: ToolName
    description: str | None = None
    parameters: dict[str, Any] | None = None
    """A JSON Schema of the arguments (an object); none: any object."""
    strict: bool | None = None


class ToolDefinition(msgspec.Struct, kw_only=True):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(msgspec.Struct, kw_only=True):
    name: str


class NamedToolChoice(msgspec.Struct, kw_only=True):
    """``tool_choice`` naming the one function to call."""

    type: Literal["function"]
    function: NamedFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class ChatMessage(msgspec.Struct, kw_only=True):
    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    """An assistant's message: the calls it made."""
    tool_call_id: str | None = None
    """A tool's message: the call it answers."""

    def text(self) -> str:
        """The message's text (its images left out: see :meth:`has_images`)."""
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content if isinstance(part, TextPart))
        return self.content or ""

    def has_images(self) -> bool:
        return isinstance(self.content, list) and any(
            isinstance(part, ImagePart) for part in self.content
        )


class JSONSchemaFormat(msgspec.Struct, kw_only=True):
    name: str = "response"
    schema_: dict[str, Any] = msgspec.field(name="schema", default_factory=dict)
    strict: bool | None = None
    description: str | None = None


class ResponseFormat(msgspec.Struct, kw_only=True):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None
    # llama.cpp's server and llama-cpp-python accept the schema here with json_object.
    schema_: dict[str, Any] | None = msgspec.field(name="schema", default=None)


class StreamOptions(msgspec.Struct, kw_only=True):
    include_usage: bool = False


TopLogprobs = Annotated[int, msgspec.Meta(ge=0, le=20)]


class TopLogprob(msgspec.Struct, kw_only=True):
    token: str
    logprob: float
    bytes: list[int] | None = None
    """The token's UTF-8 bytes (a character may span several tokens)."""


class TokenLogprob(msgspec.Struct, kw_only=True):
    """One answer token: its log-probability and the likeliest alternatives at its place."""

    token: str
    logprob: float
    bytes: list[int] | None = None
    top_logprobs: list[TopLogprob] = msgspec.field(default_factory=list)


class ChoiceLogprobs(msgspec.Struct, kw_only=True):
    content: list[TokenLogprob] | None = None


MAX_CHOICES: Final = 16
"""The most answers one chat completion may ask for (``n``)."""


class ChatCompletionRequest(msgspec.Struct, kw_only=True):
    messages: Annotated[list[ChatMessage], msgspec.Meta(min_length=1)]
    model: str | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    # llama.cpp server's and vLLM's extensions (OpenAI has neither).
    top_k: TopK | None = None
    min_p: MinP | None = None
    max_tokens: MaxTokens | None = None
    max_completion_tokens: MaxTokens | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    frequency_penalty: Penalty | None = None
    presence_penalty: Penalty | None = None
    # llama.cpp server's extensions (vLLM's repetition_penalty is the same rule).
    repeat_penalty: RepeatPenalty | None = None
    repeat_last_n: RepeatLastN | None = None
    dry_multiplier: Annotated[float, msgspec.Meta(ge=0.0, le=10.0)] | None = None
    dry_base: Annotated[float, msgspec.Meta(ge=1.0, le=10.0)] | None = None
    dry_allowed_length: Annotated[int, msgspec.Meta(ge=1, le=1024)] | None = None
    dry_penalty_last_n: RepeatLastN | None = None
    n: Annotated[int, msgspec.Meta(ge=1, le=MAX_CHOICES)] = 1
    """How many answers (``choices``) to make, each drawn on its own (with a ``seed``, choice
    ``i`` with ``seed + i``); ``usage`` counts the prompt once and every answer's tokens."""
    logprobs: bool = False
    """Each answer token's log-probability under the model (``choices[].logprobs``)."""
    top_logprobs: TopLogprobs | None = None
    """With ``logprobs``: also the likeliest tokens at each position, this many."""
    response_format: ResponseFormat | None = None
    tools: list[ToolDefinition] | None = None
    tool_choice: ToolChoice | None = None
    """None: "auto" with tools, "none" without."""
    parallel_tool_calls: bool | None = None
    """Several calls in one answer; None: one (llama.cpp server's default: a small model asked
    for a list repeats one call until ``max_tokens``)."""
    logit_bias: dict[TokenId, LogitBias] | None = None
    """Added to the logits of the tokens whose ids are the keys, as OpenAI has it: -100 bans a
    token, 100 all but forces it. The ids are the served model's tokenizer's, not tiktoken's."""
    user: str | None = None
    # OpenAI's legacy function calling: refused with a 400 that says to send ``tools``.
    functions: list[Any] | None = None
    function_call: Any = None
    # OpenAI's, for what its models do beyond answering in text: the PAS LLM services refuse
    # them with a 400 (the router passes them on to a candidate that may serve them).
    modalities: list[str] | None = None
    audio: dict[str, Any] | None = None
    reasoning_effort: str | None = None
    web_search_options: dict[str, Any] | None = None
    # PAS extension used by the provider router: route by capability instead of model.
    capability: str | None = None


class PromptTokensDetails(msgspec.Struct, kw_only=True):
    cached_tokens: int = 0
    """The prompt's first tokens taken from a cache instead of read (OpenAI's field)."""


class Usage(msgspec.Struct, kw_only=True, omit_defaults=True):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None
    """Left out where the backend does not say what it cached."""
    cache_creation_input_tokens: int | None = None
    """Of the prompt's tokens, those written to the provider's prompt cache, which it bills
    above a read token (Anthropic's field, kept under its name as LiteLLM keeps it); left out
    where the provider does not say."""

    @property
    def cached_tokens(self) -> int | None:
        """Of the prompt's tokens, those taken from a prompt cache; ``None`` when not said."""
        details = self.prompt_tokens_details
        return None if details is None else details.cached_tokens


class AssistantMessage(msgspec.Struct, kw_only=True):
    role: Literal["assistant"] = "assistant"
    content: str | None = ""
    """None when the answer is tool calls."""
    tool_calls: list[ToolCall] | None = None


class ChatChoice(msgspec.Struct, kw_only=True):
    index: int = 0
    message: AssistantMessage
    finish_reason: str | None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletion(msgspec.Struct, kw_only=True):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    system_fingerprint: str | None = None


class FunctionCallDelta(msgspec.Struct, kw_only=True, omit_defaults=True):
    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A part of a tool call in a stream; a client joins the parts of the same ``index``."""

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionCallDelta | None = None


class ChunkDelta(msgspec.Struct, kw_only=True, omit_defaults=True):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class ChunkChoice(msgspec.Struct, kw_only=True):
    index: int = 0
    delta: ChunkDelta
    finish_reason: str | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionChunk(msgspec.Struct, kw_only=True):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


class ModelCard(msgspec.Struct, kw_only=True):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "pas"


class ModelList(msgspec.Struct, kw_only=True):
    object: Literal["list"] = "list"
    data: list[ModelCard]
