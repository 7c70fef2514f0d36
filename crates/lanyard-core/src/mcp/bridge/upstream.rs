//! The bridge's HTTP side: one streamable-HTTP MCP endpoint, reached with a bearer token fetched
//! from the [`TokenSource`] for every request.
//!
//! It owns the session state the transport keeps in headers (`Mcp-Session-Id`, the negotiated
//! `MCP-Protocol-Version`) and the extra scopes a 403 taught it, and it turns each HTTP exchange into
//! lines for the client: a JSON body or every `message` event of an SSE body, forwarded as it
//! arrives. 401 → force a new token, retry once; 403 `insufficient_scope` → a token with the union
//! of scopes, retry once. It must not parse or alter what it forwards beyond framing, and never puts
//! a token anywhere but the `Authorization` header.

use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use serde_json::Value;
use tokio::sync::mpsc;
use url::Url;

use super::headers::{request_headers, ToolHeaders};
use super::message::{negotiated_version, output_line, response_ids};
use super::{ProofTarget, TokenRequest, TokenSource, TokenUnavailable};
use crate::mcp::sse::CappedEventStream;
use crate::mcp::{response_media_type, SseParser};
use crate::oauth::discovery::{parse_bearer_challenge, parse_challenge, BearerChallenge};
use crate::oauth::dpop::{valid_nonce, DPOP_HEADER, NONCE_HEADER, USE_DPOP_NONCE};
use crate::oauth::error::{excerpt, WireError};
use crate::oauth::http::{read_body_capped, redacted_url, transport_error, BodyOverflow};
use crate::oauth::token::split_scopes;

const HEADER_SESSION_ID: &str = "mcp-session-id";
const HEADER_PROTOCOL_VERSION: &str = "mcp-protocol-version";
const HEADER_LAST_EVENT_ID: &str = "last-event-id";

/// Why a message could not be delivered or answered.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("no token for this server: {0}")]
    Token(#[from] TokenUnavailable),
    #[error("{url} refused the access token even after a fresh one (HTTP {status}){}", describe(.challenge.as_ref()))]
    Refused {
        url: String,
        status: u16,
        challenge: Option<BearerChallenge>,
    },
    #[error("{url} no longer knows this MCP session (HTTP 404); reconnect to start a new one")]
    SessionExpired { url: String },
    #[error("{url} answered HTTP {status}: {excerpt}")]
    Status {
        url: String,
        status: u16,
        excerpt: String,
    },
    #[error("{url} sent a response larger than {limit} bytes")]
    TooLarge { url: String, limit: usize },
    #[error("{url} ended the response without answering the request")]
    NoAnswer { url: String },
    #[error("the access token contains characters that cannot be sent in a header")]
    UnsendableToken,
    #[error(transparent)]
    Wire(#[from] WireError),
}

/// A body over the cap, named as the bridge names it; other wire errors as they are.
fn too_large_named(e: WireError) -> ForwardError {
    match e {
        WireError::BodyTooLarge { url, limit } => ForwardError::TooLarge { url, limit },
        other => other.into(),
    }
}

impl ForwardError {
    /// A short machine-readable kind for the JSON-RPC error `data`.
    pub fn kind(&self) -> &'static str {
        match self {
            ForwardError::Token(_) => "token_unavailable",
            ForwardError::Refused { .. } => "token_refused",
            ForwardError::SessionExpired { .. } => "session_expired",
            ForwardError::Status { .. } => "upstream_status",
            ForwardError::TooLarge { .. } => "response_too_large",
            ForwardError::NoAnswer { .. } => "no_answer",
            ForwardError::UnsendableToken => "unsendable_token",
            ForwardError::Wire(_) => "transport",
        }
    }
}

fn describe(challenge: Option<&BearerChallenge>) -> String {
    let Some(c) = challenge else {
        return String::new();
    };
    let mut text = String::new();
    if let Some(error) = &c.error {
        text.push_str(&format!(": {error}"));
        if let Some(d) = &c.error_description {
            text.push_str(&format!(" ({d})"));
        }
    }
    if let Some(scope) = &c.scope {
        text.push_str(&format!("; required scope: {scope}"));
    }
    text
}

