//! Outbound HTTP to providers, every wait bounded by a deadline.
//!
//! A deadline races the platform timer against the fetch (or the next body chunk); when the
//! timer wins, the request is aborted through its `AbortController`, so a silent upstream cannot
//! hold the request or the connection.

use std::cell::RefCell;
use std::future::Future;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_util::future::{select, Either};
use futures_util::StreamExt;
use switchyard_core::policy::AttemptFailure;
use switchyard_core::providers::UpstreamRequest;

use crate::platform::now_ms;
use worker::js_sys::Uint8Array;
use worker::wasm_bindgen::closure::Closure;
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::{
    web_sys, AbortController, ByteStream, Delay, Fetch, Headers, Request, Response, ResponseBody,
};

/// An upstream error body larger than this is cut; only its start is needed to classify it.
const ERROR_BODY_CAP: usize = 64 * 1024;
/// A complete (non-streamed) answer larger than this is refused.
pub const ANSWER_CAP: usize = 32 * 1024 * 1024;

/// Race `fut` against a timer. `None` when the timer won.
pub async fn within<F: Future>(ms: u64, fut: F) -> Option<F::Output> {
    let fut = pin!(fut);
    let timer = pin!(Delay::from(Duration::from_millis(ms)));
    match select(fut, timer).await {
        Either::Left((out, _)) => Some(out),
        Either::Right(_) => None,
    }
}

/// Aborts an upstream request (once; later calls do nothing).
pub struct Abort(Option<AbortController>);

impl Abort {
    pub fn abort(&mut self) {
        if let Some(c) = self.0.take() {
            c.abort();
        }
    }
}

/// A response whose body is still to be read, with the handle that aborts it.
pub struct InFlight {
    pub response: Response,
    pub controller: Abort,
}

/// A POST request built straight from `web_sys`. (`worker::Request::new_with_init` also
/// serialises Cloudflare's image-resizing `cf` options on every call: ~11 KB of wasm for
/// nothing this gateway uses.)
pub fn post(url: &str, headers: &[(&str, &str)], body: &JsValue) -> Result<Request, worker::Error> {
    request(url, headers, Some(body))
}

/// A POST with `body`, or a GET without one, built straight from `web_sys`.
pub fn request(
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&JsValue>,
) -> Result<Request, worker::Error> {
    let h = Headers::new();
    for (k, v) in headers {
        h.set(k, v)?;
    }
    let init = web_sys::RequestInit::new();
    init.set_headers(&h.0);
    if let Some(body) = body {
        init.set_method("POST");
        init.set_body(body);
    }
    Ok(Request::from(web_sys::Request::new_with_str_and_init(
        url, &init,
    )?))
}

/// Send the request (`POST`, or `GET` when it has no body: the health probes' model lists);
/// fail if the response headers do not arrive within `headers_ms`.
pub async fn send(up: &UpstreamRequest, headers_ms: u64) -> Result<InFlight, AttemptFailure> {
    let headers: Vec<(&str, &str)> = up.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let body: Option<JsValue> =
        (!up.body.is_empty()).then(|| Uint8Array::from(up.body.as_slice()).into());
    let request = request(&up.url, &headers, body.as_ref())
        .map_err(|_| AttemptFailure::connect("the upstream request is not valid"))?;
    let controller = AbortController::default();
    let signal = controller.signal();
    let fetch = Fetch::Request(request);
    match within(headers_ms, fetch.send_with_signal(&signal)).await {
        Some(Ok(response)) => Ok(InFlight {
            response,
            controller: Abort(Some(controller)),
        }),
        Some(Err(e)) => Err(AttemptFailure::connect(&e.to_string())),
        None => {
            controller.abort();
            Err(AttemptFailure::timeout("response headers", headers_ms))
        }
    }
}

/// Read a whole body within `ms`, up to `cap` bytes (an error body is cut, an answer refused).
///
/// A body whose length is declared (and not content-encoded, so the declared length is the
/// decoded length) and within `cap` is read by the runtime in one `arrayBuffer()` call: reading it
/// chunk by chunk through a stream reader costs a JS round trip and a promise per chunk plus the
/// reader's set-up and release (≈ 10 % of the isolate's CPU per plain request in the bench
/// profile, docs/BENCHMARKS.md). Anything else is read chunk by chunk, so the cap holds.
pub async fn read_all(
    inflight: &mut InFlight,
    ms: u64,
    cap: usize,
    truncate: bool,
) -> Result<Vec<u8>, AttemptFailure> {
    let headers = inflight.response.headers();
    if declared_len(headers).is_some_and(|n| n <= cap as u64)
        && headers.get("content-encoding").ok().flatten().is_none()
    {
        if let ResponseBody::Stream(body) = inflight.response.body() {
            let whole = web_sys::Response::new_with_opt_readable_stream(Some(body))
                .and_then(|r| r.array_buffer());
            if let Ok(promise) = whole {
                return match within(ms, JsFuture::from(promise)).await {
                    Some(Ok(buf)) => {
                        let mut body = Uint8Array::new(&buf).to_vec();
                        if body.len() > cap {
                            if !truncate {
                                return Err(too_large());
                            }
                            body.truncate(cap);
                        }
                        Ok(body)
                    }
                    Some(Err(e)) => {
                        Err(AttemptFailure::connect(&worker::Error::from(e).to_string()))
                    }
                    None => {
                        inflight.controller.abort();
                        Err(AttemptFailure::timeout("complete response", ms))
                    }
                };
            }
        }
    }
    let mut stream = inflight
        .response
        .stream()
        .map_err(|_| AttemptFailure::connect("the upstream body could not be read"))?;
    let read = async {
        let mut body = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| AttemptFailure::connect(&e.to_string()))?;
            body.extend_from_slice(&chunk);
            if body.len() > cap {
                if truncate {
                    body.truncate(cap);
                    return Ok(body);
                }
                return Err(too_large());
            }
        }
        Ok(body)
    };
    match within(ms, read).await {
        Some(r) => r,
        None => {
            inflight.controller.abort();
            Err(AttemptFailure::timeout("complete response", ms))
        }
    }
}

