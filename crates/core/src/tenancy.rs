//! Tenants: tokens, end-user tokens, pricing, and the budget and rate-limit gate.
//!
//! Everything here is a pure function or a state machine over plain data; the edge stores the
//! data (D1, a per-tenant Durable Object) and calls these. `docs/TENANTS.md` states the
//! guarantees (revocation delay, budget overshoot bound) that follow from them.

use crate::vecmap::VecMap;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::config::ModelConfig;
use crate::time::{day_start_ms, month_start_ms, next_month_start_ms, DAY_MS};
use crate::usage::Usage;

pub mod codec;

// ---------------------------------------------------------------------------------------------
// Encoding helpers

const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64url without padding.
pub fn b64url(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (chunk[0] as u32) << 16
            | (*chunk.get(1).unwrap_or(&0) as u32) << 8
            | *chunk.get(2).unwrap_or(&0) as u32;
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(B64URL[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

pub fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = B64URL.iter().position(|&b| b == c)? as u32;
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

pub fn hex(bytes: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    bytes
        .iter()
        .flat_map(|b| [D[(b >> 4) as usize] as char, D[(b & 15) as usize] as char])
        .collect()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// Constant-time byte comparison (the length is not secret).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

// ---------------------------------------------------------------------------------------------
// Tenant tokens

/// Tenant API tokens look like `sy_<43 base64url chars>` (32 random bytes).
pub const TOKEN_PREFIX: &str = "sy_";
/// How many leading characters of a token are kept visible (in D1 and the admin API).
pub const VISIBLE_PREFIX_LEN: usize = 11;

/// A new token from 32 random bytes. Shown once; only [`token_hash`] is stored.
pub fn new_token(random: &[u8; 32]) -> String {
    format!("{TOKEN_PREFIX}{}", b64url(random))
}

pub fn token_hash(token: &str) -> String {
    sha256_hex(token.as_bytes())
}

pub fn visible_prefix(token: &str) -> String {
    token.chars().take(VISIBLE_PREFIX_LEN).collect()
}

/// Valid tenant ids: 1–63 of `[a-z0-9_-]`, starting with a letter or digit.
pub fn valid_tenant_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 63
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

// ---------------------------------------------------------------------------------------------
// End-user tokens: `syu_<payload>.<mac>`, HMAC-SHA256 with a per-tenant key

pub const END_USER_PREFIX: &str = "syu_";

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return [0; 32],
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The tenant's signing key: derived from the gateway's `SIGNING_SECRET` and a version number
/// stored with the tenant (bump it to rotate). Nothing secret is ever stored in D1.
pub fn tenant_signing_key(master: &[u8], tenant: &str, version: u32) -> [u8; 32] {
    hmac(
        master,
        format!("switchyard/end-user-key/v1/{tenant}/{version}").as_bytes(),
    )
}

/// What an end-user token carries. Written by hand ([`EndUserClaims::to_json`]) and read by
/// hand in [`peek_end_user_token`] (derived codecs cost several KB of wasm).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndUserClaims {
    /// Tenant id.
    pub t: String,
    /// End-user id (the tenant's own identifier for its user).
    pub u: String,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Signing key version.
    pub v: u32,
    /// Allowed public model names (narrows the tenant's).
    pub m: Option<Vec<String>>,
    /// Spend cap for this user per UTC day, in nano-USD.
    pub cap: Option<u64>,
    /// Allowed origins (narrows the tenant's).
    pub o: Option<Vec<String>>,
}

pub fn sign_end_user_token(key: &[u8; 32], claims: &EndUserClaims) -> String {
    let payload = b64url(claims.to_json().as_bytes());
    let mac = hmac(key, payload.as_bytes());
    format!("{END_USER_PREFIX}{payload}.{}", b64url(&mac))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndUserTokenError {
    Malformed,
    BadSignature,
    Expired,
}

/// Read the claims without checking the signature (to learn which tenant's key to use).
pub fn peek_end_user_token(token: &str) -> Result<EndUserClaims, EndUserTokenError> {
    let rest = token
        .strip_prefix(END_USER_PREFIX)
        .ok_or(EndUserTokenError::Malformed)?;
    let (payload, _) = rest.split_once('.').ok_or(EndUserTokenError::Malformed)?;
    let bytes = b64url_decode(payload).ok_or(EndUserTokenError::Malformed)?;
    EndUserClaims::from_json(&bytes).map_err(|_| EndUserTokenError::Malformed)
}

/// Verify signature and expiry.
pub fn verify_end_user_token(
    token: &str,
    key: &[u8; 32],
    now_s: u64,
) -> Result<EndUserClaims, EndUserTokenError> {
    let claims = peek_end_user_token(token)?;
    let rest = &token[END_USER_PREFIX.len()..];
    let (payload, mac) = rest.split_once('.').ok_or(EndUserTokenError::Malformed)?;
    let given = b64url_decode(mac).ok_or(EndUserTokenError::Malformed)?;
    if !constant_time_eq(&given, &hmac(key, payload.as_bytes())) {
        return Err(EndUserTokenError::BadSignature);
    }
    if claims.exp <= now_s {
        return Err(EndUserTokenError::Expired);
    }
    Ok(claims)
}

// ---------------------------------------------------------------------------------------------
// Pricing

/// Nano-USD per token for a price in USD per million tokens.
fn nanos_per_token(usd_per_mtok: f64) -> f64 {
    usd_per_mtok * 1_000.0
}

/// The cost of an answer in nano-USD, or `None` when the model has no input or output price
/// (recorded as unpriced, never guessed). Cached prompt tokens use the cached price when there is
/// one, else the full input price (no discount assumed).
pub fn cost_nanos(usage: &Usage, prices: Option<&ModelConfig>) -> Option<u64> {
    let p = prices?;
    let input = p.input_per_mtok?;
    let output = p.output_per_mtok?;
    let cached_price = p.cached_input_per_mtok.unwrap_or(input);
    let cached = usage.cached_tokens.min(usage.prompt_tokens);
    let uncached = usage.prompt_tokens - cached;
    let total = uncached as f64 * nanos_per_token(input)
        + cached as f64 * nanos_per_token(cached_price)
        + usage.completion_tokens as f64 * nanos_per_token(output);
    Some(total.round() as u64)
}

/// The most a request can cost: every body byte a prompt token, and `max_tokens` (or
/// `default_max_output`) completion tokens. Unpriced models cost 0 (they cannot be budgeted).
pub fn worst_case_nanos(
    body_bytes: usize,
    max_tokens: Option<u64>,
    default_max_output: u64,
    prices: Option<&ModelConfig>,
) -> u64 {
    let Some(p) = prices else { return 0 };
    let input = p.input_per_mtok.unwrap_or(0.0);
    let output = p.output_per_mtok.unwrap_or(0.0);
    let out_tokens = max_tokens.unwrap_or(default_max_output);
    (body_bytes as f64 * nanos_per_token(input) + out_tokens as f64 * nanos_per_token(output))
        .ceil() as u64
}

/// `1500` → `"0.0000015"`: USD with up to 9 decimals, no trailing zeros.
pub fn format_usd(nanos: u64) -> String {
    let whole = nanos / 1_000_000_000;
    let frac = nanos % 1_000_000_000;
    if frac == 0 {
        return format!("{whole}.0");
    }
    let s = format!("{whole}.{frac:09}");
    s.trim_end_matches('0').to_string()
}

/// USD (as given in JSON) to nano-USD; `None` for negative or non-finite amounts.
pub fn usd_to_nanos(usd: f64) -> Option<u64> {
    (usd.is_finite() && (0.0..1e9).contains(&usd)).then(|| (usd * 1e9).round() as u64)
}

// ---------------------------------------------------------------------------------------------
// Budget periods

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Period {
    Day,
    Month,
    Total,
}

impl Period {
    pub fn parse(s: &str) -> Option<Period> {
        match s {
            "day" => Some(Period::Day),
            "month" => Some(Period::Month),
            "total" => Some(Period::Total),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Month => "month",
            Period::Total => "total",
        }
    }

    /// When the period containing `now_ms` started (0 for `total`).
    pub fn start_ms(self, now_ms: u64) -> u64 {
        match self {
            Period::Day => day_start_ms(now_ms),
            Period::Month => month_start_ms(now_ms),
            Period::Total => 0,
        }
    }

    /// When the period containing `now_ms` resets (`None` for `total`).
    pub fn reset_ms(self, now_ms: u64) -> Option<u64> {
        match self {
            Period::Day => Some(day_start_ms(now_ms) + DAY_MS),
            Period::Month => Some(next_month_start_ms(now_ms)),
            Period::Total => None,
        }
    }
}

/// A budget as configured for a tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    pub period: Period,
    pub limit_nanos: u64,
    /// Fraction of the limit at which the soft alert fires (0 < t ≤ 1).
    pub alert_threshold: f64,
    pub webhook_url: Option<String>,
}

/// Limits the gate enforces, sent along with every gate call (the tenant record is the source).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    pub budgets: Vec<Budget>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub user_rpm: Option<u64>,
    pub user_tpm: Option<u64>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        self.budgets.is_empty()
            && self.rpm.is_none()
            && self.tpm.is_none()
            && self.user_rpm.is_none()
            && self.user_tpm.is_none()
    }
}

// ---------------------------------------------------------------------------------------------
// The gate: a tenant's spend, reservations and rate windows (one Durable Object per tenant)

/// A one-minute window approximated by two fixed buckets (the previous minute weighted by how
/// much of it still overlaps the last 60 s).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Window {
    pub bucket_start_ms: u64,
    pub current: u64,
    pub previous: u64,
}

