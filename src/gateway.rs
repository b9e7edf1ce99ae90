//! The request path, written down once and mirrored by [`handle`] and [`serve`]:
//!
//! 1. request id — the caller's `x-request-id` if sane, else a fresh one; echoed on every answer
//! 2. dispatch — path and method (`404` unknown path, `405` wrong method, CORS preflight)
//! 3. configuration — parsed once per isolate; invalid → `500 config_invalid` naming the field
//! 4. authenticate — tenant token or end-user token (`401`); origin and tenant state (`403`)
//! 5. read the body under the size cap (`413`), parse and validate it (`400` naming the field);
//!    Anthropic Messages and Gemini requests become the canonical OpenAI request here, and
//!    `/v1/embeddings` requests take the same path (never streamed, never cached)
//! 6. route — the public model name to its route (`404 model_not_found`); allowed? (`403`)
//! 7. cache read — the cache headers (`400` naming one), the route's policy → read KV; a fresh
//!    entry answers now (`HIT`; admitted against request-rate limits only, no budget)
//! 8. admit — budgets and rate limits (`429`); far from every cap this is no round trip; then
//!    identical concurrent misses coalesce: one leads, the others wait for its entry (`HIT`)
//! 9. attempt loop — plan the targets' order (strategy, tier, residency, health snapshot), then
//!    translate, fetch with deadlines, classify, retry or fail over ([`attempts`]); if it fails
//!    while a stale entry is held, that entry answers (`STALE`)
//! 10. respond — in the caller's format (OpenAI, Anthropic or Gemini; errors too), streamed or
//!     not; `x-switchyard-*` headers say who answered, cost and cache status; a stream is
//!     accumulated for the cache as it is sent
//! 11. after the response (`ctx.wait_until`) — cache write (and wake the coalesced followers);
//!     gate settlement, ledger row (batched with the isolate's other answers' rows into one D1
//!     statement), alerts; outcomes to the targets'
//!     circuit breakers when due;
//!     and one JSON log line per request (for streams, when the stream ends)

use std::rc::Rc;

use futures_channel::oneshot;
use switchyard_core::cache::{self, CacheHeaders, CacheStatus, Entry, Lookup, StreamAccumulator};
use switchyard_core::config::{Config, ModelConfig, RouteConfig};
use switchyard_core::error::{ErrorKind, GatewayError};
use switchyard_core::ingress::Format;
use switchyard_core::json::JsonWriter;
use switchyard_core::logline::{attempts_header, rfc3339, AttemptRecord, LogLine};
use switchyard_core::providers::Work;
use switchyard_core::tenancy::{cost_nanos, format_usd, worst_case_nanos};
use switchyard_core::usage::Usage;
use worker::{console_log, Context, Env, Headers, Method, Request, Response};

use crate::attempts::{self, Answer};
use crate::cache::{self as kv_cache, Flight, Writer};
use crate::http::{error_response, json_bytes, read_body, sane_request_id};
use crate::platform::{self, hex, now_ms, random_bytes};
use crate::relay::{self, StreamEnd};
use crate::tenants::{self, records, Admission, Caller, Settlement};

/// Completion tokens assumed for the worst case when a request sets no `max_tokens`.
pub const DEFAULT_MAX_OUTPUT_TOKENS: u64 = 4096;

const API_PATHS: &[(&str, &str)] = &[
    ("/v1/chat/completions", "POST"),
    ("/v1/messages", "POST"),
    ("/v1/embeddings", "POST"),
    ("/v1/models", "GET"),
    ("/healthz", "GET"),
];

