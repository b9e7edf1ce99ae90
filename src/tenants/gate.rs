//! `TenantGateObject`: one Durable Object per tenant that admits, reserves and settles spend and
//! keeps the tenant's and its end users' rate windows. The decisions are
//! `switchyard_core::tenancy::TenantGate`; this object loads, calls and stores.
//!
//! State lives in the object's storage (`gate`, `user:<id>`), mirrored in memory. Storage
//! operations keep the object's input gate closed, so one admission's read-modify-write is never
//! interleaved with another's. On first use the spend of the current periods is rebuilt from the
//! D1 ledger (the ledger of record), under `block_concurrency_while`.

use std::cell::RefCell;
use switchyard_core::vecmap::VecMap;

use switchyard_core::json::DecodeError;
use switchyard_core::tenancy::codec::GateCall;
use switchyard_core::tenancy::{
    AdmitRequest, AdmitResponse, Limits, Period, PeriodSpend, SettleRequest, SettleResponse,
    SpendView, TenantGate, UserGate,
};
use worker::wasm_bindgen::JsValue;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

use crate::platform::{self, now_ms};

/// A codec error as the worker's error type.
fn unreadable(what: &str, e: DecodeError) -> worker::Error {
    worker::Error::RustError(format!("{what}: {e}"))
}

/// A JSON text answer (the caller reads the text).
fn answer(json: String) -> Result<Response> {
    Response::ok(json)
}

#[durable_object(fetch)]
pub struct TenantGateObject {
    state: State,
    env: Env,
    gate: RefCell<Option<TenantGate>>,
    users: RefCell<VecMap<String, UserGate>>,
}

impl DurableObject for TenantGateObject {
    fn new(state: State, env: Env) -> Self {
        TenantGateObject {
            state,
            env,
            gate: RefCell::new(None),
            users: RefCell::new(VecMap::new()),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let path = req.path();
        let text = req.text().await?;
        let call = GateCall::decode(text.as_bytes()).map_err(|e| unreadable("gate call", e))?;
        match path.as_str() {
            "/admit" => {
                let body =
                    AdmitRequest::from_json(&call.body).map_err(|e| unreadable("admit", e))?;
                self.ensure_loaded(&call.tenant).await?;
                let user = self.load_user(call.user.as_deref()).await?;
                let now = now_ms();
                let resp = {
                    let mut gate = self.gate.borrow_mut();
                    let gate = gate.get_or_insert_with(TenantGate::default);
                    let mut users = self.users.borrow_mut();
                    let u = user.as_ref().and_then(|k| users.get_mut(k));
                    gate.admit(u, &body, now)
                };
                self.persist(user.as_deref()).await?;
                answer(resp.to_json())
            }
            "/settle" => {
                let body =
                    SettleRequest::from_json(&call.body).map_err(|e| unreadable("settle", e))?;
                self.ensure_loaded(&call.tenant).await?;
                let user = self.load_user(call.user.as_deref()).await?;
                let now = now_ms();
                let resp: SettleResponse = {
                    let mut gate = self.gate.borrow_mut();
                    let gate = gate.get_or_insert_with(TenantGate::default);
                    let mut users = self.users.borrow_mut();
                    let u = user.as_ref().and_then(|k| users.get_mut(k));
                    gate.settle(u, &body, now)
                };
                self.persist(user.as_deref()).await?;
                answer(resp.to_json())
            }
            "/view" => {
                let limits = Limits::from_json(&call.body).map_err(|e| unreadable("view", e))?;
                self.ensure_loaded(&call.tenant).await?;
                let view: Vec<SpendView> = {
                    let mut gate = self.gate.borrow_mut();
                    gate.get_or_insert_with(TenantGate::default)
                        .view(&limits, now_ms())
                };
                answer(SpendView::list_to_json(&view))
            }
            _ => Response::error("not found", 404),
        }
    }
}

impl TenantGateObject {
    async fn ensure_loaded(&self, tenant: &str) -> Result<()> {
        if self.gate.borrow().is_some() {
            return Ok(());
        }
        let storage = self.state.storage();
        if let Some(g) = platform::stored_text(&storage, "gate").await? {
            let gate = TenantGate::from_json(g.as_bytes()).map_err(|e| unreadable("gate", e))?;
            *self.gate.borrow_mut() = Some(gate);
            return Ok(());
        }
        // First use: rebuild the periods' spend from the ledger, with other events held back.
        let env = self.env.clone();
        let tenant = tenant.to_string();
        let rebuilt = self
            .state
            .block_concurrency_while(async move { rebuild(&env, &tenant).await })
            .await?;
        if self.gate.borrow().is_none() {
            *self.gate.borrow_mut() = Some(rebuilt);
        }
        Ok(())
    }

    async fn load_user(&self, user: Option<&str>) -> Result<Option<String>> {
        let Some(user) = user else { return Ok(None) };
        let key = format!("user:{user}");
        if !self.users.borrow().contains_key(&key) {
            let u = match platform::stored_text(&self.state.storage(), &key).await? {
                Some(json) => {
                    UserGate::from_json(json.as_bytes()).map_err(|e| unreadable(&key, e))?
                }
                None => UserGate::default(),
            };
            let mut users = self.users.borrow_mut();
            if !users.contains_key(&key) {
                users.insert(key.clone(), u);
            }
        }
        Ok(Some(key))
    }

