//! Tenants at the edge: who is calling, what they may do, admission against budgets and rate
//! limits before the attempt loop, and settlement (ledger row, gate, alerts) after the answer.

pub mod gate;
pub mod records;

use std::cell::RefCell;
use std::rc::Rc;
use switchyard_core::vecmap::VecMap;

use switchyard_core::error::{ErrorKind, GatewayError};
use switchyard_core::ledger::{self, LedgerRow};
use switchyard_core::logline::rfc3339;
use switchyard_core::tenancy::codec::failure_line;
use switchyard_core::tenancy::{
    far_from_cap, format_usd, peek_end_user_token, tenant_signing_key, token_hash,
    verify_end_user_token, AdmitRequest, AdmitResponse, EndUserClaims, EndUserTokenError, Refusal,
    SettleRequest, SpendView, END_USER_PREFIX, VIEW_TTL_MS,
};
use switchyard_core::usage::Usage;
use worker::wasm_bindgen::JsValue;
use worker::{console_error, console_log, Env, Headers};

use crate::platform::{now_ms, secret};
pub use records::TenantRecord;

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant: Rc<TenantRecord>,
    /// Present when the caller used a short-lived end-user token.
    pub end_user: Option<EndUserClaims>,
}

impl Caller {
    pub fn user(&self) -> Option<&str> {
        self.end_user.as_ref().map(|c| c.u.as_str())
    }
}

fn unauthorized(message: &str) -> GatewayError {
    GatewayError::new(ErrorKind::Unauthorized, message)
}

/// The token from `Authorization: Bearer …` (OpenAI SDKs), `x-api-key` (Anthropic SDK) or
/// `x-goog-api-key` (Gemini SDK).
pub fn presented_token(headers: &Headers) -> Option<String> {
    let bearer = headers.get("authorization").ok().flatten().and_then(|v| {
        let v = v.trim();
        v.strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .map(|t| t.trim().to_string())
    });
    let header = |name: &str| {
        headers
            .get(name)
            .ok()
            .flatten()
            .map(|v| v.trim().to_string())
    };
    bearer
        .or_else(|| header("x-api-key"))
        .or_else(|| header("x-goog-api-key"))
        .filter(|t| !t.is_empty() && t.len() <= 4096)
}

/// Step 4 of the request path: a tenant token or an end-user token → the caller (401/403).
pub async fn authenticate(env: &Env, headers: &Headers) -> Result<Caller, GatewayError> {
    let Some(token) = presented_token(headers) else {
        return Err(unauthorized(
            "Missing API key: send `Authorization: Bearer <token>` (or `x-api-key`, `x-goog-api-key`)",
        ));
    };
    let caller = if token.starts_with(END_USER_PREFIX) {
        let claims =
            peek_end_user_token(&token).map_err(|_| unauthorized("Malformed end-user token"))?;
        let tenant = records::by_id(env, &claims.t)
            .await?
            .ok_or_else(|| unauthorized("Invalid end-user token"))?;
        let master = secret(env, "SIGNING_SECRET")
            .ok_or_else(|| unauthorized("End-user tokens are not enabled on this gateway"))?;
        let key = tenant_signing_key(master.as_bytes(), &tenant.id, tenant.signing_key_version);
        let claims = verify_end_user_token(&token, &key, now_ms() / 1000).map_err(|e| match e {
            EndUserTokenError::Expired => unauthorized("The end-user token has expired"),
            _ => unauthorized("Invalid end-user token"),
        })?;
        Caller {
            tenant,
            end_user: Some(claims),
        }
    } else {
        let tenant = records::by_token_hash(env, &token_hash(&token))
            .await?
            .ok_or_else(|| unauthorized("Invalid or revoked API key"))?;
        Caller {
            tenant,
            end_user: None,
        }
    };
    if !caller.tenant.active {
        return Err(GatewayError::new(
            ErrorKind::TenantDisabled,
            "This tenant is disabled",
        ));
    }
    Ok(caller)
}

