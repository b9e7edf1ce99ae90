//! Routing strategies: from a route, a health snapshot and the request's features, the order in
//! which to try the route's targets (the attempt plan the `policy::Planner` walks).
//!
//! Pure and deterministic: the request hash (stable across a request's retries) and a random
//! unit (exploration) are passed in. Strategies, the region-tag rule and the residency
//! guarantee are described in `docs/ROUTING.md`. In short, [`plan`]:
//!
//! 1. picks the candidate targets: the first matching tier's, else all the route's;
//! 2. keeps only those whose provider carries every residency tag (route and request); if a
//!    tier's targets are all ineligible, the route's eligible targets; none → 503
//!    `no_eligible_target`. Ineligible targets never appear in a plan, healthy or not;
//! 3. splits them by health: admitted (closed, unknown, or a free half-open probe slot) and
//!    blocked (open, or a probe already out);
//! 4. orders the admitted ones by the route's strategy, then appends the blocked ones, the one
//!    that admits soonest first — so when every target is open the soonest is still tried.

use crate::config::{Config, KeySelection, ProviderConfig, RouteConfig, Strategy, TierConfig};
use crate::error::{ErrorKind, GatewayError};
use crate::health::{target_id, Snapshot, State, TargetSnapshot};
use std::cmp::{Ordering, Reverse};

/// `latency`: the share of requests that try another healthy target first, unless configured.
pub const DEFAULT_EXPLORE_PERCENT: u32 = 5;
/// `cost`: the output tokens assumed when the request sets no `max_tokens`.
pub const DEFAULT_OUTPUT_ESTIMATE: u64 = 512;

/// A cheap prompt-size estimate: a quarter of the request body's bytes (JSON overhead and
/// all), enough to tell a short prompt from a long one.
pub fn estimate_prompt_tokens(body_bytes: usize) -> u64 {
    (body_bytes as u64).div_ceil(4)
}

/// The splitmix64 finaliser: spreads sequential or similar inputs over all 64 bits.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A stable 64-bit hash (FNV-1a, then mixed), e.g. of the request id or an idempotency key, so
/// the retries of one request get the same weighted order and key.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix64(h)
}

/// Where the caller is, from `request.cf` (`continent`, `country`, `colo`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Location<'a> {
    pub continent: Option<&'a str>,
    pub country: Option<&'a str>,
    pub colo: Option<&'a str>,
}

/// What routing needs to know about the request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestFeatures<'a> {
    /// See [`estimate_prompt_tokens`].
    pub prompt_tokens: u64,
    /// `max_completion_tokens` / `max_tokens`, if set.
    pub max_output_tokens: Option<u64>,
    pub has_tools: bool,
    /// The `x-switchyard-tier` header, if sent.
    pub tier_hint: Option<&'a str>,
    pub location: Location<'a>,
    /// A residency tag required on top of the route's (e.g. the tenant's `"eu"`).
    pub residency: Option<&'a str>,
}

/// A provider region tag, parsed. See `docs/ROUTING.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionTag<'a> {
    /// `colo:XXX` — a Cloudflare data centre (IATA code).
    Colo(&'a str),
    /// `country:XX` — an ISO 3166 country code.
    Country(&'a str),
    /// `continent:XX` or a bare continent code: `af an as eu na oc sa`.
    Continent(&'a str),
    /// Anything else (`us`, `eu-west`, `local`): a residency label with no location meaning.
    Label(&'a str),
}

const CONTINENTS: [&str; 7] = ["af", "an", "as", "eu", "na", "oc", "sa"];

/// Parse and check a region tag; the error says what is wrong.
pub fn parse_region_tag(tag: &str) -> Result<RegionTag<'_>, &'static str> {
    if tag.is_empty()
        || tag.len() > 64
        || !tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    {
        return Err("must be 1-64 characters of letters, digits, '-', '_', '.' or ':'");
    }
    let letters = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_alphabetic());
    let continent = |s: &str| CONTINENTS.iter().any(|c| c.eq_ignore_ascii_case(s));
    match tag.split_once(':') {
        Some(("colo", v)) if letters(v, 3) => Ok(RegionTag::Colo(v)),
        Some(("colo", _)) => Err("`colo:` takes a 3-letter data centre code, e.g. colo:FRA"),
        Some(("country", v)) if letters(v, 2) => Ok(RegionTag::Country(v)),
        Some(("country", _)) => Err("`country:` takes a 2-letter country code, e.g. country:DE"),
        Some(("continent", v)) if continent(v) => Ok(RegionTag::Continent(v)),
        Some(("continent", _)) => Err("`continent:` takes one of af, an, as, eu, na, oc, sa"),
        Some(_) => Err("unknown prefix: use colo:, country: or continent:"),
        None if continent(tag) => Ok(RegionTag::Continent(tag)),
        None => Ok(RegionTag::Label(tag)),
    }
}

/// Whether the provider carries the tag (residency): exact, ASCII case-insensitive. `eu-west`
/// does not satisfy `eu`; list both.
pub fn has_region(p: &ProviderConfig, tag: &str) -> bool {
    p.regions.iter().any(|r| r.eq_ignore_ascii_case(tag))
}

/// How well the provider's tags match the caller: 3 colo, 2 country, 1 continent, 0 none.
pub fn location_score(p: &ProviderConfig, loc: &Location<'_>) -> u8 {
    let is = |want: Option<&str>, v: &str| want.is_some_and(|w| w.eq_ignore_ascii_case(v));
    p.regions
        .iter()
        .map(|t| match parse_region_tag(t) {
            Ok(RegionTag::Colo(v)) if is(loc.colo, v) => 3,
            Ok(RegionTag::Country(v)) if is(loc.country, v) => 2,
            Ok(RegionTag::Continent(v)) if is(loc.continent, v) => 1,
            _ => 0,
        })
        .max()
        .unwrap_or(0)
}

/// Whether a target may be tried now, by the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Closed, or nothing known: try it.
    Healthy,
    /// Half-open with the probe slot free (or its cooldown ended after the snapshot): acquire
    /// the probe from the target's Durable Object first; if refused, [`Plan::demote`] it.
    Probe,
    /// Open, or its probe is out: tried only after every admitted target, soonest first.
    Blocked { until_ms: u64 },
}

/// A target's admission at `now` from its snapshot (`None`: unknown, so healthy).
pub fn admission(s: Option<&TargetSnapshot>, now: u64) -> Admission {
    let Some(s) = s else {
        return Admission::Healthy;
    };
    match s.state {
        State::Closed => Admission::Healthy,
        State::HalfOpen if s.admit => Admission::Probe,
        _ if s.until_ms <= now => Admission::Probe,
        _ => Admission::Blocked {
            until_ms: s.until_ms,
        },
    }
}

/// One entry of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Index into the route's `targets`.
    pub index: usize,
    pub admission: Admission,
    /// The breaker epoch to stamp on this attempt's outcome (a probe uses its token instead).
    pub epoch: u32,
    /// The provider's key chosen for it ([`choose_key`]; index into `api_key_secrets`), whose
    /// breaker the admission and epoch are from. `None`: no key is set.
    pub key: Option<usize>,
}

