//! The JSON forms of the tenancy types, written and read by hand ([`crate::json`]).
//!
//! - **Stored** (the tenant gate object's storage; state survives deploys, so these forms are
//!   stable): [`TenantGate`] under `gate`, [`UserGate`] under `user:<id>`. They are exactly what
//!   the serde derives wrote before, field for field, so state stored by older code loads.
//! - **Wire** (worker ↔ gate object; both ship together): the call envelope
//!   `{"tenant":…,"user":…,"body":…}` around [`AdmitRequest`], [`SettleRequest`] or [`Limits`],
//!   answered by [`AdmitResponse`], [`SettleResponse`] or a list of [`SpendView`]s.
//! - **D1**: a tenant row as `SELECT json_object(…)` builds it ([`TenantRow`]).
//! - **Tokens**: the [`EndUserClaims`] payload.
//!
//! Optional values are omitted when absent; readers take absent and `null` alike. Every reader
//! returns a [`DecodeError`] naming the field at fault, never panics.

use serde_json::Value;

use super::format_usd;
use super::{
    AdmitRequest, AdmitResponse, Alert, Budget, EndUserClaims, Limits, Period, PeriodSpend,
    Refusal, Reservation, SettleRequest, SettleResponse, SpendView, TenantGate, UserGate, Window,
};
use crate::json::{parse, DecodeError, JsonWriter, Obj};
use crate::logline::rfc3339;
use crate::vecmap::VecMap;

fn period(v: &Value, k: &'static str) -> Result<Period, DecodeError> {
    v.as_str()
        .and_then(Period::parse)
        .ok_or(DecodeError::Invalid(k))
}

fn period_field(o: Obj, k: &'static str) -> Result<Period, DecodeError> {
    period(o.req(k)?, k)
}

const REFUSALS: [(Refusal, &str); 6] = [
    (Refusal::BudgetExceeded, "budget_exceeded"),
    (Refusal::UserBudgetExceeded, "user_budget_exceeded"),
    (Refusal::RateLimited, "rate_limited"),
    (Refusal::TokenRateLimited, "token_rate_limited"),
    (Refusal::UserRateLimited, "user_rate_limited"),
    (Refusal::UserTokenRateLimited, "user_token_rate_limited"),
];

impl Refusal {
    pub fn as_str(self) -> &'static str {
        REFUSALS
            .iter()
            .find(|(r, _)| *r == self)
            .map_or("", |(_, s)| s)
    }

    pub fn parse(s: &str) -> Option<Refusal> {
        REFUSALS.iter().find(|(_, n)| *n == s).map(|(r, _)| *r)
    }
}

// ---------------------------------------------------------------------------------------------
// Limits

impl Budget {
    fn write(&self, w: &mut JsonWriter) {
        w.open()
            .key("period")
            .str(self.period.as_str())
            .key("limit_nanos")
            .u64(self.limit_nanos)
            .key("alert_threshold")
            .f64(self.alert_threshold)
            .opt_str("webhook_url", self.webhook_url.as_deref())
            .close();
    }

    fn read(v: &Value) -> Result<Budget, DecodeError> {
        let o = Obj::new(v, "budgets")?;
        Ok(Budget {
            period: period_field(o, "period")?,
            limit_nanos: o.u64("limit_nanos")?,
            alert_threshold: o.f64("alert_threshold")?,
            webhook_url: o.opt_string("webhook_url")?,
        })
    }
}

fn read_budgets(o: Obj) -> Result<Vec<Budget>, DecodeError> {
    o.list("budgets")?.iter().map(Budget::read).collect()
}

impl Limits {
    fn write(&self, w: &mut JsonWriter) {
        w.open().key("budgets").open_list();
        for b in &self.budgets {
            b.write(w);
        }
        w.close_list()
            .opt_u64("rpm", self.rpm)
            .opt_u64("tpm", self.tpm)
            .opt_u64("user_rpm", self.user_rpm)
            .opt_u64("user_tpm", self.user_tpm)
            .close();
    }

    fn read(o: Obj) -> Result<Limits, DecodeError> {
        Ok(Limits {
            budgets: read_budgets(o)?,
            rpm: o.opt_u64("rpm")?,
            tpm: o.opt_u64("tpm")?,
            user_rpm: o.opt_u64("user_rpm")?,
            user_tpm: o.opt_u64("user_tpm")?,
        })
    }

    /// `{"budgets":[…],"rpm":…,…}`.
    pub fn to_json(&self) -> String {
        let mut w = JsonWriter::new();
        self.write(&mut w);
        w.finish()
    }

    pub fn from_json(v: &Value) -> Result<Limits, DecodeError> {
        Limits::read(Obj::new(v, "limits")?)
    }
}

// ---------------------------------------------------------------------------------------------
// Stored state

impl Window {
    fn write(&self, w: &mut JsonWriter) {
        w.open()
            .key("bucket_start_ms")
            .u64(self.bucket_start_ms)
            .key("current")
            .u64(self.current)
            .key("previous")
            .u64(self.previous)
            .close();
    }

