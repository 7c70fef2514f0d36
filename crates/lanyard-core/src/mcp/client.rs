//! A minimal MCP client over the streamable HTTP transport (protocol 2025-11-25), enough to prove
//! that a token works: `initialize`, `notifications/initialized`, `tools/list` and `tools/call`.
//!
//! Every request is a JSON-RPC POST with `Accept: application/json, text/event-stream`, the bearer
//! token passed in per call (so a caller can swap in a refreshed token between calls), the
//! `Mcp-Session-Id` the server handed out (if any) and, after `initialize`, the negotiated
//! `MCP-Protocol-Version`. A response may be plain JSON or a server-sent event stream holding
//! several messages; the one whose `id` matches is picked and the stream is dropped as soon as it
//! arrives. Bodies are capped while reading. A 401/403 comes back as [`McpError::Unauthorized`]
//! with the parsed `WWW-Authenticate` Bearer challenge, so the caller can re-mint the token or ask
//! for more scopes. Errors never carry the token or a success body. Server-initiated requests on
//! the stream, resumption (`Last-Event-ID`) and the standalone GET stream are out of scope.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use serde::Deserialize;
use serde_json::{json, Value};
use url::Url;

use crate::oauth::discovery::{parse_bearer_challenge, BearerChallenge};
use crate::oauth::error::{capped_message, excerpt, WireError};
use crate::oauth::http::{
    read_body_capped, redacted_url, transport_error, BodyOverflow, HttpExecutor,
};
use crate::secret::Secret;

use super::sse::CappedEventStream;

/// The protocol version this client speaks (with the `initialize` handshake).
pub const PROTOCOL_VERSION: &str = "2025-11-25";

/// Default cap on one response body, SSE stream included.
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Most `tools/list` pages followed before giving up on a server that never stops paginating.
const MAX_TOOL_PAGES: usize = 64;

const HEADER_SESSION_ID: &str = "mcp-session-id";
const HEADER_PROTOCOL_VERSION: &str = "mcp-protocol-version";

/// An authorization extension a client declares in `initialize` → `capabilities.extensions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthExtension {
    /// Enterprise-Managed Authorization (ID-JAG).
    EnterpriseManagedAuthorization,
    /// OAuth Client Credentials (machine to machine).
    ClientCredentials,
    /// Workload identity federation (SEP-1933): a platform JWT as the jwt-bearer assertion.
    WorkloadIdentity,
}

impl AuthExtension {
    /// The extension identifier.
    pub fn id(self) -> &'static str {
        match self {
            AuthExtension::EnterpriseManagedAuthorization => {
                "io.modelcontextprotocol/enterprise-managed-authorization"
            }
            AuthExtension::ClientCredentials => "io.modelcontextprotocol/oauth-client-credentials",
            AuthExtension::WorkloadIdentity => "io.modelcontextprotocol/auth/wif",
        }
    }
}

/// What can go wrong talking to an MCP server.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    /// 401 (token missing, expired or revoked: get a new one) or 403 (often `insufficient_scope`:
    /// get one with the challenge's scopes).
    #[error("{url} refused the access token (HTTP {status}){}", describe_challenge(.challenge.as_ref()))]
    Unauthorized {
        url: String,
        status: u16,
        challenge: Option<BearerChallenge>,
    },
    /// 404 on a request that carried a session id: the server dropped the session.
    #[error("{url} no longer knows this MCP session; initialize again")]
    SessionExpired { url: String },
    /// The server answered with a JSON-RPC error object.
    #[error("the MCP server answered {method} with error {code}: {message}")]
    Rpc {
        method: String,
        code: i64,
        message: String,
        data: Option<Value>,
    },
    /// The body ended without a response to our request.
    #[error("{url} sent no response to {method} (request id {id})")]
    NoResponse {
        url: String,
        method: String,
        id: u64,
    },
    /// The token cannot be sent at all (it is not a valid header value).
    #[error("the access token contains characters that cannot be sent in a header")]
    UnsendableToken,
    #[error(transparent)]
    Wire(#[from] WireError),
}

fn describe_challenge(challenge: Option<&BearerChallenge>) -> String {
    let Some(c) = challenge else {
        return String::new();
    };
    let mut text = String::new();
    if let Some(error) = &c.error {
        text.push_str(": ");
        text.push_str(error);
        if let Some(d) = &c.error_description {
            text.push_str(&format!(" ({d})"));
        }
    }
    if let Some(scope) = &c.scope {
        text.push_str(&format!("; required scope: {scope}"));
    }
    text
}

