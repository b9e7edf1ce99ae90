//! The request path, written down once and mirrored by [`handle`]:
//!
//! 1. request id — the caller's `x-request-id` if sane, else a fresh one; echoed on every answer
//! 2. dispatch — path and method (`404` unknown path, `405` wrong method)
//! 3. configuration — parsed once per isolate; invalid → `500 config_invalid` naming the field
//! 4. authenticate — the optional shared `GATEWAY_TOKEN` (tenants arrive with the admin API)
//! 5. read the body under the size cap (`413`), parse and validate it (`400` naming the field)
//! 6. route — the public model name to its route (`404 model_not_found`)
//! 7. attempt loop — translate, fetch with deadlines, classify, retry or fail over ([`attempts`])
//! 8. respond — OpenAI shape, streamed or not; `x-switchyard-*` headers say who answered
//! 9. log — one JSON line per request (for streams, when the stream ends)

use switchyard_core::chat::ChatRequest;
use switchyard_core::error::{ErrorKind, GatewayError};
use switchyard_core::logline::{attempts_header, rfc3339, AttemptRecord, LogLine};
use worker::{console_log, Env, Method, Request, Response};

use crate::attempts::{self, Answer};
use crate::http::{error_response, json_bytes, json_value, read_body, sane_request_id};
use crate::platform::{self, hex, now_ms, random_bytes};
use crate::relay;

