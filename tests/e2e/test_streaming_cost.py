"""Streaming cost: chunks are re-framed and forwarded as they arrive, in every caller format, and
the gateway's memory does not grow with the answer's length.

Two checks that fail if the relay buffered the answer:
- a slow stream's first content arrives long before its end, and the rest arrives spread out;
- after a 200 000-word stream (about 25 MB in the Messages format), the isolate's wasm memory —
  which never shrinks, so it bounds everything the gateway's code held at once — stays far below
  the answer's size. The worker process's RSS is reported alongside (V8's heap grows with the
  allocation rate and is returned lazily, so RSS is shown, not bounded).
"""

import os
import time

import pytest

from conftest import msg


def content_arrivals(gateway, path: str, body: dict) -> tuple[list[float], float, bytes]:
    """Arrival times (s) of each content piece, the total time, and the raw body."""
    marker = {
        "/v1/chat/completions": b'"content":"',
        "/v1/messages": b"event: content_block_delta",
    }.get(path, b'"text":')
    t0 = time.monotonic()
    arrivals, raw, buf = [], b"", b""
    with gateway.http.stream("POST", path, json=body) as r:
        assert r.status_code == 200
        for chunk in r.iter_bytes():
            now = time.monotonic() - t0
            raw += chunk
            buf += chunk
            while b"\n\n" in buf:
                event, buf = buf.split(b"\n\n", 1)
                if marker in event and b'"content":""' not in event:
                    arrivals.append(now)
    return arrivals, time.monotonic() - t0, raw


SLOW = "[[fake:words=150,chunk_delay_ms=15]] go"


@pytest.mark.parametrize(
    "path,body",
    [
        ("/v1/chat/completions", {"model": "plain", "stream": True, "messages": msg(SLOW)}),
        ("/v1/messages", {"model": "plain", "max_tokens": 10, "stream": True, "messages": msg(SLOW)}),
        ("/v1beta/models/plain:streamGenerateContent?alt=sse", {"contents": [{"parts": [{"text": SLOW}]}]}),
    ],
)
def test_slow_stream_is_forwarded_as_it_arrives(gateway, path, body):
    arrivals, total, _ = content_arrivals(gateway, path, body)
    assert len(arrivals) == 150
    assert total >= 150 * 0.015, "the fake paced it"
    # Buffered, everything would arrive at the end; forwarded, pieces trickle in.
    assert arrivals[0] < total / 4, (arrivals[0], total)
    assert arrivals[len(arrivals) // 2] < total * 3 / 4, (arrivals[len(arrivals) // 2], total)


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def workerd_rss_kb(pid: int) -> int:
    """The largest RSS among the workerd processes under `wrangler dev` (the one running the worker)."""
    best = 0
    for p in descendants(pid):
        try:
            if b"workerd" not in open(f"/proc/{p}/cmdline", "rb").read():
                continue
            for line in open(f"/proc/{p}/status"):
                if line.startswith("VmRSS:"):
                    best = max(best, int(line.split()[1]))
        except OSError:
            pass
    return best


WORDS = 200_000


def test_long_stream_keeps_memory_flat(gateway):
    rid = f"long-{time.monotonic_ns()}"
    rss_before = workerd_rss_kb(gateway.pid) if gateway.pid else 0
    body = {"model": "long", "max_tokens": 10, "stream": True, "messages": msg(f"[[fake:words={WORDS}]] go")}
    t0 = time.monotonic()
    first, size, tail, deltas = None, 0, b"", 0
    with gateway.http.stream("POST", "/v1/messages", json=body, headers={"x-request-id": rid}, timeout=110) as r:
        assert r.status_code == 200
        for chunk in r.iter_bytes():
            if first is None:
                first = time.monotonic() - t0
            size += len(chunk)
            joined = tail + chunk
            deltas += joined.count(b"event: content_block_delta") - tail.count(b"event: content_block_delta")
            tail = joined[-64:]
    total = time.monotonic() - t0
    rss_after = workerd_rss_kb(gateway.pid) if gateway.pid else 0
    assert deltas == WORDS, "every word arrived"
    assert tail.rstrip().endswith(b'{"type":"message_stop"}'), tail
    assert first < total / 10, (first, total)

    line = gateway.log_for(rid, timeout=20)
    wasm = line["wasm_memory_bytes"]
    print(
        f"\n{WORDS} words, {size / 1e6:.1f} MB in the Messages format in {total:.1f} s "
        f"(first byte after {first:.2f} s); wasm memory {wasm / 1e6:.1f} MB; "
        f"workerd RSS {rss_before / 1e3:.0f} -> {rss_after / 1e3:.0f} MB"
    )
    assert size > 20e6
    # Holding the answer (or even a tenth of it) at once would have grown the wasm memory past this.
    assert wasm < size / 10, (wasm, size)
