"""The admin API end to end: tenants, tokens, budgets, usage and spend, end-user tokens, signing
keys, auth, bad and hostile input, and the OpenAPI document checked against the real routes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import httpx
import pytest

from conftest import ADMIN_TOKEN, TENANT_TOKEN, Gateway, msg, uid

# An isolate forgets a changed record at once; other isolates within their 30 s record cache.
VISIBILITY_BOUND_S = 35


def new_tenant(gateway: Gateway, **fields) -> dict:
    tid = fields.pop("id", f"t-{uid()}")
    r = gateway.admin.post("/tenants", json={"id": tid, "name": fields.pop("name", tid), **fields})
    assert r.status_code == 201, r.text
    return r.json()


def new_token(gateway: Gateway, tenant: str, name: str = "") -> dict:
    r = gateway.admin.post(f"/tenants/{tenant}/tokens", json={"name": name} if name else {})
    assert r.status_code == 201, r.text
    return r.json()


def chat_as(gateway: Gateway, token: str, model: str = "plain", **extra) -> httpx.Response:
    return gateway.anon.post(
        "/v1/chat/completions",
        json={"model": model, "messages": msg(f"hi {uid()}"), **extra},
        headers={"authorization": f"Bearer {token}"},
    )


def poll(fn, timeout: float, what: str):
    """Call fn until it returns something truthy; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{what} within {timeout} s (last: {last!r})")


def assert_400(r: httpx.Response, param: str) -> None:
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param, err
    assert err["type"] == "invalid_request_error"
    if param != "body":
        assert param.split("[")[0] in err["message"], err