impl McpError {
    /// The Bearer challenge of a 401/403, if the server sent one.
    pub fn challenge(&self) -> Option<&BearerChallenge> {
        match self {
            McpError::Unauthorized { challenge, .. } => challenge.as_ref(),
            _ => None,
        }
    }

    /// A 401: the token is missing, expired or revoked; a fresh one may work.
    pub fn needs_new_token(&self) -> bool {
        matches!(self, McpError::Unauthorized { status: 401, .. })
    }

    /// The scopes a 403 `insufficient_scope` challenge asks for (None when it is not one).
    pub fn insufficient_scope(&self) -> Option<Vec<String>> {
        let McpError::Unauthorized {
            status: 403,
            challenge: Some(c),
            ..
        } = self
        else {
            return None;
        };
        if c.error.as_deref() != Some("insufficient_scope") {
            return None;
        }
        Some(
            c.scope
                .as_deref()
                .map(crate::oauth::token::split_scopes)
                .unwrap_or_default(),
        )
    }
}

/// The `initialize` result (the fields Lanyard reads).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitializeResult {
    pub protocol_version: String,
    #[serde(default)]
    pub capabilities: Value,
    #[serde(default)]
    pub server_info: Option<Value>,
    #[serde(default)]
    pub instructions: Option<String>,
}

/// One tool of `tools/list`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tool {
    pub name: String,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub input_schema: Value,
}

/// The `tools/call` result.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallToolResult {
    #[serde(default)]
    pub content: Vec<Value>,
    #[serde(default)]
    pub structured_content: Option<Value>,
    #[serde(default)]
    pub is_error: bool,
}

/// A client for one MCP server URL. Cheap to share: `&self` everywhere.
#[derive(Debug)]
pub struct McpClient {
    http: reqwest::Client,
    url: Url,
    max_body_bytes: usize,
    next_id: AtomicU64,
    state: Mutex<SessionState>,
    client_name: String,
    client_version: String,
}

#[derive(Debug, Default, Clone)]
struct SessionState {
    session_id: Option<String>,
    protocol_version: Option<String>,
}

/// What came back for one POST.
enum Reply {
    /// The `result` of the matching response.
    Result(Value),
    /// 2xx without a JSON-RPC response (a notification's 202).
    Accepted,
}

impl McpClient {
    /// A client for `server_url` over the executor's shared connection pool.
    pub fn new(http: &HttpExecutor, server_url: Url) -> Self {
        Self {
            http: http.client().clone(),
            url: server_url,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            next_id: AtomicU64::new(1),
            state: Mutex::new(SessionState::default()),
            client_name: "lanyard".to_owned(),
            client_version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }

    /// Caps each response body at `limit` bytes.
    pub fn with_max_body_bytes(mut self, limit: usize) -> Self {
        self.max_body_bytes = limit;
        self
    }

    /// The `clientInfo` sent in `initialize`.
    pub fn with_client_info(mut self, name: impl Into<String>, version: impl Into<String>) -> Self {
        self.client_name = name.into();
        self.client_version = version.into();
        self
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The session id the server issued, if any.
    pub fn session_id(&self) -> Option<String> {
        self.state().session_id
    }

    /// The protocol version negotiated by `initialize`.
    pub fn protocol_version(&self) -> Option<String> {
        self.state().protocol_version
    }

    fn state(&self) -> SessionState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// `initialize`, declaring `extensions` in `capabilities.extensions` (each with settings `{}`).
    /// Remembers the session id and the negotiated protocol version.
    pub async fn initialize(
        &self,
        extensions: &[AuthExtension],
        token: &Secret,
    ) -> Result<InitializeResult, McpError> {
        let params = initialize_params(extensions, &self.client_name, &self.client_version);
        // A new handshake starts a new session.
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = SessionState::default();
        let result = self.request("initialize", params, token).await?;
        let result: InitializeResult = self.decode("initialize", result)?;
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .protocol_version = Some(result.protocol_version.clone());
        Ok(result)
    }

    /// `notifications/initialized`, which completes the handshake.
    pub async fn notify_initialized(&self, token: &Secret) -> Result<(), McpError> {
        self.notify("notifications/initialized", None, token).await
    }

    /// `tools/list`, following `nextCursor`.
    pub async fn list_tools(&self, token: &Secret) -> Result<Vec<Tool>, McpError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Page {
            #[serde(default)]
            tools: Vec<Tool>,
            #[serde(default)]
            next_cursor: Option<String>,
        }
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_TOOL_PAGES {
            let params = match &cursor {
                Some(c) => json!({ "cursor": c }),
                None => json!({}),
            };
            let page: Page = self.decode(
                "tools/list",
                self.request("tools/list", params, token).await?,
            )?;
            tools.extend(page.tools);
            match page.next_cursor {
                Some(next) if !next.is_empty() => cursor = Some(next),
                _ => return Ok(tools),
            }
        }
        Err(McpError::Wire(WireError::Malformed {
            url: redacted_url(&self.url),
            what: "tools/list response",
            detail: format!("still paginating after {MAX_TOOL_PAGES} pages"),
        }))
    }

    /// `tools/call` of `name` with `arguments` (a JSON object).
    pub async fn call_tool(
        &self,
        name: &str,
        arguments: Value,
        token: &Secret,
    ) -> Result<CallToolResult, McpError> {
        let params = json!({ "name": name, "arguments": arguments });
        let result = self.request("tools/call", params, token).await?;
        self.decode("tools/call", result)
    }

    /// Sends request `method` and returns the `result` of its response.
    pub async fn request(
        &self,
        method: &str,
        params: Value,
        token: &Secret,
    ) -> Result<Value, McpError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        match self.post(method, &body, Some(id), token).await? {
            Reply::Result(result) => Ok(result),
            Reply::Accepted => Err(McpError::NoResponse {
                url: redacted_url(&self.url),
                method: method.to_owned(),
                id,
            }),
        }
    }