const MINUTE_MS: u64 = 60_000;

impl Window {
    fn roll(&mut self, now: u64) {
        let start = now - now % MINUTE_MS;
        if start == self.bucket_start_ms {
            return;
        }
        self.previous = if start == self.bucket_start_ms + MINUTE_MS {
            self.current
        } else {
            0
        };
        self.current = 0;
        self.bucket_start_ms = start;
    }

    /// The estimated count over the last 60 s.
    pub fn estimate(&mut self, now: u64) -> u64 {
        self.roll(now);
        let into = (now - self.bucket_start_ms) as f64 / MINUTE_MS as f64;
        self.current + (self.previous as f64 * (1.0 - into)).ceil() as u64
    }

    pub fn add(&mut self, now: u64, n: u64) {
        self.roll(now);
        self.current += n;
    }

    /// Seconds until the estimate has room for `need` more under `limit` (at least 1).
    fn retry_after_s(&mut self, now: u64, limit: u64, need: u64) -> u64 {
        let mut t = now;
        // Step forward a second at a time within the next two minutes; the estimate only falls.
        for s in 1..=120u64 {
            t = now + s * 1000;
            let mut probe = self.clone();
            if probe.estimate(t) + need <= limit {
                return s;
            }
        }
        let _ = t;
        60
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PeriodSpend {
    pub start_ms: u64,
    pub spent_nanos: u64,
    /// The soft alert for this period instance has fired.
    pub alerted: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reservation {
    pub nanos: u64,
    pub expires_ms: u64,
}

/// The tenant-wide state kept by the gate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TenantGate {
    pub spend: VecMap<Period, PeriodSpend>,
    pub reservations: VecMap<String, Reservation>,
    pub requests: Window,
    pub tokens: Window,
}

/// One end user's state (stored separately, one entry per user).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserGate {
    pub day_start_ms: u64,
    pub spent_nanos: u64,
    pub reserved: VecMap<String, u64>,
    pub requests: Window,
    pub tokens: Window,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AdmitRequest {
    pub request_id: String,
    pub limits: Limits,
    /// The worst-case cost to reserve (0 when no budget applies).
    pub reserve_nanos: u64,
    pub user: Option<String>,
    /// The end user's daily spend cap, from their token.
    pub user_cap_nanos: Option<u64>,
    /// How long the reservation may stay unsettled (the request's total deadline + margin).
    pub hold_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    BudgetExceeded,
    UserBudgetExceeded,
    RateLimited,
    TokenRateLimited,
    UserRateLimited,
    UserTokenRateLimited,
}

/// The gate's answer to an admission. `spend` is the view the isolate caches.
#[derive(Debug, Clone, PartialEq)]
pub struct AdmitResponse {
    pub ok: bool,
    pub refusal: Option<Refusal>,
    /// For refusals: when to retry (rate limits) or when the budget period resets (Unix ms).
    pub retry_after_s: Option<u64>,
    pub period: Option<Period>,
    pub resets_ms: Option<u64>,
    pub spend: Vec<SpendView>,
}

/// Spend in one period as the gate sees it (settled + reserved).
#[derive(Debug, Clone, PartialEq)]
pub struct SpendView {
    pub period: Period,
    pub start_ms: u64,
    pub spent_nanos: u64,
    pub reserved_nanos: u64,
    pub limit_nanos: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SettleRequest {
    pub request_id: String,
    pub limits: Limits,
    pub cost_nanos: u64,
    pub tokens: u64,
    pub user: Option<String>,
}

/// A soft alert to deliver (once per period instance and threshold).
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub period: Period,
    pub period_start_ms: u64,
    pub threshold: f64,
    pub spent_nanos: u64,
    pub limit_nanos: u64,
    pub webhook_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SettleResponse {
    pub alerts: Vec<Alert>,
    pub spend: Vec<SpendView>,
}

impl TenantGate {
    fn period_mut(&mut self, period: Period, now: u64) -> &mut PeriodSpend {
        let start = period.start_ms(now);
        let entry = self.spend.entry_or_default(period);
        if entry.start_ms != start {
            *entry = PeriodSpend {
                start_ms: start,
                spent_nanos: 0,
                alerted: false,
            };
        }
        entry
    }

    fn expire(&mut self, now: u64) {
        self.reservations.retain(|_, r| r.expires_ms > now);
    }

    fn reserved(&self) -> u64 {
        self.reservations.values().map(|r| r.nanos).sum()
    }

    pub fn view(&mut self, limits: &Limits, now: u64) -> Vec<SpendView> {
        self.expire(now);
        let reserved = self.reserved();
        limits
            .budgets
            .iter()
            .map(|b| {
                let p = self.period_mut(b.period, now);
                SpendView {
                    period: b.period,
                    start_ms: p.start_ms,
                    spent_nanos: p.spent_nanos,
                    reserved_nanos: reserved,
                    limit_nanos: b.limit_nanos,
                }
            })
            .collect()
    }

    /// Admit or refuse one request. Admission reserves `reserve_nanos` against every budget
    /// until [`TenantGate::settle`] (or the hold expires).
    pub fn admit(
        &mut self,
        user: Option<&mut UserGate>,
        req: &AdmitRequest,
        now: u64,
    ) -> AdmitResponse {
        self.expire(now);
        let refuse =
            |gate: &mut TenantGate, refusal, retry_after_s, period, resets_ms| AdmitResponse {
                ok: false,
                refusal: Some(refusal),
                retry_after_s,
                period,
                resets_ms,
                spend: gate.view(&req.limits, now),
            };
        let l = &req.limits;
        if let Some(rpm) = l.rpm {
            if self.requests.estimate(now) + 1 > rpm {
                let s = self.requests.retry_after_s(now, rpm, 1);
                return refuse(self, Refusal::RateLimited, Some(s), None, None);
            }
        }
        if let Some(tpm) = l.tpm {
            if self.tokens.estimate(now) >= tpm {
                let s = self.tokens.retry_after_s(now, tpm, 1);
                return refuse(self, Refusal::TokenRateLimited, Some(s), None, None);
            }
        }
        let reserved = self.reserved();
        for b in &l.budgets {
            let spent = self.period_mut(b.period, now).spent_nanos;
            if spent + reserved + req.reserve_nanos > b.limit_nanos {
                let resets = b.period.reset_ms(now);
                let wait = resets.map(|r| (r - now).div_ceil(1000));
                return refuse(self, Refusal::BudgetExceeded, wait, Some(b.period), resets);
            }
        }
        if let Some(u) = user {
            u.roll_day(now);
            if let Some(rpm) = l.user_rpm {
                if u.requests.estimate(now) + 1 > rpm {
                    let s = u.requests.retry_after_s(now, rpm, 1);
                    return refuse(self, Refusal::UserRateLimited, Some(s), None, None);
                }
            }
            if let Some(tpm) = l.user_tpm {
                if u.tokens.estimate(now) >= tpm {
                    let s = u.tokens.retry_after_s(now, tpm, 1);
                    return refuse(self, Refusal::UserTokenRateLimited, Some(s), None, None);
                }
            }
            if let Some(cap) = req.user_cap_nanos {
                let held: u64 = u.reserved.values().sum();
                if u.spent_nanos + held + req.reserve_nanos > cap {
                    let resets = Period::Day.reset_ms(now);
                    let wait = resets.map(|r| (r - now).div_ceil(1000));
                    return refuse(
                        self,
                        Refusal::UserBudgetExceeded,
                        wait,
                        Some(Period::Day),
                        resets,
                    );
                }
            }
            u.requests.add(now, 1);
            if req.reserve_nanos > 0 {
                u.reserved.insert(req.request_id.clone(), req.reserve_nanos);
            }
        }
        self.requests.add(now, 1);
        if req.reserve_nanos > 0 && !l.budgets.is_empty() {
            self.reservations.insert(
                req.request_id.clone(),
                Reservation {
                    nanos: req.reserve_nanos,
                    expires_ms: now + req.hold_ms,
                },
            );
        }
        AdmitResponse {
            ok: true,
            refusal: None,
            retry_after_s: None,
            period: None,
            resets_ms: None,
            spend: self.view(l, now),
        }
    }

    /// Record a request's real cost: release its reservation, add the cost and tokens, and
    /// return the soft alerts that this settlement made due (each fires once per period).
    pub fn settle(
        &mut self,
        user: Option<&mut UserGate>,
        req: &SettleRequest,
        now: u64,
    ) -> SettleResponse {
        self.reservations.remove(&req.request_id);
        self.tokens.add(now, req.tokens);
        if let Some(u) = user {
            u.roll_day(now);
            u.reserved.remove(&req.request_id);
            u.spent_nanos += req.cost_nanos;
            u.tokens.add(now, req.tokens);
        }
        let mut alerts = Vec::new();
        for b in &req.limits.budgets {
            let p = self.period_mut(b.period, now);
            p.spent_nanos += req.cost_nanos;
            let threshold_nanos = (b.limit_nanos as f64 * b.alert_threshold).ceil() as u64;
            if !p.alerted && b.limit_nanos > 0 && p.spent_nanos >= threshold_nanos {
                p.alerted = true;
                alerts.push(Alert {
                    period: b.period,
                    period_start_ms: p.start_ms,
                    threshold: b.alert_threshold,
                    spent_nanos: p.spent_nanos,
                    limit_nanos: b.limit_nanos,
                    webhook_url: b.webhook_url.clone(),
                });
            }
        }
        // Spend in periods without a configured budget is still counted, so adding a budget
        // later starts from the truth.
        for period in [Period::Day, Period::Month, Period::Total] {
            if !req.limits.budgets.iter().any(|b| b.period == period) {
                self.period_mut(period, now).spent_nanos += req.cost_nanos;
            }
        }
        SettleResponse {
            alerts,
            spend: self.view(&req.limits, now),
        }
    }
}

impl UserGate {
    fn roll_day(&mut self, now: u64) {
        let start = day_start_ms(now);
        if self.day_start_ms != start {
            self.day_start_ms = start;
            self.spent_nanos = 0;
        }
    }
}

/// Whether the isolate may admit without asking the gate: no rate limits, no end-user cap, and
/// every budget's cached view leaves at least `FAR_FRACTION` of the limit and
/// `FAR_REQUESTS` worst-case requests of room.
pub const FAR_FRACTION: f64 = 0.2;
pub const FAR_REQUESTS: u64 = 50;
/// How long an isolate trusts a spend view.
pub const VIEW_TTL_MS: u64 = 10_000;

pub fn far_from_cap(views: &[SpendView], worst_case_nanos: u64) -> bool {
    views.iter().all(|v| {
        let used = v.spent_nanos + v.reserved_nanos;
        let room = v.limit_nanos.saturating_sub(used);
        room as f64 >= v.limit_nanos as f64 * FAR_FRACTION
            && room >= worst_case_nanos.saturating_mul(FAR_REQUESTS)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_round_trip() {
        for n in 0..40u8 {
            let data: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            let enc = b64url(&data);
            assert!(!enc.contains('=') && !enc.contains('+') && !enc.contains('/'));
            assert_eq!(b64url_decode(&enc).unwrap(), data);
        }
        assert_eq!(b64url(b"hello"), "aGVsbG8");
        assert!(b64url_decode("a*b").is_none());
    }

    #[test]
    fn tokens_hash_and_prefix() {
        let t = new_token(&[7u8; 32]);
        assert!(t.starts_with("sy_") && t.len() == 3 + 43);
        assert_eq!(token_hash(&t).len(), 64);
        assert_ne!(token_hash(&t), token_hash(&new_token(&[8u8; 32])));
        assert_eq!(visible_prefix(&t).len(), VISIBLE_PREFIX_LEN);
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn tenant_ids() {
        assert!(valid_tenant_id("acme") && valid_tenant_id("a-1_b"));
        for bad in [
            "",
            "Acme",
            "-x",
            "a b",
            "a/b",
            "a'b",
            &"x".repeat(64),
            "ünï",
        ] {
            assert!(!valid_tenant_id(bad), "{bad}");
        }
    }

    fn claims(exp: u64) -> EndUserClaims {
        EndUserClaims {
            t: "acme".into(),
            u: "user-1".into(),
            exp,
            v: 1,
            m: Some(vec!["small".into()]),
            cap: Some(1_000),
            o: None,
        }
    }

    #[test]
    fn end_user_claims_read_back_as_written() {
        let key = tenant_signing_key(b"master", "acme", 1);
        let full = EndUserClaims {
            o: Some(vec!["https://a.example".into(), "https://b.example".into()]),
            ..claims(2_000)
        };
        let bare = EndUserClaims {
            m: None,
            cap: None,
            o: None,
            ..claims(3_000)
        };
        for c in [full, bare] {
            assert_eq!(peek_end_user_token(&sign_end_user_token(&key, &c)), Ok(c));
        }
        let peek = |json: &str| peek_end_user_token(&format!("syu_{}.x", b64url(json.as_bytes())));
        // Nulls mean absent, unknown fields are ignored.
        let c = peek(r#"{"t":"a","u":"b","exp":5,"v":2,"m":null,"cap":null,"o":null,"z":1}"#);
        assert_eq!(
            c,
            Ok(EndUserClaims {
                t: "a".into(),
                u: "b".into(),
                exp: 5,
                v: 2,
                m: None,
                cap: None,
                o: None
            })
        );
        for bad in [
            "[]",
            r#"{"u":"b","exp":5,"v":2}"#,
            r#"{"t":"a","u":"b","exp":-5,"v":2}"#,
            r#"{"t":"a","u":"b","exp":5.5,"v":2}"#,
            r#"{"t":"a","u":"b","exp":5,"v":4294967296}"#,
            r#"{"t":"a","u":"b","exp":5,"v":2,"m":["x",1]}"#,
            r#"{"t":"a","u":"b","exp":5,"v":2,"o":"x"}"#,
            r#"{"t":"a","u":"b","exp":5,"v":2,"cap":"1"}"#,
            r#"{"t":1,"u":"b","exp":5,"v":2}"#,
        ] {
            assert_eq!(peek(bad), Err(EndUserTokenError::Malformed), "{bad}");
        }
    }

    #[test]
    fn end_user_tokens_verify_expire_and_resist_forgery() {
        let key = tenant_signing_key(b"master", "acme", 1);
        let token = sign_end_user_token(&key, &claims(2_000));
        assert!(token.starts_with("syu_"));
        assert_eq!(
            verify_end_user_token(&token, &key, 1_000),
            Ok(claims(2_000))
        );
        assert_eq!(
            verify_end_user_token(&token, &key, 2_000),
            Err(EndUserTokenError::Expired)
        );
        // Another tenant's key, or a rotated version, does not verify.
        let other = tenant_signing_key(b"master", "acme", 2);
        assert_eq!(
            verify_end_user_token(&token, &other, 1_000),
            Err(EndUserTokenError::BadSignature)
        );
        // Tampered payload: a longer expiry with the old signature.
        let (_, mac) = token.rsplit_once('.').unwrap();
        let forged_payload = b64url(claims(9_999_999).to_json().as_bytes());
        let forged = format!("syu_{forged_payload}.{mac}");
        assert_eq!(
            verify_end_user_token(&forged, &key, 1_000),
            Err(EndUserTokenError::BadSignature)
        );
        for junk in ["syu_", "syu_abc", "sy_abc.def", "syu_%%%.x"] {
            assert_eq!(
                verify_end_user_token(junk, &key, 0),
                Err(EndUserTokenError::Malformed),
                "{junk}"
            );
        }
    }

    fn prices() -> ModelConfig {
        ModelConfig {
            input_per_mtok: Some(1.0),
            output_per_mtok: Some(2.0),
            cached_input_per_mtok: Some(0.5),
            context_window: None,
        }
    }

    #[test]
    fn pricing_is_exact_and_never_guessed() {
        let u = Usage {
            prompt_tokens: 10,
            completion_tokens: 5,
            cached_tokens: 4,
            ..Default::default()
        };
        // 6×1000 + 4×500 + 5×2000 nano-USD
        assert_eq!(cost_nanos(&u, Some(&prices())), Some(18_000));
        assert_eq!(cost_nanos(&u, None), None);
        let no_output = ModelConfig {
            output_per_mtok: None,
            ..prices()
        };
        assert_eq!(cost_nanos(&u, Some(&no_output)), None);
        let no_cached = ModelConfig {
            cached_input_per_mtok: None,
            ..prices()
        };
        assert_eq!(cost_nanos(&u, Some(&no_cached)), Some(20_000));
        assert_eq!(format_usd(18_000), "0.000018");
        assert_eq!(format_usd(1_500_000_000), "1.5");
        assert_eq!(format_usd(0), "0.0");
        assert_eq!(format_usd(2_000_000_000), "2.0");
        assert_eq!(usd_to_nanos(0.25), Some(250_000_000));
        assert_eq!(usd_to_nanos(-1.0), None);
        assert_eq!(
            worst_case_nanos(100, Some(10), 4096, Some(&prices())),
            100_000 + 20_000
        );
        assert_eq!(worst_case_nanos(100, None, 4096, None), 0);
    }

    fn budget(limit: u64) -> Limits {
        Limits {
            budgets: vec![Budget {
                period: Period::Day,
                limit_nanos: limit,
                alert_threshold: 0.8,
                webhook_url: Some("https://hooks.example/x".into()),
            }],
            ..Default::default()
        }
    }

    fn admit_req(id: &str, limits: &Limits, reserve: u64) -> AdmitRequest {
        AdmitRequest {
            request_id: id.into(),
            limits: limits.clone(),
            reserve_nanos: reserve,
            user: None,
            user_cap_nanos: None,
            hold_ms: 60_000,
        }
    }

    fn settle_req(id: &str, limits: &Limits, cost: u64) -> SettleRequest {
        SettleRequest {
            request_id: id.into(),
            limits: limits.clone(),
            cost_nanos: cost,
            tokens: 10,
            user: None,
        }
    }

    const NOW: u64 = 1_795_246_500_000;

    #[test]
    fn reservations_make_concurrency_exact() {
        let limits = budget(1_000);
        let mut g = TenantGate::default();
        // 50 concurrent requests each reserving 30: exactly 33 fit.
        let admitted = (0..50)
            .filter(|i| {
                g.admit(None, &admit_req(&format!("r{i}"), &limits, 30), NOW)
                    .ok
            })
            .count();
        assert_eq!(admitted, 33);
        let refused = g.admit(None, &admit_req("late", &limits, 30), NOW);
        assert_eq!(refused.refusal, Some(Refusal::BudgetExceeded));
        assert_eq!(refused.period, Some(Period::Day));
        assert_eq!(refused.resets_ms, Some(day_start_ms(NOW) + DAY_MS));
        // Settling at the real (smaller) cost frees room.
        for i in 0..33 {
            g.settle(None, &settle_req(&format!("r{i}"), &limits, 20), NOW);
        }
        let v = g.view(&limits, NOW);
        assert_eq!((v[0].spent_nanos, v[0].reserved_nanos), (660, 0));
        assert!(g.admit(None, &admit_req("after", &limits, 30), NOW).ok);
    }

    #[test]
    fn reservations_expire() {
        let limits = budget(100);
        let mut g = TenantGate::default();
        assert!(g.admit(None, &admit_req("a", &limits, 100), NOW).ok);
        assert!(!g.admit(None, &admit_req("b", &limits, 1), NOW).ok);
        assert!(
            g.admit(None, &admit_req("c", &limits, 1), NOW + 61_000).ok,
            "a's hold expired"
        );
    }

    #[test]
    fn soft_alert_fires_once_per_period() {
        let limits = budget(1_000);
        let mut g = TenantGate::default();
        assert!(g
            .settle(None, &settle_req("a", &limits, 700), NOW)
            .alerts
            .is_empty());
        let fired = g.settle(None, &settle_req("b", &limits, 150), NOW).alerts;
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].spent_nanos, 850);
        assert!(g
            .settle(None, &settle_req("c", &limits, 10), NOW)
            .alerts
            .is_empty());
        // The next day is a new period: spend restarts and the alert may fire again.
        let tomorrow = NOW + DAY_MS;
        assert!(g.admit(None, &admit_req("d", &limits, 900), tomorrow).ok);
        assert_eq!(
            g.settle(None, &settle_req("d", &limits, 900), tomorrow)
                .alerts
                .len(),
            1
        );
    }

    #[test]
    fn rate_limits_refuse_with_retry_after() {
        let limits = Limits {
            rpm: Some(3),
            ..Default::default()
        };
        let mut g = TenantGate::default();
        for i in 0..3 {
            assert!(
                g.admit(None, &admit_req(&format!("{i}"), &limits, 0), NOW)
                    .ok
            );
        }
        let r = g.admit(None, &admit_req("x", &limits, 0), NOW);
        assert_eq!(r.refusal, Some(Refusal::RateLimited));
        let wait = r.retry_after_s.unwrap();
        assert!((1..=120).contains(&wait), "{wait}");
        assert!(
            g.admit(None, &admit_req("y", &limits, 0), NOW + wait * 1000)
                .ok
        );
    }

    #[test]
    fn token_rate_limit_counts_settled_tokens() {
        let limits = Limits {
            tpm: Some(15),
            ..Default::default()
        };
        let mut g = TenantGate::default();
        assert!(g.admit(None, &admit_req("a", &limits, 0), NOW).ok);
        g.settle(None, &settle_req("a", &limits, 0), NOW); // 10 tokens
        assert!(g.admit(None, &admit_req("b", &limits, 0), NOW).ok);
        g.settle(None, &settle_req("b", &limits, 0), NOW); // 20 tokens
        assert_eq!(
            g.admit(None, &admit_req("c", &limits, 0), NOW).refusal,
            Some(Refusal::TokenRateLimited)
        );
    }

    #[test]
    fn end_user_limits_and_caps() {
        let limits = Limits {
            user_rpm: Some(2),
            ..Default::default()
        };
        let mut g = TenantGate::default();
        let mut u = UserGate::default();
        let mut req = admit_req("a", &limits, 0);
        req.user = Some("u1".into());
        assert!(g.admit(Some(&mut u), &req, NOW).ok);
        assert!(g.admit(Some(&mut u), &req, NOW).ok);
        assert_eq!(
            g.admit(Some(&mut u), &req, NOW).refusal,
            Some(Refusal::UserRateLimited)
        );
        // Another user is unaffected.
        let mut u2 = UserGate::default();
        assert!(g.admit(Some(&mut u2), &req, NOW).ok);
        // A daily cap from the token.
        let mut capped = UserGate::default();
        let mut req = admit_req("c1", &Limits::default(), 60);
        req.user_cap_nanos = Some(100);
        assert!(g.admit(Some(&mut capped), &req, NOW).ok);
        req.request_id = "c2".into();
        assert_eq!(
            g.admit(Some(&mut capped), &req, NOW).refusal,
            Some(Refusal::UserBudgetExceeded)
        );
    }

    #[test]
    fn far_from_cap_needs_room_for_many_worst_cases() {
        let view = |spent| SpendView {
            period: Period::Day,
            start_ms: 0,
            spent_nanos: spent,
            reserved_nanos: 0,
            limit_nanos: 1_000_000,
        };
        assert!(far_from_cap(&[view(0)], 100));
        assert!(!far_from_cap(&[view(850_000)], 100), "inside the last 20%");
        assert!(
            !far_from_cap(&[view(0)], 30_000),
            "fewer than 50 worst cases of room"
        );
        assert!(far_from_cap(&[], 1_000_000_000), "no budget");
    }

    #[test]
    fn gate_state_round_trips_as_json() {
        let limits = budget(1_000);
        let mut g = TenantGate::default();
        g.admit(None, &admit_req("a", &limits, 5), NOW);
        let back = TenantGate::from_json(g.to_json().as_bytes());
        assert_eq!(back, Ok(g));
    }
}
