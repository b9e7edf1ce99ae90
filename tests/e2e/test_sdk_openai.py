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
