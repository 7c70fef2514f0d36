//! The stdio ⇄ streamable-HTTP MCP bridge behind `lanyard proxy <server>`: an MCP stdio server
//! (newline-delimited JSON-RPC on its input and output) that forwards every message to one remote
//! MCP server over the streamable HTTP transport, with a bearer token fetched from a
//! [`TokenSource`] for every HTTP request, so a token that expires or is revoked mid-session is
//! replaced without the client noticing.
//!
//! What it owns: the framing on both sides, the transport state (`Mcp-Session-Id`,
//! `MCP-Protocol-Version`, the optional GET stream for server-initiated messages, `DELETE` when the
//! input ends), the auth retries (401 → forced refresh, retry once; 403 `insufficient_scope` → a
//! token for the union of scopes, retry once) and one edit: declaring
//! `io.modelcontextprotocol/enterprise-managed-authorization` in the client's `initialize` (and in
//! the 2026-07-28 `_meta` form). For sessions of 2026-07-28 or later it adds the headers that copy
//! the body (`headers`: `Mcp-Method`, `Mcp-Name`, `Mcp-Param-*`) and refuses calls to tools
//! whose `x-mcp-header` annotations are broken. What it must not do: change any other byte of a message, answer
//! for the server, print anything but protocol messages on its output, or put a token anywhere but
//! the `Authorization` header (diagnostics go through `tracing`, which the CLI sends to stderr).
//!
//! Why a thin layer of our own and not `rmcp`: rmcp is built to *be* a client or a server — it
//! deserialises every message into typed models and runs its own handshake and request-id
//! bookkeeping. A proxy must do neither: it must pass unknown methods, extension fields and future
//! protocol versions through byte for byte and let the two real peers negotiate. Round-tripping
//! through typed models would drop or rewrite fields it does not know, and its transports would add
//! a second session layer between the peers. What the bridge needs from an MCP stack — SSE parsing
//! and `WWW-Authenticate` parsing — already lives in [`crate::mcp`] and [`crate::oauth::discovery`]
//! and is reused here, so the whole bridge is a few hundred lines of transport code over raw
//! `serde_json::Value`s.

mod headers;
mod message;
mod upstream;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use url::Url;

pub use headers::{encode_value, version_has_headers, HEADERS_PROTOCOL_VERSION};
pub use message::{
    classify, declare_extension, error_response, is_stateless_version, meta_protocol_version,
    parse_incoming, Incoming, NotAMessage, CLIENT_CAPABILITIES_META, PROTOCOL_VERSION_META,
    STATELESS_PROTOCOL_VERSION, UPSTREAM_ERROR_CODE,
};
pub use upstream::ForwardError;

use crate::oauth::http::{HttpConfig, HttpExecutor};
use crate::oauth::WireError;
use crate::secret::Secret;
use upstream::{Outbox, Pending, StreamEnd, Upstream};

/// What the bridge asks its token source for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenRequest {
    /// The server refused the last token (401 or 403): do not hand out a cached one.
    pub force_refresh: bool,
    /// Scopes beyond the configured ones that the server asked for (403 `insufficient_scope`).
    pub extra_scopes: Vec<String>,
    /// The HTTP request the token goes with, so a DPoP-bound token comes with its proof.
    pub proof_for: Option<ProofTarget>,
}

/// The one HTTP request a DPoP proof is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofTarget {
    pub method: String,
    pub url: Url,
    /// The server's latest `DPoP-Nonce`, when it gave one.
    pub nonce: Option<String>,
}

/// A token as the bridge sends it: a bearer token, or a DPoP-bound one with the proof for the
/// request it was asked for.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub access_token: Secret,
    pub dpop_proof: Option<Secret>,
}

impl IssuedToken {
    pub fn bearer(access_token: Secret) -> Self {
        Self {
            access_token,
            dpop_proof: None,
        }
    }
}

/// Why no token could be had; the message is shown to the user (it names the remedy, never a
/// secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TokenUnavailable {
    pub message: String,
}

impl TokenUnavailable {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// Where the bridge gets the current access token for its server: the broker (over IPC) in
/// `lanyard proxy`, an engine or a fixed value in tests. Called once per HTTP request.
pub trait TokenSource: Send + Sync + 'static {
    fn token(
        &self,
        request: &TokenRequest,
    ) -> impl Future<Output = Result<IssuedToken, TokenUnavailable>> + Send;
}

/// How a bridge runs.
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// The remote MCP endpoint.
    pub server_url: Url,
    /// The HTTP client settings (proxy, extra CAs, connect timeout). The request timeout bounds
    /// one POST exchange including a streamed reply, so keep it generous: tool calls can be slow.
    pub http: HttpConfig,
    /// Cap on one message from the client and on one reply body from the server.
    pub max_message_bytes: usize,
    /// Open the GET stream for server-initiated messages after `notifications/initialized`.
    pub listen: bool,
    /// After the input ends, how long requests still in flight may take to finish.
    pub shutdown_grace: Duration,
}

