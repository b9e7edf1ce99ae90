"""The cron probes idle targets: a closed target nothing was heard from gets a cheap probe, so an
unused fallback's health is known before traffic needs it (health.idle_probe_ms, 60 s here)."""

import time


def test_cron_probes_a_target_never_used(gateway, fake):
    # `third` is only ever a third fallback: no test traffic reaches it before this.
    gateway.cron()
    deadline = time.monotonic() + 15
    probes = []
    while time.monotonic() < deadline and not probes:
        probes = [r for r in fake.requests(instance="third") if r["method"] == "GET" and r["path"].endswith("/models")]
        time.sleep(0.1)
    assert probes, "no idle probe reached the target"
    view = None
    while time.monotonic() < deadline:
        view = gateway.admin.get("/circuits/third/third-1").json()
        if view.get("successes", 0) >= 1:
            break
        time.sleep(0.1)
    assert view["successes"] >= 1 and view["breaker"]["state"] == "closed", view
    lines = [l for l in gateway.log_lines() if l.get("msg") == "switchyard.probe" and l.get("target") == "third/third-1"]
    assert lines and lines[0]["kind"] == "idle" and lines[0]["outcome"] == "ok"
    # Heard from now: the next tick leaves it alone. (The scheduled handler awaits its probes,
    # so when `cron()` returns, any probe it made has been recorded.)
    n = len(probes)
    gateway.cron()
    again = [r for r in fake.requests(instance="third") if r["method"] == "GET" and r["path"].endswith("/models")]
    assert len(again) == n, "a target heard from within idle_probe_ms is not probed again"
