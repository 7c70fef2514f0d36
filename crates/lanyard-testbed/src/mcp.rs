//! A fake MCP server speaking streamable HTTP (JSON responses) behind bearer-token auth: RFC 9728
//! protected resource metadata, `401`/`403` challenges as the MCP authorization spec describes,
//! and a handful of JSON-RPC methods (`initialize`, `ping`, `tools/list`, `tools/call` of `whoami`
//! and `echo`). It validates access tokens with its authorization server's public key in-process
//! and never calls the AS or the IdP.
//!
//! Sessions: `initialize` issues an `Mcp-Session-Id`; a request naming a session this server did
//! not issue (or that was ended by `DELETE`) gets 404. With [`McpConfig::sse_responses`] requests
//! are answered as SSE streams (a `tools/call` sends progress and log notifications first); with
//! [`McpConfig::get_stream`] a GET opens the stream on which [`McpHandle::push`] delivers
//! server-initiated messages. Every message received is recorded for tests
//! ([`McpHandle::received`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::clock::TestClock;
use crate::config::{McpConfig, PrmLocation};
use crate::faults::{Endpoint, Faults};
use crate::keys::{audience_contains, verify_signature, SigningKey};
use crate::oauth::{random_token, EXT_CLIENT_CREDENTIALS, EXT_ENTERPRISE_MANAGED};

const DEFAULT_PROTOCOL_VERSION: &str = "2025-11-25";

/// How many received messages [`McpHandle::received`] keeps.
const RECEIVED_KEPT: usize = 256;

#[derive(Default, Debug)]
pub(crate) struct McpCounters {
    requests: AtomicU64,
    unauthorized: AtomicU64,
    insufficient_scope: AtomicU64,
    tool_calls: AtomicU64,
    sessions_deleted: AtomicU64,
    get_streams: AtomicU64,
}

/// One JSON-RPC message an MCP server received, with the transport headers it came with.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedMessage {
    /// The message as sent.
    pub message: Value,
    /// Its `Mcp-Session-Id` header.
    pub session_id: Option<String>,
    /// Its `MCP-Protocol-Version` header.
    pub protocol_version: Option<String>,
}

/// Session bookkeeping, the GET-stream fan-out and the message log.
pub(crate) struct McpRuntime {
    /// The issuer the PRM names instead of the server's own (a server that moved, or lies).
    announced_issuer: Mutex<Option<String>>,
    sessions: Mutex<HashSet<String>>,
    push: broadcast::Sender<Value>,
    received: Mutex<VecDeque<ReceivedMessage>>,
}

impl Default for McpRuntime {
    fn default() -> Self {
        Self {
            announced_issuer: Mutex::default(),
            sessions: Mutex::default(),
            push: broadcast::channel(256).0,
            received: Mutex::default(),
        }
    }
}

/// A snapshot of an MCP server's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct McpStats {
    /// Authorized JSON-RPC requests served.
    pub requests: u64,
    /// Requests answered 401.
    pub unauthorized: u64,
    /// Requests answered 403 `insufficient_scope`.
    pub insufficient_scope: u64,
    /// `tools/call` requests served.
    pub tool_calls: u64,
    /// Sessions ended by `DELETE`.
    pub sessions_deleted: u64,
    /// GET streams opened.
    pub get_streams: u64,
}

pub(crate) struct McpState {
    pub config: McpConfig,
    pub resource: String,
    pub prm_url: String,
    pub as_issuer: String,
    pub as_key: Arc<SigningKey>,
    pub clock: TestClock,
    pub counters: McpCounters,
    pub runtime: McpRuntime,
    /// Checks the DPoP proofs that come with bound tokens.
    pub proofs: crate::dpop::ProofChecker,
}

/// What a validated access token says.
struct Caller {
    claims: Value,
}

impl McpState {
    fn prm(&self) -> Value {
        json!({
            "resource": self.resource,
            "authorization_servers": [self
                .runtime
                .announced_issuer
                .lock()
                .ok()
                .and_then(|a| a.clone())
                .unwrap_or_else(|| self.as_issuer.clone())],
            "scopes_supported": self.config.required_scopes,
            "bearer_methods_supported": ["header"],
            "resource_name": self.config.name,
        })
    }

