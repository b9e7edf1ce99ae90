"""The exact-match response cache (KV) through wrangler dev: keys, per-request control, stream
storage and replay, stale-if-error, coalescing, purging, and the ledger's view of hits.

Entries are written after the response (in `ctx.wait_until`), so a test that needs an entry
repeats the request until it is answered from the cache (`until_hit`).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from conftest import BIN, ROOT, msg, seed_sql, uid, wrangler_env

OTHER_TOKEN = "sy_cache_other_tenant_token_0001"
LIMITED_TOKEN = "sy_cache_limited_tenant_token_0001"
STATUS = "x-switchyard-cache"


def req(text: str, route: str = "cached", **extra) -> dict:
    return {"model": route, "temperature": 0, "messages": msg(text), **extra}


def until(fn, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(0.05)


def until_hit(send):
    """Repeat `send()` until the answer comes from the cache (every miss goes upstream)."""

    def attempt():
        r = send()
        headers = r.headers
        return r if headers.get(STATUS) == "HIT" else None

    return until(attempt, what="a cache HIT")


def writes_settled(gateway) -> None:
    """A barrier for "nothing was stored": store a new entry and wait until it is readable. Writes
    are issued in order, right after each response, so an earlier answer's would have landed."""
    control = req(f"barrier {uid()}")
    gateway.chat(control)
    until_hit(lambda: gateway.chat(control))


def d1(workdir, sql: str) -> list[dict]:
    """Run SQL against the gateway's local D1 (the same state directory wrangler dev uses)."""
    out = subprocess.run(
        [str(BIN / "wrangler"), "d1", "execute", "DB", "--local", "--persist-to", str(workdir / "state"),
         "--command", sql, "--json"],
        cwd=ROOT, env=wrangler_env(), capture_output=True, text=True, timeout=120, check=True,
    )
    return json.loads(out.stdout)[0].get("results", [])


@pytest.fixture(scope="module")
def tenants(gateway, workdir):
    """Two more tenants: `cacheother` (no limits) and `cachelimited` (3 requests a minute and a
    total budget of 0)."""
    d1(
        workdir,
        seed_sql("cacheother", OTHER_TOKEN)
        + seed_sql(
            "cachelimited",
            LIMITED_TOKEN,
            "UPDATE tenants SET rpm_limit = 3 WHERE id = 'cachelimited';"
            "INSERT OR IGNORE INTO budgets (tenant_id, period, limit_nanos) VALUES ('cachelimited', 'total', 0);",
        ),
    )
    auth = lambda token: {"authorization": f"Bearer {token}"}  # noqa: E731
    with httpx.Client(base_url=gateway.base, timeout=30, headers=auth(OTHER_TOKEN)) as other, httpx.Client(
        base_url=gateway.base, timeout=30, headers=auth(LIMITED_TOKEN)
    ) as limited:
        yield other, limited


def text_of(r: httpx.Response) -> str:
    return r.json()["choices"][0]["message"]["content"]


# --- keys and hits ---------------------------------------------------------------------------


def test_miss_then_hit_for_the_same_request_with_keys_in_another_order(gateway, fake):
    tag = uid()
    text = f"capital of France? [[fake:id={tag}]]"
    first = gateway.chat(req(text))
    assert first.status_code == 200, first.text
    assert first.headers[STATUS] == "MISS"
    assert "age" not in first.headers
    # The same request with its keys in another order and `temperature: 0.0`: the same key.
    raw = json.dumps({"messages": [{"content": text, "role": "user"}], "temperature": 0.0, "model": "cached"})
    post = lambda: gateway.http.post(  # noqa: E731
        "/v1/chat/completions", content=raw, headers={"content-type": "application/json"}
    )
    hit = until_hit(post)
    assert hit.json() == first.json(), "the stored completion, id included"
    assert int(hit.headers["age"]) >= 0
    assert hit.headers["x-switchyard-provider"] == "cache1"
    assert hit.headers["x-switchyard-model"] == first.headers["x-switchyard-model"]
    assert hit.headers["x-switchyard-cost-usd"] == "0.0"
    assert hit.headers["x-switchyard-attempts"] == ""
    upstream = len(fake.requests(id=tag))
    assert post().headers[STATUS] == "HIT"
    assert len(fake.requests(id=tag)) == upstream, "a hit does not reach the provider"


