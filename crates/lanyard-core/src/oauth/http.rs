//! The one small HTTP executor every OAuth and discovery request goes through.
//!
//! Requests are plain data ([`HttpRequest`]) built by the pure functions of this module's siblings;
//! [`HttpExecutor`] sends them over one shared `reqwest::Client` (connection reuse), with timeouts, no
//! redirects (a token endpoint that redirects is misconfigured or hostile) and a cap on the response
//! size that is enforced while reading, so an endless body costs at most the cap. It reads no clock
//! and stores nothing.

use std::fmt;
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
    /// An explicit proxy URL (GUI apps do not inherit `*_PROXY`).
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

/// Sends [`HttpRequest`]s over one shared client.
#[derive(Debug, Clone)]
pub struct HttpExecutor {
    client: reqwest::Client,
    max_body_bytes: usize,
}

impl HttpExecutor {
    pub fn new(config: &HttpConfig) -> Result<Self, WireError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("lanyard/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(64)
            // Grants come in bursts (sign-in, a refresh) with long quiet stretches between: a
            // connection idle for 10 s is closed then, not held (and later reaped) for a minute
            // and a half, which would wake an idle agent for nothing.
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
        let client = builder
            .build()
            .map_err(|e| WireError::Discovery(format!("the HTTP client could not start: {e}")))?;
        Ok(Self {
            client,
            max_body_bytes: config.max_body_bytes,
        })
    }

    /// The shared client, for callers (the MCP bridge) that stream.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub async fn execute(&self, request: &HttpRequest) -> Result<HttpResponse, WireError> {
        let shown = redacted_url(&request.url);
        let mut builder = match request.method {
            Method::Get => self.client.get(request.url.clone()),
            Method::Post => self.client.post(request.url.clone()),
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
            .map_err(|e| transport_error(&shown, &e))?;
        self.collect(response, &request.url, shown, BodyOverflow::Reject)
            .await
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
        let too_large = || WireError::BodyTooLarge {
            url: shown.clone(),
            limit: self.max_body_bytes,
        };
        if overflow == BodyOverflow::Reject
            && response
                .content_length()
                .is_some_and(|len| len > self.max_body_bytes as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| transport_error(&shown, &e))?
        {
            if body.len() + chunk.len() > self.max_body_bytes {
                match overflow {
                    BodyOverflow::Reject => return Err(too_large()),
                    BodyOverflow::Truncate => break,
                }
            }
            body.extend_from_slice(&chunk);
        }
        Ok(HttpResponse {
            url: url.clone(),
            status,
            headers,
            body,
        })
    }
}

/// What to do with a body beyond the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyOverflow {
    Reject,
    /// Only the status and headers matter (a discovery probe).
    Truncate,
}

impl HttpExecutor {
    /// POSTs a JSON body the way an MCP client does (`Accept` JSON and SSE) and returns the status
    /// and headers; the body is read under the same cap.
    pub async fn probe_post_json(
        &self,
        url: &Url,
        body: &'static str,
    ) -> Result<HttpResponse, WireError> {
        let shown = redacted_url(url);
        let response = self
            .client
            .post(url.clone())
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| transport_error(&shown, &e))?;
        self.collect(response, url, shown, BodyOverflow::Truncate)
            .await
    }
}

/// A transport failure without reqwest's own wording, which repeats the URL with its query.
pub(crate) fn transport_error(url: &str, e: &reqwest::Error) -> WireError {
    let kind = if e.is_timeout() {
        TransportKind::Timeout
    } else if e.is_connect() {
        TransportKind::Connect
    } else {
        TransportKind::Other
    };
    // reqwest's Display includes the URL with its query; rebuild the message without it.
    let message = match kind {
        TransportKind::Timeout => "timed out".to_owned(),
        TransportKind::Connect => "connection failed".to_owned(),
        TransportKind::Other => {
            let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
            let mut text = String::from("request failed");
            while let Some(s) = source {
                text = s.to_string();
                source = s.source();
            }
            text
        }
    };
    WireError::Transport {
        url: url.to_owned(),
        kind,
        message,
    }
}
