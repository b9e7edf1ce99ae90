//! Admin routes: circuits. (Filled in by its own change.)

use switchyard_core::error::GatewayError;
use worker::{Method, Request, Response};

use super::AdminCtx;

/// `None` when the path is not one of this module's.
pub async fn handle(
    _admin: &AdminCtx<'_>,
    _req: &mut Request,
    _method: &Method,
    _rest: &str,
) -> Option<Result<Response, GatewayError>> {
    None
}
