"""OpenAI callers against OpenAI-, Anthropic- and Gemini-shaped upstreams, through wrangler dev.

The fake provider speaks each wire format; the gateway translates both ways. One table of
routes drives the cross-provider checks.
"""

import json

import openai
import pytest

from conftest import ANTH_KEY, GEM_KEY, TEST_KEY, msg, uid

# route → (fake instance, upstream model, what the upstream request must look like)
UPSTREAMS = {
    "plain": ("oa", "small-1"),
    "claude": ("anth", "claude-test"),
    "gemini": ("gem", "gemini-test"),
}
ALL = pytest.mark.parametrize("route", list(UPSTREAMS))
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
    },
}


def reply(route):
    instance, model = UPSTREAMS[route]
    return f"Hello from {instance} ({model})."


@ALL
def test_plain_round_trip_with_exact_usage(gateway, fake, route):
    tag = uid()
    r = gateway.chat(
        {"model": route, "messages": [{"role": "system", "content": "be brief"}] + msg(f"[[fake:id={tag}]] hi there")}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": reply(route)} or (
        body["choices"][0]["message"]["content"] == reply(route)
    )
    assert body["choices"][0]["finish_reason"] == "stop"
    # 2 system words + 3 user words; 4 reply words.
    assert body["usage"]["prompt_tokens"] == 5
    assert body["usage"]["completion_tokens"] == 4
    assert body["usage"]["total_tokens"] == 9
    assert body["created"] > 1_700_000_000
    [seen] = fake.requests(id=tag)
    instance, model = UPSTREAMS[route]
    if instance == "anth":
        assert seen["path"] == "/anth/v1/messages"
        assert seen["headers"]["x-api-key"] == ANTH_KEY
        assert seen["headers"]["anthropic-version"]
        assert seen["body"]["system"] == "be brief"
        assert seen["body"]["max_tokens"] == 4096
    elif instance == "gem":
        assert seen["path"] == f"/gem/v1beta/models/{model}:generateContent"
        assert seen["headers"]["x-goog-api-key"] == GEM_KEY
        assert seen["body"]["systemInstruction"]["parts"][0]["text"] == "be brief"
    else:
        assert seen["headers"]["authorization"] == f"Bearer {TEST_KEY}"


@ALL
def test_streamed_round_trip(gateway, route):
    s = gateway.stream({"model": route, "messages": msg("one two"), "stream_options": {"include_usage": True}})
    assert s.status == 200
    assert s.content() == reply(route)
    assert s.done
    chunks = s.chunks()
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c.get("choices") and c["choices"][0].get("finish_reason")]
    assert finishes == ["stop"]
    usage = [c["usage"] for c in chunks if c.get("usage")][-1]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (2, 4)


@ALL
def test_tool_call_round_trip(gateway, route):
    body = {"model": route, "messages": msg("[[fake:tool_call]] weather in Paris?"), "tools": [WEATHER_TOOL]}
    r = gateway.chat(body)
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    [call] = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"location": "Paris"}
    assert call["id"]

    # Streamed: the arguments arrive in pieces and reassemble.
    s = gateway.stream(body)
    assert s.status == 200 and s.done
    args, names, finish = "", set(), None
    for c in s.chunks():
        for ch in c.get("choices") or []:
            for tc in ch["delta"].get("tool_calls") or []:
                args += tc.get("function", {}).get("arguments") or ""
                if tc.get("function", {}).get("name"):
                    names.add(tc["function"]["name"])
            finish = ch.get("finish_reason") or finish
    assert names == {"get_weather"}
    assert json.loads(args) == {"location": "Paris"}
    assert finish == "tool_calls"

    # The tool result goes back upstream in the provider's own shape.
    follow = {
        "model": route,
        "messages": msg("weather in Paris?")
        + [
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": '{"temp_c": 21}'},
        ],
        "tools": [WEATHER_TOOL],
    }
    r = gateway.chat(follow)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == reply(route)


