//! The local broker: how programs of the signed-in user (the `lanyard` CLI, the stdio proxy, AI
//! clients' header helpers) get tokens from the one engine host (the agent or the tray app).
//!
//! [`protocol`] is the versioned NDJSON wire format, [`endpoint`] the per-user socket path and the
//! one-host lock, [`serve`] the async server a host runs next to its engine, and
//! [`BlockingClient`] the std-only client. This module must not start an engine or open a browser:
//! helpers that need a sign-in get an error code and tell the user to sign in.

pub mod client;
pub mod endpoint;
pub mod protocol;
pub mod server;

pub use client::{AgentInfo, BlockingClient, ClientError, StatusUpdates, TokenRequestOptions};
pub use endpoint::{default_endpoint, AgentLock, EndpointError, ENDPOINT_ENV};
pub use protocol::{
    ErrorCode, ErrorReply, ProofRequest, Request, Response, ServerInfo, MAX_REQUEST_BYTES,
    PROTOCOL_VERSION,
};
pub use server::{serve, ServeError};
