//! The attempt loop: plan → translate → fetch with deadlines → classify → retry, fail over, or
//! answer.
//!
//! The order of targets comes from [`switchyard_core::routing::plan`] (strategy, tier,
//! residency, and health from the isolate's snapshot, `crate::health`); every retry and
//! failover decision from [`switchyard_core::policy::Planner`], whose target `i` is the plan's
//! `order()[i]`. This module only performs the I/O they ask for, and records each attempt's
//! outcome for the circuit breaker of the target and key it used (sent after the response; a
//! stream's when it ends, by the relay). A streamed attempt counts
//! as answered only once its first content token has arrived, so anything that breaks before
//! that fails over invisibly to the caller.
//! The same loop serves every kind of request ([`Work`]): chat, streamed or not, and embeddings.

use switchyard_core::config::{Config, ProviderConfig, RouteConfig, TargetConfig};
use switchyard_core::error::GatewayError;
use switchyard_core::health::{self as core_health, HealthSettings};
use switchyard_core::logline::AttemptRecord;
use switchyard_core::policy::{
    AttemptFailure, Deadlines, Decision, FailureClass, Planner, RetryPolicy,
};
use switchyard_core::providers::{self, ChatStream, UpstreamAnswer, Work};
use switchyard_core::routing::{self, health_id, Admission, Location, RequestFeatures};
use worker::{ByteStream, Env, Request};

use crate::health;
use crate::platform::{self, now_ms, pass_over_key, random_unit, with_keys, BAD_KEY_TTL_MS};
use crate::upstream::{self, Abort, InFlight, Next};

/// What routing needs from the request besides its body: `x-switchyard-tier`, where the caller
/// is (`request.cf`), the tenant's residency tag, the body's size, and the request hash.
#[derive(Debug, Default)]
pub struct Hints {
    pub tier: Option<String>,
    pub continent: Option<String>,
    pub country: Option<String>,
    pub colo: Option<String>,
    pub residency: Option<String>,
    pub body_len: usize,
    /// `routing::stable_hash` of the request id: the weighted draw and the key follow it.
    pub hash: u64,
}

impl Hints {
    pub fn new(req: &Request, request_id: &str, body_len: usize, residency: Option<&str>) -> Self {
        // `request.cf` read field by field: absent offline and in some runtimes.
        let cf = worker::js_sys::Reflect::get(req.inner(), &"cf".into()).ok();
        let field = |name: &str| {
            cf.as_ref()
                .filter(|cf| cf.is_object())
                .and_then(|cf| worker::js_sys::Reflect::get(cf, &name.into()).ok())
                .and_then(|v| v.as_string())
                .filter(|v| !v.is_empty())
        };
        Hints {
            tier: req.headers().get("x-switchyard-tier").ok().flatten(),
            continent: field("continent"),
            country: field("country"),
            colo: field("colo"),
            residency: residency.map(str::to_string),
            body_len,
            hash: routing::stable_hash(request_id.as_bytes()),
        }
    }

    fn features<'a>(&'a self, work: &Work) -> RequestFeatures<'a> {
        let has_tools = match work {
            Work::Chat(req) => req
                .body
                .get("tools")
                .and_then(|t| t.as_array())
                .is_some_and(|t| !t.is_empty()),
            Work::Embeddings(_) => false,
        };
        RequestFeatures {
            prompt_tokens: routing::estimate_prompt_tokens(self.body_len),
            max_output_tokens: work.max_output_tokens(),
            has_tools,
            tier_hint: self.tier.as_deref(),
            location: Location {
                continent: self.continent.as_deref(),
                country: self.country.as_deref(),
                colo: self.colo.as_deref(),
            },
            residency: self.residency.as_deref(),
        }
    }
}

/// A stream whose first content token has arrived: safe to start answering the caller.
pub struct StreamStart {
    pub stream: ByteStream,
    pub controller: Abort,
    pub translator: ChatStream,
    /// Bytes ready for the caller (the role chunk and the first content).
    pub buffered: Vec<u8>,
    /// The upstream already ended; `buffered` holds the whole, complete answer.
    pub ended: bool,
    /// The attempt's outcome, recorded once when the stream ends (`Outcome::stream_ended`): a
    /// success if it completed, the failure that broke it otherwise.
    pub health: Option<(core_health::Outcome, HealthSettings)>,
}

#[allow(clippy::large_enum_variant)] // one per request, moved once
pub enum Answer {
    Complete(UpstreamAnswer),
    Stream(StreamStart),
}

