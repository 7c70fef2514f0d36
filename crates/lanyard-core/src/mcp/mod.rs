//! MCP on the wire, in one place: [`client`], a minimal MCP client over streamable HTTP (enough to
//! prove a token works: `lanyard diagnose`, the conformance client); [`bridge`], the stdio ⇄
//! streamable-HTTP proxy behind `lanyard proxy`; and [`sse`], the event-stream reader both use.
//! Tokens come in from outside (the agent, per request); nothing here holds one.

pub mod bridge;
pub mod client;
pub mod sse;

pub use client::*;
pub use sse::{SseEvent, SseParser};
