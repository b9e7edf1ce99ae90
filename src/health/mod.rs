//! Health at the edge: the isolate's side of the circuit breakers (`docs/ROUTING.md`).
//!
//! * [`snapshot`] — the targets' health as routing sees it: a per-isolate cache of each target's
//!   `TargetSnapshot`, fetched from the target's Durable Object only when older than
//!   `health.snapshot_ttl_ms` (so at most one round trip per target per TTL per isolate).
//! * [`acquire_probe`] — the one round trip a request may make on the hot path: taking the
//!   half-open probe slot of a target the plan wants to try.
//! * [`record`] and [`flush_after`] — outcomes (one per attempt, against the target of the key
//!   it used: `routing::health_id`) go into the isolate's `Batch` and reach the Durable Objects
//!   after the response (`ctx.wait_until`), when the batch is due.
//! * [`object`] — `TargetHealthObject`, one Durable Object per target; [`probe`] — the cron.
//!
//! Every Durable Object call made for routing is counted ([`counters_json`], shown by
//! `GET /admin/circuits`), so tests can show that N requests cost far fewer than N calls.

pub mod object;
pub mod probe;

use std::cell::{Cell, RefCell};

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;

use switchyard_core::config::Config;
use switchyard_core::health::Snapshot;
use switchyard_core::health::{Batch, HealthSettings, Outcome, TargetReport, TargetSnapshot};
use worker::wasm_bindgen::JsValue;
use worker::{Context, Env};

use crate::platform::now_ms;
use crate::upstream::{sleep, within};

/// The Durable Object binding (wrangler.toml).
pub const BINDING: &str = "TARGET_HEALTH";
/// The longest a request waits for a Durable Object before routing without its answer.
const CALL_TIMEOUT_MS: u64 = 1_000;

/// Which counter a Durable Object call goes to.
#[derive(Clone, Copy)]
pub enum Call {
    /// A snapshot refresh (request path, once per target per TTL).
    Snapshot = 0,
    /// A probe slot taken by a request (request path, half-open targets only).
    Probe = 1,
    /// A batch of outcomes (after the response).
    Report = 2,
    /// The cron's calls.
    Cron = 3,
    /// The admin API's calls.
    Admin = 4,
}

thread_local! {
    /// (target id, when fetched, its snapshot).
    static SNAPS: RefCell<Vec<(String, u64, TargetSnapshot)>> = const { RefCell::new(Vec::new()) };
    static BATCH: RefCell<Batch> = RefCell::new(Batch::default());
    static CALLS: Cell<[u64; 5]> = const { Cell::new([0; 5]) };
    /// Until when a delayed flush is pending (0: none).
    static DELAYED: Cell<u64> = const { Cell::new(0) };
}

pub fn settings(config: &Config) -> HealthSettings {
    HealthSettings::resolve(config)
}

/// Call a target's Durable Object: `op` is the path, `body` JSON naming the `target`.
pub async fn call(
    env: &Env,
    target: &str,
    op: &str,
    body: &str,
    kind: Call,
) -> worker::Result<(String, Option<String>)> {
    CALLS.with(|c| {
        let mut v = c.get();
        v[kind as usize] += 1;
        c.set(v);
    });
    let stub = env
        .durable_object(BINDING)?
        .id_from_name(target)?
        .get_stub()?;
    let req = crate::upstream::post(
        &format!("https://health/{op}"),
        &[],
        &JsValue::from_str(body),
    )?;
    let mut resp = stub.fetch_with_request(req).await?;
    let token = resp.headers().get("x-probe-token").ok().flatten();
    let text = resp.text().await?;
    if resp.status_code() != 200 {
        return Err(worker::Error::RustError(text));
    }
    Ok((text, token))
}

/// `{"target": …}` as JSON text.
pub fn target_body(target: &str) -> String {
    format!("{{\"target\":{}}}", switchyard_core::providers::esc(target))
}

/// `{"target": …, "o": "<entries>"}` for the object's `/report`.
pub fn report_body(r: &TargetReport) -> String {
    format!(
        "{{\"target\":{},\"o\":\"{}\"}}",
        switchyard_core::providers::esc(&r.target),
        r.encode_entries()
    )
}

fn remember(target: &str, at: u64, snap: TargetSnapshot) {
    SNAPS.with(|s| {
        let mut s = s.borrow_mut();
        match s.iter_mut().find(|e| e.0 == target) {
            Some(e) => (e.1, e.2) = (at, snap),
            None => {
                if s.len() >= 1024 {
                    s.clear();
                }
                s.push((target.to_string(), at, snap));
            }
        }
    });
}

/// The cached entry of a target: (when fetched, snapshot).
fn cached(target: &str) -> Option<(u64, TargetSnapshot)> {
    SNAPS.with(|s| {
        s.borrow()
            .iter()
            .find(|e| e.0 == target)
            .map(|e| (e.1, e.2))
    })
}

