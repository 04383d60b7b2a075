"""The official ``openai`` and ``ollama`` clients and LangChain's ``ChatOllama`` (and
``OllamaEmbeddings``) work with a PAS LLM service (a real uvicorn process running the embedded
model) as their base URL, tool calls and embeddings included (LangGraph's tool loop on
ChatOllama: tests/langgraph_runner/test_tool_calling_chat.py)."""

from __future__ import annotations

import json
from typing import Any, cast

import ollama
import openai
import pytest
from langchain_ollama import ChatOllama, OllamaEmbeddings
from openai.types.chat import (
    ChatCompletionMessageFunctionToolCall,
    ChatCompletionMessageParam,
    ChatCompletionToolParam,
)

from tests.llm.test_tool_calls import PRICE
from tests.support.processes import ServiceProcess

QUESTION: list[ChatCompletionMessageParam] = [{"role": "user", "content": "What is a bond?"}]


def test_openai_client_plain_and_streaming(llm_process: ServiceProcess) -> None:
    client = openai.OpenAI(base_url=f"{llm_process.url}/v1", api_key="unused")

    plain = client.chat.completions.create(
        model="smollm2-135m-instruct",
        messages=QUESTION,
        temperature=0,
        max_tokens=24,
    )
    stream = client.chat.completions.create(
        model="smollm2-135m-instruct",
        messages=QUESTION,
        temperature=0,
        max_tokens=24,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    assert plain.choices[0].message.content
    assert plain.usage is not None
    assert plain.usage.completion_tokens <= 24
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == plain.choices[0].message.content
    streamed_usage = chunks[-1].usage
    assert streamed_usage is not None
    assert streamed_usage.model_dump(exclude={"prompt_tokens_details"}) == plain.usage.model_dump(
        exclude={"prompt_tokens_details"}
    )
    # The same prompt again: the client reads what the service took from its prompt cache.
    assert streamed_usage.prompt_tokens_details is not None
    assert 0 < (streamed_usage.prompt_tokens_details.cached_tokens or 0) < plain.usage.prompt_tokens
    assert [m.id for m in client.models.list()] == ["smollm2-135m-instruct"]


def test_openai_client_reads_several_choices(llm_process: ServiceProcess) -> None:
    client = openai.OpenAI(base_url=f"{llm_process.url}/v1", api_key="unused")

    answer = client.chat.completions.create(
        model="smollm2-135m-instruct",
        messages=QUESTION,
        temperature=1.0,
        seed=11,
        max_tokens=12,
        n=3,
    )

    assert [choice.index for choice in answer.choices] == [0, 1, 2]
    assert all(choice.message.content for choice in answer.choices)


def test_openai_ollama_and_langchain_clients_read_the_same_embeddings(
    llm_process: ServiceProcess,
) -> None:
    texts = ["Coupons are interest.", "A bond pays coupons."]
    client = openai.OpenAI(base_url=f"{llm_process.url}/v1", api_key="unused")

    # The openai client asks for base64 unless told otherwise, and decodes it.
    from_openai = client.embeddings.create(model="smollm2-135m-instruct", input=texts)
    from_ollama = ollama.Client(host=llm_process.url).embed(model="smollm2", input=texts)
    from_langchain = OllamaEmbeddings(model="smollm2", base_url=llm_process.url).embed_documents(
        texts
    )

    vectors = [item.embedding for item in from_openai.data]
    assert len(vectors) == 2
    assert len(vectors[0]) == 576
    for other in (from_ollama.embeddings, from_langchain):
        assert all(
            abs(a - b) < 1e-5
            for ours, theirs in zip(vectors, other, strict=True)
            for a, b in zip(ours, theirs, strict=True)
        )


def test_openai_client_reads_the_logprobs(llm_process: ServiceProcess) -> None:
    client = openai.OpenAI(base_url=f"{llm_process.url}/v1", api_key="unused")

    answer = client.chat.completions.create(
        model="smollm2-135m-instruct",
        messages=QUESTION,
        temperature=0,
        max_tokens=12,
        logprobs=True,
        top_logprobs=2,
    )

    choice = answer.choices[0]
    assert choice.logprobs is not None
    assert choice.logprobs.content
    spelled = b"".join(bytes(token.bytes or []) for token in choice.logprobs.content)
    assert spelled == (choice.message.content or "").encode()
    assert all(len(token.top_logprobs) == 2 for token in choice.logprobs.content)


def test_openai_client_structured_output(llm_process: ServiceProcess) -> None:
    client = openai.OpenAI(base_url=f"{llm_process.url}/v1", api_key="unused")
    schema: dict[str, object] = {
        "type": "object",
        "properties": {"sentiment": {"type": "string", "enum": ["bullish", "bearish"]}},
        "required": ["sentiment"],
    }

    answer = client.chat.completions.create(
        model="smollm2-135m-instruct",
        messages=[{"role": "user", "content": "Profits doubled and the stock soared."}],
        temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": schema}},
    )

    assert json.loads(answer.choices[0].message.content or "")["sentiment"] in {
        "bullish",
        "bearish",
    }


def test_ollama_client_chat_generate_list_and_ps(llm_process: ServiceProcess) -> None:
    client = ollama.Client(host=llm_process.url)

    chat = client.chat(
        model="smollm2-135m-instruct",
        messages=QUESTION,
        options={"temperature": 0, "num_predict": 16},
    )
    streamed = list(
        client.chat(
            model="smollm2-135m-instruct",
            messages=QUESTION,
            options={"temperature": 0, "num_predict": 16},
            stream=True,
        )
    )
    generated = client.generate(
        model="smollm2-135m-instruct", prompt="What is a bond?", options={"num_predict": 8}
    )
    listed = client.list()
    loaded = client.ps()

    assert chat.message.content
    assert chat.eval_count is not None
    assert chat.eval_count <= 16
    assert "".join(part.message.content or "" for part in streamed) == chat.message.content
    assert streamed[-1].done
    assert generated.response
    assert [m.model for m in listed.models] == ["smollm2-135m-instruct"]
    [running] = loaded.models
    assert running.model == "smollm2-135m-instruct"
    assert running.size == listed.models[0].size
    assert (running.size or 0) > 10_000_000
    assert running.size_vram == 0  # the embedded build runs on the CPU
    assert running.context_length == 2048  # LLAMA31_8B_CONTEXT_LENGTH of the process
    assert running.expires_at is not None
    assert running.expires_at.year == 9999  # never unloaded


def test_chat_ollama_invoke_and_stream(llm_process: ServiceProcess) -> None:
    chat = ChatOllama(
        model="smollm2-135m-instruct", base_url=llm_process.url, temperature=0, num_predict=16
    )

    message = chat.invoke("What is a bond?")
    pieces = list(chat.stream("What is a bond?"))

    assert isinstance(message.content, str)
    assert message.content
    assert "".join(str(p.content) for p in pieces) == message.content
    assert message.usage_metadata is not None
    assert message.usage_metadata["output_tokens"] <= 16


# The tool the HTTP tests of tool calls offer, as the openai client types it.
PRICE_TOOL = cast(ChatCompletionToolParam, PRICE)
PRICE_QUESTION: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "What is Apple's stock price?"}
]
# Apple's price asked with the price tool to be called, at temperature 0.
ASK_PRICE: dict[str, Any] = {
    "model": "smollm2-135m-instruct",
    "messages": PRICE_QUESTION,
    "tools": [PRICE_TOOL],
    "tool_choice": "required",
    "temperature": 0,
}


