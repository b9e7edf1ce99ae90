"""Failover engine end to end: every scenario of docs/RESILIENCE.md, through real wrangler dev.

The test config (conftest.FAST_*) uses short deadlines: headers 1.5 s, complete response 2.5 s,
first token 1.5 s, idle gap 1.5 s, total 10 s; backoff 20–100 ms; Retry-After honoured up to 3 s;
2 attempts per target, 4 in all.
"""

import time

import pytest

from conftest import BAD_KEY, TEST_KEY, msg, uid

BOTH = pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])


def ask(gateway, model, text, stream, **extra):
    """One request; returns (status, headers, content, body-or-stream)."""
    body = {"model": model, "messages": msg(text), **extra}
    if stream:
        s = gateway.stream(body)
        return s.status, s.headers, s.content(), s
    r = gateway.chat(body)
    content = r.json()["choices"][0]["message"]["content"] if r.status_code == 200 else None
    return r.status_code, r.headers, content, r


def attempts(headers):
    """x-switchyard-attempts as [(provider, outcome)]."""
    out = []
    for item in headers["x-switchyard-attempts"].split(", "):
        target, outcome, _ms = item.rsplit(":", 2)
        out.append((target.split("/")[0], outcome))
    return out


@BOTH
def test_429_with_retry_after_is_honoured(gateway, fake, stream):
    tag = uid()
    status, headers, content, _ = ask(
        gateway, "plain", f"[[fake@oa:id={tag},status=429,retry_after=2,times=1]] hi", stream
    )
    assert status == 200
    assert content == "Hello from oa (small-1)."
    seen = fake.requests(id=tag)
    assert len(seen) == 2
    gap = seen[1]["ts_ms"] - seen[0]["ts_ms"]
    assert gap >= 1900, f"second attempt only {gap} ms later"
    assert attempts(headers) == [("oa", "429"), ("oa", "ok")]


@BOTH
def test_persistent_429_without_retry_after_falls_back(gateway, fake, stream):
    tag = uid()
    status, headers, content, _ = ask(
        gateway, "failover", f"[[fake@oa:id={tag},status=429]] [[fake@backup:id={tag}]] hi", stream
    )
    assert status == 200
    assert content == "Hello from backup (backup-1)."
    assert attempts(headers) == [("oa", "429"), ("oa", "429"), ("backup", "ok")]
    assert len(fake.requests(id=tag, instance="oa")) == 2


@BOTH
def test_500_once_then_ok_retries_the_same_target(gateway, fake, stream):
    tag = uid()
    status, headers, content, _ = ask(
        gateway, "failover", f"[[fake@oa:id={tag},status=500,times=1]] hi", stream
    )
    assert status == 200
    assert headers["x-switchyard-provider"] == "oa"
    assert attempts(headers) == [("oa", "500"), ("oa", "ok")]


@BOTH
def test_persistent_503_falls_back_within_bounded_attempts(gateway, fake, stream):
    tag = uid()
    status, headers, content, _ = ask(gateway, "failover", f"[[fake@oa:id={tag},status=503]] hi", stream)
    assert status == 200
    assert headers["x-switchyard-provider"] == "backup"
    assert attempts(headers) == [("oa", "503"), ("oa", "503"), ("backup", "ok")]


def test_everything_down_is_a_502_after_exactly_max_attempts(gateway, fake):
    tag = uid()
    r = gateway.chat({"model": "three", "messages": msg(f"[[fake:id={tag},status=503]] hi")})
    assert r.status_code == 502
    err = r.json()["error"]
    assert err["code"] == "upstream_error"
    assert err["message"].startswith("all 4 attempt(s) failed")
    assert len(fake.requests(id=tag)) == 4
    assert fake.requests(id=tag, instance="third") == []


@BOTH
def test_reset_before_headers_is_answered(gateway, fake, stream):
    tag = uid()
    status, headers, content, _ = ask(gateway, "failover", f"[[fake@oa:id={tag},reset,times=1]] hi", stream)
    assert status == 200
    assert content == "Hello from oa (small-1)."
    assert attempts(headers) == [("oa", "network"), ("oa", "ok")]


@BOTH
def test_silent_upstream_times_out_then_falls_back(gateway, fake, stream):
    tag = uid()
    t0 = time.monotonic()
    status, headers, content, _ = ask(gateway, "failover", f"[[fake@oa:id={tag},hang]] hi", stream)
    took = time.monotonic() - t0
    assert status == 200
    assert content == "Hello from backup (backup-1)."
    # One attempt on the silent target (no same-target retry after a timeout), then the fallback.
    assert attempts(headers) == [("oa", "timeout"), ("backup", "ok")]
    limit = 1.5 if stream else 2.5
    assert limit - 0.2 <= took < limit + 2.0, took


