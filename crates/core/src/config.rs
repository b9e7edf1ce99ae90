//! Routing configuration: providers, routes, limits, retry and deadline policy.
//!
//! The configuration is one JSON document (the `SWITCHYARD_CONFIG` variable, see
//! `docs/CONFIG.md`). [`Config::parse`] rejects unknown keys and wrong types with the exact path
//! (`routes[1].targets[0].provider`), then [`Config::validate`] checks what types cannot:
//! references between providers and routes, URLs, non-empty lists, sane numbers. A bad config is
//! a [`ConfigError`] naming the field, never a panic.

use crate::vecmap::VecMap;
use serde_json::{Map, Value};
use std::fmt;

/// Default cap on a request body: 4 MiB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Config {
    pub max_body_bytes: u64,
    pub providers: Vec<ProviderConfig>,
    pub routes: Vec<RouteConfig>,
    /// Defaults for every route; a route's own `retry` / `deadlines` override field by field.
    pub retry: RetryOverrides,
    pub deadlines: DeadlineOverrides,
    /// Circuit breakers, probes and the isolate's health snapshot (`docs/ROUTING.md`): an
    /// object of [`HEALTH_KNOBS`], checked by `validate` (read as a JSON value and a table, which
    /// costs the worker less than a derived struct); read it with [`Config::health_knob`].
    pub health: serde_json::Value,
}

/// The `health` block's knobs: (name, lowest, highest). All optional; defaults in
/// `docs/ROUTING.md`.
pub const HEALTH_KNOBS: [(&str, u64, u64); 12] = [
    ("consecutive_failures", 1, 1_000_000),
    ("failure_rate_percent", 1, 100),
    ("min_volume", 1, 1_000_000),
    ("window_ms", 600, 3_600_000),
    ("cooldown_base_ms", 100, 3_600_000),
    ("cooldown_max_ms", 100, 86_400_000),
    ("jitter_percent", 0, 100),
    ("probe_timeout_ms", 100, 600_000),
    ("snapshot_ttl_ms", 100, 5_000),
    ("report_max_age_ms", 10, 10_000),
    ("report_failure_max_age_ms", 0, 10_000),
    ("idle_probe_ms", 0, 86_400_000),
];

/// The wire protocol a provider speaks. OpenAI-compatible services are presets of `openai`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    Openai,
    Anthropic,
    Gemini,
    Deepseek,
    Groq,
    Together,
    Mistral,
    Fireworks,
    Openrouter,
    Ollama,
}

/// The three wire formats behind the kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    OpenAi,
    Anthropic,
    Gemini,
}

impl ProviderKind {
    pub fn protocol(self) -> Protocol {
        match self {
            ProviderKind::Anthropic => Protocol::Anthropic,
            ProviderKind::Gemini => Protocol::Gemini,
            _ => Protocol::OpenAi,
        }
    }

    /// The base URL used when the provider entry names none.
    pub fn default_base_url(self) -> &'static str {
        match self {
            ProviderKind::Openai => "https://api.openai.com/v1",
            ProviderKind::Anthropic => "https://api.anthropic.com",
            ProviderKind::Gemini => "https://generativelanguage.googleapis.com/v1beta",
            ProviderKind::Deepseek => "https://api.deepseek.com/v1",
            ProviderKind::Groq => "https://api.groq.com/openai/v1",
            ProviderKind::Together => "https://api.together.xyz/v1",
            ProviderKind::Mistral => "https://api.mistral.ai/v1",
            ProviderKind::Fireworks => "https://api.fireworks.ai/inference/v1",
            ProviderKind::Openrouter => "https://openrouter.ai/api/v1",
            ProviderKind::Ollama => "http://127.0.0.1:11434/v1",
        }
    }

    /// Whether the provider works without an API key (a local Ollama).
    pub fn key_optional(self) -> bool {
        matches!(self, ProviderKind::Ollama)
    }
}

#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub id: String,
    pub kind: ProviderKind,
    pub base_url: Option<String>,
    /// Names of Worker secrets holding API keys (never the keys themselves).
    pub api_key_secrets: Vec<String>,
    /// Region tags, e.g. `["eu", "country:DE", "colo:FRA"]`: residency labels matched
    /// exactly, and locations for the `nearest` strategy (see `docs/ROUTING.md`).
    pub regions: Vec<String>,
    /// How a provider with several keys picks one: `first` (default) or `spread`.
    pub key_selection: KeySelection,
    /// Upstream models this provider serves, with their prices.
    pub models: VecMap<String, ModelConfig>,
}

impl ProviderConfig {
    pub fn base_url(&self) -> &str {
        self.base_url
            .as_deref()
            .unwrap_or_else(|| self.kind.default_base_url())
            .trim_end_matches('/')
    }
}

/// Prices are USD per one million tokens.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelConfig {
    pub input_per_mtok: Option<f64>,
    pub output_per_mtok: Option<f64>,
    pub cached_input_per_mtok: Option<f64>,
    pub context_window: Option<u64>,
}

/// How a route orders its targets (see `docs/ROUTING.md`). Every strategy avoids open circuits
/// and honours residency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Targets in the order given; the next one only when the previous failed.
    #[default]
    Priority,
    /// The first target drawn by `weight` (stable per request), the rest by weight.
    Weighted,
    /// The lowest p95 time to first byte first, exploring others now and then.
    Latency,
    /// The target whose provider's region tags best match the caller's location first.
    Nearest,
    /// The cheapest target whose context window fits the request first.
    Cost,
}

impl Strategy {
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Priority => "priority",
            Strategy::Weighted => "weighted",
            Strategy::Latency => "latency",
            Strategy::Nearest => "nearest",
            Strategy::Cost => "cost",
        }
    }
}

/// Which of a provider's keys a request uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeySelection {
    /// The first key that is set and not passed over (the others are spares).
    #[default]
    First,
    /// Spread requests across the keys by the request hash (skipping rate-limited ones).
    Spread,
}

/// A rule that picks the targets for requests it matches. Every condition given must hold; a
/// route's first matching tier wins; when none matches, all the route's targets are used.
#[derive(Debug, Clone, Default)]
pub struct TierConfig {
    /// Matches when the estimated prompt has at least this many tokens.
    pub min_prompt_tokens: Option<u64>,
    /// Matches when the estimated prompt has at most this many tokens.
    pub max_prompt_tokens: Option<u64>,
    /// Matches when the request has tools (`true`) or has none (`false`).
    pub tools: Option<bool>,
    /// Matches when the `x-switchyard-tier` header has this value (case-insensitive).
    pub hint: Option<String>,
    /// Indices into the route's `targets`, in order of preference.
    pub targets: Vec<usize>,
}

