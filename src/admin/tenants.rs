//! Admin routes: tenants, their tokens, budgets, usage and spend, end-user tokens and signing
//! keys, and the OpenAPI document of the admin API (`openapi.json` beside this file).
//!
//! The route table and every validation are `switchyard_core::admin`; this module runs
//! parameterised D1 statements (values are always bound, never spliced into SQL) and asks the
//! tenant's gate for live spend. D1 builds the JSON answers itself (`json_object`), so most
//! routes pass one string through. Every change forgets this isolate's cached tenant records at
//! once; other isolates see it within `records::RECORD_TTL_MS`.
//!
//! Written for size (the worker has a wasm budget): one planning step picks the statement, one
//! query runs it, one step shapes the answer; JSON text is assembled, not built as values.

use serde_json::Value;
use switchyard_core::admin::{
    budget_input, end_user_claims, flag, match_route, page, parse_body, period_param,
    period_report, query_param, tenant_change, token_name, usage_query, BudgetInput, Match, Route,
    SqlValue,
};
use switchyard_core::error::{ErrorKind, GatewayError};
use switchyard_core::logline::rfc3339;
use switchyard_core::tenancy::{
    b64url, format_usd, new_token, sign_end_user_token, tenant_signing_key, token_hash,
    valid_tenant_id, visible_prefix, Budget, Limits, Period, SpendView,
};
use switchyard_core::time::{month_start_ms, ymd};
use worker::wasm_bindgen::JsValue;
use worker::{console_error, Env, Method, Request, Response};

use super::AdminCtx;
use crate::http::{error_response, json_bytes, read_body};
use crate::platform::{self, hex, now_ms, random_bytes, secret};
use crate::tenants::{gate, records};

// ---------------------------------------------------------------------------------------------
// SQL pieces (literals, so they join at compile time)

/// Unix ms → `YYYY-MM-DDTHH:MM:SS.mmmZ` (NULL stays NULL).
macro_rules! time_sql {
    ($e:literal) => {
        concat!(
            "strftime('%Y-%m-%dT%H:%M:%fZ', ",
            $e,
            " / 1000.0, 'unixepoch')"
        )
    };
}

/// Nano-USD → an exact decimal string, as `tenancy::format_usd` writes it.
macro_rules! usd_sql {
    ($e:literal) => {
        concat!(
            "CASE WHEN ",
            $e,
            " % 1000000000 = 0 THEN (",
            $e,
            " / 1000000000) || '.0' ",
            "ELSE rtrim(printf('%d.%09d', ",
            $e,
            " / 1000000000, ",
            $e,
            " % 1000000000), '0') END"
        )
    };
}

macro_rules! tenant_json {
    () => {
        concat!(
            "json_object('object', 'tenant', 'id', id, 'name', name, 'status', status, ",
            "'allowed_models', json(allowed_models), 'allowed_origins', json(allowed_origins), ",
            "'rpm_limit', rpm_limit, 'tpm_limit', tpm_limit, 'user_rpm_limit', user_rpm_limit, ",
            "'user_tpm_limit', user_tpm_limit, 'residency', residency, ",
            "'signing_key_version', signing_key_version, ",
            "'created', ",
            time_sql!("created_ms"),
            ", 'updated', ",
            time_sql!("updated_ms"),
            ")"
        )
    };
}

/// Never the token or its hash.
macro_rules! token_json {
    () => {
        concat!(
            "json_object('object', 'token', 'id', id, 'tenant', tenant_id, 'prefix', prefix, ",
            "'name', name, 'created', ",
            time_sql!("created_ms"),
            ", 'last_used', ",
            time_sql!("last_used_ms"),
            ", 'revoked', ",
            time_sql!("revoked_ms"),
            ")"
        )
    };
}

