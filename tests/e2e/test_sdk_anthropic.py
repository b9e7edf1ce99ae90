"""The official `anthropic` Python SDK against the gateway's Messages ingress (`/v1/messages`),
on routes served by each fake provider kind (OpenAI, Anthropic and Gemini upstreams)."""

import anthropic
import pytest

from conftest import uid

# route → the fake's reply for it
ROUTES = {
    "plain": "Hello from oa (small-1).",
    "claude": "Hello from anth (claude-test).",
    "gemini": "Hello from gem (gemini-test).",
}
ALL = pytest.mark.parametrize("route", list(ROUTES))
WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
}


@pytest.fixture()
def client(gateway):
    # The SDK sends the key as `x-api-key`, which the gateway accepts as a tenant token.
    return anthropic.Anthropic(base_url=gateway.base, api_key=gateway.token, max_retries=0)


@ALL
def test_messages(client, route):
    r = client.messages.create(
        model=route, max_tokens=200, system="be brief", messages=[{"role": "user", "content": "hi there"}]
    )
    assert r.type == "message" and r.role == "assistant"
    assert [b.type for b in r.content] == ["text"]
    assert r.content[0].text == ROUTES[route]
    assert r.stop_reason == "end_turn"
    # 2 system words + 2 user words; 4 reply words.
    assert (r.usage.input_tokens, r.usage.output_tokens) == (4, 4)


@ALL
def test_streamed(client, route):
    with client.messages.stream(
        model=route, max_tokens=200, messages=[{"role": "user", "content": "[[fake:words=5]] go"}]
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == "w1 w2 w3 w4 w5"
    assert len(pieces) == 5, "forwarded piece by piece"
    assert final.content[0].text == "w1 w2 w3 w4 w5"
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (2, 5)


@ALL
def test_tools_round_trip(client, route):
    ask = [{"role": "user", "content": "[[fake:tool_call]] weather in Paris?"}]
    r = client.messages.create(model=route, max_tokens=200, tools=[WEATHER], messages=ask)
    assert r.stop_reason == "tool_use"
    [call] = [b for b in r.content if b.type == "tool_use"]
    assert call.name == "get_weather" and call.input == {"location": "Paris"}
    assert call.id

    # Streamed: the input arrives as input_json_delta pieces.
    with client.messages.stream(model=route, max_tokens=200, tools=[WEATHER], messages=ask) as stream:
        final = stream.get_final_message()
    [streamed] = [b for b in final.content if b.type == "tool_use"]
    assert streamed.name == "get_weather" and streamed.input == {"location": "Paris"}
    assert final.stop_reason == "tool_use"

    # The result goes back as a tool_result block; the model answers in text.
    follow = [
        {"role": "user", "content": "weather in Paris?"},
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in r.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": '{"temp_c": 21}'}]},
    ]
    r2 = client.messages.create(model=route, max_tokens=200, tools=[WEATHER], messages=follow)
    assert r2.content[0].text == ROUTES[route]
    assert r2.stop_reason == "end_turn"


def test_gateway_errors_are_anthropic_shaped(client, gateway):
    with pytest.raises(anthropic.NotFoundError) as e:
        client.messages.create(model="nope", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert e.value.body["type"] == "error"
    assert e.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.BadRequestError) as e:
        client.messages.create(model="claude", max_tokens=10, messages=[{"role": "system", "content": "x"}])
    assert "messages[0].role" in e.value.body["error"]["message"]
    bad = anthropic.Anthropic(base_url=gateway.base, api_key="sy_not_a_real_token_000000", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as e:
        bad.messages.create(model="claude", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert e.value.body["error"]["type"] == "authentication_error"


def test_upstream_failure_is_anthropic_shaped(client):
    with pytest.raises(anthropic.InternalServerError) as e:
        client.messages.create(
            model="gemini", max_tokens=10, messages=[{"role": "user", "content": "[[fake:status=500]] x"}]
        )
    assert e.value.status_code == 502
    assert e.value.body["error"]["type"] == "api_error"


@pytest.mark.parametrize("route", ["plain", "claude"])
def test_broken_stream_raises_instead_of_ending(client, route):
    got = ""
    with pytest.raises(anthropic.APIStatusError) as e:
        with client.messages.stream(
            model=route, max_tokens=200, messages=[{"role": "user", "content": "[[fake:words=8,cut_after=3]] go"}]
        ) as stream:
            for text in stream.text_stream:
                got += text
    assert got == "w1 w2 w3"
    assert "incomplete" in str(e.value)


def test_warnings_name_dropped_parameters(gateway):
    r = gateway.http.post(
        "/v1/messages",
        json={
            "model": "plain",
            "max_tokens": 10,
            "service_tier": "auto",
            "messages": [{"role": "user", "content": f"[[fake:id={uid()}]] hi"}],
        },
    )
    assert r.status_code == 200, r.text
    assert "service_tier ignored" in r.headers["x-switchyard-warnings"]
