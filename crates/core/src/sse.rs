//! Incremental Server-Sent Events parsing: bytes in, whole events out, whatever the chunking.
//!
//! Follows the WHATWG event-stream rules that matter for LLM APIs: lines end in `\n`, `\r\n` or
//! `\r`; `data:` lines of one event are joined with `\n`; `event:` names the event; lines starting
//! with `:` are comments; a blank line dispatches. One optional space after the colon is dropped.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

/// A line or event larger than this is an error rather than unbounded buffering.
pub const MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseTooLarge;

#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    /// The previous chunk ended in `\r`: a `\n` starting the next one belongs to it.
    after_cr: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed bytes; complete events are appended to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseTooLarge> {
        for &b in bytes {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' => self.end_line(out),
                b'\r' => {
                    self.after_cr = true;
                    self.end_line(out);
                }
                _ => {
                    self.line.push(b);
                    if self.line.len() + self.data.len() > MAX_EVENT_BYTES {
                        return Err(SseTooLarge);
                    }
                }
            }
        }
        Ok(())
    }

    /// The stream ended: an event not yet closed by a blank line is dispatched if it has data.
    pub fn finish(&mut self, out: &mut Vec<SseEvent>) {
        if !self.line.is_empty() {
            self.end_line(out);
        }
        self.dispatch(out);
    }

    fn end_line(&mut self, out: &mut Vec<SseEvent>) {
        if self.line.is_empty() {
            self.dispatch(out);
            return;
        }
        let line = String::from_utf8_lossy(&self.line).into_owned();
        self.line.clear();
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.find(':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (line.as_str(), ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.event = Some(value.to_string()),
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        if self.has_data {
            out.push(SseEvent {
                event: self.event.take(),
                data: std::mem::take(&mut self.data),
            });
        }
        self.event = None;
        self.data.clear();
        self.has_data = false;
    }
}

/// Frame one `data:` event (the data must not contain newlines; JSON from serde never does).
pub fn frame_data(data: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(data.len() + 8);
    v.extend_from_slice(b"data: ");
    v.extend_from_slice(data.as_bytes());
    v.extend_from_slice(b"\n\n");
    v
}

/// Frame a named event (`event: NAME` + `data: ...`), as the Anthropic API does.
pub fn frame_event(name: &str, data: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(name.len() + data.len() + 16);
    v.extend_from_slice(b"event: ");
    v.extend_from_slice(name.as_bytes());
    v.push(b'\n');
    v.extend_from_slice(&frame_data(data));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in_pieces(input: &[u8], piece: usize) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for c in input.chunks(piece) {
            p.push(c, &mut out).unwrap();
        }
        p.finish(&mut out);
        out
    }

    #[test]
    fn any_chunking_gives_the_same_events() {
        let input = "data: {\"a\":1}\n\nevent: message_delta\ndata: {\"b\":\"é\"}\r\n\r\n: keep-alive\n\ndata: x\rdata: y\r\rdata: [DONE]\n\n";
        let expected = vec![
            SseEvent {
                event: None,
                data: "{\"a\":1}".into(),
            },
            SseEvent {
                event: Some("message_delta".into()),
                data: "{\"b\":\"é\"}".into(),
            },
            SseEvent {
                event: None,
                data: "x\ny".into(),
            },
            SseEvent {
                event: None,
                data: "[DONE]".into(),
            },
        ];
        for piece in 1..input.len() {
            assert_eq!(
                parse_in_pieces(input.as_bytes(), piece),
                expected,
                "piece {piece}"
            );
        }
    }

    #[test]
    fn unterminated_event_is_flushed_at_end() {
        assert_eq!(
            parse_in_pieces(b"data: tail", 3),
            vec![SseEvent {
                event: None,
                data: "tail".into()
            }]
        );
        assert!(
            parse_in_pieces(b"event: x\n\n", 2).is_empty(),
            "no data, no event"
        );
    }

    #[test]
    fn oversized_event_is_an_error() {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        let big = vec![b'a'; MAX_EVENT_BYTES + 1];
        assert_eq!(p.push(&big, &mut out), Err(SseTooLarge));
    }

    #[test]
    fn framing() {
        assert_eq!(frame_data("[DONE]"), b"data: [DONE]\n\n");
        assert_eq!(frame_event("ping", "{}"), b"event: ping\ndata: {}\n\n");
    }
}
