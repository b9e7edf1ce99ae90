//! The admin API under `/admin/`, authenticated by the `ADMIN_TOKEN` secret (constant-time
//! comparison; tenant tokens never work here). One file per concern:
//! `tenants` (tenants, tokens, budgets, limits, usage, end-user tokens, OpenAPI),
//! `circuits` (circuit state and operator control), `cache` (purges).

mod cache;
mod circuits;
mod tenants;

use switchyard_core::error::{ErrorKind, GatewayError};
use switchyard_core::tenancy::constant_time_eq;
use worker::{Context, Env, Method, Request, Response};

use crate::platform::secret;

/// What every admin handler gets.
#[allow(dead_code)] // the admin modules read these as they land
pub struct AdminCtx<'a> {
    pub env: &'a Env,
    pub ctx: &'a Context,
}

/// Route an `/admin/…` request. `path` is the full path.
pub async fn handle(
    req: &mut Request,
    env: &Env,
    ctx: &Context,
    method: Method,
    path: &str,
) -> Result<Response, GatewayError> {
    authenticate(env, req)?;
    let admin = AdminCtx { env, ctx };
    let rest = path.trim_start_matches("/admin");
    if let Some(r) = tenants::handle(&admin, req, &method, rest).await {
        return r;
    }
    if let Some(r) = circuits::handle(&admin, req, &method, rest).await {
        return r;
    }
    if let Some(r) = cache::handle(&admin, req, &method, rest).await {
        return r;
    }
    Err(GatewayError::new(
        ErrorKind::NotFound,
        format!("Unknown admin path {rest:?}; see /admin/openapi.json"),
    ))
}

fn authenticate(env: &Env, req: &Request) -> Result<(), GatewayError> {
    let Some(expected) = secret(env, "ADMIN_TOKEN") else {
        return Err(GatewayError::new(
            ErrorKind::Unauthorized,
            "The admin API is disabled: set the ADMIN_TOKEN secret",
        ));
    };
    let given = crate::tenants::presented_token(req.headers()).unwrap_or_default();
    if constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(GatewayError::new(
            ErrorKind::Unauthorized,
            "Invalid admin token",
        ))
    }
}