pub async fn handle(mut req: Request, env: Env, ctx: Context) -> Response {
    let started = now_ms();
    let request_id = sane_request_id(req.headers().get("x-request-id").ok().flatten())
        .unwrap_or_else(|| format!("req_{}", hex(&random_bytes::<12>())));
    let path = req.path();
    let method = req.method();
    let origin = req.headers().get("origin").ok().flatten();
    // Anthropic and Gemini callers get answers and errors in their own format.
    let format = Format::of_path(&path);
    let mut log = LogLine::new(
        request_id.clone(),
        method.to_string(),
        path.clone(),
        rfc3339(started),
    );

    let allowed_method = API_PATHS.iter().find(|(p, _)| *p == path).map(|(_, m)| *m);
    let result = match (method.clone(), path.as_str()) {
        (Method::Get, "/healthz") => Ok(Handled::Done(json_bytes(
            200,
            br#"{"status":"ok"}"#.to_vec(),
        ))),
        (Method::Options, p) if is_api(p) => preflight(&env, req.headers()).await,
        (Method::Get, "/v1/models") => models(&env, &req).await,
        (Method::Post, "/v1/chat/completions" | "/v1/messages" | "/v1/embeddings") => {
            serve(&mut req, &env, &ctx, started, &request_id, &mut log, format).await
        }
        (Method::Post, _) if format == Format::Gemini => {
            serve(&mut req, &env, &ctx, started, &request_id, &mut log, format).await
        }
        (m, p) if p.starts_with("/admin/") => {
            // Behind a trait object: the admin routes' state machine stays out of this one's.
            let admin: std::pin::Pin<Box<dyn std::future::Future<Output = _> + '_>> =
                Box::pin(crate::admin::handle(&mut req, &env, &ctx, m, p));
            admin.await.map(Handled::Done)
        }
        _ => match allowed_method {
            Some(m) => Err(method_not_allowed(m)),
            None => Err(GatewayError::new(
                ErrorKind::NotFound,
                format!(
                    "Unknown path {:?}; see /v1/chat/completions and /v1/models",
                    clip(&path, 200)
                ),
            )),
        },
    };

    let (mut resp, streaming) = match result {
        Ok(Handled::Done(resp)) => (resp, false),
        Ok(Handled::Streaming(resp)) => (resp, true),
        Err(err) => {
            log.error_code = Some(err.kind.code());
            let resp = error_response(format, &err);
            if let (ErrorKind::MethodNotAllowed, Some(m)) = (err.kind, allowed_method) {
                let _ = resp.headers().set("allow", m);
            }
            (resp, false)
        }
    };
    let _ = resp.headers_mut().set("x-request-id", &request_id);
    if let Some(origin) = origin.as_deref() {
        if is_api(&path) && records::origin_known(&env, origin).await.unwrap_or(false) {
            cors_headers(resp.headers(), origin);
        }
    }
    if streaming {
        // The relay prints the log line when the stream ends.
        return resp;
    }
    log.status = resp.status_code();
    log.latency_ms = now_ms() - started;
    console_log!("{}", log.to_json());
    resp
}

/// The API paths browsers may call (CORS).
fn is_api(path: &str) -> bool {
    path.starts_with("/v1/") || path.starts_with("/v1beta/")
}

enum Handled {
    Done(Response),
    /// A stream is under way; its log line is printed by the relay.
    Streaming(Response),
}

