//! The caller's side of a stream: forwards chunks as they arrive, bounded by the idle and total
//! deadlines, and ends a broken upstream with an in-band error event — never a clean `[DONE]`.
//! The OpenAI chunks are re-framed in the caller's format ([`StreamEncoder`]) as they pass: the
//! relay holds one upstream chunk at a time, never the answer.

use futures_channel::oneshot;
use futures_util::stream;
use serde_json::Value;
use switchyard_core::cache::StreamAccumulator;
use switchyard_core::config::ModelConfig;
use switchyard_core::error::{ErrorKind, GatewayError};
use switchyard_core::ingress::StreamEncoder;
use switchyard_core::logline::LogLine;
use switchyard_core::policy::{AttemptFailure, FailureClass};
use switchyard_core::providers::openai::stream_error_event;
use switchyard_core::tenancy::{cost_nanos, format_usd};
use switchyard_core::usage::Usage;
use worker::{console_log, Response};

use crate::attempts::StreamStart;
use crate::platform::now_ms;
use crate::upstream::{self, IdleTimer, Next};

struct Relay {
    start: StreamStart,
    pending: Option<Vec<u8>>,
    finished: bool,
    idle_ms: u64,
    timer: IdleTimer,
    /// Unix ms after which the request may not go on.
    total_deadline: u64,
    started_ms: u64,
    provider: String,
    log: Option<LogLine>,
    /// Told how the stream ended, for settlement.
    end: Option<oneshot::Sender<StreamEnd>>,
    prices: Option<ModelConfig>,
    /// Fed every byte sent to the caller when the answer is to be cached.
    acc: Option<StreamAccumulator>,
    encoder: StreamEncoder,
}

/// How a stream ended: what settlement (and the cache writer) needs.
#[derive(Debug)]
pub struct StreamEnd {
    pub usage: Option<Usage>,
    pub cost_nanos: Option<u64>,
    pub latency_ms: u64,
    /// When accumulating: the answer as a `chat.completion` if the stream ended cleanly, else
    /// why it may not be cached (broken, cut, the caller left).
    pub completion: Option<Result<Value, &'static str>>,
}

impl Relay {
    /// The caller's next bytes: the next OpenAI bytes, re-framed (skipping what encodes to none).
    async fn next(&mut self) -> Option<Vec<u8>> {
        loop {
            let bytes = self.step().await?;
            // The cache keeps the OpenAI form; the caller gets its own format.
            if let Some(acc) = self.acc.as_mut() {
                acc.feed(&bytes);
            }
            let out = self.encoder.encode(bytes);
            if !out.is_empty() {
                return Some(out);
            }
        }
    }

    async fn step(&mut self) -> Option<Vec<u8>> {
        if let Some(bytes) = self.pending.take() {
            if !bytes.is_empty() {
                return Some(bytes);
            }
        }
        if self.finished {
            self.emit_log(false);
            return None;
        }
        loop {
            let now = now_ms();
            let left = self.total_deadline.saturating_sub(now);
            if left == 0 {
                return Some(self.broken(AttemptFailure::timeout(
                    "end of stream before the total deadline",
                    0,
                )));
            }
            let wait = self.idle_ms.min(left);
            match upstream::next_chunk(&mut self.start.stream, &mut self.timer, now, wait).await {
                Next::Data(bytes) => {
                    let mut out = Vec::new();
                    match self.start.translator.feed(&bytes, &mut out) {
                        Ok(()) if out.is_empty() => continue,
                        Ok(()) => return Some(out),
                        Err(f) => return Some(self.broken(f)),
                    }
                }
                Next::End => {
                    let mut out = Vec::new();
                    return match self.start.translator.finish(&mut out) {
                        Ok(()) => {
                            self.finished = true;
                            if out.is_empty() {
                                self.emit_log(false);
                                None
                            } else {
                                Some(out)
                            }
                        }
                        Err(f) => Some(self.broken(f)),
                    };
                }
                Next::Failed(f) => return Some(self.broken(f)),
                Next::TimedOut => {
                    let what = if wait < self.idle_ms {
                        "chunk before the total deadline"
                    } else {
                        "chunk within the idle deadline"
                    };
                    return Some(self.broken(AttemptFailure::timeout(what, wait)));
                }
            }
        }
    }

