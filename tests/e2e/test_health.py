"""Health and routing end to end: circuit breakers in a Durable Object per target, the isolate's
snapshot and batched reports, cron probes, strategies, residency and the operator routes.

This module runs its own wrangler dev (the session gateway keeps its breakers from opening) with
short timings: a breaker opens after 3 provider-side failures in a row, cools down for 3 s, the
isolate's snapshot lives 1 s, failures are reported within 50 ms. Every provider here has its
own fake instance (`h…`), so standing behaviours set here touch no other test.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from conftest import (
    ADMIN_TOKEN,
    BACKUP_KEY,
    FAST_DEADLINES,
    FAST_RETRY,
    TENANT,
    TENANT_TOKEN,
    TEST_KEY,
    Gateway,
    _stop,
    msg,
    seed_sql,
    start_wrangler,
    uid,
)

EU_TENANT = "eu-tenant"
EU_TOKEN = "sy_test_eu_tenant_token_for_e2e_only_0002"
HEALTH = {
    "consecutive_failures": 3,
    "cooldown_base_ms": 3000,
    "cooldown_max_ms": 6000,
    "jitter_percent": 0,
    "probe_timeout_ms": 5000,
    "snapshot_ttl_ms": 1000,
    "report_failure_max_age_ms": 50,
    # These tests count every upstream request: no idle probes here (test_idle_probes.py).
    "idle_probe_ms": 0,
}
LHR = {"colo": "LHR", "country": "GB", "continent": "EU", "clientAcceptEncoding": ""}
IAD = {"colo": "IAD", "country": "US", "continent": "NA", "clientAcceptEncoding": ""}


def health_config(fake) -> dict:
    def p(pid: str, regions=(), **extra) -> dict:
        return {"id": pid, "kind": "openai", "base_url": fake.url(pid), "api_key_secrets": ["TEST_OA_KEY"],
                "regions": list(regions), **extra}

    def route(model: str, *providers: str, **extra) -> dict:
        return {"model": model, "targets": [{"provider": q, "model": "m"} for q in providers], **extra}

    return {
        "retry": FAST_RETRY,
        "deadlines": FAST_DEADLINES,
        "health": HEALTH,
        "providers": [
            p("hp"), p("hb"), p("hc1"), p("hc2"), p("hop"), p("hopb"), p("hpersist"),
            p("hw70"), p("hw30"), p("hslow"), p("hfast"),
            p("hna", ["na", "country:US", "colo:IAD"]), p("heu", ["eu", "country:GB", "colo:LHR"]),
            p("hus-r", ["na", "us"]), p("heu-r", ["eu"]),
            p("hus-t", ["na", "us"]), p("heu-t", ["eu"]), p("hus-only", ["us"]),
            p("hsmall"), p("hlarge"), p("hcut"), p("hcutb"),
            p("hpricey", models={"m": {"input_per_mtok": 10.0, "output_per_mtok": 30.0}}),
            p("hcheap", models={"m": {"input_per_mtok": 0.1, "output_per_mtok": 0.2}}),
            {**p("hspread"), "api_key_secrets": ["TEST_OA_KEY", "TEST_BACKUP_KEY"], "key_selection": "spread"},
            {**p("hkeys"), "api_key_secrets": ["TEST_OA_KEY", "TEST_BACKUP_KEY"]}, p("hkeysb"),
        ],
        "routes": [
            route("h-failover", "hp", "hb"),
            route("h-count", "hc1", "hc2"),
            route("h-op", "hop", "hopb"),
            route("h-persist", "hpersist"),
            {"model": "h-weighted", "strategy": "weighted",
             "targets": [{"provider": "hw70", "model": "m", "weight": 70}, {"provider": "hw30", "model": "m", "weight": 30}]},
            route("h-latency", "hslow", "hfast", strategy="latency", explore_percent=20),
            route("h-nearest", "hna", "heu", strategy="nearest"),
            route("h-eu", "hus-r", "heu-r", residency="eu"),
            route("h-mixed", "hus-t", "heu-t"),
            route("h-us-only", "hus-only"),
            route("h-tiers", "hsmall", "hlarge",
                  tiers=[{"hint": "large", "targets": [1]}, {"min_prompt_tokens": 200, "targets": [1]}]),
            route("h-cost", "hpricey", "hcheap", strategy="cost"),
            route("h-spread", "hspread"),
            route("h-cut", "hcut", "hcutb"),
            route("h-keys", "hkeys", "hkeysb"),
        ],
    }


class HealthGateway(Gateway):
    """The module's gateway; `restart()` stops wrangler and starts it again on the same state."""

    def __init__(self, fake, workdir):
        self.fake_ref, self.workdir = fake, workdir
        self.proc = None
        self._start()

    def _start(self):
        log_path = self.workdir / f"wrangler-health-{uid()}.log"
        seed = seed_sql(TENANT, TENANT_TOKEN) + seed_sql(
            EU_TENANT, EU_TOKEN, f"UPDATE tenants SET residency = 'eu' WHERE id = '{EU_TENANT}';"
        )
        self.proc, port = start_wrangler(
            health_config(self.fake_ref),
            {"TEST_OA_KEY": TEST_KEY, "TEST_BACKUP_KEY": BACKUP_KEY, "ADMIN_TOKEN": ADMIN_TOKEN},
            self.workdir / "state-health",
            log_path,
            seed=seed,
        )
        super().__init__(port, log_path)

    def restart(self):
        _stop(self.proc)
        self._start()

    def circuit(self, target: str) -> dict:
        r = self.admin.get(f"/circuits/{target}")
        assert r.status_code == 200, r.text
        return r.json()

    def isolate(self) -> dict:
        r = self.admin.get("/circuits")
        assert r.status_code == 200, r.text
        return r.json()["isolate"]

    def circuit_lines(self, target: str) -> list[dict]:
        return [l for l in self.log_lines() if l.get("msg") == "switchyard.circuit" and l.get("target") == target]


