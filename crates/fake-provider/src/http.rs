//! Minimal HTTP/1.1: request parsing (Content-Length and chunked bodies) and
//! response writing (fixed-length and chunked).

use std::io::{self, BufRead, Read, Write};

const MAX_LINE: u64 = 64 * 1024;
const MAX_HEADERS: usize = 200;
const MAX_BODY: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    pub version: String,
    /// Names lowercased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    pub fn query(&self) -> &str {
        self.target.split_once('?').map(|(_, q)| q).unwrap_or("")
    }

    fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// Whether the connection stays open after the response.
    pub fn keep_alive(&self) -> bool {
        if self.version.eq_ignore_ascii_case("HTTP/1.0") {
            self.header_has_token("connection", "keep-alive")
        } else {
            !self.header_has_token("connection", "close")
        }
    }
}

#[derive(Debug)]
pub enum ReadError {
    /// The peer closed the connection before sending a request.
    Closed,
    Io(io::Error),
    /// Unparseable request; answer 400 and close.
    Bad(String),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

/// Reads one line (up to LF), without the line ending. `Ok(None)` at EOF.
fn read_line<R: BufRead>(r: &mut R) -> Result<Option<String>, ReadError> {
    let mut buf = Vec::new();
    let n = r.by_ref().take(MAX_LINE).read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        return Err(if n as u64 >= MAX_LINE {
            ReadError::Bad("line too long".to_string())
        } else {
            ReadError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed mid-line",
            ))
        });
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| ReadError::Bad("non-UTF-8 request line or header".to_string()))
}

fn required_line<R: BufRead>(r: &mut R) -> Result<String, ReadError> {
    read_line(r)?.ok_or_else(|| {
        ReadError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed mid-request",
        ))
    })
}

/// Reads one request. `Err(Closed)` when the peer closed cleanly between
/// requests.
pub fn read_request<R: BufRead>(r: &mut R) -> Result<Request, ReadError> {
    read_request_with(r, || Ok(()))
}

/// Like [`read_request`], calling `on_continue` (which should send
/// `100 Continue`) before reading the body of an `Expect: 100-continue`
/// request.
pub fn read_request_with<R: BufRead, F: FnMut() -> io::Result<()>>(
    r: &mut R,
    mut on_continue: F,
) -> Result<Request, ReadError> {
    // Tolerate empty lines before the request line (RFC 9112 §2.2).
    let line = loop {
        match read_line(r)? {
            None => return Err(ReadError::Closed),
            Some(l) if l.is_empty() => continue,
            Some(l) => break l,
        }
    };
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Bad(format!("bad request line: {line:?}")));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(ReadError::Bad(format!("unsupported version {version}")));
    }
    let mut headers = Vec::new();
    loop {
        let line = required_line(r)?;
        if line.is_empty() {
            break;
        }
        if headers.len() >= MAX_HEADERS {
            return Err(ReadError::Bad("too many headers".to_string()));
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(ReadError::Bad(format!("bad header line: {line:?}")));
        };
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let mut req = Request {
        method: method.to_string(),
        target: target.to_string(),
        version: version.to_string(),
        headers,
        body: Vec::new(),
    };
    let chunked = req.header_has_token("transfer-encoding", "chunked");
    let has_body = chunked || req.header("content-length").is_some_and(|l| l != "0");
    if has_body && req.header_has_token("expect", "100-continue") {
        on_continue()?;
    }
    if chunked {
        req.body = read_chunked(r)?;
    } else if let Some(len) = req.header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| ReadError::Bad(format!("bad content-length {len:?}")))?;
        if len > MAX_BODY {
            return Err(ReadError::Bad("body too large".to_string()));
        }
        let mut body = vec![0u8; len];
        r.read_exact(&mut body)?;
        req.body = body;
    }
    Ok(req)
}

fn read_chunked<R: BufRead>(r: &mut R) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    loop {
        let line = required_line(r)?;
        let size_str = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_str, 16)
            .map_err(|_| ReadError::Bad(format!("bad chunk size {line:?}")))?;
        if size == 0 {
            // Trailers, up to the empty line.
            while !required_line(r)?.is_empty() {}
            return Ok(body);
        }
        if body.len() + size > MAX_BODY {
            return Err(ReadError::Bad("body too large".to_string()));
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..])?;
        if !required_line(r)?.is_empty() {
            return Err(ReadError::Bad("missing CRLF after chunk".to_string()));
        }
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        529 => "Overloaded",
        _ => "Status",
    }
}

