//! The IdP token endpoint: authorization code (PKCE), refresh token with rotation, RFC 8693 token
//! exchange to an ID-JAG under the allow/deny and step-up policy, and device-code polling.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use jsonwebtoken::Algorithm;
use serde_json::{json, Map, Value};

use super::{lock, DeviceStatus, IdpState, RefreshGrant};
use crate::config::RegisteredClient;
use crate::keys::{audience_contains, verify_signature};
#[cfg(target_os = "linux")]
use crate::oauth::TOKEN_TYPE_SAML2;
use crate::oauth::{
    parse_form, pkce_s256, random_token, token_response, OAuthError, GRANT_DEVICE_CODE,
    GRANT_TOKEN_EXCHANGE, JWT_TYPE_ID_JAG, TOKEN_TYPE_ID_JAG, TOKEN_TYPE_ID_TOKEN,
    TOKEN_TYPE_REFRESH_TOKEN,
};

type Form = HashMap<String, String>;

/// `POST /token`.
pub(crate) async fn token(
    State(state): State<Arc<IdpState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = parse_form(&body);
    let client = match state.verifier().authenticate(&headers, &form) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let result = match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => authorization_code(&state, &client, &form),
        Some("refresh_token") => refresh(&state, &client, &form),
        Some(GRANT_TOKEN_EXCHANGE)
            if form.get("requested_token_type").map(String::as_str)
                == Some(TOKEN_TYPE_REFRESH_TOKEN) =>
        {
            let r = saml_exchange(&state, &client, &form);
            let counter = if r.is_ok() {
                &state.counters.saml_exchanges
            } else {
                &state.counters.rejected_saml_exchanges
            };
            counter.fetch_add(1, Ordering::SeqCst);
            r
        }
        Some(GRANT_TOKEN_EXCHANGE) => {
            let jkt = match crate::dpop::at_token_endpoint(
                &state.proofs,
                &headers,
                &state.token_endpoint_url(),
                &state.clock,
            ) {
                Ok(jkt) => jkt,
                Err(refusal) => return *refusal,
            };
            let r = token_exchange(&state, &client, &form, jkt.as_deref());
            let counter = if r.is_ok() {
                &state.counters.token_exchanges
            } else {
                &state.counters.rejected_token_exchanges
            };
            counter.fetch_add(1, Ordering::SeqCst);
            r
        }
        Some(GRANT_DEVICE_CODE) => device_code(&state, &client, &form),
        Some(other) => Err(OAuthError::new(
            "unsupported_grant_type",
            format!("grant_type {other} is not supported"),
        )),
        None => Err(OAuthError::invalid_request("grant_type is required")),
    };
    lock(&state.counters.wire_secrets).record(&form, result.as_ref().ok());
    match result {
        Ok(body) => token_response(body),
        Err(e) => e.into_response(),
    }
}

fn has_scope(scope: &str, wanted: &str) -> bool {
    scope.split_whitespace().any(|s| s == wanted)
}

/// Issues an ID token, an opaque access token and (with `offline_access`) a refresh token.
fn issue_tokens(
    state: &IdpState,
    client_id: &str,
    sub: &str,
    scope: &str,
    auth_time: u64,
    nonce: Option<&str>,
    session_end: Option<u64>,
) -> Result<Value, OAuthError> {
    let id_token = id_token(state, client_id, sub, auth_time, nonce)?;
    let mut body = json!({
        "access_token": format!("idp-at-{}", random_token(24)),
        "token_type": "Bearer",
        "expires_in": state.config.access_token_lifetime.as_secs(),
        "id_token": id_token,
        "scope": scope,
    });
    if has_scope(scope, "offline_access") {
        let refresh_token = format!("idp-rt-{}", random_token(32));
        state.data().refresh.insert(
            refresh_token.clone(),
            RefreshGrant {
                client_id: client_id.to_string(),
                sub: sub.to_string(),
                scope: scope.to_string(),
                auth_time,
                expires_at: session_end,
            },
        );
        body["refresh_token"] = Value::String(refresh_token);
    }
    Ok(body)
}

