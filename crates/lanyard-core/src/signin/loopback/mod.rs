//! The RFC 8252 loopback redirect listener: `http://127.0.0.1:<ephemeral port>/callback`.
//!
//! It accepts exactly one redirect that carries the expected `state` (and, when the IdP advertises
//! RFC 9207, the expected `iss`), answers it with a "you can close this tab" page, and then stops
//! listening. Anything else — a favicon request, a stale tab's redirect — gets an error page and
//! does not end the wait. Requests are read with a size cap and a per-connection timeout, and
//! served concurrently (up to [`MAX_CONNECTIONS`]), so a client that connects and says nothing
//! delays no one.
//!
//! Any local process can connect to a loopback port, and another user can read the authorization
//! URL (and so `state`) from the browser's command line. So a connection is read only when the OS
//! says its client socket belongs to the user Lanyard runs as (Linux: `/proc/net/tcp{,6}`;
//! Windows: the owning process's token; see [`crate::os::tcp_peer`]); anyone else's gets a 403
//! page and the wait goes on. macOS offers no such check: there any local process's redirect is
//! read, and `state` (with PKCE, and for SAML the assertion's own confirmation data) is the guard.
//!
//! For a SAML sign-in the same listener is the assertion consumer service: the IdP's page posts
//! `SAMLResponse` and `RelayState` as `application/x-www-form-urlencoded` to the same path (SAML
//! HTTP-POST binding). `RelayState` plays `state`'s part; a post without the expected one gets an
//! error page and the wait goes on, as does one larger than [`MAX_SAML_RESPONSE_BYTES`] (answered
//! 413 without reading it). What the post carries is checked by [`read_saml_post`], a pure
//! function.

use std::net::SocketAddr;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use url::Url;

use super::saml::MAX_SAML_RESPONSE_BYTES;
use super::SignInError;
use crate::os::tcp_peer::{loopback_peer_owner, PeerOwner};
use crate::secret::Secret;

const CALLBACK_PATH: &str = "/callback";
const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// A bound listener waiting for the IdP's redirect.
#[derive(Debug)]
pub struct LoopbackListener {
    listener: TcpListener,
    local: SocketAddr,
    redirect_uri: String,
    start: Option<StartPage>,
}

/// The loopback address the browser is given instead of the sign-in page's own URL
/// ([`LoopbackListener::start_page`]): `GET` on it answers 302 to `target`.
#[derive(Debug, Clone)]
struct StartPage {
    path: String,
    target: Url,
}

const START_PREFIX: &str = "/start/";

/// What the redirect must carry to be ours.
#[derive(Debug, Clone)]
pub struct ExpectedRedirect {
    pub state: String,
    /// `Some` when the IdP advertises `authorization_response_iss_parameter_supported`.
    pub issuer: Option<String>,
    /// The issuer recorded for this request: an `iss` the redirect carries is compared with it
    /// even when not advertised (RFC 9207 §2.4), byte for byte.
    pub known_issuer: Option<String>,
}