@pytest.fixture(scope="module")
def hg(fake, workdir):
    g = HealthGateway(fake, workdir)
    yield g
    _stop(g.proc)


def ask(g, model: str, text: str = "hi", headers: dict | None = None, client=None) -> httpx.Response:
    client = client or g.http
    r = client.post("/v1/chat/completions", json={"model": model, "messages": msg(text)}, headers=headers or {})
    return r


def tried(r: httpx.Response) -> list[tuple[str, str]]:
    """x-switchyard-attempts as [(provider, outcome)]."""
    out = []
    for item in r.headers["x-switchyard-attempts"].split(", "):
        target, outcome, _ms = item.rsplit(":", 2)
        out.append((target.split("/")[0], outcome))
    return out


def poll(what: str, fn, timeout: float = 10.0, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_failing_primary_opens_its_circuit_and_a_probe_closes_it(hg, fake):
    fake.set_behavior("hp", "status=503")
    try:
        # Requests keep being answered by the fallback while the primary's failures are counted.
        def opened():
            r = ask(hg, "h-failover")
            assert r.status_code == 200, r.text
            assert r.headers["x-switchyard-provider"] == "hb"
            return hg.circuit("hp/m")["breaker"]["state"] == "open"

        poll("the primary's circuit to open", opened)
        view = hg.circuit("hp/m")
        assert view["admits"] is False and view["failures"] >= 3
        assert view["breaker"]["cooldown_until_ms"] > time.time() * 1000
        line = poll("the open line", lambda: [l for l in hg.circuit_lines("hp/m") if l["to"] == "open"])[0]
        assert (line["from"], line["cause"]) == ("closed", "failures")

        # Once the isolate's snapshot shows it open, the primary is not even tried.
        def skipped():
            tag = uid()
            r = ask(hg, "h-failover", f"[[fake:id={tag}]] hi")
            return r.status_code == 200 and tried(r) == [("hb", "ok")] and not fake.requests(id=tag, instance="hp")

        poll("requests to skip the open primary", skipped, timeout=5)
        for _ in range(3):
            assert skipped()
    finally:
        fake.set_behavior("hp", "")

    # The primary recovered; the cron probes it once its cooldown is over, which closes the circuit.
    def closed_by_probe():
        hg.cron()
        return hg.circuit("hp/m")["breaker"]["state"] == "closed"

    poll("a cron probe to close the circuit", closed_by_probe, timeout=15, every=0.3)
    probes = [l for l in hg.log_lines() if l.get("msg") == "switchyard.probe" and l.get("target") == "hp/m"]
    assert probes and probes[-1]["outcome"] == "ok"
    models_gets = [q for q in fake.requests(instance="hp") if q["method"] == "GET"]
    assert models_gets and models_gets[-1]["path"] == "/hp/v1/models"
    assert models_gets[-1]["headers"]["authorization"] == f"Bearer {TEST_KEY}"
    steps = [(l["from"], l["to"], l["cause"]) for l in hg.circuit_lines("hp/m")]
    assert ("open", "half_open", "cooldown_elapsed") in steps
    assert steps[-1] == ("half_open", "closed", "probe_succeeded")

    # Traffic returns to the primary.
    poll("traffic back on the primary", lambda: tried(ask(hg, "h-failover")) == [("hp", "ok")], timeout=5)


def test_n_requests_cost_far_fewer_durable_object_calls(hg):
    n = 100
    # A warm isolate: the targets' snapshots have been fetched once.
    assert ask(hg, "h-count").status_code == 200
    before = hg.isolate()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: ask(hg, "h-count").status_code, range(n)))
    assert answers == [200] * n
    # Every outcome reaches the primary's object, in batches.

    def reported():
        return (hg.circuit("hc1/m")["successes"], hg.isolate()["pending_outcomes"]) == (n + 1, 0)

    poll("all outcomes reported", reported)
    after = hg.isolate()
    calls = after["do_calls"] - before["do_calls"]
    reports = after["reports"] - before["reports"]
    fetches = after["snapshot_fetches"] - before["snapshot_fetches"]
    assert after["probe_requests"] == before["probe_requests"]
    assert reports >= 1, after
    assert calls <= n // 5, f"{n} requests made {calls} Durable Object calls ({fetches} snapshots, {reports} reports)"