    fn challenge(&self, error: Option<(&str, &str)>) -> Response {
        let mut parts = Vec::new();
        if let Some((code, description)) = error {
            parts.push(format!("error=\"{code}\""));
            parts.push(format!("error_description=\"{description}\""));
        }
        if self.config.advertise_resource_metadata {
            parts.push(format!("resource_metadata=\"{}\"", self.prm_url));
        }
        if !self.config.required_scopes.is_empty() {
            parts.push(format!(
                "scope=\"{}\"",
                self.config.required_scopes.join(" ")
            ));
        }
        let value = format!("Bearer {}", parts.join(", "));
        self.counters.unauthorized.fetch_add(1, Ordering::SeqCst);
        let mut resp = (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": error.map(|e| e.0).unwrap_or("unauthorized")})),
        )
            .into_response();
        if let Ok(v) = HeaderValue::from_str(&value) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        resp
    }

    /// A 401 for a DPoP-bound token presented wrongly: the `DPoP` challenge, with the nonce to
    /// use when that is what was missing.
    fn dpop_challenge(&self, error: &str, description: &str, nonce: Option<&str>) -> Response {
        self.counters.unauthorized.fetch_add(1, Ordering::SeqCst);
        let mut resp = (StatusCode::UNAUTHORIZED, Json(json!({"error": error}))).into_response();
        let value = format!(
            "DPoP error=\"{error}\", error_description=\"{description}\", algs=\"ES256 RS256\""
        );
        if let Ok(v) = HeaderValue::from_str(&value) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        if let Some(v) = nonce.and_then(|n| HeaderValue::from_str(n).ok()) {
            resp.headers_mut().insert("dpop-nonce", v);
        }
        resp
    }

    fn authorize(&self, headers: &HeaderMap, method: &str) -> Result<Caller, Box<Response>> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .map(|(scheme, token)| (scheme.to_ascii_lowercase(), token.trim()));
        let (scheme, token) = match &presented {
            Some((scheme, token)) if scheme == "bearer" || scheme == "dpop" => {
                (scheme.as_str(), *token)
            }
            _ => return Err(Box::new(self.challenge(None))),
        };
        let invalid = |why: &str| Box::new(self.challenge(Some(("invalid_token", why))));
        let claims = verify_signature(token, self.as_key.decoding_key(), &[Algorithm::RS256])
            .map_err(|_| invalid("signature invalid or not a JWT"))?;
        if claims.get("iss").and_then(Value::as_str) != Some(self.as_issuer.as_str()) {
            return Err(invalid("issued by another authorization server"));
        }
        if !audience_contains(claims.get("aud"), &self.resource) {
            return Err(invalid("audience is not this resource"));
        }
        if claims.get("exp").and_then(Value::as_u64).unwrap_or(0) <= self.clock.unix() {
            return Err(invalid("token expired"));
        }
        let bound_to = claims
            .get("cnf")
            .and_then(|c| c.get("jkt"))
            .and_then(Value::as_str);
        match (bound_to, scheme) {
            (None, "bearer") => {}
            (None, _) => return Err(invalid("not a DPoP-bound token")),
            (Some(_), "bearer") => {
                // A copied bound token, sent as a bearer token: worth nothing.
                return Err(Box::new(self.dpop_challenge(
                    "invalid_token",
                    "a DPoP-bound token must be sent with the DPoP scheme and a proof",
                    None,
                )));
            }
            (Some(jkt), _) => self.check_proof(headers, method, token, jkt)?,
        }
        let granted: Vec<&str> = claims
            .get("scope")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        if self
            .config
            .required_scopes
            .iter()
            .any(|s| !granted.contains(&s.as_str()))
        {
            self.counters
                .insufficient_scope
                .fetch_add(1, Ordering::SeqCst);
            let value = format!(
                "Bearer error=\"insufficient_scope\", scope=\"{}\", resource_metadata=\"{}\"",
                self.config.required_scopes.join(" "),
                self.prm_url
            );
            let mut resp = (
                StatusCode::FORBIDDEN,
                Json(json!({"error": "insufficient_scope"})),
            )
                .into_response();
            if let Ok(v) = HeaderValue::from_str(&value) {
                resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
            return Err(Box::new(resp));
        }
        Ok(Caller { claims })
    }

    /// The `DPoP` header of a request presenting a token bound to `jkt`.
    fn check_proof(
        &self,
        headers: &HeaderMap,
        method: &str,
        token: &str,
        jkt: &str,
    ) -> Result<(), Box<Response>> {
        let mut proofs = headers.get_all("dpop").iter();
        let (Some(proof), None) = (proofs.next(), proofs.next()) else {
            return Err(Box::new(self.dpop_challenge(
                "invalid_dpop_proof",
                "exactly one DPoP proof must come with a DPoP-bound token",
                None,
            )));
        };
        let expected = crate::dpop::Expected {
            method,
            url: &self.resource,
            access_token: Some(token),
        };
        match self
            .proofs
            .check(proof.to_str().unwrap_or_default(), &expected, &self.clock)
        {
            Ok(proved) if proved == jkt => Ok(()),
            Ok(_) => Err(Box::new(self.dpop_challenge(
                "invalid_dpop_proof",
                "the proof is signed by another key than the token is bound to",
                None,
            ))),
            Err(crate::dpop::ProofRefusal::UseNonce(nonce)) => Err(Box::new(self.dpop_challenge(
                "use_dpop_nonce",
                "this server wants its nonce",
                Some(&nonce),
            ))),
            Err(crate::dpop::ProofRefusal::Invalid(why)) => Err(Box::new(self.dpop_challenge(
                "invalid_dpop_proof",
                &why,
                None,
            ))),
        }
    }