fn head(status: u16, headers: &[(String, String)]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (n, v) in headers {
        out.push_str(n);
        out.push_str(": ");
        // Values may come from request bodies: never let them break framing.
        out.extend(v.chars().map(|c| if c.is_control() { ' ' } else { c }));
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

fn connection_header(keep_alive: bool) -> (String, String) {
    let v = if keep_alive { "keep-alive" } else { "close" };
    ("Connection".to_string(), v.to_string())
}

/// Writes a complete fixed-length response in one write.
pub fn write_full<W: Write>(
    w: &mut W,
    status: u16,
    content_type: &str,
    extra: &[(String, String)],
    body: &[u8],
    keep_alive: bool,
) -> io::Result<()> {
    let mut headers = vec![
        ("Content-Type".to_string(), content_type.to_string()),
        ("Content-Length".to_string(), body.len().to_string()),
        connection_header(keep_alive),
    ];
    headers.extend_from_slice(extra);
    let mut out = head(status, &headers);
    out.extend_from_slice(body);
    w.write_all(&out)?;
    w.flush()
}

/// Writes the head of a chunked `text/event-stream` response.
pub fn write_stream_head<W: Write>(
    w: &mut W,
    status: u16,
    extra: &[(String, String)],
    keep_alive: bool,
) -> io::Result<()> {
    let mut headers = vec![
        ("Content-Type".to_string(), "text/event-stream".to_string()),
        ("Cache-Control".to_string(), "no-cache".to_string()),
        ("Transfer-Encoding".to_string(), "chunked".to_string()),
        connection_header(keep_alive),
    ];
    headers.extend_from_slice(extra);
    w.write_all(&head(status, &headers))?;
    w.flush()
}

/// Writes one chunk (non-empty `data`) in a single write and flushes.
pub fn write_chunk<W: Write>(w: &mut W, data: &[u8]) -> io::Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    w.write_all(&out)?;
    w.flush()
}

/// Writes the terminating zero-length chunk.
pub fn write_last_chunk<W: Write>(w: &mut W) -> io::Result<()> {
    w.write_all(b"0\r\n\r\n")?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn parse(raw: &str) -> Result<Request, ReadError> {
        read_request(&mut Cursor::new(raw.as_bytes().to_vec()))
    }

    #[test]
    fn content_length_and_pipelining() {
        let raw = "POST /p/v1/x?a=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nX-Fake-Behavior: ok\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n";
        let mut c = Cursor::new(raw.as_bytes().to_vec());
        let r = read_request(&mut c).expect("first");
        assert_eq!(r.method, "POST");
        assert_eq!(r.path(), "/p/v1/x");
        assert_eq!(r.query(), "a=1");
        assert_eq!(r.body, b"hello");
        assert_eq!(r.header("x-fake-behavior"), Some("ok"));
        assert!(r.keep_alive());
        let r2 = read_request(&mut c).expect("second");
        assert_eq!(r2.method, "GET");
        assert!(r2.body.is_empty());
        assert!(matches!(read_request(&mut c), Err(ReadError::Closed)));
    }

    #[test]
    fn chunked_body() {
        let r = parse("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n")
            .expect("parse");
        assert_eq!(r.body, b"hello world");
    }

    #[test]
    fn connection_semantics_and_errors() {
        assert!(!parse("GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
            .expect("p")
            .keep_alive());
        assert!(!parse("GET / HTTP/1.0\r\n\r\n").expect("p").keep_alive());
        assert!(parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            .expect("p")
            .keep_alive());
        assert!(matches!(parse("garbage\r\n\r\n"), Err(ReadError::Bad(_))));
        assert!(matches!(
            parse("POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
            Err(ReadError::Bad(_))
        ));
        assert!(matches!(
            parse("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nshort"),
            Err(ReadError::Io(_))
        ));
    }

    #[test]
    fn writes_responses() {
        let mut out = Vec::new();
        write_full(
            &mut out,
            429,
            "application/json",
            &[("Retry-After".into(), "2".into())],
            b"{}",
            true,
        )
        .expect("write");
        let s = String::from_utf8(out).expect("utf8");
        assert!(s.starts_with("HTTP/1.1 429 Too Many Requests\r\n"));
        assert!(s.contains("Content-Length: 2\r\n"));
        assert!(s.contains("Retry-After: 2\r\n"));
        assert!(s.ends_with("\r\n\r\n{}"));

        let mut out = Vec::new();
        write_full(
            &mut out,
            200,
            "text/plain",
            &[("X".into(), "a\r\nEvil: 1".into())],
            b"",
            false,
        )
        .expect("write");
        let s = String::from_utf8(out).expect("utf8");
        assert!(s.contains("X: a  Evil: 1\r\n"));
        assert!(s.contains("Connection: close\r\n"));

        let mut out = Vec::new();
        write_chunk(&mut out, b"data: x\n\n").expect("chunk");
        write_last_chunk(&mut out).expect("last");
        assert_eq!(out, b"9\r\ndata: x\n\n\r\n0\r\n\r\n");
    }
}
