//! Reading requests and writing responses.

use futures_util::StreamExt;
use switchyard_core::error::{ErrorKind, GatewayError};
use switchyard_core::ingress::Format;
use worker::js_sys::Uint8Array;
use worker::wasm_bindgen_futures::JsFuture;
use worker::{Headers, Request, Response};

use crate::upstream::declared_len;

/// Read the body, refusing (413) as soon as it grows past `cap` bytes.
pub async fn read_body(req: &mut Request, cap: u64) -> Result<Vec<u8>, GatewayError> {
    let too_large = || {
        GatewayError::new(
            ErrorKind::PayloadTooLarge,
            format!("The request body exceeds the limit of {cap} bytes"),
        )
    };
    let unreadable = || {
        GatewayError::new(
            ErrorKind::InvalidRequest,
            "The request body could not be read",
        )
    };
    match declared_len(req.headers()) {
        Some(n) if n > cap => return Err(too_large()),
        // A declared length is what the runtime delivers (it enforces the framing): read the
        // whole body in one `arrayBuffer()` call instead of a stream reader's round trip per
        // chunk (docs/BENCHMARKS.md).
        Some(_) => {
            if let Ok(promise) = req.inner().array_buffer() {
                let buf = JsFuture::from(promise).await.map_err(|_| unreadable())?;
                let body = Uint8Array::new(&buf).to_vec();
                if body.len() as u64 > cap {
                    return Err(too_large());
                }
                return Ok(body);
            }
        }
        None => {}
    }
    let mut stream = match req.stream() {
        Ok(s) => s,
        // No body at all.
        Err(_) => return Ok(Vec::new()),
    };
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| unreadable())?;
        if (body.len() + chunk.len()) as u64 > cap {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn response(status: u16, body: Vec<u8>, content_type: &str) -> Response {
    let headers = Headers::new();
    let _ = headers.set("content-type", content_type);
    Response::builder()
        .with_status(status)
        .with_headers(headers)
        .fixed(body)
}

pub fn json_bytes(status: u16, body: Vec<u8>) -> Response {
    response(status, body, "application/json")
}

/// An error response in the caller's format (OpenAI-shaped unless the caller speaks Anthropic or
/// Gemini) with the right status (and `Retry-After` when known).
pub fn error_response(format: Format, err: &GatewayError) -> Response {
    let resp = json_bytes(err.status(), format.error_body(err).into_bytes());
    if let Some(secs) = err.retry_after_secs {
        let _ = resp.headers().set("retry-after", &secs.to_string());
    }
    resp
}

/// A request id the caller sent that is safe to echo and log, else none.
pub fn sane_request_id(value: Option<String>) -> Option<String> {
    value.filter(|v| {
        !v.is_empty()
            && v.len() <= 128
            && v.bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    })
}