    /// Sends notification `method`; the server answers 202 Accepted.
    pub async fn notify(
        &self,
        method: &str,
        params: Option<Value>,
        token: &Secret,
    ) -> Result<(), McpError> {
        let mut body = json!({ "jsonrpc": "2.0", "method": method });
        if let (Some(params), Some(object)) = (params, body.as_object_mut()) {
            object.insert("params".to_owned(), params);
        }
        self.post(method, &body, None, token).await.map(|_| ())
    }

    fn decode<T: serde::de::DeserializeOwned>(
        &self,
        method: &'static str,
        value: Value,
    ) -> Result<T, McpError> {
        serde_json::from_value(value).map_err(|e| {
            McpError::Wire(WireError::Malformed {
                url: redacted_url(&self.url),
                what: method_what(method),
                detail: capped_message(e),
            })
        })
    }

    async fn post(
        &self,
        method: &str,
        body: &Value,
        id: Option<u64>,
        token: &Secret,
    ) -> Result<Reply, McpError> {
        let shown = redacted_url(&self.url);
        let state = self.state();
        let mut bearer = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
            .map_err(|_| McpError::UnsendableToken)?;
        bearer.set_sensitive(true);
        let mut builder = self
            .http
            .post(self.url.clone())
            .header(ACCEPT, "application/json, text/event-stream")
            .header(CONTENT_TYPE, "application/json")
            .header(AUTHORIZATION, bearer);
        if let Some(session) = &state.session_id {
            builder = builder.header(HEADER_SESSION_ID, session);
        }
        if method != "initialize" {
            let version = state
                .protocol_version
                .as_deref()
                .unwrap_or(PROTOCOL_VERSION);
            builder = builder.header(HEADER_PROTOCOL_VERSION, version);
        }
        let bytes = serde_json::to_vec(body).map_err(|e| WireError::Malformed {
            url: shown.clone(),
            what: "MCP request",
            detail: capped_message(e),
        })?;
        let mut response = builder
            .body(bytes)
            .send()
            .await
            .map_err(|e| transport_error(&shown, &e))?;
        let status = response.status().as_u16();

        if status == 401 || status == 403 {
            let challenge = response
                .headers()
                .get_all(reqwest::header::WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(parse_bearer_challenge);
            return Err(McpError::Unauthorized {
                url: shown,
                status,
                challenge,
            });
        }
        if status == 404 && state.session_id.is_some() {
            return Err(McpError::SessionExpired { url: shown });
        }
        if !(200..300).contains(&status) {
            let body = read_capped(&mut response, &shown, self.max_body_bytes).await?;
            return Err(McpError::Wire(WireError::Status {
                url: shown,
                status,
                excerpt: excerpt(&body),
            }));
        }
        if method == "initialize" {
            if let Some(session) = response
                .headers()
                .get(HEADER_SESSION_ID)
                .and_then(|v| v.to_str().ok())
            {
                self.state
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .session_id = Some(session.to_owned());
            }
        }
        let Some(id) = id else {
            // A notification: 202 (any 2xx) and nothing to read that matters.
            return Ok(Reply::Accepted);
        };
        let content_type = response_media_type(response.headers());

        if content_type == "text/event-stream" {
            let mut stream = CappedEventStream::new(&mut response, self.max_body_bytes, &shown);
            while let Some(events) = stream.next_events().await? {
                for event in events {
                    if event.event != "message" {
                        continue;
                    }
                    let message: Value =
                        serde_json::from_str(&event.data).map_err(|e| WireError::Malformed {
                            url: shown.clone(),
                            what: "server-sent event",
                            detail: format!(
                                "{} bytes of data that are not JSON ({e})",
                                event.data.len()
                            ),
                        })?;
                    if let Some(found) = find_response(&message, id) {
                        return found.map(Reply::Result).map_err(|e| e.into_error(method));
                    }
                }
            }
        } else {
            let body = read_capped(&mut response, &shown, self.max_body_bytes).await?;
            if body.iter().all(u8::is_ascii_whitespace) {
                return Ok(Reply::Accepted);
            }
            let message: Value =
                serde_json::from_slice(&body).map_err(|e| WireError::Malformed {
                    url: shown.clone(),
                    what: "MCP response",
                    // A success body may hold tool output; keep its size and type only.
                    detail: format!(
                        "{} bytes of {content_type:?} that are not JSON ({e})",
                        body.len()
                    ),
                })?;
            if let Some(found) = find_response(&message, id) {
                return found.map(Reply::Result).map_err(|e| e.into_error(method));
            }
        }
        Err(McpError::NoResponse {
            url: shown,
            method: method.to_owned(),
            id,
        })
    }
}

fn method_what(method: &'static str) -> &'static str {
    match method {
        "initialize" => "initialize result",
        "tools/list" => "tools/list result",
        "tools/call" => "tools/call result",
        _ => "MCP result",
    }
}

/// The `initialize` params: our protocol version, client info and the declared extensions.
pub fn initialize_params(
    extensions: &[AuthExtension],
    client_name: &str,
    client_version: &str,
) -> Value {
    let mut capabilities = json!({});
    if !extensions.is_empty() {
        let declared: serde_json::Map<String, Value> = extensions
            .iter()
            .map(|e| (e.id().to_owned(), json!({})))
            .collect();
        capabilities["extensions"] = Value::Object(declared);
    }
    json!({
        "protocolVersion": PROTOCOL_VERSION,
        "capabilities": capabilities,
        "clientInfo": { "name": client_name, "version": client_version },
    })
}

/// `type/subtype` of a `Content-Type`, lowercased, without parameters.
/// The media type of a response (`Content-Type` without parameters, lower-cased; empty if absent).
pub(crate) fn response_media_type(headers: &reqwest::header::HeaderMap) -> String {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(media_type)
        .unwrap_or_default()
}

fn media_type(value: &str) -> String {
    value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

async fn read_capped(
    response: &mut reqwest::Response,
    shown: &str,
    limit: usize,
) -> Result<Vec<u8>, McpError> {
    Ok(read_body_capped(response, limit, shown, BodyOverflow::Reject).await?)
}

/// A JSON-RPC error object, before it knows which method it answers.
#[derive(Debug, Clone, PartialEq)]
struct RpcErrorObject {
    code: i64,
    message: String,
    data: Option<Value>,
}

impl RpcErrorObject {
    fn into_error(self, method: &str) -> McpError {
        McpError::Rpc {
            method: method.to_owned(),
            code: self.code,
            message: self.message,
            data: self.data,
        }
    }
}

/// The response to request `id` in `message` (a JSON-RPC message or a batch array), if it is there.
/// Notifications and server requests (they have a `method`) are skipped.
fn find_response(message: &Value, id: u64) -> Option<Result<Value, RpcErrorObject>> {
    if let Value::Array(items) = message {
        return items.iter().find_map(|m| find_response(m, id));
    }
    let object = message.as_object()?;
    if object.contains_key("method") || !id_matches(object.get("id")?, id) {
        return None;
    }
    if let Some(error) = object.get("error") {
        return Some(Err(RpcErrorObject {
            code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
            message: error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            data: error.get("data").cloned(),
        }));
    }
    Some(Ok(object.get("result").cloned().unwrap_or(Value::Null)))
}

/// Ids are sent as numbers; accept a server that echoes them as strings.
fn id_matches(found: &Value, id: u64) -> bool {
    match found {
        Value::Number(n) => n.as_u64() == Some(id),
        Value::String(s) => s.parse::<u64>().ok() == Some(id),
        _ => false,
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