impl TierConfig {
    fn is_unconditional(&self) -> bool {
        self.min_prompt_tokens.is_none()
            && self.max_prompt_tokens.is_none()
            && self.tools.is_none()
            && self.hint.is_none()
    }
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// The public model name callers send as `model`.
    pub model: String,
    /// Ordered targets: the first is the primary, the rest are its fallbacks.
    pub targets: Vec<TargetConfig>,
    pub strategy: Strategy,
    /// A region tag every target's provider must carry (data residency), e.g. `"eu"`.
    pub residency: Option<String>,
    /// Rule-based tiers: the first that matches a request picks its targets.
    pub tiers: Vec<TierConfig>,
    /// `latency` strategy: the percentage of requests sent to another healthy target first
    /// (default 5).
    pub explore_percent: Option<u32>,
    /// A route (public model name) with a larger context window, tried when a target reports
    /// that the prompt does not fit.
    pub context_fallback: Option<String>,
    /// Whether a content-policy refusal may fail over to the next target (default: no).
    pub failover_on_content_policy: bool,
    pub retry: RetryOverrides,
    pub deadlines: DeadlineOverrides,
    /// The exact-match response cache for this route (off unless `enabled`; docs/CACHE.md).
    pub cache: crate::cache::CachePolicy,
}

#[derive(Debug, Clone)]
pub struct TargetConfig {
    pub provider: String,
    pub model: String,
    /// `weighted` strategy: this target's share (0–10000; 0: only as a fallback).
    pub weight: Option<u32>,
}

/// Retry policy knobs; every field optional so routes can override one at a time.
#[derive(Debug, Clone, Default)]
pub struct RetryOverrides {
    pub attempts_per_target: Option<u32>,
    pub max_attempts: Option<u32>,
    pub backoff_base_ms: Option<u64>,
    pub backoff_max_ms: Option<u64>,
    pub retry_after_cap_ms: Option<u64>,
}

/// Deadline knobs in milliseconds; every field optional.
#[derive(Debug, Clone, Default)]
pub struct DeadlineOverrides {
    pub headers_ms: Option<u64>,
    pub response_ms: Option<u64>,
    pub first_token_ms: Option<u64>,
    pub idle_ms: Option<u64>,
    pub total_ms: Option<u64>,
}

/// A config problem, naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() || self.path == "." {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

fn err(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        path: path.into(),
        message: message.into(),
    }
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn is_secret_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit()
}

impl Config {
    /// Parse and validate. The error names the offending field.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        // From bytes: the worker already has serde_json's value reader over a slice for request
        // bodies. A syntax error keeps serde_json's " at line L column C" (it has no path).
        let doc: Value = serde_json::from_slice(text.as_bytes())
            .map_err(|e| err(String::new(), e.to_string()))?;
        let config = read_config(&doc)?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_body_bytes < 1024 || self.max_body_bytes > 100 * 1024 * 1024 {
            return Err(err("max_body_bytes", "must be between 1024 and 104857600"));
        }
        if self.providers.is_empty() {
            return Err(err("providers", "at least one provider is required"));
        }
        for (i, p) in self.providers.iter().enumerate() {
            let at = |f: &str| format!("providers[{i}].{f}");
            if !is_identifier(&p.id) {
                return Err(err(
                    at("id"),
                    "must be 1-64 characters of letters, digits, '-', '_' or '.'",
                ));
            }
            if self.providers[..i].iter().any(|q| q.id == p.id) {
                return Err(err(at("id"), format!("duplicate provider id {:?}", p.id)));
            }
            let url = p.base_url();
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(err(at("base_url"), "must start with https:// or http://"));
            }
            if p.api_key_secrets.is_empty() && !p.kind.key_optional() {
                return Err(err(
                    at("api_key_secrets"),
                    "name at least one secret holding the API key",
                ));
            }
            for (k, tag) in p.regions.iter().enumerate() {
                if let Err(why) = crate::routing::parse_region_tag(tag) {
                    return Err(err(format!("providers[{i}].regions[{k}]"), why));
                }
            }
            for (k, name) in p.api_key_secrets.iter().enumerate() {
                if !is_secret_name(name) {
                    return Err(err(
                        format!("providers[{i}].api_key_secrets[{k}]"),
                        "must be a secret name (letters, digits, '_'), not a key",
                    ));
                }
            }
            for (name, m) in &p.models {
                let mat = |f: &str| format!("providers[{i}].models.{name}.{f}");
                for (field, v) in [
                    ("input_per_mtok", m.input_per_mtok),
                    ("output_per_mtok", m.output_per_mtok),
                    ("cached_input_per_mtok", m.cached_input_per_mtok),
                ] {
                    if let Some(v) = v {
                        if !v.is_finite() || v < 0.0 {
                            return Err(err(mat(field), "must be a non-negative number"));
                        }
                    }
                }
            }
        }
        if self.routes.is_empty() {
            return Err(err("routes", "at least one route is required"));
        }
        for (i, r) in self.routes.iter().enumerate() {
            let at = |f: &str| format!("routes[{i}].{f}");
            if r.model.is_empty() || r.model.len() > 256 {
                return Err(err(at("model"), "must be 1-256 characters"));
            }
            if self.routes[..i].iter().any(|q| q.model == r.model) {
                return Err(err(at("model"), format!("duplicate route {:?}", r.model)));
            }
            if r.targets.is_empty() {
                return Err(err(at("targets"), "at least one target is required"));
            }
            for (t, target) in r.targets.iter().enumerate() {
                let tat = |f: &str| format!("routes[{i}].targets[{t}].{f}");
                let Some(p) = self.providers.iter().find(|p| p.id == target.provider) else {
                    return Err(err(
                        tat("provider"),
                        format!("unknown provider {:?}", target.provider),
                    ));
                };
                if target.model.is_empty() {
                    return Err(err(tat("model"), "must not be empty"));
                }
                if !p.models.is_empty() && !p.models.contains_key(&target.model) {
                    return Err(err(
                        tat("model"),
                        format!(
                            "provider {:?} does not list model {:?} in its models",
                            p.id, target.model
                        ),
                    ));
                }
            }
            self.check_route_strategy(i, r)?;
            check_retry(&r.retry, &format!("routes[{i}].retry"))?;
            check_deadlines(&r.deadlines, &format!("routes[{i}].deadlines"))?;
            r.cache.validate(&format!("routes[{i}].cache"))?;
        }
        for (i, r) in self.routes.iter().enumerate() {
            if let Some(fb) = &r.context_fallback {
                if fb == &r.model || !self.routes.iter().any(|q| &q.model == fb) {
                    return Err(err(
                        format!("routes[{i}].context_fallback"),
                        format!("must name another route, not {fb:?}"),
                    ));
                }
            }
        }
        check_retry(&self.retry, "retry")?;
        check_deadlines(&self.deadlines, "deadlines")?;
        self.check_health()
    }

    /// A knob of the `health` block (validated), if set.
    pub fn health_knob(&self, name: &str) -> Option<u64> {
        self.health.get(name).and_then(serde_json::Value::as_u64)
    }

    fn check_health(&self) -> Result<(), ConfigError> {
        let obj = match &self.health {
            serde_json::Value::Null => return Ok(()),
            serde_json::Value::Object(o) => o,
            _ => return Err(err("health", "must be an object")),
        };
        for (k, v) in obj {
            let at = format!("health.{k}");
            let Some(&(_, lo, hi)) = HEALTH_KNOBS.iter().find(|(name, _, _)| name == k) else {
                return Err(err(at, format!("unknown field `{k}`")));
            };
            if !v.as_u64().is_some_and(|v| (lo..=hi).contains(&v)) {
                return Err(err(at, format!("must be a whole number {lo}-{hi}")));
            }
        }
        let knob = |k| self.health_knob(k);
        if let (Some(base), Some(max)) = (knob("cooldown_base_ms"), knob("cooldown_max_ms")) {
            if base > max {
                return Err(err(
                    "health.cooldown_base_ms",
                    "must not exceed cooldown_max_ms",
                ));
            }
        }
        Ok(())
    }

    /// Strategy fields, residency and tiers of route `i` (its targets are already known good).
    fn check_route_strategy(&self, i: usize, r: &RouteConfig) -> Result<(), ConfigError> {
        let at = |f: &str| format!("routes[{i}].{f}");
        let weighted = r.strategy == Strategy::Weighted;
        for (t, target) in r.targets.iter().enumerate() {
            let path = format!("routes[{i}].targets[{t}].weight");
            match target.weight {
                Some(_) if !weighted => {
                    return Err(err(
                        path,
                        "only applies when the route's strategy is \"weighted\"",
                    ))
                }
                Some(w) if w > 10_000 => return Err(err(path, "must be 0-10000")),
                None if weighted => {
                    return Err(err(
                        path,
                        "strategy \"weighted\" needs a weight on every target",
                    ))
                }
                _ => {}
            }
        }
        if weighted && r.targets.iter().all(|t| t.weight == Some(0)) {
            return Err(err(
                at("targets"),
                "strategy \"weighted\" needs at least one target with a weight above 0",
            ));
        }
        if let Some(p) = r.explore_percent {
            if r.strategy != Strategy::Latency {
                return Err(err(
                    at("explore_percent"),
                    "only applies when the route's strategy is \"latency\"",
                ));
            }
            if p > 50 {
                return Err(err(at("explore_percent"), "must be 0-50"));
            }
        }
        if let Some(tag) = &r.residency {
            if let Err(why) = crate::routing::parse_region_tag(tag) {
                return Err(err(at("residency"), why));
            }
            let served = r.targets.iter().any(|t| {
                self.provider(&t.provider)
                    .is_some_and(|p| crate::routing::has_region(p, tag))
            });
            if !served {
                return Err(err(
                    at("residency"),
                    format!("no target's provider has the region tag {tag:?}"),
                ));
            }
        }
        let mut unconditional = false;
        for (j, tier) in r.tiers.iter().enumerate() {
            let tat = |f: &str| format!("routes[{i}].tiers[{j}].{f}");
            if unconditional {
                return Err(err(
                    format!("routes[{i}].tiers[{j}]"),
                    "unreachable: an earlier tier matches every request",
                ));
            }
            unconditional = tier.is_unconditional();
            if let (Some(lo), Some(hi)) = (tier.min_prompt_tokens, tier.max_prompt_tokens) {
                if lo > hi {
                    return Err(err(
                        tat("min_prompt_tokens"),
                        "must not exceed max_prompt_tokens",
                    ));
                }
            }
            if let Some(h) = &tier.hint {
                if h.is_empty() || h.len() > 32 || !is_identifier(h) {
                    return Err(err(
                        tat("hint"),
                        "must be 1-32 characters of letters, digits, '-', '_' or '.'",
                    ));
                }
            }
            if tier.targets.is_empty() {
                return Err(err(tat("targets"), "at least one target index is required"));
            }
            for (k, &ix) in tier.targets.iter().enumerate() {
                let path = format!("routes[{i}].tiers[{j}].targets[{k}]");
                if ix >= r.targets.len() {
                    return Err(err(
                        path,
                        format!(
                            "must index the route's targets (0-{}), got {ix}",
                            r.targets.len() - 1
                        ),
                    ));
                }
                if tier.targets[..k].contains(&ix) {
                    return Err(err(path, format!("target {ix} is listed twice")));
                }
            }
        }
        Ok(())
    }

    pub fn route(&self, model: &str) -> Option<&RouteConfig> {
        self.routes.iter().find(|r| r.model == model)
    }

    pub fn provider(&self, id: &str) -> Option<&ProviderConfig> {
        self.providers.iter().find(|p| p.id == id)
    }
}

