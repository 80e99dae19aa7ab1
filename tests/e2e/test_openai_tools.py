"""Tool calling with the official `openai` SDK, through every wire protocol Johi translates.

The mock provider of each protocol answers a request that declares tools with one call to the
first tool (its required arguments filled in from the schema: "mock" for strings), and a
request whose last message is a tool result with its usual text reply. So the same round trip
runs against OpenAI-, Anthropic-, Gemini-, Bedrock- and Cohere-protocol models, and any
translation bug in either direction (request, answer, stream) fails here.
"""

import json

import pytest
from openai import OpenAI

REPLY = "This is a deterministic reply from the Johi mock upstream."

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}
CLOCK = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The current time in a time zone.",
        "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]},
    },
}
QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture()
def client(gateway):
    return OpenAI(base_url=gateway["base_url"], api_key=gateway["key"], max_retries=0)


def pytest_generate_tests(metafunc):
    if "model" in metafunc.fixturenames:
        from conftest import TOOL_MODELS

        metafunc.parametrize("model", TOOL_MODELS)


def test_a_tool_call_comes_back_in_openais_shape(client, model):
    completion = client.chat.completions.create(model=model, messages=QUESTION, tools=[WEATHER, CLOCK])
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    assert len(choice.message.tool_calls) == 1
    call = choice.message.tool_calls[0]
    assert call.type == "function"
    assert call.id
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "mock"}
    assert completion.usage.prompt_tokens > 0


def test_the_tool_result_goes_back_and_the_model_answers(client, model):
    first = client.chat.completions.create(model=model, messages=QUESTION, tools=[WEATHER])
    call = first.choices[0].message.tool_calls[0]
    history = QUESTION + [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": call.id, "type": "function", "function": {"name": call.function.name, "arguments": call.function.arguments}}
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"celsius": 21})},
    ]
    second = client.chat.completions.create(model=model, messages=history, tools=[WEATHER])
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == REPLY


def test_a_streamed_tool_call_assembles_from_its_deltas(client, model):
    stream = client.chat.completions.create(
        model=model,
        messages=QUESTION,
        tools=[WEATHER],
        stream=True,
        stream_options={"include_usage": True},
    )
    calls, finish, usage = {}, None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.finish_reason:
                finish = choice.finish_reason
            for delta in choice.delta.tool_calls or []:
                slot = calls.setdefault(delta.index, {"id": None, "name": "", "arguments": ""})
                if delta.id:
                    slot["id"] = delta.id
                if delta.function and delta.function.name:
                    slot["name"] += delta.function.name
                if delta.function and delta.function.arguments:
                    slot["arguments"] += delta.function.arguments
    assert finish == "tool_calls"
    assert list(calls) == [0]
    assert calls[0]["id"]
    assert calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == {"city": "mock"}
    assert usage is not None and usage.prompt_tokens > 0
