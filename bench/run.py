#!/usr/bin/env python3
"""Benchmark Switchyard against a bare forwarding worker on the same runtime.

Both workers run under `wrangler dev` (real workerd) in front of the same fake provider on
127.0.0.1. For each, the script sends warm-up requests, then N sequential requests, and reads the
CPU time (utime + stime from /proc) that each workerd process spent on them; it also times the
requests from the client and runs a bounded concurrent burst for throughput. Loopback only;
every loop is bounded in count and time.

    .venv/bin/python bench/run.py [--requests 300] [--stream] [--skip-build]

Run it on an otherwise idle machine; results go to stdout as a Markdown table
(docs/BENCHMARKS.md records them with the date and the machine).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from conftest import (  # noqa: E402  (the e2e harness starts and stops processes by PID)
    BIN,
    FAKE_BIN,
    _stop,
    free_port,
    seed_sql,
    start_wrangler,
    wrangler_env,
)

TOKEN = "sy_bench_tenant_token_local_only"
CARGO_BIN = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo")) / "bin"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            kids = []
        for k in kids:
            out.append(int(k))
            todo.append(int(k))
    return out


def workerd_cpu(root_pid: int) -> dict[int, float]:
    """CPU seconds of each workerd process under `root_pid`."""
    cpu = {}
    for p in children(root_pid):
        try:
            cmd = Path(f"/proc/{p}/cmdline").read_bytes()
            if b"workerd" not in cmd:
                continue
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            cpu[p] = (int(fields[11]) + int(fields[12])) / CLK_TCK
        except OSError:
            pass
    return cpu


def bench_config(upstream: str) -> dict:
    """Switchyard's configuration for the bench: one OpenAI-shaped target on the fake provider."""
    return {
        "providers": [
            {"id": "bench", "kind": "openai", "base_url": f"{upstream}/bench/v1", "api_key_secrets": ["BENCH_KEY"],
             "models": {"m": {"input_per_mtok": 1, "output_per_mtok": 2}}}
        ],
        "routes": [{"model": "bench", "targets": [{"provider": "bench", "model": "m"}]}],
    }


def request_once(client: httpx.Client, url: str, body: dict, stream: bool) -> bool:
    """One request, its answer read to the end; whether it was a 200."""
    if stream:
        with client.stream("POST", url, json=body) as r:
            for _ in r.iter_bytes():
                pass
            return r.status_code == 200
    return client.post(url, json=body).status_code == 200


def measure(name: str, proc: subprocess.Popen, url: str, body: dict, headers: dict, n: int, stream: bool) -> dict:
    client = httpx.Client(timeout=30, headers=headers)

    def one() -> float:
        t = time.perf_counter()
        if not request_once(client, url, body, stream):
            raise SystemExit(f"{name}: request failed")
        return time.perf_counter() - t

    for _ in range(50):
        one()
    before = workerd_cpu(proc.pid)
    lat = [one() for _ in range(n)]
    after = workerd_cpu(proc.pid)
    per_proc = {p: (after.get(p, 0) - before.get(p, 0)) * 1000 / n for p in after}
    t = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: one(), range(n)))
    rps = n / (time.perf_counter() - t)
    lat.sort()
    return {
        "name": name,
        "cpu_ms_per_req": sum(per_proc.values()),
        "cpu_ms_worker": max(per_proc.values()) if per_proc else 0.0,
        "p50_ms": statistics.median(lat) * 1000,
        "p95_ms": lat[int(len(lat) * 0.95) - 1] * 1000,
        "rps_8": rps,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--stream", action="store_true")
    ap.add_argument("--skip-build", action="store_true")
    ap.add_argument("--words", type=int, default=0, help="ask the fake provider for an answer of N words")
    args = ap.parse_args()
    env = wrangler_env()
    env.pop("SWITCHYARD_SKIP_BUILD", None)
    if not args.skip_build:
        subprocess.run(["bash", "scripts/build.sh"], cwd=ROOT, check=True, env=env)
        fwd_env = dict(env)
        fwd_env.update(
            WASM_BINDGEN_BIN=str(CARGO_BIN / "wasm-bindgen"),
            WASM_OPT_BIN=str(BIN / "wasm-opt"),
            ESBUILD_BIN=str(BIN / "esbuild"),
        )
        subprocess.run(
            [str(CARGO_BIN / "worker-build"), "--release"],
            cwd=ROOT / "bench" / "forwarder",
            check=True,
            env=fwd_env,
        )
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "fake-provider"], cwd=ROOT, check=True)

    work = Path(tempfile.mkdtemp(prefix="switchyard-bench-"))
    fake = subprocess.Popen([str(FAKE_BIN), "--port", "0"], stdout=subprocess.PIPE, text=True, start_new_session=True)
    procs = [fake]
    try:
        port = int(fake.stdout.readline().rsplit(":", 1)[1])
        upstream = f"http://127.0.0.1:{port}"
        gw, gw_port = start_wrangler(bench_config(upstream), {"BENCH_KEY": "k"}, work / "gw", work / "gw.log",
                                     seed=seed_sql("bench", TOKEN))
        procs.append(gw)

        fwd_port = free_port()
        (work / "fwd.env").write_text("UPSTREAM_KEY=k\n")
        fwd = subprocess.Popen(
            [str(BIN / "wrangler"), "dev", "--ip", "127.0.0.1", "--port", str(fwd_port), "--inspector-port",
             str(free_port()), "--var", f"UPSTREAM:{upstream}/bench", "--env-file", str(work / "fwd.env")],
            cwd=ROOT / "bench" / "forwarder", env=env, stdout=open(work / "fwd.log", "w"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        procs.append(fwd)
        content = "benchmark this" + (f" [[fake:words={args.words}]]" if args.words else "")
        body = {"model": "bench", "messages": [{"role": "user", "content": content}], "stream": args.stream}
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.post(f"http://127.0.0.1:{fwd_port}/v1/chat/completions", json={**body, "model": "m"}, timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("forwarder did not start")
            time.sleep(0.3)

        rows = [
            measure("bare forwarder", fwd, f"http://127.0.0.1:{fwd_port}/v1/chat/completions",
                    {**body, "model": "m"}, {}, args.requests, args.stream),
            measure("switchyard", gw, f"http://127.0.0.1:{gw_port}/v1/chat/completions",
                    body, {"authorization": f"Bearer {TOKEN}"}, args.requests, args.stream),
        ]
    finally:
        for p in reversed(procs):
            _stop(p)
    base = rows[0]["cpu_ms_worker"] or 1e-9
    kind = "streamed" if args.stream else "non-streamed"
    print(f"\n{kind}, {args.requests} sequential requests after 50 warm-up; 8-way burst of {args.requests}\n")
    print("| worker | workerd CPU ms/req (all) | worker-process CPU ms/req | × forwarder | p50 ms | p95 ms | req/s (8 conc.) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['cpu_ms_per_req']:.3f} | {r['cpu_ms_worker']:.3f} | {r['cpu_ms_worker'] / base:.2f} | "
              f"{r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['rps_8']:.0f} |")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
