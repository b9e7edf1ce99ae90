//! The admin API's decisions, free of platform types: the route table (the one the OpenAPI
//! document is checked against), path matching, and validation of what an operator sends.
//!
//! Every validation error is a 400 naming the field. Strings are data: names and ids are kept
//! exactly as given (quotes, markup, SQL fragments, any Unicode) and only ever bound as query
//! parameters by the edge; only control characters are refused.

use serde_json::{Map, Value};

use crate::error::GatewayError;
use crate::logline::rfc3339;
use crate::tenancy::{format_usd, usd_to_nanos, valid_tenant_id, EndUserClaims, Period};
use crate::time::{civil_from_days, days_from_civil, ymd, DAY_MS};

// ---------------------------------------------------------------------------------------------
// Routes

/// One admin operation (the tenants module's; circuits and cache have their own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    OpenApi,
    CreateTenant,
    ListTenants,
    GetTenant,
    UpdateTenant,
    CreateToken,
    ListTokens,
    RevokeToken,
    GetBudgets,
    PutBudget,
    DeleteBudget,
    Usage,
    Spend,
    EndUserToken,
    SigningKey,
}

/// Every route: (method, path under `/admin`, operation). `{name}` matches one path segment.
/// `src/admin/openapi.json` documents exactly these (a test checks it both ways).
pub const ROUTES: &[(&str, &str, Route)] = &[
    ("GET", "/openapi.json", Route::OpenApi),
    ("POST", "/tenants", Route::CreateTenant),
    ("GET", "/tenants", Route::ListTenants),
    ("GET", "/tenants/{id}", Route::GetTenant),
    ("PATCH", "/tenants/{id}", Route::UpdateTenant),
    ("POST", "/tenants/{id}/tokens", Route::CreateToken),
    ("GET", "/tenants/{id}/tokens", Route::ListTokens),
    (
        "DELETE",
        "/tenants/{id}/tokens/{token_id}",
        Route::RevokeToken,
    ),
    ("GET", "/tenants/{id}/budgets", Route::GetBudgets),
    ("PUT", "/tenants/{id}/budgets/{period}", Route::PutBudget),
    (
        "DELETE",
        "/tenants/{id}/budgets/{period}",
        Route::DeleteBudget,
    ),
    ("GET", "/tenants/{id}/usage", Route::Usage),
    ("GET", "/tenants/{id}/spend", Route::Spend),
    ("POST", "/tenants/{id}/end-user-tokens", Route::EndUserToken),
    ("POST", "/tenants/{id}/signing-key", Route::SigningKey),
];

#[derive(Debug, PartialEq, Eq)]
pub enum Match<'a> {
    /// The operation and the path's `{…}` segments in order.
    Found(Route, Vec<&'a str>),
    /// The path exists, but not for this method: the methods it takes (for `Allow`).
    WrongMethod(String),
    NotFound,
}

fn segments<'a>(pattern: &str, path: &'a str) -> Option<Vec<&'a str>> {
    let mut params = Vec::new();
    let mut want = pattern.split('/');
    let mut got = path.split('/');
    loop {
        match (want.next(), got.next()) {
            (None, None) => return Some(params),
            (Some(w), Some(g)) if w.starts_with('{') && !g.is_empty() => params.push(g),
            (Some(w), Some(g)) if w == g => {}
            _ => return None,
        }
    }
}

/// Match a path under `/admin` (e.g. `/tenants/acme`) against [`ROUTES`].
pub fn match_route<'a>(method: &str, path: &'a str) -> Match<'a> {
    let mut allow: Vec<&str> = Vec::new();
    for (m, pattern, route) in ROUTES {
        if let Some(params) = segments(pattern, path) {
            if *m == method {
                return Match::Found(*route, params);
            }
            allow.push(m);
        }
    }
    if allow.is_empty() {
        Match::NotFound
    } else {
        Match::WrongMethod(crate::join(&allow, ", "))
    }
}

// ---------------------------------------------------------------------------------------------
// Reading what the operator sent

fn bad(field: &str, message: &str) -> GatewayError {
    GatewayError::invalid(format!("`{field}` {message}"), field)
}

/// The body as JSON; an empty body is `{}`.
pub fn parse_body(bytes: &[u8]) -> Result<Value, GatewayError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        GatewayError::invalid(format!("The request body is not valid JSON: {e}"), "body")
    })
}

