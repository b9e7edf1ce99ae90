"""Tenants end to end: authentication, origins, end-user tokens, budgets under concurrency,
soft alerts, rate limits, and the ledger — through real wrangler dev with local D1 and the
per-tenant gate Durable Object. Tenants are seeded straight into local D1 here; the admin API
has its own tests.
"""

import base64
import concurrent.futures
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from conftest import ADMIN_TOKEN, SIGNING_SECRET, TENANT_TOKEN, msg, seed_sql, uid

# The "plain" route's model is priced at $1 / $2 per 1M input / output tokens:
# 1000 and 2000 nano-USD per token.
IN_NANOS, OUT_NANOS = 1000, 2000


def q(v) -> str:
    """A SQL literal (tests build their own seed SQL; the gateway only ever binds parameters)."""
    if v is None:
        return "NULL"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, (list, dict)):
        v = json.dumps(v)
    return "'" + str(v).replace("'", "''") + "'"


def new_tenant(gateway, budgets=(), ledger_nanos=0, **cols):
    """Seed a tenant with a token; returns (tenant id, token)."""
    tid = f"t{uid()}"
    token = f"sy_test_{uid()}{uid()}"
    extra = ""
    if cols:
        sets = ", ".join(f"{k} = {q(v)}" for k, v in cols.items())
        extra += f"UPDATE tenants SET {sets} WHERE id = {q(tid)};"
    for period, limit, threshold, webhook in budgets:
        extra += (
            "INSERT INTO budgets (tenant_id, period, limit_nanos, alert_threshold, webhook_url) "
            f"VALUES ({q(tid)}, {q(period)}, {limit}, {threshold}, {q(webhook)});"
        )
    if ledger_nanos:
        now_ms = int(time.time() * 1000)
        extra += (
            "INSERT INTO usage_ledger (request_id, tenant_id, route, model, cost_nanos, ts_ms) "
            f"VALUES ({q('seed-' + tid)}, {q(tid)}, 'plain', 'small-1', {ledger_nanos}, {now_ms});"
        )
    gateway.sql(seed_sql(tid, token, extra))
    return tid, token


