#!/usr/bin/env python3
"""CPU profile of Switchyard's isolate under the bench load (bench/run.py's configuration).

Starts the fake provider and Switchyard under `wrangler dev` with a known inspector port, attaches
to the worker's V8 inspector over the Chrome DevTools Protocol, and runs `Profiler.start` /
`Profiler.stop` around N sequential requests (after a warm-up). Prints self and total time by
function and writes the raw profile (`.cpuprofile`, loadable in Chrome DevTools / speedscope).

    bash scripts/build.sh                       # or SWITCHYARD_NO_OPT=1 for wasm function names
    .venv/bin/python bench/profile.py [--requests 1000] [--stream] [--out /tmp/sy.cpuprofile]

The optimised build (scripts/build.sh without SWITCHYARD_NO_OPT) strips the names section, so its
wasm functions show as `$func123`; profile the unoptimised build for names, and the optimised one to
check the shares are not artefacts of unoptimised code. The profile covers the worker's isolate
only: D1, KV and the Durable Objects run in other isolates of the same workerd process. Loopback
only; every loop is bounded in count and time. Uses `websockets` (installed in .venv as a
dependency of the test requirements' SDKs).
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from websockets.sync.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import TOKEN, bench_config, request_once  # noqa: E402
from conftest import FAKE_BIN, _stop, free_port, seed_sql, start_wrangler  # noqa: E402




class Cdp:
    """A minimal CDP client: numbered commands, events skipped."""

    def __init__(self, url: str):
        self.ws = connect(url, max_size=None, open_timeout=10, origin="http://localhost")  # noqa
        self.next_id = 0

    def call(self, method: str, params: dict | None = None, timeout: float = 60) -> dict:
        self.next_id += 1
        me = self.next_id
        self.ws.send(json.dumps({"id": me, "method": method, "params": params or {}}))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise SystemExit(f"CDP {method}: no answer")
            msg = json.loads(self.ws.recv(timeout=left))
            # wrangler's proxy sometimes hands a command back as it was sent (the runtime still
            # runs it); only the final `Profiler.stop` needs the answer itself.
            if msg.get("id") == me and ("result" in msg or "error" in msg or method != "Profiler.stop"):
                if "error" in msg:
                    raise SystemExit(f"CDP {method}: {msg['error']}")
                return msg.get("result", {})


def worker_target(inspector_port: int) -> str:
    deadline = time.monotonic() + 30
    while True:
        try:
            targets = httpx.get(f"http://127.0.0.1:{inspector_port}/json", timeout=5).json()
            for t in targets:
                if t.get("webSocketDebuggerUrl"):
                    return t["webSocketDebuggerUrl"]
        except (httpx.HTTPError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise SystemExit("no inspector target")
        time.sleep(0.5)


def summarise(profile: dict, top: int, interval_us: int) -> str:
    """Self time, total time, and time by the innermost Rust (wasm) frame on the stack."""
    nodes = {n["id"]: n for n in profile["nodes"]}
    parent = {}
    for n in profile["nodes"]:
        for c in n.get("children", []):
            parent[c] = n["id"]
    samples = profile.get("samples", [])
    deltas = profile.get("timeDeltas", [])
    # A sample stands for the time until the next one, capped: the sampler stops while the isolate
    # waits, so long gaps are idle time, not the sampled frame's.
    cap = 4 * interval_us
    weight = [min(deltas[i + 1], cap) / 1000 if i + 1 < len(deltas) else interval_us / 1000 for i in range(len(samples))]

    def name(n: dict) -> str:
        cf = n["callFrame"]
        fn = cf["functionName"] or "(anonymous)"
        url = cf.get("url", "")
        where = url.rsplit("/", 1)[-1] if url else ""
        if ".wasm" in where:
            return fn
        return f"{fn} [{where}:{cf.get('lineNumber', -1) + 1}]" if where else fn

    def is_wasm(n: dict) -> bool:
        fn = n["callFrame"]["functionName"]
        return (".wasm" in n["callFrame"].get("url", "") or fn.startswith("wasm-function[")) and not fn.startswith("js-to-wasm")

    self_ms: collections.Counter = collections.Counter()
    total_ms: collections.Counter = collections.Counter()
    by_rust: collections.Counter = collections.Counter()
    idle = {"(idle)", "(program)", "(garbage collector)", "(root)"}
    for s, w in zip(samples, weight):
        self_ms[name(nodes[s])] += w
        if name(nodes[s]) in idle:
            continue
        seen = set()
        cur = s
        rust = None
        while cur is not None:
            n = nodes[cur]
            nm = name(n)
            if rust is None and is_wasm(n):
                rust = nm
            if nm not in seen:
                seen.add(nm)
                total_ms[nm] += w
            cur = parent.get(cur)
        by_rust[rust or "(no wasm frame on the stack: the runtime's own JS and native work)"] += w
    busy = sum(v for k, v in self_ms.items() if k not in idle)
    out = [f"{len(samples)} samples; in JS/wasm {busy:.0f} ms (idle {self_ms['(idle)']:.0f} ms, "
           f"program {self_ms['(program)']:.0f} ms, GC {self_ms['(garbage collector)']:.0f} ms); "
           "percentages are of the JS/wasm time", ""]

    def table(title: str, counter: collections.Counter, skip: set) -> None:
        out.extend([title, ""])
        for k, v in [kv for kv in counter.most_common() if kv[0] not in skip][:top]:
            out.append(f"{v:9.1f} ms {100 * v / busy:5.1f}%  {k[:160]}")
        out.append("")

    table("self time:", self_ms, idle)
    table("self time plus the JS it called, by the innermost Rust frame:", by_rust, set())
    table("total time (inclusive, recursion counted once):", total_ms, idle)
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--stream", action="store_true")
    ap.add_argument("--words", type=int, default=0, help="ask the fake provider for an answer of N words")
    ap.add_argument("--interval-us", type=int, default=100, help="sampling interval")
    ap.add_argument("--top", type=int, default=45)
    ap.add_argument("--out", default="/tmp/switchyard.cpuprofile")
    ap.add_argument("--summarise", metavar="CPUPROFILE", help="only summarise a saved profile")
    args = ap.parse_args()
    if args.summarise:
        print(summarise(json.loads(Path(args.summarise).read_text()), args.top, args.interval_us))
        return

    work = Path(tempfile.mkdtemp(prefix="switchyard-profile-"))
    fake = subprocess.Popen([str(FAKE_BIN), "--port", "0"], stdout=subprocess.PIPE, text=True, start_new_session=True)
    procs = [fake]
    try:
        port = int(fake.stdout.readline().rsplit(":", 1)[1])
        upstream = f"http://127.0.0.1:{port}"
        iport = free_port()
        gw, gw_port = start_wrangler(bench_config(upstream), {"BENCH_KEY": "k"}, work / "gw", work / "gw.log",
                                     seed=seed_sql("bench", TOKEN), inspector_port=iport)
        procs.append(gw)
        url = f"http://127.0.0.1:{gw_port}/v1/chat/completions"
        content = "benchmark this" + (f" [[fake:words={args.words}]]" if args.words else "")
        body = {"model": "bench", "messages": [{"role": "user", "content": content}], "stream": args.stream}
        client = httpx.Client(timeout=30, headers={"authorization": f"Bearer {TOKEN}"})

        def one() -> None:
            if not request_once(client, url, body, args.stream):
                raise SystemExit("request failed")

        for _ in range(50):
            one()
        cdp = Cdp(worker_target(iport))
        cdp.call("Profiler.enable")
        cdp.call("Profiler.setSamplingInterval", {"interval": args.interval_us})
        cdp.call("Profiler.start")
        t = time.perf_counter()
        for _ in range(args.requests):
            one()
        wall = time.perf_counter() - t
        profile = cdp.call("Profiler.stop", timeout=120)["profile"]
        cdp.ws.close()
        Path(args.out).write_text(json.dumps(profile))
        kind = "streamed" if args.stream else "plain"
        print(f"{kind}, {args.requests} sequential requests in {wall:.1f} s; profile in {args.out}\n")
        print(summarise(profile, args.top, args.interval_us))
    finally:
        for p in reversed(procs):
            _stop(p)


if __name__ == "__main__":
    main()