impl BridgeConfig {
    /// Defaults for `server_url`: 16 MiB messages, GET stream on, 10 minutes per exchange.
    pub fn new(server_url: Url) -> Self {
        Self {
            server_url,
            http: HttpConfig {
                request_timeout: Duration::from_secs(600),
                ..HttpConfig::default()
            },
            max_message_bytes: 16 * 1024 * 1024,
            listen: true,
            shutdown_grace: Duration::from_secs(3),
        }
    }
}

/// Whether the bridge may send tokens to `url`: https, or plain http to a loopback address (the
/// agent's policy validation lets that through only with `dev_mode`, for local test servers).
/// Anything else is refused even when the agent names it, so a forged or misread answer cannot
/// send the user's tokens over the network in clear text.
pub fn check_server_url(url: &Url) -> Result<(), String> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if crate::policy::validate::is_loopback(url) => Ok(()),
        _ => Err(format!(
            "the MCP server URL {url} is not https (plain http is accepted only on this machine's \
             loopback, with dev_mode): refusing to send tokens there"
        )),
    }
}

/// Why the bridge stopped early.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("{0}")]
    InsecureServerUrl(String),
    #[error(transparent)]
    Http(#[from] WireError),
    #[error("reading the client's messages failed: {0}")]
    Input(std::io::Error),
    #[error("writing to the client failed: {0}")]
    Output(std::io::Error),
}

/// Runs the bridge until `input` ends (or the client stops reading `output`), then ends the
/// session at the server. Requests are forwarded concurrently; `initialize`, notifications and
/// the client's responses are forwarded in order, each before the next line is read.
pub async fn run<S, R, W>(
    config: BridgeConfig,
    tokens: S,
    input: R,
    output: W,
) -> Result<(), BridgeError>
where
    S: TokenSource,
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    check_server_url(&config.server_url).map_err(BridgeError::InsecureServerUrl)?;
    let http = HttpExecutor::new(&config.http)?.client().clone();
    let upstream = Arc::new(Upstream::new(
        http,
        config.server_url.clone(),
        tokens,
        config.max_message_bytes,
    ));
    let (out, lines) = mpsc::channel::<String>(256);
    let writer = tokio::spawn(write_lines(output, lines));
    let mut requests = JoinSet::new();
    let mut listener: Option<tokio::task::JoinHandle<()>> = None;
    let mut reader = BufReader::new(input);
    let mut line = Vec::new();
    let mut input_error = None;

    loop {
        while requests.try_join_next().is_some() {}
        match read_line_capped(&mut reader, &mut line, config.max_message_bytes).await {
            Ok(LineRead::Eof) => break,
            Ok(LineRead::TooLong) => {
                tracing::warn!(
                    "dropped a message larger than {} bytes from the client",
                    config.max_message_bytes
                );
                let reply = error_response(
                    &Value::Null,
                    message::INVALID_REQUEST_CODE,
                    &format!(
                        "Lanyard proxy: message larger than {} bytes",
                        config.max_message_bytes
                    ),
                    None,
                );
                if out.send(reply.to_string()).await.is_err() {
                    break;
                }
                continue;
            }
            Ok(LineRead::Line) => {}
            Err(e) => {
                input_error = Some(e);
                break;
            }
        }
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        let (mut message, kind) = match parse_incoming(text) {
            Ok(parsed) => parsed,
            Err(e) => {
                tracing::warn!("dropped a line from the client: {e}");
                let reply =
                    error_response(&Value::Null, e.code(), &format!("Lanyard proxy: {e}"), None);
                if out.send(reply.to_string()).await.is_err() {
                    break;
                }
                continue;
            }
        };
        let body = if declare_extension(&mut message) {
            message.to_string().into_bytes()
        } else {
            text.to_vec()
        };
        let version = meta_protocol_version(&message).map(str::to_owned);
        let method = kind.method().unwrap_or("response").to_owned();
        // 2026-07-28 headers, for a session (or a request) of that version or later; what
        // `initialize` asks for decides its own POST.
        let speaking = version
            .clone()
            .or_else(|| upstream.protocol_version())
            .or_else(|| {
                (method == "initialize")
                    .then(|| {
                        message
                            .pointer("/params/protocolVersion")?
                            .as_str()
                            .map(str::to_owned)
                    })
                    .flatten()
            });
        let headers = match speaking.as_deref().filter(|v| version_has_headers(v)) {
            Some(_) => match upstream.standard_headers(&message) {
                Ok(headers) => headers,
                Err(why) => {
                    tracing::warn!("{method}: {why}");
                    let failure = (message::INVALID_REQUEST_CODE, "invalid_tool_headers");
                    answer_with_error(&out, kind.request_ids(), failure, &why).await;
                    continue;
                }
            },
            None => Vec::new(),
        };
        let outgoing = Outgoing {
            body,
            version,
            headers,
        };
        let mut pending = Pending {
            ids: kind.request_ids(),
            initialize_id: match &kind {
                Incoming::Request { id, method } if method == "initialize" => Some(id.clone()),
                _ => None,
            },
            tools_list_id: match &kind {
                Incoming::Request { id, method } if method == "tools/list" => Some(id.clone()),
                _ => None,
            },
        };
        if pending.ids.is_empty() || pending.initialize_id.is_some() {
            // In order: the session id and version from `initialize` must be known before the
            // next message, and notifications must not overtake each other.
            forward(&upstream, outgoing, &mut pending, &out, &method).await;
            if method == "notifications/initialized" && config.listen && listener.is_none() {
                listener = Some(tokio::spawn(listen(Arc::clone(&upstream), out.clone())));
            }
        } else {
            let upstream = Arc::clone(&upstream);
            let out = out.clone();
            requests.spawn(async move {
                forward(&upstream, outgoing, &mut pending, &out, &method).await;
            });
        }
        if out.is_closed() {
            break;
        }
    }

    // The client is done sending. Let answers still on their way arrive, then end the session.
    let drain = async { while requests.join_next().await.is_some() {} };
    if tokio::time::timeout(config.shutdown_grace, drain)
        .await
        .is_err()
    {
        tracing::warn!("input ended with requests unanswered; dropping them");
        requests.abort_all();
    }
    if let Some(listener) = listener {
        listener.abort();
    }
    upstream.close_session().await;
    drop(out);
    let written = writer.await.unwrap_or(Ok(()));
    if let Some(e) = input_error {
        return Err(BridgeError::Input(e));
    }
    written.map_err(BridgeError::Output)
}

