//! Injected trouble: global latency and per-component, per-endpoint faults (error status, slow
//! answer, malformed JSON, oversized body, denial), one-shot or persistent. Applied by an axum
//! middleware in front of every component; the handlers themselves know nothing about faults.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::oauth::error_json;

/// An endpoint of a component, for targeting faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// OpenID / RFC 8414 metadata documents.
    Metadata,
    /// The JWKS document.
    Jwks,
    /// `/authorize` (IdP).
    Authorize,
    /// `/login` (IdP login form target).
    Login,
    /// The token endpoint.
    Token,
    /// The RFC 7009 revocation endpoint.
    Revoke,
    /// `/device_authorization` (IdP).
    DeviceAuthorization,
    /// `/device` verification page (IdP).
    Device,
    /// RFC 9728 protected resource metadata (MCP server).
    ProtectedResourceMetadata,
    /// The MCP endpoint itself.
    Mcp,
}

/// What to do instead of (or before) answering normally.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and a JSON error body.
    Status(u16),
    /// Wait this long, then answer normally.
    Slow(Duration),
    /// Do the work at once (a refresh token is rotated, a code spent), but hold the answer this
    /// long: the client hears of it late, or never if it goes away meanwhile.
    SlowAnswer(Duration),
    /// Answer 200 with a truncated JSON body.
    MalformedJson,
    /// Answer 200 with a valid-looking JSON body of about this many bytes.
    Oversized(usize),
    /// Refuse: 403 on the MCP endpoint, `400 access_denied` elsewhere.
    Deny,
}

/// Whether a fault fires once or until cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultMode {
    /// Fires on the next matching request only.
    Once,
    /// Fires on every matching request until cleared.
    Persistent,
}

#[derive(Clone, Debug)]
struct FaultRule {
    endpoint: Option<Endpoint>,
    fault: Fault,
    mode: FaultMode,
}

/// The fault switchboard of one component. Cheap to clone; clones share state.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    rules: Arc<Mutex<Vec<FaultRule>>>,
    /// Requests seen per endpoint, answered or faulted (a retry storm shows here).
    requests: Arc<Mutex<HashMap<Endpoint, u64>>>,
}

impl Faults {
    /// Injects `fault` on `endpoint` of this component.
    pub fn inject(&self, endpoint: Endpoint, fault: Fault, mode: FaultMode) {
        self.push(Some(endpoint), fault, mode);
    }

    /// Injects `fault` on every endpoint of this component.
    pub fn inject_all(&self, fault: Fault, mode: FaultMode) {
        self.push(None, fault, mode);
    }

    fn push(&self, endpoint: Option<Endpoint>, fault: Fault, mode: FaultMode) {
        if let Ok(mut rules) = self.rules.lock() {
            rules.push(FaultRule {
                endpoint,
                fault,
                mode,
            });
        }
    }

    /// Removes every fault of this component.
    pub fn clear(&self) {
        if let Ok(mut rules) = self.rules.lock() {
            rules.clear();
        }
    }

    /// Removes the faults aimed at `endpoint`.
    pub fn clear_endpoint(&self, endpoint: Endpoint) {
        if let Ok(mut rules) = self.rules.lock() {
            rules.retain(|r| r.endpoint != Some(endpoint));
        }
    }

    /// Number of faults still armed.
    pub fn armed(&self) -> usize {
        self.rules.lock().map(|r| r.len()).unwrap_or(0)
    }