def b64u(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def mint(tenant, user, exp=None, version=1, secret=SIGNING_SECRET, **claims):
    """Mint an end-user token exactly as docs/TENANTS.md describes, independently of the gateway."""
    key = hmac.new(secret.encode(), f"switchyard/end-user-key/v1/{tenant}/{version}".encode(), hashlib.sha256).digest()
    body = {"t": tenant, "u": user, "exp": exp or int(time.time()) + 600, "v": version, **claims}
    payload = b64u(json.dumps(body).encode())
    mac = b64u(hmac.new(key, payload.encode(), hashlib.sha256).digest())
    return f"syu_{payload}.{mac}"


def ask(gateway, token, model="plain", text="hi", headers=None, **extra):
    return gateway.client(token).post(
        "/v1/chat/completions", json={"model": model, "messages": msg(text), **extra}, headers=headers or {}
    )


def code_of(r):
    return r.json()["error"]["code"]


def poll(fn, timeout=15.0):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(0.1)


# --- authentication -----------------------------------------------------------------------


def test_auth_matrix(gateway):
    tid, token = new_tenant(gateway)
    revoked = f"sy_revoked_{uid()}"
    gateway.sql(
        "INSERT INTO tokens (id, tenant_id, hash, prefix, created_ms, revoked_ms) VALUES "
        f"({q('tok_r' + tid)}, {q(tid)}, {q(hashlib.sha256(revoked.encode()).hexdigest())}, 'sy_revoked', 0, 1);"
    )
    for bad in (None, "sy_not_a_real_token", revoked, ADMIN_TOKEN):
        r = ask(gateway, bad)
        assert r.status_code == 401, (bad, r.text)
        assert code_of(r) == "invalid_api_key"
    assert ask(gateway, token).status_code == 200
    # The Anthropic SDK's header works too.
    r = gateway.anon.post(
        "/v1/chat/completions", json={"model": "plain", "messages": msg("hi")}, headers={"x-api-key": token}
    )
    assert r.status_code == 200
    # A tenant token never opens the admin API.
    r = gateway.client(token).get("/admin/tenants")
    assert r.status_code == 401


def test_each_tenant_is_charged_for_its_own_requests(gateway):
    a, token_a = new_tenant(gateway)
    b, token_b = new_tenant(gateway)
    rid = f"own-{uid()}"
    assert ask(gateway, token_b, headers={"x-request-id": rid}).status_code == 200
    rows = poll(lambda: gateway.sql(f"SELECT tenant_id FROM usage_ledger WHERE request_id = {q(rid)}"))
    assert rows == [{"tenant_id": b}]


def test_disabled_tenant_is_403(gateway):
    _, token = new_tenant(gateway, status="disabled")
    r = ask(gateway, token)
    assert r.status_code == 403 and code_of(r) == "tenant_disabled"


def test_model_allow_list(gateway):
    _, token = new_tenant(gateway, allowed_models=["plain"])
    assert ask(gateway, token, model="plain").status_code == 200
    r = ask(gateway, token, model="failover")
    assert r.status_code == 403 and code_of(r) == "model_not_allowed"
    listed = [m["id"] for m in gateway.client(token).get("/v1/models").json()["data"]]
    assert listed == ["plain"]


# --- browsers -----------------------------------------------------------------------------

ORIGIN = "https://app.example"


def test_cors_preflight_and_origins(gateway):
    _, token = new_tenant(gateway, allowed_origins=[ORIGIN])
    pre = gateway.anon.options(
        "/v1/chat/completions",
        headers={
            "origin": ORIGIN,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type",
        },
    )
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in pre.headers["access-control-allow-methods"]
    assert "authorization" in pre.headers["access-control-allow-headers"]
    evil = gateway.anon.options(
        "/v1/chat/completions", headers={"origin": "https://evil.example", "access-control-request-method": "POST"}
    )
    assert evil.status_code == 403
    assert "access-control-allow-origin" not in evil.headers

    r = ask(gateway, token, headers={"origin": ORIGIN})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert "x-switchyard-provider" in r.headers["access-control-expose-headers"]
    r = ask(gateway, token, headers={"origin": "https://evil.example"})
    assert r.status_code == 403 and code_of(r) == "origin_not_allowed"
    assert "access-control-allow-origin" not in r.headers
    # Servers and apps send no Origin: no CORS involved.
    assert ask(gateway, token).status_code == 200


# --- end-user tokens ----------------------------------------------------------------------


def test_end_user_tokens_verify_without_a_lookup_and_expire(gateway):
    tid, _ = new_tenant(gateway, allowed_origins=[ORIGIN])
    rid = f"eu-{uid()}"
    r = ask(gateway, mint(tid, "alice"), headers={"x-request-id": rid})
    assert r.status_code == 200, r.text
    rows = poll(lambda: gateway.sql(f"SELECT end_user FROM usage_ledger WHERE request_id = {q(rid)}"))
    assert rows == [{"end_user": "alice"}]

    expired = ask(gateway, mint(tid, "alice", exp=int(time.time()) - 5))
    assert expired.status_code == 401 and "expired" in expired.json()["error"]["message"]

    good = mint(tid, "alice")
    payload, mac = good[4:].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["u"] = "mallory"
    forged = f"syu_{b64u(json.dumps(claims).encode())}.{mac}"
    assert ask(gateway, forged).status_code == 401
    assert ask(gateway, mint(tid, "alice", secret="not-the-gateway-secret")).status_code == 401
    assert ask(gateway, mint(tid, "alice", version=2)).status_code == 401, "a rotated key version"
    assert ask(gateway, "syu_garbage").status_code == 401


def test_end_user_token_narrows_models_and_origins(gateway):
    tid, _ = new_tenant(gateway, allowed_origins=[ORIGIN, "https://other.example"])
    token = mint(tid, "bob", m=["plain"], o=["https://other.example"])
    r = ask(gateway, token, model="failover")
    assert r.status_code == 403 and code_of(r) == "model_not_allowed"
    r = ask(gateway, token, headers={"origin": ORIGIN})
    assert r.status_code == 403 and code_of(r) == "origin_not_allowed"
    assert ask(gateway, token, headers={"origin": "https://other.example"}).status_code == 200


def test_end_user_spend_cap(gateway):
    tid, _ = new_tenant(gateway)
    cap = 200_000
    token = mint(tid, "carol", cap=cap)
    # Each request reserves its worst case (~85k nano-USD) and costs ~9k: spend until refused.
    refused = None
    for _ in range(30):
        r = ask(gateway, token, max_tokens=5)
        if r.status_code != 200:
            refused = r
            break
    assert refused is not None, "the cap was never enforced"
    assert refused.status_code == 429 and code_of(refused) == "budget_exceeded"
    assert "end user" in refused.json()["error"]["message"]
    assert int(refused.headers["retry-after"]) > 0
    spent = poll(lambda: gateway.sql(f"SELECT SUM(cost_nanos) AS s FROM usage_ledger WHERE tenant_id = {q(tid)}")[0]["s"])
    assert 0 < spent <= cap
    # Another end user of the same tenant is unaffected.
    assert ask(gateway, mint(tid, "dave", cap=cap), max_tokens=5).status_code == 200


def test_hostile_strings_are_data(gateway):
    tid, _ = new_tenant(gateway)
    user = "'; DROP TABLE tenants; -- <script>alert(1)</script> ünï\u202e"
    rid = f"hostile-{uid()}"
    r = ask(gateway, mint(tid, user), headers={"x-request-id": rid})
    assert r.status_code == 200
    rows = poll(lambda: gateway.sql(f"SELECT end_user FROM usage_ledger WHERE request_id = {q(rid)}"))
    assert rows == [{"end_user": user}]
    assert gateway.sql(f"SELECT COUNT(*) AS n FROM tenants WHERE id = {q(tid)}") == [{"n": 1}]


# --- rate limits --------------------------------------------------------------------------


def test_rate_limit_is_429_with_retry_after(gateway):
    _, token = new_tenant(gateway, rpm_limit=2)
    assert ask(gateway, token).status_code == 200
    assert ask(gateway, token).status_code == 200
    r = ask(gateway, token)
    assert r.status_code == 429
    assert code_of(r) == "rate_limit_exceeded"
    assert 1 <= int(r.headers["retry-after"]) <= 120


def test_end_user_rate_limit(gateway):
    tid, _ = new_tenant(gateway, user_rpm_limit=1)
    assert ask(gateway, mint(tid, "erin")).status_code == 200
    r = ask(gateway, mint(tid, "erin"))
    assert r.status_code == 429 and code_of(r) == "rate_limit_exceeded"
    assert ask(gateway, mint(tid, "frank")).status_code == 200


# --- budgets ------------------------------------------------------------------------------


def test_concurrent_requests_against_a_nearly_spent_budget(gateway):
    limit = 2_000_000
    tid, token = new_tenant(gateway, budgets=[("day", limit, 0.99, None)], ledger_nanos=1_500_000)
    client = gateway.client(token)

    def one(i):
        return client.post(
            "/v1/chat/completions",
            json={"model": "plain", "messages": msg(f"request {i}"), "max_tokens": 10},
        )

    with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(one, range(50)))
    ok = [r for r in results if r.status_code == 200]
    refused = [r for r in results if r.status_code != 200]
    assert ok, "some requests fit the remaining budget"
    assert refused, "not all 50 fit"
    for r in refused:
        assert r.status_code == 429 and code_of(r) == "budget_exceeded", r.text
        assert "resets at" in r.json()["error"]["message"]
        assert int(r.headers["retry-after"]) > 0
    # The ledger is the truth: every answered request is in it exactly once, and the spend
    # never passes the limit (the documented overshoot bound near the cap is zero).
    rows = poll(
        lambda: (
            lambda got: got if got and got[0]["n"] == len(ok) else None
        )(gateway.sql(f"SELECT COUNT(*) AS n, SUM(cost_nanos) AS spent FROM usage_ledger WHERE tenant_id = {q(tid)} AND request_id NOT LIKE 'seed-%'"))
    )
    assert rows and rows[0]["n"] == len(ok)
    reported = sum(int(round(float(r.headers["x-switchyard-cost-usd"]) * 1e9)) for r in ok)
    assert rows[0]["spent"] == reported
    assert 1_500_000 + rows[0]["spent"] <= limit