#[derive(Debug, Default, Clone)]
struct SessionState {
    session_id: Option<String>,
    protocol_version: Option<String>,
    /// Scopes a 403 `insufficient_scope` asked for, requested with every later token.
    extra_scopes: Vec<String>,
    /// The listed tools' `x-mcp-header` annotations (2026-07-28).
    tools: ToolHeaders,
    /// The server's latest `DPoP-Nonce` (RFC 9449 §9), put into every later proof.
    dpop_nonce: Option<String>,
}

/// How often one POST's answer is sought again on a GET after its stream closed early.
const MAX_RESUMES: u32 = 3;

/// The longest `retry` a server may make the bridge wait before resuming (a hostile or broken
/// value would stall the client's request).
const MAX_RETRY_WAIT_MS: u64 = 30_000;

/// Lines to the client. A send fails only when the client side is gone.
pub(super) type Outbox = mpsc::Sender<String>;

/// The request ids of one POST still waiting for their response.
#[derive(Debug, Default)]
pub(super) struct Pending {
    pub ids: Vec<Value>,
    /// When the POST is `initialize`: its id, to read the negotiated version off the result.
    pub initialize_id: Option<Value>,
    /// When the POST is `tools/list`: its id, to learn the tools' `x-mcp-header` annotations.
    pub tools_list_id: Option<Value>,
}

/// How a GET stream ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum StreamEnd {
    /// The server offers no GET stream (405) or no longer knows the session (404).
    NotOffered,
    /// The stream closed or broke; `delivered` tells whether it carried anything first.
    Closed { delivered: bool },
}

/// One MCP endpoint and the session with it.
pub(super) struct Upstream<S> {
    http: reqwest::Client,
    url: Url,
    shown: String,
    tokens: S,
    state: Mutex<SessionState>,
    max_body_bytes: usize,
}

