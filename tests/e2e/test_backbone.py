"""The backbone through real wrangler dev: round trips, errors, request ids, log lines."""

import json

from conftest import BACKUP_KEY, TEST_KEY, msg, uid

PLAIN_REPLY = "Hello from oa (small-1)."


def test_healthz(gateway):
    r = gateway.http.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_models_lists_public_names(gateway):
    r = gateway.http.get("/v1/models")
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "list"
    ids = [m["id"] for m in body["data"]]
    assert "plain" in ids and "failover" in ids
    assert all(m["object"] == "model" for m in body["data"])


def test_non_stream_round_trip_is_exact(gateway, fake):
    tag = uid()
    r = gateway.chat({"model": "plain", "messages": msg(f"[[fake:id={tag}]] say hello please")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == PLAIN_REPLY
    assert body["choices"][0]["finish_reason"] == "stop"
    # 4 words in the prompt, 4 in the reply.
    assert body["usage"]["prompt_tokens"] == 4
    assert body["usage"]["completion_tokens"] == 4
    assert body["usage"]["total_tokens"] == 8
    assert r.headers["x-switchyard-provider"] == "oa"
    assert r.headers["x-switchyard-route"] == "plain"
    assert r.headers["x-switchyard-model"] == "small-1"
    # The upstream got the target model and the key from secrets.
    [seen] = fake.requests(id=tag)
    assert seen["body"]["model"] == "small-1"
    assert seen["headers"]["authorization"] == f"Bearer {TEST_KEY}"
    assert seen["path"] == "/oa/v1/chat/completions"


def test_unknown_fields_pass_through(gateway, fake):
    tag = uid()
    r = gateway.chat(
        {"model": "plain", "messages": msg(f"[[fake:id={tag}]] hi"), "logit_bias": {"50256": -100}, "x_vendor": {"a": [1, 2]}}
    )
    assert r.status_code == 200
    [seen] = fake.requests(id=tag)
    assert seen["body"]["logit_bias"] == {"50256": -100}
    assert seen["body"]["x_vendor"] == {"a": [1, 2]}


def test_stream_round_trip_with_usage(gateway):
    s = gateway.stream(
        {"model": "plain", "messages": msg("one two three"), "stream_options": {"include_usage": True}}
    )
    assert s.status == 200
    assert s.headers["content-type"].startswith("text/event-stream")
    assert s.content() == PLAIN_REPLY
    assert s.done, s.data[-3:]
    usage = [c["usage"] for c in s.chunks() if c.get("usage")]
    assert usage == [usage[-1]] and usage[-1]["prompt_tokens"] == 3 and usage[-1]["completion_tokens"] == 4
    # Chunks arrive one per word: the stream is forwarded chunk by chunk, not buffered whole.
    content_chunks = [c for c in s.chunks() if c.get("choices") and c["choices"][0]["delta"].get("content")]
    assert len(content_chunks) == 4


def test_stream_without_usage_hides_it_but_logs_it(gateway):
    rid = f"it-{uid()}"
    s = gateway.stream({"model": "plain", "messages": msg("a b")}, headers={"x-request-id": rid})
    assert s.status == 200 and s.done
    assert not any(c.get("usage") for c in s.chunks())
    assert s.headers["x-request-id"] == rid
    line = gateway.log_for(rid)
    assert line["stream"] is True
    assert line["prompt_tokens"] == 2 and line["completion_tokens"] == 4


def test_stream_chunks_are_forwarded_as_they_arrive(gateway):
    # 6 words, 300 ms apart: the first content must reach us long before the last.
    s = gateway.stream({"model": "plain", "messages": msg("[[fake:words=6,chunk_delay_ms=300]] go")})
    assert s.status == 200 and s.done
    times = [t for t, d in s.events if '"content":"w' in d or '"content":" w' in d]
    assert len(times) == 6
    assert times[-1] - times[0] >= 1.0, times


def test_request_id_echoed_or_generated(gateway):
    r = gateway.chat({"model": "plain", "messages": msg("hi")}, headers={"x-request-id": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    r = gateway.chat({"model": "plain", "messages": msg("hi")})
    generated = r.headers["x-request-id"]
    assert generated.startswith("req_") and len(generated) == 28
    # A hostile id is replaced, not echoed.
    r = gateway.chat({"model": "plain", "messages": msg("hi")}, headers={"x-request-id": 'a"b'})
    assert r.headers["x-request-id"].startswith("req_")


def test_one_log_line_with_the_fields(gateway):
    rid = f"log-{uid()}"
    r = gateway.chat({"model": "plain", "messages": msg("hi there")}, headers={"x-request-id": rid})
    assert r.status_code == 200
    line = gateway.log_for(rid)
    for field in ("ts", "request_id", "route", "provider", "upstream_model", "status", "stream", "latency_ms", "ttfb_ms", "attempts"):
        assert field in line, field
    assert line["route"] == "plain" and line["provider"] == "oa" and line["upstream_model"] == "small-1"
    assert line["status"] == 200 and line["attempts"] == 1 and line["stream"] is False
    assert line["ts"].endswith("Z")
    assert sum(1 for l in gateway.log_lines() if l.get("request_id") == rid) == 1
    assert TEST_KEY not in gateway.log_path.read_text()


def error_of(r, status, code):
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["code"] == code, err
    return err


def test_invalid_json_is_400(gateway):
    r = gateway.http.post("/v1/chat/completions", content=b'{"model": "plain", "messages": [', headers={"content-type": "application/json"})
    err = error_of(r, 400, "invalid_request")
    assert "not valid JSON" in err["message"]


def test_wrong_field_types_name_the_field(gateway):
    cases = [
        ({"model": 7, "messages": msg("x")}, "model"),
        ({"model": "plain", "messages": "hi"}, "messages"),
        ({"model": "plain", "messages": msg("x"), "stream": "yes"}, "stream"),
        ({"model": "plain", "messages": msg("x"), "temperature": "hot"}, "temperature"),
        ({"model": "plain", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
    ]
    for body, param in cases:
        err = error_of(gateway.chat(body), 400, "invalid_request")
        assert err["param"] == param
        assert param.split("[")[0] in err["message"]


def test_body_over_cap_is_413(gateway, fake):
    tag = uid()
    big = "x" * (70 * 1024)
    r = gateway.chat({"model": "plain", "messages": msg(f"[[fake:id={tag}]] {big}")})
    err = error_of(r, 413, "payload_too_large")
    assert "65536" in err["message"]
    assert fake.requests(id=tag) == []


def test_wrong_method_is_405(gateway):
    r = gateway.http.get("/v1/chat/completions")
    error_of(r, 405, "method_not_allowed")
    assert r.headers["allow"] == "POST"
    r = gateway.http.post("/v1/models")
    error_of(r, 405, "method_not_allowed")
    assert r.headers["allow"] == "GET"


def test_unknown_path_is_404(gateway):
    r = gateway.http.get("/v2/whatever")
    error_of(r, 404, "not_found")


def test_unknown_model_is_404_model_not_found(gateway):
    r = gateway.chat({"model": "no-such-model", "messages": msg("x")})
    err = error_of(r, 404, "model_not_found")
    assert err["param"] == "model"
    assert "no-such-model" in err["message"]


def test_upstream_failure_is_502_and_reveals_nothing(gateway, fake):
    r = gateway.chat({"model": "plain", "messages": msg("[[fake:status=500]] hi")})
    err = error_of(r, 502, "upstream_error")
    text = r.text
    for secret in (TEST_KEY, BACKUP_KEY, "127.0.0.1", str(fake.port), "http://", "panicked"):
        assert secret not in text, secret
    assert '"oa"' in err["message"]


def test_upstream_timeout_is_504(gateway):
    r = gateway.chat({"model": "plain", "messages": msg("[[fake:hang]] hi")})
    err = error_of(r, 504, "upstream_timeout")
    assert "oa" in err["message"]


def test_missing_secret_fails_over_and_is_named(gateway, fake):
    tag = uid()
    r = gateway.chat({"model": "nokey-then-backup", "messages": msg(f"[[fake:id={tag}]] hi")})
    assert r.status_code == 200
    assert r.headers["x-switchyard-provider"] == "backup"
    assert "nokey/x:auth" in r.headers["x-switchyard-attempts"]
    [seen] = fake.requests(id=tag)
    assert seen["headers"]["authorization"] == f"Bearer {BACKUP_KEY}"


def test_error_bodies_are_json_for_every_status(gateway):
    for r in (
        gateway.http.get("/nope"),
        gateway.http.delete("/v1/chat/completions"),
        gateway.chat({"model": "zzz", "messages": msg("x")}),
    ):
        json.loads(r.text)["error"]["message"]