/// One client message as it goes to the server: its bytes, its own protocol version (2026-07-28
/// `_meta`), and the headers that copy it.
struct Outgoing {
    body: Vec<u8>,
    version: Option<String>,
    headers: Vec<(String, String)>,
}

/// Forwards one message; when that fails, answers each of its requests with an error so the
/// client never waits forever.
async fn forward<S: TokenSource>(
    upstream: &Upstream<S>,
    outgoing: Outgoing,
    pending: &mut Pending,
    out: &Outbox,
    method: &str,
) {
    let Outgoing {
        body,
        version,
        headers,
    } = outgoing;
    let Err(e) = upstream
        .post(body, version.as_deref(), &headers, pending, out)
        .await
    else {
        return;
    };
    tracing::warn!("{method}: {e}");
    let ids: Vec<Value> = pending.ids.drain(..).collect();
    answer_with_error(out, ids, (UPSTREAM_ERROR_CODE, e.kind()), &e.to_string()).await;
}

/// Answers each of `ids` with a JSON-RPC error of `code` (with `{"lanyard": kind}` as its data)
/// saying `why`, until the client stops reading.
async fn answer_with_error(out: &Outbox, ids: Vec<Value>, (code, kind): (i64, &str), why: &str) {
    for id in ids {
        let reply = error_response(
            &id,
            code,
            &format!("Lanyard proxy: {why}"),
            Some(json!({ "lanyard": kind })),
        );
        if out.send(reply.to_string()).await.is_err() {
            return;
        }
    }
}

/// Keeps the GET stream open: reconnects (resuming with `Last-Event-ID`) while the server keeps
/// offering it, gives up after repeated failures that delivered nothing.
async fn listen<S: TokenSource>(upstream: Arc<Upstream<S>>, out: Outbox) {
    const MAX_BARREN_ATTEMPTS: u32 = 5;
    let mut last_event_id = None;
    let mut barren = 0u32;
    loop {
        match upstream.listen_once(&mut last_event_id, &out).await {
            Ok(StreamEnd::NotOffered) => {
                tracing::debug!("the server offers no GET stream");
                return;
            }
            Ok(StreamEnd::Closed { delivered: true }) => barren = 0,
            Ok(StreamEnd::Closed { delivered: false }) => barren += 1,
            Err(e) => {
                tracing::warn!("GET stream: {e}");
                barren += 1;
            }
        }
        if barren >= MAX_BARREN_ATTEMPTS || out.is_closed() {
            return;
        }
        let backoff = Duration::from_millis(250 * 2u64.pow(barren.min(5)));
        tokio::time::sleep(backoff).await;
    }
}

/// Writes each line and a newline; flushes when no further line is ready (so a burst of SSE
/// messages costs one flush).
async fn write_lines<W: AsyncWrite + Unpin>(
    mut output: W,
    mut lines: mpsc::Receiver<String>,
) -> std::io::Result<()> {
    while let Some(line) = lines.recv().await {
        output.write_all(line.as_bytes()).await?;
        output.write_all(b"\n").await?;
        while let Ok(line) = lines.try_recv() {
            output.write_all(line.as_bytes()).await?;
            output.write_all(b"\n").await?;
        }
        output.flush().await?;
    }
    output.flush().await
}