impl Candidate {
    /// The epoch and probe flag to stamp on an attempt of this candidate made with `key`
    /// (`snap`: that key's snapshot). With the plan's own key, the candidate's (a probe token
    /// included); with another (a retry after the first key was passed over), an ordinary
    /// attempt under that key's snapshot epoch.
    pub fn stamp(&self, key: Option<usize>, snap: Option<&TargetSnapshot>) -> (u32, bool) {
        if key == self.key {
            (self.epoch, self.admission == Admission::Probe)
        } else {
            (snap.map_or(0, |s| s.epoch), false)
        }
    }
}

/// The attempt order for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub candidates: Vec<Candidate>,
    /// The tier whose targets were used, if one matched and had an eligible target.
    pub tier: Option<usize>,
}

impl Plan {
    /// The route target indices in attempt order: the `Planner`'s target `i` is `order()[i]`.
    pub fn order(&self) -> Vec<usize> {
        self.candidates.iter().map(|c| c.index).collect()
    }

    pub fn len(&self) -> usize {
        self.candidates.len()
    }

    pub fn is_empty(&self) -> bool {
        self.candidates.is_empty()
    }

    /// Whether no candidate is admitted (every circuit open): the first is tried anyway.
    pub fn all_blocked(&self) -> bool {
        self.candidates
            .iter()
            .all(|c| matches!(c.admission, Admission::Blocked { .. }))
    }

    /// A probe was refused (another isolate holds it): move the candidate at `pos` among the
    /// blocked ones, by `until_ms`.
    pub fn demote(&mut self, pos: usize, until_ms: u64) {
        if pos >= self.candidates.len() {
            return;
        }
        let mut c = self.candidates.remove(pos);
        c.admission = Admission::Blocked { until_ms };
        let at = self
            .candidates
            .iter()
            .position(|o| matches!(o.admission, Admission::Blocked { until_ms: u } if u > until_ms))
            .unwrap_or(self.candidates.len());
        self.candidates.insert(at, c);
    }

    /// The target's Durable Object answered the probe request for the candidate at `pos`
    /// (`token`: the probe was granted; `snap`: the breaker after the request). Granted → the
    /// candidate stays and its outcomes carry the token (returned); refused because the breaker
    /// closed meanwhile → healthy, with the fresh epoch; refused otherwise → demoted until it
    /// may admit again, and the candidate now at `pos` is another one.
    pub fn settle_probe(
        &mut self,
        pos: usize,
        token: Option<u32>,
        snap: &TargetSnapshot,
    ) -> Option<u32> {
        let c = self.candidates.get_mut(pos)?;
        if token.is_some() {
            c.epoch = token?;
            return token;
        }
        if snap.state == State::Closed {
            c.admission = Admission::Healthy;
            c.epoch = snap.epoch;
        } else {
            self.demote(pos, snap.until_ms);
        }
        None
    }
}

fn tier_matches(t: &TierConfig, req: &RequestFeatures<'_>) -> bool {
    t.min_prompt_tokens.is_none_or(|m| req.prompt_tokens >= m)
        && t.max_prompt_tokens.is_none_or(|m| req.prompt_tokens <= m)
        && t.tools.is_none_or(|b| b == req.has_tools)
        && t.hint.as_deref().is_none_or(|h| {
            req.tier_hint
                .is_some_and(|x| x.trim().eq_ignore_ascii_case(h))
        })
}

/// Per candidate: what the strategies look at.
struct Info<'a> {
    index: usize,
    provider: &'a ProviderConfig,
    snap: Option<&'a TargetSnapshot>,
    admission: Admission,
    key: Option<usize>,
}

/// Order the route's targets for one request. `hash`: [`stable_hash`] of something stable
/// across the request's retries (e.g. its id); `unit`: random in [0, 1); `now`: unix ms.
#[allow(clippy::too_many_arguments)]
pub fn plan(
    config: &Config,
    route: &RouteConfig,
    health: &Snapshot,
    keys: &Keys<'_>,
    req: &RequestFeatures<'_>,
    hash: u64,
    unit: f64,
    now: u64,
) -> Result<Plan, GatewayError> {
    let n = route.targets.len();
    let required = [route.residency.as_deref(), req.residency];
    let provider_of = |i: usize| config.provider(&route.targets[i].provider);
    let eligible = |i: &usize| {
        provider_of(*i).is_some_and(|p| required.iter().flatten().all(|tag| has_region(p, tag)))
    };
    let mut tier = route.tiers.iter().position(|t| tier_matches(t, req));
    let mut pool: Vec<usize> = match tier {
        Some(j) => route.tiers[j]
            .targets
            .iter()
            .copied()
            .filter(|&i| i < n)
            .filter(eligible)
            .collect(),
        None => Vec::new(),
    };
    if pool.is_empty() {
        tier = None;
        pool = (0..n).filter(eligible).collect();
    }
    if pool.is_empty() {
        let tags: Vec<&str> = required.iter().flatten().copied().collect();
        return Err(GatewayError::new(
            ErrorKind::NoEligibleTarget,
            format!(
                "no target of route {:?} may serve region {:?} (data residency)",
                route.model,
                crate::join(&tags, " + ")
            ),
        ));
    }

    let mut admitted = Vec::with_capacity(pool.len());
    let mut blocked = Vec::new();
    for i in pool {
        let Some(provider) = provider_of(i) else {
            continue;
        };
        let (key, snap) = choose_key(provider, &route.targets[i].model, keys, health, hash, now);
        let info = Info {
            index: i,
            provider,
            snap,
            admission: admission(snap, now),
            key,
        };
        match info.admission {
            Admission::Blocked { .. } => blocked.push(info),
            _ => admitted.push(info),
        }
    }

    match route.strategy {
        Strategy::Priority => {}
        Strategy::Weighted => order_weighted(&mut admitted, route, hash),
        Strategy::Latency => order_latency(
            &mut admitted,
            route.explore_percent.unwrap_or(DEFAULT_EXPLORE_PERCENT),
            unit,
        ),
        Strategy::Nearest => sort_infos(&mut admitted, &|a, b| {
            let score = |c: &Info<'_>| Reverse(location_score(c.provider, &req.location));
            score(a).cmp(&score(b))
        }),
        Strategy::Cost => order_cost(&mut admitted, route, req),
    }
    let until = |c: &Info<'_>| match c.admission {
        Admission::Blocked { until_ms } => until_ms,
        _ => 0,
    };
    sort_infos(&mut blocked, &|a, b| until(a).cmp(&until(b)));

    let candidates = admitted
        .iter()
        .chain(blocked.iter())
        .map(|c| Candidate {
            index: c.index,
            admission: c.admission,
            epoch: c.snap.map_or(0, |s| s.epoch),
            key: c.key,
        })
        .collect();
    Ok(Plan { candidates, tier })
}

/// The first drawn by weight with the request hash; the rest by weight (config order on ties).
fn order_weighted(list: &mut Vec<Info<'_>>, route: &RouteConfig, hash: u64) {
    let w = |c: &Info<'_>| route.targets[c.index].weight.unwrap_or(1) as u64;
    let total: u64 = list.iter().map(w).sum();
    if total == 0 {
        return;
    }
    let mut r = mix64(hash) % total;
    let Some(pos) = list.iter().position(|c| {
        let wc = w(c);
        if r < wc {
            true
        } else {
            r -= wc;
            false
        }
    }) else {
        return;
    };
    let first = list.remove(pos);
    sort_infos(list, &|a, b| w(b).cmp(&w(a)));
    list.insert(0, first);
}