// ---------------------------------------------------------------------------------------------
// Reading the document
//
// By hand from a `serde_json::Value`, with serde's wording for errors ("unknown field `x`,
// expected one of …", "missing field `x`", "invalid type: …, expected …"): derived
// deserializers cost the worker tens of kilobytes. One set of non-generic helpers; a struct is
// an [`Obj`] whose keys were checked against its field list. Fields are read in declaration
// order and missing ones reported last, as serde does (it reads in document order instead, so
// with several problems the first one reported may differ).

const CONFIG_FIELDS: &[&str] = &[
    "max_body_bytes",
    "providers",
    "routes",
    "retry",
    "deadlines",
    "health",
];
const PROVIDER_FIELDS: &[&str] = &[
    "id",
    "kind",
    "base_url",
    "api_key_secrets",
    "regions",
    "key_selection",
    "models",
];
const MODEL_FIELDS: &[&str] = &[
    "input_per_mtok",
    "output_per_mtok",
    "cached_input_per_mtok",
    "context_window",
];
const ROUTE_FIELDS: &[&str] = &[
    "model",
    "targets",
    "strategy",
    "residency",
    "tiers",
    "explore_percent",
    "context_fallback",
    "failover_on_content_policy",
    "retry",
    "deadlines",
    "cache",
];
const TARGET_FIELDS: &[&str] = &["provider", "model", "weight"];
const TIER_FIELDS: &[&str] = &[
    "min_prompt_tokens",
    "max_prompt_tokens",
    "tools",
    "hint",
    "targets",
];
const RETRY_FIELDS: &[&str] = &[
    "attempts_per_target",
    "max_attempts",
    "backoff_base_ms",
    "backoff_max_ms",
    "retry_after_cap_ms",
];
const DEADLINE_FIELDS: &[&str] = &[
    "headers_ms",
    "response_ms",
    "first_token_ms",
    "idle_ms",
    "total_ms",
];

const KIND_NAMES: &[&str] = &[
    "openai",
    "anthropic",
    "gemini",
    "deepseek",
    "groq",
    "together",
    "mistral",
    "fireworks",
    "openrouter",
    "ollama",
];
const KINDS: [ProviderKind; 10] = [
    ProviderKind::Openai,
    ProviderKind::Anthropic,
    ProviderKind::Gemini,
    ProviderKind::Deepseek,
    ProviderKind::Groq,
    ProviderKind::Together,
    ProviderKind::Mistral,
    ProviderKind::Fireworks,
    ProviderKind::Openrouter,
    ProviderKind::Ollama,
];
const STRATEGY_NAMES: &[&str] = &["priority", "weighted", "latency", "nearest", "cost"];
const STRATEGIES: [Strategy; 5] = [
    Strategy::Priority,
    Strategy::Weighted,
    Strategy::Latency,
    Strategy::Nearest,
    Strategy::Cost,
];