    /// End the caller's stream with an in-band error event (no `[DONE]`).
    fn broken(&mut self, failure: AttemptFailure) -> Vec<u8> {
        // The attempt's one outcome is this failure (recorded as the stream ends, below).
        if let Some((o, _)) = self.start.health.as_mut() {
            o.class = Some(failure.class);
        }
        self.start.controller.abort();
        self.finished = true;
        let kind = if failure.class == FailureClass::Timeout {
            ErrorKind::UpstreamTimeout
        } else {
            ErrorKind::UpstreamError
        };
        let err = GatewayError::new(
            kind,
            format!(
                "provider {:?} broke the stream after it had started: {}; the answer is incomplete",
                self.provider, failure.message
            ),
        );
        if let Some(log) = self.log.as_mut() {
            log.stream_broken = true;
            log.error_code = Some(kind.code());
        }
        self.emit_log(false);
        stream_error_event(&err)
    }

    fn emit_log(&mut self, client_closed: bool) {
        // The stream is over: its attempt's outcome goes to the target's breaker now.
        if let Some((o, settings)) = self.start.health.take() {
            let broke = o.class;
            crate::health::record(&settings, &o.stream_ended(broke, now_ms()));
        }
        if let Some(mut log) = self.log.take() {
            let t = &self.start.translator;
            if let Some(u) = t.usage() {
                log.set_usage(&u);
            }
            if let Some(m) = t.model() {
                log.upstream_model = Some(m.to_string());
            }
            log.malformed_chunks = t.malformed();
            log.client_closed = client_closed;
            log.wasm_memory_bytes = Some(wasm_memory_bytes());
            log.latency_ms = now_ms().saturating_sub(self.started_ms);
            // A broken stream is charged what the upstream reported, if anything.
            let usage = t.usage();
            let cost = usage.and_then(|u| cost_nanos(&u, self.prices.as_ref()));
            log.cost_usd = cost.map(format_usd);
            let clean = !client_closed && !log.stream_broken;
            let completion = self.acc.take().map(|acc| match clean {
                true => acc.finish(),
                false => Err("the stream did not end cleanly"),
            });
            if let Some(end) = self.end.take() {
                let _ = end.send(StreamEnd {
                    usage,
                    cost_nanos: cost,
                    latency_ms: log.latency_ms,
                    completion,
                });
            }
            console_log!("{}", log.to_json());
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if self.log.is_some() {
            // The caller went away mid-stream: stop reading the upstream, still log the request.
            self.start.controller.abort();
            self.emit_log(true);
        }
    }
}

/// The wasm linear memory's size in bytes (0 off wasm).
fn wasm_memory_bytes() -> u64 {
    #[cfg(target_arch = "wasm32")]
    return core::arch::wasm32::memory_size(0) as u64 * 65536;
    #[cfg(not(target_arch = "wasm32"))]
    0
}

/// Build the streaming response. The log line is printed when the stream ends. With `acc`, every
/// OpenAI byte sent is accumulated and the completion handed over in [`StreamEnd`].
#[allow(clippy::too_many_arguments)] // one call site; each is a distinct piece of the request
pub fn stream_response(
    mut start: StreamStart,
    idle_ms: u64,
    total_deadline: u64,
    started_ms: u64,
    provider: String,
    log: LogLine,
    end: oneshot::Sender<StreamEnd>,
    prices: Option<ModelConfig>,
    acc: Option<StreamAccumulator>,
    encoder: StreamEncoder,
) -> worker::Result<Response> {
    let pending = Some(std::mem::take(&mut start.buffered));
    let relay = Relay {
        finished: start.ended,
        start,
        pending,
        idle_ms,
        timer: IdleTimer::default(),
        total_deadline,
        started_ms,
        provider,
        log: Some(log),
        end: Some(end),
        prices,
        acc,
        encoder,
    };
    let body = stream::unfold(relay, |mut relay| async move {
        relay
            .next()
            .await
            .map(|bytes| (Ok::<Vec<u8>, worker::Error>(bytes), relay))
    });
    let resp = Response::from_stream(body)?;
    let h = resp.headers();
    h.set("content-type", "text/event-stream; charset=utf-8")?;
    h.set("cache-control", "no-cache")?;
    Ok(resp)
}