def test_operator_opens_closes_and_resets_a_circuit(hg):
    r = hg.admin.post("/circuits/hop/m/open", json={"seconds": 60})
    assert r.status_code == 200, r.text
    v = r.json()
    assert (v["breaker"]["state"], v["breaker"]["forced"], v["admits"]) == ("open", "open", False)
    assert v["breaker"]["cooldown_until_ms"] > (time.time() + 50) * 1000
    assert hg.circuit("hop/m")["breaker"]["state"] == "open"
    poll("traffic to avoid the forced-open target", lambda: tried(ask(hg, "h-op")) == [("hopb", "ok")], timeout=5)

    v = hg.admin.post("/circuits/hop/m/close").json()
    assert (v["breaker"]["state"], v["breaker"]["forced"]) == ("closed", "closed")
    poll("traffic back", lambda: tried(ask(hg, "h-op")) == [("hop", "ok")], timeout=5)
    v = hg.admin.post("/circuits/hop/m/reset").json()
    assert (v["breaker"]["state"], v["breaker"]["forced"]) == ("closed", "no")

    causes = [l["cause"] for l in hg.circuit_lines("hop/m")]
    assert causes[-3:] == ["operator_open", "operator_close", "operator_reset"]

    listing = hg.admin.get("/circuits").json()
    targets = {t["target"]: t for t in listing["targets"]}
    assert {"hop/m", "hopb/m", "hp/m", "hw70/m"} <= set(targets)
    assert targets["hopb/m"]["successes"] >= 1
    # Unknown targets and actions, wrong methods, and no admin token.
    assert hg.admin.get("/circuits/nobody/m").status_code == 404
    assert hg.admin.post("/circuits/hop/m/explode").status_code == 404
    assert hg.admin.get("/circuits/hop/m/open").status_code == 405
    assert hg.admin.post("/circuits/hop/m/open", json={"seconds": -1}).status_code == 400
    assert hg.anon.get("/admin/circuits").status_code == 401


def test_weighted_split_follows_the_weights(hg):
    n = 400
    with ThreadPoolExecutor(8) as pool:
        providers = list(pool.map(lambda i: ask(hg, "h-weighted").headers["x-switchyard-provider"], range(n)))
    share = providers.count("hw70") / n
    assert providers.count("hw70") + providers.count("hw30") == n
    assert 0.62 <= share <= 0.78, f"hw70 answered {share:.1%} (weights 70/30)"


def test_nearest_picks_by_the_callers_location(hg):
    def first(blob):
        r = ask(hg, "h-nearest", headers={"MF-CF-Blob": json.dumps(blob)})
        assert r.status_code == 200, r.text
        return tried(r)[0][0]

    assert first(LHR) == "heu"
    assert first(IAD) == "hna"
    assert first({**LHR, "colo": "CDG", "country": "FR"}) == "heu", "continent EU still prefers the EU target"