pub async fn handle(mut req: Request, env: Env) -> Response {
    let started = now_ms();
    let request_id = sane_request_id(req.headers().get("x-request-id").ok().flatten())
        .unwrap_or_else(|| format!("req_{}", hex(&random_bytes::<12>())));
    let path = req.path();
    let method = req.method();
    let mut log = LogLine::new(
        request_id.clone(),
        method.to_string(),
        path.clone(),
        rfc3339(started),
    );

    let result = match (method.clone(), path.as_str()) {
        (Method::Get, "/healthz") => Ok(Handled::Done(json_value(
            200,
            &serde_json::json!({"status": "ok"}),
        ))),
        (Method::Get, "/v1/models") => models(&env, &req),
        (Method::Post, "/v1/chat/completions") => chat(&mut req, &env, started, &mut log).await,
        (_, "/healthz" | "/v1/models") => Err(method_not_allowed("GET")),
        (_, "/v1/chat/completions") => Err(method_not_allowed("POST")),
        _ => Err(GatewayError::new(
            ErrorKind::NotFound,
            format!(
                "Unknown path {:?}; see /v1/chat/completions and /v1/models",
                clip(&path, 200)
            ),
        )),
    };

    let mut resp = match result {
        Ok(Handled::Done(resp)) => resp,
        Ok(Handled::Streaming(resp)) => {
            // The relay prints the log line when the stream ends.
            let _ = resp.headers().set("x-request-id", &request_id);
            return resp;
        }
        Err(err) => {
            log.error_code = Some(err.kind.code());
            let resp = error_response(&err);
            if err.kind == ErrorKind::MethodNotAllowed {
                let allow = if path == "/v1/chat/completions" {
                    "POST"
                } else {
                    "GET"
                };
                let _ = resp.headers().set("allow", allow);
            }
            resp
        }
    };
    let _ = resp.headers_mut().set("x-request-id", &request_id);
    log.status = resp.status_code();
    log.latency_ms = now_ms() - started;
    console_log!("{}", log.to_json());
    resp
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

/// The optional shared token: when the `GATEWAY_TOKEN` secret is set, every API call must carry
/// it as `Authorization: Bearer …` (or `x-api-key`).
fn authenticate(env: &Env, req: &Request) -> Result<(), GatewayError> {
    let Some(expected) = platform::secret(env, "GATEWAY_TOKEN") else {
        return Ok(());
    };
    let headers = req.headers();
    let given = headers
        .get("authorization")
        .ok()
        .flatten()
        .and_then(|v| v.strip_prefix("Bearer ").map(str::to_string))
        .or_else(|| headers.get("x-api-key").ok().flatten());
    match given {
        Some(token) if constant_time_eq(token.trim().as_bytes(), expected.as_bytes()) => Ok(()),
        _ => Err(GatewayError::new(
            ErrorKind::Unauthorized,
            "Missing or invalid API key: send `Authorization: Bearer <token>`",
        )),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn models(env: &Env, req: &Request) -> Result<Handled, GatewayError> {
    let config = platform::config(env)?;
    authenticate(env, req)?;
    let data: Vec<_> = config
        .routes
        .iter()
        .map(|r| serde_json::json!({"id": r.model, "object": "model", "created": 0, "owned_by": "switchyard"}))
        .collect();
    Ok(Handled::Done(json_value(
        200,
        &serde_json::json!({"object": "list", "data": data}),
    )))
}

async fn chat(
    req: &mut Request,
    env: &Env,
    started: u64,
    log: &mut LogLine,
) -> Result<Handled, GatewayError> {
    let config = platform::config(env)?;
    authenticate(env, req)?;
    let body = read_body(req, config.max_body_bytes).await?;
    let chat = ChatRequest::parse(&body)?;
    drop(body);
    log.stream = chat.stream;
    log.route = Some(chat.model.clone());
    let Some(route) = config.route(&chat.model) else {
        return Err(GatewayError::new(
            ErrorKind::ModelNotFound,
            format!(
                "The model {:?} does not exist on this gateway; GET /v1/models lists the models",
                clip(&chat.model, 200)
            ),
        )
        .with_param("model"));
    };

    let mut tried: Vec<AttemptRecord> = Vec::new();
    let outcome = attempts::run(env, &config, route, &chat, started, &mut tried).await;
    log.attempts = tried.len();
    let attempts_value = attempts_header(&tried);
    log.attempt_log = tried;
    let outcome = match outcome {
        Ok(o) => o,
        Err(failed) => {
            log.route = Some(failed.route);
            if let Some(last) = log.attempt_log.last() {
                log.provider = Some(last.provider.clone());
                log.upstream_model = Some(last.model.clone());
            }
            let mut resp = error_response(&failed.error);
            let _ = resp
                .headers_mut()
                .set("x-switchyard-attempts", &attempts_value);
            log.error_code = Some(failed.error.kind.code());
            return Ok(Handled::Done(resp));
        }
    };
    log.route = Some(outcome.route.clone());
    log.provider = Some(outcome.provider.clone());
    log.upstream_model = Some(outcome.target_model.clone());
    log.ttfb_ms = Some(now_ms() - started);

    let resp = match outcome.answer {
        Answer::Complete(answer) => {
            if let Some(u) = &answer.usage {
                log.set_usage(u);
            }
            let answered_model = answer
                .model
                .clone()
                .unwrap_or_else(|| outcome.target_model.clone());
            let resp = json_bytes(200, answer.body);
            set_answer_headers(
                &resp,
                &outcome.route,
                &outcome.provider,
                &answered_model,
                &attempts_value,
            );
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
            let resp = relay::stream_response(
                start,
                outcome.deadlines.idle_ms,
                total_deadline,
                started,
                outcome.provider.clone(),
                std::mem::take(log),
            )
            .map_err(|_| GatewayError::internal("the stream could not be started"))?;
            set_answer_headers(
                &resp,
                &outcome.route,
                &outcome.provider,
                &answered_model,
                &attempts_value,
            );
            Handled::Streaming(resp)
        }
    };
    Ok(resp)
}

fn set_answer_headers(resp: &Response, route: &str, provider: &str, model: &str, attempts: &str) {
    let h = resp.headers();
    let _ = h.set("x-switchyard-route", route);
    let _ = h.set("x-switchyard-provider", provider);
    let _ = h.set("x-switchyard-model", model);
    let _ = h.set("x-switchyard-attempts", attempts);
}
