"""OpenAI's chat requests as Anthropic's Messages API requests: text, images, tools, the tool
calls and results of a conversation, prompt-cache marks. (The answers, plain and streamed, come
back through ``anthropic_answers.py``.)

Nothing asked is dropped on the way. An answer in JSON (``response_format``, which the
Messages API lacks) is asked as a call of one forced tool whose input schema is the answer's
(the way LiteLLM and Anthropic's own guide do it), and that call comes back as the answer's
text. What the API cannot do as asked (several choices; a temperature above its 1; JSON
answers beside the caller's own tools, or in a shape that is no object) is refused before
sending, so that another candidate serves it (:func:`unservable`).
"""

from __future__ import annotations

from typing import Any

import msgspec

from libs.common.unreadable_json import UNREADABLE_JSON

ANTHROPIC_VERSION = "2023-06-01"
ANTHROPIC_DEFAULT_MAX_TOKENS = 1024
ANTHROPIC_MAX_TEMPERATURE = 1.0
_EPHEMERAL = {"type": "ephemeral"}
_IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
"""The images the Messages API takes."""
JSON_ANSWER_TOOL = "json_answer"
"""The forced tool that carries a ``response_format`` answer; its input is the answer."""


def anthropic_headers(api_key: str | None, request_id: str | None) -> dict[str, str]:
    headers = {"content-type": "application/json", "anthropic-version": ANTHROPIC_VERSION}
    if request_id:
        headers["x-request-id"] = request_id
    if api_key:
        headers["x-api-key"] = api_key
    return headers


def unservable(body: dict[str, Any]) -> str | None:
    """Why the Messages API cannot answer this OpenAI request as asked, or None. Not the
    request's fault: another candidate may serve it."""
    if body.get("n", 1) > 1:
        return "Anthropic makes one answer a request; n asks for more"
    if body.get("logprobs"):
        return "Anthropic's Messages API gives no log-probabilities"
    temperature = body.get("temperature")
    if temperature is not None and temperature > ANTHROPIC_MAX_TEMPERATURE:
        # OpenAI's range is 0 to 2: a request valid there, Anthropic would refuse with a 400.
        return f"Anthropic takes a temperature from 0 to 1, not {temperature}"
    for message in body.get("messages") or []:
        for part in message.get("content") if isinstance(message.get("content"), list) else []:
            media_type = _data_media_type(part)
            if media_type is not None and media_type not in _IMAGE_TYPES:
                return f"Anthropic takes JPEG, PNG, GIF and WebP images, not {media_type}"
        for call in message.get("tool_calls") or []:
            if _arguments(call) is None:
                # Anthropic takes them parsed; an OpenAI-compatible candidate, as they are.
                sent = str((call.get("function") or {}).get("arguments"))[:100]
                return (
                    "Anthropic takes a tool call's arguments as a JSON object; call "
                    f"{call.get('id')!r} has {sent!r}"
                )
    schema = _answer_schema(body)
    if schema is None:
        return None
    if body.get("tools"):
        return "Anthropic answers in JSON through a forced tool, not beside the caller's tools"
    if schema.get("type") != "object":
        return "Anthropic answers in JSON through a tool, whose input is a JSON object"
    return None


def _answer_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema ``response_format`` asks the answer in (any object for
    ``json_object``), or None."""
    answer_format = body.get("response_format") or {}
    if answer_format.get("type") == "json_object":
        return {"type": "object"}
    if answer_format.get("type") == "json_schema":
        schema = (answer_format.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            return {}
        if "type" not in schema and "properties" in schema:
            return {**schema, "type": "object"}  # what properties imply
        return schema
    return None


def to_anthropic(body: dict[str, Any], *, cache_prompts: bool = False) -> dict[str, Any]:
    """OpenAI's chat request as a Messages API request. The caller's ``cache_control`` marks
    on content parts (as LiteLLM and OpenRouter pass them) are kept; with ``cache_prompts``
    and no mark of the caller's, the system prompt's end and the conversation's end are
    marked, so that the next request with the same start reads it from Anthropic's cache.
    For a request :func:`unservable` passes."""
    system_messages = [m for m in body["messages"] if m.get("role") in ("system", "developer")]
    system = [block for m in system_messages for block in _blocks(m.get("content"))]
    turns = _turns(body["messages"])
    marked = any("cache_control" in b for b in system) or any(
        "cache_control" in b for turn in turns for b in turn["content"]
    )
    if cache_prompts and not marked:
        for blocks in (system, turns[-1]["content"] if turns else []):
            if blocks:
                blocks[-1] = {**blocks[-1], "cache_control": _EPHEMERAL}
        marked = True
    plain = not marked and all(b["type"] == "text" for turn in turns for b in turn["content"])
    request: dict[str, Any] = {
        "model": body["model"],
        "max_tokens": body.get("max_completion_tokens")
        or body.get("max_tokens")
        or ANTHROPIC_DEFAULT_MAX_TOKENS,
        # Plain strings where blocks would say nothing more (a string holds no mark).
        "messages": [
            {"role": turn["role"], "content": "".join(b["text"] for b in turn["content"])}
            for turn in turns
        ]
        if plain
        else turns,
        "stream": bool(body.get("stream")),
    }
    if system:
        plain_system = not marked and all(b["type"] == "text" for b in system)
        request["system"] = (
            "\n".join(_text(m.get("content")) for m in system_messages) if plain_system else system
        )
    for ours, theirs in (("temperature", "temperature"), ("top_p", "top_p")):
        if body.get(ours) is not None:
            request[theirs] = body[ours]
    stop = body.get("stop")
    if stop:
        request["stop_sequences"] = [stop] if isinstance(stop, str) else stop
    if body.get("user"):
        request["metadata"] = {"user_id": body["user"]}
    request.update(_tools(body))
    schema = _answer_schema(body)
    if schema is not None:
        request["tools"] = [
            {
                "name": JSON_ANSWER_TOOL,
                "description": "Give the answer as this JSON object.",
                "input_schema": schema,
            }
        ]
        request["tool_choice"] = {"type": "tool", "name": JSON_ANSWER_TOOL}
    return request


def answers_through_tool(body: dict[str, Any]) -> bool:
    """Whether the answer to ``body`` comes as the :data:`JSON_ANSWER_TOOL`'s call."""
    return _answer_schema(body) is not None