fn id_token(
    state: &IdpState,
    client_id: &str,
    sub: &str,
    auth_time: u64,
    nonce: Option<&str>,
) -> Result<String, OAuthError> {
    let now = state.clock.unix();
    let user = state.user(sub);
    let mut claims = json!({
        "iss": state.issuer,
        "sub": sub,
        "aud": client_id,
        "azp": client_id,
        "iat": now,
        "exp": now + state.config.id_token_lifetime.as_secs(),
        "auth_time": auth_time,
        "jti": random_token(12),
    });
    if let Some(u) = user {
        claims["email"] = Value::String(u.email.clone());
        claims["email_verified"] = Value::Bool(true);
        claims["name"] = Value::String(u.name.clone());
    }
    if let Some(n) = nonce {
        claims["nonce"] = Value::String(n.to_string());
    }
    state
        .signing_key()
        .sign("JWT", &claims)
        .map_err(|e| OAuthError::server_error(format!("signing failed: {e}")))
}

fn authorization_code(
    state: &IdpState,
    client: &RegisteredClient,
    form: &Form,
) -> Result<Value, OAuthError> {
    let code = form
        .get("code")
        .ok_or_else(|| OAuthError::invalid_request("code is required"))?;
    // Single use: the code is gone whatever happens next.
    let issued = state
        .data()
        .codes
        .remove(code)
        .ok_or_else(|| OAuthError::invalid_grant("unknown, expired or already used code"))?;
    if issued.client_id != client.client_id {
        return Err(OAuthError::invalid_grant(
            "code was issued to another client",
        ));
    }
    if issued.expires_at <= state.clock.unix() {
        return Err(OAuthError::invalid_grant("code expired"));
    }
    if form.get("redirect_uri") != Some(&issued.redirect_uri) {
        return Err(OAuthError::invalid_grant(
            "redirect_uri does not match the authorization request",
        ));
    }
    let verifier = form
        .get("code_verifier")
        .ok_or_else(|| OAuthError::invalid_request("code_verifier is required (PKCE)"))?;
    if pkce_s256(verifier) != issued.code_challenge {
        return Err(OAuthError::invalid_grant("PKCE verification failed"));
    }
    state.counters.code_grants.fetch_add(1, Ordering::SeqCst);
    issue_tokens(
        state,
        &client.client_id,
        &issued.sub,
        &issued.scope,
        issued.auth_time,
        issued.nonce.as_deref(),
        None,
    )
}

fn refresh(state: &IdpState, client: &RegisteredClient, form: &Form) -> Result<Value, OAuthError> {
    let token = form
        .get("refresh_token")
        .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
    let grant = {
        let mut data = state.data();
        match data.refresh.get(token) {
            Some(g) if g.client_id == client.client_id => data.refresh.remove(token),
            _ => None,
        }
    };
    let Some(grant) = grant else {
        state
            .counters
            .rejected_refreshes
            .fetch_add(1, Ordering::SeqCst);
        return Err(OAuthError::invalid_grant(
            "refresh token is invalid, revoked or already used",
        ));
    };
    if grant
        .expires_at
        .is_some_and(|end| end <= state.clock.unix())
    {
        state
            .counters
            .rejected_refreshes
            .fetch_add(1, Ordering::SeqCst);
        return Err(OAuthError::invalid_grant(
            "the IdP session has expired; sign in again",
        ));
    }
    let scope = match form.get("scope") {
        Some(requested) => {
            if let Some(extra) = requested
                .split_whitespace()
                .find(|s| !has_scope(&grant.scope, s))
            {
                return Err(OAuthError::new(
                    "invalid_scope",
                    format!("scope {extra} was not granted originally"),
                ));
            }
            // Keep offline_access so the rotated refresh token is issued.
            let mut s = requested.clone();
            if !has_scope(&s, "offline_access") {
                s.push_str(" offline_access");
            }
            s
        }
        None => grant.scope.clone(),
    };
    state.counters.refresh_grants.fetch_add(1, Ordering::SeqCst);
    issue_tokens(
        state,
        &client.client_id,
        &grant.sub,
        &scope,
        grant.auth_time,
        None,
        grant.expires_at,
    )
}