macro_rules! usage_sums {
    () => {
        concat!(
            "'requests', COALESCE(SUM(requests), 0), ",
            "'prompt_tokens', COALESCE(SUM(prompt_tokens), 0), ",
            "'completion_tokens', COALESCE(SUM(completion_tokens), 0), ",
            "'total_tokens', COALESCE(SUM(prompt_tokens + completion_tokens), 0), ",
            "'cached_tokens', COALESCE(SUM(cached_tokens), 0), ",
            "'reasoning_tokens', COALESCE(SUM(reasoning_tokens), 0), ",
            "'cost_usd', ",
            usd_sql!("COALESCE(SUM(cost_nanos), 0)"),
            ", ",
            "'unpriced_requests', COALESCE(SUM(unpriced_requests), 0), ",
            "'cache_hits', COALESCE(SUM(cache_hits), 0)"
        )
    };
}

/// ?4 is the grouping: `day` or `model`.
const USAGE: &str = concat!(
    "SELECT json_object('object', 'usage', 'tenant', id, 'from', ?2, 'to', ?3, 'group_by', ?4, ",
    "'data', json((SELECT json_group_array(json(j)) FROM (SELECT json_object(?4, k, ",
    usage_sums!(),
    ") AS j FROM (SELECT *, IIF(?4 = 'model', model, day) AS k FROM usage_daily ",
    "WHERE tenant_id = ?1 AND day BETWEEN ?2 AND ?3) GROUP BY k ORDER BY k))), ",
    "'totals', json((SELECT json_object(",
    usage_sums!(),
    ") FROM usage_daily WHERE tenant_id = ?1 AND day BETWEEN ?2 AND ?3))) AS j ",
    "FROM tenants WHERE id = ?1"
);

/// Columns in `admin::TENANT_COLUMNS` order from ?3; status defaults to active.
const CREATE_TENANT: &str = concat!(
    "INSERT INTO tenants (id, created_ms, updated_ms, name, status, allowed_models, ",
    "allowed_origins, rpm_limit, tpm_limit, user_rpm_limit, user_tpm_limit, residency) ",
    "VALUES (?1, ?2, ?2, ?3, COALESCE(?4, 'active'), ?5, ?6, ?7, ?8, ?9, ?10, ?11) ",
    "ON CONFLICT (id) DO NOTHING RETURNING ",
    tenant_json!(),
    " AS j"
);

/// Bit i of ?12 set: column i (from ?3) is to change.
const UPDATE_TENANT: &str = concat!(
    "UPDATE tenants SET name = IIF(?12 & 1, ?3, name), status = IIF(?12 & 2, ?4, status), ",
    "allowed_models = IIF(?12 & 4, ?5, allowed_models), ",
    "allowed_origins = IIF(?12 & 8, ?6, allowed_origins), ",
    "rpm_limit = IIF(?12 & 16, ?7, rpm_limit), tpm_limit = IIF(?12 & 32, ?8, tpm_limit), ",
    "user_rpm_limit = IIF(?12 & 64, ?9, user_rpm_limit), ",
    "user_tpm_limit = IIF(?12 & 128, ?10, user_tpm_limit), ",
    "residency = IIF(?12 & 256, ?11, residency), updated_ms = ?2 ",
    "WHERE id = ?1 RETURNING ",
    tenant_json!(),
    " AS j"
);

const GET_TENANT: &str = concat!(
    "SELECT ",
    tenant_json!(),
    " AS j FROM tenants WHERE id = ?1"
);

/// One page and one more row (which tells whether another page follows).
const LIST_TENANTS: &str = concat!(
    "WITH page AS (SELECT id, ", tenant_json!(), " AS j FROM tenants WHERE id > ?1 ",
    "ORDER BY id LIMIT ?2 + 1), shown AS (SELECT id, j FROM page ORDER BY id LIMIT ?2) ",
    "SELECT json_object('object', 'list', ",
    "'data', json((SELECT json_group_array(json(j)) FROM shown)), ",
    "'has_more', json(CASE WHEN (SELECT COUNT(*) FROM page) > ?2 THEN 'true' ELSE 'false' END), ",
    "'next_cursor', CASE WHEN (SELECT COUNT(*) FROM page) > ?2 THEN (SELECT MAX(id) FROM shown) END",
    ") AS j"
);

const CREATE_TOKEN: &str = concat!(
    "INSERT INTO tokens (id, tenant_id, hash, prefix, name, created_ms) ",
    "SELECT ?2, id, ?3, ?4, ?5, ?6 FROM tenants WHERE id = ?1 RETURNING ",
    token_json!(),
    " AS j"
);

