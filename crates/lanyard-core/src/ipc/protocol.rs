//! The broker's wire format: one JSON object per line (NDJSON), request then reply, over a local
//! stream. Plain serde types and constants only, so both the async server and the std-only blocking
//! client share them; this module does no I/O and holds no state.
//!
//! A connection starts with [`Request::Hello`] carrying [`PROTOCOL_VERSION`]; the agent answers
//! [`Response::Hello`] when the versions match and [`ErrorCode::VersionMismatch`] otherwise (with its
//! own version, so the caller can say which side is older). Any number of requests may follow on
//! the same connection, each answered in order. A line longer than [`MAX_REQUEST_BYTES`] is
//! answered with [`ErrorCode::TooLarge`] and the connection is closed; a line that does not parse
//! is answered with [`ErrorCode::BadRequest`] and the connection stays usable.
//!
//! [`Request::Subscribe`] (protocol 2) turns the connection into a one-way status stream: the
//! agent answers with the current [`Response::Status`], then writes one more `Status` line each
//! time the status changes, until the client hangs up (the only way to end it; anything the client
//! writes afterwards is ignored). A reader slower than the changes sees only the latest status:
//! lines are never queued for it, so a stalled subscriber costs the agent one connection and one
//! status, never more.
//!
//! Access tokens cross this protocol, so `Response` has no `Debug` that could print one.

use serde::{Deserialize, Serialize};

use crate::engine::{EngineError, Status};
use crate::policy::ServerMode;
use crate::secret::Secret;

/// Bumped on any change that an older peer would misread.
/// 2: `subscribe`.
pub const PROTOCOL_VERSION: u32 = 2;

/// The longest request line the agent reads (bytes, newline excluded).
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// How much the server reads at most for one line: a full request plus its `\r\n`.
pub const LINE_READ_LIMIT: usize = MAX_REQUEST_BYTES + 2;

/// What a local program asks the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Must come first on every connection.
    Hello {
        protocol: u32,
        /// The caller's name and version, for the agent's log (e.g. "lanyard-cli 0.1.0").
        client: String,
    },
    /// The engine's status (no secrets).
    Status,
    /// Sign in: the agent opens the browser (or starts a device-code sign-in); answered when done.
    SignIn {
        #[serde(default)]
        device: bool,
    },
    SignOut,
    RefreshAll,
    Refresh {
        server: String,
    },
    /// Connect the `oauth` server `server`: the agent opens the browser once; answered when the
    /// connection is kept (or refused).
    Connect {
        server: String,
    },
    /// A token for `server`, valid for at least `min_ttl_secs`.
    Token {
        server: String,
        #[serde(default)]
        min_ttl_secs: u64,
        /// Mint anew even though the current token looks valid (after a 401).
        #[serde(default)]
        force_refresh: bool,
        /// Scopes wanted on top of the server's (after a 403 `insufficient_scope`).
        #[serde(default)]
        extra_scopes: Vec<String>,
        /// The one request the caller will send the token with, so the agent signs its DPoP
        /// proof when the token is bound (the key never leaves the agent). Without it a bound
        /// token is refused with [`ErrorCode::DpopBound`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dpop: Option<ProofRequest>,
    },
    /// The configured servers.
    Servers,
    /// The current status, then one `status` line per change until the client hangs up (see the
    /// module doc). No other request can follow on this connection.
    Subscribe,
}

/// The agent's answer to one request.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    Hello {
        protocol: u32,
        /// The agent's build, e.g. "0.1.0".
        agent_version: String,
        agent_pid: u32,
    },
    Status {
        status: Box<Status>,
    },
    /// The request was carried out (sign-in, sign-out, refresh).
    Done,
    Token {
        #[serde(serialize_with = "expose_secret")]
        access_token: Secret,
        expires_at: u64,
        scopes: Vec<String>,
        /// For a DPoP-bound token: the thumbprint of the key it is bound to (send it as
        /// `Authorization: DPoP <token>` with `dpop_proof` in the `DPoP` header).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dpop_jkt: Option<String>,
        /// The proof for the request named in the token request's `dpop`, for one use.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            serialize_with = "expose_optional_secret"
        )]
        dpop_proof: Option<Secret>,
    },
    Servers {
        servers: Vec<ServerInfo>,
    },
    Error(ErrorReply),
}