impl LoopbackListener {
    pub async fn bind() -> Result<Self, SignInError> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| SignInError::Loopback(format!("cannot listen on 127.0.0.1: {e}")))?;
        let local = listener
            .local_addr()
            .map_err(|e| SignInError::Loopback(format!("no local address: {e}")))?;
        let port = local.port();
        Ok(Self {
            listener,
            local,
            redirect_uri: format!("http://127.0.0.1:{port}{CALLBACK_PATH}"),
            start: None,
        })
    }

    /// An opaque loopback address, `http://127.0.0.1:<port>/start/<random>`, that redirects
    /// (302) to `target` while this listener waits. Given to the browser instead of `target`, it
    /// keeps the authorization URL (its `state`, PKCE challenge, SAML request id) off every
    /// command line, where another local user could read it (`/proc/<pid>/cmdline`). Only this
    /// user's processes get the redirect (the same check as the sign-in answer).
    pub fn start_page(&mut self, target: &Url) -> Result<Url, SignInError> {
        let path = format!("{START_PREFIX}{}", super::random_id());
        let url = Url::parse(&format!("http://127.0.0.1:{}{path}", self.local.port()))
            .map_err(|e| SignInError::Loopback(format!("no start address: {e}")))?;
        self.start = Some(StartPage {
            path,
            target: target.clone(),
        });
        Ok(url)
    }

    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// Waits (up to `timeout`) for the matching redirect and returns its authorization code.
    pub async fn wait_for_code(
        self,
        expected: &ExpectedRedirect,
        timeout: Duration,
    ) -> Result<Secret, SignInError> {
        self.serve_until(timeout, |stream| handle_connection(stream, expected))
            .await
    }

    /// Answers connections, many at once, until `handle` settles the sign-in (`Some`) or `timeout`
    /// passes; `None` from `handle` means "not ours, answered, keep waiting".
    ///
    /// Before a byte is read, the client socket's owner is asked of the OS
    /// ([`loopback_peer_owner`]): a connection from another user's process (or one the OS cannot
    /// attribute) gets a 403 page and does not end the wait. At most [`MAX_CONNECTIONS`] are
    /// served at once; one more is answered 503 at once, so a silent or slow client holds a slot,
    /// never the genuine redirect.
    async fn serve_until<T, F, Fut>(self, timeout: Duration, handle: F) -> Result<T, SignInError>
    where
        F: Fn(TcpStream) -> Fut,
        Fut: std::future::Future<Output = Option<Result<T, SignInError>>>,
    {
        let mut serving = FuturesUnordered::new();
        let mut refusing = FuturesUnordered::new();
        tokio::time::timeout(timeout, async {
            loop {
                tokio::select! {
                    accepted = self.listener.accept() => {
                        let (stream, peer) = accepted
                            .map_err(|e| SignInError::Loopback(format!("accept failed: {e}")))?;
                        if let Err(why) = admit(self.local, peer) {
                            tracing::warn!(%peer, reason = %why, "refused a connection to the sign-in listener: not from this user's processes");
                            if refusing.len() < MAX_CONNECTIONS {
                                refusing.push(refuse(stream, 403, "This sign-in answer did not come from your own session."));
                            }
                        } else if serving.len() >= MAX_CONNECTIONS {
                            tracing::debug!(%peer, "the sign-in listener is busy; answered 503");
                            if refusing.len() < MAX_CONNECTIONS {
                                refusing.push(refuse(stream, 503, "Lanyard is busy; try again."));
                            }
                        } else {
                            serving.push(serve_connection(stream, self.start.as_ref(), &handle));
                        }
                    }
                    Some(outcome) = serving.next(), if !serving.is_empty() => {
                        if let Some(result) = outcome {
                            return result;
                        }
                    }
                    Some(()) = refusing.next(), if !refusing.is_empty() => {}
                }
            }
        })
        .await
        .map_err(|_| SignInError::TimedOut)?
    }
}

/// One admitted connection: the start page's redirect when it asks for that, else `handle`'s.
async fn serve_connection<T, F, Fut>(
    stream: TcpStream,
    start: Option<&StartPage>,
    handle: &F,
) -> Option<Result<T, SignInError>>
where
    F: Fn(TcpStream) -> Fut,
    Fut: std::future::Future<Output = Option<Result<T, SignInError>>>,
{
    if let Some(start) = start {
        let opening = format!("GET {START_PREFIX}");
        let peeked = tokio::time::timeout(
            Duration::from_secs(5),
            peek_at_least(&stream, opening.len()),
        )
        .await
        .ok()
        .flatten()?;
        if peeked.starts_with(opening.as_bytes()) {
            serve_start_page(stream, start).await;
            return None;
        }
    }
    handle(stream).await
}

