//! The attempt loop: translate → fetch with deadlines → classify → retry, fail over, or answer.
//!
//! Every decision comes from [`switchyard_core::policy::Planner`]; this module only performs
//! the I/O it asks for. A streamed attempt counts as answered only once its first content token
//! has arrived, so anything that breaks before that fails over invisibly to the caller. The
//! same loop serves every kind of request ([`Work`]): chat, streamed or not, and embeddings.

use switchyard_core::config::{Config, ProviderConfig, RouteConfig, TargetConfig};
use switchyard_core::error::GatewayError;
use switchyard_core::logline::AttemptRecord;
use switchyard_core::policy::{
    AttemptFailure, Deadlines, Decision, FailureClass, Planner, RetryPolicy,
};
use switchyard_core::providers::{self, ChatStream, UpstreamAnswer, Work};
use worker::{ByteStream, Env};

use crate::platform::{mark_key_bad, now_ms, pick_key, random_unit};
use crate::upstream::{self, Abort, InFlight, Next};

/// A stream whose first content token has arrived: safe to start answering the caller.
pub struct StreamStart {
    pub stream: ByteStream,
    pub controller: Abort,
    pub translator: ChatStream,
    /// Bytes ready for the caller (the role chunk and the first content).
    pub buffered: Vec<u8>,
    /// The upstream already ended; `buffered` holds the whole, complete answer.
    pub ended: bool,
}

#[allow(clippy::large_enum_variant)] // built once per request and moved, never stored
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

pub async fn run(
    env: &Env,
    config: &Config,
    first_route: &RouteConfig,
    work: &Work,
    started_ms: u64,
    attempts: &mut Vec<AttemptRecord>,
) -> Result<Outcome, Failed> {
    let mut route = first_route;
    let mut hops = 0;
    'routes: loop {
        let policy = RetryPolicy::resolve(&config.retry, &route.retry);
        let deadlines = Deadlines::resolve(&config.deadlines, &route.deadlines);
        let fail = |error: GatewayError| Failed {
            error,
            route: route.model.clone(),
        };
        let mut planner = Planner::new(
            policy,
            route.targets.len(),
            route.context_fallback.is_some() && hops < MAX_ROUTE_HOPS,
            route.failover_on_content_policy,
        );
        let mut decision = planner.start();
        loop {
            let (index, wait_ms) = match decision {
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

            let target = &route.targets[index];
            let Some(provider) = config.provider(&target.provider) else {
                return Err(fail(GatewayError::internal(
                    "route names an unknown provider",
                )));
            };
            let key = pick_key(env, provider);
            let t0 = now_ms();
            let mut warnings = Vec::new();
            let result = attempt(
                provider,
                key.as_ref(),
                target,
                work,
                &deadlines,
                remaining,
                &mut warnings,
            )
            .await;
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
                    })
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
                            if mark_key_bad(env, provider, name) {
                                if let Some(d) = planner.retry_with_another_key(&provider.id, &f) {
                                    decision = d;
                                    continue;
                                }
                            }
                        }
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

async fn attempt(
    provider: &ProviderConfig,
    key: Option<&(String, String)>,
    target: &TargetConfig,
    work: &Work,
    deadlines: &Deadlines,
    remaining_ms: u64,
    warnings: &mut Vec<String>,
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
    loop {
        let left = deadline.saturating_sub(now_ms());
        let step = if left == 0 {
            Next::TimedOut
        } else {
            upstream::next_chunk(&mut stream, left).await
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
async fn check_status(
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