fn clip(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn method_not_allowed(allowed: &str) -> GatewayError {
    GatewayError::new(
        ErrorKind::MethodNotAllowed,
        format!("This path accepts {allowed} only"),
    )
}

const EXPOSED: &str =
    "x-request-id, x-switchyard-route, x-switchyard-provider, x-switchyard-model, \
     x-switchyard-attempts, x-switchyard-cost-usd, x-switchyard-warnings, x-switchyard-cache, age, \
     retry-after";

fn cors_headers(h: &Headers, origin: &str) {
    let _ = h.set("access-control-allow-origin", origin);
    let _ = h.set("access-control-expose-headers", EXPOSED);
    let _ = h.append("vary", "Origin");
}

/// CORS preflight: answered for origins some active tenant allows; others get 403.
async fn preflight(env: &Env, headers: &Headers) -> Result<Handled, GatewayError> {
    let Some(origin) = headers.get("origin").ok().flatten() else {
        return Ok(Handled::Done(Response::builder().with_status(204).empty()));
    };
    if !records::origin_known(env, &origin).await? {
        return Err(GatewayError::new(
            ErrorKind::OriginNotAllowed,
            "This origin is not allowed to call this gateway",
        ));
    }
    let resp = Response::builder().with_status(204).empty();
    let h = resp.headers();
    cors_headers(h, &origin);
    let _ = h.set("access-control-allow-methods", "GET, POST, OPTIONS");
    let requested = headers
        .get("access-control-request-headers")
        .ok()
        .flatten()
        .unwrap_or_default();
    let allow = if requested.is_empty() {
        "authorization, content-type, x-api-key, x-goog-api-key, anthropic-version, x-request-id"
            .to_string()
    } else {
        requested
    };
    let _ = h.set("access-control-allow-headers", &allow);
    let _ = h.set("access-control-max-age", "600");
    Ok(Handled::Done(resp))
}

async fn models(env: &Env, req: &Request) -> Result<Handled, GatewayError> {
    let config = platform::config(env)?;
    let caller = tenants::authenticate(env, req.headers()).await?;
    // Written directly (keys in the order `json!` gave them), not built as values.
    let mut w = JsonWriter::new();
    w.open().key("data").open_list();
    for r in &config.routes {
        if tenants::check_model(&caller, &r.model).is_ok() {
            w.open().key("created").u64(0).key("id").str(&r.model);
            w.key("object")
                .str("model")
                .key("owned_by")
                .str("switchyard");
            w.close();
        }
    }
    w.close_list().key("object").str("list").close();
    Ok(Handled::Done(json_bytes(200, w.finish().into_bytes())))
}

fn prices<'a>(config: &'a Config, provider: &str, model: &str) -> Option<&'a ModelConfig> {
    config.provider(provider)?.models.get(model)
}

/// The most this request can cost on any of the route's targets.
fn worst_case(config: &Config, route: &RouteConfig, work: &Work, body_len: usize) -> u64 {
    let max_tokens = work.max_output_tokens();
    route
        .targets
        .iter()
        .map(|t| {
            worst_case_nanos(
                body_len,
                max_tokens,
                DEFAULT_MAX_OUTPUT_TOKENS,
                prices(config, &t.provider, &t.model),
            )
        })
        .max()
        .unwrap_or(0)
}

