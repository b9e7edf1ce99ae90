//! The exact-match response cache: canonical keys, policy, per-request control, stored answers,
//! stream accumulation and replay, and in-isolate coalescing. Pure: the edge does the KV I/O.
//!
//! Per request the edge calls, in order (`docs/CACHE.md` has the details):
//!
//! 1. [`CacheHeaders::parse`] (an invalid header is a 400), then [`decide`] → [`CacheDecision`].
//! 2. If `decision.read`: KV get `decision.key` → [`CacheDecision::lookup`].
//!    `Hit` → answer with [`Entry::body`] or [`Entry::replay`] (`HIT`, `age`); `Stale` → keep
//!    it for stale-if-error; `Miss` → go on.
//! 3. The attempt loop. If it fails and a stale entry is held, answer with it (`STALE`).
//! 4. The answer: non-streamed, the upstream `chat.completion`; streamed, a
//!    [`StreamAccumulator`] fed the bytes sent to the caller, then `finish()`.
//! 5. If `decision.write`: [`CacheDecision::store`] → KV put `decision.key` with
//!    `expiration_ttl = decision.kv_expiration_ttl()`, inside `ctx.wait_until`.

mod coalesce;
mod entry;
mod key;
mod stream;

pub use coalesce::{Coalescer, Role, Ticket, MAX_KEYS, MAX_WAITERS};
pub use entry::{check_storable, Entry, EntryUsage, Freshness, ENTRY_VERSION, MAX_ENTRY_BYTES};
pub use key::{
    is_name, kv_key, request_hash, shared_prefix, tenant_prefix, EXCLUDED_FIELDS, KEY_VERSION,
};
pub use stream::{pieces, replay_sse, StreamAccumulator, PIECE_BYTES};

use crate::chat::ChatRequest;
use crate::config::ConfigError;
use crate::error::GatewayError;
use crate::usage::Usage;
use serde_json::Value;

/// The cache status response header: `HIT`, `MISS`, `BYPASS` or `STALE`.
pub const HEADER_STATUS: &str = "x-switchyard-cache";
/// The age of a served entry in seconds (on `HIT` and `STALE`).
pub const HEADER_AGE: &str = "age";
/// Request header: cache this answer for N seconds (also an opt-in for non-deterministic requests).
pub const HEADER_TTL: &str = "x-switchyard-cache-ttl";
/// Request header: a partition inside the caller's scope.
pub const HEADER_NAMESPACE: &str = "x-switchyard-cache-namespace";

/// The longest TTL (and stale window): 365 days.
pub const MAX_TTL_S: u32 = 31_536_000;
/// KV's shortest `expirationTtl`.
pub const KV_MIN_EXPIRATION_TTL_S: u32 = 60;

/// A route's cache policy (`routes[i].cache` in the config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachePolicy {
    /// Off unless a route turns it on.
    pub enabled: bool,
    /// How long an entry is served (1–31536000 s; default 3600).
    pub ttl_s: u32,
    /// Share entries across tenants under this name (1–64 of `[A-Za-z0-9._-]`) instead of
    /// scoping them per tenant.
    pub shared_namespace: Option<String>,
    /// Store answers that call tools (default false).
    pub cache_tool_calls: bool,
    /// Store answers to requests without `temperature: 0` (default false).
    pub allow_nondeterministic: bool,
    /// After `ttl_s`, serve the entry for this long when every upstream attempt fails (0 = off).
    pub stale_if_error_s: u32,
}

impl Default for CachePolicy {
    fn default() -> Self {
        CachePolicy {
            enabled: false,
            ttl_s: 3600,
            shared_namespace: None,
            cache_tool_calls: false,
            allow_nondeterministic: false,
            stale_if_error_s: 0,
        }
    }
}

/// The policy's fields, in order.
const POLICY_FIELDS: &[&str] = &[
    "enabled",
    "ttl_s",
    "shared_namespace",
    "cache_tool_calls",
    "allow_nondeterministic",
    "stale_if_error_s",
];

impl CachePolicy {
    /// Read the policy from its JSON object at path `at` (a missing field takes its default;
    /// unknown fields and wrong types are errors). Bounds are [`CachePolicy::validate`]'s.
    pub fn read(v: &Value, at: String) -> Result<CachePolicy, ConfigError> {
        let o = crate::config::Obj::new(v, at, "struct CachePolicy", POLICY_FIELDS)?;
        let d = CachePolicy::default();
        let max = u64::from(u32::MAX);
        Ok(CachePolicy {
            enabled: o.flag("enabled")?,
            ttl_s: o.uint_or("ttl_s", "u32", max, d.ttl_s.into())? as u32,
            shared_namespace: o.opt_string("shared_namespace")?,
            cache_tool_calls: o.flag("cache_tool_calls")?,
            allow_nondeterministic: o.flag("allow_nondeterministic")?,
            stale_if_error_s: o.uint_or("stale_if_error_s", "u32", max, 0)? as u32,
        })
    }

