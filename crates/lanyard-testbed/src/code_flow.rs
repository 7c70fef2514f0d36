//! The authorization server's side of the standard MCP authorization (OAuth 2.1 authorization
//! code + PKCE), for servers without Enterprise-Managed Authorization: an authorization endpoint
//! that approves at once as the configured user (the consent a person would give), RFC 7591
//! dynamic registration of public clients, RFC 9207 `iss` on the redirect, and the code exchange
//! with its PKCE and `resource` checks (tokens bound when the server binds, see
//! [`crate::AsConfig::with_dpop`]; refresh tokens revoked at its RFC 7009 endpoint). Faults a test switches on at runtime: a redirect with a
//! foreign `state` or `iss`. It keeps codes and registrations in memory only.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::auth_server::{lock, AsState, RefreshGrant};
use crate::config::RegisteredClient;
use crate::oauth::{pkce_s256, random_token, scopes, OAuthError};

/// How the authorization endpoint misbehaves, when a test asks it to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedirectFault {
    /// The redirect carries another `state` than the request's.
    WrongState,
    /// The redirect carries another issuer in `iss` (RFC 9207).
    WrongIssuer,
}

/// An authorization code not yet redeemed.
#[derive(Clone, Debug)]
pub(crate) struct CodeGrant {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    resource: Option<String>,
    scope: Vec<String>,
}

fn loopback_redirect(uri: &str) -> bool {
    url::Url::parse(uri).is_ok_and(|u| {
        u.scheme() == "http" && matches!(u.host_str(), Some("127.0.0.1") | Some("localhost"))
    })
}

fn bad_request(what: impl Into<String>) -> Response {
    (StatusCode::BAD_REQUEST, what.into()).into_response()
}

/// `GET {base}/authorize`: checks the request, then redirects to the client with a code.
pub(crate) async fn authorize(
    State(state): State<Arc<AsState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(flow) = state.config.code_flow.clone() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    let client_id = get("client_id");
    if !state.all_clients().iter().any(|c| c.client_id == client_id) {
        return bad_request(format!("unknown client {client_id:?}"));
    }
    let redirect_uri = get("redirect_uri");
    if !loopback_redirect(&redirect_uri) {
        return bad_request("redirect_uri must be a loopback http URL (RFC 8252)");
    }
    if get("response_type") != "code" {
        return bad_request("response_type must be code");
    }
    if get("code_challenge_method") != "S256" || get("code_challenge").is_empty() {
        return bad_request("PKCE S256 is required");
    }
    let resource = q.get("resource").cloned();
    if let Err(e) = state.resource(resource.as_ref(), None) {
        return bad_request(e.description);
    }
    let requested = scopes(q.get("scope"));
    let code = random_token(16);
    lock(&state.codes).insert(
        code.clone(),
        CodeGrant {
            client_id,
            redirect_uri: redirect_uri.clone(),
            challenge: get("code_challenge"),
            resource,
            scope: requested,
        },
    );
    let fault = *lock(&state.redirect_fault);
    let mut target = match url::Url::parse(&redirect_uri) {
        Ok(u) => u,
        Err(_) => return bad_request("redirect_uri is not a URL"),
    };
    {
        let mut query = target.query_pairs_mut();
        query.append_pair("code", &code);
        let state_param = if fault == Some(RedirectFault::WrongState) {
            "forged-state".to_owned()
        } else {
            get("state")
        };
        query.append_pair("state", &state_param);
        if flow.iss_parameter || fault == Some(RedirectFault::WrongIssuer) {
            let iss = if fault == Some(RedirectFault::WrongIssuer) {
                format!("{}/impostor", state.issuer)
            } else {
                state.issuer.clone()
            };
            query.append_pair("iss", &iss);
        }
    }
    (
        StatusCode::FOUND,
        [(header::LOCATION, target.to_string())],
        "",
    )
        .into_response()
}

/// `POST {base}/register` (RFC 7591): public native clients with loopback redirects.
pub(crate) async fn register(State(state): State<Arc<AsState>>, body: Bytes) -> Response {
    let allowed = state
        .config
        .code_flow
        .as_ref()
        .is_some_and(|f| f.dynamic_registration);
    if !allowed {
        return StatusCode::NOT_FOUND.into_response();
    }
    let Ok(document) = serde_json::from_slice::<Value>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_client_metadata", "error_description": "not JSON"})),
        )
            .into_response();
    };
    let redirects_ok = document["redirect_uris"].as_array().is_some_and(|r| {
        !r.is_empty() && r.iter().all(|u| u.as_str().is_some_and(loopback_redirect))
    });
    if !redirects_ok {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_redirect_uri", "error_description": "loopback http redirect URIs only"})),
        )
            .into_response();
    }
    let client_id = format!("dcr-{}", random_token(8));
    lock(&state.registered).push(RegisteredClient::public(client_id.clone()));
    state.counters.registrations.fetch_add(1, Ordering::SeqCst);
    (
        StatusCode::CREATED,
        Json(json!({
            "client_id": client_id,
            "token_endpoint_auth_method": "none",
            "redirect_uris": document["redirect_uris"],
            "grant_types": ["authorization_code", "refresh_token"],
        })),
    )
        .into_response()
}

impl AsState {
    /// The authorization code grant: the code once, its client, redirect URI, PKCE verifier and
    /// resource; tokens for the configured user, with a refresh token when this server gives them,
    /// both bound to the DPoP key `jkt` when the request proved one (RFC 9449).
    pub(crate) fn authorization_code(
        &self,
        client: &RegisteredClient,
        form: &HashMap<String, String>,
        jkt: Option<&str>,
    ) -> Result<Value, OAuthError> {
        let Some(flow) = &self.config.code_flow else {
            return Err(OAuthError::new(
                "unsupported_grant_type",
                "this server does not run the authorization code flow",
            ));
        };
        let code = form
            .get("code")
            .ok_or_else(|| OAuthError::invalid_request("code is required"))?;
        let grant = lock(&self.codes)
            .remove(code)
            .ok_or_else(|| OAuthError::invalid_grant("unknown or used code"))?;
        if grant.client_id != client.client_id {
            return Err(OAuthError::invalid_grant(
                "the code belongs to another client",
            ));
        }
        if form.get("redirect_uri") != Some(&grant.redirect_uri) {
            return Err(OAuthError::invalid_grant(
                "redirect_uri does not match the authorization request",
            ));
        }
        let verifier = form
            .get("code_verifier")
            .ok_or_else(|| OAuthError::invalid_request("code_verifier is required (PKCE)"))?;
        if pkce_s256(verifier) != grant.challenge {
            return Err(OAuthError::invalid_grant("PKCE verification failed"));
        }
        let resource = self.resource(form.get("resource"), grant.resource.as_deref())?;
        let granted: Vec<String> = grant
            .scope
            .iter()
            .filter(|s| {
                self.config.allowed_scopes.is_empty() || self.config.allowed_scopes.contains(s)
            })
            .cloned()
            .collect();
        let mut body = self.mint(
            &flow.subject,
            &client.client_id,
            resource.clone(),
            &granted,
            None,
            jkt,
        )?;
        self.counters.code_mints.fetch_add(1, Ordering::SeqCst);
        self.issue_refresh_token(
            &mut body,
            RefreshGrant {
                sub: flow.subject.clone(),
                client_id: client.client_id.clone(),
                resource,
                scope: granted,
                email: None,
                expires_at: 0,
                jkt: jkt.map(str::to_owned),
            },
        );
        Ok(body)
    }
}