/// A stable insertion sort. A plan holds a handful of targets, and one small routine keeps
/// the worker's wasm smaller than the standard sort instantiated once per key.
fn sort_infos(list: &mut [Info<'_>], cmp: &dyn Fn(&Info<'_>, &Info<'_>) -> Ordering) {
    for i in 1..list.len() {
        let mut j = i;
        while j > 0 && cmp(&list[j - 1], &list[j]) == Ordering::Greater {
            list.swap(j - 1, j);
            j -= 1;
        }
    }
}

/// Lowest p95 first (then EWMA), targets without statistics after them in config order; with
/// probability `explore_percent`, another target goes first — one without statistics if any.
fn order_latency(list: &mut Vec<Info<'_>>, explore_percent: u32, unit: f64) {
    let key = |c: &Info<'_>| match c.snap.and_then(|s| s.p95_ms.map(|p| (p, s.ewma_ms))) {
        Some((p95, ewma)) => (0, p95, ewma.unwrap_or(p95)),
        None => (1, 0, 0),
    };
    sort_infos(list, &|a, b| key(a).cmp(&key(b)));
    let p = explore_percent.min(100) as f64 / 100.0;
    if list.len() < 2 || unit >= p {
        return;
    }
    let unknown: Vec<usize> = (1..list.len())
        .filter(|&k| list[k].snap.and_then(|s| s.p95_ms).is_none())
        .collect();
    let pool: Vec<usize> = if unknown.is_empty() {
        (1..list.len()).collect()
    } else {
        unknown
    };
    let k = ((unit / p) * pool.len() as f64) as usize;
    let chosen = list.remove(pool[k.min(pool.len() - 1)]);
    list.insert(0, chosen);
}

/// Cheapest estimated cost among targets whose context window fits first; unknown prices
/// after known ones; targets that do not fit last (config order on ties).
fn order_cost(list: &mut [Info<'_>], route: &RouteConfig, req: &RequestFeatures<'_>) {
    let out = req.max_output_tokens.unwrap_or(DEFAULT_OUTPUT_ESTIMATE) as f64;
    let key = |c: &Info<'_>| {
        let m = c.provider.models.get(&route.targets[c.index].model);
        let fits = m.and_then(|m| m.context_window).is_none_or(|w| {
            req.prompt_tokens
                .saturating_add(req.max_output_tokens.unwrap_or(0))
                <= w
        });
        let cost = m.and_then(|m| {
            Some(m.input_per_mtok? * req.prompt_tokens as f64 + m.output_per_mtok? * out)
        });
        (!fits, cost)
    };
    sort_infos(list, &|a, b| {
        let (fa, ca) = key(a);
        let (fb, cb) = key(b);
        fa.cmp(&fb).then(match (ca, cb) {
            (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        })
    });
}

/// Per isolate: which of a provider's keys are rate-limited, and until when. Keys are secret
/// *names*; a name shared by two providers shares its state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyState {
    limited: Vec<(String, u64)>,
}

impl KeyState {
    /// The upstream rate-limited (or rejected) this key: pass over it until `until_ms`.
    pub fn mark_limited(&mut self, key: &str, until_ms: u64, now: u64) {
        self.limited.retain(|(_, u)| *u > now);
        match self.limited.iter_mut().find(|(k, _)| k == key) {
            Some(e) => e.1 = e.1.max(until_ms),
            None => self.limited.push((key.to_string(), until_ms)),
        }
    }

    pub fn limited_until(&self, key: &str, now: u64) -> Option<u64> {
        self.limited
            .iter()
            .find(|(k, u)| k == key && *u > now)
            .map(|(_, u)| *u)
    }
}

/// What choosing a key needs from the isolate: which keys are passed over, and which of a
/// provider's key secrets are set.
pub struct Keys<'a> {
    pub state: &'a KeyState,
    pub is_set: &'a dyn Fn(&str) -> bool,
}

/// Whether a provider's keys have a circuit breaker each: when it names more than one key
/// secret. A provider with one key (or none) keeps the key-less target id.
pub fn per_key(p: &ProviderConfig) -> bool {
    p.api_key_secrets.len() > 1
}

/// The health target of `model` at provider `p` used with key `key` (an index into
/// `api_key_secrets`): `provider/model#SECRET_NAME` when the provider's keys have a breaker
/// each ([`per_key`]), else `provider/model`.
pub fn health_id(p: &ProviderConfig, model: &str, key: Option<usize>) -> String {
    let name = key
        .filter(|_| per_key(p))
        .and_then(|k| p.api_key_secrets.get(k));
    target_id(&p.id, model, name.map(String::as_str))
}

/// A health target: (id, provider, upstream model, key index).
pub type HealthTarget<'c> = (String, &'c ProviderConfig, &'c str, Option<usize>);

/// Every health target of `routes` (the config's, or one route's), once each, in config order.
/// A provider with several keys has one per configured key, set or not.
pub fn health_targets<'c>(config: &'c Config, routes: &'c [RouteConfig]) -> Vec<HealthTarget<'c>> {
    let mut out: Vec<HealthTarget<'c>> = Vec::new();
    for t in routes.iter().flat_map(|r| &r.targets) {
        let Some(p) = config.provider(&t.provider) else {
            continue;
        };
        let multi = per_key(p);
        for k in 0..if multi { p.api_key_secrets.len() } else { 1 } {
            let k = multi.then_some(k);
            let id = health_id(p, &t.model, k);
            if !out.iter().any(|o| o.0 == id) {
                out.push((id, p, &t.model, k));
            }
        }
    }
    out
}