#[derive(Debug, PartialEq, Eq)]
enum LineRead {
    Line,
    TooLong,
    Eof,
}

/// Reads one `\n`-terminated line (without the `\n`) into `line`, keeping at most `max` bytes: a
/// longer line is consumed and reported as [`LineRead::TooLong`]. A last line without `\n` counts.
async fn read_line_capped<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<LineRead> {
    line.clear();
    let mut too_long = false;
    let mut seen_any = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(match (seen_any, too_long) {
                (false, _) => LineRead::Eof,
                (true, true) => LineRead::TooLong,
                (true, false) => LineRead::Line,
            });
        }
        seen_any = true;
        let (take, used, done) = match available.iter().position(|&b| b == b'\n') {
            Some(end) => (end, end + 1, true),
            None => (available.len(), available.len(), false),
        };
        if !too_long && line.len() + take <= max {
            line.extend_from_slice(&available[..take]);
        } else {
            too_long = true;
            line.clear();
        }
        reader.consume(used);
        if done {
            return Ok(if too_long {
                LineRead::TooLong
            } else {
                LineRead::Line
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_read_capped_and_the_last_one_needs_no_newline() {
        let data = b"short\n0123456789abcdef\n\nlast".to_vec();
        let mut reader = BufReader::with_capacity(4, &data[..]);
        let mut line = Vec::new();
        let mut seen = Vec::new();
        loop {
            let read = read_line_capped(&mut reader, &mut line, 10)
                .await
                .expect("read");
            if read == LineRead::Eof {
                break;
            }
            seen.push((read, String::from_utf8_lossy(&line).into_owned()));
        }
        assert_eq!(
            seen,
            [
                (LineRead::Line, "short".to_owned()),
                (LineRead::TooLong, String::new()),
                (LineRead::Line, String::new()),
                (LineRead::Line, "last".to_owned()),
            ]
        );
    }

    #[tokio::test]
    async fn writer_puts_one_message_per_line() {
        let (tx, rx) = mpsc::channel(8);
        let (client, server) = tokio::io::duplex(1024);
        let writer = tokio::spawn(write_lines(server, rx));
        tx.send("{\"a\":1}".into()).await.expect("send");
        tx.send("{\"b\":2}".into()).await.expect("send");
        drop(tx);
        writer.await.expect("join").expect("write");
        let mut text = String::new();
        let mut client = client;
        tokio::io::AsyncReadExt::read_to_string(&mut client, &mut text)
            .await
            .expect("read");
        assert_eq!(text, "{\"a\":1}\n{\"b\":2}\n");
    }

    /// A token source that must never be asked.
    struct NoTokens;

    impl TokenSource for NoTokens {
        #[allow(clippy::manual_async_fn)]
        fn token(
            &self,
            _request: &TokenRequest,
        ) -> impl Future<Output = Result<IssuedToken, TokenUnavailable>> + Send {
            async { panic!("a token was asked for an insecure server URL") }
        }
    }

    #[test]
    fn only_https_or_loopback_http_servers_get_tokens() {
        for good in [
            "https://mcp.example/mcp",
            "http://127.0.0.1:8080/mcp",
            "http://127.3.4.5/mcp",
            "http://[::1]:9000/mcp",
            "http://localhost:3000/mcp",
        ] {
            let url = Url::parse(good).expect("a URL");
            assert_eq!(check_server_url(&url), Ok(()), "{good}");
        }
        for bad in [
            "http://mcp.example/mcp",
            "http://10.0.0.8/mcp",
            "http://localhost.evil.example/mcp",
            "ftp://mcp.example/mcp",
            "ws://127.0.0.1/mcp",
            "file:///tmp/mcp",
        ] {
            let url = Url::parse(bad).expect("a URL");
            let why = check_server_url(&url).expect_err(bad);
            assert!(why.contains("not https"), "{bad}: {why}");
        }
    }

    #[tokio::test]
    async fn the_bridge_refuses_a_plain_http_server_before_reading_or_sending_anything() {
        let config = BridgeConfig::new(Url::parse("http://mcp.example/mcp").expect("a URL"));
        let input: &[u8] = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n";
        let (output, mut client_side) = tokio::io::duplex(1024);
        let result = run(config, NoTokens, input, output).await;
        assert!(
            matches!(result, Err(BridgeError::InsecureServerUrl(_))),
            "{result:?}"
        );
        let mut written = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut client_side, &mut written)
            .await
            .expect("read");
        assert_eq!(written, "", "nothing was answered for the server");
    }
}
