//! The response cache at the edge: Workers KV reads, writes, listing and deletes, and the
//! in-isolate coalescing of identical concurrent misses. Every decision (key, policy, freshness,
//! what may be stored) is `switchyard_core::cache`'s; see `docs/CACHE.md`.
//!
//! KV is called through its JS methods directly (options built as plain objects) rather than
//! through `worker::KvStore`, whose option and list types each instantiate a
//! `serde_wasm_bindgen` (de)serializer: this keeps the wasm small.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use serde_json::Value;
use switchyard_core::cache::{CacheDecision, Coalescer, Entry, Role, Ticket};
use switchyard_core::usage::Usage;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use worker::js_sys::{Array, ArrayBuffer, Object, Promise, Reflect, Uint8Array};
use worker::wasm_bindgen_futures::JsFuture;
use worker::{console_error, Delay, Env};

use crate::platform::now_ms;

/// The KV binding (wrangler.toml).
pub const BINDING: &str = "CACHE";

#[wasm_bindgen]
extern "C" {
    /// A Workers KV namespace binding.
    type KvNamespace;
    #[wasm_bindgen(method, catch)]
    fn get(this: &KvNamespace, key: &str, options: &Object) -> Result<Promise, JsValue>;
    #[wasm_bindgen(method, catch)]
    fn put(
        this: &KvNamespace,
        key: &str,
        value: &ArrayBuffer,
        options: &Object,
    ) -> Result<Promise, JsValue>;
    #[wasm_bindgen(method, catch)]
    fn list(this: &KvNamespace, options: &Object) -> Result<Promise, JsValue>;
    #[wasm_bindgen(method, catch)]
    fn delete(this: &KvNamespace, key: &str) -> Result<Promise, JsValue>;
}

fn kv(env: &Env) -> Option<KvNamespace> {
    Reflect::get(env, &JsValue::from_str(BINDING))
        .ok()
        .filter(|v| v.is_object())
        .map(JsCast::unchecked_into)
}

fn options(pairs: &[(&str, JsValue)]) -> Object {
    let o = Object::new();
    for (k, v) in pairs {
        let _ = Reflect::set(&o, &JsValue::from_str(k), v);
    }
    o
}

async fn call(p: Result<Promise, JsValue>) -> Result<JsValue, JsValue> {
    JsFuture::from(p?).await
}

fn field(v: &JsValue, k: &str) -> JsValue {
    Reflect::get(v, &JsValue::from_str(k)).unwrap_or(JsValue::UNDEFINED)
}

/// How long a request waits for a cache read; a slower read is a miss (and logged).
const READ_MS: u64 = 1_000;

