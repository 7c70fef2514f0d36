//! What can go wrong on the wire, kept precise enough to tell the user what to do.
//!
//! An OAuth error body (RFC 6749 §5.2) keeps its code, description and raw body. A body that fails
//! to parse keeps an excerpt only when it came with an error status: a malformed *success* body may
//! hold a token, so only its length is kept.

use std::fmt;

/// An RFC 6749 §5.2 error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthErrorBody {
    pub status: u16,
    pub error: String,
    pub description: Option<String>,
    pub uri: Option<String>,
    /// `max_age` that some IdPs attach to `insufficient_user_authentication`.
    pub max_age: Option<u64>,
    /// The body as received (an error body carries no token), capped at [`EXCERPT_LIMIT`] bytes.
    pub raw: String,
}

impl fmt::Display for OAuthErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (HTTP {})", self.error, self.status)?;
        if let Some(d) = &self.description {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}

/// The most of a foreign body an error keeps.
pub const EXCERPT_LIMIT: usize = 512;

/// Cuts `body` to at most [`EXCERPT_LIMIT`] bytes of lossy UTF-8.
pub fn excerpt(body: &[u8]) -> String {
    let cut = &body[..body.len().min(EXCERPT_LIMIT)];
    let mut text = String::from_utf8_lossy(cut).into_owned();
    if body.len() > EXCERPT_LIMIT {
        text.push('…');
    }
    text
}

/// A parser's message about a foreign document, cut to at most [`EXCERPT_LIMIT`] bytes (on a
/// character boundary): serde quotes the offending value whole, and a server may send megabytes.
pub fn capped_message(message: impl fmt::Display) -> String {
    let mut text = message.to_string();
    if text.len() > EXCERPT_LIMIT {
        let mut cut = EXCERPT_LIMIT;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// Why a request got no HTTP answer: each kind has its own message, so the user and the helpdesk
/// can tell a typo in a host name from a server that is down or a network that swallows packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// The host name did not resolve.
    Dns,
    /// Nothing listens at that address and port (the host answered with a refusal).
    Refused,
    /// No answer in time (connecting, or waiting for the response).
    Timeout,
    /// The server's certificate is signed by no authority Lanyard trusts.
    TlsUntrusted,
    /// The server's certificate has expired (or is not valid yet).
    TlsExpired,
    /// The connection closed (or was reset) before the answer was complete.
    Cut,
    /// Another TLS failure (wrong name, handshake refused).
    Tls,
    /// The configured proxy could not be reached or would not open a tunnel.
    Proxy,
    /// Another failure while connecting.
    Connect,
    Other,
}

/// A failure talking to an OAuth or MCP endpoint.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WireError {
    #[error("could not reach {url}: {message}")]
    Transport {
        url: String,
        kind: TransportKind,
        message: String,
    },
    #[error("{url} answered with more than {limit} bytes; the response was dropped")]
    BodyTooLarge { url: String, limit: usize },
    #[error("{url} answered HTTP {status}: {excerpt}")]
    Status {
        url: String,
        status: u16,
        excerpt: String,
    },
    #[error("{0}")]
    OAuth(OAuthErrorBody),
    #[error("{url} sent an unreadable {what}: {detail}")]
    Malformed {
        url: String,
        what: &'static str,
        detail: String,
    },
    #[error("the metadata at {url} names issuer {found:?}, expected exactly {expected:?}")]
    IssuerMismatch {
        url: String,
        expected: String,
        found: String,
    },
    #[error("{0}")]
    Discovery(String),
    #[error("client authentication could not be prepared: {0}")]
    ClientAuth(String),
}

impl WireError {
    /// Worth trying again later by itself: the network, a timeout, a 5xx or 429, a garbled answer.
    pub fn is_transient(&self) -> bool {
        match self {
            WireError::Transport { .. } => true,
            WireError::Status { status, .. } => *status >= 500 || *status == 429,
            WireError::OAuth(body) => {
                body.status >= 500
                    || body.status == 429
                    || matches!(
                        body.error.as_str(),
                        "temporarily_unavailable" | "server_error"
                    )
            }
            WireError::Malformed { .. } | WireError::BodyTooLarge { .. } => true,
            WireError::IssuerMismatch { .. }
            | WireError::Discovery(_)
            | WireError::ClientAuth(_) => false,
        }
    }

    /// The endpoint is not (or no longer) there: 404, 405 or 410 without an OAuth error, or a
    /// host that refuses connections or does not resolve. Cached metadata is worth reading again.
    pub fn is_endpoint_gone(&self) -> bool {
        matches!(
            self,
            WireError::Status {
                status: 404 | 405 | 410,
                ..
            } | WireError::Transport {
                kind: TransportKind::Refused | TransportKind::Dns,
                ..
            }
        )
    }

    /// The OAuth error code, if the server sent one.
    pub fn oauth_code(&self) -> Option<&str> {
        match self {
            WireError::OAuth(body) => Some(&body.error),
            _ => None,
        }
    }
}