/// Steps 3–10 for a chat completion (in any format) or embeddings.
async fn serve(
    req: &mut Request,
    env: &Env,
    ctx: &Context,
    started: u64,
    request_id: &str,
    log: &mut LogLine,
    format: Format,
) -> Result<Handled, GatewayError> {
    let config = platform::config(env)?;
    // Boxed (as `kv_cache::get` and `attempts::run` below): a little less wasm than their state
    // machines inside `serve`'s. (Measured one by one; the other awaits grow it when boxed.)
    let caller = Box::pin(tenants::authenticate(env, req.headers())).await?;
    log.tenant = Some(caller.tenant.id.clone());
    log.end_user = caller.user().map(str::to_string);
    let origin = req.headers().get("origin").ok().flatten();
    tenants::check_origin(&caller, origin.as_deref())?;
    drop(origin);

    let body = read_body(req, config.max_body_bytes).await?;
    // The query by hand: `Request::url` would link a whole URL parser into the worker.
    let url = req.inner().url();
    let query = url.split_once('?').map_or("", |(_, q)| q);
    let (work, ingress_warnings) = format.parse(&req.path(), query, &body)?;
    let body_len = body.len();
    drop(body);
    drop(url);
    log.stream = work.stream().is_some();
    log.route = Some(work.model().to_string());
    let Some(route) = config.route(work.model()) else {
        return Err(GatewayError::new(
            ErrorKind::ModelNotFound,
            format!(
                "The model {:?} does not exist on this gateway; GET /v1/models lists the models",
                clip(work.model(), 200)
            ),
        )
        .with_param("model"));
    };
    tenants::check_model(&caller, &route.model)?;

    // The cache (docs/CACHE.md): decide, then read; a fresh entry answers now.
    let header = |n: &str| req.headers().get(n).ok().flatten();
    let cache_headers = CacheHeaders::parse(
        header("cache-control").as_deref(),
        header(cache::HEADER_TTL).as_deref(),
        header(cache::HEADER_NAMESPACE).as_deref(),
    )?;
    // Chat answers only: embeddings are never cached.
    let decision = match &work {
        Work::Chat(chat) => Some(cache::decide(
            &route.cache,
            &route.model,
            chat,
            &cache_headers,
            &caller.tenant.id,
        )),
        Work::Embeddings(_) => None,
    };
    drop(cache_headers);
    let cache_status = decision.as_ref().map(|d| d.upstream_status());
    log.cache = cache_status.map(|s| s.as_str());
    let deadlines =
        switchyard_core::policy::Deadlines::resolve(&config.deadlines, &route.deadlines);
    let hold_ms = deadlines.total_ms + 60_000;
    let (mut fresh, mut stale) = (None, None);
    if let Some(decision) = decision.as_ref().filter(|d| d.read) {
        let got = Box::pin(kv_cache::get(env, &decision.key)).await;
        match decision.lookup(got.as_deref(), now_ms()) {
            Lookup::Hit(entry) => fresh = Some(entry),
            Lookup::Stale(entry) => stale = Some(entry),
            Lookup::Miss => {}
        }
    }

    // A hit spends nothing: only the request-rate limits apply to it.
    let rates;
    let (admit_as, reserve) = match fresh {
        Some(_) => {
            rates = rate_only(&caller);
            (&rates, 0)
        }
        None => (&caller, worst_case(&config, route, &work, body_len)),
    };
    let admission = tenants::admit(env, admit_as, request_id, reserve, hold_ms).await?;

    // Identical concurrent misses in this isolate: one leads, the others wait for its entry.
    let mut lead = None;
    let coalesce = decision.as_ref().filter(|d| d.read && d.write);
    if let (None, Some(decision)) = (&fresh, coalesce) {
        match kv_cache::join(&decision.key) {
            Flight::Leader(l) => lead = Some(l),
            Flight::Follower(slot) => {
                let mut until = started + deadlines.total_ms;
                if work.stream().is_some() {
                    until = until.min(started + deadlines.first_token_ms);
                }
                fresh = kv_cache::follow(slot, until.saturating_sub(now_ms())).await;
            }
            Flight::Alone => {}
        }
    }
    if let Some(entry) = fresh {
        let hit = Served {
            entry,
            status: CacheStatus::Hit,
            attempts: String::new(),
        };
        return Ok(serve_cached(
            ctx, env, caller, admission, hit, &work, format, started, request_id, log,
        ));
    }
    let writer = decision
        .filter(|d| d.write)
        .map(|decision| Writer { decision, lead });

    let mut tried: Vec<AttemptRecord> = Vec::new();
    let residency = caller.tenant.residency.as_deref();
    let hints = attempts::Hints::new(req, request_id, body_len, residency);
    // Boxed: its state machine stays out of `serve`'s (a little less wasm).
    let outcome = Box::pin(attempts::run(
        env, &config, route, &work, &hints, started, &mut tried,
    ))
    .await;
    // The attempts' outcomes reach the targets' circuit breakers after the response.
    crate::health::flush_after(ctx, env);
    log.attempts = tried.len();
    let attempts_value = attempts_header(&tried);
    log.attempt_log = tried;
    let mut settlement = Settlement {
        request_id: request_id.to_string(),
        route: route.model.clone(),
        ..Default::default()
    };
    let outcome = match outcome {
        Ok(mut o) => {
            o.warnings.extend(ingress_warnings);
            o
        }
        Err(failed) => {
            log.route = Some(failed.route);
            if let Some(last) = log.attempt_log.last() {
                log.provider = Some(last.provider.clone());
                log.upstream_model = Some(last.model.clone());
            }
            log.error_code = Some(failed.error.kind.code());
            if let Some(entry) = stale {
                // Every attempt failed: the entry inside its stale-if-error window answers.
                let served = Served {
                    entry,
                    status: CacheStatus::Stale,
                    attempts: attempts_value,
                };
                return Ok(serve_cached(
                    ctx, env, caller, admission, served, &work, format, started, request_id, log,
                ));
            }
            let mut resp = error_response(format, &failed.error);
            let h = resp.headers_mut();
            let _ = h.set("x-switchyard-attempts", &attempts_value);
            if let Some(status) = cache_status {
                let _ = h.set(cache::HEADER_STATUS, status.as_str());
            }
            // Nothing was answered: release the reservation, write no ledger row.
            settle_later(ctx, env, caller, admission, settlement, None);
            return Ok(Handled::Done(resp));
        }
    };
    log.route = Some(outcome.route.clone());
    log.provider = Some(outcome.provider.clone());
    log.upstream_model = Some(outcome.target_model.clone());
    log.ttfb_ms = Some(now_ms() - started);
    settlement.route = outcome.route.clone();
    settlement.provider = outcome.provider.clone();
    settlement.model = outcome.target_model.clone();
    let model_prices = prices(&config, &outcome.provider, &outcome.target_model).cloned();

    let resp = match outcome.answer {
        Answer::Complete(answer) => {
            let usage = answer.usage.unwrap_or_default();
            log.set_usage(&usage);
            let cost = cost_nanos(&usage, model_prices.as_ref());
            log.cost_usd = cost.map(format_usd);
            let answered_model = answer
                .model
                .clone()
                .unwrap_or_else(|| outcome.target_model.clone());
            let store =
                writer.map(|w| (w, answered_model.clone(), answer.usage, answer.body.clone()));
            let resp = json_bytes(200, format.answer(answer.body, &usage));
            set_answer_headers(
                &resp,
                &outcome.route,
                &outcome.provider,
                &answered_model,
                &attempts_value,
                &outcome.warnings,
                cache_status,
            );
            let _ = resp.headers().set(
                "x-switchyard-cost-usd",
                &cost.map(format_usd).unwrap_or_else(|| "unpriced".into()),
            );
            settlement.usage = usage;
            settlement.cost_nanos = cost;
            settlement.answered = true;
            settlement.latency_ms = now_ms() - started;
            settle_later(ctx, env, caller, admission, settlement, store);
            Handled::Done(resp)
        }
        Answer::Stream(start) => {
            let answered_model = start
                .translator
                .model()
                .map(str::to_string)
                .unwrap_or_else(|| outcome.target_model.clone());
            log.status = 200;
            let total_deadline = started + outcome.deadlines.total_ms;
            let (tx, rx) = oneshot::channel::<StreamEnd>();
            let resp = relay::stream_response(
                start,
                outcome.deadlines.idle_ms,
                total_deadline,
                started,
                outcome.provider.clone(),
                std::mem::take(log),
                tx,
                model_prices,
                writer.as_ref().map(|_| StreamAccumulator::new()),
                format.encoder(),
            )
            .map_err(|_| GatewayError::internal("the stream could not be started"))?;
            set_answer_headers(
                &resp,
                &outcome.route,
                &outcome.provider,
                &answered_model,
                &attempts_value,
                &outcome.warnings,
                cache_status,
            );
            let env = env.clone();
            let id = request_id.to_string();
            platform::after(
                ctx,
                Box::pin(async move {
                    // The relay reports how the stream ended (or the sender is dropped if the
                    // runtime cancels it); either way the reservation is released (and a coalesced
                    // flight released by dropping the writer).
                    if let Ok(mut end) = rx.await {
                        if let (Some(w), Some(completion)) = (writer, end.completion.take()) {
                            let (p, m) = (&settlement.provider, &answered_model);
                            w.store(&env, &id, p, m, end.usage, completion).await;
                        }
                        settlement.usage = end.usage.unwrap_or_default();
                        settlement.cost_nanos = end.cost_nanos;
                        settlement.answered = true;
                        settlement.latency_ms = end.latency_ms;
                    }
                    tenants::settle(&env, &caller, &admission, settlement).await;
                    // The stream's attempt recorded its one outcome when the stream ended.
                    crate::health::flush_pending(&env).await;
                }),
            );
            Handled::Streaming(resp)
        }
    };
    Ok(resp)
}