/// The stored value, or `None` (absent, or KV failed or was slower than [`READ_MS`]: a failed
/// read is a miss, and logged).
pub async fn get(env: &Env, key: &str) -> Option<Vec<u8>> {
    let kv = kv(env)?;
    let opts = options(&[("type", JsValue::from_str("arrayBuffer"))]);
    match crate::upstream::within(READ_MS, call(kv.get(key, &opts))).await {
        Some(Ok(v)) => v
            .dyn_ref::<ArrayBuffer>()
            .map(|b| Uint8Array::new(b).to_vec()),
        Some(Err(_)) => {
            console_error!(r#"{{"msg":"switchyard.cache_read_failed"}}"#);
            None
        }
        None => {
            console_error!(r#"{{"msg":"switchyard.cache_read_timeout","after_ms":1000}}"#);
            None
        }
    }
}

async fn put(env: &Env, key: &str, value: &[u8], expiration_ttl_s: u32) -> bool {
    let Some(kv) = kv(env) else { return false };
    let bytes = Uint8Array::new_with_length(value.len() as u32);
    bytes.copy_from(value);
    let opts = options(&[("expirationTtl", JsValue::from(expiration_ttl_s))]);
    call(kv.put(key, &bytes.buffer(), &opts)).await.is_ok()
}

/// Delete one key. KV answers the same whether it existed or not.
pub async fn delete(env: &Env, key: &str) -> bool {
    match kv(env) {
        Some(kv) => call(kv.delete(key)).await.is_ok(),
        None => false,
    }
}

/// KV operations one purge call performs at most: Workers allow about 1000 per invocation.
pub const PURGE_BATCH: u64 = 900;

/// Delete the keys under `prefix` (KV lists 1000 keys a page; the cursor is followed), at most
/// [`PURGE_BATCH`] of them. Returns how many were deleted and whether none is left, or `Err`
/// once KV fails.
pub async fn delete_prefix(env: &Env, prefix: &str) -> Result<(u64, bool), &'static str> {
    let kv = kv(env).ok_or("the CACHE binding is missing")?;
    let mut cursor = JsValue::UNDEFINED;
    let mut deleted = 0;
    loop {
        let mut opts = vec![("prefix", JsValue::from_str(prefix))];
        if cursor.is_string() {
            opts.push(("cursor", cursor.clone()));
        }
        let page = call(kv.list(&options(&opts)))
            .await
            .map_err(|_| "listing the cache failed")?;
        for k in Array::from(&field(&page, "keys")).iter() {
            if deleted == PURGE_BATCH {
                return Ok((deleted, false));
            }
            if let Some(name) = field(&k, "name").as_string() {
                call(kv.delete(&name))
                    .await
                    .map_err(|_| "deleting from the cache failed")?;
                deleted += 1;
            }
        }
        cursor = field(&page, "cursor");
        if field(&page, "list_complete").as_bool() != Some(false) || !cursor.is_string() {
            return Ok((deleted, true));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Coalescing identical concurrent misses

/// Where a leader leaves a follower its result: the stored entry's bytes, or `None` (nothing to
/// share). Followers poll it on their own timer rather than being woken through a channel:
/// waking another request's task from this one would run it in this request's I/O context,
/// which the Workers runtime refuses ("Cannot perform I/O on behalf of a different request").
type Waiter = Rc<Cell<Option<Option<Rc<Vec<u8>>>>>>;

/// How often a follower looks for its leader's result.
const POLL_MS: u64 = 20;

/// How long a leader may hold a key before a later request takes over. Leaders release their
/// key on every path (a drop guard), and every request ends by its total deadline, so this
/// only bounds the damage of one that is never polled again; it is the default total deadline.
pub const LEASE_MS: u64 = 300_000;

thread_local! {
    static FLIGHTS: RefCell<Coalescer<Waiter>> = RefCell::new(Coalescer::new(LEASE_MS));
}

/// The first request of a burst: goes upstream and shares what it stores. Dropping it without
/// [`Lead::share`] wakes the followers empty-handed (they then go upstream alone).
pub struct Lead {
    key: String,
    ticket: Option<Ticket>,
}

impl Lead {
    fn share(&mut self, value: Option<Rc<Vec<u8>>>) {
        if let Some(t) = self.ticket.take() {
            for w in FLIGHTS.with(|f| f.borrow_mut().finish(&self.key, t)) {
                w.set(Some(value.clone()));
            }
        }
    }
}

impl Drop for Lead {
    fn drop(&mut self) {
        self.share(None);
    }
}

pub enum Flight {
    Leader(Lead),
    Follower(Waiter),
    /// Too many keys or waiters in flight: go upstream uncoalesced.
    Alone,
}

/// Join the flight for `key` (only after a KV miss, when the answer will be stored).
pub fn join(key: &str) -> Flight {
    let slot = Waiter::default();
    match FLIGHTS.with(|f| f.borrow_mut().join(key, now_ms(), slot.clone())) {
        Role::Leader(t) => Flight::Leader(Lead {
            key: key.to_string(),
            ticket: Some(t),
        }),
        Role::Follower => Flight::Follower(slot),
        Role::Alone => Flight::Alone,
    }
}

/// A follower waits for its leader's entry, at most `wait_ms`. `None`: the leader failed, its
/// answer was not storable, its key was taken over (the slot was dropped), or the wait ran
/// out — go upstream alone, as a miss.
pub async fn follow(slot: Waiter, wait_ms: u64) -> Option<Entry> {
    let until = now_ms() + wait_ms;
    loop {
        if let Some(result) = slot.take() {
            return Entry::decode(&result?);
        }
        if Rc::strong_count(&slot) == 1 || now_ms() >= until {
            return None;
        }
        Delay::from(Duration::from_millis(POLL_MS)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Writing

/// Stores one answered miss after the response (inside `ctx.wait_until`), and wakes the
/// followers of its flight with the stored bytes.
pub struct Writer {
    pub decision: CacheDecision,
    pub lead: Option<Lead>,
}

impl Writer {
    /// `completion`: the answer as a `chat.completion`, or why there is none (a broken
    /// stream). Not storable → not stored, logged with the reason. A failed `put` (e.g. KV's
    /// one write per second per key) is logged and not retried.
    pub async fn store(
        mut self,
        env: &Env,
        request_id: &str,
        provider: &str,
        model: &str,
        usage: Option<Usage>,
        completion: Result<Value, &'static str>,
    ) {
        let stored = completion.and_then(|c| {
            self.decision
                .store(now_ms(), provider, model, usage, c)
                .map(Rc::new)
        });
        if let Some(lead) = self.lead.as_mut() {
            lead.share(stored.as_ref().ok().cloned());
        }
        let why = match stored {
            Ok(bytes) => {
                let ttl = self.decision.kv_expiration_ttl();
                if put(env, &self.decision.key, &bytes, ttl).await {
                    return;
                }
                "the KV write failed"
            }
            Err(why) => why,
        };
        console_error!(
            r#"{{"msg":"switchyard.cache_not_stored","request_id":"{}","why":"{}"}}"#,
            request_id,
            why
        );
    }
}
