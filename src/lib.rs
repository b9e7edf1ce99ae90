//! Switchyard's edge: the Cloudflare Worker. Thin glue between the platform and the core.
//!
//! The request path is written down once, in [`gateway`]. Modules here touch the platform
//! (fetch, timers, env, console); every decision they act on comes from `switchyard_core`.

mod admin;
mod attempts;
mod cache;
mod gateway;
mod health;
mod http;
mod platform;
mod relay;
mod tenants;
mod upstream;

use worker::{event, Context, Env, Request, Response, Result, ScheduleContext, ScheduledEvent};

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> Result<Response> {
    Ok(gateway::handle(req, env, ctx).await)
}

/// The cron (`[triggers]` in wrangler.toml, every minute): active probes of open circuits.
#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    health::probe::run(&env).await;
}

pub use health::object::TargetHealthObject;
pub use tenants::gate::TenantGateObject;