def test_openai_client_calls_a_tool_and_reads_its_result(llm_process: ServiceProcess) -> None:
    client = openai.OpenAI(base_url=f"{llm_process.url}/v1", api_key="unused")

    called = client.chat.completions.create(**ASK_PRICE)
    [call] = called.choices[0].message.tool_calls or []
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)
    answered = client.chat.completions.create(
        model="smollm2-135m-instruct",
        messages=[
            *PRICE_QUESTION,
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {
                            "name": call.function.name,
                            "arguments": call.function.arguments,
                        },
                    }
                ],
            },
            {"role": "tool", "tool_call_id": call.id, "content": '{"price": 189.5}'},
        ],
        tools=[PRICE_TOOL],
        tool_choice="none",
        temperature=0,
        max_tokens=32,
    )

    assert called.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_price"
    assert json.loads(call.function.arguments)["ticker"] in {"AAPL", "MSFT", "NVDA"}
    assert answered.choices[0].message.content
    assert answered.choices[0].message.tool_calls is None


def test_openai_client_streams_a_call_s_arguments_as_they_are_written(
    llm_process: ServiceProcess,
) -> None:
    """The SDK's stream helper gives the arguments' pieces as they come (a delta event
    each), then the call it joined: the call answered whole."""
    client = openai.OpenAI(base_url=f"{llm_process.url}/v1", api_key="unused")

    whole = client.chat.completions.create(**ASK_PRICE)
    with client.chat.completions.stream(**ASK_PRICE) as stream:
        events = list(stream)
        final = stream.get_final_completion()

    pieces = [e.arguments_delta for e in events if e.type == "tool_calls.function.arguments.delta"]
    [done] = [e for e in events if e.type == "tool_calls.function.arguments.done"]
    [call] = whole.choices[0].message.tool_calls or []
    [joined] = final.choices[0].message.tool_calls or []
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)
    assert isinstance(joined, ChatCompletionMessageFunctionToolCall)
    assert len(pieces) > 1
    assert (done.name, json.loads(done.arguments)) == (
        call.function.name,
        json.loads(call.function.arguments),
    )
    assert json.loads(joined.function.arguments) == json.loads(call.function.arguments)
    assert final.choices[0].finish_reason == "tool_calls"


def test_the_clients_show_why_a_request_was_refused(llm_process: ServiceProcess) -> None:
    """A refusal reaches the official clients' exceptions as its reason, not a bare status:
    the problem body carries the error as each API's clients read it (``error``)."""
    client = openai.OpenAI(base_url=f"{llm_process.url}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model="smollm2-135m-instruct", messages=QUESTION, temperature=9
        )
    with pytest.raises(ollama.ResponseError) as refused_as_ollama:
        ollama.Client(host=llm_process.url).chat(
            model="smollm2-135m-instruct", messages=list(QUESTION), think=True
        )

    assert "temperature" in refused.value.message
    assert refused.value.param == "temperature"
    assert refused.value.type == "invalid_request_error"
    assert refused_as_ollama.value.status_code == 400
    assert refused_as_ollama.value.error.startswith("think: ")
