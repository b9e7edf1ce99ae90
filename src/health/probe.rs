//! Active probes, from the cron (`[triggers] crons = ["* * * * *"]`, every minute).
//!
//! For every health target of every route (one per key of a provider with several, probed with
//! that key; `routing::health_targets`), the target's Durable Object is asked for a probe
//! (`/cron_probe`): the half-open slot when the breaker is half-open (its cooldown over) and no
//! probe is out — the single-probe rule holds across traffic and cron alike — or an *idle* probe
//! when the breaker is closed and nothing was heard from the target for 5 minutes
//! (`IDLE_PROBE_MS`), so an unused fallback's health is known before traffic needs it. A
//! cooling-down or recently heard-from target costs one cheap call and no upstream request. With the slot, the gateway sends
//! the provider's probe (`providers::build_probe`: a `GET` of its model list) and reports its outcome under the probe's token: an answer closes the breaker, a provider-side
//! failure re-opens it with the doubled cooldown. Each probe logs
//! `{"msg":"switchyard.probe","target":…,"outcome":…,"ms":…}`.

use switchyard_core::config::{Config, ProviderConfig};
use switchyard_core::health::{Entry, Outcome, TargetReport, TargetSnapshot};
use switchyard_core::logline::rfc3339;
use switchyard_core::policy::Deadlines;
use switchyard_core::providers::build_probe;
use switchyard_core::routing;
use worker::{console_log, Env};

use super::{call, remember, report_body, target_body, Call};
use crate::attempts::check_status;
use crate::platform::{self, now_ms};
use crate::upstream;

/// The longest a probe waits for its answer (less if the config's `headers_ms` is shorter).
const PROBE_TIMEOUT_MS: u64 = 10_000;

/// Probe every target whose breaker admits a probe now.
pub async fn run(env: &Env) {
    let Ok(config) = platform::config(env) else {
        return;
    };
    // One after the other: most targets answer "no probe due" at once, and the cron has time.
    for (id, p, _, k) in routing::health_targets(&config, &config.routes) {
        // A key's own target is probed with that key (a key that is not set is never used); a
        // provider with one key (or none) with it, if set.
        let key = platform::key(env, p, k.or(Some(0)));
        if k.is_some() && key.is_none() {
            continue;
        }
        probe(env, &config, &id, p, key).await;
    }
}

async fn probe(
    env: &Env,
    config: &Config,
    target: &str,
    p: &ProviderConfig,
    key: Option<(String, String)>,
) {
    let Ok((_, Some(token))) =
        call(env, target, "cron_probe", &target_body(target), Call::Cron).await
    else {
        return;
    };
    // `i<epoch>`: an idle probe of a closed target, reported as ordinary traffic.
    let (idle, token) = match token.strip_prefix('i') {
        Some(epoch) => (true, epoch),
        None => (false, token.as_str()),
    };
    let Ok(token) = token.parse::<u32>() else {
        return;
    };
    let up = build_probe(p, key.as_ref().map(|(_, v)| v.as_str()));
    let timeout = Deadlines::resolve(&config.deadlines, &Default::default())
        .headers_ms
        .min(PROBE_TIMEOUT_MS);
    let started = now_ms();
    let result = match upstream::send(&up, timeout).await {
        Ok(mut inflight) => {
            let ttfb = now_ms() - started;
            let checked = check_status(p.kind.protocol(), &mut inflight, timeout).await;
            inflight.controller.abort();
            checked.map(|()| ttfb)
        }
        Err(f) => Err(f),
    };
    let ended = now_ms();
    let (ttfb_ms, class, retry_after_ms, label) = match &result {
        Ok(ttfb) => (Some(*ttfb), None, None, "ok".to_string()),
        Err(f) => (None, Some(f.class), f.retry_after_ms, f.label()),
    };
    let outcome = Outcome {
        target: target.to_string(),
        started_ms: started,
        ended_ms: ended,
        ttfb_ms,
        class,
        retry_after_ms,
        epoch: token,
        probe: !idle,
    };
    let report = TargetReport {
        target: target.to_string(),
        entries: vec![Entry::from_outcome(&outcome)],
    };
    console_log!(
        "{{\"msg\":\"switchyard.probe\",\"ts\":\"{}\",\"target\":{},\"kind\":\"{}\",\"outcome\":\"{label}\",\"ms\":{}}}",
        rfc3339(ended),
        switchyard_core::providers::esc(target),
        if idle { "idle" } else { "half_open" },
        ended - started
    );
    if let Ok((text, _)) = call(env, target, "report", &report_body(&report), Call::Cron).await {
        if let Some(snap) = TargetSnapshot::decode(&text) {
            remember(target, now_ms(), snap);
        }
    }
}