def test_hits_are_logged_and_charged_nothing_in_the_ledger(gateway, workdir):
    tag = uid()
    body = req(f"ledger check [[fake:id={tag}]]")
    miss_id = f"cache-miss-{tag}"
    miss = gateway.chat(body, {"x-request-id": miss_id})
    assert miss.headers[STATUS] == "MISS"
    ids = []

    def send():
        ids.append(f"cache-try-{tag}-{len(ids)}")
        return gateway.chat(body, {"x-request-id": ids[-1]})

    until_hit(send)
    hit_id = ids[-1]
    assert gateway.log_for(miss_id)["cache"] == "MISS"
    line = gateway.log_for(hit_id)
    assert line["cache"] == "HIT" and line["status"] == 200 and line["attempts"] == 0
    assert line["provider"] == "cache1" and line["cost_usd"] == "0.0"

    def rows():
        got = d1(
            workdir,
            "SELECT request_id, cache_hit, cost_nanos, prompt_tokens, provider, model FROM usage_ledger "
            f"WHERE request_id IN ('{miss_id}', '{hit_id}')",
        )
        return {r["request_id"]: r for r in got} if len(got) == 2 else None

    ledger = until(rows, timeout=30, what="both ledger rows")
    assert ledger[miss_id]["cache_hit"] == 0 and ledger[miss_id]["cost_nanos"] > 0
    hit_row = ledger[hit_id]
    assert hit_row["cache_hit"] == 1 and hit_row["cost_nanos"] == 0 and hit_row["prompt_tokens"] == 0
    assert (hit_row["provider"], hit_row["model"]) == ("cache1", "c-1")
    daily = d1(workdir, "SELECT cache_hits FROM usage_daily WHERE tenant_id = 'test' AND model = 'c-1'")
    assert sum(r["cache_hits"] for r in daily) >= 1


def test_another_tenant_misses_unless_the_route_shares(gateway, fake, tenants):
    other, _ = tenants
    tag = uid()
    body = req(f"tenant scope [[fake:id={tag}]]")
    assert gateway.chat(body).headers[STATUS] == "MISS"
    mine = until_hit(lambda: gateway.chat(body))
    theirs = other.post("/v1/chat/completions", json=body)
    assert theirs.status_code == 200
    assert theirs.headers[STATUS] == "MISS", "one tenant never sees another tenant's entries"
    assert theirs.json()["id"] != mine.json()["id"]
    # A route with a shared namespace serves one tenant's answer to another.
    shared = req(f"shared scope [[fake:id={tag}-s]]", route="cached-shared")
    stored = gateway.chat(shared)
    assert stored.headers[STATUS] == "MISS"
    hit = until_hit(lambda: other.post("/v1/chat/completions", json=shared))
    assert hit.json() == stored.json()


def test_hits_are_exempt_from_budgets_but_count_for_the_request_rate(gateway, tenants):
    _, limited = tenants
    shared = req(f"budget exempt {uid()}", route="cached-shared")
    assert gateway.chat(shared).headers[STATUS] == "MISS"
    until_hit(lambda: gateway.chat(shared))
    # The limited tenant's budget is 0: a miss is refused, a hit is served.
    refused = limited.post("/v1/chat/completions", json=req(f"not cached {uid()}", route="cached-shared"))
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "budget_exceeded"
    statuses = [limited.post("/v1/chat/completions", json=shared) for _ in range(4)]
    assert [r.status_code for r in statuses[:3]] == [200, 200, 200]
    assert all(r.headers[STATUS] == "HIT" for r in statuses[:3])
    # ... but hits count for the request rate (3 a minute).
    assert statuses[3].status_code == 429
    assert statuses[3].json()["error"]["code"] == "rate_limit_exceeded"


# --- per-request control ---------------------------------------------------------------------