/// `at.key` (just `key` at the top).
fn join(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_string()
    } else {
        format!("{at}.{key}")
    }
}

/// `at[i]`.
fn item(at: &str, i: usize) -> String {
    format!("{at}[{i}]")
}

/// serde's words for a JSON value in a type error. A float is written as serde_json writes
/// numbers (no `f64` formatting code).
fn unexpected(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean `{b}`"),
        Value::Number(n) if n.is_f64() => format!("floating point `{n}`"),
        Value::Number(n) => format!("integer `{n}`"),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "sequence".into(),
        Value::Object(_) => "map".into(),
    }
}

fn invalid_type(at: String, v: &Value, expected: &str) -> ConfigError {
    err(
        at,
        format!("invalid type: {}, expected {expected}", unexpected(v)),
    )
}

/// "unknown field `x`, expected one of `a`, `b`, `c`" (or "`a` or `b`", or "`a`").
fn unknown(what: &str, name: &str, expected: &[&str]) -> String {
    let mut m = format!("unknown {what} `{name}`, expected ");
    if expected.len() > 2 {
        m.push_str("one of ");
    }
    for (i, e) in expected.iter().enumerate() {
        if i > 0 {
            m.push_str(if expected.len() == 2 { " or " } else { ", " });
        }
        m.push('`');
        m.push_str(e);
        m.push('`');
    }
    m
}

/// A whole number up to `max` (`expected` names the type: `u64`, `u32`, `usize`).
fn uint(v: &Value, at: String, expected: &str, max: u64) -> Result<u64, ConfigError> {
    match v.as_u64() {
        Some(n) if n <= max => Ok(n),
        _ if v.is_i64() || v.is_u64() => Err(err(
            at,
            format!("invalid value: {}, expected {expected}", unexpected(v)),
        )),
        _ => Err(invalid_type(at, v, expected)),
    }
}

fn string(v: &Value, at: String) -> Result<String, ConfigError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        _ => Err(invalid_type(at, v, "a string")),
    }
}

fn array<'a>(v: &'a Value, at: &str) -> Result<&'a [Value], ConfigError> {
    match v {
        Value::Array(a) => Ok(a),
        _ => Err(invalid_type(at.to_string(), v, "a sequence")),
    }
}

/// The index of a unit variant in `names`.
fn variant(v: &Value, at: String, names: &[&str]) -> Result<usize, ConfigError> {
    match v {
        Value::String(s) => match names.iter().position(|n| n == s) {
            Some(i) => Ok(i),
            None => Err(err(at, unknown("variant", s, names))),
        },
        _ => Err(err(at, "expected value")),
    }
}

/// A JSON object read as a struct: its keys are all among the struct's fields.
pub(crate) struct Obj<'a> {
    map: &'a Map<String, Value>,
    at: String,
}

impl<'a> Obj<'a> {
    /// `v` as `expected` (`struct Name`) with these `fields`.
    pub(crate) fn new(
        v: &'a Value,
        at: String,
        expected: &str,
        fields: &[&str],
    ) -> Result<Obj<'a>, ConfigError> {
        let Value::Object(map) = v else {
            return Err(invalid_type(at, v, expected));
        };
        match map.keys().find(|k| !fields.contains(&k.as_str())) {
            Some(k) => Err(err(join(&at, k), unknown("field", k, fields))),
            None => Ok(Obj { map, at }),
        }
    }

    /// A field with a default: absent is `None`; present (null too) it must be read.
    fn field(&self, key: &str) -> Option<(&'a Value, String)> {
        self.map.get(key).map(|v| (v, join(&self.at, key)))
    }

    /// An `Option` field: absent or null is `None`.
    fn opt(&self, key: &str) -> Option<(&'a Value, String)> {
        self.field(key).filter(|(v, _)| !v.is_null())
    }

    fn missing(&self, key: &str) -> ConfigError {
        err(self.at.clone(), format!("missing field `{key}`"))
    }

    fn opt_uint(&self, key: &str, expected: &str, max: u64) -> Result<Option<u64>, ConfigError> {
        match self.opt(key) {
            Some((v, at)) => uint(v, at, expected, max).map(Some),
            None => Ok(None),
        }
    }

    fn opt_u32(&self, key: &str) -> Result<Option<u32>, ConfigError> {
        Ok(self
            .opt_uint(key, "u32", u32::MAX.into())?
            .map(|n| n as u32))
    }

    /// A whole number field that defaults to `default` (null is an error).
    pub(crate) fn uint_or(
        &self,
        key: &str,
        expected: &str,
        max: u64,
        default: u64,
    ) -> Result<u64, ConfigError> {
        match self.field(key) {
            Some((v, at)) => uint(v, at, expected, max),
            None => Ok(default),
        }
    }

    fn opt_f64(&self, key: &str) -> Result<Option<f64>, ConfigError> {
        match self.opt(key) {
            Some((v, at)) => match v.as_f64() {
                Some(f) => Ok(Some(f)),
                None => Err(invalid_type(at, v, "f64")),
            },
            None => Ok(None),
        }
    }

    /// A string field: `None` when absent, an error when null (not an `Option`).
    fn string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.field(key) {
            Some((v, at)) => string(v, at).map(Some),
            None => Ok(None),
        }
    }

    pub(crate) fn opt_string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.opt(key) {
            Some((v, at)) => string(v, at).map(Some),
            None => Ok(None),
        }
    }

    /// A boolean: `None` when absent, an error when null unless `nullable`.
    fn bool(&self, key: &str, nullable: bool) -> Result<Option<bool>, ConfigError> {
        match self.field(key) {
            Some((Value::Null, _)) if nullable => Ok(None),
            Some((v, at)) => match v.as_bool() {
                Some(b) => Ok(Some(b)),
                None => Err(invalid_type(at, v, "a boolean")),
            },
            None => Ok(None),
        }
    }

    /// A boolean that defaults to false.
    pub(crate) fn flag(&self, key: &str) -> Result<bool, ConfigError> {
        Ok(self.bool(key, false)?.unwrap_or(false))
    }

    /// A list of strings that defaults to empty.
    fn strings(&self, key: &str) -> Result<Vec<String>, ConfigError> {
        let mut out = Vec::new();
        if let Some((v, at)) = self.field(key) {
            for (i, s) in array(v, &at)?.iter().enumerate() {
                out.push(string(s, item(&at, i))?);
            }
        }
        Ok(out)
    }

    /// A unit variant's index among `names`, `None` when absent.
    fn variant(&self, key: &str, names: &[&str]) -> Result<Option<usize>, ConfigError> {
        match self.field(key) {
            Some((v, at)) => variant(v, at, names).map(Some),
            None => Ok(None),
        }
    }
}

