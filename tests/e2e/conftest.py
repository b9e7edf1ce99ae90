"""End-to-end harness: one fake provider and one real `wrangler dev` for the whole session.

Both bind 127.0.0.1 on free ports, run in their own process groups, and are stopped by PID at
the end of the session — also when a test fails or the run is interrupted. The worker must have
been built already (scripts/test.sh does it); wrangler is started with SWITCHYARD_SKIP_BUILD=1.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / "node_modules" / ".bin"
FAKE_BIN = Path(os.environ.get("SWITCHYARD_FAKE_BIN", ROOT / "target" / "release" / "fake-provider"))

# Test-only values: not real keys. They let tests check what reaches the upstream.
TEST_KEY = "test-key-oa-0001"
BACKUP_KEY = "test-key-backup-0002"
BAD_KEY = "test-key-revoked-0003"
ANTH_KEY = "test-key-anthropic-0004"
GEM_KEY = "test-key-gemini-0005"
# The tenant every test speaks as unless it says otherwise (seeded straight into local D1).
TENANT = "test"
TENANT_TOKEN = "sy_test_tenant_token_for_e2e_only_0001"
ADMIN_TOKEN = "test-admin-token-0006"
SIGNING_SECRET = "test-signing-secret-0007"


def seed_sql(tenant: str, token: str, extra: str = "") -> str:
    h = hashlib.sha256(token.encode()).hexdigest()
    return (
        f"INSERT OR IGNORE INTO tenants (id, name, created_ms, updated_ms) VALUES ('{tenant}', '{tenant}', 0, 0);"
        f"INSERT OR IGNORE INTO tokens (id, tenant_id, hash, prefix, created_ms) "
        f"VALUES ('tok_{tenant}', '{tenant}', '{h}', '{token[:11]}', 0);{extra}"
    )

_children: list[subprocess.Popen] = []


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


@atexit.register
def _stop_all() -> None:
    for p in reversed(_children):
        _stop(p)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wrangler_env() -> dict:
    env = dict(os.environ)
    env.update(
        CI="true",
        WRANGLER_SEND_METRICS="false",
        CLOUDFLARE_CF_FETCH_ENABLED="false",
        SWITCHYARD_SKIP_BUILD="1",
        PATH=f"{BIN}:{env.get('PATH', '')}",
        NO_COLOR="1",
        FORCE_COLOR="0",
    )
    return env


# --- the fake provider -------------------------------------------------------------------


class Fake:
    def __init__(self, port: int):
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.http = httpx.Client(base_url=self.base, timeout=10)

    def url(self, instance: str, suffix: str = "/v1") -> str:
        return f"{self.base}/{instance}{suffix}"

    def requests(self, id: str | None = None, instance: str | None = None) -> list[dict]:
        params = {k: v for k, v in (("id", id), ("instance", instance)) if v}
        return self.http.get("/_fake/requests", params=params).json()

    def set_behavior(self, instance: str, spec: str) -> None:
        r = self.http.post("/_fake/behavior", json={"instance": instance, "spec": spec})
        r.raise_for_status()


@pytest.fixture(scope="session")
def fake() -> Fake:
    if not FAKE_BIN.exists():
        pytest.fail(f"{FAKE_BIN} is missing: build it with `cargo build --release -p fake-provider`")
    proc = subprocess.Popen(
        [str(FAKE_BIN), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    _children.append(proc)
    line = proc.stdout.readline() if proc.stdout else ""
    if "listening on" not in line:
        _stop(proc)
        pytest.fail(f"fake provider did not start: {line!r}")
    port = int(line.rsplit(":", 1)[1])
    yield Fake(port)
    _stop(proc)


# --- the gateway under wrangler dev ------------------------------------------------------

FAST_RETRY = {"backoff_base_ms": 20, "backoff_max_ms": 100, "retry_after_cap_ms": 3000}
FAST_DEADLINES = {
    "headers_ms": 1500,
    "response_ms": 2500,
    "first_token_ms": 1500,
    "idle_ms": 1500,
    "total_ms": 10000,
}


def test_config(fake: Fake) -> dict:
    def provider(pid: str, secret: str = "TEST_OA_KEY", **extra) -> dict:
        return {"id": pid, "kind": "openai", "base_url": fake.url(pid), "api_key_secrets": [secret], **extra}

    return {
        "max_body_bytes": 64 * 1024,
        "retry": FAST_RETRY,
        "deadlines": FAST_DEADLINES,
        # This suite checks the attempt loop, so its targets' circuit breakers never open (the
        # failure tests would otherwise reorder later tests' targets); test_health.py checks the
        # breakers on a gateway of its own.
        "health": {"consecutive_failures": 1000000, "min_volume": 1000000, "idle_probe_ms": 60000},
        "providers": [
            provider("oa", models={"small-1": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}}),
            provider("backup", secret="TEST_BACKUP_KEY"),
            provider("third"),
            provider("small", models={"tiny-ctx": {"context_window": 8}}),
            provider("large", models={"huge-ctx": {"context_window": 1000000}}),
            provider("nokey", secret="TEST_UNSET_SECRET"),
            provider("emb", models={"text-embedding-3-small": {"input_per_mtok": 0.02}}),
            {**provider("multikey"), "api_key_secrets": ["TEST_BAD_KEY", "TEST_OA_KEY"]},
            {"id": "anth", "kind": "anthropic", "base_url": f"{fake.base}/anth", "api_key_secrets": ["TEST_ANTH_KEY"]},
            {"id": "gem", "kind": "gemini", "base_url": f"{fake.base}/gem/v1beta", "api_key_secrets": ["TEST_GEM_KEY"]},
            # The response cache (test_cache.py): instances of their own, so standing behaviours
            # set there touch no other test.
            provider("cache1", models={"c-1": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}}),
            provider("stale1"),
            provider("stale2"),
        ],
        "routes": [
            {"model": "plain", "targets": [{"provider": "oa", "model": "small-1"}]},
            {
                "model": "failover",
                "targets": [{"provider": "oa", "model": "small-1"}, {"provider": "backup", "model": "backup-1"}],
            },
            {
                "model": "three",
                "targets": [
                    {"provider": "oa", "model": "small-1"},
                    {"provider": "backup", "model": "backup-1"},
                    {"provider": "third", "model": "third-1"},
                ],
            },
            {
                "model": "ctx-small",
                "targets": [{"provider": "small", "model": "tiny-ctx"}],
                "context_fallback": "ctx-large",
            },
            {"model": "ctx-large", "targets": [{"provider": "large", "model": "huge-ctx"}]},
            {
                "model": "policy-failover",
                "targets": [{"provider": "oa", "model": "small-1"}, {"provider": "backup", "model": "backup-1"}],
                "failover_on_content_policy": True,
            },
            {
                "model": "tight",
                "targets": [{"provider": "oa", "model": "small-1"}, {"provider": "backup", "model": "backup-1"}],
                "deadlines": {"total_ms": 2000, "headers_ms": 1500, "response_ms": 1500},
            },
            {"model": "multikey", "targets": [{"provider": "multikey", "model": "mk-1"}]},
            {"model": "claude", "targets": [{"provider": "anth", "model": "claude-test"}]},
            {"model": "gemini", "targets": [{"provider": "gem", "model": "gemini-test"}]},
            {
                "model": "claude-then-openai",
                "targets": [{"provider": "anth", "model": "claude-test"}, {"provider": "oa", "model": "small-1"}],
            },
            {
                "model": "gemini-then-claude",
                "targets": [{"provider": "gem", "model": "gemini-test"}, {"provider": "anth", "model": "claude-test"}],
            },
            {"model": "cached", "targets": [{"provider": "cache1", "model": "c-1"}], "cache": {"enabled": True}},
            {
                "model": "cached-stale",
                "targets": [{"provider": "stale1", "model": "s-1"}, {"provider": "stale2", "model": "s-2"}],
                "cache": {"enabled": True, "ttl_s": 1, "stale_if_error_s": 600},
            },
            {
                "model": "cached-tools",
                "targets": [{"provider": "cache1", "model": "c-1"}],
                "cache": {"enabled": True, "cache_tool_calls": True},
            },
            {
                "model": "cached-shared",
                "targets": [{"provider": "cache1", "model": "c-1"}],
                "cache": {"enabled": True, "shared_namespace": "e2e-shared"},
            },
            {
                "model": "nokey-then-backup",
                "targets": [{"provider": "nokey", "model": "x"}, {"provider": "backup", "model": "backup-1"}],
            },
            {
                "model": "long",
                "targets": [{"provider": "oa", "model": "small-1"}],
                "deadlines": {"total_ms": 110000, "idle_ms": 5000},
            },
            {"model": "embed", "targets": [{"provider": "emb", "model": "text-embedding-3-small"}]},
            {"model": "embed-gemini", "targets": [{"provider": "gem", "model": "text-embedding-004"}]},
            {
                "model": "embed-failover",
                "targets": [
                    {"provider": "emb", "model": "text-embedding-3-small"},
                    {"provider": "gem", "model": "text-embedding-004"},
                ],
            },
            {
                "model": "embed-claude-first",
                "targets": [{"provider": "anth", "model": "claude-test"}, {"provider": "gem", "model": "text-embedding-004"}],
            },
        ],
    }


def run_sql(state_dir: Path, command: str) -> list[dict]:
    """Run SQL against the local D1 of a running gateway; returns the last statement's rows."""
    out = subprocess.run(
        [str(BIN / "wrangler"), "d1", "execute", "DB", "--local", "--persist-to", str(state_dir), "--json", "--command", command],
        cwd=ROOT,
        env=wrangler_env(),
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    results = json.loads(out.stdout)
    return results[-1]["results"] if results else []


class Gateway:
    def __init__(
        self, port: int, log_path: Path, token: str = TENANT_TOKEN, state_dir: Path | None = None, pid: int | None = None
    ):
        self.state_dir = state_dir
        self.port = port
        # The `wrangler dev` process (its workerd children serve the requests).
        self.pid = pid
        self.base = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.token = token
        # Speaks as the test tenant by default; `anon` sends no credentials at all.
        self.http = httpx.Client(base_url=self.base, timeout=30, headers={"authorization": f"Bearer {token}"})
        self.anon = httpx.Client(base_url=self.base, timeout=30)
        self.admin = httpx.Client(
            base_url=f"{self.base}/admin", timeout=30, headers={"authorization": f"Bearer {ADMIN_TOKEN}"}
        )

    def sql(self, command: str) -> list[dict]:
        return run_sql(self.state_dir, command)

    def client(self, token: str | None) -> httpx.Client:
        """A client speaking with another token (or none)."""
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base, timeout=30, headers=headers)

    def chat(self, body: dict, headers: dict | None = None) -> httpx.Response:
        return self.http.post("/v1/chat/completions", json=body, headers=headers or {})

    def stream(self, body: dict, headers: dict | None = None) -> "StreamResult":
        """POST a streaming request and collect its SSE events with arrival times."""
        body = {**body, "stream": True}
        t0 = time.monotonic()
        events: list[tuple[float, str]] = []
        raw = b""
        with self.http.stream("POST", "/v1/chat/completions", json=body, headers=headers or {}) as r:
            status, resp_headers = r.status_code, r.headers
            t_headers = time.monotonic() - t0
            buf = ""
            for chunk in r.iter_text():
                raw += chunk.encode()
                buf += chunk
                while "\n\n" in buf:
                    ev, buf = buf.split("\n\n", 1)
                    for line in ev.splitlines():
                        if line.startswith("data: "):
                            events.append((time.monotonic() - t0, line[6:]))
        return StreamResult(status, resp_headers, events, raw, t_headers, time.monotonic() - t0)

    def cron(self) -> None:
        """Fire the scheduled handler once (crons never fire by themselves in wrangler dev)."""
        r = self.anon.get("/cdn-cgi/local/scheduled", params={"cron": "* * * * *"})
        assert r.status_code == 200, r.text

    def log_lines(self) -> list[dict]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            start = line.find('{"msg":"switchyard.')
            if start >= 0:
                try:
                    out.append(json.loads(line[start:]))
                except json.JSONDecodeError:
                    pass
        return out

    def log_for(self, request_id: str, timeout: float = 10.0) -> dict:
        """Poll the wrangler output until the request's log line appears."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.log_lines():
                if line.get("request_id") == request_id:
                    return line
            time.sleep(0.05)
        raise AssertionError(f"no log line for {request_id}")


class StreamResult:
    def __init__(self, status, headers, events, raw, t_headers, t_total):
        self.status = status
        self.headers = headers
        self.events = events
        self.raw = raw
        self.t_headers = t_headers
        self.t_total = t_total

    @property
    def data(self) -> list[str]:
        return [d for _, d in self.events]

    def chunks(self) -> list[dict]:
        return [json.loads(d) for d in self.data if d != "[DONE]"]

    def content(self) -> str:
        return "".join(
            (c.get("choices") or [{}])[0].get("delta", {}).get("content") or ""
            for c in self.chunks()
            if c.get("choices")
        )

    @property
    def done(self) -> bool:
        return bool(self.data) and self.data[-1] == "[DONE]"

    def error(self) -> dict | None:
        for c in self.chunks():
            if "error" in c:
                return c["error"]
        return None


def start_wrangler(
    config: dict,
    vars: dict[str, str],
    state_dir: Path,
    log_path: Path,
    seed: str | None = None,
    inspector_port: int | None = None,
) -> tuple[subprocess.Popen, int]:
    env = wrangler_env()
    d1 = [str(BIN / "wrangler"), "d1"]
    local = ["--local", "--persist-to", str(state_dir)]
    subprocess.run(
        d1 + ["migrations", "apply", "DB"] + local,
        cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120,
    )
    if seed:
        subprocess.run(
            d1 + ["execute", "DB", "--command", seed] + local,
            cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120,
        )
    port = free_port()
    args = [
        str(BIN / "wrangler"),
        "dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--inspector-port",
        str(inspector_port or free_port()),
        "--persist-to",
        str(state_dir),
        "--var",
        f"SWITCHYARD_CONFIG:{json.dumps(config)}",
    ]
    # Secrets go through an env file in the temp dir: a developer's .dev.vars is not read, and the
    # values stay off the command line.
    env_file = log_path.with_suffix(".env")
    env_file.write_text("".join(f"{k}={v}\n" for k, v in vars.items()) or "SWITCHYARD_TEST=1\n")
    args += ["--env-file", str(env_file)]
    log = open(log_path, "w")
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    _children.append(proc)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"wrangler dev exited: {log_path.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    _stop(proc)
    raise RuntimeError(f"wrangler dev did not answer in 90 s: {log_path.read_text()[-2000:]}")


@pytest.fixture(scope="session")
def workdir() -> Path:
    d = Path(tempfile.mkdtemp(prefix="switchyard-e2e-"))
    return d


@pytest.fixture(scope="session")
def gateway(fake: Fake, workdir: Path) -> Gateway:
    log_path = workdir / "wrangler.log"
    proc, port = start_wrangler(
        test_config(fake),
        {
            "TEST_OA_KEY": TEST_KEY,
            "TEST_BACKUP_KEY": BACKUP_KEY,
            "TEST_BAD_KEY": BAD_KEY,
            "TEST_ANTH_KEY": ANTH_KEY,
            "TEST_GEM_KEY": GEM_KEY,
            "ADMIN_TOKEN": ADMIN_TOKEN,
            "SIGNING_SECRET": SIGNING_SECRET,
        },
        workdir / "state",
        log_path,
        seed=seed_sql(TENANT, TENANT_TOKEN),
    )
    yield Gateway(port, log_path, state_dir=workdir / "state", pid=proc.pid)
    _stop(proc)


def uid() -> str:
    return uuid.uuid4().hex[:12]


def msg(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]
