"""Anthropic and Gemini ingress and /v1/embeddings at the wire level: one usage model from every
upstream kind in every format, honest streams in the outer formats, errors in the caller's
format, and embeddings failover and deadlines."""

import base64
import json
import struct
import time

import pytest

from conftest import msg, uid

UPSTREAMS = ["plain", "claude", "gemini"]
# `cached=3,reasoning=5` on a 5-word prompt with the fake's 4-word reply. Each upstream reports
# these its own way; every path must land on the same numbers.
USAGE_PROMPT = "[[fake:cached=3,reasoning=5]] one two three four"
OPENAI_USAGE = {
    "prompt_tokens": 5,
    "completion_tokens": 9,
    "total_tokens": 14,
    "prompt_tokens_details": {"cached_tokens": 3},
    "completion_tokens_details": {"reasoning_tokens": 5},
}


def usage_of(u: dict) -> dict:
    """The fields of the one usage model (OpenAI upstreams also pass their own extra details)."""
    return {
        "prompt_tokens": u["prompt_tokens"],
        "completion_tokens": u["completion_tokens"],
        "total_tokens": u["total_tokens"],
        "prompt_tokens_details": {"cached_tokens": u["prompt_tokens_details"]["cached_tokens"]},
        "completion_tokens_details": {"reasoning_tokens": u["completion_tokens_details"]["reasoning_tokens"]},
    }


def sse(raw: bytes) -> list[tuple[str | None, dict | str]]:
    """(event name, data) per SSE event."""
    out = []
    for block in raw.decode().split("\n\n"):
        name, data = None, None
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
        if data is not None:
            out.append((name, data if data == "[DONE]" else json.loads(data)))
    return out


def post_stream(gateway, path: str, body: dict, headers: dict | None = None) -> tuple[int, bytes]:
    with gateway.http.stream("POST", path, json=body, headers=headers or {}) as r:
        return r.status_code, r.read()


# --- one usage model -------------------------------------------------------------------------


@pytest.mark.parametrize("route", UPSTREAMS)
def test_usage_is_one_model_in_openai_shape(gateway, route):
    r = gateway.chat({"model": route, "messages": msg(USAGE_PROMPT)})
    assert r.status_code == 200, r.text
    assert usage_of(r.json()["usage"]) == OPENAI_USAGE
    s = gateway.stream({"model": route, "messages": msg(USAGE_PROMPT), "stream_options": {"include_usage": True}})
    [usage] = [c["usage"] for c in s.chunks() if c.get("usage")]
    assert usage_of(usage) == OPENAI_USAGE


