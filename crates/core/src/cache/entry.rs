//! The stored answer: a compact JSON value in KV, its freshness, and what may be stored at all.

use crate::usage::Usage;
use serde_json::Value;

/// KV's value limit is 25 MiB; larger answers are not stored.
pub const MAX_ENTRY_BYTES: usize = 25 * 1024 * 1024;
pub const ENTRY_VERSION: u8 = 1;

/// One cached answer. Unknown fields are ignored when reading (a newer writer may add some);
/// a different `v` is a miss. (Encoded by hand through `Value`: serde derives would add code
/// to the wasm for no gain.)
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub v: u8,
    /// When the answer was stored (Unix ms).
    pub created_ms: u64,
    pub ttl_s: u32,
    /// The stale-if-error window after `ttl_s` (0 = none).
    pub stale_s: u32,
    /// The upstream model that answered.
    pub model: String,
    /// The provider id that answered.
    pub provider: String,
    pub usage: EntryUsage,
    /// The OpenAI `chat.completion` object, with `usage`.
    pub completion: Value,
}

/// What the answer cost when it was generated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EntryUsage {
    pub prompt: u64,
    pub completion: u64,
    pub cached: u64,
    pub reasoning: u64,
}

impl From<Usage> for EntryUsage {
    fn from(u: Usage) -> Self {
        EntryUsage {
            prompt: u.prompt_tokens,
            completion: u.completion_tokens,
            cached: u.cached_tokens,
            reasoning: u.reasoning_tokens,
        }
    }
}

impl From<EntryUsage> for Usage {
    fn from(u: EntryUsage) -> Self {
        Usage {
            prompt_tokens: u.prompt,
            completion_tokens: u.completion,
            cached_tokens: u.cached,
            cache_write_tokens: 0,
            reasoning_tokens: u.reasoning,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Within `ttl_s`: serve it (HIT).
    Fresh,
    /// Past `ttl_s` but within `stale_s` more: serve it only if every upstream attempt fails
    /// (STALE); otherwise refresh it.
    Stale,
    /// Past both: a miss.
    Expired,
}

impl Entry {
    /// Read a KV value. `None` (a miss) for anything unreadable or of another version.
    pub fn decode(bytes: &[u8]) -> Option<Entry> {
        let Value::Object(mut o) = serde_json::from_slice(bytes).ok()? else {
            return None;
        };
        let n = |o: &serde_json::Map<String, Value>, k: &str| o.get(k).and_then(Value::as_u64);
        // `take` rather than `remove`: `BTreeMap::remove` is code the wasm does not need.
        let s =
            |o: &mut serde_json::Map<String, Value>, k: &str| match o.get_mut(k).map(Value::take) {
                Some(Value::String(s)) => Some(s),
                _ => None,
            };
        if n(&o, "v") != Some(u64::from(ENTRY_VERSION)) {
            return None;
        }
        let u = o.get("usage").unwrap_or(&Value::Null);
        let t = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
        let usage = EntryUsage {
            prompt: t("prompt"),
            completion: t("completion"),
            cached: t("cached"),
            reasoning: t("reasoning"),
        };
        let e = Entry {
            v: ENTRY_VERSION,
            created_ms: n(&o, "created_ms")?,
            ttl_s: u32::try_from(n(&o, "ttl_s")?).ok()?,
            stale_s: u32::try_from(n(&o, "stale_s")?).ok()?,
            usage,
            model: s(&mut o, "model")?,
            provider: s(&mut o, "provider")?,
            completion: o.get_mut("completion").map(Value::take)?,
        };
        check_storable(&e.completion, true).is_ok().then_some(e)
    }

    /// The KV value, or why it is not stored (larger than [`MAX_ENTRY_BYTES`]).
    pub fn encode(self) -> Result<Vec<u8>, &'static str> {
        // Written as text around the completion: less wasm than a `json!` tree.
        let u = self.usage;
        let mut bytes =
            format!(
            "{{\"v\":{},\"created_ms\":{},\"ttl_s\":{},\"stale_s\":{},\"usage\":{{\"prompt\":{},\
             \"completion\":{},\"cached\":{},\"reasoning\":{}}},\"model\":",
            self.v, self.created_ms, self.ttl_s, self.stale_s, u.prompt, u.completion, u.cached,
            u.reasoning
        )
            .into_bytes();
        let text = |b: &mut Vec<u8>, s: &str| serde_json::to_writer(b, s);
        text(&mut bytes, &self.model).map_err(|_| "not serialisable")?;
        bytes.extend_from_slice(b",\"provider\":");
        text(&mut bytes, &self.provider).map_err(|_| "not serialisable")?;
        bytes.extend_from_slice(b",\"completion\":");
        serde_json::to_writer(&mut bytes, &self.completion).map_err(|_| "not serialisable")?;
        bytes.push(b'}');
        if bytes.len() > MAX_ENTRY_BYTES {
            return Err("larger than the KV value limit");
        }
        Ok(bytes)
    }

    /// Seconds since the answer was stored (0 if the writer's clock was ahead).
    pub fn age_s(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.created_ms) / 1000
    }