/// The body as an object whose every key is one of `allowed` (`"a, b, c"`): a typo is an
/// error, not a no-op.
pub fn object<'a>(body: &'a Value, allowed: &str) -> Result<&'a Map<String, Value>, GatewayError> {
    let obj = body
        .as_object()
        .ok_or_else(|| GatewayError::invalid("The request body must be a JSON object", "body"))?;
    for key in obj.keys() {
        if !allowed.split(", ").any(|a| a == key) {
            let shown: String = key.chars().take(64).collect();
            return Err(GatewayError::invalid(
                format!("`{shown}` is not a known field; expected one of: {allowed}"),
                &shown,
            ));
        }
    }
    Ok(obj)
}

fn plain_text(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

/// An optional string of 1–`max` characters without control characters.
fn text(obj: &Map<String, Value>, field: &str, max: usize) -> Result<Option<String>, GatewayError> {
    match obj.get(field) {
        None => Ok(None),
        Some(Value::String(s)) if !s.is_empty() && s.chars().count() <= max && plain_text(s) => {
            Ok(Some(s.clone()))
        }
        Some(_) => Err(bad(
            field,
            &format!("must be a string of 1 to {max} characters without control characters"),
        )),
    }
}

fn required<T>(value: Option<T>, field: &str) -> Result<T, GatewayError> {
    value.ok_or_else(|| bad(field, "is required"))
}

pub fn valid_model_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 200 && plain_text(s)
}

fn authority(rest: &str) -> &str {
    rest.split(['/', '?', '#']).next().unwrap_or("")
}

/// A browser origin: `http(s)://host[:port]`, nothing after it.
pub fn valid_origin(s: &str) -> bool {
    let Some(rest) = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
    else {
        return false;
    };
    s.len() <= 255
        && !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
}

/// Where budget alerts may be sent: `https://…`, or `http://127.0.0.1[:port]/…` for local tests.
pub fn valid_webhook(url: &str) -> bool {
    if url.len() > 2048 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let host = if let Some(rest) = url.strip_prefix("https://") {
        authority(rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        let a = authority(rest);
        if a != "127.0.0.1" && !a.starts_with("127.0.0.1:") {
            return false;
        }
        a
    } else {
        return false;
    };
    !host.is_empty() && !host.contains('@')
}

/// An optional list of strings (`null` clears it): `Some(None)` for null.
fn string_list(
    obj: &Map<String, Value>,
    field: &str,
    ok: Check,
    what: &str,
) -> Result<Option<Option<Vec<String>>>, GatewayError> {
    let value = match obj.get(field) {
        None => return Ok(None),
        Some(Value::Null) => return Ok(Some(None)),
        Some(v) => v,
    };
    let items = value.as_array().filter(|a| a.len() <= 100).ok_or_else(|| {
        bad(
            field,
            &format!("must be null or an array of at most 100 {what}"),
        )
    })?;
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match item.as_str() {
            Some(s) if ok(s) => out.push(s.to_string()),
            _ => return Err(bad(&format!("{field}[{i}]"), &format!("must be {what}"))),
        }
    }
    Ok(Some(Some(out)))
}

const MAX_LIMIT: u64 = 1_000_000_000;

/// An optional positive integer (`null` clears it).
fn limit(obj: &Map<String, Value>, field: &str) -> Result<Option<Option<u64>>, GatewayError> {
    match obj.get(field) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(Some(Some(n))),
            _ => Err(bad(
                field,
                "must be null or an integer from 1 to 1000000000",
            )),
        },
    }
}

/// A value to bind into a parameterised statement.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Text(String),
    Int(u64),
}

/// The tenant columns an operator sets, in the order of [`TenantChange::values`].
pub const TENANT_COLUMNS: [&str; 9] = [
    "name",
    "status",
    "allowed_models",
    "allowed_origins",
    "rpm_limit",
    "tpm_limit",
    "user_rpm_limit",
    "user_tpm_limit",
    "residency",
];

/// A tenant create or update: the id (create only) and a value per column of
/// [`TENANT_COLUMNS`] (`None`: left as it is, or the default on create).
#[derive(Debug, Clone, PartialEq)]
pub struct TenantChange {
    pub id: Option<String>,
    pub values: [Option<SqlValue>; 9],
}