/// The first `n` bytes the client sent (fewer if it closed), left unread for the handler.
async fn peek_at_least(stream: &TcpStream, n: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; n];
    loop {
        let got = stream.peek(&mut buf).await.ok()?;
        if got >= n || got == 0 {
            buf.truncate(got);
            return Some(buf);
        }
        // A request line split across packets: wait for the rest.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn serve_start_page(mut stream: TcpStream, start: &StartPage) {
    let Ok(Some(head)) = tokio::time::timeout(Duration::from_secs(5), read_head(&mut stream)).await
    else {
        return;
    };
    let target = head
        .lines()
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .unwrap_or_default();
    if target != start.path {
        respond(
            &mut stream,
            404,
            "This sign-in link is out of date. Start the sign-in again from Lanyard.",
        )
        .await;
        return;
    }
    let response = format!(
        "HTTP/1.1 302 Found\r\nLocation: {}\r\nContent-Length: 0\r\nCache-Control: no-store\r\n\
         Referrer-Policy: no-referrer\r\nConnection: close\r\n\r\n",
        start.target
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// The most connections the listener serves at once (and, apart, the most it is refusing).
pub const MAX_CONNECTIONS: usize = 32;

/// Whether a connection from `peer` may be read: its socket is this user's, or the OS cannot
/// tell anyone's (macOS, see [`crate::os::tcp_peer`]).
fn admit(listener: SocketAddr, peer: SocketAddr) -> Result<(), String> {
    match loopback_peer_owner(listener, peer) {
        PeerOwner::SameUser | PeerOwner::Unchecked => Ok(()),
        PeerOwner::OtherUser(who) => Err(format!("the client socket belongs to {who}")),
        PeerOwner::Unknown(why) => Err(why),
    }
}

/// Answers a refused connection without looking at what it sent, within a short time. What it
/// sent is read and dropped after the answer: closing a socket with unread data resets the
/// connection, and the client could lose the answer.
async fn refuse(mut stream: TcpStream, status: u16, message: &'static str) {
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        respond(&mut stream, status, message).await;
        let mut sink = [0u8; 4096];
        let mut left = MAX_REQUEST_HEAD * 4;
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

/// What a SAML post to the loopback is, read by [`read_saml_post`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SamlPostError {
    #[error("the request is not a POST")]
    NotPost,
    #[error("the request goes to {0:?}, not the sign-in path")]
    WrongPath(String),
    #[error("the post is not application/x-www-form-urlencoded")]
    NotForm,
    #[error("the post declares no Content-Length")]
    NoLength,
    #[error("the post is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the post carries no SAMLResponse")]
    NoResponse,
    #[error("the post's RelayState is not this sign-in's")]
    RelayStateMismatch,
}

/// The largest body taken: the response, the relay state and form encoding's overhead.
pub const MAX_SAML_POST_BYTES: usize = MAX_SAML_RESPONSE_BYTES * 3 / 2 + 4096;

/// The head of a SAML post: checks method, path, content type and declared length against
/// [`MAX_SAML_POST_BYTES`] before a byte of the body is read. Returns the body's length.
pub fn check_saml_post_head(head: &str) -> Result<usize, SamlPostError> {
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    if parts.next() != Some("POST") {
        return Err(SamlPostError::NotPost);
    }
    let target = parts.next().unwrap_or_default();
    let path = target.split('?').next().unwrap_or_default();
    if path != CALLBACK_PATH {
        return Err(SamlPostError::WrongPath(path.chars().take(80).collect()));
    }
    let header = |name: &str| {
        head.split("\r\n").skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    let form = header("content-type").is_some_and(|t| {
        t.split(';').next().is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
    });
    if !form {
        return Err(SamlPostError::NotForm);
    }
    let length: usize = header("content-length")
        .and_then(|l| l.parse().ok())
        .ok_or(SamlPostError::NoLength)?;
    if length > MAX_SAML_POST_BYTES {
        return Err(SamlPostError::TooLarge(MAX_SAML_POST_BYTES));
    }
    Ok(length)
}

/// The body of a SAML post: its `SAMLResponse`, when `RelayState` is `relay_state`.
pub fn read_saml_post(body: &[u8], relay_state: &str) -> Result<Secret, SamlPostError> {
    if body.len() > MAX_SAML_POST_BYTES {
        return Err(SamlPostError::TooLarge(MAX_SAML_POST_BYTES));
    }
    let mut response = None;
    let mut relay = None;
    for (k, v) in url::form_urlencoded::parse(body) {
        match &*k {
            "SAMLResponse" if response.is_none() => response = Some(v.into_owned()),
            "RelayState" if relay.is_none() => relay = Some(v.into_owned()),
            _ => {}
        }
    }
    if relay.as_deref() != Some(relay_state) {
        return Err(SamlPostError::RelayStateMismatch);
    }
    match response {
        Some(r) if !r.is_empty() => Ok(Secret::new(r)),
        _ => Err(SamlPostError::NoResponse),
    }
}

impl LoopbackListener {
    /// Waits (up to `timeout`) for the IdP's SAML post carrying `relay_state`, and returns its
    /// `SAMLResponse` (base64, as posted).
    pub async fn wait_for_saml_response(
        self,
        relay_state: &str,
        timeout: Duration,
    ) -> Result<Secret, SignInError> {
        self.serve_until(timeout, |stream| async move {
            handle_saml_connection(stream, relay_state).await.map(Ok)
        })
        .await
    }
}

/// `None`: not our post (answered with an error page), keep waiting.
async fn handle_saml_connection(mut stream: TcpStream, relay_state: &str) -> Option<Secret> {
    let deadline = Duration::from_secs(10);
    let (head, mut body) =
        match tokio::time::timeout(deadline, read_head_and_rest(&mut stream)).await {
            Ok(Some(read)) => read,
            _ => return None,
        };
    let length = match check_saml_post_head(&head) {
        Ok(length) => length,
        Err(e) => {
            let status = match e {
                SamlPostError::NotPost => 405,
                SamlPostError::WrongPath(_) => 404,
                SamlPostError::TooLarge(_) => 413,
                SamlPostError::NoLength => 411,
                _ => 400,
            };
            tracing::debug!(error = %e, "a request to the sign-in listener was not the SAML post");
            respond(&mut stream, status, "Not a sign-in answer.").await;
            return None;
        }
    };
    let read_rest = async {
        let mut chunk = vec![0u8; 16 * 1024];
        while body.len() < length {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        Some(())
    };
    if !matches!(
        tokio::time::timeout(deadline, read_rest).await,
        Ok(Some(()))
    ) {
        return None;
    }
    body.truncate(length);
    match read_saml_post(&body, relay_state) {
        Ok(response) => {
            respond(
                &mut stream,
                200,
                "You are signed in to Lanyard. You can close this tab.",
            )
            .await;
            Some(response)
        }
        Err(SamlPostError::RelayStateMismatch) => {
            respond(
                &mut stream,
                400,
                "This sign-in link is out of date. Start the sign-in again from Lanyard.",
            )
            .await;
            None
        }
        Err(e) => {
            respond(&mut stream, 400, &format!("Not a sign-in answer: {e}.")).await;
            None
        }
    }
}

/// The request head and whatever of the body came with it.
async fn read_head_and_rest(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            return Some((head, buf[end + 4..].to_vec()));
        }
        if buf.len() > MAX_REQUEST_HEAD {
            return None;
        }
    }
}

/// `None`: not our redirect, keep waiting. `Some`: the sign-in's outcome.
async fn handle_connection(
    mut stream: TcpStream,
    expected: &ExpectedRedirect,
) -> Option<Result<Secret, SignInError>> {
    let head = match tokio::time::timeout(Duration::from_secs(5), read_head(&mut stream)).await {
        Ok(Some(head)) => head,
        _ => return None,
    };
    let target = head.lines().next().and_then(|line| {
        let mut parts = line.split(' ');
        match (parts.next(), parts.next()) {
            (Some("GET"), Some(target)) => Some(target.to_owned()),
            _ => None,
        }
    });
    let Some(target) = target else {
        respond(&mut stream, 405, "Not a sign-in redirect.").await;
        return None;
    };
    let Ok(url) = Url::parse(&format!("http://127.0.0.1{target}")) else {
        respond(&mut stream, 400, "Not a sign-in redirect.").await;
        return None;
    };
    if url.path() != CALLBACK_PATH {
        respond(&mut stream, 404, "Not found.").await;
        return None;
    }
    let param = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    if param("state").as_deref() != Some(expected.state.as_str()) {
        respond(
            &mut stream,
            400,
            "This sign-in link is out of date. Start the sign-in again from Lanyard.",
        )
        .await;
        return None;
    }
    // RFC 9207: an advertised `iss` must be there and right; one that was not advertised is still
    // compared with the issuer recorded for the request when it comes.
    let found = param("iss");
    let wrong_issuer = match (&expected.issuer, &expected.known_issuer, &found) {
        (Some(required), _, found) => {
            (found.as_deref() != Some(required.as_str())).then_some(required)
        }
        (None, Some(known), Some(found)) => (found != known).then_some(known),
        _ => None,
    };
    if let Some(wanted) = wrong_issuer {
        respond(
            &mut stream,
            400,
            "The sign-in answer came from an unexpected identity provider.",
        )
        .await;
        return Some(Err(SignInError::IssuerMismatch {
            expected: wanted.clone(),
            found,
        }));
    }
    if let Some(error) = param("error") {
        respond(
            &mut stream,
            200,
            "Sign-in was not completed. You can close this tab and return to Lanyard.",
        )
        .await;
        return Some(Err(SignInError::AuthorizationDenied {
            error,
            description: param("error_description"),
        }));
    }
    match param("code") {
        Some(code) if !code.is_empty() => {
            respond(
                &mut stream,
                200,
                "You are signed in to Lanyard. You can close this tab.",
            )
            .await;
            Some(Ok(Secret::new(code)))
        }
        _ => {
            respond(&mut stream, 400, "The sign-in answer carried no code.").await;
            None
        }
    }
}

async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            return Some(String::from_utf8_lossy(&buf).into_owned());
        }
        if buf.len() > MAX_REQUEST_HEAD {
            return None;
        }
    }
}

async fn respond(stream: &mut TcpStream, status: u16, message: &str) {
    let reason = match status {
        200 => "OK",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Content Too Large",
        503 => "Service Unavailable",
        _ => "Bad Request",
    };
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Lanyard</title>\
         <style>body{{font-family:system-ui,sans-serif;display:flex;align-items:center;justify-content:center;\
         height:90vh;color:#222}}@media(prefers-color-scheme:dark){{body{{background:#1e1e1e;color:#eee}}}}</style>\
         </head><body><p>{message}</p></body></html>"
    );
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests;