    /// Check the bounds; `at` is the policy's path (`routes[0].cache`).
    pub fn validate(&self, at: &str) -> Result<(), ConfigError> {
        let err = |f: &str, m: &str| ConfigError {
            path: format!("{at}.{f}"),
            message: m.into(),
        };
        if !(1..=MAX_TTL_S).contains(&self.ttl_s) {
            return Err(err("ttl_s", "must be between 1 and 31536000"));
        }
        if self.stale_if_error_s > MAX_TTL_S {
            return Err(err("stale_if_error_s", "must be between 0 and 31536000"));
        }
        if self
            .shared_namespace
            .as_deref()
            .is_some_and(|s| !is_name(s))
        {
            return Err(err(
                "shared_namespace",
                "must be 1-64 characters of letters, digits, '.', '_' or '-'",
            ));
        }
        Ok(())
    }
}

/// What the caller asked of the cache through request headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheHeaders {
    /// `Cache-Control: no-cache`: do not answer from the cache.
    pub no_cache: bool,
    /// `Cache-Control: no-store`: do not store the answer.
    pub no_store: bool,
    /// `x-switchyard-cache-ttl`.
    pub ttl_s: Option<u32>,
    /// `x-switchyard-cache-namespace`.
    pub namespace: Option<String>,
}

fn bad_header(name: &str, rule: &str, value: &str) -> GatewayError {
    let shown: String = value.chars().take(40).collect();
    GatewayError::invalid(format!("`{name}` must be {rule}, got {shown:?}"), name)
}

impl CacheHeaders {
    /// Read the three headers (as the platform joins repeated headers: with `, `). Other
    /// `Cache-Control` directives are ignored.
    pub fn parse(
        cache_control: Option<&str>,
        ttl: Option<&str>,
        namespace: Option<&str>,
    ) -> Result<CacheHeaders, GatewayError> {
        let mut h = CacheHeaders::default();
        for d in cache_control.unwrap_or("").split(',') {
            let name = d.split('=').next().unwrap_or("").trim();
            h.no_cache |= name.eq_ignore_ascii_case("no-cache");
            h.no_store |= name.eq_ignore_ascii_case("no-store");
        }
        if let Some(v) = ttl {
            let t = v.trim();
            h.ttl_s = Some(
                t.parse::<u32>()
                    .ok()
                    .filter(|n| {
                        t.bytes().all(|b| b.is_ascii_digit()) && (1..=MAX_TTL_S).contains(n)
                    })
                    .ok_or_else(|| bad_header(HEADER_TTL, "whole seconds from 1 to 31536000", v))?,
            );
        }
        if let Some(v) = namespace {
            if !is_name(v.trim()) {
                return Err(bad_header(
                    HEADER_NAMESPACE,
                    "1-64 characters of letters, digits, '.', '_' or '-'",
                    v,
                ));
            }
            h.namespace = Some(v.trim().to_string());
        }
        Ok(h)
    }
}

/// The `x-switchyard-cache` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Answered from a fresh entry.
    Hit,
    /// Answered upstream; the cache was consulted and/or will be written.
    Miss,
    /// Answered upstream; the cache took no part.
    Bypass,
    /// Every upstream attempt failed; answered from an entry inside its stale-if-error window.
    Stale,
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "HIT",
            CacheStatus::Miss => "MISS",
            CacheStatus::Bypass => "BYPASS",
            CacheStatus::Stale => "STALE",
        }
    }
}

/// The outcome of a cache read.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// Serve it (`HIT`).
    Hit(Entry),
    /// Go upstream; serve it (`STALE`) only if every attempt fails.
    Stale(Entry),
    Miss,
}

/// What to do with the cache for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheDecision {
    /// Look the key up before going upstream.
    pub read: bool,
    /// Store a storable answer under the key.
    pub write: bool,
    /// The KV key (empty when neither reading nor writing).
    pub key: String,
    /// Freshness of a stored answer.
    pub ttl_s: u32,
    /// Stale-if-error window of a stored answer.
    pub stale_s: u32,
    pub cache_tool_calls: bool,
    /// Why the cache takes no part (`None` when it does), for the log line.
    pub bypass: Option<&'static str>,
}

