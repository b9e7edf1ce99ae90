"""The official openai SDKs (PyPI and npm) as clients of the gateway."""

import json
import subprocess

import openai
import pytest

from conftest import BIN, ROOT

REPLY = "Hello from oa (small-1)."


@pytest.fixture()
def client(gateway):
    return openai.OpenAI(base_url=f"{gateway.base}/v1", api_key=gateway.token, max_retries=0)


def test_python_sdk_plain(client):
    r = client.chat.completions.create(model="plain", messages=[{"role": "user", "content": "hello sdk"}])
    assert r.choices[0].message.content == REPLY
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens == 2 and r.usage.completion_tokens == 4
    assert r.model == "small-1"


def test_python_sdk_stream(client):
    stream = client.chat.completions.create(
        model="plain",
        messages=[{"role": "user", "content": "stream it please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage, finish = "", None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
    assert text == REPLY
    assert finish == "stop"
    assert usage.prompt_tokens == 3 and usage.completion_tokens == 4


def test_python_sdk_sees_gateway_errors(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="plain", messages=[{"role": "user", "content": "x"}], temperature=9)
    assert e.value.param == "temperature"


def test_python_sdk_stream_broken_midway_raises(client):
    stream = client.chat.completions.create(
        model="plain",
        messages=[{"role": "user", "content": "[[fake:words=8,cut_after=3]] go"}],
        stream=True,
    )
    got = ""
    with pytest.raises(openai.APIError) as e:
        for chunk in stream:
            if chunk.choices:
                got += chunk.choices[0].delta.content or ""
    assert got == "w1 w2 w3"
    assert "incomplete" in str(e.value)


def test_node_sdk_plain_and_stream(gateway):
    out = subprocess.run(
        [str(BIN / "node"), "tests/sdk/openai_node.mjs", f"{gateway.base}/v1", "plain", gateway.token],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["plain"] == REPLY
    assert res["plain_usage"]["prompt_tokens"] == 3
    assert res["plain_model"] == "small-1"
    assert res["streamed"] == REPLY
    assert res["finish"] == "stop"
    assert res["stream_usage"]["completion_tokens"] == 4


# --- every upstream kind, tools, JSON mode, embeddings --------------------------------------

ROUTES = {
    "plain": "Hello from oa (small-1).",
    "claude": "Hello from anth (claude-test).",
    "gemini": "Hello from gem (gemini-test).",
}
ALL = pytest.mark.parametrize("route", list(ROUTES))
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
    },
}


@ALL
def test_python_sdk_plain_and_stream_on_every_upstream(client, route):
    r = client.chat.completions.create(model=route, messages=[{"role": "user", "content": "hi there"}])
    assert r.choices[0].message.content == ROUTES[route]
    assert r.choices[0].finish_reason == "stop"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (2, 4)
    stream = client.chat.completions.create(
        model=route,
        messages=[{"role": "user", "content": "[[fake:words=5]] go"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, usage = [], None
    for chunk in stream:
        usage = chunk.usage or usage
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
    assert "".join(pieces) == "w1 w2 w3 w4 w5" and len(pieces) == 5
    assert (usage.prompt_tokens, usage.completion_tokens) == (2, 5)


@ALL
def test_python_sdk_tools_round_trip(client, route):
    ask = [{"role": "user", "content": "[[fake:tool_call]] weather in Paris?"}]
    r = client.chat.completions.create(model=route, messages=ask, tools=[WEATHER])
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls", "whatever the upstream"
    [call] = choice.message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"location": "Paris"}

    stream = client.chat.completions.create(model=route, messages=ask, tools=[WEATHER], stream=True)
    args, finish = "", None
    for chunk in stream:
        for tc in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
            args += tc.function.arguments or ""
        if chunk.choices and chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
    assert json.loads(args) == {"location": "Paris"} and finish == "tool_calls"

    follow = [
        {"role": "user", "content": "weather in Paris?"},
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 21}'},
    ]
    r2 = client.chat.completions.create(model=route, messages=follow, tools=[WEATHER])
    assert r2.choices[0].message.content == ROUTES[route]
    assert r2.choices[0].finish_reason == "stop"


@ALL
def test_python_sdk_json_mode(client, route):
    r = client.chat.completions.create(
        model=route,
        messages=[{"role": "user", "content": "answer in JSON"}],
        response_format={"type": "json_object"},
    )
    assert isinstance(json.loads(r.choices[0].message.content), dict)
    assert r.choices[0].finish_reason == "stop"
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    r = client.chat.completions.create(
        model=route,
        messages=[{"role": "user", "content": "answer in JSON"}],
        response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}},
    )
    # The fake answers any JSON mode with a fixed object (a forced tool's fixed input on Anthropic).
    assert isinstance(json.loads(r.choices[0].message.content), dict)


@pytest.mark.parametrize("route", ["embed", "embed-gemini"])
def test_python_sdk_embeddings(client, route):
    # The SDK asks for base64 by default and decodes it.
    r = client.embeddings.create(model=route, input=["hello world", "second text"])
    assert [d.index for d in r.data] == [0, 1]
    assert all(len(d.embedding) == 8 for d in r.data)
    assert r.usage.prompt_tokens > 0 and r.usage.total_tokens == r.usage.prompt_tokens
    floats = client.embeddings.create(model=route, input="hello world", encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(r.data[0].embedding, rel=1e-6)
    # The same text embeds to the same (unit) vector through either upstream kind.
    other = client.embeddings.create(model="embed" if route != "embed" else "embed-gemini", input="hello world")
    assert other.data[0].embedding == pytest.approx(r.data[0].embedding, rel=1e-6)
    assert sum(x * x for x in r.data[0].embedding) == pytest.approx(1.0, rel=1e-4)


@pytest.mark.parametrize("route", ["plain", "claude", "gemini"])
def test_node_sdk_on_every_upstream(gateway, route):
    out = subprocess.run(
        [str(BIN / "node"), "tests/sdk/openai_node.mjs", f"{gateway.base}/v1", route, gateway.token, "embed-gemini"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["plain"] == ROUTES[route]
    assert res["streamed"] == ROUTES[route] and res["finish"] == "stop"
    assert res["tool_finish"] == "tool_calls" and res["tool_args"] == {"location": "Paris"}
    assert res["after_tool"] == ROUTES[route]
    assert isinstance(res["json"], dict)
    assert res["embedding_dims"] == [8, 8] and res["embedding_usage"] > 0
