"""Johi driven by the official `openai` Python SDK, exactly as an application would."""

import json

import openai
import pytest
from openai import OpenAI

REPLY = "This is a deterministic reply from the Johi mock upstream."


@pytest.fixture()
def client(gateway):
    return OpenAI(base_url=gateway["base_url"], api_key=gateway["key"], max_retries=0)


def collect(stream):
    """The streamed text and the usage chunk's usage (None without one)."""
    text, usage = "", None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if chunk.usage:
            usage = chunk.usage
    return text, usage


def test_chat_completion(client):
    completion = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}],
        seed=7,
    )
    assert completion.choices[0].message.content == REPLY
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens > 0
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.headers["x-request-id"].startswith("req_")
    assert raw.headers["traceparent"].startswith("00-")


def test_chat_stream(client):
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Stream please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage = collect(stream)
    assert text == REPLY
    assert usage is not None and usage.completion_tokens == len(REPLY.split())


def test_chat_against_an_anthropic_protocol_model(client):
    # Johi speaks Anthropic's Messages API to this provider; the SDK sees OpenAI's shapes.
    completion = client.chat.completions.create(
        model="claude-mock",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}],
    )
    assert completion.model == "claude-mock"
    assert completion.choices[0].message.content == REPLY
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens

    stream = client.chat.completions.create(
        model="claude-mock",
        messages=[{"role": "user", "content": "Stream please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage = collect(stream)
    assert text == REPLY
    assert usage is not None and usage.completion_tokens == len(REPLY.split())

    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model="claude-mock", messages=[{"role": "user", "content": "hi"}], seed=7
        )
    assert refused.value.body["param"] == "seed"


def test_legacy_completion(client):
    completion = client.completions.create(model="gpt-4o-mini", prompt="Once upon a time", max_tokens=4)
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 4


def test_embeddings_default_base64_encoding(client):
    # The SDK asks for base64 by default and decodes it; both encodings must survive Johi.
    result = client.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"])
    assert len(result.data) == 2
    assert len(result.data[0].embedding) == 16
    floats = client.embeddings.create(model="text-embedding-3-small", input="alpha", encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(result.data[0].embedding, rel=1e-6)


def test_models_list(client):
    assert [m.id for m in client.models.list()] == ["gpt-4o-mini", "text-embedding-3-small", "claude-mock", "bedrock-mock"]


def test_unknown_model_raises_not_found(client):
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    assert caught.value.code == "model_not_found"


def test_bad_role_raises_bad_request(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "robot", "content": "x"}])
    assert caught.value.param == "messages[0].role"


def test_upstream_rate_limit_surfaces_as_rate_limit_error(client):
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], extra_body={"mock": {"status": 429}}
        )


def test_stream_broken_midway_raises_api_error(client):
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "x"}],
        stream=True,
        extra_body={"mock": {"stream_cut_after": 3}},
    )
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            received.append(chunk)
    assert len(received) == 3, "the events before the break were delivered"
    assert "stream broke off" in str(caught.value)


def test_every_request_was_audited(gateway, client):
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "audit me"}])
    import time

    for _ in range(50):
        lines = gateway["audit"].read_text().splitlines() if gateway["audit"].exists() else []
        if lines:
            break
        time.sleep(0.05)
    records = [json.loads(line) for line in lines]
    assert any(
        r["endpoint"] == "chat.completions"
        and r["status"] == 200
        and r["input_tokens"]
        and (r["organization"], r["team"], r["project"], r["user"], r["credential_id"])
        == ("acme", "apps", "sdk", "alice", "sdk-app")
        for r in records
    ), "attributed to the key's tenant"


def test_a_wrong_key_raises_authentication_error(gateway):
    wrong = OpenAI(base_url=gateway["base_url"], api_key="sk-johi-not-a-real-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        wrong.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"


def test_a_model_outside_the_keys_allowance_raises_permission_denied(gateway):
    limited = OpenAI(base_url=gateway["base_url"], api_key=gateway["chat_only_key"], max_retries=0)
    assert limited.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "allowed"}]
    ).choices[0].message.content == REPLY
    with pytest.raises(openai.PermissionDeniedError) as caught:
        limited.embeddings.create(model="text-embedding-3-small", input="not allowed")
    assert caught.value.status_code == 403
    assert caught.value.code == "model_not_allowed"
    assert [m.id for m in limited.models.list()] == ["gpt-4o-mini"]