impl<S: TokenSource> Upstream<S> {
    pub fn new(http: reqwest::Client, url: Url, tokens: S, max_body_bytes: usize) -> Self {
        Self {
            shown: redacted_url(&url),
            http,
            url,
            tokens,
            state: Mutex::new(SessionState::default()),
            max_body_bytes,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SessionState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn session_id(&self) -> Option<String> {
        self.state().session_id.clone()
    }

    /// The protocol version the server answered `initialize` with, once known.
    pub fn protocol_version(&self) -> Option<String> {
        self.state().protocol_version.clone()
    }

    /// The 2026-07-28 headers for `message`, or why it must not be sent ([`request_headers`]).
    pub fn standard_headers(&self, message: &Value) -> Result<Vec<(String, String)>, String> {
        request_headers(message, &self.state().tools)
    }

    /// The `Authorization` header for `request`, and the `DPoP` proof header when the token is
    /// bound (signed by the token source for exactly this method and URL).
    async fn token(
        &self,
        force_refresh: bool,
        request: &reqwest::Request,
    ) -> Result<(HeaderValue, Option<HeaderValue>), ForwardError> {
        let (extra_scopes, nonce) = {
            let state = self.state();
            (state.extra_scopes.clone(), state.dpop_nonce.clone())
        };
        let token = self
            .tokens
            .token(&TokenRequest {
                force_refresh,
                extra_scopes,
                proof_for: Some(ProofTarget {
                    method: request.method().as_str().to_owned(),
                    url: request.url().clone(),
                    nonce,
                }),
            })
            .await?;
        let scheme = if token.dpop_proof.is_some() {
            DPOP_HEADER
        } else {
            "Bearer"
        };
        let mut authorization =
            HeaderValue::from_str(&format!("{scheme} {}", token.access_token.expose()))
                .map_err(|_| ForwardError::UnsendableToken)?;
        authorization.set_sensitive(true);
        let proof = match token.dpop_proof {
            Some(proof) => {
                let mut value = HeaderValue::from_str(proof.expose())
                    .map_err(|_| ForwardError::UnsendableToken)?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        Ok((authorization, proof))
    }

    /// Keeps the nonce a response hands out; tells whether it is a `use_dpop_nonce` refusal
    /// that came with one (RFC 9449 §9: retry once with it).
    fn learn_nonce(&self, response: &reqwest::Response) -> bool {
        let nonce = response
            .headers()
            .get(NONCE_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|n| valid_nonce(n));
        let Some(nonce) = nonce else {
            return false;
        };
        self.state().dpop_nonce = Some(nonce.to_owned());
        response.status().as_u16() == 401
            && response
                .headers()
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .filter_map(|v| parse_challenge(v, DPOP_HEADER))
                .any(|c| c.error.as_deref() == Some(USE_DPOP_NONCE))
    }

    /// Adds the session headers. `version_override` is a 2026-07-28 request's own version.
    fn with_session(
        &self,
        mut builder: reqwest::RequestBuilder,
        version_override: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let state = self.state().clone();
        if let Some(session) = &state.session_id {
            builder = builder.header(HEADER_SESSION_ID, session);
        }
        if let Some(version) = version_override.or(state.protocol_version.as_deref()) {
            builder = builder.header(HEADER_PROTOCOL_VERSION, version);
        }
        builder
    }

    /// Sends `request` with a token; on 401 once more with a forced-fresh token, on 403
    /// `insufficient_scope` once more with a token for the union of scopes. Returns the response
    /// that is not an authorization failure (of any status).
    async fn send_authorized(
        &self,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ForwardError> {
        let mut force_refresh = false;
        let mut retried_unauthorized = false;
        let mut retried_scope = false;
        let mut retried_nonce = false;
        loop {
            let mut request = build()
                .build()
                .map_err(|e| transport_error(&self.shown, &e))?;
            let (authorization, proof) = self.token(force_refresh, &request).await?;
            request.headers_mut().insert(AUTHORIZATION, authorization);
            if let Some(proof) = proof {
                request.headers_mut().insert(DPOP_HEADER, proof);
            }
            let response = self
                .http
                .execute(request)
                .await
                .map_err(|e| transport_error(&self.shown, &e))?;
            let wants_nonce = self.learn_nonce(&response);
            let status = response.status().as_u16();
            if status != 401 && status != 403 {
                return Ok(response);
            }
            if wants_nonce && !retried_nonce {
                tracing::debug!(url = %self.shown, "the server wants a DPoP nonce: sending the request again with it");
                retried_nonce = true;
                continue;
            }
            let challenge = response
                .headers()
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(|v| {
                    parse_bearer_challenge(v).or_else(|| parse_challenge(v, DPOP_HEADER))
                });
            let insufficient_scope = status == 403
                && challenge
                    .as_ref()
                    .is_some_and(|c| c.error.as_deref() == Some("insufficient_scope"));
            if status == 401 && !retried_unauthorized {
                tracing::info!(url = %self.shown, "the server refused the token (401): fetching a fresh one");
                retried_unauthorized = true;
                force_refresh = true;
                continue;
            }
            if insufficient_scope && !retried_scope {
                let wanted = challenge
                    .as_ref()
                    .and_then(|c| c.scope.as_deref())
                    .map(split_scopes)
                    .unwrap_or_default();
                {
                    let mut state = self.state();
                    for scope in wanted {
                        if !state.extra_scopes.contains(&scope) {
                            state.extra_scopes.push(scope);
                        }
                    }
                    tracing::info!(url = %self.shown, scopes = ?state.extra_scopes, "the server wants more scopes (403): fetching a token for them");
                }
                retried_scope = true;
                force_refresh = true;
                continue;
            }
            return Err(ForwardError::Refused {
                url: self.shown.clone(),
                status,
                challenge,
            });
        }
    }

    /// POSTs one client message (already serialised) and forwards every message of the reply.
    /// On success every id in `pending` has been answered; on error the ids still in it have not.
    pub async fn post(
        &self,
        body: Vec<u8>,
        version_override: Option<&str>,
        extra_headers: &[(String, String)],
        pending: &mut Pending,
        out: &Outbox,
    ) -> Result<(), ForwardError> {
        let had_session = self.session_id().is_some();
        let response = self
            .send_authorized(|| {
                let mut builder = self
                    .with_session(self.http.post(self.url.clone()), version_override)
                    .header(ACCEPT, "application/json, text/event-stream")
                    .header(CONTENT_TYPE, "application/json");
                for (name, value) in extra_headers {
                    builder = builder.header(name.as_str(), value.as_str());
                }
                builder.body(body.clone())
            })
            .await?;
        let status = response.status().as_u16();
        if status == 404 && had_session {
            return Err(ForwardError::SessionExpired {
                url: self.shown.clone(),
            });
        }
        if pending.initialize_id.is_some() && (200..300).contains(&status) {
            if let Some(session) = response
                .headers()
                .get(HEADER_SESSION_ID)
                .and_then(|v| v.to_str().ok())
            {
                self.state().session_id = Some(session.to_owned());
            }
        }
        self.forward_reply(response, status, pending, out).await
    }

    async fn forward_reply(
        &self,
        mut response: reqwest::Response,
        status: u16,
        pending: &mut Pending,
        out: &Outbox,
    ) -> Result<(), ForwardError> {
        let content_type = response_media_type(response.headers());
        let success = (200..300).contains(&status);
        if success && content_type == "text/event-stream" {
            let mut stream =
                CappedEventStream::new(&mut response, self.max_body_bytes, &self.shown);
            let ended = loop {
                let events = match stream.next_events().await {
                    Ok(Some(events)) => events,
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                };
                for event in events {
                    if event.event == "message" {
                        self.deliver(&event.data, pending, out).await;
                    }
                }
                // The stream may stay open for later messages, but once every request of this
                // POST is answered nothing more is owed to the client on it.
                if pending.ids.is_empty() {
                    break Ok(());
                }
            };
            let resume_from = stream.parser().last_event_id().map(str::to_owned);
            let retry_ms = stream.parser().retry_ms();
            match (ended, resume_from) {
                // Closed (or broken) before the answer, after naming an event id: the server
                // means to go on at a GET with `Last-Event-ID` (SEP-1699).
                (_, Some(from)) if !pending.ids.is_empty() && self.session_id().is_some() => {
                    return self.resume(from, retry_ms, pending, out).await;
                }
                (Err(e), _) => return Err(too_large_named(e)),
                _ => {}
            }
        } else {
            let body = self.read_capped(&mut response).await?;
            let is_json = serde_json::from_slice::<Value>(&body).is_ok();
            if success || is_json {
                // A JSON-RPC body is the server's answer even with an error status (e.g. 400 with
                // a JSON-RPC error object): pass it on.
                if !body.iter().all(u8::is_ascii_whitespace) {
                    self.deliver(&String::from_utf8_lossy(&body), pending, out)
                        .await;
                }
            }
            if !success && !pending.ids.is_empty() {
                return Err(ForwardError::Status {
                    url: self.shown.clone(),
                    status,
                    excerpt: excerpt(&body),
                });
            }
        }
        if pending.ids.is_empty() {
            Ok(())
        } else {
            Err(ForwardError::NoAnswer {
                url: self.shown.clone(),
            })
        }
    }

    /// Resumes the answer to a POST whose event stream closed before it: after the stream's
    /// `retry` (1 s when it gave none), a GET with `Last-Event-ID`, read until every request of
    /// the POST is answered; at most [`MAX_RESUMES`] times.
    async fn resume(
        &self,
        mut from: String,
        mut retry_ms: Option<u64>,
        pending: &mut Pending,
        out: &Outbox,
    ) -> Result<(), ForwardError> {
        for attempt in 1..=MAX_RESUMES {
            let wait = Duration::from_millis(retry_ms.unwrap_or(1000).min(MAX_RETRY_WAIT_MS));
            tracing::debug!(url = %self.shown, attempt, "the reply stream closed before the answer: resuming after {} ms", wait.as_millis());
            tokio::time::sleep(wait).await;
            let resume = from.clone();
            let mut response = self
                .send_authorized(|| {
                    self.with_session(self.http.get(self.url.clone()), None)
                        .header(ACCEPT, "text/event-stream")
                        .header(HEADER_LAST_EVENT_ID, &resume)
                })
                .await?;
            let status = response.status().as_u16();
            if !(200..300).contains(&status)
                || response_media_type(response.headers()) != "text/event-stream"
            {
                break;
            }
            let mut stream =
                CappedEventStream::new(&mut response, self.max_body_bytes, &self.shown);
            while let Ok(Some(events)) = stream.next_events().await {
                for event in events {
                    if event.event == "message" {
                        self.deliver(&event.data, pending, out).await;
                    }
                }
                if pending.ids.is_empty() {
                    return Ok(());
                }
            }
            if let Some(id) = stream.parser().last_event_id() {
                id.clone_into(&mut from);
            }
            retry_ms = stream.parser().retry_ms().or(retry_ms);
        }
        Err(ForwardError::NoAnswer {
            url: self.shown.clone(),
        })
    }

    /// Forwards one message text to the client, ticking off the ids it answers. An event with
    /// no data (a stream's priming event, which only sets an id and `retry`) carries nothing.
    async fn deliver(&self, text: &str, pending: &mut Pending, out: &Outbox) {
        if text.trim().is_empty() {
            return;
        }
        let message: Value = match serde_json::from_str(text) {
            Ok(message) => message,
            Err(e) => {
                // Tool output may be in there: report the size only.
                tracing::warn!(url = %self.shown, "dropped {} bytes from the server that are not JSON ({e})", text.len());
                return;
            }
        };
        if let Some(init) = &pending.initialize_id {
            if let Some(version) = negotiated_version(&message, init) {
                self.state().protocol_version = Some(version.to_owned());
            }
        }
        if let Some(list) = &pending.tools_list_id {
            if message.get("id") == Some(list) {
                if let Some(result) = message.get("result") {
                    self.state().tools.learn(result);
                }
            }
        }
        for id in response_ids(&message) {
            pending.ids.retain(|p| p != id);
        }
        // A closed outbox means the client is gone; nothing left to do with the message.
        let _ = out.send(output_line(text, &message)).await;
    }

    async fn read_capped(&self, response: &mut reqwest::Response) -> Result<Vec<u8>, ForwardError> {
        read_body_capped(
            response,
            self.max_body_bytes,
            &self.shown,
            BodyOverflow::Reject,
        )
        .await
        .map_err(too_large_named)
    }

    /// Opens the GET stream for server-initiated messages once and forwards what it carries until
    /// it ends. `last_event_id` resumes after a break (and is updated as events arrive).
    pub async fn listen_once(
        &self,
        last_event_id: &mut Option<String>,
        out: &Outbox,
    ) -> Result<StreamEnd, ForwardError> {
        let resume = last_event_id.clone();
        let mut response = self
            .send_authorized(|| {
                let mut builder = self
                    .with_session(self.http.get(self.url.clone()), None)
                    .header(ACCEPT, "text/event-stream")
                    // The stream is long-lived by design: no overall deadline.
                    .timeout(Duration::from_secs(365 * 24 * 3600));
                if let Some(id) = &resume {
                    builder = builder.header(HEADER_LAST_EVENT_ID, id);
                }
                builder
            })
            .await?;
        let status = response.status().as_u16();
        if status == 405 || status == 404 {
            return Ok(StreamEnd::NotOffered);
        }
        let content_type = response_media_type(response.headers());
        if !(200..300).contains(&status) || content_type != "text/event-stream" {
            let body = self.read_capped(&mut response).await.unwrap_or_default();
            return Err(ForwardError::Status {
                url: self.shown.clone(),
                status,
                excerpt: excerpt(&body),
            });
        }
        let mut parser = SseParser::default();
        let mut delivered = false;
        let mut nobody_waits = Pending::default();
        loop {
            let chunk = match response.chunk().await {
                Ok(chunk) => chunk,
                Err(e) => {
                    tracing::debug!(url = %self.shown, "the GET stream broke: {}", transport_error(&self.shown, &e));
                    return Ok(StreamEnd::Closed { delivered });
                }
            };
            // The stream may last all day, so its length is not capped; but what is buffered for
            // events not yet complete may not outgrow a response body.
            if let Some(bytes) = &chunk {
                if parser.pending_bytes() + bytes.len() > self.max_body_bytes {
                    return Err(ForwardError::TooLarge {
                        url: self.shown.clone(),
                        limit: self.max_body_bytes,
                    });
                }
            }
            let events = match &chunk {
                Some(bytes) => parser.push(bytes),
                None => parser.finish(),
            };
            for event in events {
                if event.id.is_some() {
                    last_event_id.clone_from(&event.id);
                }
                if event.event == "message" {
                    self.deliver(&event.data, &mut nobody_waits, out).await;
                    delivered = true;
                }
            }
            if chunk.is_none() {
                return Ok(StreamEnd::Closed { delivered });
            }
        }
    }

    /// Ends the session at the server (`DELETE` with the session id), best effort.
    pub async fn close_session(&self) {
        let Some(session) = self.session_id() else {
            return;
        };
        let result = self
            .send_authorized(|| {
                self.http
                    .delete(self.url.clone())
                    .header(HEADER_SESSION_ID, &session)
                    .timeout(Duration::from_secs(5))
            })
            .await;
        match result {
            Ok(response) => {
                tracing::debug!(url = %self.shown, status = response.status().as_u16(), "session closed")
            }
            Err(e) => tracing::debug!(url = %self.shown, "closing the session failed: {e}"),
        }
    }
}