# --- auth -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/admin/tenants", "/admin/openapi.json", "/admin/tenants/test/spend"])
def test_admin_auth_matrix(gateway: Gateway, path: str):
    for headers in (
        {},
        {"authorization": "Bearer wrong-admin-token"},
        {"authorization": f"Bearer {ADMIN_TOKEN}x"},
        {"authorization": f"Bearer {TENANT_TOKEN}"},
        {"x-api-key": TENANT_TOKEN},
    ):
        r = gateway.anon.get(path, headers=headers)
        assert r.status_code == 401, (headers, r.text)
        assert r.json()["error"]["code"] == "invalid_api_key"
    assert gateway.anon.get(path, headers={"authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 200
    # The admin token is no tenant token: it does not work for the API.
    r = gateway.anon.post(
        "/v1/chat/completions",
        json={"model": "plain", "messages": msg("x")},
        headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert r.status_code == 401


# --- the whole life of a tenant -------------------------------------------------------------


def test_tenant_lifecycle(gateway: Gateway):
    admin = gateway.admin
    t = new_tenant(gateway, name="Acme Corp", rpm_limit=1000)
    tid = t["id"]
    assert t["object"] == "tenant" and t["status"] == "active" and t["rpm_limit"] == 1000
    assert t["allowed_models"] is None and t["signing_key_version"] == 1
    assert t["created"].endswith("Z")

    dup = admin.post("/tenants", json={"id": tid, "name": "again"})
    assert dup.status_code == 409 and dup.json()["error"]["code"] == "already_exists"
    assert dup.json()["error"]["param"] == "id"

    tok = new_token(gateway, tid, name="ci")
    token = tok["token"]
    assert token.startswith("sy_") and len(token) == 46
    assert tok["prefix"] == token[:11] and tok["id"].startswith("tok_") and tok["revoked"] is None

    r = chat_as(gateway, token)
    assert r.status_code == 200, r.text
    cost = r.headers["x-switchyard-cost-usd"]
    model = r.headers["x-switchyard-model"]
    assert cost != "unpriced" and float(cost) > 0

    assert admin.get(f"/tenants/{tid}").json() == {**t, "updated": admin.get(f"/tenants/{tid}").json()["updated"]}
    listed = admin.get(f"/tenants/{tid}/tokens").json()
    assert listed["object"] == "list" and [x["id"] for x in listed["data"]] == [tok["id"]]
    assert "token" not in listed["data"][0] and "hash" not in listed["data"][0]
    assert token not in json.dumps(listed)
    assert listed["data"][0]["prefix"] == token[:11] and listed["data"][0]["name"] == "ci"
    poll(
        lambda: admin.get(f"/tenants/{tid}/tokens").json()["data"][0]["last_used"],
        10,
        "last_used is recorded",
    )

    # A month budget, in human terms.
    b = admin.put(f"/tenants/{tid}/budgets/month", json={"limit_usd": 50})
    assert b.status_code == 200, b.text
    b = b.json()
    assert b["period"] == "month" and b["limit_usd"] == "50.0" and b["alert_threshold"] == 0.8
    assert b["resets_at"].endswith("T00:00:00.000Z") and b["resets_at"][8:10] == "01"
    budgets = admin.get(f"/tenants/{tid}/budgets").json()
    assert [x["period"] for x in budgets["data"]] == ["month"]

    # The ledger is written after the response: poll.
    def usage_row():
        u = admin.get(f"/tenants/{tid}/usage").json()
        return u if u["totals"]["requests"] == 1 else None

    u = poll(usage_row, 10, "usage shows the request")
    assert u["group_by"] == "day" and len(u["data"]) == 1
    row = u["data"][0]
    assert row["requests"] == 1 and row["cost_usd"] == cost and u["totals"]["cost_usd"] == cost
    assert row["day"] == u["to"] and row["total_tokens"] == row["prompt_tokens"] + row["completion_tokens"] > 0
    assert row["unpriced_requests"] == 0 and row["cache_hits"] == 0
    by_model = admin.get(f"/tenants/{tid}/usage", params={"group_by": "model"}).json()
    assert [(x["model"], x["cost_usd"]) for x in by_model["data"]] == [(model, cost)]
    past = admin.get(f"/tenants/{tid}/usage", params={"from": "2020-01-01", "to": "2020-01-31"}).json()
    assert past["data"] == [] and past["totals"]["requests"] == 0 and past["totals"]["cost_usd"] == "0.0"

    def spend_settled():
        s = admin.get(f"/tenants/{tid}/spend").json()
        month = {p["period"]: p for p in s["periods"]}["month"]
        return s if month["spent_usd"] == cost and month["ledger_usd"] == cost else None

    s = poll(spend_settled, 10, "spend reflects the request")
    periods = {p["period"]: p for p in s["periods"]}
    assert set(periods) == {"day", "month", "total"} and s["spend_source"] == "gate"
    assert periods["month"]["budget"] is True and periods["month"]["limit_usd"] == "50.0"
    assert periods["day"]["budget"] is False and periods["day"]["limit_usd"] is None
    assert periods["total"]["resets_at"] is None and periods["total"]["ledger_usd"] == cost
    assert periods["month"]["requests"] == 1
    remaining = periods["month"]["remaining_usd"]
    assert abs(float(remaining) - (50 - float(cost))) < 1e-6

    # Revoke: idempotent, and the token stops working within the bound.
    rv = admin.delete(f"/tenants/{tid}/tokens/{tok['id']}")
    assert rv.status_code == 200 and rv.json()["revoked"]
    again = admin.delete(f"/tenants/{tid}/tokens/{tok['id']}")
    assert again.status_code == 200 and again.json()["revoked"] == rv.json()["revoked"]
    poll(lambda: chat_as(gateway, token).status_code == 401, VISIBILITY_BOUND_S, "a revoked token is refused")

    # Disable the tenant: its other tokens are cut off with 403; enabling restores them.
    token2 = new_token(gateway, tid)["token"]
    assert chat_as(gateway, token2).status_code == 200
    d = admin.patch(f"/tenants/{tid}", json={"status": "disabled"})
    assert d.status_code == 200 and d.json()["status"] == "disabled"
    r = poll(lambda: (lambda x: x if x.status_code == 403 else None)(chat_as(gateway, token2)),
             VISIBILITY_BOUND_S, "a disabled tenant is refused")
    assert r.json()["error"]["code"] == "tenant_disabled"
    assert admin.patch(f"/tenants/{tid}", json={"status": "active"}).json()["status"] == "active"
    poll(lambda: chat_as(gateway, token2).status_code == 200, VISIBILITY_BOUND_S, "re-enabled tenant works")


def test_update_fields_and_model_restrictions(gateway: Gateway):
    admin = gateway.admin
    t = new_tenant(gateway)
    tid = t["id"]
    token = new_token(gateway, tid)["token"]
    u = admin.patch(
        f"/tenants/{tid}",
        json={"name": "Renamed", "allowed_models": ["plain"], "allowed_origins": ["https://app.example.com"],
              "tpm_limit": 100000, "user_rpm_limit": 5, "user_tpm_limit": None},
    )
    assert u.status_code == 200, u.text
    u = u.json()
    assert u["name"] == "Renamed" and u["allowed_models"] == ["plain"]
    assert u["allowed_origins"] == ["https://app.example.com"] and u["tpm_limit"] == 100000
    assert u["user_rpm_limit"] == 5 and u["user_tpm_limit"] is None and u["rpm_limit"] is None
    assert u["updated"] >= t["updated"] and u["created"] == t["created"]
    r = chat_as(gateway, token, model="failover")
    assert r.status_code == 403 and r.json()["error"]["code"] == "model_not_allowed"
    assert chat_as(gateway, token).status_code == 200
    cleared = admin.patch(f"/tenants/{tid}", json={"allowed_models": None}).json()
    assert cleared["allowed_models"] is None
    assert chat_as(gateway, token, model="failover").status_code == 200


def test_pagination_is_stable_and_complete(gateway: Gateway):
    admin = gateway.admin
    stem = f"page-{uid()}"
    mine = sorted(new_tenant(gateway, id=f"{stem}-{i}")["id"] for i in range(3))
    seen: list[str] = []
    cursor = None
    for _ in range(500):
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = admin.get("/tenants", params=params).json()
        assert page["object"] == "list" and len(page["data"]) <= 2
        seen += [t["id"] for t in page["data"]]
        cursor = page["next_cursor"]
        assert page["has_more"] == (cursor is not None)
        if cursor is None:
            break
    assert seen == sorted(seen) and len(seen) == len(set(seen)), "ordered by id, no repeats"
    assert [s for s in seen if s.startswith(stem)] == mine
    whole = admin.get("/tenants", params={"limit": 200}).json()
    if not whole["has_more"]:
        assert [t["id"] for t in whole["data"]] == seen


# --- budgets --------------------------------------------------------------------------------


def test_budget_set_replace_delete_and_enforce(gateway: Gateway):
    admin = gateway.admin
    tid = new_tenant(gateway)["id"]
    token = new_token(gateway, tid)["token"]
    day = admin.put(
        f"/tenants/{tid}/budgets/day",
        json={"limit_usd": "12.345678901", "alert_threshold": 0.5, "webhook_url": "http://127.0.0.1:9/hook"},
    ).json()
    assert day["limit_usd"] == "12.345678901" and day["alert_threshold"] == 0.5
    assert day["webhook_url"] == "http://127.0.0.1:9/hook" and day["spent_usd"] == "0.0"
    assert day["remaining_usd"] == "12.345678901" and day["period_start"].endswith("T00:00:00.000Z")
    replaced = admin.put(f"/tenants/{tid}/budgets/day", json={"limit_usd": 3}).json()
    assert replaced["limit_usd"] == "3.0" and replaced["webhook_url"] is None and replaced["alert_threshold"] == 0.8
    total = admin.put(f"/tenants/{tid}/budgets/total", json={"limit_usd": 0}).json()
    assert total["resets_at"] is None and total["period_start"] is None
    listed = admin.get(f"/tenants/{tid}/budgets").json()
    assert [b["period"] for b in listed["data"]] == ["day", "total"]

    # A zero total budget refuses at once (this isolate forgot the old record).
    r = chat_as(gateway, token)
    assert r.status_code == 429 and r.json()["error"]["code"] == "budget_exceeded", r.text
    gone = admin.delete(f"/tenants/{tid}/budgets/total")
    assert gone.status_code == 200 and gone.json()["deleted"] is True
    assert admin.delete(f"/tenants/{tid}/budgets/total").json()["deleted"] is False
    poll(lambda: chat_as(gateway, token).status_code == 200, VISIBILITY_BOUND_S, "the budget is lifted")
    assert [b["period"] for b in admin.get(f"/tenants/{tid}/budgets").json()["data"]] == ["day"]


# --- end-user tokens and signing keys -------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint(key_b64: str, claims: dict) -> str:
    """What a tenant backend does with its signing key (docs/ADMIN.md)."""
    key = base64.urlsafe_b64decode(key_b64 + "=" * (-len(key_b64) % 4))
    payload = b64url(json.dumps(claims, separators=(",", ":")).encode())
    mac = hmac.new(key, payload.encode(), hashlib.sha256).digest()
    return f"syu_{payload}.{b64url(mac)}"


def test_end_user_tokens_and_key_rotation(gateway: Gateway):
    admin = gateway.admin
    tid = new_tenant(gateway)["id"]
    r = admin.post(f"/tenants/{tid}/end-user-tokens", json={"user": "user-42", "ttl_s": 600, "models": ["plain"]})
    assert r.status_code == 201, r.text
    eut = r.json()
    assert eut["token"].startswith("syu_") and eut["user"] == "user-42" and eut["key_version"] == 1
    assert eut["expires_at"].endswith("Z")
    assert chat_as(gateway, eut["token"]).status_code == 200
    denied = chat_as(gateway, eut["token"], model="failover")
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "model_not_allowed"

    # `rotate` belongs to the signing-key route only.
    admin.post(f"/tenants/{tid}/end-user-tokens", params={"rotate": "true"}, json={"user": "u", "ttl_s": 60})
    key = admin.post(f"/tenants/{tid}/signing-key").json()
    assert key["version"] == 1 and key["rotated"] is False and len(key["key"]) == 43
    assert admin.post(f"/tenants/{tid}/signing-key").json()["key"] == key["key"], "stable until rotated"
    own = mint(key["key"], {"t": tid, "u": "backend-user", "exp": int(time.time()) + 300, "v": 1})
    assert chat_as(gateway, own).status_code == 200
    expired = mint(key["key"], {"t": tid, "u": "u", "exp": int(time.time()) - 1, "v": 1})
    assert chat_as(gateway, expired).status_code == 401

    rot = admin.post(f"/tenants/{tid}/signing-key", params={"rotate": "true"}).json()
    assert rot["version"] == 2 and rot["rotated"] is True and rot["key"] != key["key"]
    for old in (own, eut["token"]):
        poll(lambda: chat_as(gateway, old).status_code == 401, VISIBILITY_BOUND_S, "old end-user tokens stop")
    fresh = mint(rot["key"], {"t": tid, "u": "backend-user", "exp": int(time.time()) + 300, "v": 2})
    assert chat_as(gateway, fresh).status_code == 200
    assert admin.get(f"/tenants/{tid}").json()["signing_key_version"] == 2


# --- bad and hostile input ------------------------------------------------------------------


@pytest.mark.parametrize("bad_id", ["Acme", "a b", "-x", "x" * 64, "ünï", "a'; DROP TABLE tenants;--", "", 7, None])
def test_invalid_tenant_ids_are_rejected(gateway: Gateway, bad_id):
    assert_400(gateway.admin.post("/tenants", json={"id": bad_id, "name": "x"}), "id")


def test_bad_inputs_name_the_field(gateway: Gateway):
    admin = gateway.admin
    tid = new_tenant(gateway)["id"]
    cases = [
        ("POST", "/tenants", {"id": f"x-{uid()}"}, "name"),
        ("POST", "/tenants", {"id": f"x-{uid()}", "name": ""}, "name"),
        ("POST", "/tenants", {"id": f"x-{uid()}", "name": "x", "rpm_limit": -1}, "rpm_limit"),
        ("POST", "/tenants", {"id": f"x-{uid()}", "name": "x", "allowed_models": "plain"}, "allowed_models"),
        ("POST", "/tenants", {"id": f"x-{uid()}", "name": "x", "allowed_origins": ["not an origin"]}, "allowed_origins[0]"),
        ("POST", "/tenants", {"id": f"x-{uid()}", "name": "x", "colour": "blue"}, "colour"),
        ("POST", "/tenants", [1, 2], "body"),
        ("PATCH", f"/tenants/{tid}", {}, "body"),
        ("PATCH", f"/tenants/{tid}", {"status": "paused"}, "status"),
        ("PATCH", f"/tenants/{tid}", {"id": "other"}, "id"),
        ("POST", f"/tenants/{tid}/tokens", {"name": 5}, "name"),
        ("PUT", f"/tenants/{tid}/budgets/week", {"limit_usd": 5}, "period"),
        ("PUT", f"/tenants/{tid}/budgets/day", {}, "limit_usd"),
        ("PUT", f"/tenants/{tid}/budgets/day", {"limit_usd": -5}, "limit_usd"),
        ("PUT", f"/tenants/{tid}/budgets/day", {"limit_usd": "ten"}, "limit_usd"),
        ("PUT", f"/tenants/{tid}/budgets/day", {"limit_usd": 5, "alert_threshold": 2}, "alert_threshold"),
        ("PUT", f"/tenants/{tid}/budgets/day", {"limit_usd": 5, "webhook_url": "http://evil.example/x"}, "webhook_url"),
        ("DELETE", f"/tenants/{tid}/budgets/year", None, "period"),
        ("POST", f"/tenants/{tid}/end-user-tokens", {"ttl_s": 60}, "user"),
        ("POST", f"/tenants/{tid}/end-user-tokens", {"user": "u", "ttl_s": 8 * 86400}, "ttl_s"),
        ("POST", f"/tenants/{tid}/end-user-tokens", {"user": "u", "ttl_s": 60, "cap_usd": -1}, "cap_usd"),
        ("GET", f"/tenants/{tid}/usage?from=2024-02-30", None, "from"),
        ("GET", f"/tenants/{tid}/usage?from=2024-03-02&to=2024-03-01", None, "from"),
        ("GET", f"/tenants/{tid}/usage?group_by=hour", None, "group_by"),
        ("GET", "/tenants?limit=0", None, "limit"),
        ("GET", "/tenants?limit=abc", None, "limit"),
        ("GET", "/tenants?cursor=%27%20OR%201%3D1", None, "cursor"),
        ("POST", f"/tenants/{tid}/signing-key?rotate=maybe", None, "rotate"),
    ]
    for method, path, body, param in cases:
        r = admin.request(method, path, json=body) if body is not None else admin.request(method, path)
        assert_400(r, param)
    # Not JSON at all.
    r = admin.post("/tenants", content=b"{not json", headers={"content-type": "application/json"})
    assert_400(r, "body")
    # Too large.
    r = admin.post("/tenants", content=b" " * (70 * 1024))
    assert r.status_code == 413


def test_unknown_tenants_and_tokens_are_404(gateway: Gateway):
    admin = gateway.admin
    ghost = f"ghost-{uid()}"
    for method, path, body in [
        ("GET", f"/tenants/{ghost}", None),
        ("PATCH", f"/tenants/{ghost}", {"name": "x"}),
        ("POST", f"/tenants/{ghost}/tokens", {}),
        ("GET", f"/tenants/{ghost}/tokens", None),
        ("GET", f"/tenants/{ghost}/budgets", None),
        ("PUT", f"/tenants/{ghost}/budgets/day", {"limit_usd": 1}),
        ("DELETE", f"/tenants/{ghost}/budgets/day", None),
        ("GET", f"/tenants/{ghost}/usage", None),
        ("GET", f"/tenants/{ghost}/spend", None),
        ("POST", f"/tenants/{ghost}/end-user-tokens", {"user": "u", "ttl_s": 60}),
        ("POST", f"/tenants/{ghost}/signing-key", None),
        ("DELETE", f"/tenants/{ghost}/tokens/tok_0", None),
        ("GET", "/tenants/NOT%20VALID", None),
    ]:
        r = admin.request(method, path, json=body) if body is not None else admin.request(method, path)
        assert r.status_code == 404, (method, path, r.text)
        assert r.json()["error"]["code"] == "not_found"
    tid = new_tenant(gateway)["id"]
    r = admin.delete(f"/tenants/{tid}/tokens/tok_does_not_exist")
    assert r.status_code == 404
    # Another tenant's token cannot be revoked through this tenant.
    other = new_tenant(gateway)["id"]
    tok = new_token(gateway, other)
    assert admin.delete(f"/tenants/{tid}/tokens/{tok['id']}").status_code == 404
    assert admin.get(f"/tenants/{other}/tokens").json()["data"][0]["revoked"] is None


HOSTILE = [
    "Robert'); DROP TABLE tenants;--",
    "<script>alert('x')</script>",
    '" OR ""="',
    "Ünïcødé — 名前 🚀 مرحبا",
    "back\\slash and \"quotes\" and 'single'",
    "%s %d {0} ${x} `id`",
    "1; DELETE FROM tokens WHERE 1=1",
]


def test_hostile_strings_round_trip_unchanged(gateway: Gateway):
    admin = gateway.admin
    for name in HOSTILE:
        t = new_tenant(gateway, name=name)
        assert t["name"] == name
        got = admin.get(f"/tenants/{t['id']}")
        assert got.headers["content-type"].startswith("application/json")
        assert got.json()["name"] == name
        tok = new_token(gateway, t["id"], name=name)
        assert tok["name"] == name
        assert admin.get(f"/tenants/{t['id']}/tokens").json()["data"][0]["name"] == name
        eut = admin.post(f"/tenants/{t['id']}/end-user-tokens", json={"user": name, "ttl_s": 60}).json()
        assert eut["user"] == name
    patched = admin.patch(f"/tenants/{t['id']}", json={"name": HOSTILE[0]}).json()
    assert patched["name"] == HOSTILE[0]
    # The tables are all still there and the API still works.
    assert admin.get("/tenants", params={"limit": 1}).status_code == 200
    assert gateway.chat({"model": "plain", "messages": msg("still fine")}).status_code == 200


# --- the OpenAPI document against the real routes ---------------------------------------------

METHODS = ["get", "post", "put", "patch", "delete"]


def test_openapi_document_matches_the_routes(gateway: Gateway):
    admin = gateway.admin
    doc = admin.get("/openapi.json")
    assert doc.status_code == 200 and doc.headers["content-type"].startswith("application/json")
    doc = doc.json()
    assert doc["openapi"].startswith("3.1")
    tid = new_tenant(gateway)["id"]
    tok = new_token(gateway, tid)["id"]
    fill = {"{id}": tid, "{token_id}": tok, "{period}": "day"}
    assert doc["paths"], "the document lists routes"
    for path, item in doc["paths"].items():
        url = path
        for k, v in fill.items():
            url = url.replace(k, v)
        assert url.startswith("/admin/") and "{" not in url, path
        documented = {m for m in METHODS if m in item}
        assert documented, path
        for method in documented:
            r = gateway.anon.request(method.upper(), url, json={},
                                     headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
            assert r.status_code not in (404, 405), (method, path, r.status_code, r.text)
            # Every documented route is behind the admin token.
            assert gateway.anon.request(method.upper(), url, json={}).status_code == 401, (method, path)
        # Methods the document does not list answer 405 with the listed ones in Allow (checked for
        # this module's paths; the circuits and cache modules route their own).
        ours = path == "/admin/openapi.json" or path.startswith("/admin/tenants")
        for method in set(METHODS) - documented if ours else ():
            r = gateway.anon.request(method.upper(), url, headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
            assert r.status_code == 405, (method, path, r.status_code)
            allowed = {m.strip().lower() for m in r.headers["allow"].split(",")}
            assert allowed == documented, (path, allowed)
    # And a path the document does not list is a 404.
    r = admin.get(f"/tenants/{tid}/nothing-here")
    assert r.status_code == 404


def test_residency_is_set_through_the_admin_api_and_enforced(gateway):
    t = new_tenant(gateway, residency="eu")
    assert t["residency"] == "eu"
    token = new_token(gateway, t["id"])["token"]
    # No target of `plain` carries `eu`: the tenant is refused rather than leaked to one.
    r = chat_as(gateway, token)
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "no_eligible_target"
    cleared = gateway.admin.patch(f"/tenants/{t['id']}", json={"residency": None})
    assert cleared.status_code == 200 and cleared.json()["residency"] is None
    assert chat_as(gateway, token).status_code == 200, "this isolate forgets the old record at once"
    r = gateway.admin.patch(f"/tenants/{t['id']}", json={"residency": "not a tag"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "residency"
