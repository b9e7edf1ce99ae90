//! The cache key: sha256 over a canonical form of the request, inside a KV key that starts with
//! its scope so a scope (a tenant, a shared namespace) is purged by listing one prefix.
//!
//! KV key: `c1:{scope}:{namespace}:{sha256 hex}` where `scope` is `t:{tenant}` (tenant ids of
//! 1–64 `[A-Za-z0-9._-]`), `h:{32 hex of sha256(tenant)}` (any other tenant id) or
//! `s:{shared_namespace}`, and `namespace` is the per-request namespace or empty.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Bump when the canonical form changes: old entries then simply stop matching.
pub const KEY_VERSION: &str = "c1";

/// Body fields known not to change the answer; every other field is part of the key.
pub const EXCLUDED_FIELDS: &[&str] = &[
    "model", // replaced by the route, hashed separately
    "stream",
    "stream_options",
    "user",
    "metadata",
    "store",
    "safety_identifier",
    "prompt_cache_key",
];

/// 1–64 of `[A-Za-z0-9._-]`: a namespace, or a tenant id used verbatim in keys.
pub fn is_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

use crate::tenancy::hex;

/// The scope segment for a tenant: `t:{tenant}`, or `h:{hash}` for ids that are not names.
fn tenant_scope(tenant: &str) -> String {
    if is_name(tenant) {
        format!("t:{tenant}")
    } else {
        format!("h:{}", &hex(&Sha256::digest(tenant.as_bytes()))[..32])
    }
}

/// The KV prefix holding every entry of a tenant (to purge: list by this prefix, delete each).
pub fn tenant_prefix(tenant: &str) -> String {
    format!("{KEY_VERSION}:{}:", tenant_scope(tenant))
}

/// The KV prefix holding every entry of a shared namespace.
pub fn shared_prefix(shared_namespace: &str) -> String {
    format!("{KEY_VERSION}:s:{shared_namespace}:")
}

/// The full KV key. `shared` replaces the tenant scope when the route opts into it.
pub fn kv_key(
    tenant: &str,
    shared: Option<&str>,
    namespace: Option<&str>,
    route: &str,
    body: &Map<String, Value>,
) -> String {
    let scope = match shared {
        Some(s) => format!("s:{s}"),
        None => tenant_scope(tenant),
    };
    format!(
        "{KEY_VERSION}:{scope}:{}:{}",
        namespace.unwrap_or(""),
        request_hash(route, body)
    )
}

/// sha256 (hex) of `{"body":<canonical body without excluded or null fields>,"route":<route>}`.
pub fn request_hash(route: &str, body: &Map<String, Value>) -> String {
    let mut h = Hasher(Sha256::new());
    h.put(b"{\"body\":");
    h.object(body, true);
    h.put(b",\"route\":");
    h.string(route);
    h.put(b"}");
    hex(&h.0.finalize())
}

/// Writes canonical JSON straight into the digest: objects with keys sorted by bytes, no
/// whitespace, strings escaped as serde_json does, and integral floats below 2^53 written as
/// integers (`0.0` and `0` are the same temperature).
struct Hasher(Sha256);

impl Hasher {
    fn put(&mut self, b: &[u8]) {
        self.0.update(b);
    }

    fn string(&mut self, s: &str) {
        // serde_json's escaping (its `Vec` writer is in the binary already).
        self.put(&crate::json::to_bytes(s));
    }