const LIST_TOKENS: &str = concat!(
    "SELECT json_object('object', 'list', 'tenant', id, 'data', json((",
    "SELECT json_group_array(json(j)) FROM (SELECT ",
    token_json!(),
    " AS j FROM tokens WHERE tenant_id = ?1 ORDER BY created_ms, id)))) AS j ",
    "FROM tenants WHERE id = ?1"
);

const REVOKE_TOKEN: &str = concat!(
    "UPDATE tokens SET revoked_ms = COALESCE(revoked_ms, ?3) ",
    "WHERE tenant_id = ?1 AND id = ?2 RETURNING ",
    token_json!(),
    " AS j"
);

const PUT_BUDGET: &str = "INSERT INTO budgets (tenant_id, period, limit_nanos, alert_threshold, \
     webhook_url) SELECT id, ?2, CAST(?3 AS INTEGER), ?4, ?5 FROM tenants WHERE id = ?1 \
     ON CONFLICT (tenant_id, period) DO UPDATE SET limit_nanos = excluded.limit_nanos, \
     alert_threshold = excluded.alert_threshold, webhook_url = excluded.webhook_url \
     RETURNING period AS j";

/// No row: there was no budget (or no tenant, which the spend query that follows tells).
const DELETE_BUDGET: &str =
    "DELETE FROM budgets WHERE tenant_id = ?1 AND period = ?2 RETURNING period AS j";

const KEY_VERSION: &str =
    "SELECT CAST(signing_key_version AS TEXT) AS j FROM tenants WHERE id = ?1";
const ROTATE_KEY: &str = "UPDATE tenants SET signing_key_version = signing_key_version + 1, \
     updated_ms = ?2 WHERE id = ?1 RETURNING CAST(signing_key_version AS TEXT) AS j";

/// Budgets (with their answer members pre-rendered), the ledger's totals per period, and
/// whether the tenant has a rate limit.
const SPEND: &str = concat!(
    "SELECT json_object('budgets', json((SELECT json_group_array(json_object('period', period, ",
    "'limit_nanos', limit_nanos, 'extra', ',\"alert_threshold\":' || alert_threshold || ",
    "',\"webhook_url\":' || json_quote(webhook_url))) FROM budgets WHERE tenant_id = ?1)), ",
    "'ledger', json((SELECT json_object(",
    "'day', COALESCE(SUM(CASE WHEN day = ?2 THEN cost_nanos END), 0), ",
    "'month', COALESCE(SUM(CASE WHEN day >= ?3 THEN cost_nanos END), 0), ",
    "'total', COALESCE(SUM(cost_nanos), 0), ",
    "'day_requests', COALESCE(SUM(CASE WHEN day = ?2 THEN requests END), 0), ",
    "'month_requests', COALESCE(SUM(CASE WHEN day >= ?3 THEN requests END), 0), ",
    "'total_requests', COALESCE(SUM(requests), 0)) FROM usage_daily WHERE tenant_id = ?1)), ",
    "'limited', rpm_limit IS NOT NULL OR tpm_limit IS NOT NULL OR user_rpm_limit IS NOT NULL ",
    "OR user_tpm_limit IS NOT NULL) AS j FROM tenants WHERE id = ?1"
);

// ---------------------------------------------------------------------------------------------
// Dispatch

/// The OpenAPI 3.1 document of every admin route (checked against the route table by tests),
/// minified at build time by `build.rs`.
pub const OPENAPI: &str = include_str!(concat!(env!("OUT_DIR"), "/openapi.min.json"));

/// Admin request bodies are small.
const MAX_BODY: u64 = 64 * 1024;

/// `None` when the path is not one of this module's.
pub async fn handle(
    admin: &AdminCtx<'_>,
    req: &mut Request,
    method: &Method,
    rest: &str,
) -> Option<Result<Response, GatewayError>> {
    match match_route(method.as_ref(), rest) {
        Match::NotFound => None,
        Match::WrongMethod(allow) => {
            let resp = error_response(
                switchyard_core::ingress::Format::OpenAi,
                &GatewayError::new(
                    ErrorKind::MethodNotAllowed,
                    format!("This path accepts {allow} only"),
                ),
            );
            let _ = resp.headers().set("allow", &allow);
            Some(Ok(resp))
        }
        Match::Found(route, params) => Some(run(admin.env, req, route, &params).await),
    }
}