/// An answer from the cache: a fresh entry (`HIT`, also a coalesced follower's) or, when every
/// attempt failed, one inside its stale-if-error window (`STALE`).
struct Served {
    entry: Entry,
    status: CacheStatus,
    /// `x-switchyard-attempts` (the failed attempts of a `STALE` answer; empty on a hit).
    attempts: String,
}

/// The caller's limits as they apply to a cache hit: request rates only. A hit costs nothing
/// and uses no provider tokens, so budgets, end-user caps and token rates do not apply.
fn rate_only(caller: &Caller) -> Caller {
    let mut tenant = (*caller.tenant).clone();
    tenant.limits.budgets.clear();
    tenant.limits.tpm = None;
    tenant.limits.user_tpm = None;
    let end_user = caller.end_user.clone().map(|mut c| {
        c.cap = None;
        c
    });
    Caller {
        tenant: Rc::new(tenant),
        end_user,
    }
}

/// Answer from a cache entry: the stored completion, or its replay as a stream; the ledger row
/// marks a cache hit at zero cost (and zero provider tokens).
#[allow(clippy::too_many_arguments)]
fn serve_cached(
    ctx: &Context,
    env: &Env,
    caller: Caller,
    admission: Admission,
    served: Served,
    work: &Work,
    format: Format,
    started: u64,
    request_id: &str,
    log: &mut LogLine,
) -> Handled {
    let Served {
        entry,
        status,
        attempts,
    } = served;
    let now = now_ms();
    // Stored in OpenAI's shape; the caller gets its own format.
    let (body, content_type) = match work.stream() {
        Some(include_usage) => (
            format.encoder().encode(entry.replay(include_usage)),
            "text/event-stream; charset=utf-8",
        ),
        None => {
            let u = &entry.usage;
            let usage = Usage {
                prompt_tokens: u.prompt,
                completion_tokens: u.completion,
                cached_tokens: u.cached,
                reasoning_tokens: u.reasoning,
                ..Usage::default()
            };
            (format.answer(entry.body(), &usage), "application/json")
        }
    };
    let resp = json_bytes(200, body);
    let h = resp.headers();
    let _ = h.set("content-type", content_type);
    let _ = h.set(cache::HEADER_AGE, &entry.age_s(now).to_string());
    let _ = h.set("x-switchyard-cost-usd", "0.0");
    set_answer_headers(
        &resp,
        work.model(),
        &entry.provider,
        &entry.model,
        &attempts,
        &[],
        Some(status),
    );
    log.cache = Some(status.as_str());
    log.provider = Some(entry.provider.clone());
    log.upstream_model = Some(entry.model.clone());
    log.cost_usd = Some("0.0".into());
    log.ttfb_ms = Some(now - started);
    let settlement = Settlement {
        request_id: request_id.to_string(),
        route: work.model().to_string(),
        provider: entry.provider,
        model: entry.model,
        cost_nanos: Some(0),
        cache_hit: true,
        latency_ms: now - started,
        answered: true,
        ..Default::default()
    };
    settle_later(ctx, env, caller, admission, settlement, None);
    Handled::Done(resp)
}