/// The access token is written out here and nowhere else: the one place a token leaves the agent.
fn expose_secret<S: serde::Serializer>(secret: &Secret, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(secret.expose())
}

fn expose_optional_secret<S: serde::Serializer>(
    secret: &Option<Secret>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match secret {
        Some(secret) => s.serialize_some(secret.expose()),
        None => s.serialize_none(),
    }
}

/// What a DPoP proof is for: one HTTP request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofRequest {
    /// `POST`, `GET`, `DELETE`, …
    pub method: String,
    /// The request's URL.
    pub url: String,
    /// The nonce the server last handed out (`DPoP-Nonce`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

/// One configured server, as `lanyard servers` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    pub id: String,
    pub display_name: String,
    pub url: String,
    pub mode: ServerMode,
}

/// Why a request failed: a stable code for programs and a message for people (never a secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub code: ErrorCode,
    pub message: String,
    /// For [`ErrorCode::Unavailable`]: when the agent retries (wall-clock seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<u64>,
    /// For [`ErrorCode::VersionMismatch`]: the agent's protocol version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_protocol: Option<u32>,
}

/// Error codes. Unknown codes from a newer agent read as [`ErrorCode::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    NotSignedIn,
    StepUpRequired,
    Denied,
    UnknownServer,
    Unavailable,
    SignInFailed,
    /// The managed policy is missing or unusable.
    Misconfigured,
    /// The engine stopped (the agent is shutting down).
    Stopped,
    VersionMismatch,
    /// The first request on a connection was not `hello`.
    HelloRequired,
    /// The line was not a request this agent understands.
    BadRequest,
    /// The line exceeded [`MAX_REQUEST_BYTES`].
    TooLarge,
    /// The peer runs as another user.
    Refused,
    /// The token is bound to this device's DPoP key and the caller asked for no proof: a
    /// client that sends a fixed header cannot use it (`lanyard proxy` can).
    DpopBound,
    /// An `oauth` server the user has not connected: `lanyard connect <id>`.
    NotConnected,
    /// `connect` of a server that is not in `oauth` mode.
    NotConnectable,
    /// The browser connection did not complete (refused, timed out, a forged redirect).
    ConnectFailed,
    #[serde(other)]
    Other,
}

impl ErrorReply {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_at: None,
            agent_protocol: None,
        }
    }
}

impl From<&EngineError> for ErrorReply {
    fn from(e: &EngineError) -> Self {
        let code = match e {
            EngineError::UnknownServer(_) => ErrorCode::UnknownServer,
            EngineError::NotSignedIn => ErrorCode::NotSignedIn,
            // Old clients know `denied`: a scope beyond the ceiling is the organization's no.
            EngineError::Denied { .. } | EngineError::ScopeNotAllowed { .. } => ErrorCode::Denied,
            EngineError::StepUpRequired => ErrorCode::StepUpRequired,
            EngineError::Unavailable { .. } => ErrorCode::Unavailable,
            EngineError::SignIn(_) => ErrorCode::SignInFailed,
            EngineError::Misconfigured(_) => ErrorCode::Misconfigured,
            EngineError::Stopped => ErrorCode::Stopped,
            EngineError::NotConnected { .. } | EngineError::ConsentNeeded { .. } => {
                ErrorCode::NotConnected
            }
            EngineError::NotConnectable { .. } => ErrorCode::NotConnectable,
            EngineError::ConnectFailed(_) => ErrorCode::ConnectFailed,
        };
        let mut reply = Self::new(code, e.to_string());
        if let EngineError::Unavailable { retry_at, .. } = e {
            reply.retry_at = Some(*retry_at);
        }
        reply
    }
}

