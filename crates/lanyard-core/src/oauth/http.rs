//! The one small HTTP executor every OAuth and discovery request goes through.
//!
//! Requests are plain data ([`HttpRequest`]) built by the pure functions of this module's siblings;
//! [`HttpExecutor`] sends them with timeouts, no redirects (a token endpoint that redirects is
//! misconfigured or hostile) and a cap on the response size that is enforced while reading, so an
//! endless body costs at most the cap. It reads no clock and stores nothing.
//!
//! Connections are kept open (for 10 s of idleness) only to the origins the engine names with
//! [`HttpExecutor::keep_alive_for`]: the identity provider, which sees one request per server in a
//! burst. An authorization server or MCP host sees one or two requests per grant, minutes apart;
//! keeping a connection to each of 500 of them costs ~35 KB apiece, a heap that is not given back,
//! so those requests go over a client that closes its connections when the answer is read.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use url::Url;

use super::error::{TransportKind, WireError};
use crate::secret::Secret;

/// HTTP method of a request this crate sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

/// A request ready to send. Its `Debug` shows the method, URL and header/field *names* only: header
/// values and form fields routinely carry secrets.
#[derive(Clone)]
pub struct HttpRequest {
    pub method: Method,
    pub url: Url,
    pub headers: Vec<(&'static str, Secret)>,
    pub form: Vec<(&'static str, Secret)>,
}

impl HttpRequest {
    pub fn get(url: Url) -> Self {
        Self {
            method: Method::Get,
            url,
            headers: Vec::new(),
            form: Vec::new(),
        }
    }

    pub fn post_form(url: Url) -> Self {
        Self {
            method: Method::Post,
            url,
            headers: Vec::new(),
            form: Vec::new(),
        }
    }

    pub fn field(&mut self, name: &'static str, value: impl Into<String>) -> &mut Self {
        self.form.push((name, Secret::new(value)));
        self
    }

    pub fn secret_field(&mut self, name: &'static str, value: &Secret) -> &mut Self {
        self.form.push((name, value.clone()));
        self
    }

    pub fn header(&mut self, name: &'static str, value: impl Into<String>) -> &mut Self {
        self.headers.push((name, Secret::new(value)));
        self
    }

    /// The value of form field `name`, for tests and diagnostics of non-secret fields.
    pub fn form_value(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.expose())
    }

    /// The form encoded as `application/x-www-form-urlencoded`.
    pub fn encoded_form(&self) -> String {
        let mut out = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.form {
            out.append_pair(k, v.expose());
        }
        out.finish()
    }
}

impl fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fields: Vec<&str> = self.form.iter().map(|(k, _)| *k).collect();
        let headers: Vec<&str> = self.headers.iter().map(|(k, _)| *k).collect();
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("url", &redacted_url(&self.url))
            .field("headers", &headers)
            .field("fields", &fields)
            .finish()
    }
}

/// A proxy URL for messages: scheme, host and port only (a proxy URL may carry a password).
fn shown_proxy(proxy: &str) -> String {
    match Url::parse(proxy) {
        Ok(url) => format!(
            "{}://{}{}",
            url.scheme(),
            url.host_str().unwrap_or("?"),
            url.port().map(|p| format!(":{p}")).unwrap_or_default()
        ),
        Err(_) => "(unreadable proxy setting)".to_owned(),
    }
}

/// `url` without its query and fragment, for messages (queries carry codes and states).
pub fn redacted_url(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// A response as received, body capped.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub url: Url,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The server's time from its `Date` header, in Unix seconds.
    pub fn server_time(&self) -> Option<u64> {
        let date = self.header_values("date").next()?;
        let parsed = chrono::DateTime::parse_from_rfc2822(date.trim()).ok()?;
        u64::try_from(parsed.timestamp()).ok()
    }

    /// How far the server's clock is ahead of `local_now` (negative: behind), by its `Date`.
    pub fn clock_offset(&self, local_now: u64) -> Option<i64> {
        let server = i64::try_from(self.server_time()?).ok()?;
        Some(server - i64::try_from(local_now).ok()?)
    }

    /// All values of header `name` (case-insensitive).
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Settings of the shared HTTP client.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Responses larger than this are dropped with [`WireError::BodyTooLarge`].
    pub max_body_bytes: usize,
    /// Extra PEM CA certificates (a TLS-inspecting corporate proxy), on top of the OS trust store.
    pub extra_ca_pem: Vec<Vec<u8>>,
    /// The only proxy used (the policy's `settings.proxy`); `*_PROXY` variables are ignored.
    pub proxy: Option<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_body_bytes: 1024 * 1024,
            extra_ca_pem: Vec::new(),
            proxy: None,
        }
    }
}