fn read_config(doc: &Value) -> Result<Config, ConfigError> {
    let o = Obj::new(doc, String::new(), "struct Config", CONFIG_FIELDS)?;
    let max_body_bytes = o.uint_or("max_body_bytes", "u64", u64::MAX, DEFAULT_MAX_BODY_BYTES)?;
    let mut providers = None;
    if let Some((v, at)) = o.field("providers") {
        let mut list = Vec::new();
        for (i, p) in array(v, &at)?.iter().enumerate() {
            list.push(read_provider(p, item(&at, i))?);
        }
        providers = Some(list);
    }
    let mut routes = None;
    if let Some((v, at)) = o.field("routes") {
        let mut list = Vec::new();
        for (i, r) in array(v, &at)?.iter().enumerate() {
            list.push(read_route(r, item(&at, i))?);
        }
        routes = Some(list);
    }
    let retry = read_retry(&o)?;
    let deadlines = read_deadlines(&o)?;
    let health = o.field("health").map_or(Value::Null, |(v, _)| v.clone());
    let Some(providers) = providers else {
        return Err(o.missing("providers"));
    };
    let Some(routes) = routes else {
        return Err(o.missing("routes"));
    };
    Ok(Config {
        max_body_bytes,
        providers,
        routes,
        retry,
        deadlines,
        health,
    })
}

pub(crate) fn read_provider(v: &Value, at: String) -> Result<ProviderConfig, ConfigError> {
    let o = Obj::new(v, at, "struct ProviderConfig", PROVIDER_FIELDS)?;
    let id = o.string("id")?;
    let kind = o.variant("kind", KIND_NAMES)?;
    let base_url = o.opt_string("base_url")?;
    let api_key_secrets = o.strings("api_key_secrets")?;
    let regions = o.strings("regions")?;
    let key_selection = match o.variant("key_selection", &["first", "spread"])? {
        Some(1) => KeySelection::Spread,
        _ => KeySelection::First,
    };
    let mut models = VecMap::new();
    if let Some((v, at)) = o.field("models") {
        let Value::Object(map) = v else {
            return Err(invalid_type(at, v, "a map"));
        };
        for (name, m) in map {
            let m = Obj::new(m, join(&at, name), "struct ModelConfig", MODEL_FIELDS)?;
            let model = ModelConfig {
                input_per_mtok: m.opt_f64("input_per_mtok")?,
                output_per_mtok: m.opt_f64("output_per_mtok")?,
                cached_input_per_mtok: m.opt_f64("cached_input_per_mtok")?,
                context_window: m.opt_uint("context_window", "u64", u64::MAX)?,
            };
            models.insert(name.clone(), model);
        }
    }
    let Some(id) = id else {
        return Err(o.missing("id"));
    };
    let Some(kind) = kind else {
        return Err(o.missing("kind"));
    };
    Ok(ProviderConfig {
        id,
        kind: KINDS[kind],
        base_url,
        api_key_secrets,
        regions,
        key_selection,
        models,
    })
}

fn read_route(v: &Value, at: String) -> Result<RouteConfig, ConfigError> {
    let o = Obj::new(v, at, "struct RouteConfig", ROUTE_FIELDS)?;
    let model = o.string("model")?;
    let mut targets = None;
    if let Some((v, at)) = o.field("targets") {
        let mut list = Vec::new();
        for (i, t) in array(v, &at)?.iter().enumerate() {
            let t = Obj::new(t, item(&at, i), "struct TargetConfig", TARGET_FIELDS)?;
            let provider = t.string("provider")?;
            let model = t.string("model")?;
            let weight = t.opt_u32("weight")?;
            let Some(provider) = provider else {
                return Err(t.missing("provider"));
            };
            let Some(model) = model else {
                return Err(t.missing("model"));
            };
            list.push(TargetConfig {
                provider,
                model,
                weight,
            });
        }
        targets = Some(list);
    }
    let strategy = o.variant("strategy", STRATEGY_NAMES)?;
    let residency = o.opt_string("residency")?;
    let mut tiers = Vec::new();
    if let Some((v, at)) = o.field("tiers") {
        for (i, t) in array(v, &at)?.iter().enumerate() {
            tiers.push(read_tier(t, item(&at, i))?);
        }
    }
    let explore_percent = o.opt_u32("explore_percent")?;
    let context_fallback = o.opt_string("context_fallback")?;
    let failover_on_content_policy = o.flag("failover_on_content_policy")?;
    let retry = read_retry(&o)?;
    let deadlines = read_deadlines(&o)?;
    let cache = match o.field("cache") {
        Some((v, at)) => crate::cache::CachePolicy::read(v, at)?,
        None => crate::cache::CachePolicy::default(),
    };
    let Some(model) = model else {
        return Err(o.missing("model"));
    };
    let Some(targets) = targets else {
        return Err(o.missing("targets"));
    };
    Ok(RouteConfig {
        model,
        targets,
        strategy: strategy.map_or(Strategy::Priority, |i| STRATEGIES[i]),
        residency,
        tiers,
        explore_percent,
        context_fallback,
        failover_on_content_policy,
        retry,
        deadlines,
        cache,
    })
}

fn read_tier(v: &Value, at: String) -> Result<TierConfig, ConfigError> {
    let o = Obj::new(v, at, "struct TierConfig", TIER_FIELDS)?;
    let min_prompt_tokens = o.opt_uint("min_prompt_tokens", "u64", u64::MAX)?;
    let max_prompt_tokens = o.opt_uint("max_prompt_tokens", "u64", u64::MAX)?;
    let tools = o.bool("tools", true)?;
    let hint = o.opt_string("hint")?;
    let Some((v, at)) = o.field("targets") else {
        return Err(o.missing("targets"));
    };
    let mut targets = Vec::new();
    for (k, n) in array(v, &at)?.iter().enumerate() {
        targets.push(uint(n, item(&at, k), "usize", usize::MAX as u64)? as usize);
    }
    Ok(TierConfig {
        min_prompt_tokens,
        max_prompt_tokens,
        tools,
        hint,
        targets,
    })
}

/// The `retry` field of `o` (every knob optional).
fn read_retry(o: &Obj<'_>) -> Result<RetryOverrides, ConfigError> {
    let Some((v, at)) = o.field("retry") else {
        return Ok(RetryOverrides::default());
    };
    let r = Obj::new(v, at, "struct RetryOverrides", RETRY_FIELDS)?;
    let mut n = [None; 5];
    for (i, f) in RETRY_FIELDS.iter().enumerate() {
        // The first two are counts (u32), the rest milliseconds (u64).
        n[i] = if i < 2 {
            r.opt_uint(f, "u32", u32::MAX.into())?
        } else {
            r.opt_uint(f, "u64", u64::MAX)?
        };
    }
    let [attempts_per_target, max_attempts, backoff_base_ms, backoff_max_ms, retry_after_cap_ms] =
        n;
    Ok(RetryOverrides {
        attempts_per_target: attempts_per_target.map(|n| n as u32),
        max_attempts: max_attempts.map(|n| n as u32),
        backoff_base_ms,
        backoff_max_ms,
        retry_after_cap_ms,
    })
}

