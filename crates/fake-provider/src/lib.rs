//! Switchyard's fake LLM provider: a small std-only HTTP/1.1 server that
//! answers like OpenAI, Anthropic and Gemini, deterministically, and
//! misbehaves on request. See README.md for the reference.

pub mod anthropic;
pub mod common;
pub mod gemini;
pub mod http;
pub mod openai;
pub mod server;
pub mod spec;
pub mod stream;