/// The key to use for `model` at provider `p`, chosen *before* health is read so each key's
/// breaker counts: among the set keys (config order), from where the selection starts (`first`:
/// the first; `spread`: `mix(hash) mod n`), the first that is neither passed over nor blocked by
/// its breaker — a closed one before one whose half-open probe slot is free; when every key is
/// passed over or blocked, the one free soonest (never fail without trying). Returns the key
/// (an index into `api_key_secrets`; `None` when no key is set) and the snapshot of its health
/// target, from which the candidate's admission follows: the target is open only when every
/// one of its keys is.
pub fn choose_key<'h>(
    p: &ProviderConfig,
    model: &str,
    keys: &Keys<'_>,
    health: &'h Snapshot,
    hash: u64,
    now: u64,
) -> (Option<usize>, Option<&'h TargetSnapshot>) {
    let set: Vec<usize> = (0..p.api_key_secrets.len())
        .filter(|&k| (keys.is_set)(&p.api_key_secrets[k]))
        .collect();
    let n = set.len();
    if n == 0 {
        return (None, health.get(&health_id(p, model, None)));
    }
    let start = match p.key_selection {
        KeySelection::First => 0,
        KeySelection::Spread => (mix64(hash) % n as u64) as usize,
    };
    // (rank, free at, key, snapshot): 0 usable, 1 usable as a probe, 2 not before `free at`.
    let mut best: Option<(u8, u64, usize, Option<&'h TargetSnapshot>)> = None;
    for r in 0..n {
        let k = set[(start + r) % n];
        let snap = health.get(&health_id(p, model, Some(k)));
        let limited = keys.state.limited_until(&p.api_key_secrets[k], now);
        let (rank, free) = match (admission(snap, now), limited) {
            (Admission::Healthy, None) => return (Some(k), snap),
            (Admission::Probe, None) => (1, 0),
            (Admission::Blocked { until_ms }, l) => (2, until_ms.max(l.unwrap_or(0))),
            (_, Some(l)) => (2, l),
        };
        if best.is_none_or(|(br, bf, _, _)| (rank, free) < (br, bf)) {
            best = Some((rank, free, k, snap));
        }
    }
    best.map_or((None, None), |(_, _, k, snap)| (Some(k), snap))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::TargetSnapshot;

    const NOW: u64 = 1_700_000_000_000;

    static NO_STATE: KeyState = KeyState {
        limited: Vec::new(),
    };

    /// Every key set, none passed over.
    fn all_keys() -> Keys<'static> {
        Keys {
            state: &NO_STATE,
            is_set: &|_| true,
        }
    }

    /// Providers: `fra` (EU, Germany, FRA), `cdg` (EU, France, CDG), `iad` (NA, US, IAD),
    /// `any` (no regions, no prices). Route `r` lists them in that order.
    fn config(route_extra: serde_json::Value) -> Config {
        let mut route = serde_json::json!({
            "model": "r",
            "targets": [
                {"provider": "fra", "model": "m"},
                {"provider": "cdg", "model": "m"},
                {"provider": "iad", "model": "m"},
                {"provider": "any", "model": "m"}
            ]
        });
        for (k, v) in route_extra.as_object().unwrap() {
            route[k] = v.clone();
        }
        let doc = serde_json::json!({
            "providers": [
                {"id": "fra", "kind": "openai", "api_key_secrets": ["K"],
                 "regions": ["eu", "country:DE", "colo:FRA"],
                 "models": {"m": {"input_per_mtok": 0.2, "output_per_mtok": 15.0, "context_window": 200000}}},
                {"id": "cdg", "kind": "openai", "api_key_secrets": ["K"],
                 "regions": ["eu", "country:FR", "colo:CDG"],
                 "models": {"m": {"input_per_mtok": 0.5, "output_per_mtok": 1.5, "context_window": 8000}}},
                {"id": "iad", "kind": "openai", "api_key_secrets": ["K"],
                 "regions": ["na", "us", "country:US", "colo:IAD"],
                 "models": {"m": {"input_per_mtok": 1.0, "output_per_mtok": 2.0, "context_window": 128000}}},
                {"id": "any", "kind": "openai", "api_key_secrets": ["K"]}
            ],
            "routes": [route]
        });
        Config::parse(&doc.to_string()).expect("fixture config is valid")
    }

    fn snap(state: State, admit: bool, until_ms: u64) -> TargetSnapshot {
        TargetSnapshot {
            state,
            admit,
            until_ms,
            ..TargetSnapshot::unknown()
        }
    }

    #[test]
    fn a_probe_answer_keeps_promotes_or_demotes_the_candidate() {
        let cfg = config(serde_json::json!({}));
        let route = &cfg.routes[0];
        let mut health = Snapshot::new(NOW);
        // fra half-open with the slot free, cdg open until later.
        health.insert("fra/m".into(), snap(State::HalfOpen, true, 0));
        health.insert("cdg/m".into(), open_until(NOW + 5_000));
        let req = RequestFeatures::default();
        let fresh = || plan(&cfg, route, &health, &all_keys(), &req, 1, 0.5, NOW).unwrap();
        let p0 = fresh();
        assert_eq!(p0.order(), [0, 2, 3, 1]);
        assert_eq!(p0.candidates[0].admission, Admission::Probe);

        // Granted: fra stays first; its outcomes carry the token.
        let mut p = fresh();
        let out = snap(State::HalfOpen, false, NOW + 60_000);
        assert_eq!(p.settle_probe(0, Some(9), &out), Some(9));
        assert_eq!((p.order(), p.candidates[0].epoch), (vec![0, 2, 3, 1], 9));

        // Refused (another isolate probes): fra goes among the blocked, by its `until`.
        let mut p = fresh();
        assert_eq!(p.settle_probe(0, None, &out), None);
        assert_eq!(p.order(), [2, 3, 1, 0]);
        assert_eq!(
            p.candidates[3].admission,
            Admission::Blocked {
                until_ms: NOW + 60_000
            }
        );

        // Refused because a probe already closed it: healthy again, with the new epoch.
        let mut p = fresh();
        let closed = TargetSnapshot {
            epoch: 12,
            ..TargetSnapshot::unknown()
        };
        assert_eq!(p.settle_probe(0, None, &closed), None);
        assert_eq!(p.order(), [0, 2, 3, 1]);
        assert_eq!(
            (p.candidates[0].admission, p.candidates[0].epoch),
            (Admission::Healthy, 12)
        );
        assert_eq!(p.settle_probe(9, Some(1), &closed), None, "out of range");
    }

    fn open_until(until_ms: u64) -> TargetSnapshot {
        snap(State::Open, false, until_ms)
    }

    fn latency(p95: u32, ewma: u32) -> TargetSnapshot {
        TargetSnapshot {
            p95_ms: Some(p95),
            ewma_ms: Some(ewma),
            ..TargetSnapshot::unknown()
        }
    }

    /// (provider, its target's snapshot) pairs, model `m`.
    type Health<'a> = Vec<(&'a str, TargetSnapshot)>;

    /// A snapshot from (provider, target snapshot) pairs (model `m`).
    fn health(entries: &[(&str, TargetSnapshot)]) -> Snapshot {
        let mut s = Snapshot::new(NOW);
        for (p, t) in entries {
            s.insert(target_id(p, "m", None), *t);
        }
        s
    }

    fn order_of(
        c: &Config,
        h: &Snapshot,
        req: &RequestFeatures<'_>,
        hash: u64,
        unit: f64,
    ) -> Vec<usize> {
        plan(c, &c.routes[0], h, &all_keys(), req, hash, unit, NOW)
            .expect("a plan")
            .order()
    }

    #[test]
    fn estimates_and_hashes() {
        assert_eq!(estimate_prompt_tokens(0), 0);
        assert_eq!(estimate_prompt_tokens(1), 1);
        assert_eq!(estimate_prompt_tokens(4_000), 1_000);
        assert_eq!(stable_hash(b"req_1"), stable_hash(b"req_1"));
        assert_ne!(stable_hash(b"req_1"), stable_hash(b"req_2"));
        // Pinned, so a change of the hash (which would reshuffle sticky routing) is deliberate.
        assert_eq!(stable_hash(b"req_1"), 591_544_470_617_691_663);
    }

    #[test]
    fn region_tags() {
        let cases = [
            ("eu", Ok(RegionTag::Continent("eu"))),
            ("EU", Ok(RegionTag::Continent("EU"))),
            ("continent:na", Ok(RegionTag::Continent("na"))),
            ("country:DE", Ok(RegionTag::Country("DE"))),
            ("colo:LHR", Ok(RegionTag::Colo("LHR"))),
            ("us", Ok(RegionTag::Label("us"))),
            ("eu-west", Ok(RegionTag::Label("eu-west"))),
            ("local", Ok(RegionTag::Label("local"))),
        ];
        for (tag, want) in cases {
            assert_eq!(parse_region_tag(tag), want, "{tag}");
        }
        for bad in [
            "",
            "colo:LONDON",
            "country:DEU",
            "continent:xx",
            "city:Paris",
            "eu west",
            "country:",
        ] {
            assert!(parse_region_tag(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn location_scores() {
        let c = config(serde_json::json!({}));
        let fra = c.provider("fra").unwrap();
        let any = c.provider("any").unwrap();
        let loc = |continent, country, colo| Location {
            continent,
            country,
            colo,
        };
        let cases = [
            (loc(Some("EU"), Some("DE"), Some("FRA")), 3),
            (loc(Some("EU"), Some("DE"), Some("AMS")), 2),
            (loc(Some("EU"), Some("NL"), Some("AMS")), 1),
            (loc(Some("eu"), None, None), 1),
            (loc(Some("NA"), Some("US"), Some("FRA")), 3),
            (loc(Some("NA"), Some("US"), Some("IAD")), 0),
            (Location::default(), 0),
        ];
        for (l, want) in cases {
            assert_eq!(location_score(fra, &l), want, "{l:?}");
            assert_eq!(location_score(any, &l), 0);
        }
    }

    #[test]
    fn admissions() {
        let cases = [
            (None, Admission::Healthy),
            (Some(TargetSnapshot::unknown()), Admission::Healthy),
            (
                Some(open_until(NOW + 5)),
                Admission::Blocked { until_ms: NOW + 5 },
            ),
            (Some(open_until(NOW)), Admission::Probe),
            (Some(snap(State::HalfOpen, true, 0)), Admission::Probe),
            (
                Some(snap(State::HalfOpen, false, NOW + 9)),
                Admission::Blocked { until_ms: NOW + 9 },
            ),
            (
                Some(snap(State::HalfOpen, false, NOW - 1)),
                Admission::Probe,
            ),
            (
                Some(open_until(u64::MAX)),
                Admission::Blocked { until_ms: u64::MAX },
            ),
        ];
        for (s, want) in cases {
            assert_eq!(admission(s.as_ref(), NOW), want, "{s:?}");
        }
    }

    #[test]
    fn priority_moves_open_circuits_back_and_tries_the_soonest_when_all_are_open() {
        let c = config(serde_json::json!({}));
        let req = RequestFeatures::default();
        // (health, expected order)
        let cases: Vec<(Health, Vec<usize>)> = vec![
            (vec![], vec![0, 1, 2, 3]),
            (vec![("fra", open_until(NOW + 10))], vec![1, 2, 3, 0]),
            (
                vec![("fra", open_until(NOW + 10)), ("cdg", open_until(NOW + 5))],
                vec![2, 3, 1, 0],
            ),
            // A free probe slot keeps its place; a busy one is blocked.
            (
                vec![("fra", snap(State::HalfOpen, true, 0))],
                vec![0, 1, 2, 3],
            ),
            (
                vec![("fra", snap(State::HalfOpen, false, NOW + 60_000))],
                vec![1, 2, 3, 0],
            ),
            (
                vec![
                    ("fra", open_until(NOW + 40)),
                    ("cdg", open_until(u64::MAX)),
                    ("iad", open_until(NOW + 20)),
                    ("any", open_until(NOW + 30)),
                ],
                vec![2, 3, 0, 1],
            ),
        ];
        for (entries, want) in cases {
            let h = health(&entries);
            assert_eq!(order_of(&c, &h, &req, 0, 0.5), want, "{entries:?}");
        }
        let h = health(&[
            ("fra", open_until(NOW + 1)),
            ("cdg", open_until(NOW + 1)),
            ("iad", open_until(NOW + 1)),
            ("any", open_until(NOW + 1)),
        ]);
        let p = plan(&c, &c.routes[0], &h, &all_keys(), &req, 0, 0.5, NOW).unwrap();
        assert!(p.all_blocked());
        let h = health(&[("fra", snap(State::HalfOpen, true, 0))]);
        let p = plan(&c, &c.routes[0], &h, &all_keys(), &req, 0, 0.5, NOW).unwrap();
        assert_eq!(p.candidates[0].admission, Admission::Probe);
        assert!(!p.all_blocked());
    }

    #[test]
    fn candidates_carry_the_snapshot_epoch() {
        let c = config(serde_json::json!({}));
        let mut s = TargetSnapshot::unknown();
        s.epoch = 7;
        let p = plan(
            &c,
            &c.routes[0],
            &health(&[("cdg", s)]),
            &all_keys(),
            &RequestFeatures::default(),
            0,
            0.5,
            NOW,
        )
        .unwrap();
        let epochs: Vec<u32> = p.candidates.iter().map(|c| c.epoch).collect();
        assert_eq!(epochs, [0, 7, 0, 0]);
    }

    #[test]
    fn a_refused_probe_is_demoted_among_the_blocked() {
        let c = config(serde_json::json!({}));
        let h = health(&[
            ("cdg", snap(State::HalfOpen, true, 0)),
            ("any", open_until(NOW + 100)),
        ]);
        let mut p = plan(
            &c,
            &c.routes[0],
            &h,
            &all_keys(),
            &RequestFeatures::default(),
            0,
            0.5,
            NOW,
        )
        .unwrap();
        assert_eq!(p.order(), [0, 1, 2, 3]);
        p.demote(1, NOW + 50);
        assert_eq!(p.order(), [0, 2, 1, 3]);
        assert_eq!(
            p.candidates[2].admission,
            Admission::Blocked { until_ms: NOW + 50 }
        );
        p.demote(0, NOW + 500);
        assert_eq!(p.order(), [2, 1, 3, 0]);
        p.demote(9, 0); // out of range: no change
        assert_eq!(p.order(), [2, 1, 3, 0]);
    }

    #[test]
    fn residency_filters_every_strategy_and_never_leaks() {
        let strategies = [
            ("priority", serde_json::json!({})),
            (
                "weighted",
                serde_json::json!({"targets": [
                {"provider": "fra", "model": "m", "weight": 1},
                {"provider": "cdg", "model": "m", "weight": 1},
                {"provider": "iad", "model": "m", "weight": 1000},
                {"provider": "any", "model": "m", "weight": 1000}]}),
            ),
            ("latency", serde_json::json!({})),
            ("nearest", serde_json::json!({})),
            ("cost", serde_json::json!({})),
        ];
        let near_us = RequestFeatures {
            location: Location {
                continent: Some("NA"),
                country: Some("US"),
                colo: Some("IAD"),
            },
            ..RequestFeatures::default()
        };
        for (name, extra) in strategies {
            let mut extra = extra;
            extra["strategy"] = name.into();
            extra["residency"] = "eu".into();
            let c = config(extra);
            // Even with the EU targets open, only EU targets are planned.
            let h = health(&[("fra", open_until(NOW + 10)), ("cdg", open_until(NOW + 20))]);
            for unit in [0.0, 0.01, 0.5, 0.99] {
                for hash in 0..50 {
                    let mut order = order_of(&c, &h, &near_us, hash, unit);
                    assert_eq!(order, [0, 1], "{name}");
                    order = order_of(&c, &Snapshot::default(), &near_us, hash, unit);
                    order.sort();
                    assert_eq!(order, [0, 1], "{name}");
                }
            }
        }
    }

    #[test]
    fn request_residency_adds_to_the_routes() {
        let c = config(serde_json::json!({}));
        let h = Snapshot::default();
        let req = |residency| RequestFeatures {
            residency,
            ..RequestFeatures::default()
        };
        assert_eq!(order_of(&c, &h, &req(Some("eu")), 0, 0.5), [0, 1]);
        assert_eq!(order_of(&c, &h, &req(Some("EU")), 0, 0.5), [0, 1]);
        assert_eq!(order_of(&c, &h, &req(Some("country:FR")), 0, 0.5), [1]);
        assert_eq!(order_of(&c, &h, &req(Some("us")), 0, 0.5), [2]);
        let c = config(serde_json::json!({"residency": "eu"}));
        assert_eq!(order_of(&c, &h, &req(Some("country:DE")), 0, 0.5), [0]);
        let e = plan(
            &c,
            &c.routes[0],
            &h,
            &all_keys(),
            &req(Some("us")),
            0,
            0.5,
            NOW,
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::NoEligibleTarget);
        assert_eq!(e.status(), 503);
        assert!(e.message.contains("route \"r\""), "{}", e.message);
        assert!(e.message.contains("\"eu + us\""), "{}", e.message);
    }

    #[test]
    fn weighted_splits_by_weight_and_is_sticky_per_request() {
        let c = config(serde_json::json!({"strategy": "weighted", "targets": [
            {"provider": "fra", "model": "m", "weight": 70},
            {"provider": "cdg", "model": "m", "weight": 30},
            {"provider": "iad", "model": "m", "weight": 0}]}));
        let h = Snapshot::default();
        let req = RequestFeatures::default();
        let mut firsts = [0u32; 3];
        for i in 0..1_000 {
            let hash = stable_hash(format!("req_{i}").as_bytes());
            let order = order_of(&c, &h, &req, hash, 0.5);
            firsts[order[0]] += 1;
            // Retries of the same request (same hash, any random unit) keep the order.
            assert_eq!(order_of(&c, &h, &req, hash, 0.01), order);
            // The rest follow by weight; weight 0 is only ever a fallback.
            let want_rest: Vec<usize> = if order[0] == 0 {
                vec![1, 2]
            } else {
                vec![0, 2]
            };
            assert_eq!(order[1..], want_rest[..]);
        }
        assert!((650..=750).contains(&firsts[0]), "{firsts:?}");
        assert!((250..=350).contains(&firsts[1]), "{firsts:?}");
        assert_eq!(firsts[2], 0);
        // With the 70 % target open, every request starts at the healthy one.
        let h = health(&[("fra", open_until(NOW + 10))]);
        for i in 0..100 {
            let hash = stable_hash(format!("req_{i}").as_bytes());
            assert_eq!(order_of(&c, &h, &req, hash, 0.5), [1, 2, 0]);
        }
    }

    #[test]
    fn latency_prefers_the_lowest_p95() {
        let c = config(serde_json::json!({"strategy": "latency", "explore_percent": 0}));
        let req = RequestFeatures::default();
        let cases: Vec<(Health, Vec<usize>)> = vec![
            (vec![], vec![0, 1, 2, 3]),
            (
                vec![
                    ("fra", latency(700, 500)),
                    ("cdg", latency(300, 250)),
                    ("iad", latency(300, 200)),
                    ("any", latency(1_000, 100)),
                ],
                vec![2, 1, 0, 3],
            ),
            // No statistics: after the measured ones, in config order.
            (
                vec![("iad", latency(900, 900)), ("cdg", latency(400, 400))],
                vec![1, 2, 0, 3],
            ),
            // Open circuits stay at the back whatever their latency.
            (
                vec![
                    ("fra", latency(100, 100)),
                    (
                        "cdg",
                        TargetSnapshot {
                            p95_ms: Some(50),
                            ..open_until(NOW + 1)
                        },
                    ),
                ],
                vec![0, 2, 3, 1],
            ),
        ];
        for (entries, want) in cases {
            let h = health(&entries);
            for unit in [0.0, 0.5] {
                assert_eq!(order_of(&c, &h, &req, 0, unit), want, "{entries:?}");
            }
        }
    }

    #[test]
    fn latency_explores_about_five_percent() {
        let c = config(serde_json::json!({"strategy": "latency"}));
        let req = RequestFeatures::default();
        let h = health(&[
            ("fra", latency(200, 200)),
            ("cdg", latency(400, 400)),
            ("iad", latency(800, 800)),
            ("any", latency(1_600, 1_600)),
        ]);
        let mut firsts = [0u32; 4];
        for i in 0..1_000 {
            let unit = (i as f64 + 0.5) / 1_000.0;
            let order = order_of(&c, &h, &req, 0, unit);
            firsts[order[0]] += 1;
            let mut sorted = order.clone();
            sorted.sort();
            assert_eq!(sorted, [0, 1, 2, 3]);
        }
        assert_eq!(firsts[0], 950, "{firsts:?}");
        for (k, &n) in firsts.iter().enumerate().skip(1) {
            assert!(
                (15..=18).contains(&n),
                "target {k} explored {n} times: {firsts:?}"
            );
        }
        // A target without statistics is the one explored.
        let h = health(&[
            ("fra", latency(200, 200)),
            ("cdg", latency(400, 400)),
            ("iad", latency(800, 800)),
        ]);
        assert_eq!(order_of(&c, &h, &req, 0, 0.01)[0], 3);
        assert_eq!(order_of(&c, &h, &req, 0, 0.049)[0], 3);
        assert_eq!(order_of(&c, &h, &req, 0, 0.05), [0, 1, 2, 3]);
        // The exploration share is configurable.
        let c10 = config(serde_json::json!({"strategy": "latency", "explore_percent": 10}));
        assert_eq!(order_of(&c10, &h, &req, 0, 0.09)[0], 3);
        assert_eq!(order_of(&c10, &h, &req, 0, 0.1)[0], 0);
    }

    #[test]
    fn nearest_scores_colo_over_country_over_continent() {
        let c = config(serde_json::json!({"strategy": "nearest"}));
        let h = Snapshot::default();
        let at = |continent, country, colo| RequestFeatures {
            location: Location {
                continent: Some(continent),
                country: Some(country),
                colo: Some(colo),
            },
            ..RequestFeatures::default()
        };
        let cases = [
            (at("EU", "FR", "CDG"), vec![1, 0, 2, 3]),
            (at("EU", "DE", "FRA"), vec![0, 1, 2, 3]),
            (at("EU", "FR", "FRA"), vec![0, 1, 2, 3]), // colo beats country
            (at("EU", "NL", "AMS"), vec![0, 1, 2, 3]), // continent tie: config order
            (at("NA", "US", "SJC"), vec![2, 0, 1, 3]),
            (at("AS", "JP", "NRT"), vec![0, 1, 2, 3]),
        ];
        for (req, want) in cases {
            assert_eq!(order_of(&c, &h, &req, 0, 0.5), want, "{:?}", req.location);
        }
        // The nearest open: the next nearest healthy one first.
        let h = health(&[("cdg", open_until(NOW + 1))]);
        assert_eq!(
            order_of(&c, &h, &at("EU", "FR", "CDG"), 0, 0.5),
            [0, 2, 3, 1]
        );
    }

    #[test]
    fn cost_picks_the_cheapest_that_fits() {
        let c = config(serde_json::json!({"strategy": "cost"}));
        let h = Snapshot::default();
        let req = |prompt_tokens, max_output_tokens| RequestFeatures {
            prompt_tokens,
            max_output_tokens,
            ..RequestFeatures::default()
        };
        // Per 1M tokens in/out: fra 0.2/15, cdg 0.5/1.5, iad 1/2; `any` has no price.
        let cases = [
            // 1000 in, 512 out assumed: cdg 1268 < iad 2024 < fra 7880 < unknown.
            (req(1_000, None), vec![1, 2, 0, 3]),
            // cdg's 8000-token window no longer fits: after every fitting target.
            (req(7_000, Some(2_000)), vec![2, 0, 3, 1]),
            (req(9_000, None), vec![0, 2, 3, 1]),
            // Nothing but `any` (unknown window) fits; the rest by cost.
            (req(500_000, None), vec![3, 0, 1, 2]),
        ];
        for (r, want) in cases {
            assert_eq!(order_of(&c, &h, &r, 0, 0.5), want, "{r:?}");
        }
        // The cheapest open: the next cheapest first.
        let h = health(&[("cdg", open_until(NOW + 1))]);
        assert_eq!(order_of(&c, &h, &req(1_000, None), 0, 0.5), [2, 0, 3, 1]);
    }

    #[test]
    fn output_prices_matter_for_cost() {
        // Input-cheap but output-expensive loses on a long answer.
        let c = config(serde_json::json!({"strategy": "cost", "targets": [
            {"provider": "fra", "model": "m"}, {"provider": "iad", "model": "m"}]}));
        let h = Snapshot::default();
        let r = |p, o| RequestFeatures {
            prompt_tokens: p,
            max_output_tokens: Some(o),
            ..RequestFeatures::default()
        };
        // fra: 0.2·in + 15·out, iad: 1·in + 2·out.
        assert_eq!(order_of(&c, &h, &r(100_000, 10), 0, 0.5), [0, 1]);
        assert_eq!(order_of(&c, &h, &r(10, 1_000), 0, 0.5), [1, 0]);
    }

    #[test]
    fn tiers_pick_targets_by_rule() {
        let c = config(serde_json::json!({"tiers": [
            {"hint": "large", "targets": [0]},
            {"tools": true, "targets": [0, 2]},
            {"max_prompt_tokens": 1000, "targets": [1, 2]},
            {"min_prompt_tokens": 50000, "targets": [3, 0]}
        ]}));
        let h = Snapshot::default();
        let req = |prompt_tokens, has_tools, tier_hint| RequestFeatures {
            prompt_tokens,
            has_tools,
            tier_hint,
            ..RequestFeatures::default()
        };
        let cases = [
            (req(100, false, None), Some(2), vec![1, 2]),
            (req(1_000, false, None), Some(2), vec![1, 2]),
            (req(100, true, None), Some(1), vec![0, 2]),
            (req(100, true, Some(" LARGE ")), Some(0), vec![0]),
            (req(100, false, Some("small")), Some(2), vec![1, 2]),
            (req(60_000, false, None), Some(3), vec![3, 0]),
            (req(5_000, false, None), None, vec![0, 1, 2, 3]),
        ];
        for (r, tier, want) in cases {
            let p = plan(&c, &c.routes[0], &h, &all_keys(), &r, 0, 0.5, NOW).unwrap();
            assert_eq!((p.tier, p.order()), (tier, want), "{r:?}");
        }
        // The tier's targets go through the strategy and health too.
        let h = health(&[("cdg", open_until(NOW + 1))]);
        assert_eq!(order_of(&c, &h, &req(100, false, None), 0, 0.5), [2, 1]);
    }

    #[test]
    fn a_tier_without_an_eligible_target_falls_back_to_the_routes_eligible_ones() {
        let c =
            config(serde_json::json!({"tiers": [{"max_prompt_tokens": 1000, "targets": [2, 3]}]}));
        let eu = RequestFeatures {
            prompt_tokens: 10,
            residency: Some("eu"),
            ..RequestFeatures::default()
        };
        let p = plan(
            &c,
            &c.routes[0],
            &Snapshot::default(),
            &all_keys(),
            &eu,
            0,
            0.5,
            NOW,
        )
        .unwrap();
        assert_eq!((p.tier, p.order()), (None, vec![0, 1]));
    }

    /// Provider `mk` with keys K1, K2, K3 (`selection`), `fb` with one key; route `r`: mk, fb.
    fn keyed(selection: &str) -> Config {
        let doc = serde_json::json!({
            "providers": [
                {"id": "mk", "kind": "openai", "api_key_secrets": ["K1", "K2", "K3"],
                 "key_selection": selection},
                {"id": "fb", "kind": "openai", "api_key_secrets": ["FB"]}
            ],
            "routes": [{"model": "r", "targets": [
                {"provider": "mk", "model": "m"}, {"provider": "fb", "model": "m"}]}]
        });
        Config::parse(&doc.to_string()).expect("fixture config is valid")
    }

    /// (health id, snapshot) pairs.
    fn by_id(entries: &[(&str, TargetSnapshot)]) -> Snapshot {
        let mut s = Snapshot::new(NOW);
        for (id, t) in entries {
            s.insert(id.to_string(), *t);
        }
        s
    }

    fn pick(c: &Config, ks: &KeyState, h: &Snapshot, hash: u64, now: u64) -> Option<usize> {
        let keys = Keys {
            state: ks,
            is_set: &|_| true,
        };
        choose_key(c.provider("mk").unwrap(), "m", &keys, h, hash, now).0
    }

    #[test]
    fn keys_first_spread_and_rate_limited() {
        let (first, spread) = (keyed("first"), keyed("spread"));
        let h = Snapshot::default();
        let mut ks = KeyState::default();
        let none_set = Keys {
            state: &ks,
            is_set: &|_| false,
        };
        let mk = first.provider("mk").unwrap();
        assert_eq!(choose_key(mk, "m", &none_set, &h, 0, NOW), (None, None));
        assert_eq!(pick(&first, &ks, &h, 12345, NOW), Some(0));
        // Spread: every key gets about a third.
        let mut counts = [0u32; 3];
        for i in 0..3_000 {
            let hash = stable_hash(format!("req_{i}").as_bytes());
            counts[pick(&spread, &ks, &h, hash, NOW).unwrap()] += 1;
        }
        assert!(
            counts.iter().all(|&n| (900..=1_100).contains(&n)),
            "{counts:?}"
        );
        // A limited key is skipped until its Retry-After passes.
        ks.mark_limited("K1", NOW + 2_000, NOW);
        assert_eq!(ks.limited_until("K1", NOW), Some(NOW + 2_000));
        assert_eq!(pick(&first, &ks, &h, 0, NOW), Some(1));
        assert_eq!(pick(&first, &ks, &h, 0, NOW + 2_000), Some(0));
        for i in 0..300 {
            let hash = stable_hash(format!("req_{i}").as_bytes());
            assert_ne!(pick(&spread, &ks, &h, hash, NOW + 1), Some(0));
        }
        // All limited: the one free soonest.
        ks.mark_limited("K2", NOW + 1_000, NOW);
        ks.mark_limited("K3", NOW + 3_000, NOW);
        assert_eq!(pick(&first, &ks, &h, 0, NOW), Some(1));
        assert_eq!(pick(&spread, &ks, &h, 7, NOW), Some(1));
        // A shorter later limit does not shorten the pass-over; expired entries are pruned.
        ks.mark_limited("K3", NOW + 10, NOW);
        assert_eq!(ks.limited_until("K3", NOW), Some(NOW + 3_000));
        ks.mark_limited("K1", NOW + 9_000, NOW + 5_000);
        assert_eq!(ks.limited.len(), 1);
    }

    #[test]
    fn health_ids_are_per_key_only_where_a_provider_has_several() {
        let c = keyed("first");
        let (mk, fb) = (c.provider("mk").unwrap(), c.provider("fb").unwrap());
        assert!(per_key(mk) && !per_key(fb));
        assert_eq!(health_id(mk, "m", Some(1)), "mk/m#K2");
        assert_eq!(health_id(mk, "m", None), "mk/m");
        assert_eq!(
            health_id(fb, "m", Some(0)),
            "fb/m",
            "one key: the key-less id"
        );
        let targets = health_targets(&c, &c.routes);
        let ids: Vec<&str> = targets.iter().map(|t| t.0.as_str()).collect();
        assert_eq!(ids, ["mk/m#K1", "mk/m#K2", "mk/m#K3", "fb/m"]);
        assert_eq!(
            (targets[1].2, targets[1].3, targets[3].3),
            ("m", Some(1), None)
        );
    }

    #[test]
    fn an_open_key_is_passed_over_for_the_providers_other_keys() {
        let c = keyed("first");
        let half = snap(State::HalfOpen, true, 0);
        let blocked = |until| Admission::Blocked { until_ms: until };
        // (key snapshots, K1 passed over until) → (key, admission)
        type Case<'a> = (
            Vec<(&'a str, TargetSnapshot)>,
            Option<u64>,
            usize,
            Admission,
        );
        let cases: Vec<Case<'_>> = vec![
            (vec![], None, 0, Admission::Healthy),
            (
                vec![("mk/m#K1", open_until(NOW + 10))],
                None,
                1,
                Admission::Healthy,
            ),
            // A closed key before a half-open one, whatever the order.
            (
                vec![("mk/m#K1", open_until(NOW + 10)), ("mk/m#K2", half)],
                None,
                2,
                Admission::Healthy,
            ),
            // No closed key: the free probe slot.
            (
                vec![
                    ("mk/m#K1", open_until(NOW + 10)),
                    ("mk/m#K2", half),
                    ("mk/m#K3", open_until(NOW + 5)),
                ],
                None,
                1,
                Admission::Probe,
            ),
            // Every key open: the target is open, until its soonest key.
            (
                vec![
                    ("mk/m#K1", open_until(NOW + 30)),
                    ("mk/m#K2", open_until(NOW + 10)),
                    ("mk/m#K3", open_until(NOW + 20)),
                ],
                None,
                1,
                blocked(NOW + 10),
            ),
            // A passed-over key and open ones: the one free soonest.
            (
                vec![
                    ("mk/m#K2", open_until(NOW + 3)),
                    ("mk/m#K3", open_until(NOW + 9)),
                ],
                Some(NOW + 5),
                1,
                blocked(NOW + 3),
            ),
            (
                vec![
                    ("mk/m#K2", open_until(NOW + 30)),
                    ("mk/m#K3", open_until(NOW + 9)),
                ],
                Some(NOW + 5),
                0,
                Admission::Healthy,
            ),
            // The key-less id says nothing about a provider with several keys.
            (
                vec![("mk/m", open_until(NOW + 10))],
                None,
                0,
                Admission::Healthy,
            ),
        ];
        for (entries, limited, want_key, want) in cases {
            let h = by_id(&entries);
            let mut ks = KeyState::default();
            if let Some(until) = limited {
                ks.mark_limited("K1", until, NOW);
            }
            let keys = Keys {
                state: &ks,
                is_set: &|_| true,
            };
            let p = plan(
                &c,
                &c.routes[0],
                &h,
                &keys,
                &Default::default(),
                0,
                0.5,
                NOW,
            )
            .unwrap();
            let first = p.candidates.iter().find(|c| c.index == 0).unwrap();
            assert_eq!(
                (first.key, first.admission),
                (Some(want_key), want),
                "{entries:?}"
            );
            // The provider's own other key, not a failover: mk stays first unless all are out.
            let mk_first = !matches!(want, Admission::Blocked { .. });
            assert_eq!(p.order()[0] == 0, mk_first, "{entries:?}");
        }
        // A key whose secret is not set is never chosen.
        let h = by_id(&[("mk/m#K1", open_until(NOW + 10))]);
        let ks = KeyState::default();
        let keys = Keys {
            state: &ks,
            is_set: &|n| n != "K2",
        };
        let p = plan(
            &c,
            &c.routes[0],
            &h,
            &keys,
            &Default::default(),
            0,
            0.5,
            NOW,
        )
        .unwrap();
        assert_eq!(p.candidates[0].key, Some(2));
        // Spread: an open key's share goes to the others.
        let spread = keyed("spread");
        let h = by_id(&[("mk/m#K2", open_until(NOW + 10))]);
        let mut counts = [0u32; 3];
        for i in 0..600 {
            let hash = stable_hash(format!("req_{i}").as_bytes());
            counts[pick(&spread, &KeyState::default(), &h, hash, NOW).unwrap()] += 1;
        }
        assert_eq!(counts[1], 0, "{counts:?}");
        assert!(counts[0] >= 150 && counts[2] >= 150, "{counts:?}");
    }

    #[test]
    fn every_target_open_still_tries_the_soonest_key() {
        let c = keyed("first");
        let h = by_id(&[
            ("mk/m#K1", open_until(NOW + 30)),
            ("mk/m#K2", open_until(NOW + 10)),
            ("mk/m#K3", open_until(NOW + 20)),
            ("fb/m", open_until(NOW + 15)),
        ]);
        let p = plan(
            &c,
            &c.routes[0],
            &h,
            &all_keys(),
            &Default::default(),
            0,
            0.5,
            NOW,
        )
        .unwrap();
        assert!(p.all_blocked());
        assert_eq!(p.order(), [0, 1]);
        assert_eq!(p.candidates[0].key, Some(1));
        let h = by_id(&[
            ("mk/m#K1", open_until(NOW + 30)),
            ("mk/m#K2", open_until(NOW + 20)),
            ("mk/m#K3", open_until(NOW + 20)),
            ("fb/m", open_until(NOW + 15)),
        ]);
        let p = plan(
            &c,
            &c.routes[0],
            &h,
            &all_keys(),
            &Default::default(),
            0,
            0.5,
            NOW,
        )
        .unwrap();
        assert_eq!((p.order(), p.candidates[1].key), (vec![1, 0], Some(1)));
    }

    #[test]
    fn an_attempt_with_another_key_is_stamped_as_ordinary_traffic() {
        let c = Candidate {
            index: 0,
            admission: Admission::Probe,
            epoch: 4,
            key: Some(1),
        };
        let other = TargetSnapshot {
            epoch: 9,
            ..TargetSnapshot::unknown()
        };
        assert_eq!(c.stamp(Some(1), Some(&other)), (4, true));
        assert_eq!(c.stamp(Some(2), Some(&other)), (9, false));
        assert_eq!(c.stamp(Some(2), None), (0, false));
    }
}