/// What to make of the statement's row.
enum Then {
    /// The row is the answer (none: no such tenant); `true` for a change.
    Row(bool),
    /// A create: no row means the id is taken.
    Created,
    /// A new token: the row plus the token, shown this once.
    Token(String),
    /// A revocation: no row means no such token.
    Revoked,
    /// The key version: answer with an end-user token (its request) or the signing key.
    Version(Option<Value>, bool),
}

/// What a request needs: one statement (and what to make of its row), or spend.
enum Plan {
    Query(&'static str, Vec<JsValue>, Then),
    /// Budgets or spend; first set (`PUT`) or delete a budget when asked.
    Spend(Spend, Option<(Period, Option<BudgetInput>)>),
    Done(String),
}

#[derive(Clone, Copy, PartialEq)]
enum Spend {
    All,
    Budgets,
    One(Period),
}

/// Few locals live across the awaits here: validation and statement building are in [`plan`]
/// and [`finish`], which are plain functions (an async body pays code for every exit).
async fn run(
    env: &Env,
    req: &mut Request,
    route: Route,
    params: &[&str],
) -> Result<Response, GatewayError> {
    let id = params.first().copied().unwrap_or("");
    let body = match route {
        Route::CreateTenant
        | Route::UpdateTenant
        | Route::CreateToken
        | Route::PutBudget
        | Route::EndUserToken => read_body(req, MAX_BODY).await?,
        _ => Vec::new(),
    };
    let now = now_ms();
    let (status, out) = match plan(env, route, params, &body, &req.inner().url(), now)? {
        Plan::Done(out) => (200, out),
        Plan::Query(sql, args, then) => {
            let row = one(env, sql, &args).await?;
            finish(env, then, row, params, now)?
        }
        Plan::Spend(mode, change) => (200, spend(env, id, now, mode, change).await?),
    };
    Ok(json_bytes(status, out.into_bytes()))
}

#[inline(never)]
fn plan(
    env: &Env,
    route: Route,
    params: &[&str],
    body: &[u8],
    url: &str,
    now: u64,
) -> Result<Plan, GatewayError> {
    let id = params.first().copied().unwrap_or("");
    let second = params.get(1).copied().unwrap_or("");
    if !id.is_empty() && !valid_tenant_id(id) {
        return Err(no_tenant(id));
    }
    let body = parse_body(body)?;
    let query = |name: &str| query_param(url, name);
    let (sql, args, then) = match route {
        Route::OpenApi => return Ok(Plan::Done(OPENAPI.to_string())),
        Route::GetBudgets => return Ok(Plan::Spend(Spend::Budgets, None)),
        Route::Spend => return Ok(Plan::Spend(Spend::All, None)),
        Route::PutBudget | Route::DeleteBudget => {
            let period = period_param(second)?;
            let put = match route {
                Route::PutBudget => Some(budget_input(&body)?),
                _ => None,
            };
            let mode = if put.is_some() {
                Spend::One(period)
            } else {
                Spend::Budgets
            };
            return Ok(Plan::Spend(mode, Some((period, put))));
        }
        Route::ListTenants => {
            let (limit, cursor) = page(query("limit").as_deref(), query("cursor").as_deref())?;
            (
                LIST_TENANTS,
                vec![s(&cursor), n(limit as u64)],
                Then::Row(false),
            )
        }
        Route::GetTenant => (GET_TENANT, vec![s(id)], Then::Row(false)),
        Route::CreateTenant | Route::UpdateTenant => {
            let creating = route == Route::CreateTenant;
            let change = tenant_change(&body, creating)?;
            let key = change.id.as_deref().unwrap_or(id);
            let mut args = vec![s(key), n(now)];
            let mut mask = 0;
            for (i, v) in change.values.iter().enumerate() {
                args.push(match v {
                    Some(SqlValue::Text(t)) => s(t),
                    Some(SqlValue::Int(i)) => n(*i),
                    _ => JsValue::NULL,
                });
                mask |= (v.is_some() as u64) << i;
            }
            if creating {
                (CREATE_TENANT, args, Then::Created)
            } else {
                args.push(n(mask));
                (UPDATE_TENANT, args, Then::Row(true))
            }
        }
        Route::CreateToken => {
            let name = token_name(&body)?;
            let token = new_token(&random_bytes::<32>());
            let token_id = format!("tok_{}", hex(&random_bytes::<12>()));
            let args = vec![
                s(id),
                s(&token_id),
                s(&token_hash(&token)),
                s(&visible_prefix(&token)),
                s(&name),
                n(now),
            ];
            (CREATE_TOKEN, args, Then::Token(token))
        }
        Route::ListTokens => (LIST_TOKENS, vec![s(id)], Then::Row(false)),
        Route::RevokeToken => (REVOKE_TOKEN, vec![s(id), s(second), n(now)], Then::Revoked),
        Route::Usage => {
            let q = usage_query(
                query("from").as_deref(),
                query("to").as_deref(),
                query("group_by").as_deref(),
                now,
            )?;
            let args = vec![s(id), s(&q.from), s(&q.to), s(q.group_by)];
            (USAGE, args, Then::Row(false))
        }
        Route::EndUserToken | Route::SigningKey => {
            signing_secret(env)?;
            let rotate = route == Route::SigningKey && flag(query("rotate").as_deref(), "rotate")?;
            let (sql, args) = if rotate {
                (ROTATE_KEY, vec![s(id), n(now)])
            } else {
                (KEY_VERSION, vec![s(id)])
            };
            let request = (route == Route::EndUserToken).then_some(body);
            (sql, args, Then::Version(request, rotate))
        }
    };
    Ok(Plan::Query(sql, args, then))
}

/// The answer (status and JSON text) from the statement's row.
#[inline(never)]
fn finish(
    env: &Env,
    then: Then,
    row: Option<String>,
    params: &[&str],
    now: u64,
) -> Result<(u16, String), GatewayError> {
    let id = params.first().copied().unwrap_or("");
    if !matches!(then, Then::Row(false) | Then::Version(_, false)) {
        records::forget_all();
    }
    let Some(row) = row else {
        return Err(match then {
            Then::Created => {
                GatewayError::new(ErrorKind::Conflict, "A tenant with this id already exists")
                    .with_param("id")
            }
            Then::Revoked => GatewayError::new(
                ErrorKind::NotFound,
                format!(
                    "Tenant {id:?} has no token {:?}",
                    clip(params.get(1).copied().unwrap_or(""))
                ),
            ),
            _ => no_tenant(id),
        });
    };
    Ok(match then {
        Then::Row(_) | Then::Revoked => (200, row),
        Then::Created => (201, row),
        Then::Token(token) => {
            // The token is shown here once and stored nowhere; it needs no JSON escaping.
            let row = row.strip_suffix('}').unwrap_or(&row);
            (201, format!("{row},\"token\":\"{token}\"}}"))
        }
        Then::Version(request, rotated) => {
            let version: u32 = row.parse().map_err(|_| unreadable())?;
            let master = signing_secret(env)?;
            let key = tenant_signing_key(master.as_bytes(), id, version);
            match request {
                None => (
                    200,
                    format!(
                        "{{\"object\":\"signing_key\",\"tenant\":\"{id}\",\"key\":\"{}\",\
                         \"version\":{version},\"rotated\":{rotated}}}",
                        b64url(&key)
                    ),
                ),
                Some(body) => {
                    let claims = end_user_claims(&body, id, version, now / 1000)?;
                    (
                        201,
                        format!(
                            "{{\"object\":\"end_user_token\",\"token\":\"{}\",\"expires_at\":\"{}\",\
                             \"tenant\":\"{id}\",\"user\":{},\"key_version\":{version}}}",
                            sign_end_user_token(&key, &claims),
                            rfc3339(claims.exp * 1000),
                            switchyard_core::providers::esc(&claims.u)
                        ),
                    )
                }
            }
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Budgets and spend

/// Every period's spend: the configured budget (if any), the gate's live view (settled +
/// reserved) and the ledger's totals (from its daily aggregates). Answers the spend, the
/// budgets, or one period's budget (after setting it), first setting or deleting a budget when
/// `change` says so.
async fn spend(
    env: &Env,
    id: &str,
    now: u64,
    mode: Spend,
    change: Option<(Period, Option<BudgetInput>)>,
) -> Result<String, GatewayError> {
    let mut deleted = None;
    if let Some((period, put)) = change {
        let args = [s(id), s(period.as_str())];
        let (sql, args) = match &put {
            Some(b) => (PUT_BUDGET, budget_args(args, b)),
            None => (DELETE_BUDGET, args.to_vec()),
        };
        let row = one(env, sql, &args).await?;
        if put.is_some() {
            found(row, id)?;
        } else {
            deleted = Some(row.is_some());
        }
        records::forget_all();
    }
    let args = [s(id), s(&ymd(now)), s(&ymd(month_start_ms(now)))];
    let row = found(one(env, SPEND, &args).await?, id)?;
    let v: Value = serde_json::from_slice(row.as_bytes()).map_err(|_| unreadable())?;
    let budgets = v["budgets"].as_array().map_or(&[][..], |a| a.as_slice());
    let periods = [Period::Day, Period::Month, Period::Total];
    // The gate tracks spend only for tenants with a budget or a rate limit (settlement skips it
    // otherwise); for the others the ledger is the account, and asking would load stale state.
    let view: Option<Vec<SpendView>> = if budgets.is_empty() && v["limited"] != 1 {
        None
    } else {
        // The view's spend does not depend on the limits sent; every period is asked for.
        let limits = Limits {
            budgets: periods
                .iter()
                .map(|p| Budget {
                    period: *p,
                    limit_nanos: 0,
                    alert_threshold: 1.0,
                    webhook_url: None,
                })
                .collect(),
            ..Default::default()
        };
        match gate::view(env, id, &limits).await {
            Ok(v) => Some(v),
            Err(e) => {
                crate::tenants::gate_unavailable(id, &e);
                None
            }
        }
    };
    Ok(spend_answer(id, now, mode, deleted, &v, budgets, view))
}

fn budget_args(args: [JsValue; 2], b: &BudgetInput) -> Vec<JsValue> {
    let [tenant, period] = args;
    let webhook = b.webhook_url.as_deref().map_or(JsValue::NULL, s);
    let limit = s(&b.limit_nanos.to_string());
    vec![tenant, period, limit, b.alert_threshold.into(), webhook]
}

#[inline(never)]
fn spend_answer(
    id: &str,
    now: u64,
    mode: Spend,
    deleted: Option<bool>,
    v: &Value,
    budgets: &[Value],
    view: Option<Vec<SpendView>>,
) -> String {
    let all = mode == Spend::All;
    let mut parts = Vec::new();
    for p in [Period::Day, Period::Month, Period::Total] {
        let b = budgets.iter().find(|b| b["period"] == p.as_str());
        if !all && (b.is_none() || matches!(mode, Spend::One(o) if o != p)) {
            continue;
        }
        let key = p.as_str();
        let ledger = v["ledger"][key].as_u64().unwrap_or(0);
        let live = view.iter().flatten().find(|s| s.period == p);
        // Without the gate, the ledger is the best account of what was spent.
        let spent = live.map_or(ledger, |s| s.spent_nanos);
        let reserved = live.map_or(0, |s| s.reserved_nanos);
        let mut extra = b
            .and_then(|b| b["extra"].as_str())
            .unwrap_or("")
            .to_string();
        if all {
            extra = format!(
                ",\"ledger_usd\":\"{}\",\"requests\":{},\"budget\":{}{extra}",
                format_usd(ledger),
                switchyard_core::json::to_text(&v["ledger"][format!("{key}_requests")]),
                b.is_some()
            );
        }
        let limit = b.and_then(|b| b["limit_nanos"].as_u64());
        parts.push(period_report(p, spent, reserved, limit, now, &extra));
    }
    if let Spend::One(_) = mode {
        return parts.pop().unwrap_or_else(|| "null".into());
    }
    let source = if view.is_some() { "gate" } else { "ledger" };
    let (object, list) = if all {
        ("spend", "periods")
    } else {
        ("list", "data")
    };
    let deleted = deleted.map_or(String::new(), |d| format!("\"deleted\":{d},"));
    format!(
        "{{\"object\":\"{object}\",\"tenant\":\"{id}\",{deleted}\"as_of\":\"{}\",\
         \"spend_source\":\"{source}\",\"{list}\":[{}]}}",
        rfc3339(now),
        parts.join(",")
    )
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn s(v: &str) -> JsValue {
    JsValue::from_str(v)
}

fn n(v: u64) -> JsValue {
    JsValue::from_f64(v as f64)
}

fn clip(s: &str) -> String {
    s.chars().take(80).collect()
}

fn no_tenant(id: &str) -> GatewayError {
    GatewayError::new(ErrorKind::NotFound, format!("No tenant {:?}", clip(id)))
}

fn found(row: Option<String>, id: &str) -> Result<String, GatewayError> {
    row.ok_or_else(|| no_tenant(id))
}

fn unreadable() -> GatewayError {
    GatewayError::internal("a stored record could not be read")
}

fn signing_secret(env: &Env) -> Result<String, GatewayError> {
    secret(env, "SIGNING_SECRET").ok_or_else(|| {
        GatewayError::new(
            ErrorKind::SecretMissing,
            "End-user tokens need the SIGNING_SECRET secret (wrangler secret put SIGNING_SECRET)",
        )
    })
}

fn db_error(e: worker::Error) -> GatewayError {
    console_error!(
        "{{\"msg\":\"switchyard.admin_db_error\",\"error\":{}}}",
        switchyard_core::providers::esc(&e.to_string())
    );
    GatewayError::internal("the tenant database is unavailable")
}

/// The `j` column of the first row, if any. Database errors are logged, not shown.
async fn one(env: &Env, sql: &str, args: &[JsValue]) -> Result<Option<String>, GatewayError> {
    let stmt = env
        .d1("DB")
        .and_then(|db| db.prepare(sql).bind(args))
        .map_err(db_error)?;
    platform::first_text(&stmt, "j").await.map_err(db_error)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use switchyard_core::admin::ROUTES;

    const DOC: &str = include_str!("openapi.json");

    /// The document lists exactly the routes this module serves. Paths of the other admin
    /// modules (`/admin/circuits…`, `/admin/cache…`) are theirs to document and check.
    #[test]
    fn openapi_document_matches_the_route_table() {
        let doc: serde_json::Value = serde_json::from_str(DOC).expect("openapi.json is JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            let ours = path == "/admin/openapi.json" || path.starts_with("/admin/tenants");
            for method in ["get", "post", "put", "patch", "delete"] {
                if item.get(method).is_some() && ours {
                    documented.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        let served: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|(m, p, _)| (m.to_string(), format!("/admin{p}")))
            .collect();
        assert_eq!(documented, served);
        // Every `$ref` resolves.
        fn refs(v: &serde_json::Value, out: &mut Vec<String>) {
            match v {
                serde_json::Value::Object(o) => {
                    if let Some(r) = o.get("$ref").and_then(|r| r.as_str()) {
                        out.push(r.to_string());
                    }
                    o.values().for_each(|x| refs(x, out));
                }
                serde_json::Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
                _ => {}
            }
        }
        let mut all = Vec::new();
        refs(&doc, &mut all);
        for r in all {
            let pointer = r.trim_start_matches('#');
            assert!(doc.pointer(pointer).is_some(), "unresolved {r}");
        }
    }

    /// The served (minified) document is the same document.
    #[test]
    fn served_document_is_the_minified_source() {
        let a: serde_json::Value = serde_json::from_str(DOC).unwrap();
        let b: serde_json::Value = serde_json::from_str(super::OPENAPI).unwrap();
        assert_eq!(a, b);
        assert!(super::OPENAPI.len() < DOC.len() * 3 / 4);
    }
}
