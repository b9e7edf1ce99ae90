//! Admin routes: purging the response cache (docs/CACHE.md#purging).
//!
//! - `DELETE /admin/cache/tenants/{tenant}`: every entry of a tenant (its per-request
//!   namespaces included), by listing the tenant's key prefix; at most `PURGE_BATCH` keys a
//!   call (`"complete": false` says to call again).
//! - `DELETE /admin/cache/shared/{name}`: every entry of a route's `shared_namespace`.
//! - `DELETE /admin/cache/keys/{key}`: one entry, by its KV key.
//!
//! KV deletes reach every location within about 60 s; until then other locations may still
//! serve a purged entry.

use switchyard_core::cache::{is_name, shared_prefix, tenant_prefix};
use switchyard_core::error::{ErrorKind, GatewayError};
use worker::{Method, Request, Response};

use super::AdminCtx;
use crate::cache as kv_cache;
use crate::http::json_bytes;

/// `None` when the path is not one of this module's.
pub async fn handle(
    admin: &AdminCtx<'_>,
    _req: &mut Request,
    method: &Method,
    rest: &str,
) -> Option<Result<Response, GatewayError>> {
    let rest = rest.strip_prefix("/cache/")?;
    let (what, arg) = rest.split_once('/')?;
    if !matches!(what, "tenants" | "shared" | "keys") {
        return None;
    }
    if *method != Method::Delete {
        return Some(Err(GatewayError::new(
            ErrorKind::MethodNotAllowed,
            "This path accepts DELETE only",
        )));
    }
    Some(purge(admin, what, arg).await)
}

async fn purge(admin: &AdminCtx<'_>, what: &str, arg: &str) -> Result<Response, GatewayError> {
    let env = admin.env;
    let unavailable = |why: &str| {
        GatewayError::new(
            ErrorKind::Internal,
            format!("{why}; nothing or only part was purged, try again"),
        )
    };
    if what == "keys" {
        let key_like = !arg.is_empty()
            && arg.len() <= 512
            && arg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'.' | b'_' | b'-'));
        if !key_like {
            return Err(GatewayError::invalid(
                "Not a cache key: expected c1:<scope>:<namespace>:<hash>",
                "key",
            ));
        }
        if !kv_cache::delete(env, arg).await {
            return Err(unavailable("Deleting from the cache failed"));
        }
        return Ok(json_bytes(
            200,
            format!(r#"{{"deleted":1,"key":"{arg}"}}"#).into_bytes(),
        ));
    }
    if !is_name(arg) {
        return Err(GatewayError::invalid(
            "Must be 1-64 characters of letters, digits, '.', '_' or '-'",
            if what == "tenants" {
                "tenant"
            } else {
                "shared_namespace"
            },
        ));
    }
    let prefix = match what {
        "tenants" => tenant_prefix(arg),
        _ => shared_prefix(arg),
    };
    let (deleted, complete) = kv_cache::delete_prefix(env, &prefix)
        .await
        .map_err(unavailable)?;
    Ok(json_bytes(
        200,
        format!(r#"{{"deleted":{deleted},"complete":{complete},"prefix":"{prefix}"}}"#)
            .into_bytes(),
    ))
}