    fn call(&self, caller: &Caller, method: &str, params: &Value) -> Result<Value, (i64, String)> {
        match method {
            "initialize" => Ok(json!({
                "protocolVersion": params.get("protocolVersion").cloned()
                    .unwrap_or_else(|| json!(DEFAULT_PROTOCOL_VERSION)),
                "capabilities": {
                    "tools": {"listChanged": false},
                    "extensions": {EXT_ENTERPRISE_MANAGED: {}, EXT_CLIENT_CREDENTIALS: {}},
                },
                "serverInfo": {"name": format!("lanyard-testbed-{}", self.config.name), "version": env!("CARGO_PKG_VERSION")},
            })),
            "server/discover" => Ok(json!({
                "supportedVersions": [DEFAULT_PROTOCOL_VERSION],
                "capabilities": {
                    "tools": {"listChanged": false},
                    "extensions": {EXT_ENTERPRISE_MANAGED: {}, EXT_CLIENT_CREDENTIALS: {}},
                },
                "serverInfo": {"name": format!("lanyard-testbed-{}", self.config.name), "version": env!("CARGO_PKG_VERSION")},
            })),
            "ping" => Ok(json!({})),
            "tools/list" => Ok(json!({"tools": [
                {
                    "name": "whoami",
                    "description": "Who the access token says you are.",
                    "inputSchema": {"type": "object", "properties": {}},
                },
                {
                    "name": "echo",
                    "description": "Echoes its text argument.",
                    "inputSchema": {
                        "type": "object",
                        "properties": {"text": {"type": "string"}},
                        "required": ["text"],
                    },
                },
            ]})),
            "tools/call" => {
                self.counters.tool_calls.fetch_add(1, Ordering::SeqCst);
                let text = match params.get("name").and_then(Value::as_str) {
                    Some("whoami") => {
                        let c = &caller.claims;
                        let s =
                            |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
                        format!(
                            "sub={} email={} client_id={} scopes={} exp={} server={}",
                            s("sub"),
                            s("email"),
                            s("client_id"),
                            s("scope"),
                            c.get("exp").and_then(Value::as_u64).unwrap_or(0),
                            self.config.name
                        )
                    }
                    Some("echo") => params
                        .pointer("/arguments/text")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    Some(other) => return Err((-32602, format!("unknown tool {other}"))),
                    None => return Err((-32602, "params.name is required".into())),
                };
                Ok(json!({"content": [{"type": "text", "text": text}], "isError": false}))
            }
            other => Err((-32601, format!("method {other} not found"))),
        }
    }
}

fn rpc_error(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

impl McpState {
    /// 404 for a session id this server did not issue or has ended.
    fn check_session(&self, headers: &HeaderMap) -> Result<Option<String>, Box<Response>> {
        let Some(session) = header_text(headers, "mcp-session-id") else {
            return Ok(None);
        };
        let known = self
            .runtime
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&session);
        if known {
            Ok(Some(session))
        } else {
            Err(Box::new(
                (
                    StatusCode::NOT_FOUND,
                    Json(rpc_error(Value::Null, -32001, "session not found")),
                )
                    .into_response(),
            ))
        }
    }

    fn record(&self, message: &Value, headers: &HeaderMap) {
        let mut log = self
            .runtime
            .received
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if log.len() == RECEIVED_KEPT {
            log.pop_front();
        }
        log.push_back(ReceivedMessage {
            message: message.clone(),
            session_id: header_text(headers, "mcp-session-id"),
            protocol_version: header_text(headers, "mcp-protocol-version"),
        });
    }

    /// The notifications a streamed `tools/call` sends before its result.
    fn call_notifications(&self, method: &str, params: &Value) -> Vec<Value> {
        if method != "tools/call" {
            return Vec::new();
        }
        let mut notes = Vec::new();
        if let Some(token) = params.pointer("/_meta/progressToken") {
            notes.push(json!({"jsonrpc": "2.0", "method": "notifications/progress",
                "params": {"progressToken": token, "progress": 1, "total": 2}}));
        }
        notes.push(json!({"jsonrpc": "2.0", "method": "notifications/message",
            "params": {"level": "info", "logger": self.config.name,
                "data": format!("calling {}", params.get("name").and_then(Value::as_str).unwrap_or("?"))}}));
        notes
    }
}