/// What one line read from a peer holds, decided by the framing rules in the module doc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestLine {
    /// Only whitespace: ignored.
    Blank,
    Request(Request),
    /// Not a request this agent understands: answered with [`ErrorCode::BadRequest`].
    Malformed(ErrorReply),
    /// Over [`MAX_REQUEST_BYTES`]: answered with [`ErrorCode::TooLarge`], then the connection closes.
    TooLarge(ErrorReply),
}

/// Decodes one line as read (at most [`LINE_READ_LIMIT`] bytes, its `\n` included when
/// `complete`). Pure: the server does the reading and the answering.
pub fn decode_request_line(line: &[u8], complete: bool) -> RequestLine {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    let line = &line[..end];
    if line.len() > MAX_REQUEST_BYTES || (!complete && line.len() >= LINE_READ_LIMIT) {
        return RequestLine::TooLarge(ErrorReply::new(
            ErrorCode::TooLarge,
            format!("requests are limited to {MAX_REQUEST_BYTES} bytes"),
        ));
    }
    if line.iter().all(u8::is_ascii_whitespace) {
        return RequestLine::Blank;
    }
    match serde_json::from_slice::<Request>(line) {
        Ok(request) => RequestLine::Request(request),
        Err(e) => RequestLine::Malformed(ErrorReply::new(
            ErrorCode::BadRequest,
            format!("not a valid request: {e}"),
        )),
    }
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Response::Hello { protocol, .. } => write!(f, "Hello(protocol {protocol})"),
            Response::Status { .. } => f.write_str("Status"),
            Response::Done => f.write_str("Done"),
            Response::Token { expires_at, .. } => write!(f, "Token([redacted], {expires_at})"),
            Response::Servers { servers } => write!(f, "Servers({})", servers.len()),
            Response::Error(e) => write!(f, "Error({e:?})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_request_fields_default_when_absent() {
        let r: Request = serde_json::from_str(r#"{"op":"token","server":"docs"}"#).expect("parse");
        assert_eq!(
            r,
            Request::Token {
                server: "docs".into(),
                min_ttl_secs: 0,
                force_refresh: false,
                extra_scopes: vec![],
                dpop: None,
            }
        );
    }

    #[test]
    fn token_reply_carries_the_token_but_debug_does_not() {
        let reply = Response::Token {
            access_token: Secret::new("tok-123"),
            expires_at: 7,
            scopes: vec!["a".into()],
            dpop_jkt: None,
            dpop_proof: None,
        };
        let line = serde_json::to_string(&reply).expect("serialize");
        assert_eq!(
            line,
            r#"{"type":"token","access_token":"tok-123","expires_at":7,"scopes":["a"]}"#
        );
        assert!(!format!("{reply:?}").contains("tok-123"));
        let back: Response = serde_json::from_str(&line).expect("parse");
        assert_eq!(back, reply);

        let bound = Response::Token {
            access_token: Secret::new("tok-123"),
            expires_at: 7,
            scopes: vec![],
            dpop_jkt: Some("jkt".into()),
            dpop_proof: Some(Secret::new("proof-456")),
        };
        let line = serde_json::to_string(&bound).expect("serialize");
        assert!(
            line.contains(r#""dpop_jkt":"jkt","dpop_proof":"proof-456""#),
            "{line}"
        );
        assert!(!format!("{bound:?}").contains("proof-456"));
        let back: Response = serde_json::from_str(&line).expect("parse");
        assert_eq!(back, bound);
    }

    #[test]
    fn subscribe_is_a_bare_op() {
        let r: Request = serde_json::from_str(r#"{"op":"subscribe"}"#).expect("parse");
        assert_eq!(r, Request::Subscribe);
        assert_eq!(
            serde_json::to_string(&Request::Subscribe).expect("serialize"),
            r#"{"op":"subscribe"}"#
        );
    }

    #[test]
    fn unknown_error_code_reads_as_other() {
        let r: Response =
            serde_json::from_str(r#"{"type":"error","code":"brand_new","message":"m"}"#)
                .expect("parse");
        assert!(matches!(
            r,
            Response::Error(ErrorReply {
                code: ErrorCode::Other,
                ..
            })
        ));
    }
}