/// Whether the request asks for greedy decoding: `temperature` present and 0. `top_p` alone
/// does not count (providers treat `top_p: 0` inconsistently).
pub fn is_deterministic(req: &ChatRequest) -> bool {
    req.get("temperature").and_then(Value::as_f64) == Some(0.0)
}

/// Decide for one request. `route` is the public model name; `tenant` the authenticated
/// tenant id (a fixed id such as `default` when the gateway runs without tenants).
pub fn decide(
    policy: &CachePolicy,
    route: &str,
    req: &ChatRequest,
    headers: &CacheHeaders,
    tenant: &str,
) -> CacheDecision {
    let bypass = |why| CacheDecision {
        read: false,
        write: false,
        key: String::new(),
        ttl_s: 0,
        stale_s: 0,
        cache_tool_calls: false,
        bypass: Some(why),
    };
    let deterministic = is_deterministic(req);
    if !policy.enabled {
        return bypass("disabled for the route");
    }
    if req.n() > 1 && !deterministic {
        return bypass("n > 1 without temperature 0");
    }
    if !(deterministic || policy.allow_nondeterministic || headers.ttl_s.is_some()) {
        return bypass("not deterministic (no temperature 0)");
    }
    if headers.no_cache && headers.no_store {
        return bypass("cache-control: no-cache, no-store");
    }
    CacheDecision {
        read: !headers.no_cache,
        write: !headers.no_store,
        key: kv_key(
            tenant,
            policy.shared_namespace.as_deref(),
            headers.namespace.as_deref(),
            route,
            &req.body,
        ),
        ttl_s: headers.ttl_s.unwrap_or(policy.ttl_s),
        stale_s: policy.stale_if_error_s,
        cache_tool_calls: policy.cache_tool_calls,
        bypass: None,
    }
}

impl CacheDecision {
    /// The status of an answer that came from upstream.
    pub fn upstream_status(&self) -> CacheStatus {
        if self.read || self.write {
            CacheStatus::Miss
        } else {
            CacheStatus::Bypass
        }
    }

    /// Read what KV returned for `key`: a fresh entry is a hit; one past its TTL is kept for
    /// stale-if-error only while inside both its own window and the route's current one;
    /// anything else (nothing, unreadable, expired, reading not allowed) is a miss.
    pub fn lookup(&self, kv_value: Option<&[u8]>, now_ms: u64) -> Lookup {
        let Some(e) = kv_value.filter(|_| self.read).and_then(Entry::decode) else {
            return Lookup::Miss;
        };
        match e.freshness_with(now_ms, e.stale_s.min(self.stale_s)) {
            Freshness::Fresh => Lookup::Hit(e),
            Freshness::Stale => Lookup::Stale(e),
            Freshness::Expired => Lookup::Miss,
        }
    }

    /// KV's `expirationTtl` for the write: the TTL plus the stale window, at least KV's 60 s
    /// minimum (freshness itself is decided by [`Entry::freshness`], not by KV).
    pub fn kv_expiration_ttl(&self) -> u32 {
        self.ttl_s
            .saturating_add(self.stale_s)
            .max(KV_MIN_EXPIRATION_TTL_S)
    }

    /// The KV value for an answer, or why it is not stored (not to be written, not storable,
    /// too large). `usage` is what the answer cost (from the provider stream or answer); when
    /// `None`, the completion's own `usage` is used. The completion gets a `usage` object if it
    /// has none, so a replay can always send one.
    pub fn store(
        &self,
        now_ms: u64,
        provider: &str,
        model: &str,
        usage: Option<Usage>,
        mut completion: Value,
    ) -> Result<Vec<u8>, &'static str> {
        if !self.write {
            return Err("not written (bypass or no-store)");
        }
        check_storable(&completion, self.cache_tool_calls)?;
        let from_body = completion
            .get("usage")
            .filter(|u| u.is_object())
            .map(Usage::from_openai);
        let usage = usage.or(from_body).unwrap_or_default();
        if from_body.is_none() {
            if let Some(o) = completion.as_object_mut() {
                o.insert("usage".into(), usage.to_openai());
            }
        }
        Entry {
            v: ENTRY_VERSION,
            created_ms: now_ms,
            ttl_s: self.ttl_s,
            stale_s: self.stale_s,
            model: model.to_string(),
            provider: provider.to_string(),
            usage: usage.into(),
            completion,
        }
        .encode()
    }
}

#[cfg(test)]
mod tests;