    async fn persist(&self, user_key: Option<&str>) -> Result<()> {
        let storage = self.state.storage();
        // Stored as JSON text written by hand (`tenancy::codec`: the stored forms).
        let gate = self.gate.borrow().as_ref().map(TenantGate::to_json);
        if let Some(g) = gate {
            platform::store_text(&storage, "gate", &g).await?;
        }
        if let Some(k) = user_key {
            let u = self.users.borrow().get(k).map(UserGate::to_json);
            if let Some(u) = u {
                platform::store_text(&storage, k, &u).await?;
            }
        }
        Ok(())
    }
}

async fn rebuild(env: &Env, tenant: &str) -> Result<TenantGate> {
    let now = now_ms();
    let day = Period::Day.start_ms(now);
    let month = Period::Month.start_ms(now);
    let db = env.d1("DB")?;
    let stmt = db
        .prepare(
            "SELECT json_object( \
               'day', COALESCE(SUM(CASE WHEN ts_ms >= ?2 THEN cost_nanos END), 0), \
               'month', COALESCE(SUM(CASE WHEN ts_ms >= ?3 THEN cost_nanos END), 0), \
               'total', COALESCE(SUM(cost_nanos), 0)) AS j \
             FROM usage_ledger WHERE tenant_id = ?1",
        )
        .bind(&[
            JsValue::from_str(tenant),
            JsValue::from_f64(day as f64),
            JsValue::from_f64(month as f64),
        ])?;
    let sums = platform::first_text(&stmt, "j").await?;
    let mut gate = TenantGate::default();
    if let Some(j) = sums {
        // Read by hand, not with a derived reader (wasm size).
        let s: serde_json::Value = serde_json::from_slice(j.as_bytes())?;
        let sum = |k: &str| {
            s.get(k).and_then(serde_json::Value::as_u64).ok_or_else(|| {
                worker::Error::RustError(format!("the ledger sum `{k}` is not a count"))
            })
        };
        for (period, start, spent) in [
            (Period::Day, day, sum("day")?),
            (Period::Month, month, sum("month")?),
            (Period::Total, 0, sum("total")?),
        ] {
            gate.spend.insert(
                period,
                PeriodSpend {
                    start_ms: start,
                    spent_nanos: spent,
                    alerted: false,
                },
            );
        }
    }
    Ok(gate)
}

/// Ask the tenant's gate to admit (and reserve for) a request.
pub async fn admit(
    env: &Env,
    tenant: &str,
    user: Option<&str>,
    req: &AdmitRequest,
) -> Result<AdmitResponse> {
    let text = call(env, tenant, user, "admit", &req.to_json()).await?;
    AdmitResponse::from_json(text.as_bytes()).map_err(|e| unreadable("the gate's answer", e))
}

/// Settle a request's real cost with the tenant's gate.
pub async fn settle(
    env: &Env,
    tenant: &str,
    user: Option<&str>,
    req: &SettleRequest,
) -> Result<SettleResponse> {
    let text = call(env, tenant, user, "settle", &req.to_json()).await?;
    SettleResponse::from_json(text.as_bytes()).map_err(|e| unreadable("the gate's answer", e))
}

/// The tenant's spend in the periods of `limits`' budgets, as its gate sees it.
pub async fn view(env: &Env, tenant: &str, limits: &Limits) -> Result<Vec<SpendView>> {
    let text = call(env, tenant, None, "view", &limits.to_json()).await?;
    SpendView::list_from_json(text.as_bytes()).map_err(|e| unreadable("the gate's answer", e))
}

/// How long a request waits for its tenant's gate object. Past it the call fails like an
/// unreachable object (admission then proceeds, logged: `docs/TENANTS.md`); a reservation the
/// object made anyway expires with its hold.
const GATE_CALL_MS: u64 = 3_000;

/// Call the tenant's gate object with a body already encoded; its answer's text.
async fn call(env: &Env, tenant: &str, user: Option<&str>, op: &str, body: &str) -> Result<String> {
    let payload = GateCall::encode(tenant, user, body);
    let call = Box::pin(call_text(env, tenant, op, payload));
    crate::upstream::within(GATE_CALL_MS, call)
        .await
        .unwrap_or_else(|| {
            Err(worker::Error::RustError(
                "the gate did not answer in time".into(),
            ))
        })
}

/// The I/O of [`call`].
async fn call_text(env: &Env, tenant: &str, op: &str, payload: String) -> Result<String> {
    let stub = env
        .durable_object("TENANT_GATE")?
        .id_from_name(tenant)?
        .get_stub()?;
    let req = crate::upstream::post(
        &format!("https://gate/{op}"),
        &[],
        &JsValue::from_str(&payload),
    )?;
    let mut resp = stub.fetch_with_request(req).await?;
    if resp.status_code() != 200 {
        return Err(worker::Error::RustError(format!(
            "gate answered {}",
            resp.status_code()
        )));
    }
    resp.text().await
}