/// Sends [`HttpRequest`]s: over a pooled client to the origins named by
/// [`HttpExecutor::keep_alive_for`], over a client that keeps nothing open to all others. Clones
/// share both clients and the list of origins.
#[derive(Debug, Clone)]
pub struct HttpExecutor {
    client: reqwest::Client,
    one_shot: reqwest::Client,
    keep_alive: Arc<Mutex<HashSet<String>>>,
    max_body_bytes: usize,
    /// The configured proxy, without any credentials in it, for messages.
    proxy: Option<String>,
}

/// The environment variables that would change where Lanyard's requests go or whom TLS trusts if
/// the HTTP stack followed them. Lanyard honours none of them: the administrator's policy decides
/// (`settings.proxy`, `settings.extra_ca_files`). The proxy ones are ignored by every client built
/// here (`no_proxy`). The CA ones are read by the OS trust-store loader (`rustls-native-certs`)
/// each time a client is built, and replace the whole OS store with the files they name, so the
/// `lanyard` binary removes them from its environment first thing ([`forget_tls_environment`]).
pub const IGNORED_ENVIRONMENT: &[&str] = &[
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

/// The CA variables the OS trust-store loader reads.
const TRUST_STORE_ENVIRONMENT: &[&str] = &["SSL_CERT_FILE", "SSL_CERT_DIR"];

/// Removes `SSL_CERT_FILE` and `SSL_CERT_DIR` from this process's environment, so that the OS
/// trust store is the OS's whatever the process inherited; returns the names that were set (for
/// one log line). Call it first thing in `main`, before any thread starts: changing the
/// environment while another thread reads it is a data race on most platforms.
pub fn forget_tls_environment() -> Vec<&'static str> {
    let mut removed = Vec::new();
    for name in TRUST_STORE_ENVIRONMENT {
        if std::env::var_os(name).is_some() {
            std::env::remove_var(name);
            removed.push(*name);
        }
    }
    removed
}

/// One reqwest client with Lanyard's settings; `pooled` keeps idle connections for 10 s, otherwise
/// none is kept. No proxy but the policy's; no CA but the OS's and the policy's (in a process that
/// called [`forget_tls_environment`]).
fn build_client(config: &HttpConfig, pooled: bool) -> Result<reqwest::Client, WireError> {
    let mut builder = reqwest::Client::builder()
        // HTTPS_PROXY, ALL_PROXY and the system's proxy settings are not Lanyard's to follow.
        .no_proxy()
        .connect_timeout(config.connect_timeout)
        .timeout(config.request_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("lanyard/", env!("CARGO_PKG_VERSION")))
        .pool_max_idle_per_host(if pooled { 64 } else { 0 })
        // Grants come in bursts (sign-in, a refresh) with long quiet stretches between: a
        // connection idle for 10 s is closed then, not held (and later reaped) for a minute and a
        // half, which would wake an idle agent for nothing.
        .pool_idle_timeout(Duration::from_secs(10));
    for pem in &config.extra_ca_pem {
        let cert = reqwest::Certificate::from_pem(pem).map_err(|e| {
            WireError::Discovery(format!("an extra CA certificate is unreadable: {e}"))
        })?;
        builder = builder.add_root_certificate(cert);
    }
    if let Some(proxy) = &config.proxy {
        let proxy = reqwest::Proxy::all(proxy)
            .map_err(|e| WireError::Discovery(format!("the proxy setting is unusable: {e}")))?;
        builder = builder.proxy(proxy);
    }
    builder
        .build()
        .map_err(|e| WireError::Discovery(format!("the HTTP client could not start: {e}")))
}

impl HttpExecutor {
    pub fn new(config: &HttpConfig) -> Result<Self, WireError> {
        Ok(Self {
            client: build_client(config, true)?,
            one_shot: build_client(config, false)?,
            keep_alive: Arc::default(),
            max_body_bytes: config.max_body_bytes,
            proxy: config.proxy.as_deref().map(shown_proxy),
        })
    }

    /// Keeps connections to `url`'s origin open between requests (the identity provider).
    pub fn keep_alive_for(&self, url: &Url) {
        let origin = url.origin().ascii_serialization();
        // A panic while holding this lock leaves a set of strings; it stays usable.
        let mut set = self.keep_alive.lock().unwrap_or_else(|p| p.into_inner());
        set.insert(origin);
    }

