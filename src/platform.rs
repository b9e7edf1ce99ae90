//! The platform's clock, randomness, configuration and secrets, behind plain functions.

use std::cell::RefCell;
use std::rc::Rc;

use switchyard_core::config::{Config, ConfigError, ProviderConfig};
use switchyard_core::error::{ErrorKind, GatewayError};
use switchyard_core::providers::esc;
use switchyard_core::routing::{KeyState, Keys};
use worker::js_sys::futures::JsFuture;
use worker::wasm_bindgen::JsValue;
use worker::{console_error, Env};

/// Unix milliseconds. (In Workers the clock advances on I/O, which is all a deadline needs.)
pub fn now_ms() -> u64 {
    worker::Date::now().as_millis()
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // getrandom uses crypto.getRandomValues on wasm; it does not fail there.
    let _ = getrandom::fill(&mut b);
    b
}

/// A uniform number in [0, 1).
pub fn random_unit() -> f64 {
    let n = u64::from_le_bytes(random_bytes::<8>()) >> 11;
    n as f64 / (1u64 << 53) as f64
}

/// Work after the response (`ctx.wait_until`). Every caller goes through this one boxed type,
/// so the runtime's promise glue is compiled once instead of once per future type (wasm size).
pub fn after(
    ctx: &worker::Context,
    work: std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>,
) {
    ctx.wait_until(work);
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

pub const CONFIG_VAR: &str = "SWITCHYARD_CONFIG";

type Parsed = Rc<Result<Rc<Config>, ConfigError>>;

thread_local! {
    /// The parsed configuration. Variables cannot change during an isolate's life (a deploy or
    /// a `wrangler dev` reload starts new isolates), so it is read and parsed once per isolate.
    static CONFIG: RefCell<Option<Parsed>> = const { RefCell::new(None) };
}

/// The validated configuration. An invalid one is logged (once per isolate) and becomes a 500
/// `config_invalid` naming the field.
pub fn config(env: &Env) -> Result<Rc<Config>, GatewayError> {
    let parsed = CONFIG.with(|cell| {
        let mut slot = cell.borrow_mut();
        if let Some(parsed) = slot.as_ref() {
            return parsed.clone();
        }
        let text = match env.var(CONFIG_VAR) {
            Ok(v) => v.to_string(),
            Err(_) => String::new(),
        };
        let parsed: Parsed = Rc::new(if text.is_empty() {
            Err(ConfigError {
                path: CONFIG_VAR.into(),
                message: "is not set; see docs/CONFIG.md".into(),
            })
        } else {
            Config::parse(&text).map(Rc::new)
        });
        if let Err(e) = parsed.as_ref() {
            console_error!(
                "{{\"msg\":\"switchyard.config_invalid\",\"field\":{},\"error\":{}}}",
                esc(&e.path),
                esc(&e.message)
            );
        }
        *slot = Some(parsed.clone());
        parsed
    });
    match parsed.as_ref() {
        Ok(c) => Ok(c.clone()),
        Err(e) => Err(GatewayError::new(
            ErrorKind::ConfigInvalid,
            format!(
                "The gateway's configuration is invalid at `{}`: {}",
                e.path, e.message
            ),
        )
        .with_param(e.path.clone())),
    }
}

/// A secret's value, if set and non-empty.
pub fn secret(env: &Env, name: &str) -> Option<String> {
    env.secret(name)
        .ok()
        .map(|s| s.to_string())
        .filter(|s| !s.is_empty())
}

/// How long a key that drew a 401/403 is passed over in favour of the provider's other keys.
pub const BAD_KEY_TTL_MS: u64 = 5 * 60 * 1000;

thread_local! {
    /// Which keys (secret names) are passed over until when: rejected (401/403) or rate-limited
    /// (429 with `Retry-After`). Isolate memory; each isolate learns alone.
    static KEYS: RefCell<KeyState> = RefCell::new(KeyState::default());
}

/// Run `f` with what choosing a key needs (`routing::plan`, `routing::choose_key`): this
/// isolate's passed-over keys and which secrets are set.
pub fn with_keys(env: &Env, f: &mut dyn FnMut(&Keys<'_>)) {
    KEYS.with(|k| {
        let state = k.borrow();
        let is_set = |name: &str| secret(env, name).is_some();
        f(&Keys {
            state: &state,
            is_set: &is_set,
        })
    })
}

/// The provider's key `k` (an index into `api_key_secrets`) as (secret name, value), if set.
pub fn key(env: &Env, provider: &ProviderConfig, k: Option<usize>) -> Option<(String, String)> {
    let name = provider.api_key_secrets.get(k?)?;
    secret(env, name).map(|v| (name.clone(), v))
}

/// Pass over this key until `until_ms`. Returns whether the provider has another set key that
/// is not passed over.
pub fn pass_over_key(env: &Env, provider: &ProviderConfig, name: &str, until_ms: u64) -> bool {
    let now = now_ms();
    KEYS.with(|k| {
        let mut k = k.borrow_mut();
        k.mark_limited(name, until_ms, now);
        provider
            .api_key_secrets
            .iter()
            .any(|n| n != name && k.limited_until(n, now).is_none() && secret(env, n).is_some())
    })
}

/// Column `col` of a D1 statement's first row, as text: `None` when there is no row or the value
/// is not text. Read from the JS value directly: `D1PreparedStatement::first::<String>` and
/// `Storage::get::<String>` go through serde_wasm_bindgen, whose error paths alone pull float
/// formatting into the worker.
pub async fn first_text(
    stmt: &worker::D1PreparedStatement,
    col: &str,
) -> worker::Result<Option<String>> {
    let v = JsFuture::from(stmt.inner().first(Some(col))?).await?;
    Ok(v.as_string())
}

/// A Durable Object's stored text under `key`, or `None`.
pub async fn stored_text(storage: &worker::Storage, key: &str) -> worker::Result<Option<String>> {
    let found = storage.get_multiple(vec![key]).await?;
    Ok(found.get(&JsValue::from_str(key)).as_string())
}

/// Store `value` as text under `key` in a Durable Object's storage.
pub async fn store_text(storage: &worker::Storage, key: &str, value: &str) -> worker::Result<()> {
    storage.put_raw(key, JsValue::from_str(value)).await
}
