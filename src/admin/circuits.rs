//! Admin routes: circuit breakers — state and statistics of every target, and operator control.
//!
//! | method and path | what |
//! |---|---|
//! | `GET /admin/circuits` | `{"targets":[TargetView…],"isolate":{…}}`: every configured target, and this isolate's Durable Object call counters |
//! | `GET /admin/circuits/{provider}/{model}` | one target's `TargetView`; a key's own target (a provider with several keys) is `{provider}/{model}%23{SECRET_NAME}` here and below |
//! | `POST /admin/circuits/{provider}/{model}/open` | hold it open: until `{"seconds": N}` from now (then half-open), or until close/reset |
//! | `POST /admin/circuits/{provider}/{model}/close` | hold it closed (failures are counted but never open it) until reset |
//! | `POST /admin/circuits/{provider}/{model}/reset` | a fresh closed breaker |
//!
//! Each operator action is logged by the target's Durable Object (`switchyard.circuit`).

use switchyard_core::config::Config;
use switchyard_core::error::{ErrorKind, GatewayError};
use switchyard_core::routing;
use worker::{Method, Request, Response};

use super::AdminCtx;
use crate::health::{self, Call};
use crate::http::json_bytes;
use crate::platform::{self, now_ms};

/// `None` when the path is not one of this module's.
pub async fn handle(
    admin: &AdminCtx<'_>,
    req: &mut Request,
    method: &Method,
    rest: &str,
) -> Option<Result<Response, GatewayError>> {
    let tail = match rest.strip_prefix("/circuits") {
        Some("") | Some("/") => None,
        Some(t) => Some(t.strip_prefix('/')?),
        None => return None,
    };
    Some(serve(admin, req, method, tail).await)
}

/// `{provider}/{model}[/{action}]` → (target id, action) for a configured target. A model name
/// may itself contain `/`: the known target ids decide.
fn resolve<'a>(ids: &[String], tail: &'a str) -> Option<(String, Option<&'a str>)> {
    if ids.iter().any(|i| i == tail) {
        return Some((tail.to_string(), None));
    }
    let (head, action) = tail.rsplit_once('/')?;
    ids.iter()
        .any(|i| i == head)
        .then(|| (head.to_string(), Some(action)))
}

/// Every health target: `provider/model`, or `provider/model#SECRET_NAME` per key of a provider
/// with several (`routing::health_targets`).
fn target_ids(config: &Config) -> Vec<String> {
    routing::health_targets(config, &config.routes)
        .into_iter()
        .map(|t| t.0)
        .collect()
}

fn unavailable(_: worker::Error) -> GatewayError {
    GatewayError::internal("the target's health object is unavailable")
}

async fn serve(
    admin: &AdminCtx<'_>,
    req: &mut Request,
    method: &Method,
    tail: Option<&str>,
) -> Result<Response, GatewayError> {
    let env = admin.env;
    let config = platform::config(env)?;
    let ids = target_ids(&config);
    let Some(tail) = tail else {
        if *method != Method::Get {
            return Err(not_allowed("GET"));
        }
        let mut body = String::from("{\"targets\":[");
        for (i, id) in ids.iter().enumerate() {
            let (view, _) = health::call(env, id, "view", &health::target_body(id), Call::Admin)
                .await
                .map_err(unavailable)?;
            if i > 0 {
                body.push(',');
            }
            body.push_str(&view);
        }
        body.push_str("],\"isolate\":");
        body.push_str(&health::counters_json());
        body.push('}');
        return Ok(json_bytes(200, body.into_bytes()));
    };
    // A key's target is `provider/model#KEY`: `#` arrives percent-encoded (`%23`).
    let tail = tail.replace("%23", "#");
    let Some((id, action)) = resolve(&ids, &tail) else {
        return Err(GatewayError::new(
            ErrorKind::NotFound,
            format!("No configured target {tail:?}; GET /admin/circuits lists them"),
        ));
    };
    let op = match (action, method) {
        (None, Method::Get) => "view",
        (None, _) => return Err(not_allowed("GET")),
        (Some(a @ ("open" | "close" | "reset")), Method::Post) => a,
        (Some("open" | "close" | "reset"), _) => return Err(not_allowed("POST")),
        (Some(_), _) => {
            return Err(GatewayError::new(
                ErrorKind::NotFound,
                "Unknown circuit action; use open, close or reset",
            ))
        }
    };
    let mut body = health::target_body(&id);
    if op == "open" {
        let text = req.text().await.unwrap_or_default();
        if !text.trim().is_empty() {
            let args = serde_json::from_slice::<serde_json::Value>(text.as_bytes()).ok();
            let seconds = match args.as_ref().map(|a| a.get("seconds")) {
                Some(None) => None,
                Some(Some(s)) => Some(s.as_u64().filter(|s| *s <= 86_400 * 30)),
                None => Some(None),
            };
            match seconds {
                None => {}
                Some(Some(s)) => {
                    body = format!(
                        "{{\"target\":{},\"until_ms\":{}}}",
                        switchyard_core::providers::esc(&id),
                        now_ms() + s * 1000
                    );
                }
                Some(None) => {
                    return Err(GatewayError::new(
                        ErrorKind::InvalidRequest,
                        "The body must be JSON like {\"seconds\": 60}: whole seconds up to 2592000 (30 days)",
                    )
                    .with_param("seconds"))
                }
            }
        }
    }
    let (view, _) = health::call(env, &id, op, &body, Call::Admin)
        .await
        .map_err(unavailable)?;
    Ok(json_bytes(200, view.into_bytes()))
}

fn not_allowed(allowed: &str) -> GatewayError {
    GatewayError::new(
        ErrorKind::MethodNotAllowed,
        format!("This path accepts {allowed} only"),
    )
}

#[cfg(test)]
mod tests {
    use super::resolve;

    #[test]
    fn targets_and_actions_resolve_by_the_configured_ids() {
        let ids = vec![
            "oa/gpt-4o".to_string(),
            "or/meta/llama:70b".to_string(),
            "mk/m#KEY_2".to_string(),
        ];
        let cases = [
            ("oa/gpt-4o", Some(("oa/gpt-4o", None))),
            ("oa/gpt-4o/open", Some(("oa/gpt-4o", Some("open")))),
            ("or/meta/llama:70b", Some(("or/meta/llama:70b", None))),
            (
                "or/meta/llama:70b/reset",
                Some(("or/meta/llama:70b", Some("reset"))),
            ),
            (
                "or/meta/llama:70b/bogus",
                Some(("or/meta/llama:70b", Some("bogus"))),
            ),
            ("mk/m#KEY_2/open", Some(("mk/m#KEY_2", Some("open")))),
            ("mk/m", None),
            ("oa/gpt-5", None),
            ("oa", None),
        ];
        for (tail, want) in cases {
            let got = resolve(&ids, tail);
            let got = got.as_ref().map(|(t, a)| (t.as_str(), *a));
            assert_eq!(got, want, "{tail}");
        }
    }
}