    /// Requests that reached `endpoint` of this component so far, faulted ones included.
    pub fn requests(&self, endpoint: Endpoint) -> u64 {
        self.requests
            .lock()
            .map(|r| r.get(&endpoint).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    fn take(&self, endpoint: Endpoint) -> Option<Fault> {
        if let Ok(mut requests) = self.requests.lock() {
            *requests.entry(endpoint).or_default() += 1;
        }
        let mut rules = self.rules.lock().ok()?;
        let index = rules
            .iter()
            .position(|r| r.endpoint.is_none() || r.endpoint == Some(endpoint))?;
        let fault = rules[index].fault.clone();
        if rules[index].mode == FaultMode::Once {
            rules.remove(index);
        }
        Some(fault)
    }
}

/// Latency added to every request of every component. Cheap to clone; clones share state.
#[derive(Clone, Debug, Default)]
pub struct Latency {
    ms: Arc<AtomicU64>,
}

impl Latency {
    /// Sets the latency.
    pub fn set(&self, latency: Duration) {
        let ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        self.ms.store(ms, Ordering::SeqCst);
    }

    /// The current latency.
    pub fn get(&self) -> Duration {
        Duration::from_millis(self.ms.load(Ordering::SeqCst))
    }
}

/// State of the fault middleware of one component.
#[derive(Clone, Debug)]
pub(crate) struct FaultLayer {
    pub faults: Faults,
    /// The component's clock: its answers carry it in `Date`, as a real server's would.
    pub clock: crate::clock::TestClock,
    pub latency: Latency,
    /// Request path → endpoint.
    pub routes: Arc<HashMap<String, Endpoint>>,
    /// The component's name in [`crate::Traffic`]: `idp` or the authorization server's name.
    pub component: Arc<str>,
    pub traffic: crate::traffic::Traffic,
}

/// axum middleware: sleeps the global latency, applies the first matching fault, and dates the
/// answer by the component's own clock.
pub(crate) async fn apply_faults(
    State(layer): State<FaultLayer>,
    req: Request,
    next: Next,
) -> Response {
    let mut response = answer(&layer, req, next).await;
    if let Ok(date) = HeaderValue::from_str(&httpdate::fmt_http_date(layer.clock.now())) {
        response.headers_mut().insert(header::DATE, date);
    }
    response
}

async fn answer(layer: &FaultLayer, req: Request, next: Next) -> Response {
    let endpoint = layer.routes.get(req.uri().path()).copied();
    // Counted from arrival: the injected latency stands for the network, and the client has the
    // request in flight all along.
    let _in_flight =
        (endpoint == Some(Endpoint::Token)).then(|| layer.traffic.begin(&layer.component));
    let latency = layer.latency.get();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(endpoint) = endpoint {
        match layer.faults.take(endpoint) {
            Some(Fault::Slow(delay)) => tokio::time::sleep(delay).await,
            Some(Fault::SlowAnswer(delay)) => {
                let response = next.run(req).await;
                tokio::time::sleep(delay).await;
                return response;
            }
            Some(fault) => return fault_response(&fault, endpoint),
            None => {}
        }
    }
    next.run(req).await
}

fn fault_response(fault: &Fault, endpoint: Endpoint) -> Response {
    match fault {
        Fault::Status(code) => {
            let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let error = if status.is_server_error() {
                "server_error"
            } else {
                "injected_fault"
            };
            (
                status,
                Json(error_json(
                    error,
                    &format!("injected fault: HTTP {}", status.as_u16()),
                )),
            )
                .into_response()
        }
        Fault::MalformedJson => json_body(
            StatusCode::OK,
            "{\"access_token\": \"eyJhbGciOi\", \"token_type\": \"Bea".to_string(),
        ),
        Fault::Oversized(bytes) => {
            let mut body = String::with_capacity(bytes + 64);
            body.push_str("{\"token_type\":\"Bearer\",\"padding\":\"");
            body.extend(std::iter::repeat_n('A', *bytes));
            body.push_str("\"}");
            json_body(StatusCode::OK, body)
        }
        Fault::Deny if endpoint == Endpoint::Mcp => (
            StatusCode::FORBIDDEN,
            Json(error_json("access_denied", "injected fault: denied")),
        )
            .into_response(),
        Fault::Deny => (
            StatusCode::BAD_REQUEST,
            Json(error_json("access_denied", "injected fault: denied")),
        )
            .into_response(),
        Fault::Slow(_) | Fault::SlowAnswer(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn json_body(status: StatusCode, body: String) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_fires_once_and_persistent_until_cleared() {
        let faults = Faults::default();
        faults.inject(Endpoint::Token, Fault::Status(503), FaultMode::Once);
        assert_eq!(faults.take(Endpoint::Jwks), None);
        assert_eq!(faults.take(Endpoint::Token), Some(Fault::Status(503)));
        assert_eq!(faults.take(Endpoint::Token), None);
        faults.inject_all(Fault::Deny, FaultMode::Persistent);
        assert_eq!(faults.take(Endpoint::Mcp), Some(Fault::Deny));
        assert_eq!(faults.take(Endpoint::Mcp), Some(Fault::Deny));
        faults.clear();
        assert_eq!(faults.take(Endpoint::Mcp), None);
        assert_eq!(faults.requests(Endpoint::Token), 2);
        assert_eq!(faults.requests(Endpoint::Mcp), 3);
    }
}