/// A SAML 2.0 assertion → an IdP refresh token (the ID-JAG draft's SAML interoperability
/// section): the assertion is checked by [`super::saml::check_assertion`].
#[cfg(target_os = "linux")]
fn saml_exchange(
    state: &IdpState,
    client: &RegisteredClient,
    form: &Form,
) -> Result<Value, OAuthError> {
    match form.get("subject_token_type").map(String::as_str) {
        Some(TOKEN_TYPE_SAML2) => {}
        other => {
            return Err(OAuthError::invalid_request(format!(
                "a refresh token is issued for a {TOKEN_TYPE_SAML2} subject token, not {}",
                other.unwrap_or("none")
            )))
        }
    }
    let subject_token = form
        .get("subject_token")
        .ok_or_else(|| OAuthError::invalid_request("subject_token is required"))?;
    let user = super::saml::check_assertion(state, client, subject_token)?;
    let scope = form
        .get("scope")
        .cloned()
        .unwrap_or_else(|| "openid offline_access".to_string());
    let now = state.clock.unix();
    let lifetime = state.config.saml_session_lifetime.as_secs();
    let refresh_token = format!("idp-rt-{}", random_token(32));
    state.data().refresh.insert(
        refresh_token.clone(),
        RefreshGrant {
            client_id: client.client_id.clone(),
            sub: user.sub,
            scope: scope.clone(),
            auth_time: user.auth_time,
            expires_at: Some(now + lifetime),
        },
    );
    // RFC 8693 §2.2.1: the issued token is `access_token` whatever its type.
    Ok(json!({
        "issued_token_type": TOKEN_TYPE_REFRESH_TOKEN,
        "access_token": refresh_token,
        "token_type": "N_A",
        "scope": scope,
        "expires_in": lifetime,
    }))
}

#[cfg(not(target_os = "linux"))]
fn saml_exchange(
    _state: &IdpState,
    _client: &RegisteredClient,
    _form: &Form,
) -> Result<Value, OAuthError> {
    Err(OAuthError::invalid_request(
        "this testbed was built without SAML support",
    ))
}

/// Who a subject token speaks for.
struct Subject {
    sub: String,
    auth_time: u64,
    email: Option<String>,
}

