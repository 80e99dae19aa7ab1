"""Johi driven by Anthropic's official Python SDK through the inbound Messages API
(`POST /v1/messages`, `/v1/messages/count_tokens`), against one model of the
bundled mock per wire protocol (OpenAI, Anthropic, Gemini, Bedrock, Cohere)."""

import json
import time

import anthropic
import pytest

REPLY = "This is a deterministic reply from the Johi mock upstream."
from conftest import TOOL_MODELS

# One model per wire protocol: Anthropic SDK clients reach every provider Johi speaks to.
MODELS = TOOL_MODELS
WEATHER = {
    "name": "get_weather",
    "description": "The current weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"location": {"type": "string"}, "celsius": {"type": "boolean"}},
        "required": ["location"],
    },
}


@pytest.fixture(scope="module")
def client(gateway):
    return anthropic.Anthropic(base_url=gateway["root_url"], api_key=gateway["key"], max_retries=0)


def ask(model, **extra):
    return dict(
        model=model,
        max_tokens=64,
        system="You are terse",
        messages=[{"role": "user", "content": "Say hello to the gateway"}],
        **extra,
    )


@pytest.mark.parametrize("model", MODELS)
def test_messages_create(client, gateway, model):
    message = client.messages.create(**ask(model))
    assert message.type == "message"
    assert message.model == model
    assert message.role == "assistant"
    assert message.content[0].type == "text"
    assert message.content[0].text == REPLY
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 10
    assert message.usage.input_tokens > 0
    assert message._request_id
    # The audit record is written in the background: wait for it briefly.
    deadline = time.time() + 5
    while True:
        records = [json.loads(l) for l in gateway["audit"].read_text().splitlines() if l.strip()]
        if any(r["endpoint"] == "messages" and r["model"] == model for r in records):
            break
        assert time.time() < deadline, records
        time.sleep(0.05)


@pytest.mark.parametrize("model", MODELS)
def test_messages_stream(client, model):
    with client.messages.stream(**ask(model)) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == REPLY
    assert final.content[0].text == REPLY
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 10
    assert final.usage.input_tokens > 0


@pytest.mark.parametrize("model", MODELS)
def test_tool_use_plain_then_result(client, model):
    message = client.messages.create(**ask(model, tools=[WEATHER]))
    assert message.stop_reason == "tool_use"
    call = next(b for b in message.content if b.type == "tool_use")
    assert call.name == "get_weather"
    assert call.input == {"location": "mock"}
    answer = client.messages.create(
        model=model,
        max_tokens=64,
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [b.model_dump() for b in message.content]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}],
            },
        ],
    )
    assert answer.stop_reason == "end_turn"
    assert answer.content[0].text == REPLY


@pytest.mark.parametrize("model", MODELS)
def test_tool_use_streamed(client, model):
    with client.messages.stream(**ask(model, tools=[WEATHER])) as stream:
        partials = [e.partial_json for e in stream if e.type == "input_json"]
        final = stream.get_final_message()
    # The mock sends the arguments in two deltas, except over Gemini, whose streams carry
    # whole function calls: each delta is relayed as it came.
    assert len(partials) == (1 if model == "gemini-mock" else 2)
    assert json.loads("".join(partials)) == {"location": "mock"}
    call = next(b for b in final.content if b.type == "tool_use")
    assert call.name == "get_weather"
    assert call.input == {"location": "mock"}
    assert final.stop_reason == "tool_use"


@pytest.mark.parametrize("model", MODELS)
def test_count_tokens(client, model):
    counted = client.messages.count_tokens(
        model=model,
        system="You are terse",
        messages=[{"role": "user", "content": "Say hello to the gateway"}],
    )
    assert counted.input_tokens > 5


@pytest.mark.parametrize("model", MODELS)
def test_a_bad_key_is_the_sdks_authentication_error(gateway, model):
    bad = anthropic.Anthropic(base_url=gateway["root_url"], api_key="sk-johi-nope", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as caught:
        bad.messages.create(**ask(model))
    assert caught.value.status_code == 401
    assert caught.value.body["error"]["type"] == "authentication_error"


@pytest.mark.parametrize("model", MODELS)
def test_a_bad_request_is_the_sdks_bad_request_error(client, model):
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(**ask(model, tools=[{"type": "web_search_20250305", "name": "web_search"}]))
    assert caught.value.status_code == 400
    assert "tools[0].type" in caught.value.message
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(**ask(model, temperature=9))


def test_a_model_outside_the_keys_allowance_is_a_permission_error(gateway):
    chat_only = anthropic.Anthropic(
        base_url=gateway["root_url"], api_key=gateway["chat_only_key"], max_retries=0
    )
    with pytest.raises(anthropic.PermissionDeniedError):
        chat_only.messages.create(**ask("claude-mock"))
    with pytest.raises(anthropic.NotFoundError):
        chat_only.messages.create(**ask("no-such-model"))
