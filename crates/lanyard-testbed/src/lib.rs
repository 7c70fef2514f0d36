//! Lanyard's testbed: a dev IdP, MCP authorization servers and MCP servers that speak the real
//! Enterprise-Managed Authorization protocol over HTTP on 127.0.0.1. It plays the independent peer
//! in tests, benchmarks and `make demo`, so it shares no code with `lanyard-core`.
//!
//! # Shape
//!
//! * [`TestbedConfig`] describes the world: an [`IdpConfig`] (registered [`RegisteredClient`]s with
//!   a [`ClientAuth`] method, [`TestUser`]s, RFC 9207 `iss`, lifetimes, initial policy), any
//!   number of [`AsConfig`] authorization servers (issuer path and trailing slash, [`MetadataStyle`],
//!   clients, trusted IdP, token lifetime, allowed scopes, a wrong-issuer fault) and [`McpConfig`]
//!   MCP servers (path, protecting AS, required scopes, [`PrmLocation`], whether 401s carry
//!   `resource_metadata`), plus the injected latency and the shared [`TestClock`].
//! * [`Testbed::start`] binds one listener per component on an ephemeral 127.0.0.1 port and returns
//!   the [`Testbed`], whose handles give URLs and runtime control:
//!   [`IdpHandle`] (issuer and endpoints, `deny`/`allow`, `require_auth_within`,
//!   `revoke_all_sessions`, `revoke_user_sessions`, [`IdpStats`]), [`AsHandle`] (issuer, token
//!   endpoint, [`AsStats`], wrong-issuer toggle) and [`McpHandle`] (URL = resource id, PRM URL,
//!   [`McpStats`]). Every handle has a [`Faults`] switchboard taking a [`Fault`] per [`Endpoint`],
//!   [`FaultMode::Once`] or [`FaultMode::Persistent`].
//! * [`complete_login`] and [`complete_device`] are a scripted browser for the IdP's pages; the
//!   binary exposes them as `lanyard-testbed browse --user U URL` and `lanyard-testbed device
//!   --user U URL`, and serves the demo world with `lanyard-testbed serve --demo`.
//!
//! # Wire summary
//!
//! IdP (under its issuer path): `/.well-known/openid-configuration`, `/jwks`, `/authorize`,
//! `/login`, `/token` (authorization_code, refresh_token with rotation, token-exchange → ID-JAG,
//! device_code), `/device_authorization`, `/device`, `/revoke`. Authorization server: metadata,
//! `/jwks`, `/token` (jwt-bearer, client_credentials), `/revoke`. MCP server: `POST <path>`
//! (JSON-RPC, JSON or SSE replies), `GET` → 405 or the server-initiated stream, `DELETE` ends the
//! session, and protected resource metadata.
//!
//! All times (`iat`, `exp`, `auth_time`, code and device-code expiry) come from the [`TestClock`];
//! the IdP and each authorization server may run theirs skewed (`set_clock_skew`), and every answer
//! carries its component's time in `Date`.
//!
//! # The network
//!
//! [`Testbed::start_https`] serves every component over HTTPS with a caller-made certificate that
//! can be swapped while running; [`net::ConnectProxy`] is an HTTP `CONNECT` proxy (plain or
//! TLS-inspecting) that counts its tunnels.

mod auth_server;
mod browser;
mod client_auth;
mod clock;
mod code_flow;
mod config;
pub mod demo;
pub mod dpop;
mod faults;
mod idp;
#[cfg(unix)]
pub mod impostor;
#[cfg(target_os = "linux")]
pub mod key_stores;
mod keys;
mod mcp;
pub mod net;
pub mod oauth;
mod testbed;
mod traffic;

pub use auth_server::{AsHandle, AsStats};
pub use browser::{
    complete_device, complete_login, complete_login_trusting, login_redirect, BrowserVisit,
};
pub use clock::TestClock;
pub use code_flow::RedirectFault;
pub use config::{
    AsConfig, ClientAuth, CodeFlowSettings, IdpConfig, IssuerPath, McpConfig, MetadataStyle,
    PrmLocation, RegisteredClient, TestUser, TestbedConfig, TrustedWorkload,
};
pub use faults::{Endpoint, Fault, FaultMode, Faults};
/// The SAML IdP's signing and message building, for tests that forge or tamper (Linux only).
#[cfg(target_os = "linux")]
pub use idp::saml::{saml_key, signed_response, signed_response_with, AssertionContent, SamlKey};
pub use idp::{IdpHandle, IdpStats, RevocationRecord, SamlConfirmationFault, WireSecrets};
pub use mcp::{whoami_call, McpHandle, McpStats, ReceivedMessage};
pub use testbed::{FrontOptions, HttpsSetup, Testbed};
pub use traffic::{TokenRequest, Traffic, TrafficSummary};