/// Who answered, and everything that was tried on the way.
pub struct Outcome {
    pub answer: Answer,
    pub route: String,
    pub provider: String,
    pub target_model: String,
    pub deadlines: Deadlines,
    /// What the answering target's translation dropped (`x-switchyard-warnings`).
    pub warnings: Vec<String>,
}

pub struct Failed {
    pub error: GatewayError,
    pub route: String,
}

/// How many context-length hops to larger routes one request may take.
const MAX_ROUTE_HOPS: usize = 3;

#[allow(clippy::too_many_arguments)]
pub async fn run(
    env: &Env,
    config: &Config,
    first_route: &RouteConfig,
    work: &Work,
    hints: &Hints,
    started_ms: u64,
    attempts: &mut Vec<AttemptRecord>,
) -> Result<Outcome, Failed> {
    let mut route = first_route;
    let mut hops = 0;
    let health_settings = health::settings(config);
    let features = hints.features(work);
    'routes: loop {
        let policy = RetryPolicy::resolve(&config.retry, &route.retry);
        let deadlines = Deadlines::resolve(&config.deadlines, &route.deadlines);
        let fail = |error: GatewayError| Failed {
            error,
            route: route.model.clone(),
        };
        // Every key of a provider with several has its own breaker (`routing::health_id`).
        let ids: Vec<String> = routing::health_targets(config, std::slice::from_ref(route))
            .into_iter()
            .map(|t| t.0)
            .collect();
        let snapshot = health::snapshot(env, &health_settings, &ids).await;
        let (unit, now) = (random_unit(), now_ms());
        let mut plan = Err(GatewayError::internal("no plan"));
        with_keys(env, &mut |keys| {
            plan = routing::plan(
                config, route, &snapshot, keys, &features, hints.hash, unit, now,
            );
        });
        let mut plan = plan.map_err(fail)?;
        // Positions whose probe question is settled (the Planner walks them in order).
        let mut settled = 0;
        let mut planner = Planner::new(
            policy,
            plan.len(),
            route.context_fallback.is_some() && hops < MAX_ROUTE_HOPS,
            route.failover_on_content_policy,
        );
        let mut decision = planner.start();
        loop {
            let (pos, wait_ms) = match decision {
                Decision::Attempt { target, wait_ms } => (target, wait_ms),
                Decision::ContextFallback => {
                    let next = route
                        .context_fallback
                        .as_deref()
                        .and_then(|name| config.route(name));
                    match next {
                        Some(next) => {
                            route = next;
                            hops += 1;
                            continue 'routes;
                        }
                        None => {
                            return Err(fail(GatewayError::internal(
                                "context fallback route vanished",
                            )))
                        }
                    }
                }
                Decision::Fail(e) => return Err(fail(e)),
            };
            let remaining = deadlines.total_ms.saturating_sub(now_ms() - started_ms);
            if wait_ms >= remaining {
                return Err(fail(planner.out_of_time()));
            }
            upstream::sleep(wait_ms).await;
            let remaining = remaining - wait_ms;

            // A half-open target is tried only with its probe slot: ask its Durable Object the
            // first time the Planner reaches it; refused → it moves among the blocked.
            while settled <= pos && pos < plan.len() {
                let c = plan.candidates[pos];
                if c.admission != Admission::Probe {
                    settled = pos + 1;
                    continue;
                }
                let t = &route.targets[c.index];
                let id = match config.provider(&t.provider) {
                    Some(p) => health_id(p, &t.model, c.key),
                    None => String::new(),
                };
                match health::acquire_probe(env, &id).await {
                    Some((token, snap)) => {
                        if plan.settle_probe(pos, token, &snap).is_some() {
                            settled = pos + 1;
                        }
                    }
                    // Unreachable: try it as an ordinary attempt (its outcome then counts
                    // for the statistics only).
                    None => {
                        plan.candidates[pos].admission = Admission::Healthy;
                        settled = pos + 1;
                    }
                }
            }
            let Some(&candidate) = plan.candidates.get(pos) else {
                return Err(fail(GatewayError::internal("the plan has no such target")));
            };
            let target = &route.targets[candidate.index];
            let Some(provider) = config.provider(&target.provider) else {
                return Err(fail(GatewayError::internal(
                    "route names an unknown provider",
                )));
            };
            // The plan's key, unless this request has since passed it over (401/403, 429).
            let (mut k, mut key_snap) = (None, None);
            with_keys(env, &mut |keys| {
                let (c, s) = routing::choose_key(
                    provider,
                    &target.model,
                    keys,
                    &snapshot,
                    hints.hash,
                    now_ms(),
                );
                (k, key_snap) = (c, s.copied());
            });
            let (epoch, probe) = candidate.stamp(k, key_snap.as_ref());
            let key = platform::key(env, provider, k);
            let t0 = now_ms();
            let mut warnings = Vec::new();
            let mut ttfb = None;
            let mut result = attempt(
                provider,
                key.as_ref(),
                target,
                work,
                &deadlines,
                remaining,
                &mut warnings,
                &mut ttfb,
            )
            .await;
            // Only attempts that reached the provider say something about its health.
            let class = match &result {
                Ok(_) => Some(None),
                Err(AttemptError::Failed(f)) => sent_class(f, ttfb),
                Err(AttemptError::Fatal(_)) => None,
            };
            if let Some(class) = class {
                let o = core_health::Outcome {
                    target: health_id(provider, &target.model, k),
                    started_ms: t0,
                    ended_ms: now_ms(),
                    ttfb_ms: ttfb.map(|t| t - t0),
                    class,
                    retry_after_ms: match &result {
                        Err(AttemptError::Failed(f)) => f.retry_after_ms,
                        _ => None,
                    },
                    epoch,
                    probe,
                };
                match &mut result {
                    // One outcome per attempt: a stream's is recorded when it ends (the relay).
                    Ok(Answer::Stream(start)) => start.health = Some((o, health_settings)),
                    _ => health::record(&health_settings, &o),
                }
            }
            let outcome = match &result {
                Ok(_) => "ok".to_string(),
                Err(f) => f.label(),
            };
            attempts.push(AttemptRecord {
                provider: provider.id.clone(),
                model: target.model.clone(),
                outcome,
                ms: now_ms() - t0,
            });
            match result {
                Ok(answer) => {
                    return Ok(Outcome {
                        answer,
                        route: route.model.clone(),
                        provider: provider.id.clone(),
                        target_model: target.model.clone(),
                        deadlines,
                        warnings,
                    });
                }
                Err(AttemptError::Fatal(e)) => return Err(fail(e)),
                Err(AttemptError::Failed(f)) => {
                    let remaining = deadlines.total_ms.saturating_sub(now_ms() - started_ms);
                    if remaining == 0 {
                        return Err(fail(planner.out_of_time()));
                    }
                    // A key the upstream rejected: the provider's next key, before anything else.
                    if f.class == FailureClass::Auth && f.status.is_some() {
                        if let Some((name, _)) = &key {
                            if pass_over_key(env, provider, name, now_ms() + BAD_KEY_TTL_MS) {
                                if let Some(d) = planner.retry_with_another_key(&provider.id, &f) {
                                    decision = d;
                                    continue;
                                }
                            }
                        }
                    }
                    // A rate-limited key is passed over until its Retry-After: a retry (or the
                    // next request) takes another key of the provider, if it has one.
                    if let (FailureClass::RateLimited, Some(ms), Some((name, _))) =
                        (f.class, f.retry_after_ms, &key)
                    {
                        pass_over_key(env, provider, name, now_ms() + ms);
                    }
                    decision = planner.after_failure(&provider.id, f, remaining, random_unit());
                }
            }
        }
    }
}

