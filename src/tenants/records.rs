//! Tenant records from D1, cached in the isolate.
//!
//! A token is looked up by its sha256 hash; the record (tenant, limits, budgets) is kept for
//! [`RECORD_TTL_MS`], so a revocation or a change made through the admin API takes effect within
//! that bound. Unknown tokens are remembered for [`NEGATIVE_TTL_MS`] so a flood of bad tokens
//! cannot turn into a flood of D1 queries.

use std::cell::RefCell;
use std::rc::Rc;
use switchyard_core::vecmap::VecMap;

use switchyard_core::error::GatewayError;
use switchyard_core::tenancy::codec::TenantRow;
use switchyard_core::tenancy::Limits;
use worker::wasm_bindgen::JsValue;
use worker::Env;

use crate::platform::{self, now_ms};

pub const RECORD_TTL_MS: u64 = 30_000;
pub const NEGATIVE_TTL_MS: u64 = 5_000;
const MAX_ENTRIES: usize = 4096;

/// What the request path needs to know about a tenant.
#[derive(Debug, Clone)]
pub struct TenantRecord {
    pub id: String,
    pub active: bool,
    /// `None`: every model.
    pub allowed_models: Option<Vec<String>>,
    pub allowed_origins: Vec<String>,
    pub limits: Limits,
    pub signing_key_version: u32,
    /// The token that authenticated (tenant tokens only).
    pub token_id: Option<String>,
    /// A region tag every answering target must carry (data residency), e.g. `eu`.
    pub residency: Option<String>,
    /// `tokens.last_used_ms` was updated for this cached copy (so: at most once per
    /// [`RECORD_TTL_MS`] per isolate, not once per request).
    pub touched: std::cell::Cell<bool>,
}

impl From<TenantRow> for TenantRecord {
    fn from(r: TenantRow) -> Self {
        TenantRecord {
            active: r.status == "active",
            allowed_models: r.allowed_models,
            allowed_origins: r.allowed_origins.unwrap_or_default(),
            limits: r.limits,
            signing_key_version: r.signing_key_version,
            token_id: r.token_id,
            residency: r.residency.filter(|r| !r.is_empty()),
            touched: std::cell::Cell::new(false),
            id: r.id,
        }
    }
}

/// One row as the JSON object SQLite builds (`SELECT json_object(…) AS j`), read by
/// [`TenantRow::from_json`] with the serde_json already in the worker.
const SELECT: &str = "SELECT json_object('id', t.id, 'status', t.status, \
     'allowed_models', json(t.allowed_models), 'allowed_origins', json(t.allowed_origins), \
     'rpm_limit', t.rpm_limit, 'tpm_limit', t.tpm_limit, 'user_rpm_limit', t.user_rpm_limit, \
     'user_tpm_limit', t.user_tpm_limit, 'signing_key_version', t.signing_key_version, \
     'residency', t.residency, \
     'budgets', (SELECT json_group_array(json_object('period', b.period, 'limit_nanos', \
       b.limit_nanos, 'alert_threshold', b.alert_threshold, 'webhook_url', b.webhook_url)) \
      FROM budgets b WHERE b.tenant_id = t.id)";

type Slot = (Option<Rc<TenantRecord>>, u64);

thread_local! {
    static CACHE: RefCell<VecMap<String, Slot>> = RefCell::new(VecMap::new());
}

fn cached(key: &str, now: u64) -> Option<Option<Rc<TenantRecord>>> {
    CACHE.with(|c| {
        let c = c.borrow();
        let (rec, at) = c.get(key)?;
        let ttl = if rec.is_some() {
            RECORD_TTL_MS
        } else {
            NEGATIVE_TTL_MS
        };
        (now.saturating_sub(*at) < ttl).then(|| rec.clone())
    })
}

fn remember(key: String, rec: Option<Rc<TenantRecord>>, now: u64) {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= MAX_ENTRIES {
            c.clear();
        }
        c.insert(key, (rec, now));
    });
}