@ALL
def test_json_mode_is_honoured(gateway, fake, route):
    tag = uid()
    r = gateway.chat(
        {"model": route, "messages": msg(f"[[fake:id={tag}]] answer in JSON"), "response_format": {"type": "json_object"}}
    )
    assert r.status_code == 200, r.text
    content = r.json()["choices"][0]["message"]["content"]
    assert isinstance(json.loads(content), dict)
    assert r.json()["choices"][0]["finish_reason"] == "stop"
    [seen] = fake.requests(id=tag)
    if route == "claude":
        # Anthropic has no JSON mode switch: a forced tool carries it.
        assert seen["body"]["tool_choice"]["type"] == "tool"
    elif route == "gemini":
        assert seen["body"]["generationConfig"]["responseMimeType"] == "application/json"
    else:
        assert seen["body"]["response_format"] == {"type": "json_object"}


def test_dropped_parameters_are_announced(gateway):
    r = gateway.chat({"model": "claude", "messages": msg("hi"), "seed": 7, "presence_penalty": 0.5})
    assert r.status_code == 200
    warnings = r.headers["x-switchyard-warnings"]
    assert "seed" in warnings and "presence_penalty" in warnings


def test_unhonourable_parameter_is_a_400_naming_it(gateway, fake):
    tag = uid()
    r = gateway.chat({"model": "claude", "messages": msg(f"[[fake:id={tag}]] hi"), "n": 2})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "unsupported_parameter"
    assert "n" in err["message"] and "anth" in err["message"]
    assert fake.requests(id=tag) == [], "nothing was sent"


def test_unhonourable_parameter_moves_to_a_target_that_can(gateway):
    r = gateway.chat({"model": "claude-then-openai", "messages": msg("hi"), "n": 2})
    assert r.status_code == 200
    assert r.headers["x-switchyard-provider"] == "oa"
    assert "anth/claude-test:unsupported" in r.headers["x-switchyard-attempts"]


@pytest.mark.parametrize("route", ["claude", "gemini"])
def test_upstream_errors_are_classified(gateway, fake, route):
    instance = UPSTREAMS[route][0]
    tag = uid()
    r = gateway.chat({"model": route, "messages": msg(f"[[fake@{instance}:id={tag},error=overloaded,times=1]] hi")})
    assert r.status_code == 200, "overloaded is retried"
    assert len(fake.requests(id=tag)) == 2
    r = gateway.chat({"model": route, "messages": msg("[[fake:error=invalid_request]] hi")})
    assert r.status_code == 400 and r.json()["error"]["code"] == "upstream_invalid_request"


def test_cross_protocol_failover(gateway):
    r = gateway.chat({"model": "gemini-then-claude", "messages": msg("[[fake@gem:status=503]] hi")})
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"] == reply("claude")
    s = gateway.stream({"model": "gemini-then-claude", "messages": msg("[[fake@gem:status=503]] hi")})
    assert s.content() == reply("claude") and s.done


@pytest.mark.parametrize("route", ["claude", "gemini"])
def test_stream_cut_is_honest_for_every_protocol(gateway, route):
    s = gateway.stream({"model": route, "messages": msg("[[fake:words=6,cut_after=2]] go")})
    assert s.content() == "w1 w2"
    assert not s.done and s.error()["code"] == "upstream_error"


@ALL
def test_openai_sdk_against_every_upstream(gateway, route):
    client = openai.OpenAI(base_url=f"{gateway.base}/v1", api_key=gateway.token, max_retries=0)
    r = client.chat.completions.create(model=route, messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == reply(route)
    text = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(model=route, messages=[{"role": "user", "content": "hi"}], stream=True)
        if c.choices
    )
    assert text == reply(route)
    r = client.chat.completions.create(
        model=route, messages=[{"role": "user", "content": "[[fake:tool_call]] weather?"}], tools=[WEATHER_TOOL]
    )
    assert r.choices[0].finish_reason == "tool_calls"
    assert r.choices[0].message.tool_calls[0].function.name == "get_weather"