enum AttemptError {
    /// The attempt failed; the planner decides what next.
    Failed(AttemptFailure),
    /// The request cannot be sent to this target at all (e.g. a parameter it cannot honour).
    Fatal(GatewayError),
}

impl AttemptError {
    fn label(&self) -> String {
        match self {
            AttemptError::Failed(f) => f.label(),
            AttemptError::Fatal(e) => e.kind.code().to_string(),
        }
    }
}

impl From<AttemptFailure> for AttemptError {
    fn from(f: AttemptFailure) -> Self {
        AttemptError::Failed(f)
    }
}

/// The class to record for a failed attempt that reached the provider, or `None` when nothing
/// was sent (no key configured, a parameter the target cannot honour): those say nothing
/// about the provider.
fn sent_class(f: &AttemptFailure, ttfb: Option<u64>) -> Option<Option<FailureClass>> {
    let nothing_sent = f.status.is_none()
        && ttfb.is_none()
        && matches!(f.class, FailureClass::Auth | FailureClass::Unsupported);
    (!nothing_sent).then_some(Some(f.class))
}

/// One attempt. `ttfb` is set to the time (unix ms) the upstream's response headers arrived.
#[allow(clippy::too_many_arguments)]
async fn attempt(
    provider: &ProviderConfig,
    key: Option<&(String, String)>,
    target: &TargetConfig,
    work: &Work,
    deadlines: &Deadlines,
    remaining_ms: u64,
    warnings: &mut Vec<String>,
    ttfb: &mut Option<u64>,
) -> Result<Answer, AttemptError> {
    let key = key.map(|(_, value)| value.as_str());
    if key.is_none() && !provider.kind.key_optional() {
        return Err(AttemptFailure::new(
            FailureClass::Auth,
            None,
            format!(
                "no API key is configured (set the secret {})",
                provider.api_key_secrets.join(" or ")
            ),
        )
        .into());
    }
    // A target that cannot honour the request is skipped like a failed attempt (nothing is sent).
    let up = work
        .build(provider, &target.model, key)
        .map_err(|e| AttemptFailure::new(FailureClass::Unsupported, None, e.message))?;
    warnings.clone_from(&up.warnings);
    let protocol = provider.kind.protocol();

    let Some(include_usage) = work.stream() else {
        let budget = deadlines.response_ms.min(remaining_ms);
        let t0 = now_ms();
        let mut inflight = upstream::send(&up, budget).await?;
        *ttfb = Some(now_ms());
        let left = budget.saturating_sub(now_ms() - t0).max(1);
        check_status(protocol, &mut inflight, left).await?;
        let body = upstream::read_all(&mut inflight, left, upstream::ANSWER_CAP, false).await?;
        let created = now_ms() / 1000;
        return Ok(Answer::Complete(work.parse_answer(
            protocol,
            body,
            &target.model,
            created,
        )?));
    };

    let mut inflight = upstream::send(&up, deadlines.headers_ms.min(remaining_ms)).await?;
    *ttfb = Some(now_ms());
    check_status(protocol, &mut inflight, remaining_ms).await?;
    let mut controller = inflight.controller;
    let mut stream = inflight
        .response
        .stream()
        .map_err(|_| AttemptFailure::connect("the upstream body could not be read"))?;
    let mut translator = ChatStream::new(protocol, include_usage)
        .map_err(AttemptError::Fatal)?
        .with_created(now_ms() / 1000);
    let mut buffered = Vec::new();
    let first_token_ms = deadlines.first_token_ms.min(remaining_ms);
    let deadline = now_ms() + first_token_ms;
    let mut timer = upstream::IdleTimer::default();
    loop {
        let now = now_ms();
        let left = deadline.saturating_sub(now);
        let step = if left == 0 {
            Next::TimedOut
        } else {
            upstream::next_chunk(&mut stream, &mut timer, now, left).await
        };
        let failure = match step {
            Next::Data(bytes) => match translator.feed(&bytes, &mut buffered) {
                Ok(()) if translator.content_started() => {
                    return Ok(Answer::Stream(StreamStart {
                        stream,
                        controller,
                        translator,
                        buffered,
                        ended: false,
                        health: None,
                    }))
                }
                Ok(()) => continue,
                Err(f) => f,
            },
            Next::End => match translator.finish(&mut buffered) {
                Ok(()) => {
                    return Ok(Answer::Stream(StreamStart {
                        stream,
                        controller,
                        translator,
                        buffered,
                        ended: true,
                        health: None,
                    }))
                }
                Err(f) => f,
            },
            Next::Failed(f) => f,
            Next::TimedOut => AttemptFailure::timeout("first token", first_token_ms),
        };
        controller.abort();
        return Err(failure.into());
    }
}

/// Turn a non-2xx answer into a classified failure (reading a bounded piece of its body).
pub async fn check_status(
    protocol: switchyard_core::config::Protocol,
    inflight: &mut InFlight,
    ms: u64,
) -> Result<(), AttemptFailure> {
    let status = inflight.response.status_code();
    if (200..300).contains(&status) {
        return Ok(());
    }
    let retry_after = inflight
        .response
        .headers()
        .get("retry-after")
        .ok()
        .flatten();
    let body = upstream::read_error_body(inflight, ms).await;
    Err(providers::classify_error(
        protocol,
        status,
        retry_after.as_deref(),
        &body,
        now_ms(),
    ))
}