/// Whether the caller may use this public model (the tenant's list, narrowed by the token's).
pub fn check_model(caller: &Caller, model: &str) -> Result<(), GatewayError> {
    let tenant_ok = caller
        .tenant
        .allowed_models
        .as_ref()
        .is_none_or(|m| m.iter().any(|x| x == model));
    let user_ok = caller
        .end_user
        .as_ref()
        .and_then(|c| c.m.as_ref())
        .is_none_or(|m| m.iter().any(|x| x == model));
    if tenant_ok && user_ok {
        Ok(())
    } else {
        Err(GatewayError::new(
            ErrorKind::ModelNotAllowed,
            format!("This API key may not use the model {model:?}"),
        )
        .with_param("model"))
    }
}

/// Browsers: the `Origin` must be one the tenant (and the end-user token) allows.
pub fn check_origin(caller: &Caller, origin: Option<&str>) -> Result<(), GatewayError> {
    let Some(origin) = origin else { return Ok(()) };
    let tenant_ok = caller.tenant.allowed_origins.iter().any(|o| o == origin);
    let user_ok = caller
        .end_user
        .as_ref()
        .and_then(|c| c.o.as_ref())
        .is_none_or(|o| o.iter().any(|x| x == origin));
    if tenant_ok && user_ok {
        Ok(())
    } else {
        Err(GatewayError::new(
            ErrorKind::OriginNotAllowed,
            "This origin is not allowed for this API key",
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Admission and settlement

struct View {
    spend: Vec<SpendView>,
    at_ms: u64,
    /// Spend settled by this isolate since the view was fetched.
    local_nanos: u64,
}

thread_local! {
    static VIEWS: RefCell<VecMap<String, View>> = RefCell::new(VecMap::new());
}

fn remember_view(tenant: &str, spend: Vec<SpendView>) {
    VIEWS.with(|v| {
        let mut v = v.borrow_mut();
        if v.len() > 4096 {
            v.clear();
        }
        v.insert(
            tenant.to_string(),
            View {
                spend,
                at_ms: now_ms(),
                local_nanos: 0,
            },
        );
    });
}

/// Whether this isolate's cached view of the tenant's spend is fresh and far from every cap.
fn far_path_ok(tenant: &str, worst_case: u64, now: u64) -> bool {
    VIEWS.with(|v| {
        let v = v.borrow();
        let Some(view) = v.get(tenant) else {
            return false;
        };
        if now.saturating_sub(view.at_ms) >= VIEW_TTL_MS {
            return false;
        }
        let spend: Vec<SpendView> = view
            .spend
            .iter()
            .map(|s| SpendView {
                spent_nanos: s.spent_nanos + view.local_nanos,
                ..s.clone()
            })
            .collect();
        far_from_cap(&spend, worst_case)
    })
}

/// What admission decided, carried to settlement.
#[derive(Debug, Clone)]
pub struct Admission {
    /// Whether the gate was asked (and holds a reservation to release).
    pub gated: bool,
}

/// Step 3 of the request path: budgets and rate limits. Far from every cap and without rate
/// limits, no round trip; otherwise the tenant's gate reserves the worst-case cost.
pub async fn admit(
    env: &Env,
    caller: &Caller,
    request_id: &str,
    worst_case_nanos: u64,
    hold_ms: u64,
) -> Result<Admission, GatewayError> {
    let limits = &caller.tenant.limits;
    let user = caller.user();
    let user_cap = caller.end_user.as_ref().and_then(|c| c.cap);
    let rate_limited = limits.rpm.is_some()
        || limits.tpm.is_some()
        || (user.is_some() && (limits.user_rpm.is_some() || limits.user_tpm.is_some()));
    if limits.budgets.is_empty() && !rate_limited && user_cap.is_none() {
        return Ok(Admission { gated: false });
    }
    if !rate_limited
        && user_cap.is_none()
        && far_path_ok(&caller.tenant.id, worst_case_nanos, now_ms())
    {
        return Ok(Admission { gated: false });
    }
    let req = AdmitRequest {
        request_id: request_id.to_string(),
        limits: limits.clone(),
        reserve_nanos: worst_case_nanos,
        user: user.map(str::to_string),
        user_cap_nanos: user_cap,
        hold_ms,
    };
    let resp: AdmitResponse = match gate::admit(env, &caller.tenant.id, user, &req).await {
        Ok(r) => r,
        Err(e) => {
            // Availability first: a gate outage admits (and is logged); the ledger stays exact.
            gate_unavailable(&caller.tenant.id, &e);
            return Ok(Admission { gated: false });
        }
    };
    remember_view(&caller.tenant.id, resp.spend.clone());
    if resp.ok {
        return Ok(Admission { gated: true });
    }
    Err(refusal_error(&resp))
}

fn refusal_error(resp: &AdmitResponse) -> GatewayError {
    let retry = resp.retry_after_s;
    match resp.refusal {
        Some(Refusal::BudgetExceeded | Refusal::UserBudgetExceeded) => {
            let who = if resp.refusal == Some(Refusal::UserBudgetExceeded) {
                "This end user's daily"
            } else {
                "The tenant's"
            };
            let period = resp.period.map(|p| p.as_str()).unwrap_or("day");
            let limit = resp
                .spend
                .iter()
                .find(|s| Some(s.period) == resp.period)
                .map(|s| format!(" of ${}", format_usd(s.limit_nanos)))
                .unwrap_or_default();
            let resets = match resp.resets_ms {
                Some(ms) => format!("; it resets at {}", rfc3339(ms)),
                None => "; it does not reset (a total budget)".to_string(),
            };
            GatewayError::new(
                ErrorKind::BudgetExceeded,
                format!("{who} {period} budget{limit} is spent{resets}"),
            )
            .with_retry_after(retry)
        }
        _ => GatewayError::new(
            ErrorKind::RateLimited,
            format!(
                "Rate limit reached ({}); retry after {} s",
                match resp.refusal {
                    Some(Refusal::TokenRateLimited) => "tokens per minute",
                    Some(Refusal::UserRateLimited) => "requests per minute for this end user",
                    Some(Refusal::UserTokenRateLimited) => "tokens per minute for this end user",
                    _ => "requests per minute",
                },
                retry.unwrap_or(1)
            ),
        )
        .with_retry_after(retry.or(Some(1))),
    }
}

/// A gate call failed (unreachable, slow or unreadable): logged, never shown to the caller.
pub(crate) fn gate_unavailable(tenant: &str, e: &worker::Error) {
    console_error!(
        "{}",
        failure_line(
            "switchyard.gate_unavailable",
            "tenant",
            tenant,
            &e.to_string()
        )
    );
}

/// One answered request, for the ledger and the gate.
#[derive(Debug, Clone, Default)]
pub struct Settlement {
    pub request_id: String,
    pub route: String,
    pub provider: String,
    pub model: String,
    pub usage: Usage,
    /// `None`: unpriced.
    pub cost_nanos: Option<u64>,
    pub cache_hit: bool,
    pub latency_ms: u64,
    /// Whether a ledger row is due (an answer was delivered, complete or not).
    pub answered: bool,
}

/// After the response: write the ledger row (idempotent by request id), settle the gate, and
/// deliver any soft alert that became due.
pub async fn settle(env: &Env, caller: &Caller, admission: &Admission, s: Settlement) {
    let now = now_ms();
    // The gate first, then the ledger: a gate loaded for the first time rebuilds its spend from
    // the ledger, which must not already hold this request (it would be counted twice).
    let alerts = settle_gate(env, caller, admission, &s).await;
    if s.answered {
        write_ledger(env, caller, &s, now).await;
    }
    if let Some(token_id) = &caller.tenant.token_id {
        if !caller.tenant.touched.replace(true) {
            records::touch_token(env, token_id, now).await;
        }
    }
    for alert in alerts {
        deliver_alert(&caller.tenant.id, &alert).await;
    }
}

async fn settle_gate(
    env: &Env,
    caller: &Caller,
    admission: &Admission,
    s: &Settlement,
) -> Vec<switchyard_core::tenancy::Alert> {
    let limits = &caller.tenant.limits;
    let cost = s.cost_nanos.unwrap_or(0);
    if limits.is_empty() && caller.end_user.as_ref().and_then(|c| c.cap).is_none() {
        return Vec::new();
    }
    if !admission.gated && cost == 0 && s.usage.total_tokens() == 0 {
        return Vec::new();
    }
    let req = SettleRequest {
        request_id: s.request_id.clone(),
        limits: limits.clone(),
        cost_nanos: cost,
        tokens: s.usage.total_tokens(),
        user: caller.user().map(str::to_string),
    };
    VIEWS.with(|v| {
        if let Some(view) = v.borrow_mut().get_mut(&caller.tenant.id) {
            view.local_nanos += cost;
        }
    });
    match gate::settle(env, &caller.tenant.id, caller.user(), &req).await {
        Ok(resp) => {
            remember_view(&caller.tenant.id, resp.spend);
            resp.alerts
        }
        Err(e) => {
            gate_unavailable(&caller.tenant.id, &e);
            Vec::new()
        }
    }
}

/// The ledger row of an answered request, batched with the isolate's other pending rows
/// (`switchyard_core::ledger`). No task waits for another: each writes what is pending after
/// its window unless another task's write took its row; a failed write is retried once, then
/// its rows are logged as lost.
async fn write_ledger(env: &Env, caller: &Caller, s: &Settlement, now: u64) {
    let seq = LEDGER.with(|b| {
        b.borrow_mut().push(LedgerRow {
            request_id: s.request_id.clone(),
            tenant_id: caller.tenant.id.clone(),
            end_user: caller.user().unwrap_or("").to_string(),
            route: s.route.clone(),
            provider: s.provider.clone(),
            model: s.model.clone(),
            usage: s.usage,
            cost_nanos: s.cost_nanos,
            cache_hit: s.cache_hit,
            latency_ms: s.latency_ms,
            ts_ms: now,
        })
    });
    // Other answers' rows join during the window; then whatever is pending goes in one write,
    // unless another task's write already took this row.
    crate::upstream::sleep(LEDGER_WINDOW_MS).await;
    while LEDGER.with(|b| b.borrow().is_pending(seq)) {
        let rows = LEDGER.with(|b| b.borrow_mut().take(ledger::MAX_BATCH));
        let mut held = PutBack(Some(rows));
        let rows = held.0.as_deref().unwrap_or_default();
        let json = JsValue::from_str(&ledger::encode(rows));
        let mut error = String::new();
        for _ in 0..2 {
            let result = match env.d1("DB") {
                Ok(db) => match db
                    .prepare(ledger::INSERT_SQL)
                    .bind(std::slice::from_ref(&json))
                {
                    Ok(stmt) => stmt.run().await.map(|_| ()),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => break,
                Err(e) => error = e.to_string(),
            }
        }
        if !error.is_empty() {
            for r in rows {
                console_error!(
                    "{}",
                    failure_line(
                        "switchyard.ledger_write_failed",
                        "request_id",
                        &r.request_id,
                        &error
                    )
                );
            }
        }
        held.0 = None;
    }
}

thread_local! {
    static LEDGER: RefCell<ledger::Buffer> = RefCell::new(ledger::Buffer::default());
}

/// How long an answer's task waits for other answers' rows before it writes (the
/// after-response task's time, not the caller's).
const LEDGER_WINDOW_MS: u64 = 50;

/// The rows of a write under way: if the task is cancelled (dropped) before the write ended,
/// they are pending again for the next write (a row written twice is ignored by request id).
struct PutBack(Option<Vec<LedgerRow>>);

impl Drop for PutBack {
    fn drop(&mut self) {
        if let Some(rows) = self.0.take() {
            LEDGER.with(|b| b.borrow_mut().put_back(rows));
        }
    }
}

async fn deliver_alert(tenant: &str, alert: &switchyard_core::tenancy::Alert) {
    let mut status = None;
    if let Some(url) = alert.webhook_url.as_deref() {
        let payload = JsValue::from_str(&alert.webhook_body(tenant));
        if let Ok(req) =
            crate::upstream::post(url, &[("content-type", "application/json")], &payload)
        {
            let send = worker::Fetch::Request(req);
            status = match crate::upstream::within(5_000, send.send()).await {
                Some(Ok(resp)) => Some(resp.status_code()),
                _ => Some(0),
            };
        }
    }
    console_log!("{}", alert.log_line(tenant, status));
}