def test_residency_never_leaks(hg, fake):
    # The route requires `eu`: its us target is never used, even when the eu one fails.
    tag = uid()
    for _ in range(4):
        r = ask(hg, "h-eu", f"[[fake@heu-r:id={tag},status=503]] [[fake@hus-r:id={tag}]] hi")
        assert r.status_code == 502
        assert {p for p, _ in tried(r)} == {"heu-r"}
    assert ask(hg, "h-eu").headers["x-switchyard-provider"] == "heu-r"
    assert fake.requests(instance="hus-r") == []

    # A tenant marked `eu` only reaches eu targets, and fails clearly when a route has none.
    eu = httpx.Client(base_url=hg.base, timeout=30, headers={"authorization": f"Bearer {EU_TOKEN}"})
    assert tried(ask(hg, "h-mixed")) == [("hus-t", "ok")], "other tenants: config order"
    for _ in range(3):
        assert tried(ask(hg, "h-mixed", client=eu)) == [("heu-t", "ok")]
    r = ask(hg, "h-us-only", client=eu)
    assert r.status_code == 503, r.text
    err = r.json()["error"]
    assert err["code"] == "no_eligible_target" and "eu" in err["message"]
    assert fake.requests(instance="hus-only") == []


def test_tiers_pick_by_hint_and_prompt_size(hg):
    assert tried(ask(hg, "h-tiers"))[0][0] == "hsmall"
    assert tried(ask(hg, "h-tiers", headers={"x-switchyard-tier": "large"}))[0][0] == "hlarge"
    assert tried(ask(hg, "h-tiers", "word " * 300))[0][0] == "hlarge"


def test_cost_prefers_the_cheaper_target(hg):
    assert tried(ask(hg, "h-cost")) == [("hcheap", "ok")]


def test_latency_converges_on_the_faster_target(hg, fake):
    fake.set_behavior("hslow", "header_delay_ms=150")
    try:
        def mostly_fast():
            firsts = [tried(ask(hg, "h-latency"))[0][0] for _ in range(10)]
            return firsts.count("hfast") >= 7

        poll("the latency strategy to prefer the faster target", mostly_fast, timeout=20, every=0)
    finally:
        fake.set_behavior("hslow", "")
    slow, fast = hg.circuit("hslow/m"), hg.circuit("hfast/m")
    assert fast["ttfb_p95_ms"] < slow["ttfb_p95_ms"], (fast, slow)


def test_spread_keys_share_the_traffic(hg, fake):
    tag = uid()
    for _ in range(30):
        assert ask(hg, "h-spread", f"[[fake:id={tag}]] hi").status_code == 200
    keys = [q["headers"]["authorization"] for q in fake.requests(id=tag, instance="hspread")]
    assert len(keys) == 30
    assert keys.count(f"Bearer {TEST_KEY}") >= 5 and keys.count(f"Bearer {BACKUP_KEY}") >= 5, keys


def test_state_and_stats_survive_a_restart(hg):
    assert hg.admin.post("/circuits/hpersist/m/open").status_code == 200
    assert ask(hg, "h-count").status_code == 200
    poll("the outcome to be reported", lambda: hg.isolate()["pending_outcomes"] == 0)
    samples = hg.circuit("hc1/m")["ttfb_samples"]
    assert samples > 0
    hg.restart()
    v = hg.circuit("hpersist/m")
    assert (v["breaker"]["state"], v["breaker"]["forced"]) == ("open", "open")
    assert v["breaker"]["cooldown_until_ms"] > 10**19, "held open until reset"
    assert hg.circuit("hc1/m")["ttfb_samples"] == samples
    assert hg.circuit("hp/m")["breaker"]["opens"] == 0 and hg.circuit("hp/m")["successes"] >= 1


def test_streams_broken_after_their_first_token_count_against_the_target(hg, fake):
    # Each cut stream reached the caller and then broke: its attempt's one outcome, recorded when
    # the stream ends, is a provider-side failure (no success at its first token), so three in a
    # row open the circuit by the consecutive-failure rule.
    cut = "[[fake@hcut:words=6,cut_after=2]] go"
    opened = None
    for _ in range(12):
        r = hg.http.post("/v1/chat/completions", json={"model": "h-cut", "messages": msg(cut), "stream": True})
        if "hcut/m:ok" not in r.headers.get("x-switchyard-attempts", "hcut/m:ok"):
            break  # the plan already passes the primary over
        assert r.status_code == 200 and '"code":"upstream_error"' in r.text and "[DONE]" not in r.text
        view = hg.circuit("hcut/m")
        if view["breaker"]["state"] == "open":
            opened = view
            break
    deadline = time.monotonic() + 10
    while opened is None and time.monotonic() < deadline:
        view = hg.circuit("hcut/m")
        opened = view if view["breaker"]["state"] == "open" else None
        time.sleep(0.1)
    assert opened, hg.circuit("hcut/m")
    assert opened["failures"] >= 3 and opened["successes"] == 0, opened
    # Time to first byte is still measured for every one of them.
    assert opened["ttfb_samples"] == opened["failures"], opened
    assert any((l["to"], l["cause"]) == ("open", "failures") for l in hg.circuit_lines("hcut/m"))