const TENANT_FIELDS: &str = "id, name, status, allowed_models, allowed_origins, rpm_limit, \
     tpm_limit, user_rpm_limit, user_tpm_limit, residency";

type Check = fn(&str) -> bool;

const LISTS: [(&str, Check, &str); 2] = [
    (
        "allowed_models",
        valid_model_name,
        "model names (1 to 200 characters)",
    ),
    (
        "allowed_origins",
        valid_origin,
        "origins like https://app.example.com",
    ),
];

/// Read a tenant create (`creating`: `id` and `name` required) or update (at least one field;
/// `id` cannot change).
pub fn tenant_change(body: &Value, creating: bool) -> Result<TenantChange, GatewayError> {
    let obj = object(body, TENANT_FIELDS)?;
    let id = match obj.get("id") {
        None if creating => return Err(bad("id", "is required")),
        None => None,
        Some(_) if !creating => return Err(bad("id", "cannot be changed")),
        Some(v) => match v.as_str() {
            Some(s) if valid_tenant_id(s) => Some(s.to_string()),
            _ => {
                return Err(bad(
                    "id",
                    "must be 1 to 63 characters of a-z, 0-9, `-` and `_`, starting with a letter or digit",
                ))
            }
        },
    };
    let mut values: [Option<SqlValue>; 9] = Default::default();
    values[0] = text(obj, "name", 200)?.map(SqlValue::Text);
    if creating && values[0].is_none() {
        return Err(bad("name", "is required"));
    }
    values[1] = match obj.get("status").map(|v| v.as_str()) {
        None => None,
        Some(Some(s @ ("active" | "disabled"))) => Some(SqlValue::Text(s.into())),
        Some(_) => return Err(bad("status", "must be \"active\" or \"disabled\"")),
    };
    for (i, (field, ok, what)) in LISTS.into_iter().enumerate() {
        values[2 + i] = string_list(obj, field, ok, what)?.map(|list| {
            list.map_or(SqlValue::Null, |items| {
                SqlValue::Text(crate::json::to_text(&Value::from(items)))
            })
        });
    }
    for (i, field) in TENANT_COLUMNS.iter().enumerate().take(8).skip(4) {
        values[i] = limit(obj, field)?.map(|n| n.map_or(SqlValue::Null, SqlValue::Int));
    }
    // Data residency: a region tag every target this tenant reaches must carry (ROUTING.md).
    values[8] = match obj.get("residency") {
        None => None,
        Some(Value::Null) => Some(SqlValue::Null),
        Some(Value::String(tag)) if crate::routing::parse_region_tag(tag).is_ok() => {
            Some(SqlValue::Text(tag.clone()))
        }
        Some(_) => {
            return Err(bad(
                "residency",
                "must be null or a region tag like \"eu\" or \"country:DE\"",
            ))
        }
    };
    if values.iter().all(Option::is_none) {
        return Err(GatewayError::invalid(
            "Nothing to change: send at least one of name, status, allowed_models, \
             allowed_origins, rpm_limit, tpm_limit, user_rpm_limit, user_tpm_limit, residency",
            "body",
        ));
    }
    Ok(TenantChange { id, values })
}

/// A token's name (optional, defaults to empty).
pub fn token_name(body: &Value) -> Result<String, GatewayError> {
    let obj = object(body, "name")?;
    Ok(text(obj, "name", 200)?.unwrap_or_default())
}

/// USD as a JSON number or an exact decimal string (up to 9 decimals) → nano-USD.
pub fn parse_usd(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => usd_to_nanos(n.as_f64()?),
        Value::String(s) => {
            let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
            let digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
            if whole.is_empty()
                || whole.len() > 9
                || frac.len() > 9
                || !digits(whole)
                || !digits(frac)
            {
                return None;
            }
            let frac: u64 = format!("{frac:0<9}").parse().ok()?;
            Some(whole.parse::<u64>().ok()? * 1_000_000_000 + frac)
        }
        _ => None,
    }
}

/// A budget as PUT: the limit in nano-USD, the alert threshold, the webhook.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetInput {
    pub limit_nanos: u64,
    pub alert_threshold: f64,
    pub webhook_url: Option<String>,
}

pub fn period_param(s: &str) -> Result<Period, GatewayError> {
    Period::parse(s).ok_or_else(|| bad("period", "must be day, month or total"))
}