    /// Absent: an empty window (the derive's `#[serde(default)]`).
    fn read(o: Obj, k: &'static str) -> Result<Window, DecodeError> {
        let Some(o) = o.opt_obj(k)? else {
            return Ok(Window::default());
        };
        Ok(Window {
            bucket_start_ms: o.u64("bucket_start_ms")?,
            current: o.u64("current")?,
            previous: o.u64("previous")?,
        })
    }
}

/// The stored forms' common end: `"requests":{window},"tokens":{window}}`.
fn finish_with_windows(mut w: JsonWriter, requests: &Window, tokens: &Window) -> String {
    w.key("requests");
    requests.write(&mut w);
    w.key("tokens");
    tokens.write(&mut w);
    w.close();
    w.finish()
}

impl TenantGate {
    /// The stored form: `{"spend":{"day":{"start_ms":…,"spent_nanos":…,"alerted":…},…},
    /// "reservations":{"<request id>":{"nanos":…,"expires_ms":…},…},"requests":{window},
    /// "tokens":{window}}`, a window being `{"bucket_start_ms":…,"current":…,"previous":…}`.
    pub fn to_json(&self) -> String {
        let mut w = JsonWriter::new();
        w.open().key("spend").open();
        for (p, s) in &self.spend {
            w.key(p.as_str())
                .open()
                .key("start_ms")
                .u64(s.start_ms)
                .key("spent_nanos")
                .u64(s.spent_nanos)
                .key("alerted")
                .bool(s.alerted)
                .close();
        }
        w.close().key("reservations").open();
        for (id, r) in &self.reservations {
            w.key(id)
                .open()
                .key("nanos")
                .u64(r.nanos)
                .key("expires_ms")
                .u64(r.expires_ms)
                .close();
        }
        w.close();
        finish_with_windows(w, &self.requests, &self.tokens)
    }

    pub fn from_json(text: &[u8]) -> Result<TenantGate, DecodeError> {
        let v = parse(text)?;
        let o = Obj::new(&v, "gate")?;
        let mut spend = VecMap::new();
        if let Some(m) = o.opt_obj("spend")? {
            for (k, v) in m.0 {
                let s = Obj::new(v, "spend")?;
                spend.insert(
                    Period::parse(k).ok_or(DecodeError::Invalid("spend"))?,
                    PeriodSpend {
                        start_ms: s.u64("start_ms")?,
                        spent_nanos: s.u64("spent_nanos")?,
                        alerted: s.bool_or_false("alerted")?,
                    },
                );
            }
        }
        let mut reservations = VecMap::new();
        if let Some(m) = o.opt_obj("reservations")? {
            for (id, v) in m.0 {
                let r = Obj::new(v, "reservations")?;
                reservations.insert(
                    id.clone(),
                    Reservation {
                        nanos: r.u64("nanos")?,
                        expires_ms: r.u64("expires_ms")?,
                    },
                );
            }
        }
        Ok(TenantGate {
            spend,
            reservations,
            requests: Window::read(o, "requests")?,
            tokens: Window::read(o, "tokens")?,
        })
    }
}

impl UserGate {
    /// The stored form: `{"day_start_ms":…,"spent_nanos":…,"reserved":{"<request id>":nanos,…},
    /// "requests":{window},"tokens":{window}}`.
    pub fn to_json(&self) -> String {
        let mut w = JsonWriter::new();
        w.open()
            .key("day_start_ms")
            .u64(self.day_start_ms)
            .key("spent_nanos")
            .u64(self.spent_nanos)
            .key("reserved")
            .open();
        for (id, n) in &self.reserved {
            w.key(id).u64(*n);
        }
        w.close();
        finish_with_windows(w, &self.requests, &self.tokens)
    }

