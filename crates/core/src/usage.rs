//! One usage model filled from every provider, reported in OpenAI's shape.

use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Prompt tokens served from the provider's prompt cache (included in `prompt_tokens`).
    pub cached_tokens: u64,
    /// Prompt tokens written to the provider's prompt cache.
    pub cache_write_tokens: u64,
    /// Reasoning tokens (included in `completion_tokens`).
    pub reasoning_tokens: u64,
}

fn u(v: &Value, path: &[&str]) -> u64 {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(next) => cur = next,
            None => return 0,
        }
    }
    cur.as_u64().unwrap_or(0)
}

impl Usage {
    /// Read OpenAI's `usage` object.
    pub fn from_openai(v: &Value) -> Usage {
        Usage {
            prompt_tokens: u(v, &["prompt_tokens"]),
            completion_tokens: u(v, &["completion_tokens"]),
            cached_tokens: u(v, &["prompt_tokens_details", "cached_tokens"]),
            cache_write_tokens: 0,
            reasoning_tokens: u(v, &["completion_tokens_details", "reasoning_tokens"]),
        }
    }

    /// Read Anthropic's `usage` object (a message's, or the running total of a stream's
    /// `message_start` and `message_delta` usage). Anthropic's `input_tokens` excludes cache
    /// reads and writes, so the prompt is the sum of the three; thinking tokens are part of
    /// `output_tokens`, broken out in `output_tokens_details.thinking_tokens` when reported.
    pub fn from_anthropic(v: &Value) -> Usage {
        let cached = u(v, &["cache_read_input_tokens"]);
        let written = u(v, &["cache_creation_input_tokens"]);
        Usage {
            prompt_tokens: u(v, &["input_tokens"]) + cached + written,
            completion_tokens: u(v, &["output_tokens"]),
            cached_tokens: cached,
            cache_write_tokens: written,
            reasoning_tokens: u(v, &["output_tokens_details", "thinking_tokens"]),
        }
    }

    /// Read Gemini's `usageMetadata`. `candidatesTokenCount` excludes thinking, so the
    /// completion is candidates + thoughts; tool-use prompt tokens (results of built-in tools)
    /// count as prompt.
    pub fn from_gemini(v: &Value) -> Usage {
        let thoughts = u(v, &["thoughtsTokenCount"]);
        Usage {
            prompt_tokens: u(v, &["promptTokenCount"]) + u(v, &["toolUsePromptTokenCount"]),
            completion_tokens: u(v, &["candidatesTokenCount"]) + thoughts,
            cached_tokens: u(v, &["cachedContentTokenCount"]),
            cache_write_tokens: 0,
            reasoning_tokens: thoughts,
        }
    }

    pub fn total_tokens(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }

    /// OpenAI's `usage` object.
    pub fn to_openai(&self) -> Value {
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens(),
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_round_trip() {
        let v = json!({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
                       "prompt_tokens_details": {"cached_tokens": 4},
                       "completion_tokens_details": {"reasoning_tokens": 2}});
        let u = Usage::from_openai(&v);
        assert_eq!(
            u,
            Usage {
                prompt_tokens: 10,
                completion_tokens: 5,
                cached_tokens: 4,
                cache_write_tokens: 0,
                reasoning_tokens: 2
            }
        );
        assert_eq!(u.to_openai()["total_tokens"], 15);
        assert_eq!(Usage::from_openai(&json!({})), Usage::default());
    }

    #[test]
    fn anthropic_prompt_includes_cache_reads_and_writes() {
        let v = json!({"input_tokens": 10, "cache_read_input_tokens": 100,
                       "cache_creation_input_tokens": 7, "output_tokens": 20});
        let u = Usage::from_anthropic(&v);
        assert_eq!(
            u,
            Usage {
                prompt_tokens: 117,
                completion_tokens: 20,
                cached_tokens: 100,
                cache_write_tokens: 7,
                reasoning_tokens: 0
            }
        );
        assert_eq!(u.to_openai()["total_tokens"], 137);
        assert_eq!(Usage::from_anthropic(&json!({})), Usage::default());
        let thinking = json!({"input_tokens": 1, "output_tokens": 9,
                              "output_tokens_details": {"thinking_tokens": 6}});
        assert_eq!(Usage::from_anthropic(&thinking).reasoning_tokens, 6);
    }

    #[test]
    fn gemini_completion_includes_thoughts() {
        let v = json!({"promptTokenCount": 12, "candidatesTokenCount": 5,
                       "thoughtsTokenCount": 30, "cachedContentTokenCount": 8,
                       "totalTokenCount": 47});
        let u = Usage::from_gemini(&v);
        assert_eq!(
            u,
            Usage {
                prompt_tokens: 12,
                completion_tokens: 35,
                cached_tokens: 8,
                cache_write_tokens: 0,
                reasoning_tokens: 30
            }
        );
        assert_eq!(u.total_tokens(), 47, "matches Gemini's own total");
        let tools =
            Usage::from_gemini(&json!({"promptTokenCount": 3, "toolUsePromptTokenCount": 4}));
        assert_eq!(tools.prompt_tokens, 7);
    }
}