/// The `deadlines` field of `o` (every knob optional).
fn read_deadlines(o: &Obj<'_>) -> Result<DeadlineOverrides, ConfigError> {
    let Some((v, at)) = o.field("deadlines") else {
        return Ok(DeadlineOverrides::default());
    };
    let d = Obj::new(v, at, "struct DeadlineOverrides", DEADLINE_FIELDS)?;
    let mut n = [None; 5];
    for (slot, f) in n.iter_mut().zip(DEADLINE_FIELDS) {
        *slot = d.opt_uint(f, "u64", u64::MAX)?;
    }
    let [headers_ms, response_ms, first_token_ms, idle_ms, total_ms] = n;
    Ok(DeadlineOverrides {
        headers_ms,
        response_ms,
        first_token_ms,
        idle_ms,
        total_ms,
    })
}

fn check_retry(r: &RetryOverrides, at: &str) -> Result<(), ConfigError> {
    if let Some(n) = r.attempts_per_target {
        if !(1..=10).contains(&n) {
            return Err(err(format!("{at}.attempts_per_target"), "must be 1-10"));
        }
    }
    if let Some(n) = r.max_attempts {
        if !(1..=20).contains(&n) {
            return Err(err(format!("{at}.max_attempts"), "must be 1-20"));
        }
    }
    for (f, v) in [
        ("backoff_base_ms", r.backoff_base_ms),
        ("backoff_max_ms", r.backoff_max_ms),
        ("retry_after_cap_ms", r.retry_after_cap_ms),
    ] {
        if v.is_some_and(|v| v > 600_000) {
            return Err(err(format!("{at}.{f}"), "must be at most 600000"));
        }
    }
    Ok(())
}

