//! The OAuth wire: discovery, token requests, client authentication and error bodies.
//!
//! Shaped like oauth2-rs: a pure *build request* and a pure *parse response* per endpoint, and one
//! small executor ([`http::HttpExecutor`]) around one shared `reqwest::Client`. No clock reads, no
//! storage, no policy: callers pass the time, fresh ids and credentials in.

pub mod client_auth;
pub mod code_flow;
pub mod discovery;
pub mod dpop;
pub mod error;
pub mod http;
pub mod token;

pub use client_auth::{AssertionInputs, Client, ClientAuth, KeyAlgorithm, KeySigner, SigningKey};
pub use dpop::{DpopKey, DpopUse};
pub use error::{OAuthErrorBody, TransportKind, WireError};
pub use http::{HttpConfig, HttpExecutor, HttpRequest, HttpResponse};
pub use token::{TokenEndpoint, TokenResponse};