fn sse_event(message: &Value) -> String {
    format!("event: message\ndata: {message}\n\n")
}

async fn mcp_post(State(state): State<Arc<McpState>>, headers: HeaderMap, body: Bytes) -> Response {
    let caller = match state.authorize(&headers, "POST") {
        Ok(c) => c,
        Err(resp) => return *resp,
    };
    if let Err(resp) = state.check_session(&headers) {
        return *resp;
    }
    state.counters.requests.fetch_add(1, Ordering::SeqCst);
    let Ok(message) = serde_json::from_slice::<Value>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(rpc_error(Value::Null, -32700, "parse error")),
        )
            .into_response();
    };
    state.record(&message, &headers);
    let method = message
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let id = message.get("id").cloned();
    let Some(id) = id.filter(|_| !method.is_empty()) else {
        // A notification (e.g. notifications/initialized) or a response to a server request:
        // accepted, no body.
        return StatusCode::ACCEPTED.into_response();
    };
    let params = message.get("params").cloned().unwrap_or(Value::Null);
    let reply = match state.call(&caller, method, &params) {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err((code, msg)) => rpc_error(id, code, &msg),
    };
    let mut resp = if state.config.sse_responses {
        let mut events: Vec<Result<String, Infallible>> = state
            .call_notifications(method, &params)
            .iter()
            .map(|n| Ok(sse_event(n)))
            .collect();
        events.push(Ok(sse_event(&reply)));
        let mut resp = Body::from_stream(futures::stream::iter(events)).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        resp
    } else {
        Json(reply).into_response()
    };
    if method == "initialize" {
        let session = random_token(16);
        if let Ok(v) = HeaderValue::from_str(&session) {
            resp.headers_mut().insert("mcp-session-id", v);
            state
                .runtime
                .sessions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(session);
        }
    }
    resp
}