fn check_deadlines(d: &DeadlineOverrides, at: &str) -> Result<(), ConfigError> {
    for (f, v) in [
        ("headers_ms", d.headers_ms),
        ("response_ms", d.response_ms),
        ("first_token_ms", d.first_token_ms),
        ("idle_ms", d.idle_ms),
        ("total_ms", d.total_ms),
    ] {
        if v.is_some_and(|v| !(10..=3_600_000).contains(&v)) {
            return Err(err(format!("{at}.{f}"), "must be between 10 and 3600000"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{
        "providers": [
            {"id": "oa", "kind": "openai", "api_key_secrets": ["OPENAI_API_KEY"],
             "models": {"gpt-4o-mini": {"input_per_mtok": 0.15, "output_per_mtok": 0.6}}},
            {"id": "local", "kind": "ollama"}
        ],
        "routes": [
            {"model": "small", "targets": [{"provider": "oa", "model": "gpt-4o-mini"},
                                            {"provider": "local", "model": "llama3"}]},
            {"model": "big", "targets": [{"provider": "local", "model": "llama3:70b"}]}
        ]
    }"#;

    fn with(f: impl FnOnce(&mut serde_json::Value)) -> Result<Config, ConfigError> {
        let mut v: serde_json::Value = serde_json::from_str(GOOD).expect("fixture is JSON");
        f(&mut v);
        Config::parse(&v.to_string())
    }

    #[test]
    fn good_config_parses_with_defaults() {
        let c = Config::parse(GOOD).expect("valid");
        assert_eq!(c.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert_eq!(c.route("small").map(|r| r.targets.len()), Some(2));
        assert_eq!(
            c.provider("local").map(|p| p.base_url()),
            Some("http://127.0.0.1:11434/v1")
        );
        assert!(c.route("nope").is_none());
    }

    #[test]
    fn unknown_key_names_its_path() {
        let e = with(|v| v["routes"][1]["targets"][0]["providr"] = "oa".into()).unwrap_err();
        assert_eq!(e.path, "routes[1].targets[0].providr");
        assert!(e.message.contains("unknown field `providr`"), "{e}");
    }

    #[test]
    fn missing_fields_name_the_object() {
        let e = Config::parse(
            r#"{"providers":[{"kind":"openai","api_key_secrets":["K"]}],"routes":[]}"#,
        )
        .unwrap_err();
        assert_eq!(e.path, "providers[0]");
        assert!(e.message.contains("missing field `id`"), "{e}");
        let e = with(|v| {
            v["routes"][1]["targets"][0] = serde_json::json!({"provider": "oa"});
        })
        .unwrap_err();
        assert_eq!(e.path, "routes[1].targets[0]");
    }

    #[test]
    fn paths_survive_pretty_printing_and_strings_with_brackets() {
        let text = r#"{
  "providers": [
    {"id": "a,[{", "kind": "openai", "api_key_secrets": ["K"]},
    {"id": "b", "kind": "openai", "api_key_secrets": ["K"], "regions": [1]}
  ],
  "routes": []
}"#;
        let e = Config::parse(text).unwrap_err();
        assert_eq!(e.path, "providers[1].regions[0]");
    }

    #[test]
    fn wrong_type_names_its_path() {
        let e = with(|v| v["max_body_bytes"] = "big".into()).unwrap_err();
        assert_eq!(e.path, "max_body_bytes");
        let e = with(|v| v["providers"][0]["kind"] = "openia".into()).unwrap_err();
        assert_eq!(e.path, "providers[0].kind");
        assert!(e.message.contains("unknown variant"), "{e}");
    }

    #[test]
    fn unknown_provider_reference() {
        let e = with(|v| v["routes"][0]["targets"][1]["provider"] = "nobody".into()).unwrap_err();
        assert_eq!(e.path, "routes[0].targets[1].provider");
    }

    #[test]
    fn model_must_be_listed_when_provider_lists_models() {
        let e = with(|v| v["routes"][0]["targets"][0]["model"] = "gpt-5".into()).unwrap_err();
        assert_eq!(e.path, "routes[0].targets[0].model");
    }

    #[test]
    fn secrets_are_names_not_keys() {
        let e =
            with(|v| v["providers"][0]["api_key_secrets"][0] = "sk-abc-123".into()).unwrap_err();
        assert_eq!(e.path, "providers[0].api_key_secrets[0]");
        let e = with(|v| v["providers"][0]["api_key_secrets"] = serde_json::json!([])).unwrap_err();
        assert_eq!(e.path, "providers[0].api_key_secrets");
    }

    #[test]
    fn duplicates_and_empties_rejected() {
        let e = with(|v| v["routes"][1]["model"] = "small".into()).unwrap_err();
        assert_eq!(e.path, "routes[1].model");
        let e = with(|v| v["providers"][1]["id"] = "oa".into()).unwrap_err();
        assert_eq!(e.path, "providers[1].id");
        let e = with(|v| v["routes"][0]["targets"] = serde_json::json!([])).unwrap_err();
        assert_eq!(e.path, "routes[0].targets");
        let e = with(|v| v["routes"] = serde_json::json!([])).unwrap_err();
        assert_eq!(e.path, "routes");
    }

    #[test]
    fn numbers_are_bounded() {
        let e =
            with(|v| v["routes"][0]["deadlines"] = serde_json::json!({"idle_ms": 0})).unwrap_err();
        assert_eq!(e.path, "routes[0].deadlines.idle_ms");
        let e = with(|v| v["retry"] = serde_json::json!({"max_attempts": 99})).unwrap_err();
        assert_eq!(e.path, "retry.max_attempts");
        let e =
            with(|v| v["providers"][0]["models"]["gpt-4o-mini"]["input_per_mtok"] = (-1).into())
                .unwrap_err();
        assert_eq!(e.path, "providers[0].models.gpt-4o-mini.input_per_mtok");
        let e = with(|v| v["max_body_bytes"] = 10.into()).unwrap_err();
        assert_eq!(e.path, "max_body_bytes");
    }

    #[test]
    fn route_cache_policy_parses_and_names_its_fields() {
        let c = Config::parse(GOOD).expect("valid");
        assert!(!c.routes[0].cache.enabled, "off by default");
        let c =
            with(|v| v["routes"][0]["cache"] = serde_json::json!({"enabled": true, "ttl_s": 60}))
                .expect("valid");
        assert!(c.routes[0].cache.enabled);
        assert_eq!(c.routes[0].cache.ttl_s, 60);
        let e = with(|v| v["routes"][1]["cache"] = serde_json::json!({"ttl_s": 0})).unwrap_err();
        assert_eq!(e.path, "routes[1].cache.ttl_s");
        let e = with(|v| v["routes"][0]["cache"] = serde_json::json!({"ttl": 5})).unwrap_err();
        assert_eq!(e.path, "routes[0].cache.ttl");
        let e = with(|v| v["routes"][0]["cache"] = serde_json::json!({"shared_namespace": "a:b"}))
            .unwrap_err();
        assert_eq!(e.path, "routes[0].cache.shared_namespace");
    }

    #[test]
    fn context_fallback_must_exist() {
        let e = with(|v| v["routes"][0]["context_fallback"] = "huge".into()).unwrap_err();
        assert_eq!(e.path, "routes[0].context_fallback");
        assert!(with(|v| v["routes"][0]["context_fallback"] = "big".into()).is_ok());
    }

    #[test]
    fn strategies_parse_and_default_to_priority() {
        let c = Config::parse(GOOD).expect("valid");
        assert_eq!(c.routes[0].strategy, Strategy::Priority);
        assert_eq!(c.providers[0].key_selection, KeySelection::First);
        for name in ["priority", "latency", "nearest", "cost"] {
            let c = with(|v| v["routes"][0]["strategy"] = name.into()).expect(name);
            assert_eq!(c.routes[0].strategy.name(), name);
        }
        let e = with(|v| v["routes"][0]["strategy"] = "fastest".into()).unwrap_err();
        assert_eq!(e.path, "routes[0].strategy");
        let c = with(|v| v["providers"][0]["key_selection"] = "spread".into()).unwrap();
        assert_eq!(c.providers[0].key_selection, KeySelection::Spread);
    }

    #[test]
    fn weights_belong_to_weighted_routes() {
        let weighted = |v: &mut serde_json::Value, a: serde_json::Value, b: serde_json::Value| {
            v["routes"][0]["strategy"] = "weighted".into();
            v["routes"][0]["targets"][0]["weight"] = a;
            v["routes"][0]["targets"][1]["weight"] = b;
        };
        let c = with(|v| weighted(v, 70.into(), 30.into())).expect("valid");
        assert_eq!(c.routes[0].targets[0].weight, Some(70));
        // (weights, failing path)
        let cases: [(serde_json::Value, serde_json::Value, &str); 4] = [
            (
                70.into(),
                serde_json::Value::Null,
                "routes[0].targets[1].weight",
            ),
            (0.into(), 0.into(), "routes[0].targets"),
            (10_001.into(), 1.into(), "routes[0].targets[0].weight"),
            ((-1).into(), 1.into(), "routes[0].targets[0].weight"),
        ];
        for (a, b, path) in cases {
            let e = with(|v| weighted(v, a.clone(), b.clone())).unwrap_err();
            assert_eq!(e.path, path, "{a} {b}: {e}");
        }
        let e = with(|v| v["routes"][0]["targets"][0]["weight"] = 5.into()).unwrap_err();
        assert_eq!(e.path, "routes[0].targets[0].weight");
        assert!(e.message.contains("weighted"), "{e}");
    }

    #[test]
    fn explore_percent_belongs_to_latency_routes() {
        let c = with(|v| {
            v["routes"][0]["strategy"] = "latency".into();
            v["routes"][0]["explore_percent"] = 10.into();
        })
        .expect("valid");
        assert_eq!(c.routes[0].explore_percent, Some(10));
        let e = with(|v| v["routes"][0]["explore_percent"] = 10.into()).unwrap_err();
        assert_eq!(e.path, "routes[0].explore_percent");
        let e = with(|v| {
            v["routes"][0]["strategy"] = "latency".into();
            v["routes"][0]["explore_percent"] = 51.into();
        })
        .unwrap_err();
        assert_eq!(e.path, "routes[0].explore_percent");
    }

    #[test]
    fn region_tags_and_residency() {
        let c = with(|v| {
            v["providers"][0]["regions"] = serde_json::json!(["eu", "country:DE", "colo:FRA"]);
            v["routes"][0]["residency"] = "EU".into();
        })
        .expect("valid");
        assert_eq!(c.routes[0].residency.as_deref(), Some("EU"));
        let e = with(|v| v["providers"][1]["regions"] = serde_json::json!(["eu", "colo:Paris"]))
            .unwrap_err();
        assert_eq!(e.path, "providers[1].regions[1]");
        assert!(e.message.contains("colo:"), "{e}");
        let e = with(|v| v["providers"][1]["regions"] = serde_json::json!(["city:x"])).unwrap_err();
        assert_eq!(e.path, "providers[1].regions[0]");
        // A residency no target can satisfy is a config error, not a runtime 503 on every call.
        let e = with(|v| v["routes"][1]["residency"] = "eu".into()).unwrap_err();
        assert_eq!(e.path, "routes[1].residency");
        assert!(e.message.contains("\"eu\""), "{e}");
        let e = with(|v| v["routes"][1]["residency"] = "".into()).unwrap_err();
        assert_eq!(e.path, "routes[1].residency");
    }

    #[test]
    fn tiers_are_checked() {
        let tiers =
            |t: serde_json::Value| move |v: &mut serde_json::Value| v["routes"][0]["tiers"] = t;
        let c = with(tiers(serde_json::json!([
            {"max_prompt_tokens": 2000, "tools": false, "targets": [0]},
            {"hint": "large", "targets": [1, 0]},
            {"targets": [1]}
        ])))
        .expect("valid");
        assert_eq!(c.routes[0].tiers.len(), 3);
        assert_eq!(c.routes[0].tiers[1].hint.as_deref(), Some("large"));
        let cases = [
            (
                serde_json::json!([{"targets": []}]),
                "routes[0].tiers[0].targets",
            ),
            (
                serde_json::json!([{"targets": [2]}]),
                "routes[0].tiers[0].targets[0]",
            ),
            (
                serde_json::json!([{"targets": [1, 1]}]),
                "routes[0].tiers[0].targets[1]",
            ),
            (
                serde_json::json!([{"min_prompt_tokens": 5, "max_prompt_tokens": 4, "targets": [0]}]),
                "routes[0].tiers[0].min_prompt_tokens",
            ),
            (
                serde_json::json!([{"hint": "a b", "targets": [0]}]),
                "routes[0].tiers[0].hint",
            ),
            (
                serde_json::json!([{"targets": [0]}, {"tools": true, "targets": [1]}]),
                "routes[0].tiers[1]",
            ),
            (
                serde_json::json!([{"targets": [0], "when": 1}]),
                "routes[0].tiers[0].when",
            ),
        ];
        for (t, path) in cases {
            let e = with(tiers(t.clone())).unwrap_err();
            assert_eq!(e.path, path, "{t}: {e}");
        }
    }

    #[test]
    fn health_knobs_are_bounded_and_named() {
        let c = with(|v| {
            v["health"] = serde_json::json!({"consecutive_failures": 3, "cooldown_base_ms": 1000,
                                             "snapshot_ttl_ms": 500, "jitter_percent": 0});
        })
        .expect("valid");
        assert_eq!(c.health_knob("consecutive_failures"), Some(3));
        assert_eq!(c.health_knob("jitter_percent"), Some(0));
        assert_eq!(c.health_knob("min_volume"), None);
        assert_eq!(Config::parse(GOOD).unwrap().health_knob("min_volume"), None);
        let cases = [
            (
                serde_json::json!({"consecutive_failures": 0}),
                "health.consecutive_failures",
            ),
            (
                serde_json::json!({"failure_rate_percent": 101}),
                "health.failure_rate_percent",
            ),
            (
                serde_json::json!({"snapshot_ttl_ms": 60000}),
                "health.snapshot_ttl_ms",
            ),
            (
                serde_json::json!({"cooldown_base_ms": 5000, "cooldown_max_ms": 1000}),
                "health.cooldown_base_ms",
            ),
            (serde_json::json!({"cooldown": 1}), "health.cooldown"),
            (
                serde_json::json!({"jitter_percent": 2.5}),
                "health.jitter_percent",
            ),
            (serde_json::json!({"window_ms": "1m"}), "health.window_ms"),
            (serde_json::json!([1]), "health"),
        ];
        for (h, path) in cases {
            let e = with(|v| v["health"] = h.clone()).unwrap_err();
            assert_eq!(e.path, path, "{h}: {e}");
        }
        let e = with(|v| v["health"] = serde_json::json!({"cooldown": 1})).unwrap_err();
        assert_eq!(e.message, "unknown field `cooldown`");
    }

    #[test]
    fn type_errors_keep_serdes_wording() {
        type Change = fn(&mut serde_json::Value);
        // (change, path, exact message)
        let cases: [(Change, &str, &str); 12] = [
            (
                |v| v["max_body_bytes"] = "big".into(),
                "max_body_bytes",
                "invalid type: string \"big\", expected u64",
            ),
            (
                |v| v["max_body_bytes"] = 2.5.into(),
                "max_body_bytes",
                "invalid type: floating point `2.5`, expected u64",
            ),
            (
                |v| v["max_body_bytes"] = serde_json::Value::Null,
                "max_body_bytes",
                "invalid type: null, expected u64",
            ),
            (
                |v| v["routes"][0]["targets"][0]["weight"] = (-1).into(),
                "routes[0].targets[0].weight",
                "invalid value: integer `-1`, expected u32",
            ),
            (
                |v| v["routes"][0]["explore_percent"] = 5_000_000_000u64.into(),
                "routes[0].explore_percent",
                "invalid value: integer `5000000000`, expected u32",
            ),
            (
                |v| v["routes"][0]["tiers"] = serde_json::json!([{"targets": [true]}]),
                "routes[0].tiers[0].targets[0]",
                "invalid type: boolean `true`, expected usize",
            ),
            (
                |v| v["providers"][1]["regions"] = serde_json::json!({}),
                "providers[1].regions",
                "invalid type: map, expected a sequence",
            ),
            (
                |v| v["providers"][0]["models"] = serde_json::json!([]),
                "providers[0].models",
                "invalid type: sequence, expected a map",
            ),
            (
                |v| v["routes"][1]["retry"] = serde_json::json!([1]),
                "routes[1].retry",
                "invalid type: sequence, expected struct RetryOverrides",
            ),
            (
                |v| v["routes"][1]["failover_on_content_policy"] = serde_json::Value::Null,
                "routes[1].failover_on_content_policy",
                "invalid type: null, expected a boolean",
            ),
            (
                |v| v["providers"][0]["key_selection"] = "all".into(),
                "providers[0].key_selection",
                "unknown variant `all`, expected `first` or `spread`",
            ),
            (
                |v| v["routes"][0]["strategy"] = 1.into(),
                "routes[0].strategy",
                "expected value",
            ),
        ];
        for (change, path, message) in cases {
            let e = with(change).unwrap_err();
            assert_eq!((e.path.as_str(), e.message.as_str()), (path, message));
        }
        let e = with(|v| v["routes"][0]["targets"][0]["providr"] = "oa".into()).unwrap_err();
        assert_eq!(
            e.message,
            "unknown field `providr`, expected one of `provider`, `model`, `weight`"
        );
        let e = Config::parse(r#"{"providers": []}"#).unwrap_err();
        assert_eq!(
            (e.path.as_str(), e.message.as_str()),
            ("", "missing field `routes`")
        );
    }

    #[test]
    fn null_is_none_only_for_optional_fields() {
        let c = with(|v| {
            v["routes"][0]["residency"] = serde_json::Value::Null;
            v["routes"][0]["tiers"] = serde_json::json!([{"tools": null, "targets": [0]}]);
            v["providers"][0]["models"]["gpt-4o-mini"]["output_per_mtok"] = serde_json::Value::Null;
            v["retry"] = serde_json::json!({"max_attempts": null});
            v["health"] = serde_json::Value::Null;
        })
        .expect("valid");
        assert_eq!(c.routes[0].residency, None);
        assert_eq!(c.routes[0].tiers[0].tools, None);
        assert_eq!(c.retry.max_attempts, None);
        let m = &c.providers[0].models["gpt-4o-mini"];
        assert_eq!((m.input_per_mtok, m.output_per_mtok), (Some(0.15), None));
        for key in ["api_key_secrets", "kind", "models", "id"] {
            let e = with(|v| v["providers"][0][key] = serde_json::Value::Null).unwrap_err();
            assert_eq!(e.path, format!("providers[0].{key}"), "{e}");
        }
    }

    #[test]
    fn invalid_json_is_an_error_not_a_panic() {
        let e = Config::parse("{not json").unwrap_err();
        assert!(!e.message.is_empty());
        let e = Config::parse("").unwrap_err();
        assert!(!e.message.is_empty());
    }

    #[test]
    fn shipped_config_in_wrangler_toml_validates() {
        let toml_text = include_str!("../../../wrangler.toml");
        let doc: toml::Table = toml::from_str(toml_text).expect("wrangler.toml parses");
        let text = doc["vars"]["SWITCHYARD_CONFIG"]
            .as_str()
            .expect("[vars] SWITCHYARD_CONFIG is a string");
        if let Err(e) = Config::parse(text) {
            panic!("wrangler.toml SWITCHYARD_CONFIG is invalid: {e}");
        }
    }
}
