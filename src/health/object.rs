//! `TargetHealthObject`: one Durable Object per target (`id_from_name(target id)`), owning its
//! circuit breaker and health statistics (`switchyard_core::health::TargetHealth`). This object
//! loads, calls the core and stores; every decision is the core's.
//!
//! Storage: SQLite-backed (wrangler.toml migration `v2`), one key `h` holding the
//! `TargetHealth` as a string (`TargetHealth::encode`, a versioned list of integers), so
//! breaker state, counts and latency statistics survive restarts and evictions. Parameters come
//! from the config's `health` block on every call.
//!
//! Every request is a POST of JSON naming the `target`:
//!
//! | path | does | answers |
//! |---|---|---|
//! | `/snapshot` | — | `TargetSnapshot::encode` |
//! | `/report` (`o`: `TargetReport::encode_entries`) | `TargetHealth::apply` | `TargetSnapshot::encode` |
//! | `/probe` | `Breaker::try_acquire_probe` | `TargetSnapshot::encode`, and `x-probe-token` when granted |
//! | `/cron_probe` | the same, else an idle probe when `TargetHealth::idle_probe_due` | the same; an idle probe's token is `i<epoch>` |
//! | `/view` | — | `TargetView::to_json` |
//! | `/open` (`until_ms` optional), `/close`, `/reset` | the operator's `force_open`, `force_close`, `reset` | `TargetView::to_json` |
//!
//! Each state change (time-driven ones included, seen on the next call) is logged as its own
//! line: `{"msg":"switchyard.circuit","target":…,"from":…,"to":…,"cause":…,…}`.

use std::cell::RefCell;

use switchyard_core::health::{
    HealthConfig, State as BreakerState, TargetHealth, TargetReport, IDLE_PROBE_MS,
};
use switchyard_core::logline::rfc3339;
use worker::{console_log, durable_object, DurableObject, Env, Request, Response, Result, State};

use crate::platform::{self, now_ms, random_unit};

const KEY: &str = "h";

#[durable_object(fetch)]
pub struct TargetHealthObject {
    state: State,
    env: Env,
    health: RefCell<Option<TargetHealth>>,
}

impl DurableObject for TargetHealthObject {
    fn new(state: State, env: Env) -> Self {
        TargetHealthObject {
            state,
            env,
            health: RefCell::new(None),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let path = req.path();
        let op = path.trim_start_matches('/');
        let text = req.text().await?;
        let args: serde_json::Value = serde_json::from_slice(text.as_bytes())?;
        let target = args
            .get("target")
            .and_then(|t| t.as_str())
            .unwrap_or_default()
            .to_string();
        let report = match op {
            "report" => {
                let entries = args.get("o").and_then(|o| o.as_str()).unwrap_or_default();
                match TargetReport::decode(&target, entries) {
                    Some(r) => Some(r),
                    None => return Response::error("malformed report", 400),
                }
            }
            _ => None,
        };
        let (cfg, idle_probe_ms) = match crate::platform::config(&self.env) {
            Ok(c) => {
                let s = crate::health::settings(&c);
                (s.health, s.idle_probe_ms)
            }
            Err(_) => (HealthConfig::default(), IDLE_PROBE_MS),
        };
        self.load().await?;
        let now = now_ms();
        let mut token = None;
        let (body, dirty) = {
            let mut slot = self.health.borrow_mut();
            let h = slot.get_or_insert_with(TargetHealth::default);
            let epoch = h.breaker.epoch();
            let from = h.breaker.stored_state();
            h.breaker.tick(now);
            log(&target, h, &cfg, from, "cooldown_elapsed", now, false);
            let from = h.breaker.stored_state();
            let view = match op {
                "snapshot" => false,
                "report" => {
                    if let Some(r) = &report {
                        h.apply(&cfg, r, now, random_unit());
                    }
                    let cause = match (from, h.breaker.stored_state()) {
                        (BreakerState::HalfOpen, BreakerState::Closed) => "probe_succeeded",
                        (BreakerState::HalfOpen, _) => "probe_failed",
                        _ => "failures",
                    };
                    log(&target, h, &cfg, from, cause, now, false);
                    false
                }
                "probe" => {
                    token = h
                        .breaker
                        .try_acquire_probe(&cfg.breaker, now)
                        .map(|t| t.to_string());
                    false
                }
                "cron_probe" => {
                    // The half-open slot if due; else an idle probe of a closed, silent target,
                    // reported as ordinary traffic at the current epoch (token `i<epoch>`).
                    token = match h.breaker.try_acquire_probe(&cfg.breaker, now) {
                        Some(t) => Some(t.to_string()),
                        None if h.idle_probe_due(now, idle_probe_ms) => {
                            Some(format!("i{}", h.breaker.epoch()))
                        }
                        None => None,
                    };
                    false
                }
                "view" => true,
                "open" => {
                    let until = args.get("until_ms").and_then(|v| v.as_u64());
                    h.breaker.force_open(until, now);
                    log(&target, h, &cfg, from, "operator_open", now, true);
                    true
                }
                "close" => {
                    h.breaker.force_close(now);
                    log(&target, h, &cfg, from, "operator_close", now, true);
                    true
                }
                "reset" => {
                    h.breaker.reset(now);
                    log(&target, h, &cfg, from, "operator_reset", now, true);
                    true
                }
                _ => return Response::error("unknown operation", 404),
            };
            let body = if view {
                h.view(&cfg, &target, now).to_json()
            } else {
                h.snapshot(&cfg, now).encode()
            };
            let dirty = report.is_some() || h.breaker.epoch() != epoch;
            (body, dirty.then(|| h.encode()))
        };
        if let Some(json) = dirty {
            platform::store_text(&self.state.storage(), KEY, &json).await?;
        }
        let resp = Response::ok(body)?;
        if let Some(t) = token {
            resp.headers().set("x-probe-token", &t)?;
        }
        Ok(resp)
    }
}

impl TargetHealthObject {
    async fn load(&self) -> Result<()> {
        if self.health.borrow().is_some() {
            return Ok(());
        }
        let stored = platform::stored_text(&self.state.storage(), KEY).await?;
        // Unreadable state (a format this build does not know) starts fresh rather than failing
        // every call: state is then late, never wrong.
        let h = stored
            .and_then(|text| TargetHealth::decode(&text))
            .unwrap_or_default();
        let mut slot = self.health.borrow_mut();
        if slot.is_none() {
            *slot = Some(h);
        }
        Ok(())
    }
}

/// Log a state change: when the breaker's state differs from `from`, or `always` (an operator's
/// action is logged even when it leaves the state as it was).
fn log(
    target: &str,
    h: &TargetHealth,
    cfg: &HealthConfig,
    from: BreakerState,
    cause: &str,
    now: u64,
    always: bool,
) {
    let to = h.breaker.stored_state();
    if to == from && !always {
        return;
    }
    let v = h.breaker.view(&cfg.breaker, now);
    let until = match v.cooldown_until_ms {
        Some(u64::MAX) => "\"reset\"".to_string(),
        Some(u) => u.to_string(),
        None => "null".to_string(),
    };
    console_log!(
        "{{\"msg\":\"switchyard.circuit\",\"ts\":\"{}\",\"target\":{},\"from\":\"{}\",\"to\":\"{}\",\"cause\":\"{cause}\",\"epoch\":{},\"opens\":{},\"open_until_ms\":{until}}}",
        rfc3339(now),
        switchyard_core::providers::esc(target),
        from.as_str(),
        to.as_str(),
        v.epoch,
        v.opens,
    );
}