    fn value(&mut self, v: &Value) {
        match v {
            Value::Null => self.put(b"null"),
            Value::Bool(b) => self.put(if *b { b"true" } else { b"false" }),
            Value::Number(n) => match n.as_f64() {
                Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 => {
                    self.put((f as i64).to_string().as_bytes())
                }
                _ => self.put(n.to_string().as_bytes()),
            },
            Value::String(s) => self.string(s),
            Value::Array(a) => {
                self.put(b"[");
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        self.put(b",");
                    }
                    self.value(x);
                }
                self.put(b"]");
            }
            Value::Object(o) => self.object(o, false),
        }
    }

    /// An object with its keys sorted by bytes; `top`: the request body, without excluded
    /// fields and top-level `null`s. The sort is an insertion sort: serde_json's map already
    /// yields keys in order (unless its `preserve_order` feature is on), so it is linear in
    /// practice, and it is far less wasm than `sort_unstable`.
    fn object(&mut self, o: &Map<String, Value>, top: bool) {
        let mut fields: Vec<(&String, &Value)> = Vec::with_capacity(o.len());
        for (k, v) in o {
            if top && (v.is_null() || EXCLUDED_FIELDS.contains(&k.as_str())) {
                continue;
            }
            let at = fields
                .iter()
                .rposition(|(x, _)| *x <= k)
                .map_or(0, |p| p + 1);
            fields.insert(at, (k, v));
        }
        self.put(b"{");
        for (i, (k, v)) in fields.into_iter().enumerate() {
            if i > 0 {
                self.put(b",");
            }
            self.string(k);
            self.put(b":");
            self.value(v);
        }
        self.put(b"}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(o) => o,
            _ => unreachable!(),
        }
    }

    fn base() -> Value {
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0})
    }

    fn hash(v: Value) -> String {
        request_hash("m", &body(v))
    }

    #[test]
    fn canonical_form_is_what_is_hashed() {
        // Pin the canonical text: sorted keys, no whitespace, integral floats as integers.
        let b = body(json!({"z": 1.0, "a": {"y": [true, null, "é\n"], "b": 0.5}, "stream": true}));
        let expected = r#"{"body":{"a":{"b":0.5,"y":[true,null,"é\n"]},"z":1},"route":"m"}"#;
        assert_eq!(request_hash("m", &b), hex(&Sha256::digest(expected)));
    }

    #[test]
    fn key_order_and_whitespace_do_not_matter() {
        let a: Value = serde_json::from_str(
            r#"{"model":"m","temperature":0,"messages":[{"role":"user","content":"hi"}],
               "tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"number"}}}}}]}"#,
        )
        .unwrap();
        let b: Value = serde_json::from_str(
            r#"{ "tools" : [ { "function" : { "parameters" : { "properties" : { "b" : { "type" : "number" } , "a" : { "type" : "string" } } , "type" : "object" } , "name" : "f" } , "type" : "function" } ] ,
                 "messages" : [ { "content" : "hi" , "role" : "user" } ] , "temperature" : 0.0 , "model" : "m" }"#,
        )
        .unwrap();
        assert_eq!(hash(a), hash(b));
    }

    #[test]
    fn every_output_changing_parameter_changes_the_key() {
        let base_hash = hash(base());
        let cases = [
            ("messages", json!([{"role": "user", "content": "hello"}])),
            (
                "tools",
                json!([{"type": "function", "function": {"name": "f"}}]),
            ),
            ("tool_choice", json!("required")),
            ("response_format", json!({"type": "json_object"})),
            ("temperature", json!(0.2)),
            ("top_p", json!(0.9)),
            ("max_tokens", json!(10)),
            ("max_completion_tokens", json!(10)),
            ("stop", json!(["\n"])),
            ("seed", json!(7)),
            ("n", json!(2)),
            ("presence_penalty", json!(0.5)),
            ("frequency_penalty", json!(0.5)),
            ("logit_bias", json!({"50256": -100})),
            ("logprobs", json!(true)),
            ("top_logprobs", json!(3)),
            ("reasoning_effort", json!("low")),
            ("parallel_tool_calls", json!(false)),
            ("x_vendor_knob", json!({"a": 1})),
        ];
        let mut seen = std::collections::HashSet::new();
        for (field, value) in cases {
            let mut v = base();
            v[field] = value;
            let h = hash(v);
            assert_ne!(h, base_hash, "{field} must be part of the key");
            assert!(seen.insert(h), "{field} collides with another case");
        }
        // The route is part of the key, the body's `model` is not.
        assert_ne!(request_hash("other", &body(base())), base_hash);
        let mut v = base();
        v["model"] = json!("alias");
        assert_eq!(hash(v), base_hash);
    }

    #[test]
    fn fields_that_do_not_change_the_answer_are_excluded() {
        let base_hash = hash(base());
        for (field, value) in [
            ("stream", json!(true)),
            ("stream_options", json!({"include_usage": true})),
            ("user", json!("u-1")),
            ("metadata", json!({"trace": "x"})),
            ("store", json!(true)),
            ("safety_identifier", json!("u-1")),
            ("prompt_cache_key", json!("k")),
            ("top_p", Value::Null),
        ] {
            let mut v = base();
            v[field] = value;
            assert_eq!(hash(v), base_hash, "{field} must not be part of the key");
        }
    }

    #[test]
    fn nested_values_are_exact() {
        // Only top-level nulls are dropped; inside messages everything counts.
        let mut a = base();
        a["messages"][0]["name"] = Value::Null;
        assert_ne!(hash(a), hash(base()));
        let mut b = base();
        b["messages"][0]["content"] = json!([{"type": "text", "text": "hi"}]);
        assert_ne!(hash(b), hash(base()), "content shapes are not unified");
        // Floats that are not integral keep their digits.
        let mut c = base();
        c["temperature"] = json!(0.1);
        let mut d = base();
        d["temperature"] = json!(0.10000000000000002);
        assert_ne!(hash(c), hash(d));
    }

    #[test]
    fn kv_keys_are_scoped_and_prefix_listable() {
        let b = body(base());
        let h = request_hash("m", &b);
        assert_eq!(
            kv_key("acme", None, None, "m", &b),
            format!("c1:t:acme::{h}")
        );
        assert_eq!(
            kv_key("acme", None, Some("exp-1"), "m", &b),
            format!("c1:t:acme:exp-1:{h}")
        );
        assert_eq!(
            kv_key("acme", Some("docs"), None, "m", &b),
            format!("c1:s:docs::{h}")
        );
        assert!(kv_key("acme", None, Some("x"), "m", &b).starts_with(&tenant_prefix("acme")));
        // A tenant's prefix never covers another tenant's keys.
        assert!(!kv_key("acme-2", None, None, "m", &b).starts_with(&tenant_prefix("acme")));
        assert!(!kv_key("acme", Some("s"), None, "m", &b).starts_with(&tenant_prefix("acme")));
        assert!(kv_key("acme", Some("s"), None, "m", &b).starts_with(&shared_prefix("s")));
        // Tenant ids that are not names are hashed, never spliced in.
        let odd = kv_key("a:b/c", None, None, "m", &b);
        assert!(odd.starts_with("c1:h:") && !odd.contains("a:b"), "{odd}");
        assert!(odd.starts_with(&tenant_prefix("a:b/c")));
        assert!(kv_key(&"x".repeat(1000), None, Some(&"n".repeat(64)), "m", &b).len() <= 512);
    }

    #[test]
    fn names() {
        assert!(is_name("a") && is_name("A.b_c-9") && is_name(&"x".repeat(64)));
        for bad in ["", "a b", "a:b", "ü", &"x".repeat(65)] {
            assert!(!is_name(bad), "{bad:?}");
        }
    }
}