/// The health of `targets` for routing: cached entries younger than the TTL as they are, the
/// others fetched (in parallel, bounded by [`CALL_TIMEOUT_MS`]). A target whose object cannot
/// be reached keeps its last snapshot (or none: unknown, so healthy) for another TTL. A snapshot
/// is thus at most TTL + one round trip old when routed by.
pub async fn snapshot(env: &Env, s: &HealthSettings, targets: &[String]) -> Snapshot {
    let now = now_ms();
    let ttl = s.snapshot_ttl_ms;
    let stale: Vec<&String> = targets
        .iter()
        .filter(|t| cached(t).is_none_or(|(at, _)| now < at || now - at >= ttl))
        .collect();
    if !stale.is_empty() {
        // Concurrent requests of this isolate keep using the old entry while this one refreshes
        // it (only a target never seen is fetched by every request that needs it meanwhile).
        for t in &stale {
            if let Some((_, s)) = cached(t) {
                remember(t, now, s);
            }
        }
        let fetches = stale.iter().map(|t| async move {
            let body = target_body(t);
            let got = call(env, t, "snapshot", &body, Call::Snapshot).await;
            got.ok().and_then(|(text, _)| TargetSnapshot::decode(&text))
        });
        let got = within(CALL_TIMEOUT_MS, join(fetches.collect())).await;
        for (i, t) in stale.iter().enumerate() {
            let fresh = got.as_ref().and_then(|g| g[i]);
            if let Some(snap) = fresh.or(cached(t).map(|(_, s)| s)) {
                remember(t, now, snap);
            }
        }
    }
    let mut snap = Snapshot::new(now);
    for t in targets {
        if let Some((_, s)) = cached(t) {
            snap.insert(t.clone(), s);
        }
    }
    snap
}

/// Ask the target's Durable Object for its half-open probe slot. Returns the token if granted,
/// and the breaker as it is now (remembered as this isolate's snapshot of it, so the isolate
/// does not ask again before the probe's outcome or the next refresh). `None`: unreachable.
pub async fn acquire_probe(env: &Env, target: &str) -> Option<(Option<u32>, TargetSnapshot)> {
    let body = target_body(target);
    let (text, token) = within(
        CALL_TIMEOUT_MS,
        call(env, target, "probe", &body, Call::Probe),
    )
    .await?
    .ok()?;
    let snap = TargetSnapshot::decode(&text)?;
    remember(target, now_ms(), snap);
    Some((token.and_then(|t| t.parse().ok()), snap))
}

/// Add one finished attempt to the isolate's batch.
pub fn record(s: &HealthSettings, o: &Outcome) {
    BATCH.with(|b| {
        let mut b = b.borrow_mut();
        if b.is_empty() {
            // (Re)built while empty, so a changed config's policy applies from the next outcome.
            *b = Batch::new(s.batch);
        }
        b.push(o, now_ms());
    });
}

/// After a response: send the batch if it is due, else make sure one delayed flush will send it
/// when it is (`due_at`), even if no other request comes.
pub fn flush_after(ctx: &Context, env: &Env) {
    let now = now_ms();
    let Some(due) = BATCH.with(|b| b.borrow().due_at()) else {
        return;
    };
    let delayed = due > now;
    if delayed {
        // A delayed flush that has not run 30 s after its time was cut short by the runtime.
        let pending = DELAYED.with(|d| d.get());
        if pending != 0 && now < pending.saturating_add(30_000) {
            return;
        }
        DELAYED.with(|d| d.set(due));
    }
    let env = env.clone();
    crate::platform::after(ctx, Box::pin(async move { flush(&env, delayed).await }));
}

/// After a stream ended: send whatever outcomes are pending once they are due (a streamed
/// attempt's outcome is recorded when its stream ends, after the request's own flush was
/// arranged).
pub async fn flush_pending(env: &Env) {
    flush(env, true).await;
}

/// Send what is due. `delayed`: the isolate's one delayed flush — wait until the batch is due
/// and send it, again and again while outcomes keep arriving, and stand down only when the
/// batch is empty (checked and cleared without a pause between, so no outcome is left behind).
async fn flush(env: &Env, delayed: bool) {
    let started = now_ms();
    loop {
        let now = now_ms();
        let Some(due) = BATCH.with(|b| b.borrow().due_at()) else {
            break;
        };
        if due > now {
            // Beyond its runtime's wait_until allowance a later response takes over.
            if !delayed || now - started > 20_000 {
                break;
            }
            sleep(due - now).await;
            continue;
        }
        let reports = BATCH.with(|b| b.borrow_mut().take());
        send(env, reports).await;
        if !delayed {
            break;
        }
    }
    if delayed {
        DELAYED.with(|d| d.set(0));
    }
}

/// Send one report per target. The answer is the target's fresh snapshot, which refreshes this
/// isolate's cache; a failed send is put back into the batch.
async fn send(env: &Env, reports: Vec<TargetReport>) {
    for r in reports {
        match call(env, &r.target, "report", &report_body(&r), Call::Report).await {
            Ok((text, _)) => {
                if let Some(snap) = TargetSnapshot::decode(&text) {
                    remember(&r.target, now_ms(), snap);
                }
            }
            Err(_) => BATCH.with(|b| b.borrow_mut().restore(vec![r], now_ms())),
        }
    }
}

/// Run futures concurrently, collecting their outputs in order (a plan's few targets: a small
/// routine rather than `join_all`'s general machinery).
async fn join<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in futures.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *o = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// This isolate's Durable Object calls and batch, as JSON (for `GET /admin/circuits`).
pub fn counters_json() -> String {
    let c = CALLS.with(|c| c.get());
    let (pending, dropped) = BATCH.with(|b| {
        let b = b.borrow();
        (b.len(), b.dropped())
    });
    format!(
        "{{\"do_calls\":{},\"snapshot_fetches\":{},\"probe_requests\":{},\"reports\":{},\"cron_calls\":{},\"pending_outcomes\":{pending},\"dropped_outcomes\":{dropped}}}",
        c[0] + c[1] + c[2],
        c[0],
        c[1],
        c[2],
        c[3]
    )
}
