"""scripts/switchyard-admin against the local gateway: the operator's path, no JSON by hand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from conftest import ADMIN_TOKEN, ROOT, Gateway, msg, uid

CLI = ROOT / "scripts" / "switchyard-admin"


def cli(gateway: Gateway, *args: str, env_auth: bool = False, expect: int = 0) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHYARD_")}
    argv = [sys.executable, str(CLI)]
    if env_auth:
        env.update(SWITCHYARD_URL=gateway.base, SWITCHYARD_ADMIN_TOKEN=ADMIN_TOKEN)
    else:
        argv += ["--url", gateway.base, "--token", ADMIN_TOKEN]
    p = subprocess.run(argv + list(args), capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == expect, (args, p.returncode, p.stdout, p.stderr)
    out = p.stdout if expect == 0 else p.stderr
    return json.loads(out) if out.strip().startswith(("{", "[")) else {"text": out}


def test_cli_manages_a_tenant_end_to_end(gateway: Gateway):
    tid = f"cli-{uid()}"
    t = cli(gateway, "tenants", "create", tid, "--name", "CLI <Corp> \"quoted\"", "--rpm", "600",
            "--models", "plain,failover")
    assert t["id"] == tid and t["name"] == "CLI <Corp> \"quoted\"" and t["rpm_limit"] == 600
    assert t["allowed_models"] == ["plain", "failover"]

    b = cli(gateway, "budget", "set", tid, "--period", "month", "--limit-usd", "50", env_auth=True)
    assert b["period"] == "month" and b["limit_usd"] == "50.0" and b["alert_threshold"] == 0.8
    got = cli(gateway, "budget", "get", tid)
    assert [x["period"] for x in got["data"]] == ["month"]

    tok = cli(gateway, "tokens", "create", tid, "--name", "cli")
    r = gateway.anon.post("/v1/chat/completions", json={"model": "plain", "messages": msg("via cli")},
                          headers={"authorization": f"Bearer {tok['token']}"})
    assert r.status_code == 200, r.text
    cost = r.headers["x-switchyard-cost-usd"]

    deadline = time.monotonic() + 10
    while True:
        usage = cli(gateway, "usage", tid, "--group-by", "model")
        if usage["totals"]["requests"] == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert usage["totals"]["requests"] == 1 and usage["totals"]["cost_usd"] == cost
    assert usage["group_by"] == "model" and usage["data"][0]["cost_usd"] == cost
    spend = cli(gateway, "spend", tid)
    assert {p["period"] for p in spend["periods"]} == {"day", "month", "total"}

    listed = cli(gateway, "tokens", "list", tid)
    assert [x["id"] for x in listed["data"]] == [tok["id"]] and "token" not in listed["data"][0]
    revoked = cli(gateway, "tokens", "revoke", tid, tok["id"])
    assert revoked["revoked"]

    upd = cli(gateway, "tenants", "update", tid, "--rpm", "none", "--all-models", "--tpm", "1000")
    assert upd["rpm_limit"] is None and upd["allowed_models"] is None and upd["tpm_limit"] == 1000
    assert cli(gateway, "tenants", "disable", tid)["status"] == "disabled"
    assert cli(gateway, "tenants", "get", tid)["status"] == "disabled"
    assert cli(gateway, "tenants", "enable", tid)["status"] == "active"
    assert cli(gateway, "budget", "delete", tid, "--period", "month")["deleted"] is True

    eut = cli(gateway, "end-user-token", tid, "--user", "u-1", "--ttl", "120", "--cap-usd", "0.5")
    assert eut["token"].startswith("syu_") and eut["user"] == "u-1"
    key = cli(gateway, "signing-key", tid)
    assert key["version"] == 1 and len(key["key"]) == 43
    assert cli(gateway, "signing-key", tid, "--rotate")["version"] == 2

    everyone = cli(gateway, "tenants", "list", "--all", "--limit", "2")
    assert tid in [x["id"] for x in everyone["data"]] and everyone["next_cursor"] is None
    assert cli(gateway, "openapi")["openapi"].startswith("3.1")


def test_cli_reports_errors_as_json_with_exit_codes(gateway: Gateway):
    err = cli(gateway, "tenants", "create", "Not Valid", expect=1)
    assert err["error"]["param"] == "id"
    err = cli(gateway, "tenants", "get", f"ghost-{uid()}", expect=1)
    assert err["error"]["code"] == "not_found"
    # A bad admin token is the API's 401, as JSON.
    p = subprocess.run([sys.executable, str(CLI), "--url", gateway.base, "--token", "wrong", "tenants", "list"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and json.loads(p.stderr)["error"]["code"] == "invalid_api_key"
    # No URL or token at all: a usage error naming what to set.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHYARD_")}
    p = subprocess.run([sys.executable, str(CLI), "tenants", "list"], capture_output=True, text=True, env=env,
                       timeout=60)
    assert p.returncode == 2 and "SWITCHYARD_URL" in p.stderr
    # Amounts are checked before anything is sent.
    p = subprocess.run([sys.executable, str(CLI), "--url", gateway.base, "--token", ADMIN_TOKEN, "budget", "set",
                        "x", "--limit-usd", "ten"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "USD" in p.stderr