def test_no_store_no_cache_and_both(gateway, fake):
    tag = uid()
    body = req(f"no-store [[fake:id={tag}]]")
    r = gateway.chat(body, {"cache-control": "no-store"})
    assert r.status_code == 200 and r.headers[STATUS] == "MISS"
    writes_settled(gateway)
    assert gateway.chat(body).headers[STATUS] == "MISS", "no-store stored nothing"
    until_hit(lambda: gateway.chat(body))
    # no-cache: not answered from the cache (the provider is asked again), still stored.
    before = len(fake.requests(id=tag))
    fresh = gateway.chat(body, {"cache-control": "No-Cache, max-age=0"})
    assert fresh.headers[STATUS] == "MISS"
    assert len(fake.requests(id=tag)) == before + 1
    until(lambda: gateway.chat(body).json()["id"] == fresh.json()["id"], what="the no-cache answer stored")
    both = gateway.chat(body, {"cache-control": "no-cache, no-store"})
    assert both.headers[STATUS] == "BYPASS"
    assert len(fake.requests(id=tag)) == before + 2


def test_ttl_namespace_and_what_takes_part(gateway):
    # Not deterministic (no temperature 0): BYPASS, unless the caller opts in with a TTL.
    loose = {"model": "cached", "messages": msg(f"loose {uid()}")}
    assert gateway.chat(loose).headers[STATUS] == "BYPASS"
    opted = gateway.chat(loose, {"x-switchyard-cache-ttl": "60"})
    assert opted.headers[STATUS] == "MISS"
    until_hit(lambda: gateway.chat(loose, {"x-switchyard-cache-ttl": "60"}))
    # A route without a cache policy: BYPASS.
    assert gateway.chat(req("uncached", route="plain")).headers[STATUS] == "BYPASS"
    # A namespace is a partition of the caller's entries.
    body = req(f"namespaced {uid()}")
    gateway.chat(body)
    until_hit(lambda: gateway.chat(body))
    assert gateway.chat(body, {"x-switchyard-cache-namespace": "exp-7"}).headers[STATUS] == "MISS"
    # Invalid headers are 400s naming the header, on every route.
    for name, value in (("x-switchyard-cache-ttl", "0"), ("x-switchyard-cache-ttl", "1.5"),
                        ("x-switchyard-cache-namespace", "a:b")):
        for route in ("cached", "plain"):
            bad = gateway.chat(req("x", route=route), {name: value})
            assert bad.status_code == 400, (name, value, bad.text)
            assert bad.json()["error"]["param"] == name


# --- streams ---------------------------------------------------------------------------------


def test_a_completed_stream_is_stored_and_replayed(gateway, fake):
    tag = uid()
    body = req(f"stream me [[fake:words=40,id={tag}]]")
    first = gateway.stream(body)
    assert first.status == 200 and first.headers[STATUS] == "MISS"
    assert first.done
    hit = until_hit(lambda: gateway.stream(body))
    assert hit.headers["content-type"].startswith("text/event-stream")
    assert hit.done, hit.data[-2:]
    assert hit.content() == first.content() == " ".join(f"w{i}" for i in range(1, 41))
    chunks = hit.chunks()
    assert len(chunks) > 3, "replayed in pieces"
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert {c["id"] for c in chunks} == {first.chunks()[0]["id"]}
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert not any(c.get("usage") for c in chunks), "no usage chunk unless asked for"
    with_usage = gateway.stream({**body, "stream_options": {"include_usage": True}})
    assert with_usage.headers[STATUS] == "HIT"
    usage = with_usage.chunks()[-1]
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 40
    # The stored stream answers a plain caller as the completion it amounts to.
    plain = gateway.chat(body)
    assert plain.headers[STATUS] == "HIT"
    assert text_of(plain) == first.content()
    assert plain.json()["choices"][0]["finish_reason"] == "stop"
    assert plain.json()["usage"]["completion_tokens"] == 40
    assert len(fake.requests(id=tag)) >= 1


def test_a_plain_answer_serves_a_stream(gateway):
    body = req(f"plain first {uid()}")
    plain = gateway.chat(body)
    assert plain.headers[STATUS] == "MISS"
    until_hit(lambda: gateway.chat(body))
    s = gateway.stream(body)
    assert s.status == 200 and s.headers[STATUS] == "HIT"
    assert s.done and s.content() == text_of(plain)
    assert {c["id"] for c in s.chunks()} == {plain.json()["id"]}