    pub fn from_json(text: &[u8]) -> Result<UserGate, DecodeError> {
        let v = parse(text)?;
        let o = Obj::new(&v, "user")?;
        let mut reserved = VecMap::new();
        if let Some(m) = o.opt_obj("reserved")? {
            for (id, n) in m.0 {
                reserved.insert(
                    id.clone(),
                    n.as_u64().ok_or(DecodeError::Invalid("reserved"))?,
                );
            }
        }
        Ok(UserGate {
            day_start_ms: o.u64("day_start_ms")?,
            spent_nanos: o.u64("spent_nanos")?,
            reserved,
            requests: Window::read(o, "requests")?,
            tokens: Window::read(o, "tokens")?,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Wire: worker ↔ gate object

/// One call to the gate object, as it reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct GateCall {
    pub tenant: String,
    pub user: Option<String>,
    /// The operation's argument, read with its type's `from_json`.
    pub body: Value,
}

impl GateCall {
    /// `{"tenant":…,"user":…,"body":<body_json>}` (`user` omitted when none).
    pub fn encode(tenant: &str, user: Option<&str>, body_json: &str) -> String {
        let mut w = JsonWriter::new();
        w.open()
            .key("tenant")
            .str(tenant)
            .opt_str("user", user)
            .key("body")
            .raw(body_json)
            .close();
        w.finish()
    }

    pub fn decode(text: &[u8]) -> Result<GateCall, DecodeError> {
        let mut v = parse(text)?;
        let o = Obj::new(&v, "call")?;
        let tenant = o.str("tenant")?.to_string();
        let user = o.opt_string("user")?;
        o.req("body")?;
        let body = v.get_mut("body").map(Value::take).unwrap_or_default();
        Ok(GateCall { tenant, user, body })
    }
}

impl AdmitRequest {
    pub fn to_json(&self) -> String {
        let mut w = JsonWriter::new();
        w.open()
            .key("request_id")
            .str(&self.request_id)
            .key("limits");
        self.limits.write(&mut w);
        w.key("reserve_nanos")
            .u64(self.reserve_nanos)
            .opt_str("user", self.user.as_deref())
            .opt_u64("user_cap_nanos", self.user_cap_nanos)
            .key("hold_ms")
            .u64(self.hold_ms)
            .close();
        w.finish()
    }

    pub fn from_json(v: &Value) -> Result<AdmitRequest, DecodeError> {
        let o = Obj::new(v, "body")?;
        Ok(AdmitRequest {
            request_id: o.str("request_id")?.to_string(),
            limits: Limits::read(o.obj("limits")?)?,
            reserve_nanos: o.u64("reserve_nanos")?,
            user: o.opt_string("user")?,
            user_cap_nanos: o.opt_u64("user_cap_nanos")?,
            hold_ms: o.u64("hold_ms")?,
        })
    }
}

impl SettleRequest {
    pub fn to_json(&self) -> String {
        let mut w = JsonWriter::new();
        w.open()
            .key("request_id")
            .str(&self.request_id)
            .key("limits");
        self.limits.write(&mut w);
        w.key("cost_nanos")
            .u64(self.cost_nanos)
            .key("tokens")
            .u64(self.tokens)
            .opt_str("user", self.user.as_deref())
            .close();
        w.finish()
    }

    pub fn from_json(v: &Value) -> Result<SettleRequest, DecodeError> {
        let o = Obj::new(v, "body")?;
        Ok(SettleRequest {
            request_id: o.str("request_id")?.to_string(),
            limits: Limits::read(o.obj("limits")?)?,
            cost_nanos: o.u64("cost_nanos")?,
            tokens: o.u64("tokens")?,
            user: o.opt_string("user")?,
        })
    }
}

impl SpendView {
    fn write(&self, w: &mut JsonWriter) {
        w.open()
            .key("period")
            .str(self.period.as_str())
            .key("start_ms")
            .u64(self.start_ms)
            .key("spent_nanos")
            .u64(self.spent_nanos)
            .key("reserved_nanos")
            .u64(self.reserved_nanos)
            .key("limit_nanos")
            .u64(self.limit_nanos)
            .close();
    }

    fn read(v: &Value) -> Result<SpendView, DecodeError> {
        let o = Obj::new(v, "spend")?;
        Ok(SpendView {
            period: period_field(o, "period")?,
            start_ms: o.u64("start_ms")?,
            spent_nanos: o.u64("spent_nanos")?,
            reserved_nanos: o.u64("reserved_nanos")?,
            limit_nanos: o.u64("limit_nanos")?,
        })
    }

    /// A list of views: `[{"period":…,"start_ms":…,"spent_nanos":…,"reserved_nanos":…,
    /// "limit_nanos":…},…]` (the gate's answer to `/view`).
    pub fn list_to_json(views: &[SpendView]) -> String {
        let mut w = JsonWriter::new();
        write_views(&mut w, views);
        w.finish()
    }

    pub fn list_from_json(text: &[u8]) -> Result<Vec<SpendView>, DecodeError> {
        read_views(&parse(text)?)
    }
}

fn write_views(w: &mut JsonWriter, views: &[SpendView]) {
    w.open_list();
    for v in views {
        v.write(w);
    }
    w.close_list();
}

fn read_views(v: &Value) -> Result<Vec<SpendView>, DecodeError> {
    v.as_array()
        .ok_or(DecodeError::Invalid("spend"))?
        .iter()
        .map(SpendView::read)
        .collect()
}

impl AdmitResponse {
    pub fn to_json(&self) -> String {
        let mut w = JsonWriter::new();
        w.open()
            .key("ok")
            .bool(self.ok)
            .opt_str("refusal", self.refusal.map(Refusal::as_str))
            .opt_u64("retry_after_s", self.retry_after_s)
            .opt_str("period", self.period.map(Period::as_str))
            .opt_u64("resets_ms", self.resets_ms)
            .key("spend");
        write_views(&mut w, &self.spend);
        w.close();
        w.finish()
    }

    pub fn from_json(text: &[u8]) -> Result<AdmitResponse, DecodeError> {
        let v = parse(text)?;
        let o = Obj::new(&v, "answer")?;
        let refusal = match o.opt_str("refusal")? {
            None => None,
            Some(s) => Some(Refusal::parse(s).ok_or(DecodeError::Invalid("refusal"))?),
        };
        Ok(AdmitResponse {
            ok: o.bool("ok")?,
            refusal,
            retry_after_s: o.opt_u64("retry_after_s")?,
            period: o.opt("period").map(|p| period(p, "period")).transpose()?,
            resets_ms: o.opt_u64("resets_ms")?,
            spend: read_views(o.req("spend")?)?,
        })
    }
}

impl SettleResponse {
    pub fn to_json(&self) -> String {
        let mut w = JsonWriter::new();
        w.open().key("alerts").open_list();
        for a in &self.alerts {
            w.open()
                .key("period")
                .str(a.period.as_str())
                .key("period_start_ms")
                .u64(a.period_start_ms)
                .key("threshold")
                .f64(a.threshold)
                .key("spent_nanos")
                .u64(a.spent_nanos)
                .key("limit_nanos")
                .u64(a.limit_nanos)
                .opt_str("webhook_url", a.webhook_url.as_deref())
                .close();
        }
        w.close_list().key("spend");
        write_views(&mut w, &self.spend);
        w.close();
        w.finish()
    }

    pub fn from_json(text: &[u8]) -> Result<SettleResponse, DecodeError> {
        let v = parse(text)?;
        let o = Obj::new(&v, "answer")?;
        let alerts = o
            .list("alerts")?
            .iter()
            .map(|v| {
                let a = Obj::new(v, "alerts")?;
                Ok(Alert {
                    period: period_field(a, "period")?,
                    period_start_ms: a.u64("period_start_ms")?,
                    threshold: a.f64("threshold")?,
                    spent_nanos: a.u64("spent_nanos")?,
                    limit_nanos: a.u64("limit_nanos")?,
                    webhook_url: a.opt_string("webhook_url")?,
                })
            })
            .collect::<Result<_, DecodeError>>()?;
        Ok(SettleResponse {
            alerts,
            spend: read_views(o.req("spend")?)?,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Alerts and log lines

impl Alert {
    /// The webhook's body: `{"type":"budget.threshold_reached","tenant":…,"period":…,
    /// "period_start":<RFC 3339>,"threshold":…,"spent_usd":…,"limit_usd":…}` (docs/TENANTS.md).
    pub fn webhook_body(&self, tenant: &str) -> String {
        let mut w = JsonWriter::new();
        w.open()
            .key("type")
            .str("budget.threshold_reached")
            .key("tenant")
            .str(tenant)
            .key("period")
            .str(self.period.as_str())
            .key("period_start")
            .str(&rfc3339(self.period_start_ms))
            .key("threshold")
            .f64(self.threshold)
            .key("spent_usd")
            .str(&format_usd(self.spent_nanos))
            .key("limit_usd")
            .str(&format_usd(self.limit_nanos))
            .close();
        w.finish()
    }

    /// The `switchyard.budget_alert` log line; `webhook_status` is `null` without a webhook,
    /// 0 when it could not be reached.
    pub fn log_line(&self, tenant: &str, webhook_status: Option<u16>) -> String {
        let mut w = JsonWriter::new();
        w.open()
            .key("msg")
            .str("switchyard.budget_alert")
            .key("tenant")
            .str(tenant)
            .key("period")
            .str(self.period.as_str())
            .key("threshold")
            .f64(self.threshold)
            .key("spent_usd")
            .str(&format_usd(self.spent_nanos))
            .key("limit_usd")
            .str(&format_usd(self.limit_nanos))
            .key("webhook_status");
        match webhook_status {
            Some(s) => w.u64(s.into()),
            None => w.null(),
        };
        w.close();
        w.finish()
    }
}

/// A log line `{"msg":<msg>,<key>:<value>,"error":<error>}` (the gate or the ledger could not
/// be reached).
pub fn failure_line(msg: &str, key: &str, value: &str, error: &str) -> String {
    let mut w = JsonWriter::new();
    w.open()
        .key("msg")
        .str(msg)
        .key(key)
        .str(value)
        .key("error")
        .str(error)
        .close();
    w.finish()
}

// ---------------------------------------------------------------------------------------------
// D1: a tenant row

/// A tenant as `SELECT json_object('id', …, 'budgets', (SELECT json_group_array(…))) AS j`
/// builds it (the query is in the worker's `tenants::records`).
#[derive(Debug, Clone, PartialEq)]
pub struct TenantRow {
    pub id: String,
    pub status: String,
    pub allowed_models: Option<Vec<String>>,
    pub allowed_origins: Option<Vec<String>>,
    pub limits: Limits,
    pub signing_key_version: u32,
    pub token_id: Option<String>,
    pub residency: Option<String>,
}

impl TenantRow {
    /// Fields `id`, `status`, `signing_key_version` are required; `allowed_models`,
    /// `allowed_origins` (lists of strings), `rpm_limit`, `tpm_limit`, `user_rpm_limit`,
    /// `user_tpm_limit`, `budgets`, `token_id`, `residency` may be absent or null.
    pub fn from_json(text: &[u8]) -> Result<TenantRow, DecodeError> {
        let v = parse(text)?;
        let o = Obj::new(&v, "tenant")?;
        Ok(TenantRow {
            id: o.str("id")?.to_string(),
            status: o.str("status")?.to_string(),
            allowed_models: o.opt_strs("allowed_models")?,
            allowed_origins: o.opt_strs("allowed_origins")?,
            limits: Limits {
                budgets: read_budgets(o)?,
                rpm: o.opt_u64("rpm_limit")?,
                tpm: o.opt_u64("tpm_limit")?,
                user_rpm: o.opt_u64("user_rpm_limit")?,
                user_tpm: o.opt_u64("user_tpm_limit")?,
            },
            signing_key_version: o.u32("signing_key_version")?,
            token_id: o.opt_string("token_id")?,
            residency: o.opt_string("residency")?,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// End-user token claims

impl EndUserClaims {
    /// `{"t":…,"u":…,"exp":…,"v":…,"m":[…],"cap":…,"o":[…]}` (`m`, `cap`, `o` omitted when
    /// none). Read back by `peek_end_user_token`.
    pub fn to_json(&self) -> String {
        let mut w = JsonWriter::new();
        w.open()
            .key("t")
            .str(&self.t)
            .key("u")
            .str(&self.u)
            .key("exp")
            .u64(self.exp)
            .key("v")
            .u64(self.v.into())
            .opt_strs("m", self.m.as_deref())
            .opt_u64("cap", self.cap)
            .opt_strs("o", self.o.as_deref())
            .close();
        w.finish()
    }

    /// What the derive accepted: unknown fields ignored, `m`/`cap`/`o` absent or null mean none.
    pub fn from_json(text: &[u8]) -> Result<EndUserClaims, DecodeError> {
        let v = parse(text)?;
        let o = Obj::new(&v, "claims")?;
        Ok(EndUserClaims {
            t: o.str("t")?.to_string(),
            u: o.str("u")?.to_string(),
            exp: o.u64("exp")?,
            v: o.u32("v")?,
            m: o.opt_strs("m")?,
            cap: o.opt_u64("cap")?,
            o: o.opt_strs("o")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::*;

    /// What the serde derives stored (captured from the code before the hand codec).
    const STORED_GATE: &str = r#"{"spend":{"day":{"start_ms":1795219200000,"spent_nanos":900,"alerted":true},"month":{"start_ms":1793491200000,"spent_nanos":900,"alerted":false},"total":{"start_ms":0,"spent_nanos":900,"alerted":false}},"reservations":{"r-2":{"nanos":30,"expires_ms":1795246570000}},"requests":{"bucket_start_ms":1795246500000,"current":2,"previous":0},"tokens":{"bucket_start_ms":1795246500000,"current":12,"previous":0}}"#;
    const STORED_USER: &str = r#"{"day_start_ms":1795219200000,"spent_nanos":900,"reserved":{"r-2":30},"requests":{"bucket_start_ms":1795246500000,"current":2,"previous":0},"tokens":{"bucket_start_ms":1795246500000,"current":12,"previous":0}}"#;
    const STORED_GATE0: &str = r#"{"spend":{},"reservations":{},"requests":{"bucket_start_ms":0,"current":0,"previous":0},"tokens":{"bucket_start_ms":0,"current":0,"previous":0}}"#;
    const STORED_USER0: &str = r#"{"day_start_ms":0,"spent_nanos":0,"reserved":{},"requests":{"bucket_start_ms":0,"current":0,"previous":0},"tokens":{"bucket_start_ms":0,"current":0,"previous":0}}"#;

    const NOW: u64 = 1_795_246_500_000;

    fn limits() -> Limits {
        Limits {
            budgets: vec![
                Budget {
                    period: Period::Day,
                    limit_nanos: 1000,
                    alert_threshold: 0.8,
                    webhook_url: None,
                },
                Budget {
                    period: Period::Total,
                    limit_nanos: 5000,
                    alert_threshold: 1.0,
                    webhook_url: Some("https://h.example/\"x".into()),
                },
            ],
            user_rpm: Some(5),
            ..Default::default()
        }
    }

    /// The state the fixtures were captured from.
    fn state() -> (TenantGate, UserGate, AdmitResponse, SettleResponse) {
        let mut g = TenantGate::default();
        let mut u = UserGate::default();
        let mut r = AdmitRequest {
            request_id: "r-1".into(),
            limits: limits(),
            reserve_nanos: 30,
            user: Some("u1".into()),
            user_cap_nanos: Some(900),
            hold_ms: 60_000,
        };
        g.admit(Some(&mut u), &r, NOW);
        r.request_id = "r-2".into();
        let admitted = g.admit(Some(&mut u), &r, NOW + 10_000);
        let settle = SettleRequest {
            request_id: "r-1".into(),
            limits: limits(),
            cost_nanos: 900,
            tokens: 12,
            user: Some("u1".into()),
        };
        let settled = g.settle(Some(&mut u), &settle, NOW + 20_000);
        (g, u, admitted, settled)
    }

    #[test]
    fn stored_state_is_what_the_derives_wrote() {
        let (g, u, _, _) = state();
        assert_eq!(g.to_json(), STORED_GATE);
        assert_eq!(u.to_json(), STORED_USER);
        assert_eq!(TenantGate::from_json(STORED_GATE.as_bytes()), Ok(g));
        assert_eq!(UserGate::from_json(STORED_USER.as_bytes()), Ok(u));
        assert_eq!(TenantGate::default().to_json(), STORED_GATE0);
        assert_eq!(UserGate::default().to_json(), STORED_USER0);
        assert_eq!(
            TenantGate::from_json(STORED_GATE0.as_bytes()),
            Ok(TenantGate::default())
        );
        assert_eq!(
            UserGate::from_json(STORED_USER0.as_bytes()),
            Ok(UserGate::default())
        );
        // What the derives defaulted may be absent.
        assert_eq!(TenantGate::from_json(b"{}"), Ok(TenantGate::default()));
        assert_eq!(
            UserGate::from_json(br#"{"day_start_ms":0,"spent_nanos":0}"#),
            Ok(UserGate::default())
        );
        let no_flag = r#"{"spend":{"day":{"start_ms":5,"spent_nanos":6}}}"#;
        let g = TenantGate::from_json(no_flag.as_bytes()).unwrap();
        assert!(!g.spend[&Period::Day].alerted);
    }

    #[test]
    fn hostile_stored_state_is_a_typed_error() {
        use DecodeError::*;
        for (bad, err) in [
            ("", NotJson),
            ("[]", Invalid("gate")),
            (r#"{"spend":[]}"#, Invalid("spend")),
            (
                r#"{"spend":{"week":{"start_ms":0,"spent_nanos":0}}}"#,
                Invalid("spend"),
            ),
            (
                r#"{"spend":{"day":{"spent_nanos":0}}}"#,
                Missing("start_ms"),
            ),
            (
                r#"{"spend":{"day":{"start_ms":-1,"spent_nanos":0}}}"#,
                Invalid("start_ms"),
            ),
            (
                r#"{"spend":{"day":{"start_ms":0,"spent_nanos":0,"alerted":1}}}"#,
                Invalid("alerted"),
            ),
            (
                r#"{"reservations":{"r":{"nanos":"5","expires_ms":0}}}"#,
                Invalid("nanos"),
            ),
            (r#"{"reservations":{"r":7}}"#, Invalid("reservations")),
            (
                r#"{"requests":{"bucket_start_ms":0,"current":0}}"#,
                Missing("previous"),
            ),
            (r#"{"tokens":5}"#, Invalid("tokens")),
        ] {
            assert_eq!(TenantGate::from_json(bad.as_bytes()), Err(err), "{bad}");
        }
        for (bad, err) in [
            ("{", NotJson),
            ("7", Invalid("user")),
            (r#"{"spent_nanos":0}"#, Missing("day_start_ms")),
            (
                r#"{"day_start_ms":0,"spent_nanos":1.5}"#,
                Invalid("spent_nanos"),
            ),
            (
                r#"{"day_start_ms":0,"spent_nanos":0,"reserved":{"r":"x"}}"#,
                Invalid("reserved"),
            ),
            (
                r#"{"day_start_ms":0,"spent_nanos":0,"reserved":[]}"#,
                Invalid("reserved"),
            ),
        ] {
            assert_eq!(UserGate::from_json(bad.as_bytes()), Err(err), "{bad}");
        }
    }

    #[test]
    fn gate_calls_round_trip() {
        let (_, _, admitted, settled) = state();
        assert!(admitted.ok && !settled.spend.is_empty());
        let admit = AdmitRequest {
            request_id: "r\"1\n".into(),
            limits: limits(),
            reserve_nanos: u64::MAX,
            user: Some("ü".into()),
            user_cap_nanos: Some(0),
            hold_ms: 1,
        };
        let text = GateCall::encode("acme", Some("ü"), &admit.to_json());
        let call = GateCall::decode(text.as_bytes()).unwrap();
        assert_eq!(
            (call.tenant.as_str(), call.user.as_deref()),
            ("acme", Some("ü"))
        );
        assert_eq!(AdmitRequest::from_json(&call.body), Ok(admit.clone()));
        let bare = AdmitRequest {
            user: None,
            user_cap_nanos: None,
            limits: Limits::default(),
            ..admit
        };
        let call = GateCall::decode(GateCall::encode("t", None, &bare.to_json()).as_bytes());
        let call = call.unwrap();
        assert_eq!(call.user, None);
        assert_eq!(AdmitRequest::from_json(&call.body), Ok(bare));

        let settle = SettleRequest {
            request_id: "s".into(),
            limits: limits(),
            cost_nanos: 3,
            tokens: 4,
            user: None,
        };
        let v: Value = serde_json::from_str(&settle.to_json()).unwrap();
        assert_eq!(SettleRequest::from_json(&v), Ok(settle));
        let v: Value = serde_json::from_str(&limits().to_json()).unwrap();
        assert_eq!(Limits::from_json(&v), Ok(limits()));

        assert_eq!(
            AdmitResponse::from_json(admitted.to_json().as_bytes()),
            Ok(admitted)
        );
        let refused = AdmitResponse {
            ok: false,
            refusal: Some(Refusal::UserBudgetExceeded),
            retry_after_s: Some(9),
            period: Some(Period::Month),
            resets_ms: Some(NOW),
            spend: vec![],
        };
        assert_eq!(
            AdmitResponse::from_json(refused.to_json().as_bytes()),
            Ok(refused)
        );
        for (r, name) in REFUSALS {
            assert_eq!((Refusal::parse(name), r.as_str()), (Some(r), name));
        }
        assert_eq!(
            SettleResponse::from_json(settled.to_json().as_bytes()),
            Ok(settled.clone())
        );
        let alert = Alert {
            period: Period::Day,
            period_start_ms: 1,
            threshold: 0.75,
            spent_nanos: 2,
            limit_nanos: 3,
            webhook_url: Some("https://h".into()),
        };
        let with_alert = SettleResponse {
            alerts: vec![
                alert.clone(),
                Alert {
                    webhook_url: None,
                    ..alert
                },
            ],
            spend: settled.spend.clone(),
        };
        assert_eq!(
            SettleResponse::from_json(with_alert.to_json().as_bytes()),
            Ok(with_alert)
        );
        let views = settled.spend;
        assert_eq!(
            SpendView::list_from_json(SpendView::list_to_json(&views).as_bytes()),
            Ok(views)
        );
        assert_eq!(SpendView::list_to_json(&[]), "[]");
    }

    #[test]
    fn hostile_gate_calls_are_typed_errors() {
        use DecodeError::*;
        for (bad, err) in [
            ("nope", NotJson),
            ("[1]", Invalid("call")),
            (r#"{"user":"u","body":{}}"#, Missing("tenant")),
            (r#"{"tenant":1,"body":{}}"#, Invalid("tenant")),
            (r#"{"tenant":"t","user":5,"body":{}}"#, Invalid("user")),
            (r#"{"tenant":"t"}"#, Missing("body")),
        ] {
            assert_eq!(GateCall::decode(bad.as_bytes()), Err(err), "{bad}");
        }
        let body = |s: &str| -> Value { serde_json::from_str(s).unwrap() };
        let ok = r#"{"request_id":"r","limits":{},"reserve_nanos":1,"hold_ms":2}"#;
        assert!(AdmitRequest::from_json(&body(ok)).is_ok());
        for (bad, err) in [
            ("5", Invalid("body")),
            (
                r#"{"limits":{},"reserve_nanos":1,"hold_ms":2}"#,
                Missing("request_id"),
            ),
            (
                r#"{"request_id":"r","reserve_nanos":1,"hold_ms":2}"#,
                Missing("limits"),
            ),
            (
                r#"{"request_id":"r","limits":[],"reserve_nanos":1,"hold_ms":2}"#,
                Invalid("limits"),
            ),
            (
                r#"{"request_id":"r","limits":{"budgets":{}},"reserve_nanos":1,"hold_ms":2}"#,
                Invalid("budgets"),
            ),
            (
                r#"{"request_id":"r","limits":{"budgets":[{"period":"week","limit_nanos":1,"alert_threshold":1}]},"reserve_nanos":1,"hold_ms":2}"#,
                Invalid("period"),
            ),
            (
                r#"{"request_id":"r","limits":{"budgets":[{"period":"day","limit_nanos":1}]},"reserve_nanos":1,"hold_ms":2}"#,
                Missing("alert_threshold"),
            ),
            (
                r#"{"request_id":"r","limits":{"budgets":[{"period":"day","limit_nanos":1,"alert_threshold":"x"}]},"reserve_nanos":1,"hold_ms":2}"#,
                Invalid("alert_threshold"),
            ),
            (
                r#"{"request_id":"r","limits":{"rpm":-1},"reserve_nanos":1,"hold_ms":2}"#,
                Invalid("rpm"),
            ),
            (
                r#"{"request_id":"r","limits":{},"reserve_nanos":1,"hold_ms":2,"user_cap_nanos":true}"#,
                Invalid("user_cap_nanos"),
            ),
            (
                r#"{"request_id":"r","limits":{},"reserve_nanos":1e3,"hold_ms":2}"#,
                Invalid("reserve_nanos"),
            ),
        ] {
            assert_eq!(AdmitRequest::from_json(&body(bad)), Err(err), "{bad}");
        }
        assert_eq!(
            SettleRequest::from_json(&body(r#"{"request_id":"r","limits":{},"cost_nanos":1}"#)),
            Err(Missing("tokens"))
        );
        for (bad, err) in [
            ("", NotJson),
            (r#"{"spend":[]}"#, Missing("ok")),
            (r#"{"ok":1,"spend":[]}"#, Invalid("ok")),
            (r#"{"ok":true}"#, Missing("spend")),
            (r#"{"ok":true,"spend":{}}"#, Invalid("spend")),
            (
                r#"{"ok":false,"refusal":"nope","spend":[]}"#,
                Invalid("refusal"),
            ),
            (
                r#"{"ok":false,"period":"year","spend":[]}"#,
                Invalid("period"),
            ),
            (
                r#"{"ok":true,"spend":[{"period":"day"}]}"#,
                Missing("start_ms"),
            ),
            (r#"{"ok":true,"spend":[7]}"#, Invalid("spend")),
        ] {
            assert_eq!(AdmitResponse::from_json(bad.as_bytes()), Err(err), "{bad}");
        }
        for (bad, err) in [
            (r#"{"alerts":[{}],"spend":[]}"#, Missing("period")),
            (r#"{"alerts":[1],"spend":[]}"#, Invalid("alerts")),
            (r#"{"alerts":{},"spend":[]}"#, Invalid("alerts")),
            (r#"{"alerts":[]}"#, Missing("spend")),
        ] {
            assert_eq!(SettleResponse::from_json(bad.as_bytes()), Err(err), "{bad}");
        }
        assert_eq!(SpendView::list_from_json(b"{}"), Err(Invalid("spend")));
    }

    #[test]
    fn tenant_rows_read_as_d1_builds_them() {
        let full = r#"{"id":"acme","status":"active","allowed_models":["a","b"],
            "allowed_origins":["https://x"],"rpm_limit":5,"tpm_limit":null,"user_rpm_limit":2,
            "user_tpm_limit":3,"signing_key_version":1,"residency":"eu",
            "budgets":[{"period":"month","limit_nanos":100,"alert_threshold":0.8,"webhook_url":null},
                       {"period":"total","limit_nanos":7,"alert_threshold":1.0,"webhook_url":"https://h"}],
            "token_id":"tok-1"}"#;
        let r = TenantRow::from_json(full.as_bytes()).unwrap();
        assert_eq!(
            r,
            TenantRow {
                id: "acme".into(),
                status: "active".into(),
                allowed_models: Some(vec!["a".into(), "b".into()]),
                allowed_origins: Some(vec!["https://x".into()]),
                limits: Limits {
                    budgets: vec![
                        Budget {
                            period: Period::Month,
                            limit_nanos: 100,
                            alert_threshold: 0.8,
                            webhook_url: None
                        },
                        Budget {
                            period: Period::Total,
                            limit_nanos: 7,
                            alert_threshold: 1.0,
                            webhook_url: Some("https://h".into())
                        },
                    ],
                    rpm: Some(5),
                    tpm: None,
                    user_rpm: Some(2),
                    user_tpm: Some(3),
                },
                signing_key_version: 1,
                token_id: Some("tok-1".into()),
                residency: Some("eu".into()),
            }
        );
        let bare = r#"{"id":"a","status":"disabled","allowed_models":null,"allowed_origins":null,
            "rpm_limit":null,"tpm_limit":null,"user_rpm_limit":null,"user_tpm_limit":null,
            "signing_key_version":3,"residency":null,"budgets":[],"token_id":null}"#;
        let r = TenantRow::from_json(bare.as_bytes()).unwrap();
        assert_eq!(
            (r.allowed_models, r.limits, r.token_id),
            (None, Limits::default(), None)
        );
        use DecodeError::*;
        for (bad, err) in [
            ("x", NotJson),
            ("null", Invalid("tenant")),
            (
                r#"{"status":"active","signing_key_version":1}"#,
                Missing("id"),
            ),
            (
                r#"{"id":"a","status":"active"}"#,
                Missing("signing_key_version"),
            ),
            (
                r#"{"id":"a","status":"active","signing_key_version":4294967296}"#,
                Invalid("signing_key_version"),
            ),
            (
                r#"{"id":"a","status":"active","signing_key_version":1,"allowed_models":"a"}"#,
                Invalid("allowed_models"),
            ),
            (
                r#"{"id":"a","status":"active","signing_key_version":1,"allowed_origins":[1]}"#,
                Invalid("allowed_origins"),
            ),
            (
                r#"{"id":"a","status":"active","signing_key_version":1,"tpm_limit":"5"}"#,
                Invalid("tpm_limit"),
            ),
            (
                r#"{"id":"a","status":"active","signing_key_version":1,"budgets":[null]}"#,
                Invalid("budgets"),
            ),
        ] {
            assert_eq!(TenantRow::from_json(bad.as_bytes()), Err(err), "{bad}");
        }
    }

    #[test]
    fn alert_lines() {
        let a = Alert {
            period: Period::Month,
            period_start_ms: 1_793_491_200_000,
            threshold: 0.8,
            spent_nanos: 1_500_000_000,
            limit_nanos: 2_000_000_000,
            webhook_url: None,
        };
        assert_eq!(
            a.webhook_body("ac\"me"),
            r#"{"type":"budget.threshold_reached","tenant":"ac\"me","period":"month","period_start":"2026-11-01T00:00:00.000Z","threshold":0.8,"spent_usd":"1.5","limit_usd":"2.0"}"#
        );
        assert_eq!(
            a.log_line("acme", Some(204)),
            r#"{"msg":"switchyard.budget_alert","tenant":"acme","period":"month","threshold":0.8,"spent_usd":"1.5","limit_usd":"2.0","webhook_status":204}"#
        );
        assert!(a
            .log_line("acme", None)
            .ends_with(r#""webhook_status":null}"#));
        assert_eq!(
            failure_line("switchyard.gate_unavailable", "tenant", "t", "a\nb"),
            r#"{"msg":"switchyard.gate_unavailable","tenant":"t","error":"a\nb"}"#
        );
    }

    #[test]
    fn claims_are_written_as_the_derive_wrote_them() {
        let c = EndUserClaims {
            t: "a".into(),
            u: "b\u{1}é".into(),
            exp: 5,
            v: 1,
            m: Some(vec!["x".into()]),
            cap: Some(3),
            o: None,
        };
        assert_eq!(
            c.to_json(),
            r#"{"t":"a","u":"b\u0001é","exp":5,"v":1,"m":["x"],"cap":3}"#
        );
    }
}