pub fn budget_input(body: &Value) -> Result<BudgetInput, GatewayError> {
    let obj = object(body, "limit_usd, alert_threshold, webhook_url")?;
    let limit_nanos = required(obj.get("limit_usd"), "limit_usd")
        .and_then(|v| {
            parse_usd(v).ok_or_else(|| {
                bad(
                    "limit_usd",
                    "must be a non-negative amount in USD below 1000000000 (a number or a decimal string)",
                )
            })
        })?;
    let alert_threshold = match obj.get("alert_threshold") {
        None | Some(Value::Null) => 0.8,
        Some(v) => match v.as_f64() {
            Some(t) if t > 0.0 && t <= 1.0 => t,
            _ => {
                return Err(bad(
                    "alert_threshold",
                    "must be a number above 0 and at most 1",
                ))
            }
        },
    };
    let webhook_url = match obj.get("webhook_url") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_str() {
            Some(u) if valid_webhook(u) => Some(u.to_string()),
            _ => {
                return Err(bad(
                    "webhook_url",
                    "must be an https:// URL (or http://127.0.0.1 for local tests)",
                ))
            }
        },
    };
    Ok(BudgetInput {
        limit_nanos,
        alert_threshold,
        webhook_url,
    })
}

/// The longest an end-user token may live.
pub const MAX_END_USER_TTL_S: u64 = 7 * 24 * 3600;

/// The claims of an end-user token to mint for `tenant` (key `version`) at `now_s`.
pub fn end_user_claims(
    body: &Value,
    tenant: &str,
    version: u32,
    now_s: u64,
) -> Result<EndUserClaims, GatewayError> {
    let obj = object(body, "user, ttl_s, models, cap_usd, origins")?;
    let user = required(text(obj, "user", 256)?, "user")?;
    let ttl = match required(obj.get("ttl_s"), "ttl_s")?.as_u64() {
        Some(t) if (1..=MAX_END_USER_TTL_S).contains(&t) => t,
        _ => return Err(bad("ttl_s", "must be an integer from 1 to 604800 (7 days)")),
    };
    let cap = match obj.get("cap_usd") {
        None | Some(Value::Null) => None,
        Some(v) => Some(parse_usd(v).ok_or_else(|| {
            bad(
                "cap_usd",
                "must be a non-negative amount in USD (a number or a decimal string)",
            )
        })?),
    };
    let models = string_list(obj, "models", valid_model_name, "model names")?.flatten();
    let origins = string_list(
        obj,
        "origins",
        valid_origin,
        "origins like https://app.example.com",
    )?
    .flatten();
    Ok(EndUserClaims {
        t: tenant.to_string(),
        u: user,
        exp: now_s + ttl,
        v: version,
        m: models,
        cap,
        o: origins,
    })
}

/// A query parameter of a URL (the first by that name), taken verbatim: every valid value of
/// this API's parameters is URL-safe, so an encoded one is simply invalid. (Cheaper in wasm
/// than a URL parser.)
pub fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or("");
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| v.to_string())
    })
}

/// `true`/`1` or `false`/`0`/absent.
pub fn flag(value: Option<&str>, field: &str) -> Result<bool, GatewayError> {
    match value {
        None | Some("false" | "0") => Ok(false),
        Some("true" | "1") => Ok(true),
        Some(_) => Err(bad(field, "must be true or false")),
    }
}

pub const DEFAULT_PAGE: u32 = 50;
pub const MAX_PAGE: u32 = 200;

/// `?limit=&cursor=` of a tenant listing. The cursor is the last id of the previous page.
pub fn page(limit: Option<&str>, cursor: Option<&str>) -> Result<(u32, String), GatewayError> {
    let limit = match limit {
        None => DEFAULT_PAGE,
        Some(s) => match s.parse::<u32>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => return Err(bad("limit", "must be an integer from 1 to 200")),
        },
    };
    let cursor = match cursor {
        None | Some("") => String::new(),
        Some(c) if valid_tenant_id(c) => c.to_string(),
        Some(_) => return Err(bad("cursor", "is not a cursor this API returned")),
    };
    Ok((limit, cursor))
}