def test_errors_truncated_streams_and_tool_calls_are_not_cached(gateway, fake):
    tag = uid()
    # An error (not retried) is not stored: the repeat goes upstream and succeeds.
    failing = req(f"fails once [[fake:status=400,times=1,id={tag}-e]]")
    assert gateway.chat(failing).status_code == 400
    writes_settled(gateway)
    ok = gateway.chat(failing)
    assert ok.status_code == 200 and ok.headers[STATUS] == "MISS"
    assert len(fake.requests(id=f"{tag}-e")) == 2
    # A stream cut after its first words ends with an in-band error and is not stored.
    cut = req(f"cut once [[fake:words=10,cut_after=3,times=1,id={tag}-c]]")
    broken = gateway.stream(cut)
    assert broken.status == 200 and broken.error() is not None and not broken.done
    writes_settled(gateway)
    whole = gateway.stream(cut)
    assert whole.headers[STATUS] == "MISS" and whole.done
    assert len(fake.requests(id=f"{tag}-c")) == 2
    # An answer that calls a tool is not stored unless the route opts in.
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    calling = req(f"weather [[fake:tool_call,id={tag}-t]]", tools=tools)
    first = gateway.chat(calling)
    assert first.json()["choices"][0]["finish_reason"] == "tool_calls"
    writes_settled(gateway)
    assert gateway.chat(calling).headers[STATUS] == "MISS"
    assert len(fake.requests(id=f"{tag}-t")) == 2


def test_tool_calls_are_cached_where_the_route_opts_in(gateway, fake):
    tag = uid()
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    body = req(f"weather [[fake:tool_call,id={tag}]]", route="cached-tools", tools=tools)
    first = gateway.stream(body)
    assert first.headers[STATUS] == "MISS" and first.done
    hit = until_hit(lambda: gateway.chat(body))
    call = hit.json()["choices"][0]["message"]["tool_calls"][0]
    assert call["function"] == {"name": "get_weather", "arguments": '{"location":"Paris"}'}
    assert hit.json()["choices"][0]["finish_reason"] == "tool_calls"
    replay = gateway.stream(body)
    assert replay.headers[STATUS] == "HIT" and replay.done
    deltas = [c["choices"][0]["delta"] for c in replay.chunks() if c["choices"]]
    args = "".join(d["tool_calls"][0]["function"].get("arguments", "") for d in deltas if d.get("tool_calls"))
    assert args == '{"location":"Paris"}'
    assert len(fake.requests(id=tag)) == 1


# --- stale-if-error --------------------------------------------------------------------------


def test_stale_entry_is_served_when_every_target_fails(gateway, fake):
    body = req(f"stale {uid()}", route="cached-stale")
    first = gateway.chat(body)
    assert first.status_code == 200 and first.headers[STATUS] == "MISS"
    try:
        for instance in ("stale1", "stale2"):
            fake.set_behavior(instance, "status=503")
        # Fresh for 1 s (HIT), then stale: with every target down, the stale entry answers.
        stale = until(
            lambda: (lambda r: r if r.headers.get(STATUS) == "STALE" else None)(gateway.chat(body)),
            what="a STALE answer",
        )
        assert stale.status_code == 200
        assert stale.json() == first.json()
        assert int(stale.headers["age"]) >= 1
        assert "503" in stale.headers["x-switchyard-attempts"], "the failed attempts are named"
        # Without an entry, the failure is the caller's.
        missing = gateway.chat(req(f"stale none {uid()}", route="cached-stale"))
        assert missing.status_code >= 500 and missing.headers[STATUS] == "MISS"
    finally:
        for instance in ("stale1", "stale2"):
            fake.set_behavior(instance, "")
    # Up again: an expired entry is refreshed from upstream.
    refreshed = gateway.chat(body)
    assert refreshed.status_code == 200 and refreshed.headers[STATUS] == "MISS"


# --- coalescing ------------------------------------------------------------------------------