    fn client_for(&self, url: &Url) -> &reqwest::Client {
        let set = self.keep_alive.lock().unwrap_or_else(|p| p.into_inner());
        if set.contains(&url.origin().ascii_serialization()) {
            &self.client
        } else {
            &self.one_shot
        }
    }

    /// The shared client, for callers (the MCP bridge) that stream.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub async fn execute(&self, request: &HttpRequest) -> Result<HttpResponse, WireError> {
        let shown = redacted_url(&request.url);
        let client = self.client_for(&request.url);
        let mut builder = match request.method {
            Method::Get => client.get(request.url.clone()),
            Method::Post => client.post(request.url.clone()),
        };
        builder = builder.header("accept", "application/json");
        for (name, value) in &request.headers {
            builder = builder.header(*name, value.expose());
        }
        if request.method == Method::Post {
            builder = builder
                .header("content-type", "application/x-www-form-urlencoded")
                .body(request.encoded_form());
        }
        let response = builder
            .send()
            .await
            .map_err(|e| self.via_proxy(transport_error(&shown, &e)))?;
        self.collect(response, &request.url, shown, BodyOverflow::Reject)
            .await
    }

    /// With a proxy configured, a connection that could not even be opened is the proxy's.
    fn via_proxy(&self, error: WireError) -> WireError {
        let Some(proxy) = &self.proxy else {
            return error;
        };
        match error {
            WireError::Transport {
                url,
                kind: TransportKind::Refused | TransportKind::Dns | TransportKind::Connect,
                message,
            } => WireError::Transport {
                url,
                kind: TransportKind::Proxy,
                message: format!("the proxy {proxy} could not be reached: {message}"),
            },
            WireError::Transport {
                url,
                kind: TransportKind::Proxy,
                message,
            } => WireError::Transport {
                url,
                kind: TransportKind::Proxy,
                message: message.replacen("the proxy", &format!("the proxy {proxy}"), 1),
            },
            other => other,
        }
    }

    /// Reads status, headers and a body of at most `max_body_bytes` (by `Content-Length` and
    /// while streaming), rejecting or truncating what is beyond.
    async fn collect(
        &self,
        mut response: reqwest::Response,
        url: &Url,
        shown: String,
        overflow: BodyOverflow,
    ) -> Result<HttpResponse, WireError> {
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = read_body_capped(&mut response, self.max_body_bytes, &shown, overflow).await?;
        Ok(HttpResponse {
            url: url.clone(),
            status,
            headers,
            body,
        })
    }
}

/// Reads `response`'s body, at most `limit` bytes (by `Content-Length` and while streaming):
/// what is beyond is rejected as [`WireError::BodyTooLarge`], or cut off with
/// [`BodyOverflow::Truncate`]. `shown` names the URL in errors, already redacted.
pub(crate) async fn read_body_capped(
    response: &mut reqwest::Response,
    limit: usize,
    shown: &str,
    overflow: BodyOverflow,
) -> Result<Vec<u8>, WireError> {
    let too_large = || WireError::BodyTooLarge {
        url: shown.to_owned(),
        limit,
    };
    if overflow == BodyOverflow::Reject
        && response
            .content_length()
            .is_some_and(|len| len > limit as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| transport_error(shown, &e))?
    {
        if body.len() + chunk.len() > limit {
            match overflow {
                BodyOverflow::Reject => return Err(too_large()),
                BodyOverflow::Truncate => break,
            }
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// What to do with a body beyond the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyOverflow {
    Reject,
    /// Only the status and headers matter (a discovery probe).
    Truncate,
}

impl HttpExecutor {
    /// POSTs a JSON document (RFC 7591 client registration) and returns the answer, read under
    /// the usual cap. Redirects are not followed.
    pub async fn post_json(
        &self,
        url: &Url,
        body: &serde_json::Value,
    ) -> Result<HttpResponse, WireError> {
        let shown = redacted_url(url);
        let response = self
            .client_for(url)
            .post(url.clone())
            .header("accept", "application/json")
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| self.via_proxy(transport_error(&shown, &e)))?;
        self.collect(response, url, shown, BodyOverflow::Reject)
            .await
    }

    /// POSTs a JSON body the way an MCP client does (`Accept` JSON and SSE) and returns the status
    /// and headers; the body is read under the same cap.
    pub async fn probe_post_json(
        &self,
        url: &Url,
        body: &'static str,
    ) -> Result<HttpResponse, WireError> {
        let shown = redacted_url(url);
        let response = self
            .client_for(url)
            .post(url.clone())
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| self.via_proxy(transport_error(&shown, &e)))?;
        self.collect(response, url, shown, BodyOverflow::Truncate)
            .await
    }
}