/// `YYYY-MM-DD` naming a real date.
pub fn valid_day(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let num = |r: std::ops::Range<usize>| {
        s.get(r)
            .filter(|x| x.bytes().all(|c| c.is_ascii_digit()))?
            .parse()
            .ok()
    };
    let (Some(y), Some(m), Some(d)) = (num(0..4), num(5..7), num(8..10)) else {
        return false;
    };
    (1..=12).contains(&m)
        && (1..=31).contains(&d)
        && civil_from_days(days_from_civil(y as i64, m, d)) == (y as i64, m, d)
}

/// A usage query: the inclusive day range and the grouping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageQuery {
    pub from: String,
    pub to: String,
    /// `"day"` or `"model"` (also the column grouped by).
    pub group_by: &'static str,
}

/// Defaults: the 30 days up to today (UTC), grouped by day.
pub fn usage_query(
    from: Option<&str>,
    to: Option<&str>,
    group_by: Option<&str>,
    now_ms: u64,
) -> Result<UsageQuery, GatewayError> {
    let day = |v: Option<&str>, field: &str, default: u64| match v {
        None => Ok(ymd(default)),
        Some(s) if valid_day(s) => Ok(s.to_string()),
        Some(_) => Err(bad(field, "must be a date as YYYY-MM-DD")),
    };
    let to = day(to, "to", now_ms)?;
    let from = day(from, "from", now_ms.saturating_sub(29 * DAY_MS))?;
    if from > to {
        return Err(bad("from", "must not be after `to`"));
    }
    let group_by = match group_by {
        None | Some("day") => "day",
        Some("model") => "model",
        Some(_) => return Err(bad("group_by", "must be day or model")),
    };
    Ok(UsageQuery { from, to, group_by })
}

// ---------------------------------------------------------------------------------------------
// Writing answers

fn quoted_or_null(v: Option<String>) -> String {
    v.map_or_else(|| "null".into(), |s| format!("\"{s}\""))
}