    pub fn freshness(&self, now_ms: u64) -> Freshness {
        self.freshness_with(now_ms, self.stale_s)
    }

    /// [`Entry::freshness`] with another stale window.
    pub fn freshness_with(&self, now_ms: u64, stale_s: u32) -> Freshness {
        let age_ms = now_ms.saturating_sub(self.created_ms);
        let ttl_ms = u64::from(self.ttl_s) * 1000;
        if age_ms < ttl_ms {
            Freshness::Fresh
        } else if age_ms < ttl_ms + u64::from(stale_s) * 1000 {
            Freshness::Stale
        } else {
            Freshness::Expired
        }
    }

    pub fn usage(&self) -> Usage {
        self.usage.into()
    }

    /// The body for a non-streaming caller: the stored `chat.completion`, its `id` and
    /// `created` unchanged.
    pub fn body(&self) -> Vec<u8> {
        crate::json::to_bytes(&self.completion)
    }

    /// The SSE body for a streaming caller (see [`super::replay_sse`]).
    pub fn replay(&self, include_usage: bool) -> Vec<u8> {
        super::stream::replay_sse(&self.completion, include_usage)
    }
}

/// Whether a `chat.completion` may be stored: an object with at least one choice, every choice
/// finished (not cut, not filtered), and no tool calls unless `cache_tool_calls`.
pub fn check_storable(completion: &Value, cache_tool_calls: bool) -> Result<(), &'static str> {
    let choices = completion
        .get("choices")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
        .ok_or("no choices")?;
    for c in choices {
        match c.get("finish_reason").and_then(Value::as_str) {
            None => return Err("a choice has no finish_reason"),
            Some("content_filter") => return Err("a choice was filtered"),
            Some("tool_calls" | "function_call") if !cache_tool_calls => {
                return Err("tool-call answers are not cached")
            }
            _ => {}
        }
        let m = c.get("message").ok_or("a choice has no message")?;
        let calls = |k: &str| {
            m.get(k)
                .is_some_and(|v| !v.is_null() && v != &Value::Array(vec![]))
        };
        if !cache_tool_calls && (calls("tool_calls") || calls("function_call")) {
            return Err("tool-call answers are not cached");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(created_ms: u64, ttl_s: u32, stale_s: u32) -> Entry {
        Entry {
            v: 1,
            created_ms,
            ttl_s,
            stale_s,
            model: "gpt-x".into(),
            provider: "oa".into(),
            usage: EntryUsage {
                prompt: 5,
                completion: 2,
                cached: 1,
                reasoning: 0,
            },
            completion: json!({"id": "c", "object": "chat.completion", "created": 1, "model": "gpt-x",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                             "logprobs": null, "finish_reason": "stop"}]}),
        }
    }

    #[test]
    fn freshness_windows() {
        let e = entry(10_000, 60, 30);
        assert_eq!(e.freshness(10_000), Freshness::Fresh);
        assert_eq!(e.freshness(69_999), Freshness::Fresh);
        assert_eq!(e.freshness(70_000), Freshness::Stale);
        assert_eq!(e.freshness(99_999), Freshness::Stale);
        assert_eq!(e.freshness(100_000), Freshness::Expired);
        assert_eq!(e.freshness(5_000), Freshness::Fresh, "writer clock ahead");
        assert_eq!(e.age_s(5_000), 0);
        assert_eq!(e.age_s(72_500), 62);
        let no_stale = entry(0, 60, 0);
        assert_eq!(no_stale.freshness(60_000), Freshness::Expired);
    }

    #[test]
    fn encode_decode_round_trip_and_rejects() {
        let e = entry(1, 60, 0);
        let bytes = e.clone().encode().unwrap();
        assert_eq!(Entry::decode(&bytes), Some(e.clone()));
        assert_eq!(e.usage().prompt_tokens, 5);
        let stored: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            stored["usage"],
            json!({"prompt": 5, "completion": 2, "cached": 1, "reasoning": 0})
        );
        assert_eq!(
            (stored["v"].as_u64(), stored["ttl_s"].as_u64()),
            (Some(1), Some(60))
        );
        for junk in [&b"not json"[..], b"[]", b"{}"] {
            assert!(Entry::decode(junk).is_none());
        }
        let with = |k: &str, v: Value| {
            let mut x = stored.clone();
            x[k] = v;
            Entry::decode(x.to_string().as_bytes())
        };
        assert!(with("v", json!(2)).is_none(), "another version is a miss");
        assert!(with("ttl_s", json!(-1)).is_none());
        assert!(with("model", json!(7)).is_none());
        assert!(with("completion", json!({"choices": []})).is_none());
        assert_eq!(with("future_field", json!(1)), Some(e.clone()));
        let mut no_usage = stored.clone();
        no_usage.as_object_mut().unwrap().remove("usage");
        let read = Entry::decode(no_usage.to_string().as_bytes()).unwrap();
        assert_eq!(read.usage, EntryUsage::default());
    }

    #[test]
    fn size_limit() {
        let mut e = entry(1, 60, 0);
        e.completion["choices"][0]["message"]["content"] = json!("x".repeat(MAX_ENTRY_BYTES));
        assert_eq!(e.encode(), Err("larger than the KV value limit"));
    }

    #[test]
    fn what_is_storable() {
        let ok = entry(0, 1, 0).completion;
        assert!(check_storable(&ok, false).is_ok());
        let length = json!({"choices": [{"message": {"content": "a"}, "finish_reason": "length"}]});
        assert!(
            check_storable(&length, false).is_ok(),
            "a max_tokens cut is an answer"
        );
        for bad in [
            json!({}),
            json!({"choices": []}),
            json!({"choices": [{"message": {"content": "a"}, "finish_reason": null}]}),
            json!({"choices": [{"message": {"content": "a"}, "finish_reason": "content_filter"}]}),
            json!({"choices": [{"finish_reason": "stop"}]}),
        ] {
            assert!(check_storable(&bad, true).is_err(), "{bad}");
        }
        let tools = json!({"choices": [{"message": {"content": null, "tool_calls": [
            {"id": "1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            "finish_reason": "tool_calls"}]});
        assert!(check_storable(&tools, false).is_err());
        assert!(check_storable(&tools, true).is_ok());
        // Tool calls with another finish reason are still tool calls.
        let mut sneaky = tools.clone();
        sneaky["choices"][0]["finish_reason"] = json!("stop");
        assert!(check_storable(&sneaky, false).is_err());
    }
}