async fn mcp_get(State(state): State<Arc<McpState>>, headers: HeaderMap) -> Response {
    if !state.config.get_stream {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    if let Err(resp) = state.authorize(&headers, "GET") {
        return *resp;
    }
    match state.check_session(&headers) {
        Err(resp) => return *resp,
        Ok(None) => return (StatusCode::BAD_REQUEST, "Mcp-Session-Id required").into_response(),
        Ok(Some(_)) => {}
    }
    state.counters.get_streams.fetch_add(1, Ordering::SeqCst);
    let receiver = state.runtime.push.subscribe();
    let stream = futures::stream::unfold((receiver, 0u64), |(mut receiver, n)| async move {
        loop {
            match receiver.recv().await {
                Ok(message) => {
                    let event = format!("id: {n}\n{}", sse_event(&message));
                    return Some((Ok::<_, Infallible>(event), (receiver, n + 1)));
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    // A comment first, so the client sees the stream open before any message.
    let opening = futures::stream::once(async { Ok::<_, Infallible>(": open\n\n".to_owned()) });
    let mut resp = Body::from_stream(futures::StreamExt::chain(opening, stream)).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    resp
}

async fn mcp_delete(State(state): State<Arc<McpState>>, headers: HeaderMap) -> Response {
    if let Err(resp) = state.authorize(&headers, "DELETE") {
        return *resp;
    }
    match state.check_session(&headers) {
        Err(resp) => *resp,
        Ok(None) => (StatusCode::BAD_REQUEST, "Mcp-Session-Id required").into_response(),
        Ok(Some(session)) => {
            state
                .runtime
                .sessions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&session);
            state
                .counters
                .sessions_deleted
                .fetch_add(1, Ordering::SeqCst);
            StatusCode::OK.into_response()
        }
    }
}

async fn prm(State(state): State<Arc<McpState>>) -> Json<Value> {
    Json(state.prm())
}

/// The MCP server's routes and the endpoint each path belongs to.
pub(crate) fn router(state: Arc<McpState>) -> (Router, HashMap<String, Endpoint>) {
    let path = state.config.path.clone();
    let mut routes = HashMap::new();
    let mut router = Router::new().route(&path, post(mcp_post).get(mcp_get).delete(mcp_delete));
    routes.insert(path.clone(), Endpoint::Mcp);
    for prm_path in prm_paths(&state.config) {
        router = router.route(&prm_path, get(prm));
        routes.insert(prm_path, Endpoint::ProtectedResourceMetadata);
    }
    (router.with_state(state), routes)
}

fn prm_paths(config: &McpConfig) -> Vec<String> {
    let mut paths = Vec::new();
    if matches!(
        config.prm_location,
        PrmLocation::PathInserted | PrmLocation::Both
    ) {
        paths.push(format!(
            "/.well-known/oauth-protected-resource{}",
            config.path
        ));
    }
    if matches!(config.prm_location, PrmLocation::Root | PrmLocation::Both) {
        paths.push("/.well-known/oauth-protected-resource".to_string());
    }
    paths.dedup();
    paths
}

/// The URL the 401 challenge points at: the path-inserted PRM when served, else the root one.
pub(crate) fn prm_url(origin: &str, config: &McpConfig) -> String {
    let paths = prm_paths(config);
    format!(
        "{origin}{}",
        paths
            .first()
            .map(String::as_str)
            .unwrap_or("/.well-known/oauth-protected-resource")
    )
}

/// Runtime control of one MCP server. Cheap to clone.
#[derive(Clone)]
pub struct McpHandle {
    pub(crate) state: Arc<McpState>,
    pub(crate) faults: Faults,
}

impl std::fmt::Debug for McpHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpHandle")
            .field("name", &self.state.config.name)
            .field("url", &self.state.resource)
            .finish()
    }
}

impl McpHandle {
    /// The configured name.
    pub fn name(&self) -> &str {
        &self.state.config.name
    }

    /// The MCP endpoint URL.
    pub fn url(&self) -> &str {
        &self.state.resource
    }

    /// The RFC 9728 resource identifier (equal to the URL).
    pub fn resource(&self) -> &str {
        &self.state.resource
    }

    /// The protected resource metadata URL advertised in challenges.
    pub fn resource_metadata_url(&self) -> &str {
        &self.state.prm_url
    }

    /// The issuer of the authorization server protecting it.
    /// From now on the PRM names `issuer` as the authorization server (the server still accepts
    /// only its own AS's tokens): a server that moved, or one that wants the user's grant sent
    /// elsewhere. `None` names its own again.
    pub fn announce_authorization_server(&self, issuer: Option<&str>) {
        if let Ok(mut announced) = self.state.runtime.announced_issuer.lock() {
            *announced = issuer.map(str::to_owned);
        }
    }

    pub fn auth_server_issuer(&self) -> &str {
        &self.state.as_issuer
    }

    /// Scopes every request needs.
    pub fn required_scopes(&self) -> &[String] {
        &self.state.config.required_scopes
    }

    /// The fault switchboard of this server.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// A snapshot of the counters.
    /// Rotates the nonce proofs must carry (with `dpop_require_nonce`); the new nonce.
    pub fn rotate_dpop_nonce(&self) -> Option<String> {
        self.state.proofs.rotate_nonce()
    }

    /// DPoP proofs refused because their `jti` was used before.
    pub fn dpop_replays(&self) -> u64 {
        self.state.proofs.replays()
    }

    pub fn stats(&self) -> McpStats {
        let c = &self.state.counters;
        let n = |a: &AtomicU64| a.load(Ordering::SeqCst);
        McpStats {
            requests: n(&c.requests),
            unauthorized: n(&c.unauthorized),
            insufficient_scope: n(&c.insufficient_scope),
            tool_calls: n(&c.tool_calls),
            sessions_deleted: n(&c.sessions_deleted),
            get_streams: n(&c.get_streams),
        }
    }

    /// Sends `message` on every open GET stream; returns how many streams got it.
    pub fn push(&self, message: Value) -> usize {
        self.state.runtime.push.send(message).unwrap_or(0)
    }

    /// How many GET streams are open now.
    pub fn open_streams(&self) -> usize {
        self.state.runtime.push.receiver_count()
    }

    /// The last messages received (oldest first, at most 256).
    pub fn received(&self) -> Vec<ReceivedMessage> {
        self.state
            .runtime
            .received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

/// A `tools/call` of the testbed's `whoami` tool at `url`, sent by `client` as an MCP client
/// would: `authorization` is the whole header (`Bearer …` or `DPoP …`), `proof` the `DPoP`
/// header when there is one. What the tests send to check a token at an MCP server.
pub fn whoami_call(
    client: &reqwest::Client,
    url: &str,
    authorization: &str,
    proof: Option<&str>,
) -> reqwest::RequestBuilder {
    let request = client
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .header("authorization", authorization)
        .json(
            &serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "whoami", "arguments": {}}}),
        );
    match proof {
        Some(proof) => request.header("DPoP", proof),
        None => request,
    }
}
