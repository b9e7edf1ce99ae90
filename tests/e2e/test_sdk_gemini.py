"""The official `google-genai` Python SDK against the gateway's Gemini ingress
(`/v1beta/models/{model}:generateContent` and `:streamGenerateContent?alt=sse`), on routes served
by each fake provider kind (OpenAI, Anthropic and Gemini upstreams)."""

import json

import pytest
from google import genai
from google.genai import errors, types

ROUTES = {
    "plain": "Hello from oa (small-1).",
    "claude": "Hello from anth (claude-test).",
    "gemini": "Hello from gem (gemini-test).",
}
ALL = pytest.mark.parametrize("route", list(ROUTES))


@pytest.fixture()
def client(gateway):
    # The SDK sends the key as `x-goog-api-key`, which the gateway accepts as a tenant token.
    return genai.Client(api_key=gateway.token, http_options={"base_url": gateway.base})


@ALL
def test_generate_content(client, route):
    r = client.models.generate_content(
        model=route, contents="hi there", config=types.GenerateContentConfig(system_instruction="be brief")
    )
    assert r.text == ROUTES[route]
    assert r.candidates[0].finish_reason == types.FinishReason.STOP
    # 2 system words + 2 user words; 4 reply words.
    assert r.usage_metadata.prompt_token_count == 4
    assert r.usage_metadata.candidates_token_count == 4
    assert r.usage_metadata.total_token_count == 8


@ALL
def test_generate_content_stream(client, route):
    chunks = list(client.models.generate_content_stream(model=route, contents="[[fake:words=5]] go"))
    texts = [c.text for c in chunks if c.text]
    assert "".join(texts) == "w1 w2 w3 w4 w5"
    assert len(texts) == 5, "forwarded piece by piece"
    last = chunks[-1]
    assert last.candidates[0].finish_reason == types.FinishReason.STOP
    assert last.usage_metadata.prompt_token_count == 2
    assert last.usage_metadata.candidates_token_count == 5


@ALL
def test_function_calls(client, route):
    weather = types.FunctionDeclaration(
        name="get_weather",
        description="Weather for a city",
        parameters=types.Schema(
            type=types.Type.OBJECT, properties={"location": types.Schema(type=types.Type.STRING)}, required=["location"]
        ),
    )
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[weather])],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    r = client.models.generate_content(model=route, contents="[[fake:tool_call]] weather in Paris?", config=config)
    [call] = r.function_calls
    assert call.name == "get_weather" and call.args == {"location": "Paris"}

    # The response goes back as a functionResponse part; the model answers in text.
    contents = [
        types.Content(role="user", parts=[types.Part(text="weather in Paris?")]),
        r.candidates[0].content,
        types.Content(
            role="user",
            parts=[types.Part.from_function_response(name="get_weather", response={"temp_c": 21})],
        ),
    ]
    r2 = client.models.generate_content(model=route, contents=contents, config=config)
    assert r2.text == ROUTES[route]


def test_json_mode(client):
    r = client.models.generate_content(
        model="claude",
        contents="answer in JSON",
        config=types.GenerateContentConfig(response_mime_type="application/json"),
    )
    assert isinstance(json.loads(r.text), dict)


def test_errors_are_gemini_shaped(client):
    with pytest.raises(errors.ClientError) as e:
        client.models.generate_content(model="nope", contents="x")
    assert e.value.code == 404 and e.value.status == "NOT_FOUND"


@pytest.mark.parametrize("route", ["plain", "gemini"])
def test_broken_stream_raises(client, route):
    got = ""
    with pytest.raises(errors.ServerError) as e:
        for chunk in client.models.generate_content_stream(model=route, contents="[[fake:words=8,cut_after=3]] go"):
            got += chunk.text or ""
    assert got == "w1 w2 w3"
    assert e.value.code == 502