def test_no_request_outlives_its_total_deadline(gateway, fake):
    t0 = time.monotonic()
    r = gateway.chat({"model": "tight", "messages": msg("[[fake:hang]] hi")})
    took = time.monotonic() - t0
    assert r.status_code == 504
    assert r.json()["error"]["code"] == "upstream_timeout"
    assert took < 2.0 + 1.0, took


@BOTH
def test_slow_first_token_falls_back(gateway, fake, stream):
    tag = uid()
    # Streams: headers at once, first token after 4 s > first_token_ms 1.5 s.
    # Plain: the whole answer after 4 s > response_ms 2.5 s.
    spec = "first_token_delay_ms=4000" if stream else "header_delay_ms=4000"
    status, headers, content, _ = ask(gateway, "failover", f"[[fake@oa:id={tag},{spec}]] hi", stream)
    assert status == 200
    assert content == "Hello from backup (backup-1)."
    assert attempts(headers) == [("oa", "timeout"), ("backup", "ok")]


def test_stream_cut_after_bytes_is_an_in_band_error(gateway, fake):
    tag = uid()
    rid = f"cut-{uid()}"
    s = gateway.stream(
        {"model": "failover", "messages": msg(f"[[fake@oa:id={tag},words=8,cut_after=3]] go")},
        headers={"x-request-id": rid},
    )
    assert s.status == 200
    assert s.content() == "w1 w2 w3"
    assert not s.done, "a truncated answer must not end with [DONE]"
    err = s.error()
    assert err and err["code"] == "upstream_error" and "incomplete" in err["message"]
    assert not any(c.get("choices") and c["choices"][0].get("finish_reason") for c in s.chunks())
    # No failover after bytes reached the caller.
    assert fake.requests(id=tag, instance="backup") == []
    line = gateway.log_for(rid)
    assert line["stream_broken"] is True and line["error_code"] == "upstream_error"


def test_stream_stall_is_bounded_by_the_idle_deadline(gateway, fake):
    s = gateway.stream({"model": "plain", "messages": msg("[[fake:words=6,stall_after=2]] go")})
    assert s.status == 200
    assert s.content() == "w1 w2"
    assert not s.done
    err = s.error()
    assert err and err["code"] == "upstream_timeout"
    stall = s.events[-1][0] - s.events[-2][0]
    assert 1.3 <= stall < 3.5, stall
    # The gateway is healthy afterwards.
    assert gateway.http.get("/healthz").status_code == 200
    assert gateway.chat({"model": "plain", "messages": msg("again")}).status_code == 200


def test_stream_in_band_upstream_error_after_bytes(gateway):
    s = gateway.stream({"model": "plain", "messages": msg("[[fake:words=6,error_event_after=2]] go")})
    assert s.content() == "w1 w2"
    assert not s.done and s.error()["code"] == "upstream_error"


def test_malformed_chunk_is_skipped_and_logged(gateway):
    rid = f"mal-{uid()}"
    s = gateway.stream(
        {"model": "plain", "messages": msg("[[fake:words=5,malformed_at=2]] go")}, headers={"x-request-id": rid}
    )
    assert s.status == 200 and s.done
    assert s.content() == "w1 w2 w3 w4 w5"
    assert "broken" not in s.raw.decode()
    assert gateway.log_for(rid)["malformed_chunks"] == 1


def test_malformed_chunk_before_first_token_is_skipped_too(gateway):
    s = gateway.stream({"model": "plain", "messages": msg("[[fake:words=3,malformed_at=0]] go")})
    assert s.status == 200 and s.done and s.content() == "w1 w2 w3"


def test_missing_done_is_finalised_promptly_with_usage(gateway):
    s = gateway.stream(
        {"model": "plain", "messages": msg("[[fake:no_done]] a b c"), "stream_options": {"include_usage": True}}
    )
    assert s.status == 200
    assert s.done, "the gateway finalises a complete answer with [DONE]"
    assert s.content() == "Hello from oa (small-1)."
    usage = [c["usage"] for c in s.chunks() if c.get("usage")]
    assert usage and usage[-1]["prompt_tokens"] == 4  # the fake counts words, directive included
    assert s.t_total < 1.5, s.t_total


