//! Stream plans (the events a provider would send) and the script that the
//! misbehaviour directives turn them into.

use crate::spec::Spec;

/// Data of the malformed event inserted by `malformed_at`.
pub const MALFORMED_DATA: &str = r#"{"choices": [ broken"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Sent before any content (role chunk, `message_start`, …).
    Preamble,
    /// One content delta (a word, a tool-argument piece); counted by the
    /// `*_after` / `malformed_at` directives.
    Content,
    /// Finish reason, usage and other trailing events.
    Other,
    /// `data: [DONE]` / `message_stop`; dropped by `no_done`.
    Terminal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// The complete SSE text of the event, including the blank line.
    pub text: String,
}

impl Event {
    pub fn new(kind: EventKind, text: String) -> Event {
        Event { kind, text }
    }
}

/// `data: <data>\n\n`
pub fn data_event(data: &str) -> String {
    format!("data: {data}\n\n")
}

/// `event: <name>\ndata: <data>\n\n`
pub fn named_event(name: &str, data: &str) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// What a provider would stream for one answer, plus its in-band error and
/// malformed events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPlan {
    pub events: Vec<Event>,
    pub malformed: String,
    pub error_event: String,
}

impl StreamPlan {
    pub fn content_count(&self) -> usize {
        self.events
            .iter()
            .filter(|e| e.kind == EventKind::Content)
            .count()
    }

    /// All event texts concatenated (what a well-behaved stream sends).
    pub fn body(&self) -> String {
        self.events.iter().map(|e| e.text.as_str()).collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Sleep(u64),
    /// Write this SSE text as one HTTP chunk and flush.
    Send(String),
    /// Close the socket without the terminating zero-length chunk.
    Cut,
    /// Send nothing more; keep the socket open until the peer closes it.
    Stall,
    /// Write the terminating zero-length chunk (body ends cleanly).
    Finish,
}

/// Applies the stream directives of `spec` to `plan`.
pub fn script(plan: &StreamPlan, spec: &Spec) -> Vec<Step> {
    let mut steps = Vec::new();
    if let Some(ms) = spec.first_token_delay_ms.filter(|ms| *ms > 0) {
        steps.push(Step::Sleep(ms));
    }
    let chunk_delay = spec.chunk_delay_ms.filter(|ms| *ms > 0);
    let mut sent_any = false;
    let mut send = |steps: &mut Vec<Step>, text: String| {
        if sent_any {
            if let Some(ms) = chunk_delay {
                steps.push(Step::Sleep(ms));
            }
        }
        sent_any = true;
        steps.push(Step::Send(text));
    };
    // Returns true when the stream ends here.
    let trigger =
        |steps: &mut Vec<Step>, count: u64, send: &mut dyn FnMut(&mut Vec<Step>, String)| {
            if spec.cut_after == Some(count) {
                steps.push(Step::Cut);
                return true;
            }
            if spec.stall_after == Some(count) {
                steps.push(Step::Stall);
                return true;
            }
            if spec.error_event_after == Some(count) {
                send(steps, plan.error_event.clone());
                steps.push(Step::Finish);
                return true;
            }
            if spec.malformed_at == Some(count) {
                send(steps, plan.malformed.clone());
            }
            false
        };
    let mut count: u64 = 0;
    let mut checked_zero = false;
    for event in &plan.events {
        if !checked_zero && event.kind != EventKind::Preamble {
            checked_zero = true;
            if trigger(&mut steps, 0, &mut send) {
                return steps;
            }
        }
        if event.kind == EventKind::Terminal && spec.no_done {
            continue;
        }
        send(&mut steps, event.text.clone());
        if event.kind == EventKind::Content {
            count += 1;
            if trigger(&mut steps, count, &mut send) {
                return steps;
            }
        }
    }
    steps.push(Step::Finish);
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> StreamPlan {
        let ev = |k, t: &str| Event::new(k, t.to_string());
        StreamPlan {
            events: vec![
                ev(EventKind::Preamble, "P"),
                ev(EventKind::Content, "A"),
                ev(EventKind::Content, "B"),
                ev(EventKind::Content, "C"),
                ev(EventKind::Other, "F"),
                ev(EventKind::Terminal, "D"),
            ],
            malformed: "M".to_string(),
            error_event: "E".to_string(),
        }
    }

    fn sent(steps: &[Step]) -> String {
        steps
            .iter()
            .map(|s| match s {
                Step::Send(t) => t.clone(),
                Step::Sleep(ms) => format!("<{ms}>"),
                Step::Cut => "|CUT".to_string(),
                Step::Stall => "|STALL".to_string(),
                Step::Finish => "|END".to_string(),
            })
            .collect()
    }

    #[test]
    fn plain_stream_sends_everything() {
        assert_eq!(sent(&script(&plan(), &Spec::default())), "PABCFD|END");
        assert_eq!(plan().content_count(), 3);
        assert_eq!(plan().body(), "PABCFD");
    }

    #[test]
    fn directives_shape_the_script() {
        let s = |spec: &str| sent(&script(&plan(), &Spec::parse(spec)));
        assert_eq!(s("cut_after=2"), "PAB|CUT");
        assert_eq!(s("cut_after=0"), "P|CUT");
        assert_eq!(s("stall_after=1"), "PA|STALL");
        assert_eq!(s("malformed_at=1"), "PAMBCFD|END");
        assert_eq!(s("error_event_after=3"), "PABCE|END");
        assert_eq!(s("no_done"), "PABCF|END");
        assert_eq!(s("cut_after=9"), "PABCFD|END");
        assert_eq!(s("first_token_delay_ms=50"), "<50>PABCFD|END");
        assert_eq!(s("chunk_delay_ms=5,cut_after=1"), "P<5>A|CUT");
        assert_eq!(s("malformed_at=2,cut_after=2"), "PAB|CUT");
    }
}
