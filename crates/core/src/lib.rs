//! Switchyard's core: everything that decides, nothing that touches the platform.
//!
//! No `worker` types appear in this crate (it does not depend on `worker`), so every decision —
//! validation, translation, stream re-framing, retry and deadline policy, configuration — is
//! tested natively with `cargo test`. The edge (the worker crate in `src/`) performs the I/O.

pub mod admin;
pub mod cache;
pub mod chat;
pub mod config;
pub mod error;
pub mod health;
pub mod ingress;
pub mod json;
pub mod ledger;
pub mod logline;
pub mod policy;
pub mod providers;
pub mod routing;
pub mod sse;
pub mod tenancy;
pub mod time;
pub mod usage;
pub mod vecmap;

/// `parts.join(sep)` for string slices: a loop, instead of a second instance of the standard
/// library's generic join (one is kept for `[String]`; wasm size).
pub(crate) fn join(parts: &[&str], sep: &str) -> String {
    let mut out = String::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push_str(sep);
        }
        out.push_str(p);
    }
    out
}