/// A transport failure without reqwest's own wording (which repeats the URL with its query),
/// sorted into a [`TransportKind`] by walking the error's causes: a resolver failure, a refused
/// connection, a timeout and the certificate verdicts of TLS each get a message of their own.
pub(crate) fn transport_error(url: &str, e: &reqwest::Error) -> WireError {
    let kind = transport_kind(e);
    let message = match kind {
        TransportKind::Dns => "the host name could not be resolved (DNS)".to_owned(),
        TransportKind::Refused => "the connection was refused (nothing listens there)".to_owned(),
        TransportKind::Timeout => "timed out (no answer in time)".to_owned(),
        TransportKind::Cut => "the connection was cut before the answer came".to_owned(),
        TransportKind::TlsUntrusted => "its TLS certificate is not trusted (unknown issuer); \
            if your network inspects TLS, IT must provide its CA in settings.extra_ca_files"
            .to_owned(),
        TransportKind::TlsExpired => {
            "its TLS certificate has expired (or is not valid yet)".to_owned()
        }
        TransportKind::Tls => format!("TLS failed: {}", innermost(e)),
        TransportKind::Proxy => format!("the proxy refused the tunnel: {}", innermost(e)),
        TransportKind::Connect => format!("connection failed: {}", innermost(e)),
        TransportKind::Other => innermost(e),
    };
    WireError::Transport {
        url: url.to_owned(),
        kind,
        message,
    }
}

/// The innermost cause's text (reqwest's outer layers repeat the URL).
fn innermost(e: &reqwest::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut text = String::from("request failed");
    while let Some(s) = source {
        text = s.to_string();
        source = s.source();
    }
    text
}

fn transport_kind(e: &reqwest::Error) -> TransportKind {
    if e.is_timeout() {
        return TransportKind::Timeout;
    }
    let mut causes: Vec<&(dyn std::error::Error + 'static)> = Vec::new();
    let mut next: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(cause) = next {
        causes.push(cause);
        // An io::Error's `source()` skips the error it wraps (rustls' verdict travels so).
        next = match cause.downcast_ref::<std::io::Error>() {
            Some(io) => match io.get_ref() {
                Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
                None => std::error::Error::source(io),
            },
            None => cause.source(),
        };
    }
    for cause in &causes {
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            return match tls {
                rustls::Error::InvalidCertificate(
                    rustls::CertificateError::UnknownIssuer
                    | rustls::CertificateError::BadSignature,
                ) => TransportKind::TlsUntrusted,
                rustls::Error::InvalidCertificate(
                    rustls::CertificateError::Expired
                    | rustls::CertificateError::ExpiredContext { .. }
                    | rustls::CertificateError::NotValidYet
                    | rustls::CertificateError::NotValidYetContext { .. },
                ) => TransportKind::TlsExpired,
                _ => TransportKind::Tls,
            };
        }
    }
    for cause in &causes {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return TransportKind::Refused,
                std::io::ErrorKind::TimedOut => return TransportKind::Timeout,
                std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe => return TransportKind::Cut,
                _ => {}
            }
            // A CONNECT the proxy answered with anything but 2xx.
            if io.to_string().contains("tunnel") {
                return TransportKind::Proxy;
            }
        }
        // hyper-util's connector names a resolver failure "dns error" (its type is private).
        if cause.to_string() == "dns error" {
            return TransportKind::Dns;
        }
    }
    if e.is_connect() {
        TransportKind::Connect
    } else {
        TransportKind::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dated(date: &str) -> HttpResponse {
        HttpResponse {
            url: Url::parse("https://idp.example/token").expect("url"),
            status: 200,
            headers: vec![("Date".into(), date.into())],
            body: Vec::new(),
        }
    }

    #[test]
    fn the_date_header_gives_the_servers_clock_offset() {
        let response = dated("Sat, 28 Nov 2026 10:50:00 GMT");
        assert_eq!(response.server_time(), Some(1_795_863_000));
        assert_eq!(response.clock_offset(1_795_862_400), Some(600));
        assert_eq!(response.clock_offset(1_795_863_600), Some(-600));
        assert_eq!(dated("yesterday-ish").clock_offset(1_795_863_000), None);
    }

    #[test]
    fn a_proxy_is_shown_without_its_credentials() {
        let shown = shown_proxy("http://alice:hunter2@proxy.corp.example:3128");
        assert_eq!(shown, "http://proxy.corp.example:3128");
        assert_eq!(shown_proxy("not a url"), "(unreadable proxy setting)");
    }
}