def test_a_failing_key_opens_its_own_circuit_and_traffic_stays_on_the_provider(hg, fake):
    # hkeys has two keys, so each has its own circuit: `hkeys/m#SECRET_NAME` (never the value).
    k1, k2 = "hkeys/m#TEST_OA_KEY", "hkeys/m#TEST_BACKUP_KEY"
    url1, url2 = k1.replace("#", "%23"), k2.replace("#", "%23")
    listed = {t["target"] for t in hg.admin.get("/circuits").json()["targets"]}
    assert {k1, k2, "hkeysb/m"} <= listed and "hkeys/m" not in listed, listed
    assert not any(TEST_KEY in t or BACKUP_KEY in t for t in listed)

    def keys_used(tag: str) -> list[str]:
        return [q["headers"]["authorization"] for q in fake.requests(id=tag, instance="hkeys")]

    def answered_by(key: str) -> bool:
        tag = uid()
        r = ask(hg, "h-keys", f"[[fake:id={tag}]] hi")
        return (r.status_code == 200 and tried(r) == [("hkeys", "ok")] and keys_used(tag) == [f"Bearer {key}"]
                and not fake.requests(id=tag, instance="hkeysb"))

    assert answered_by(TEST_KEY), "`first`: the first key"
    # Only the first key's requests fail; the second key of the same provider is fine.
    fake.set_behavior("hkeys", f"status=503,only_key={TEST_KEY}")
    try:
        def opened():
            r = ask(hg, "h-keys")
            assert r.status_code == 200, r.text
            return hg.circuit(url1)["breaker"]["state"] == "open"

        poll("the failing key's circuit to open", opened)
        v = hg.circuit(url1)
        assert (v["target"], v["admits"]) == (k1, False) and v["failures"] >= 3, v
        assert hg.circuit(url2)["breaker"]["state"] == "closed"
        assert hg.circuit(url2)["failures"] == 0
        line = poll("the open line", lambda: [l for l in hg.circuit_lines(k1) if l["to"] == "open"])[0]
        assert line["cause"] == "failures"

        # Once the snapshot shows it: the provider's other key answers, not the other provider.
        poll("traffic on the provider's other key", lambda: answered_by(BACKUP_KEY), timeout=5)
        for _ in range(3):
            assert answered_by(BACKUP_KEY)
            r = ask(hg, "h-keys")  # under the standing behaviour too
            assert r.status_code == 200 and tried(r) == [("hkeys", "ok")], r.headers
    finally:
        fake.set_behavior("hkeys", "")

    # The key recovered: once its cooldown is over a cron probe, sent with that key, closes it.
    def closed_by_probe():
        hg.cron()
        return hg.circuit(url1)["breaker"]["state"] == "closed"

    poll("a cron probe to close the key's circuit", closed_by_probe, timeout=15, every=0.3)
    probes = [l for l in hg.log_lines() if l.get("msg") == "switchyard.probe" and l.get("target") == k1]
    assert probes and probes[-1]["outcome"] == "ok"
    gets = [q for q in fake.requests(instance="hkeys") if q["method"] == "GET"]
    assert gets and gets[-1]["headers"]["authorization"] == f"Bearer {TEST_KEY}"
    poll("traffic back on the first key", lambda: answered_by(TEST_KEY), timeout=5)

    # Operators hold a key's circuit open and reset it like any other.
    r = hg.admin.post(f"/circuits/{url1}/open")
    assert r.status_code == 200, r.text
    assert (r.json()["target"], r.json()["breaker"]["forced"]) == (k1, "open")
    poll("traffic to avoid the forced-open key", lambda: answered_by(BACKUP_KEY), timeout=5)
    v = hg.admin.post(f"/circuits/{url1}/reset").json()
    assert (v["target"], v["breaker"]["state"]) == (k1, "closed")
    poll("traffic back after the reset", lambda: answered_by(TEST_KEY), timeout=5)
    assert [l["cause"] for l in hg.circuit_lines(k1)][-2:] == ["operator_open", "operator_reset"]
