//! `TenantGateObject`: one Durable Object per tenant that admits, reserves and settles spend and
//! keeps the tenant's and its end users' rate windows. The decisions are
//! `switchyard_core::tenancy::TenantGate`; this object loads, calls and stores.
//!
//! State lives in the object's storage (`gate`, `user:<id>`), mirrored in memory. Storage
//! operations keep the object's input gate closed, so one admission's read-modify-write is never
//! interleaved with another's. On first use the spend of the current periods is rebuilt from the
//! D1 ledger (the ledger of record), under `block_concurrency_while`.

use std::cell::RefCell;
use std::collections::HashMap;

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use switchyard_core::tenancy::{
    AdmitRequest, Period, PeriodSpend, SettleRequest, SettleResponse, SpendView, TenantGate,
    UserGate,
};
use worker::wasm_bindgen::JsValue;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

use crate::platform::now_ms;

#[derive(Serialize, Deserialize)]
struct Call<T> {
    tenant: String,
    #[serde(default)]
    user: Option<String>,
    body: T,
}

#[durable_object(fetch)]
pub struct TenantGateObject {
    state: State,
    env: Env,
    gate: RefCell<Option<TenantGate>>,
    users: RefCell<HashMap<String, UserGate>>,
}

impl DurableObject for TenantGateObject {
    fn new(state: State, env: Env) -> Self {
        TenantGateObject {
            state,
            env,
            gate: RefCell::new(None),
            users: RefCell::new(HashMap::new()),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let path = req.path();
        let text = req.text().await?;
        match path.as_str() {
            "/admit" => {
                let call: Call<AdmitRequest> = serde_json::from_slice(text.as_bytes())?;
                self.ensure_loaded(&call.tenant).await?;
                let user = self.load_user(call.user.as_deref()).await?;
                let now = now_ms();
                let resp = {
                    let mut gate = self.gate.borrow_mut();
                    let gate = gate.get_or_insert_with(TenantGate::default);
                    let mut users = self.users.borrow_mut();
                    let u = user.as_ref().and_then(|k| users.get_mut(k));
                    gate.admit(u, &call.body, now)
                };
                self.persist(user.as_deref()).await?;
                Response::from_json(&resp)
            }
            "/settle" => {
                let call: Call<SettleRequest> = serde_json::from_slice(text.as_bytes())?;
                self.ensure_loaded(&call.tenant).await?;
                let user = self.load_user(call.user.as_deref()).await?;
                let now = now_ms();
                let resp: SettleResponse = {
                    let mut gate = self.gate.borrow_mut();
                    let gate = gate.get_or_insert_with(TenantGate::default);
                    let mut users = self.users.borrow_mut();
                    let u = user.as_ref().and_then(|k| users.get_mut(k));
                    gate.settle(u, &call.body, now)
                };
                self.persist(user.as_deref()).await?;
                Response::from_json(&resp)
            }
            "/view" => {
                let call: Call<switchyard_core::tenancy::Limits> =
                    serde_json::from_slice(text.as_bytes())?;
                self.ensure_loaded(&call.tenant).await?;
                let view: Vec<SpendView> = {
                    let mut gate = self.gate.borrow_mut();
                    gate.get_or_insert_with(TenantGate::default)
                        .view(&call.body, now_ms())
                };
                Response::from_json(&view)
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
        if let Some(g) = storage.get::<String>("gate").await? {
            *self.gate.borrow_mut() = Some(serde_json::from_slice(g.as_bytes())?);
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
            let u = match self.state.storage().get::<String>(&key).await? {
                Some(json) => serde_json::from_slice(json.as_bytes())?,
                None => UserGate::default(),
            };
            self.users.borrow_mut().entry(key.clone()).or_insert(u);
        }
        Ok(Some(key))
    }

    async fn persist(&self, user_key: Option<&str>) -> Result<()> {
        let storage = self.state.storage();
        // Stored as JSON text: one serializer (serde_json) in the worker, not two.
        let gate = self
            .gate
            .borrow()
            .as_ref()
            .map(serde_json::to_string)
            .transpose()?;
        if let Some(g) = gate {
            storage.put("gate", g).await?;
        }
        if let Some(k) = user_key {
            let u = self
                .users
                .borrow()
                .get(k)
                .map(serde_json::to_string)
                .transpose()?;
            if let Some(u) = u {
                storage.put(k, u).await?;
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
    let sums: Option<String> = db
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
        ])?
        .first(Some("j"))
        .await?;
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

/// Call the tenant's gate object.
pub async fn call<T: Serialize, R: DeserializeOwned>(
    env: &Env,
    tenant: &str,
    user: Option<&str>,
    op: &str,
    body: &T,
) -> Result<R> {
    let payload = serde_json::to_string(&Call {
        tenant: tenant.to_string(),
        user: user.map(str::to_string),
        body,
    })?;
    let text = Box::pin(call_text(env, tenant, op, payload)).await?;
    Ok(serde_json::from_slice(text.as_bytes())?)
}

/// The I/O of [`call`], not generic: compiled once for every body and answer type (wasm size).
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