@BOTH
def test_context_length_goes_to_the_larger_route(gateway, fake, stream):
    tag = uid()
    status, headers, content, _ = ask(
        gateway, "ctx-small", f"[[fake@small:id={tag},error=context_length]] [[fake@large:id={tag}]] long", stream
    )
    assert status == 200
    assert content == "Hello from large (huge-ctx)."
    assert headers["x-switchyard-route"] == "ctx-large"
    assert len(fake.requests(id=tag, instance="small")) == 1, "no same-model retry"
    assert attempts(headers) == [("small", "400"), ("large", "ok")]


@BOTH
def test_context_length_without_fallback_is_one_attempt(gateway, fake, stream):
    tag = uid()
    status, headers, _, resp = ask(gateway, "failover", f"[[fake@oa:id={tag},error=context_length]] long", stream)
    assert status == 400
    body = resp.json() if not stream else None
    if body:
        assert body["error"]["code"] == "context_length_exceeded"
    assert len(fake.requests(id=tag)) == 1
    assert fake.requests(id=tag, instance="backup") == []


@BOTH
def test_content_policy_is_one_attempt_with_the_reason(gateway, fake, stream):
    tag = uid()
    body = {"model": "failover", "messages": msg(f"[[fake@oa:id={tag},error=content_policy]] bad"), "stream": stream}
    r = gateway.chat(body)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "content_policy_violation"
    assert "policy" in err["message"]
    assert len(fake.requests(id=tag)) == 1


def test_content_policy_fails_over_where_the_route_says_so(gateway, fake):
    tag = uid()
    r = gateway.chat({"model": "policy-failover", "messages": msg(f"[[fake@oa:id={tag},error=content_policy]] x")})
    assert r.status_code == 200
    assert r.headers["x-switchyard-provider"] == "backup"


@BOTH
def test_fallback_rejecting_prefill_does_not_mask_the_real_failure(gateway, fake, stream):
    tag = uid()
    body = {
        "model": "failover",
        "messages": msg(f"[[fake@oa:id={tag},status=503]] [[fake@backup:id={tag},error=prefill]] hi")
        + [{"role": "assistant", "content": "Sure, "}],
        "stream": stream,
    }
    r = gateway.chat(body)
    assert r.status_code == 502, r.text
    err = r.json()["error"]
    assert err["code"] == "upstream_error"
    assert '"oa" failed: status 503' in err["message"]
    assert "prefill" in err["message"]


@BOTH
def test_failover_accounting_names_the_fallback(gateway, fake, stream):
    rid = f"acct-{uid()}"
    body = {"model": "failover", "messages": msg("[[fake@oa:status=500]] [[fake@backup:cached=1]] one two")}
    if stream:
        s = gateway.stream({**body, "stream_options": {"include_usage": True}}, headers={"x-request-id": rid})
        assert s.status == 200
        model = s.chunks()[0]["model"]
        usage = [c["usage"] for c in s.chunks() if c.get("usage")][-1]
        headers = s.headers
    else:
        r = gateway.chat(body, headers={"x-request-id": rid})
        assert r.status_code == 200
        model, usage, headers = r.json()["model"], r.json()["usage"], r.headers
    assert model == "backup-1"
    assert usage["completion_tokens"] == 4
    assert usage["prompt_tokens_details"]["cached_tokens"] == 1
    assert headers["x-switchyard-provider"] == "backup"
    assert headers["x-switchyard-model"] == "backup-1"
    assert headers["x-switchyard-route"] == "failover"
    line = gateway.log_for(rid)
    assert line["provider"] == "backup" and line["attempts"] == 3
    assert [a["outcome"] for a in line["attempt_log"]] == ["500", "500", "ok"]
    assert line["completion_tokens"] == usage["completion_tokens"]
    assert line["prompt_tokens"] == usage["prompt_tokens"]


def test_a_rejected_key_is_skipped_for_the_next(gateway, fake):
    tag = uid()
    text = f"[[fake@multikey:id={tag},reject_key={BAD_KEY}]] hi"
    r = gateway.chat({"model": "multikey", "messages": msg(text)})
    assert r.status_code == 200
    assert attempts(r.headers) == [("multikey", "401"), ("multikey", "ok")]
    # The next request goes straight to the good key: the bad one is remembered.
    r = gateway.chat({"model": "multikey", "messages": msg(text)})
    assert r.status_code == 200
    assert attempts(r.headers) == [("multikey", "ok")]
    keys = [s["headers"]["authorization"] for s in fake.requests(id=tag)]
    assert keys == [f"Bearer {BAD_KEY}", f"Bearer {TEST_KEY}", f"Bearer {TEST_KEY}"]