/// Forget every cached record (the admin API calls this after a change in this isolate).
pub fn forget_all() {
    CACHE.with(|c| c.borrow_mut().clear());
}

fn db_error(_: worker::Error) -> GatewayError {
    GatewayError::internal("the tenant database is unavailable")
}

async fn query_one(
    env: &Env,
    sql: String,
    arg: &str,
) -> Result<Option<TenantRecord>, GatewayError> {
    let db = env.d1("DB").map_err(db_error)?;
    let stmt = db
        .prepare(sql)
        .bind(&[JsValue::from_str(arg)])
        .map_err(db_error)?;
    let json = platform::first_text(&stmt, "j").await.map_err(db_error)?;
    match json {
        None => Ok(None),
        Some(j) => TenantRow::from_json(j.as_bytes())
            .map(|r| Some(r.into()))
            .map_err(|_| GatewayError::internal("a tenant record could not be read")),
    }
}

/// The tenant behind a tenant token's hash (revoked tokens find nothing).
pub async fn by_token_hash(
    env: &Env,
    hash: &str,
) -> Result<Option<Rc<TenantRecord>>, GatewayError> {
    let key = format!("h:{hash}");
    let now = now_ms();
    if let Some(hit) = cached(&key, now) {
        return Ok(hit);
    }
    let sql = format!(
        "{SELECT}, 'token_id', k.id) AS j FROM tokens k JOIN tenants t ON t.id = k.tenant_id \
         WHERE k.hash = ?1 AND k.revoked_ms IS NULL"
    );
    let rec = query_one(env, sql, hash).await?.map(Rc::new);
    remember(key, rec.clone(), now);
    Ok(rec)
}

/// A tenant by id (for end-user tokens, which carry the tenant id).
pub async fn by_id(env: &Env, id: &str) -> Result<Option<Rc<TenantRecord>>, GatewayError> {
    let key = format!("t:{id}");
    let now = now_ms();
    if let Some(hit) = cached(&key, now) {
        return Ok(hit);
    }
    let sql = format!("{SELECT}, 'token_id', NULL) AS j FROM tenants t WHERE t.id = ?1");
    let rec = query_one(env, sql, id).await?.map(Rc::new);
    remember(key, rec.clone(), now);
    Ok(rec)
}

/// Whether any active tenant allows this origin (CORS preflights carry no token).
pub async fn origin_known(env: &Env, origin: &str) -> Result<bool, GatewayError> {
    let key = format!("o:{origin}");
    let now = now_ms();
    if let Some(hit) = cached(&key, now) {
        return Ok(hit.is_some());
    }
    let db = env.d1("DB").map_err(db_error)?;
    let stmt = db
        .prepare(
            "SELECT t.id FROM tenants t, json_each(t.allowed_origins) o \
             WHERE t.status = 'active' AND o.value = ?1 LIMIT 1",
        )
        .bind(&[JsValue::from_str(origin)])
        .map_err(db_error)?;
    let found = platform::first_text(&stmt, "id").await.map_err(db_error)?;
    let marker = found.map(|_| {
        Rc::new(TenantRecord {
            id: String::new(),
            active: true,
            allowed_models: None,
            allowed_origins: vec![origin.to_string()],
            limits: Limits::default(),
            signing_key_version: 0,
            token_id: None,
            residency: None,
            touched: std::cell::Cell::new(true),
        })
    });
    let known = marker.is_some();
    remember(key, marker, now);
    Ok(known)
}

/// Record when a token was last used (at most once per cache period per isolate).
pub async fn touch_token(env: &Env, token_id: &str, now: u64) {
    if let Ok(db) = env.d1("DB") {
        if let Ok(stmt) = db
            .prepare("UPDATE tokens SET last_used_ms = ?1 WHERE id = ?2")
            .bind(&[JsValue::from_f64(now as f64), JsValue::from_str(token_id)])
        {
            let _ = stmt.run().await;
        }
    }
}