def test_a_burst_of_identical_misses_reaches_the_provider_once(gateway, fake):
    tag = uid()
    body = req(f"burst [[fake:header_delay_ms=800,id={tag}]]")

    def send(_):
        with httpx.Client(base_url=gateway.base, timeout=30, headers=dict(gateway.http.headers)) as c:
            return c.post("/v1/chat/completions", json=body)

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(send, range(6)))
    assert [r.status_code for r in answers] == [200] * 6
    assert sorted(r.headers[STATUS] for r in answers) == ["HIT"] * 5 + ["MISS"]
    assert len({text_of(r) for r in answers}) == 1
    assert len({r.json()["id"] for r in answers}) == 1
    assert len(fake.requests(id=tag)) == 1


# --- purging ---------------------------------------------------------------------------------


def cache_key(tenant: str, route: str, body: dict, namespace: str = "") -> str:
    """The KV key as docs/CACHE.md defines it (ASCII bodies: Python's JSON escaping agrees)."""
    excluded = {"model", "stream", "stream_options", "user", "metadata", "store", "safety_identifier",
                "prompt_cache_key"}
    kept = {k: v for k, v in body.items() if v is not None and k not in excluded}
    canonical = json.dumps({"body": kept, "route": route}, sort_keys=True, separators=(",", ":"))
    return f"c1:t:{tenant}:{namespace}:{hashlib.sha256(canonical.encode()).hexdigest()}"


def test_purge_a_tenant_and_one_key(gateway):
    a, b = req(f"purge a {uid()}"), req(f"purge b {uid()}")
    for body in (a, b):
        gateway.chat(body)
        until_hit(lambda: gateway.chat(body))
    r = gateway.admin.delete("/cache/tenants/test")
    assert r.status_code == 200, r.text
    assert r.json()["deleted"] >= 2 and r.json()["prefix"] == "c1:t:test:"
    assert r.json()["complete"] is True
    assert gateway.chat(a).headers[STATUS] == "MISS"
    c = req(f"purge c {uid()}")
    gateway.chat(c)
    until_hit(lambda: gateway.chat(c))
    r = gateway.admin.delete(f"/cache/keys/{cache_key('test', 'cached', c)}")
    assert r.status_code == 200, r.text
    assert gateway.chat(c).headers[STATUS] == "MISS"
    # Admin only, DELETE only, and a bad tenant id or key is a 400.
    assert gateway.anon.delete("/admin/cache/tenants/test").status_code == 401
    assert gateway.http.delete("/admin/cache/tenants/test").status_code == 401
    wrong = gateway.admin.get("/cache/tenants/test")
    assert wrong.status_code == 405
    assert gateway.admin.delete("/cache/tenants/a:b").status_code == 400
    assert gateway.admin.delete("/cache/keys/not%20a%20key").status_code == 400


def test_hits_answer_in_the_callers_own_format(gateway, fake):
    """Entries are stored in OpenAI's shape; Anthropic and Gemini callers get theirs back."""
    tag = uid()
    text = f"cached across formats [[fake:id={tag}]]"
    messages = {"model": "cached", "max_tokens": 50, "temperature": 0, "messages": msg(text)}
    post = lambda: gateway.http.post("/v1/messages", json=messages)  # noqa: E731
    first = post()
    assert first.status_code == 200 and first.json()["type"] == "message"
    hit = until_hit(post)
    body = hit.json()
    assert body["type"] == "message" and body["role"] == "assistant"
    assert body["content"][0]["text"] == first.json()["content"][0]["text"]
    assert body["stop_reason"] == "end_turn"
    # Streamed from the cache: Anthropic's event sequence, not OpenAI chunks.
    s = gateway.http.post("/v1/messages", json={**messages, "stream": True})
    assert s.headers[STATUS] == "HIT"
    events = [l[7:] for l in s.text.splitlines() if l.startswith("event: ")]
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert "data: [DONE]" not in s.text
    # Gemini callers too.
    g = {"contents": [{"role": "user", "parts": [{"text": text}]}], "generationConfig": {"temperature": 0, "maxOutputTokens": 50}}
    gpost = lambda: gateway.http.post("/v1beta/models/cached:generateContent", json=g)  # noqa: E731
    assert gpost().status_code == 200
    ghit = until_hit(gpost).json()
    assert ghit["candidates"][0]["content"]["parts"][0]["text"]
    assert len(fake.requests(id=tag)) <= 3, "each format's first request may miss; hits stay local"
