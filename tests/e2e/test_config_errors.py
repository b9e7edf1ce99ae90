"""An invalid configuration: a log line and a 500 `config_invalid` naming the field, never a panic.

This module starts its own short-lived wrangler dev with a broken config.
"""

import time

import pytest

from conftest import _stop, msg, start_wrangler


@pytest.fixture(scope="module")
def broken(fake, workdir):
    config = {
        "providers": [{"id": "p", "kind": "openai", "base_url": fake.url("p"), "api_key_secrets": ["K"]}],
        "routes": [{"model": "m", "targets": [{"provider": "ghost", "model": "x"}]}],
    }
    log_path = workdir / "wrangler-broken.log"
    proc, port = start_wrangler(config, {}, workdir / "state-broken", log_path)
    import httpx

    yield httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30), log_path
    _stop(proc)


def test_invalid_config_is_a_500_naming_the_field(broken):
    client, log_path = broken
    for r in (client.post("/v1/chat/completions", json={"model": "m", "messages": msg("hi")}), client.get("/v1/models")):
        assert r.status_code == 500, r.text
        err = r.json()["error"]
        assert err["code"] == "config_invalid"
        assert err["type"] == "server_error"
        assert err["param"] == "routes[0].targets[0].provider"
        assert "ghost" in err["message"]
        assert "panicked" not in r.text
    expected = '{"msg":"switchyard.config_invalid","field":"routes[0].targets[0].provider"'
    deadline = time.monotonic() + 10
    while expected not in log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert expected in log_path.read_text()
    # Health stays green: the worker itself is fine, only the routing config is not.
    assert client.get("/healthz").status_code == 200