@pytest.mark.parametrize("route", UPSTREAMS)
def test_usage_in_the_anthropic_format(gateway, route):
    body = {"model": route, "max_tokens": 100, "messages": msg(USAGE_PROMPT)}
    expected = {
        "input_tokens": 2,
        "cache_read_input_tokens": 3,
        "cache_creation_input_tokens": 0,
        "output_tokens": 9,
        "output_tokens_details": {"thinking_tokens": 5},
    }
    r = gateway.http.post("/v1/messages", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["usage"] == expected
    status, raw = post_stream(gateway, "/v1/messages", {**body, "stream": True})
    assert status == 200
    [delta] = [d for name, d in sse(raw) if name == "message_delta"]
    assert delta["usage"] == expected


@pytest.mark.parametrize("route", UPSTREAMS)
def test_usage_in_the_gemini_format(gateway, route):
    body = {"contents": [{"role": "user", "parts": [{"text": USAGE_PROMPT}]}]}
    expected = {
        "promptTokenCount": 5,
        "candidatesTokenCount": 4,
        "thoughtsTokenCount": 5,
        "cachedContentTokenCount": 3,
        "totalTokenCount": 14,
    }
    r = gateway.http.post(f"/v1beta/models/{route}:generateContent", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["usageMetadata"] == expected
    status, raw = post_stream(gateway, f"/v1beta/models/{route}:streamGenerateContent?alt=sse", body)
    assert status == 200
    assert sse(raw)[-1][1]["usageMetadata"] == expected


# --- the Messages stream, event by event -----------------------------------------------------


def test_messages_stream_event_sequence(gateway):
    status, raw = post_stream(
        gateway, "/v1/messages", {"model": "gemini", "max_tokens": 50, "stream": True, "messages": msg("[[fake:words=3]] x")}
    )
    assert status == 200
    names = [name for name, _ in sse(raw)]
    assert names == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


def test_messages_stream_tool_use(gateway):
    tool = {"name": "get_weather", "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}}}
    status, raw = post_stream(
        gateway,
        "/v1/messages",
        {"model": "plain", "max_tokens": 50, "stream": True, "tools": [tool], "messages": msg("[[fake:tool_call]] x")},
    )
    events = sse(raw)
    [start] = [d for n, d in events if n == "content_block_start"]
    assert start["content_block"]["type"] == "tool_use" and start["content_block"]["name"] == "get_weather"
    pieces = [d["delta"]["partial_json"] for n, d in events if n == "content_block_delta"]
    assert len(pieces) >= 2 and json.loads("".join(pieces)) == {"location": "Paris"}
    [delta] = [d for n, d in events if n == "message_delta"]
    assert delta["delta"]["stop_reason"] == "tool_use"


# --- honest streams in the outer formats ------------------------------------------------------


@pytest.mark.parametrize("route", UPSTREAMS)
def test_broken_messages_stream_ends_with_an_error_event(gateway, route):
    status, raw = post_stream(
        gateway,
        "/v1/messages",
        {"model": route, "max_tokens": 50, "stream": True, "messages": msg("[[fake:words=8,cut_after=3]] go")},
    )
    assert status == 200
    events = sse(raw)
    text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
    assert text == "w1 w2 w3"
    assert events[-1][0] == "error"
    assert events[-1][1]["type"] == "error" and events[-1][1]["error"]["type"] == "api_error"
    assert "message_stop" not in [n for n, _ in events]


@pytest.mark.parametrize("route", UPSTREAMS)
def test_broken_gemini_stream_ends_with_an_error_chunk(gateway, route):
    status, raw = post_stream(
        gateway,
        f"/v1beta/models/{route}:streamGenerateContent?alt=sse",
        {"contents": [{"parts": [{"text": "[[fake:words=8,cut_after=3]] go"}]}]},
    )
    assert status == 200
    chunks = [d for _, d in sse(raw)]
    text = "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks[:-1])
    assert text == "w1 w2 w3"
    assert chunks[-1]["error"]["code"] == 502 and chunks[-1]["error"]["status"] == "UNAVAILABLE"
    assert not any(c.get("candidates", [{}])[0].get("finishReason") for c in chunks[:-1])


def test_idle_upstream_in_the_anthropic_format_is_a_timeout_event(gateway):
    status, raw = post_stream(
        gateway,
        "/v1/messages",
        {"model": "plain", "max_tokens": 50, "stream": True, "messages": msg("[[fake:words=6,stall_after=2]] go")},
    )
    events = sse(raw)
    assert events[-1][0] == "error" and events[-1][1]["error"]["type"] == "timeout_error"


# --- errors, auth and paths in the caller's format --------------------------------------------


def test_errors_in_the_anthropic_format(gateway):
    r = gateway.anon.post("/v1/messages", json={"model": "claude", "max_tokens": 5, "messages": msg("x")})
    assert r.status_code == 401
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == "authentication_error"
    r = gateway.http.post("/v1/messages", content=b"{not json")
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = gateway.http.get("/v1/messages")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert r.json()["error"]["type"] == "invalid_request_error"
    r = gateway.http.post(
        "/v1/messages", json={"model": "claude", "max_tokens": 5, "messages": msg("[[fake:error=rate_limit,retry_after=9]] x")}
    )
    assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_error"


def test_errors_auth_and_paths_in_the_gemini_format(gateway):
    body = {"contents": [{"parts": [{"text": "hi"}]}]}
    r = gateway.anon.post("/v1beta/models/gemini:generateContent", json=body)
    assert r.status_code == 401 and r.json()["error"]["status"] == "UNAUTHENTICATED"
    r = gateway.anon.post(
        "/v1beta/models/gemini:generateContent", json=body, headers={"x-goog-api-key": gateway.token}
    )
    assert r.status_code == 200 and r.json()["candidates"][0]["content"]["parts"][0]["text"]
    r = gateway.http.post("/v1beta/models/gemini:streamGenerateContent", json=body)
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert "alt" in r.json()["error"]["message"]
    r = gateway.http.post("/v1beta/models/gemini:countTokens", json=body)
    assert r.status_code == 404 and r.json()["error"]["status"] == "NOT_FOUND"
    r = gateway.http.post("/v1beta/models/nope:generateContent", json=body)
    assert r.status_code == 404 and r.json()["error"]["code"] == 404
    r = gateway.http.post("/v1beta/models/gemini:generateContent", json={"contents": [{"role": "x", "parts": []}]})
    assert r.status_code == 400 and "contents[0].role" in r.json()["error"]["message"]


def test_ingress_answers_carry_the_gateway_headers(gateway):
    r = gateway.http.post(
        "/v1/messages",
        json={"model": "claude-then-openai", "max_tokens": 5, "messages": msg("[[fake@anth:status=503]] x")},
    )
    assert r.status_code == 200
    assert r.headers["x-switchyard-provider"] == "oa"
    assert "anth/claude-test:503" in r.headers["x-switchyard-attempts"]
    assert r.json()["content"][0]["text"] == "Hello from oa (small-1)."


# --- embeddings ---------------------------------------------------------------------------


def floats(b64: str) -> list[float]:
    raw = base64.b64decode(b64)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


@pytest.mark.parametrize("route", ["embed", "embed-gemini"])
def test_embeddings_shape_encoding_and_usage(gateway, route):
    r = gateway.http.post("/v1/embeddings", json={"model": route, "input": ["alpha beta", "gamma"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list"
    assert [(d["object"], d["index"], len(d["embedding"])) for d in body["data"]] == [
        ("embedding", 0, 8),
        ("embedding", 1, 8),
    ]
    assert body["usage"]["prompt_tokens"] > 0 and body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"]
    assert r.headers["x-switchyard-route"] == route
    b64 = gateway.http.post(
        "/v1/embeddings", json={"model": route, "input": ["alpha beta", "gamma"], "encoding_format": "base64"}
    ).json()
    for plain, packed in zip(body["data"], b64["data"]):
        assert floats(packed["embedding"]) == pytest.approx(plain["embedding"], rel=1e-6)
    r = gateway.http.post("/v1/embeddings", json={"model": route, "input": "x", "encoding_format": "int8"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "encoding_format"


def test_embeddings_dimensions_reach_both_kinds(gateway):
    for route in ["embed", "embed-gemini"]:
        r = gateway.http.post("/v1/embeddings", json={"model": route, "input": "x", "dimensions": 3})
        assert len(r.json()["data"][0]["embedding"]) == 3, route


def test_embeddings_fail_over(gateway, fake):
    tag = uid()
    r = gateway.http.post(
        "/v1/embeddings", json={"model": "embed-failover", "input": f"[[fake@emb:status=503,id={tag}]] [[fake@gem:id={tag}]] hi"}
    )
    assert r.status_code == 200, r.text
    assert r.headers["x-switchyard-provider"] == "gem"
    assert r.headers["x-switchyard-attempts"].count("emb/text-embedding-3-small:503") == 2
    assert len(fake.requests(id=tag, instance="emb")) == 2
    [seen] = fake.requests(id=tag, instance="gem")
    assert seen["path"] == "/gem/v1beta/models/text-embedding-004:batchEmbedContents"


def test_embeddings_deadline_then_fail_over(gateway):
    t0 = time.monotonic()
    r = gateway.http.post(
        "/v1/embeddings", json={"model": "embed-failover", "input": "[[fake@emb:header_delay_ms=8000]] hello"}
    )
    took = time.monotonic() - t0
    assert r.status_code == 200, r.text
    assert r.headers["x-switchyard-provider"] == "gem"
    assert "emb/text-embedding-3-small:timeout" in r.headers["x-switchyard-attempts"]
    assert took < 6, "the response deadline (2.5 s) cut the silent target short"


def test_embeddings_skip_a_target_without_an_embeddings_api(gateway):
    r = gateway.http.post("/v1/embeddings", json={"model": "embed-claude-first", "input": "hello"})
    assert r.status_code == 200, r.text
    assert "anth/claude-test:unsupported" in r.headers["x-switchyard-attempts"]
    r = gateway.http.post("/v1/embeddings", json={"model": "claude", "input": "hello"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "unsupported_parameter"


def test_embeddings_errors(gateway):
    r = gateway.http.post("/v1/embeddings", json={"model": "nope", "input": "x"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    r = gateway.http.post("/v1/embeddings", json={"model": "embed", "input": 5})
    assert r.status_code == 400 and r.json()["error"]["param"] == "input"
    r = gateway.anon.post("/v1/embeddings", json={"model": "embed", "input": "x"})
    assert r.status_code == 401