/// A plain answer for the cache: its writer, the model that answered, its usage and its body.
type Store = (Writer, String, Option<Usage>, Vec<u8>);

/// After the response: store a plain answer in the cache (waking coalesced followers), then
/// settle. One future type for every non-stream path keeps the wasm small.
fn settle_later(
    ctx: &Context,
    env: &Env,
    caller: Caller,
    admission: Admission,
    s: Settlement,
    store: Option<Store>,
) {
    let env = env.clone();
    platform::after(
        ctx,
        Box::pin(async move {
            if let Some((w, model, usage, body)) = store {
                let completion =
                    serde_json::from_slice(&body).map_err(|_| "the answer is not JSON");
                w.store(&env, &s.request_id, &s.provider, &model, usage, completion)
                    .await;
            }
            tenants::settle(&env, &caller, &admission, s).await
        }),
    );
}

fn set_answer_headers(
    resp: &Response,
    route: &str,
    provider: &str,
    model: &str,
    attempts: &str,
    warnings: &[String],
    cache: Option<CacheStatus>,
) {
    let h = resp.headers();
    if !warnings.is_empty() {
        let _ = h.set("x-switchyard-warnings", &warnings.join("; "));
    }
    if let Some(status) = cache {
        let _ = h.set(cache::HEADER_STATUS, status.as_str());
    }
    let _ = h.set("x-switchyard-route", route);
    let _ = h.set("x-switchyard-provider", provider);
    let _ = h.set("x-switchyard-model", model);
    let _ = h.set("x-switchyard-attempts", attempts);
}
