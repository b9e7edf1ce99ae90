//! A bare forwarder: POST the body to `UPSTREAM` + the request path with the same auth header,
//! stream the answer back. No parsing, no policy: the CPU floor Switchyard is measured against.

use worker::{js_sys, *};

#[event(fetch)]
async fn fetch(mut req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let upstream = env.var("UPSTREAM")?.to_string();
    let body = req.bytes().await?;
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    if let Some(auth) = env.secret("UPSTREAM_KEY").ok() {
        headers.set("authorization", &format!("Bearer {auth}"))?;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(js_sys::Uint8Array::from(body.as_slice()).into()));
    let out = Request::new_with_init(&format!("{upstream}{}", req.path()), &init)?;
    Fetch::Request(out).send().await
}