/// An ID token as the subject of an ID-JAG exchange: signed here, for this client, unexpired,
/// not from a revoked session.
fn id_token_subject(
    state: &IdpState,
    client: &RegisteredClient,
    subject_token: &str,
) -> Result<Subject, OAuthError> {
    let mut verified = None;
    let mut failure = String::from("no signing key");
    for key in state.verification_keys() {
        match verify_signature(subject_token, key.decoding_key(), &[Algorithm::RS256]) {
            Ok(claims) => {
                verified = Some(claims);
                break;
            }
            Err(e) => failure = e.to_string(),
        }
    }
    let claims = verified.ok_or_else(|| {
        OAuthError::invalid_grant(format!("subject_token is not valid: {failure}"))
    })?;
    if claims.get("iss").and_then(Value::as_str) != Some(state.issuer.as_str()) {
        return Err(OAuthError::invalid_grant(
            "subject_token was not issued here",
        ));
    }
    if !audience_contains(claims.get("aud"), &client.client_id) {
        return Err(OAuthError::invalid_grant(
            "subject_token was issued to another client",
        ));
    }
    let now = state.clock.unix();
    let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
    if exp <= now {
        return Err(OAuthError::invalid_grant("subject_token expired"));
    }
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let iat = claims.get("iat").and_then(Value::as_u64).unwrap_or(0);
    if let Some(valid_after) = state.data().sessions_valid_after.get(&sub) {
        if iat < *valid_after {
            return Err(OAuthError::invalid_grant(
                "the user's session was revoked; sign in again",
            ));
        }
    }
    let auth_time = claims
        .get("auth_time")
        .and_then(Value::as_u64)
        .unwrap_or(iat);
    let email = state.user(&sub).map(|u| u.email.clone()).or_else(|| {
        claims
            .get("email")
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    Ok(Subject {
        sub,
        auth_time,
        email,
    })
}

/// A refresh token as the subject of an ID-JAG exchange (the draft: validated as for a refresh
/// grant — issued here, bound to this client, unexpired, not revoked). It is not spent: the same
/// refresh token mints an ID-JAG per server until it is rotated by a refresh grant or expires.
fn refresh_token_subject(
    state: &IdpState,
    client: &RegisteredClient,
    subject_token: &str,
) -> Result<Subject, OAuthError> {
    let grant = state.data().refresh.get(subject_token).cloned();
    let grant = match grant {
        Some(g) if g.client_id == client.client_id => g,
        _ => {
            return Err(OAuthError::invalid_grant(
                "subject_token is not a live refresh token of this client",
            ))
        }
    };
    if grant
        .expires_at
        .is_some_and(|end| end <= state.clock.unix())
    {
        return Err(OAuthError::invalid_grant(
            "the IdP session has expired; sign in again",
        ));
    }
    Ok(Subject {
        email: state.user(&grant.sub).map(|u| u.email.clone()),
        sub: grant.sub,
        auth_time: grant.auth_time,
    })
}

fn token_exchange(
    state: &IdpState,
    client: &RegisteredClient,
    form: &Form,
    jkt: Option<&str>,
) -> Result<Value, OAuthError> {
    match form.get("requested_token_type").map(String::as_str) {
        Some(TOKEN_TYPE_ID_JAG) => {}
        Some(other) => {
            return Err(OAuthError::invalid_request(format!(
                "requested_token_type {other} is not supported; use {TOKEN_TYPE_ID_JAG}"
            )))
        }
        None => {
            return Err(OAuthError::invalid_request(
                "requested_token_type is required",
            ))
        }
    }
    let subject_token = form
        .get("subject_token")
        .ok_or_else(|| OAuthError::invalid_request("subject_token is required"))?;
    let subject_type = form
        .get("subject_token_type")
        .map(String::as_str)
        .ok_or_else(|| OAuthError::invalid_request("subject_token_type is required"))?;
    if !matches!(subject_type, TOKEN_TYPE_ID_TOKEN | TOKEN_TYPE_REFRESH_TOKEN) {
        return Err(OAuthError::invalid_request(format!(
            "subject_token_type {subject_type} is not supported"
        )));
    }
    let audience = form
        .get("audience")
        .ok_or_else(|| OAuthError::invalid_request("audience (the AS issuer) is required"))?;
    let known_client_id = state.audiences.get(audience).cloned();
    if known_client_id.is_none() && state.config.reject_unknown_audience {
        return Err(OAuthError::new(
            "invalid_target",
            format!("{audience} is not a known authorization server"),
        ));
    }
    let Subject {
        sub,
        auth_time,
        email,
    } = if subject_type == TOKEN_TYPE_REFRESH_TOKEN {
        refresh_token_subject(state, client, subject_token)?
    } else {
        id_token_subject(state, client, subject_token)?
    };
    let now = state.clock.unix();
    let shown_user = email.clone().unwrap_or_else(|| sub.clone());

    {
        let policy = lock(&state.policy);
        let denied = policy.denied.contains(&(sub.clone(), audience.clone()))
            || email
                .as_ref()
                .is_some_and(|e| policy.denied.contains(&(e.clone(), audience.clone())));
        if denied {
            return Err(OAuthError::new(
                "access_denied",
                format!("{shown_user} is not allowed to use {audience} by policy"),
            ));
        }
        if let Some(max_age) = policy.step_up.get(audience) {
            if now.saturating_sub(auth_time) > max_age.as_secs() {
                return Err(OAuthError::new(
                    "insufficient_user_authentication",
                    format!(
                        "{audience} requires a sign-in within the last {} seconds",
                        max_age.as_secs()
                    ),
                )
                .with("max_age", json!(max_age.as_secs())));
            }
        }
    }

    let lifetime = state.config.id_jag_lifetime.as_secs();
    let mut jag = Map::new();
    jag.insert("iss".into(), json!(state.issuer));
    jag.insert("sub".into(), json!(sub));
    jag.insert("aud".into(), json!(audience));
    jag.insert(
        "client_id".into(),
        json!(known_client_id.unwrap_or_else(|| client.client_id.clone())),
    );
    jag.insert("jti".into(), json!(random_token(16)));
    jag.insert("iat".into(), json!(now));
    jag.insert("exp".into(), json!(now + lifetime));
    jag.insert("auth_time".into(), json!(auth_time));
    if let Some(resource) = form.get("resource") {
        jag.insert("resource".into(), json!(resource));
    }
    if let Some(scope) = form.get("scope") {
        jag.insert("scope".into(), json!(scope));
    }
    if let Some(email) = &email {
        jag.insert("email".into(), json!(email));
    }
    if let Some(jkt) = jkt {
        // Only the holder of the proof's key can redeem it (ID-JAG draft, DPoP profile).
        jag.insert("cnf".into(), json!({ "jkt": jkt }));
        state.counters.bound_id_jags.fetch_add(1, Ordering::SeqCst);
    }
    let token = state
        .signing_key()
        .sign(JWT_TYPE_ID_JAG, &Value::Object(jag))
        .map_err(|e| OAuthError::server_error(format!("signing failed: {e}")))?;
    let mut body = json!({
        "issued_token_type": TOKEN_TYPE_ID_JAG,
        "access_token": token,
        "token_type": "N_A",
        "expires_in": lifetime,
    });
    if let Some(scope) = form.get("scope") {
        body["scope"] = json!(scope);
    }
    Ok(body)
}

fn device_code(
    state: &IdpState,
    client: &RegisteredClient,
    form: &Form,
) -> Result<Value, OAuthError> {
    let code = form
        .get("device_code")
        .ok_or_else(|| OAuthError::invalid_request("device_code is required"))?;
    let now_time = state.clock.now();
    let now = state.clock.unix();
    let approved = {
        let mut data = state.data();
        let Some(device) = data.devices.get_mut(code) else {
            return Err(OAuthError::invalid_grant("unknown device_code"));
        };
        if device.client_id != client.client_id {
            return Err(OAuthError::invalid_grant(
                "device_code was issued to another client",
            ));
        }
        if device.expires_at <= now {
            data.devices.remove(code);
            return Err(OAuthError::new("expired_token", "device_code expired"));
        }
        let too_fast = device.last_poll.is_some_and(|last| {
            let elapsed = now_time.duration_since(last).unwrap_or(Duration::ZERO);
            elapsed + Duration::from_millis(250) < Duration::from_secs(device.interval)
        });
        device.last_poll = Some(now_time);
        if too_fast {
            device.interval += 5;
            return Err(OAuthError::new("slow_down", "polling too fast")
                .with("interval", json!(device.interval)));
        }
        match device.status.clone() {
            DeviceStatus::Pending => {
                return Err(OAuthError::new(
                    "authorization_pending",
                    "the user has not approved yet",
                ))
            }
            DeviceStatus::Denied => {
                data.devices.remove(code);
                return Err(OAuthError::new(
                    "access_denied",
                    "the user denied the request",
                ));
            }
            DeviceStatus::Approved { sub, auth_time } => {
                let scope = device.scope.clone();
                data.devices.remove(code);
                (sub, auth_time, scope)
            }
        }
    };
    let (sub, auth_time, scope) = approved;
    state.counters.device_grants.fetch_add(1, Ordering::SeqCst);
    let scope = if scope.is_empty() {
        "openid".to_string()
    } else {
        scope
    };
    issue_tokens(
        state,
        &client.client_id,
        &sub,
        &scope,
        auth_time,
        None,
        None,
    )
}