fn too_large() -> AttemptFailure {
    AttemptFailure::malformed("the answer exceeds the size limit")
}

/// The `content-length` a message declares, if any.
pub fn declared_len(headers: &Headers) -> Option<u64> {
    headers
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// Read an error body for classification: bounded in size and time.
pub async fn read_error_body(inflight: &mut InFlight, ms: u64) -> Vec<u8> {
    read_all(inflight, ms.min(5_000), ERROR_BODY_CAP, true)
        .await
        .unwrap_or_default()
}

/// The next chunk of a streamed body.
pub enum Next {
    Data(Vec<u8>),
    End,
    Failed(AttemptFailure),
    TimedOut,
}

/// The next chunk of `stream` within `ms` of `now` (unix ms).
///
/// The deadline's platform timer is kept in `timer` across chunks and re-armed only when it fires
/// before the current deadline: a stream costs one timer per idle period, not a `setTimeout` and
/// a `clearTimeout` per chunk (≈ 5 % of the isolate's CPU per streamed request in the bench
/// profile, docs/BENCHMARKS.md; real answers have hundreds of chunks).
pub async fn next_chunk(stream: &mut ByteStream, timer: &mut IdleTimer, now: u64, ms: u64) -> Next {
    let deadline = now + ms;
    let mut now = now;
    loop {
        let armed = match timer.0.take() {
            Some(t) if t.at <= deadline => t,
            _ => match Timer::start(deadline, deadline - now) {
                Some(t) => t,
                None => return Next::Failed(AttemptFailure::connect("no timer")),
            },
        };
        let timer_slot = timer.0.insert(armed);
        match select(stream.next(), timer_slot).await {
            Either::Left((Some(Ok(bytes)), _)) => return Next::Data(bytes),
            Either::Left((Some(Err(e)), _)) => {
                return Next::Failed(AttemptFailure::connect(&e.to_string()))
            }
            Either::Left((None, _)) => return Next::End,
            Either::Right(_) => {
                // Fired: for this deadline, or for an earlier chunk's (re-armed above).
                timer.0 = None;
                now = now_ms();
                if now >= deadline {
                    return Next::TimedOut;
                }
            }
        }
    }
}

/// A stream's idle-deadline timer, kept between chunks (see [`next_chunk`]).
#[derive(Default)]
pub struct IdleTimer(Option<Timer>);

/// A platform timer that wakes whichever task polled it last (`worker::Delay` keeps the waker of
/// its first poll, and a relayed stream is polled by a new task per chunk).
pub struct Timer {
    /// Unix ms it fires at.
    at: u64,
    id: i32,
    state: Rc<RefCell<(bool, Option<Waker>)>>,
    _callback: Closure<dyn FnMut()>,
}

impl Timer {
    fn start(at: u64, ms: u64) -> Option<Timer> {
        let state: Rc<RefCell<(bool, Option<Waker>)>> = Rc::default();
        let fired = state.clone();
        let callback = Closure::<dyn FnMut()>::new(move || {
            let waker = {
                let mut s = fired.borrow_mut();
                s.0 = true;
                s.1.take()
            };
            if let Some(w) = waker {
                w.wake();
            }
        });
        let id = global()
            .set_timeout_with_callback_and_timeout_and_arguments_0(
                callback.as_ref().unchecked_ref(),
                ms.min(i32::MAX as u64) as i32,
            )
            .ok()?;
        Some(Timer {
            at,
            id,
            state,
            _callback: callback,
        })
    }
}

fn global() -> web_sys::WorkerGlobalScope {
    worker::js_sys::global().unchecked_into()
}

impl Future for Timer {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut s = self.state.borrow_mut();
        if s.0 {
            return Poll::Ready(());
        }
        s.1 = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        if !self.state.borrow().0 {
            global().clear_timeout_with_handle(self.id);
        }
    }
}

/// Sleep for `ms` (backoff, Retry-After).
pub async fn sleep(ms: u64) {
    if ms > 0 {
        Delay::from(Duration::from_millis(ms)).await;
    }
}