class _Hooks(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        _Hooks.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture()
def webhook():
    server = HTTPServer(("127.0.0.1", 0), _Hooks)
    _Hooks.received = []
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", _Hooks.received
    server.shutdown()
    server.server_close()


def test_soft_alert_fires_exactly_once(gateway, webhook):
    url, received = webhook
    limit = 1_000_000
    tid, token = new_tenant(gateway, budgets=[("day", limit, 0.05, url)])
    for i in range(8):
        assert ask(gateway, token, text=f"spend {i}", max_tokens=5).status_code == 200
    got = poll(lambda: received)
    assert got, "the webhook was called"
    # Give any duplicate the same chance to arrive, then check there is exactly one.
    poll(lambda: len(gateway.sql(f"SELECT 1 FROM usage_ledger WHERE tenant_id = {q(tid)}")) >= 8)
    time.sleep(0.5)
    assert len(received) == 1, received
    alert = received[0]
    assert alert["type"] == "budget.threshold_reached"
    assert alert["tenant"] == tid and alert["period"] == "day" and alert["threshold"] == 0.05
    assert float(alert["spent_usd"]) >= 0.05 * limit / 1e9
    assert alert["limit_usd"] == "0.001"


def test_ledger_equals_the_usage_reported_to_callers(gateway):
    tid, token = new_tenant(gateway)
    client = gateway.client(token)
    prompt = completion = 0
    costs = 0
    for i in range(3):
        r = client.post("/v1/chat/completions", json={"model": "plain", "messages": msg(f"count these {i} words")})
        assert r.status_code == 200
        prompt += r.json()["usage"]["prompt_tokens"]
        completion += r.json()["usage"]["completion_tokens"]
        costs += int(round(float(r.headers["x-switchyard-cost-usd"]) * 1e9))
    for i in range(2):
        s = gateway.client(token).post(
            "/v1/chat/completions",
            json={"model": "plain", "messages": msg(f"stream {i}"), "stream": True, "stream_options": {"include_usage": True}},
        )
        usage = [json.loads(l[6:])["usage"] for l in s.text.splitlines() if l.startswith("data: {") and '"usage":{' in l][-1]
        prompt += usage["prompt_tokens"]
        completion += usage["completion_tokens"]
        costs += usage["prompt_tokens"] * IN_NANOS + usage["completion_tokens"] * OUT_NANOS
    rows = poll(
        lambda: (lambda got: got if got[0]["n"] == 5 else None)(
            gateway.sql(
                "SELECT COUNT(*) AS n, SUM(prompt_tokens) AS p, SUM(completion_tokens) AS c, SUM(cost_nanos) AS cost "
                f"FROM usage_ledger WHERE tenant_id = {q(tid)}"
            )
        )
    )
    assert rows == [{"n": 5, "p": prompt, "c": completion, "cost": costs}]
    daily = gateway.sql(f"SELECT requests, prompt_tokens, cost_nanos FROM usage_daily WHERE tenant_id = {q(tid)}")
    assert daily == [{"requests": 5, "prompt_tokens": prompt, "cost_nanos": costs}]


def test_concurrent_answers_are_batched_into_exactly_one_ledger_row_each(gateway):
    # Rows are batched per isolate (one D1 statement for many answers): N concurrent answers,
    # plain and streamed, with an end user, give exactly N rows, each with its own usage and
    # cost, and the daily aggregate equals their sum.
    tid, token = new_tenant(gateway)
    n = 16

    def one(i: int) -> tuple[str, dict]:
        rid = f"batch-{tid}-{i}"
        headers = {"x-request-id": rid}
        body = {"model": "plain", "messages": msg(f"batch {i} " + "word " * i)}
        if i % 4 == 3:
            body.update(stream=True, stream_options={"include_usage": True})
            r = gateway.client(token).post("/v1/chat/completions", json=body, headers=headers)
            assert r.status_code == 200
            u = [json.loads(l[6:])["usage"] for l in r.text.splitlines() if l.startswith("data: {") and '"usage":{' in l][-1]
            cost = u["prompt_tokens"] * IN_NANOS + u["completion_tokens"] * OUT_NANOS
        else:
            r = gateway.client(token).post("/v1/chat/completions", json=body, headers=headers)
            assert r.status_code == 200
            u = r.json()["usage"]
            cost = int(round(float(r.headers["x-switchyard-cost-usd"]) * 1e9))
        return rid, {"p": u["prompt_tokens"], "c": u["completion_tokens"], "cost": cost}

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        want = dict(pool.map(one, range(n)))
    assert len({w["p"] for w in want.values()}) > 1, "the answers differ, so a mixed-up row would show"
    rows = poll(
        lambda: (lambda got: got if len(got) >= n else None)(
            gateway.sql(
                "SELECT request_id, prompt_tokens AS p, completion_tokens AS c, cost_nanos AS cost "
                f"FROM usage_ledger WHERE tenant_id = {q(tid)}"
            )
        )
    )
    assert {r.pop("request_id"): r for r in rows} == want
    total = sum(w["cost"] for w in want.values())
    daily = gateway.sql(f"SELECT requests, cost_nanos FROM usage_daily WHERE tenant_id = {q(tid)}")
    assert daily == [{"requests": n, "cost_nanos": total}]


def test_failed_requests_are_not_charged(gateway, fake):
    tid, token = new_tenant(gateway, budgets=[("day", 10_000_000, 0.8, None)])
    r = ask(gateway, token, text="[[fake:status=500]] fail")
    assert r.status_code == 502
    assert ask(gateway, token, text="then succeed").status_code == 200
    rows = poll(lambda: gateway.sql(f"SELECT route FROM usage_ledger WHERE tenant_id = {q(tid)}"))
    time.sleep(0.3)
    assert len(gateway.sql(f"SELECT 1 FROM usage_ledger WHERE tenant_id = {q(tid)}")) == 1