def _turns(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation as Anthropic's turns: an assistant's tool calls as ``tool_use``
    blocks, the tool results that answer them as ``tool_result`` blocks of one user turn."""
    turns: list[dict[str, Any]] = []
    for m in messages:
        role = m.get("role")
        if role == "tool":
            result = {
                "type": "tool_result",
                "tool_use_id": m.get("tool_call_id") or "",
                "content": _text(m.get("content")),
            }
            last = turns[-1] if turns else None
            if (
                last
                and last["role"] == "user"
                and last["content"][-1:]
                and all(b["type"] == "tool_result" for b in last["content"])
            ):
                last["content"].append(result)
            else:
                turns.append({"role": "user", "content": [result]})
        elif role in ("user", "assistant"):
            blocks = _blocks(m.get("content"))
            if role == "assistant":
                blocks += [_tool_use(call) for call in m.get("tool_calls") or []]
            turns.append({"role": role, "content": blocks})
    return turns


def _tool_use(call: dict[str, Any]) -> dict[str, Any]:
    """An assistant's tool call as a ``tool_use`` block (its arguments checked by
    :func:`unservable`)."""
    return {
        "type": "tool_use",
        "id": call.get("id") or "",
        "name": (call.get("function") or {}).get("name") or "",
        "input": _arguments(call) or {},
    }


def _arguments(call: dict[str, Any]) -> dict[str, Any] | None:
    """A tool call's arguments as the JSON object they should be, or None (malformed, or
    nested too deep to read)."""
    try:
        arguments = msgspec.json.decode((call.get("function") or {}).get("arguments") or "{}")
    except UNREADABLE_JSON:
        return None
    return arguments if isinstance(arguments, dict) else None


def _tools(body: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's ``tools``, ``tool_choice`` and ``parallel_tool_calls`` as Anthropic's."""
    translated: dict[str, Any] = {}
    functions = [t["function"] for t in body.get("tools") or [] if t.get("type") == "function"]
    if functions:
        translated["tools"] = [
            {
                "name": f["name"],
                **({"description": f["description"]} if f.get("description") else {}),
                "input_schema": f.get("parameters") or {"type": "object", "properties": {}},
            }
            for f in functions
        ]
    choice = body.get("tool_choice")
    anthropic_choice: dict[str, Any] | None = None
    if choice in ("auto", "none"):
        anthropic_choice = {"type": choice}
    elif choice == "required":
        anthropic_choice = {"type": "any"}
    elif isinstance(choice, dict) and choice.get("type") == "function":
        anthropic_choice = {"type": "tool", "name": choice["function"]["name"]}
    if body.get("parallel_tool_calls") is False and functions:
        anthropic_choice = {**(anthropic_choice or {"type": "auto"})}
        anthropic_choice["disable_parallel_tool_use"] = True
    if anthropic_choice is not None and functions:
        translated["tool_choice"] = anthropic_choice
    return translated


def _blocks(content: Any) -> list[dict[str, Any]]:
    """A message's text and images as Anthropic's blocks, with the caller's ``cache_control``;
    no empty block (Anthropic refuses them). An image outside a user's message is passed on
    for Anthropic to refuse (a 400 the caller gets as it is), not dropped."""
    if not isinstance(content, list):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for part in content:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "image_url":
            block = {"type": "image", "source": _image_source(part["image_url"]["url"])}
        elif part.get("text"):
            block = {"type": "text", "text": part["text"]}
        else:
            continue
        if part.get("cache_control"):
            block["cache_control"] = part["cache_control"]
        blocks.append(block)
    return blocks


def _image_source(url: str) -> dict[str, Any]:
    """An image's place as Anthropic's ``source``: its bytes from a base64 data URL (the
    request schema holds that shape), else the URL for Anthropic to fetch."""
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        return {"type": "base64", "media_type": header[5:].split(";", maxsplit=1)[0], "data": data}
    return {"type": "url", "url": url}


def _data_media_type(part: Any) -> str | None:
    """The media type of an image part's data URL, or None (no image, or a URL)."""
    if not isinstance(part, dict) or part.get("type") != "image_url":
        return None
    url = str((part.get("image_url") or {}).get("url", ""))
    return url[5:].split(";", maxsplit=1)[0] if url.startswith("data:") else None


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content or ""