/// One period's spend as the admin API shows it, as JSON object text: amounts as exact decimal
/// strings, the period's start and reset (both `null` for `total`), what is left of the limit
/// when there is one, then `extra` (more `,"key":value` members, already JSON).
pub fn period_report(
    period: Period,
    spent: u64,
    reserved: u64,
    limit: Option<u64>,
    now_ms: u64,
    extra: &str,
) -> String {
    let start = (period != Period::Total).then(|| rfc3339(period.start_ms(now_ms)));
    let remaining = limit.map(|l| format_usd(l.saturating_sub(spent + reserved)));
    format!(
        "{{\"period\":\"{}\",\"period_start\":{},\"resets_at\":{},\"limit_usd\":{},\
         \"spent_usd\":\"{}\",\"reserved_usd\":\"{}\",\"remaining_usd\":{}{extra}}}",
        period.as_str(),
        quoted_or_null(start),
        quoted_or_null(period.reset_ms(now_ms).map(rfc3339)),
        quoted_or_null(limit.map(format_usd)),
        format_usd(spent),
        format_usd(reserved),
        quoted_or_null(remaining),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn routes_match_with_params_and_methods() {
        assert_eq!(
            match_route("GET", "/tenants/acme/tokens"),
            Match::Found(Route::ListTokens, vec!["acme"])
        );
        assert_eq!(
            match_route("DELETE", "/tenants/acme/tokens/tok_1"),
            Match::Found(Route::RevokeToken, vec!["acme", "tok_1"])
        );
        assert_eq!(
            match_route("PUT", "/tenants/acme/budgets/month"),
            Match::Found(Route::PutBudget, vec!["acme", "month"])
        );
        assert_eq!(
            match_route("DELETE", "/tenants/acme"),
            Match::WrongMethod("GET, PATCH".into())
        );
        assert_eq!(match_route("GET", "/tenants/"), Match::NotFound);
        assert_eq!(match_route("GET", "/tenants/acme/nope"), Match::NotFound);
        assert_eq!(match_route("GET", "/circuits"), Match::NotFound);
        assert_eq!(match_route("GET", "/tenants//tokens"), Match::NotFound);
    }

    #[test]
    fn every_route_is_reachable_and_unique() {
        for (i, (m, p, r)) in ROUTES.iter().enumerate() {
            let path = p
                .replace("{id}", "x")
                .replace("{token_id}", "t")
                .replace("{period}", "day");
            assert_eq!(
                match_route(m, &path),
                Match::Found(*r, match_route(m, &path).params())
            );
            assert!(
                !ROUTES[..i].iter().any(|(m2, p2, _)| m2 == m && p2 == p),
                "{m} {p} twice"
            );
        }
    }

    impl Match<'_> {
        fn params(&self) -> Vec<&str> {
            match self {
                Match::Found(_, p) => p.clone(),
                _ => vec![],
            }
        }
    }

    fn param(e: GatewayError) -> String {
        assert_eq!(e.status(), 400);
        e.param.unwrap_or_default()
    }

    #[test]
    fn tenant_create_reads_every_field_and_keeps_strings_exact() {
        let hostile = "Robert'); DROP TABLE tenants;-- <script>alert(1)</script> \"ü 🚀";
        let c = tenant_change(
            &json!({"id": "acme-1", "name": hostile, "allowed_models": ["a", "b"],
                    "allowed_origins": null, "rpm_limit": 60, "user_tpm_limit": null,
                    "status": "disabled", "residency": "eu"}),
            true,
        )
        .unwrap();
        assert_eq!(c.id.as_deref(), Some("acme-1"));
        assert_eq!(
            c.values,
            [
                Some(SqlValue::Text(hostile.into())),
                Some(SqlValue::Text("disabled".into())),
                Some(SqlValue::Text(r#"["a","b"]"#.into())),
                Some(SqlValue::Null),
                Some(SqlValue::Int(60)),
                None,
                None,
                Some(SqlValue::Null),
                Some(SqlValue::Text("eu".into())),
            ]
        );
        let cleared = tenant_change(&json!({"residency": null}), false).unwrap();
        assert_eq!(cleared.values[8], Some(SqlValue::Null));
        for bad_tag in [json!("e u"), json!(5), json!("")] {
            let e = tenant_change(&json!({"residency": bad_tag}), false).unwrap_err();
            assert_eq!(e.param.as_deref(), Some("residency"));
        }
        let only_limit = tenant_change(&json!({"tpm_limit": 5}), false).unwrap();
        assert_eq!(only_limit.id, None);
        assert_eq!(only_limit.values[5], Some(SqlValue::Int(5)));
        assert_eq!(only_limit.values.iter().filter(|v| v.is_some()).count(), 1);
    }

    #[test]
    fn tenant_errors_name_the_field() {
        let cases = [
            (json!({"name": "x"}), true, "id"),
            (json!({"id": "Acme", "name": "x"}), true, "id"),
            (json!({"id": "a'b", "name": "x"}), true, "id"),
            (json!({"id": "acme"}), true, "name"),
            (json!({"id": "acme", "name": ""}), true, "name"),
            (json!({"id": "acme", "name": "a\u{0}b"}), true, "name"),
            (json!({"id": "acme", "name": 5}), true, "name"),
            (
                json!({"id": "acme", "name": "x", "rpm_limit": 0}),
                true,
                "rpm_limit",
            ),
            (
                json!({"id": "acme", "name": "x", "tpm_limit": "5"}),
                true,
                "tpm_limit",
            ),
            (
                json!({"id": "acme", "name": "x", "allowed_models": "a"}),
                true,
                "allowed_models",
            ),
            (
                json!({"id": "acme", "name": "x", "allowed_models": ["a", 1]}),
                true,
                "allowed_models[1]",
            ),
            (
                json!({"id": "acme", "name": "x", "allowed_origins": ["https://a.b/path"]}),
                true,
                "allowed_origins[0]",
            ),
            (
                json!({"id": "acme", "name": "x", "nmae": "typo"}),
                true,
                "nmae",
            ),
            (json!({"status": "paused"}), false, "status"),
            (json!({"id": "other"}), false, "id"),
            (json!({}), false, "body"),
            (json!([1]), false, "body"),
        ];
        for (body, creating, field) in cases {
            let e = tenant_change(&body, creating).unwrap_err();
            assert!(
                e.message.contains(field) || field == "body",
                "{body}: {}",
                e.message
            );
            assert_eq!(param(e), field, "{body}");
        }
    }

    #[test]
    fn bodies() {
        assert_eq!(parse_body(b"").unwrap(), json!({}));
        assert_eq!(parse_body(b" {\"a\":1} ").unwrap(), json!({"a": 1}));
        assert_eq!(param(parse_body(b"{nope").unwrap_err()), "body");
        assert_eq!(token_name(&json!({})).unwrap(), "");
        assert_eq!(token_name(&json!({"name": "ci <b>"})).unwrap(), "ci <b>");
        assert_eq!(param(token_name(&json!({"name": 1})).unwrap_err()), "name");
    }

    #[test]
    fn money_is_exact() {
        assert_eq!(parse_usd(&json!(50)), Some(50_000_000_000));
        assert_eq!(parse_usd(&json!(0.1)), Some(100_000_000));
        assert_eq!(parse_usd(&json!("12.345678901")), Some(12_345_678_901));
        assert_eq!(parse_usd(&json!("0.000000001")), Some(1));
        assert_eq!(parse_usd(&json!("7")), Some(7_000_000_000));
        for bad in [
            json!(-1),
            json!("-1"),
            json!("1e3"),
            json!("0.0000000001"),
            json!(""),
            json!(".5"),
            json!(null),
            json!("1000000000"),
        ] {
            assert_eq!(parse_usd(&bad), None, "{bad}");
        }
    }

    #[test]
    fn budgets() {
        let b = budget_input(&json!({"limit_usd": "50", "webhook_url": "https://hooks.example/x"}))
            .unwrap();
        assert_eq!(
            b,
            BudgetInput {
                limit_nanos: 50_000_000_000,
                alert_threshold: 0.8,
                webhook_url: Some("https://hooks.example/x".into())
            }
        );
        assert!(budget_input(
            &json!({"limit_usd": 1, "webhook_url": "http://127.0.0.1:9/h", "alert_threshold": 1})
        )
        .is_ok());
        for (body, field) in [
            (json!({}), "limit_usd"),
            (json!({"limit_usd": -5}), "limit_usd"),
            (
                json!({"limit_usd": 5, "alert_threshold": 0}),
                "alert_threshold",
            ),
            (
                json!({"limit_usd": 5, "alert_threshold": 1.5}),
                "alert_threshold",
            ),
            (
                json!({"limit_usd": 5, "webhook_url": "http://example.com/h"}),
                "webhook_url",
            ),
            (
                json!({"limit_usd": 5, "webhook_url": "http://127.0.0.1@evil.example/h"}),
                "webhook_url",
            ),
            (
                json!({"limit_usd": 5, "webhook_url": "http://127.0.0.1:80@evil.example/h"}),
                "webhook_url",
            ),
            (
                json!({"limit_usd": 5, "webhook_url": "https://"}),
                "webhook_url",
            ),
            (
                json!({"limit_usd": 5, "webhook_url": "ftp://x"}),
                "webhook_url",
            ),
            (json!({"limit_usd": 5, "period": "day"}), "period"),
        ] {
            assert_eq!(param(budget_input(&body).unwrap_err()), field, "{body}");
        }
        assert_eq!(period_param("month").unwrap(), Period::Month);
        assert_eq!(param(period_param("week").unwrap_err()), "period");
    }

    #[test]
    fn end_user_claims_are_bounded() {
        let c = end_user_claims(
            &json!({"user": "u-1", "ttl_s": 600, "models": ["plain"], "cap_usd": 0.5, "origins": ["https://app.example"]}),
            "acme",
            3,
            1_000,
        )
        .unwrap();
        assert_eq!(
            (c.t.as_str(), c.u.as_str(), c.exp, c.v),
            ("acme", "u-1", 1_600, 3)
        );
        assert_eq!(c.m, Some(vec!["plain".to_string()]));
        assert_eq!(c.cap, Some(500_000_000));
        assert_eq!(c.o, Some(vec!["https://app.example".to_string()]));
        for (body, field) in [
            (json!({"ttl_s": 60}), "user"),
            (json!({"user": "u"}), "ttl_s"),
            (json!({"user": "u", "ttl_s": 0}), "ttl_s"),
            (json!({"user": "u", "ttl_s": 604_801}), "ttl_s"),
            (json!({"user": "u", "ttl_s": 60, "cap_usd": "x"}), "cap_usd"),
            (
                json!({"user": "u", "ttl_s": 60, "origins": ["nope"]}),
                "origins[0]",
            ),
        ] {
            assert_eq!(
                param(end_user_claims(&body, "acme", 1, 0).unwrap_err()),
                field,
                "{body}"
            );
        }
    }

    #[test]
    fn queries() {
        assert_eq!(page(None, None).unwrap(), (50, String::new()));
        assert_eq!(page(Some("2"), Some("acme")).unwrap(), (2, "acme".into()));
        assert_eq!(param(page(Some("0"), None).unwrap_err()), "limit");
        assert_eq!(param(page(Some("201"), None).unwrap_err()), "limit");
        assert_eq!(param(page(None, Some("' OR 1=1")).unwrap_err()), "cursor");
        assert!(flag(Some("true"), "rotate").unwrap());
        assert!(!flag(None, "rotate").unwrap());
        assert_eq!(param(flag(Some("yes"), "rotate").unwrap_err()), "rotate");
        assert!(valid_day("2024-02-29") && !valid_day("2023-02-29") && !valid_day("2024-13-01"));
        assert!(!valid_day("2024-1-01") && !valid_day("20240101") && !valid_day("2024-01-0x"));
        let now = 1_795_246_500_000; // 2026-11-21
        let q = usage_query(None, None, None, now).unwrap();
        assert_eq!(
            (q.from.as_str(), q.to.as_str(), q.group_by),
            ("2026-10-23", "2026-11-21", "day")
        );
        let q = usage_query(Some("2026-01-01"), Some("2026-01-31"), Some("model"), now).unwrap();
        assert_eq!(q.group_by, "model");
        assert_eq!(
            param(usage_query(Some("2026-02-01"), Some("2026-01-31"), None, now).unwrap_err()),
            "from"
        );
        assert_eq!(
            param(usage_query(Some("yesterday"), None, None, now).unwrap_err()),
            "from"
        );
        assert_eq!(
            param(usage_query(None, None, Some("week"), now).unwrap_err()),
            "group_by"
        );
    }

    #[test]
    fn query_params() {
        let url =
            "https://gw.example/admin/tenants?limit=2&cursor=a-b&x=%27&empty&group_by=day#frag";
        assert_eq!(query_param(url, "limit").as_deref(), Some("2"));
        assert_eq!(query_param(url, "cursor").as_deref(), Some("a-b"));
        assert_eq!(query_param(url, "x").as_deref(), Some("%27"));
        assert_eq!(query_param(url, "empty").as_deref(), Some(""));
        assert_eq!(query_param(url, "group_by").as_deref(), Some("day"));
        assert_eq!(query_param(url, "frag"), None);
        assert_eq!(
            query_param("https://gw.example/admin/tenants", "limit"),
            None
        );
    }

    #[test]
    fn origins_and_webhooks() {
        assert!(valid_origin("https://app.example.com") && valid_origin("http://localhost:3000"));
        for bad in [
            "app.example.com",
            "https://",
            "https://a.com/",
            "https://a.com/x",
            "https://u@a.com",
            "*",
        ] {
            assert!(!valid_origin(bad), "{bad}");
        }
        assert!(
            valid_webhook("https://hooks.example.com/a?b=c")
                && valid_webhook("http://127.0.0.1:8080/x")
        );
        assert!(!valid_webhook("http://127.0.0.10/x") && !valid_webhook("https://a b"));
    }

    #[test]
    fn period_reports() {
        let now = 1_795_246_500_000; // 2026-11-21T07:35Z
        let r = period_report(Period::Month, 1_500, 500, Some(10_000), now, ",\"x\":1");
        assert_eq!(
            serde_json::from_str::<Value>(&r).unwrap(),
            json!({"period": "month", "period_start": "2026-11-01T00:00:00.000Z",
                   "resets_at": "2026-12-01T00:00:00.000Z", "limit_usd": "0.00001",
                   "spent_usd": "0.0000015", "reserved_usd": "0.0000005", "remaining_usd": "0.000008",
                   "x": 1})
        );
        let t: Value =
            serde_json::from_str(&period_report(Period::Total, 20, 0, None, now, "")).unwrap();
        assert_eq!(
            (
                &t["period_start"],
                &t["resets_at"],
                &t["remaining_usd"],
                &t["limit_usd"]
            ),
            (&Value::Null, &Value::Null, &Value::Null, &Value::Null)
        );
        let d: Value =
            serde_json::from_str(&period_report(Period::Day, 9, 5, Some(10), now, "")).unwrap();
        assert_eq!(d["remaining_usd"], "0.0");
    }
}
