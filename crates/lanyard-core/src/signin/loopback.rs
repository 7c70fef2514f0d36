//! The RFC 8252 loopback redirect listener: `http://127.0.0.1:<ephemeral port>/callback`.
//!
//! It accepts exactly one redirect that carries the expected `state` (and, when the IdP advertises
//! RFC 9207, the expected `iss`), answers it with a "you can close this tab" page, and then stops
//! listening. Anything else — a favicon request, a stale tab's redirect — gets an error page and
//! does not end the wait. Requests are read with a size cap and a per-connection timeout.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use url::Url;

use super::SignInError;
use crate::secret::Secret;

const CALLBACK_PATH: &str = "/callback";
const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// A bound listener waiting for the IdP's redirect.
#[derive(Debug)]
pub struct LoopbackListener {
    listener: TcpListener,
    redirect_uri: String,
}

/// What the redirect must carry to be ours.
#[derive(Debug, Clone)]
pub struct ExpectedRedirect {
    pub state: String,
    /// `Some` when the IdP advertises `authorization_response_iss_parameter_supported`.
    pub issuer: Option<String>,
}

impl LoopbackListener {
    pub async fn bind() -> Result<Self, SignInError> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| SignInError::Loopback(format!("cannot listen on 127.0.0.1: {e}")))?;
        let port = listener
            .local_addr()
            .map_err(|e| SignInError::Loopback(format!("no local address: {e}")))?
            .port();
        Ok(Self {
            listener,
            redirect_uri: format!("http://127.0.0.1:{port}{CALLBACK_PATH}"),
        })
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
        tokio::time::timeout(timeout, async {
            loop {
                let (stream, _) = self
                    .listener
                    .accept()
                    .await
                    .map_err(|e| SignInError::Loopback(format!("accept failed: {e}")))?;
                match handle_connection(stream, expected).await {
                    Some(result) => return result,
                    None => continue,
                }
            }
        })
        .await
        .map_err(|_| SignInError::TimedOut)?
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
    if let Some(issuer) = &expected.issuer {
        if param("iss").as_deref() != Some(issuer.as_str()) {
            respond(
                &mut stream,
                400,
                "The sign-in answer came from an unexpected identity provider.",
            )
            .await;
            return Some(Err(SignInError::IssuerMismatch {
                expected: issuer.clone(),
                found: param("iss"),
            }));
        }
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
        404 => "Not Found",
        405 => "Method Not Allowed",
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
