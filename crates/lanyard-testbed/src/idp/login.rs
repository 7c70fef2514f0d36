//! The IdP's browser-facing side: `/authorize` with its login page, the `/login` form target, and
//! the RFC 8628 device authorization endpoint with its `/device` verification page. Pages are
//! deliberately plain HTML whose forms a scripted browser can fill by string matching.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde_json::json;

use super::{DeviceRequest, DeviceStatus, IdpState, IssuedCode, PendingAuthorization};
use crate::oauth::{parse_form, random_token, token_response};

/// Minimal HTML escaping for attribute values and text.
pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn error_page(status: StatusCode, message: &str) -> Response {
    (
        status,
        Html(format!(
            "<!doctype html><title>Sign-in error</title><h1>Sign-in error</h1><p id=\"error\">{}</p>",
            escape(message)
        )),
    )
        .into_response()
}

/// Whether `uri` is a loopback redirect URI a native app may use (any port).
fn is_loopback_redirect(uri: &str) -> bool {
    let Ok(url) = url::Url::parse(uri) else {
        return false;
    };
    url.scheme() == "http"
        && matches!(
            url.host_str(),
            Some("127.0.0.1") | Some("localhost") | Some("[::1]")
        )
        && url.fragment().is_none()
}

fn redirect(location: &str) -> Response {
    (
        StatusCode::FOUND,
        [(header::LOCATION, location.to_string())],
    )
        .into_response()
}

fn redirect_with(state: &IdpState, redirect_uri: &str, params: &[(&str, &str)]) -> Response {
    let Ok(mut url) = url::Url::parse(redirect_uri) else {
        return error_page(StatusCode::BAD_REQUEST, "invalid redirect_uri");
    };
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
        if state.config.advertise_iss_parameter {
            q.append_pair("iss", &state.issuer);
        }
    }
    redirect(url.as_str())
}

/// `GET /authorize`: validates the request and renders the login page.
pub(crate) async fn authorize(
    State(state): State<Arc<IdpState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    state
        .counters
        .authorize_requests
        .fetch_add(1, Ordering::SeqCst);
    let Some(client_id) = q.get("client_id") else {
        return error_page(StatusCode::BAD_REQUEST, "client_id is required");
    };
    if !state
        .config
        .clients
        .iter()
        .any(|c| &c.client_id == client_id)
    {
        return error_page(
            StatusCode::BAD_REQUEST,
            &format!("unknown client {client_id}"),
        );
    }
    let Some(redirect_uri) = q.get("redirect_uri") else {
        return error_page(StatusCode::BAD_REQUEST, "redirect_uri is required");
    };
    if !is_loopback_redirect(redirect_uri) {
        return error_page(
            StatusCode::BAD_REQUEST,
            "redirect_uri must be http://127.0.0.1:<port>/… or http://localhost:<port>/…",
        );
    }
    let state_param = q.get("state").cloned();
    let fail = |error: &str, description: &str| {
        let mut params = vec![("error", error), ("error_description", description)];
        if let Some(s) = &state_param {
            params.push(("state", s));
        }
        redirect_with(&state, redirect_uri, &params)
    };
    if q.get("response_type").map(String::as_str) != Some("code") {
        return fail("unsupported_response_type", "response_type must be code");
    }
    let scope = q.get("scope").cloned().unwrap_or_default();
    if !scope.split_whitespace().any(|s| s == "openid") {
        return fail("invalid_scope", "scope must include openid");
    }
    let Some(code_challenge) = q.get("code_challenge") else {
        return fail("invalid_request", "PKCE code_challenge is required");
    };
    if q.get("code_challenge_method").map(String::as_str) != Some("S256") {
        return fail("invalid_request", "code_challenge_method must be S256");
    }
    if q.get("prompt").map(String::as_str) == Some("none") {
        return fail("login_required", "no session at the testbed IdP");
    }
    if let Some(max_age) = q.get("max_age") {
        if max_age.parse::<u64>().is_err() {
            return fail("invalid_request", "max_age must be a number of seconds");
        }
    }
    let request_id = random_token(16);
    state.data().pending.insert(
        request_id.clone(),
        PendingAuthorization {
            client_id: client_id.clone(),
            redirect_uri: redirect_uri.clone(),
            state: state_param.clone(),
            nonce: q.get("nonce").cloned(),
            scope,
            code_challenge: code_challenge.clone(),
        },
    );
    let forms = account_forms(&state, &format!("{}/login", state.base_path), &request_id);
    Html(format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Lanyard testbed IdP — sign in</title></head>\
         <body><h1>Sign in to the testbed IdP</h1><p>Client: {}</p>\n{forms}</body></html>\n",
        escape(client_id)
    ))
    .into_response()
}

/// One form per test user, posting `request` (the pending sign-in's id) and the chosen `user` to
/// `action`: the account picker of both login pages (OIDC and SAML).
pub(crate) fn account_forms(state: &IdpState, action: &str, request_id: &str) -> String {
    state
        .config
        .users
        .iter()
        .map(|u| {
            format!(
                "<form method=\"post\" action=\"{action}\" data-user=\"{sub}\" data-email=\"{email}\">\
                 <input type=\"hidden\" name=\"request\" value=\"{id}\">\
                 <button type=\"submit\" name=\"user\" value=\"{sub}\">Sign in as {name} &lt;{email}&gt;</button>\
                 </form>\n",
                action = escape(action),
                sub = escape(&u.sub),
                email = escape(&u.email),
                name = escape(&u.name),
                id = escape(request_id),
            )
        })
        .collect()
}

/// `POST /login`: the user picked an account; redirect to the app with a code.
pub(crate) async fn login(State(state): State<Arc<IdpState>>, body: Bytes) -> Response {
    let form = parse_form(&body);
    let (Some(request_id), Some(who)) = (form.get("request"), form.get("user")) else {
        return error_page(StatusCode::BAD_REQUEST, "request and user are required");
    };
    let Some(user) = state.user(who).cloned() else {
        return error_page(StatusCode::BAD_REQUEST, &format!("unknown user {who}"));
    };
    let Some(pending) = state.data().pending.remove(request_id) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "unknown or already used sign-in request",
        );
    };
    let now = state.clock.unix();
    let code = random_token(24);
    state.data().codes.insert(
        code.clone(),
        IssuedCode {
            client_id: pending.client_id,
            redirect_uri: pending.redirect_uri.clone(),
            nonce: pending.nonce,
            scope: pending.scope,
            code_challenge: pending.code_challenge,
            sub: user.sub,
            auth_time: now,
            expires_at: now + 120,
        },
    );
    state.counters.logins.fetch_add(1, Ordering::SeqCst);
    let mut params = vec![("code", code.as_str())];
    if let Some(s) = &pending.state {
        params.push(("state", s));
    }
    redirect_with(&state, &pending.redirect_uri, &params)
}

fn user_code() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
    let mut rng = rand::thread_rng();
    let mut code = String::with_capacity(9);
    for i in 0..8 {
        if i == 4 {
            code.push('-');
        }
        code.push(char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]));
    }
    code
}

/// `POST /device_authorization` (RFC 8628 §3.1).
pub(crate) async fn device_authorization(
    State(state): State<Arc<IdpState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = parse_form(&body);
    let client = match state.verifier().authenticate(&headers, &form) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    state
        .counters
        .device_authorizations
        .fetch_add(1, Ordering::SeqCst);
    let device_code = random_token(24);
    let user_code = user_code();
    let lifetime = state.config.device_code_lifetime.as_secs();
    let interval = state.config.device_interval_secs;
    state.data().devices.insert(
        device_code.clone(),
        DeviceRequest {
            client_id: client.client_id,
            scope: form.get("scope").cloned().unwrap_or_default(),
            user_code: user_code.clone(),
            expires_at: state.clock.unix() + lifetime,
            interval,
            last_poll: None,
            status: DeviceStatus::Pending,
        },
    );
    let verification_uri = format!("{}/device", state.base_url);
    token_response(json!({
        "device_code": device_code,
        "user_code": user_code,
        "verification_uri": verification_uri,
        "verification_uri_complete": format!("{verification_uri}?user_code={user_code}"),
        "expires_in": lifetime,
        "interval": interval,
    }))
}

fn normalise_user_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

fn find_device<'a>(
    devices: &'a mut HashMap<String, DeviceRequest>,
    code: &str,
) -> Option<&'a mut DeviceRequest> {
    let wanted = normalise_user_code(code);
    devices
        .values_mut()
        .find(|d| normalise_user_code(&d.user_code) == wanted)
}

/// `GET /device`: asks for the user code, or (with `user_code`) lists the accounts to approve as.
pub(crate) async fn device_page(
    State(state): State<Arc<IdpState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let action = escape(&format!("{}/device", state.base_path));
    let Some(code) = q.get("user_code") else {
        return Html(format!(
            "<!doctype html><title>Device sign-in</title><h1>Enter the code shown on your device</h1>\
             <form method=\"get\" action=\"{action}\"><input name=\"user_code\"><button type=\"submit\">Continue</button></form>"
        ))
        .into_response();
    };
    let known = {
        let mut data = state.data();
        find_device(&mut data.devices, code)
            .map(|d| d.status == DeviceStatus::Pending)
            .unwrap_or(false)
    };
    if !known {
        return error_page(StatusCode::BAD_REQUEST, "unknown or used device code");
    }
    let code = escape(code);
    let forms: String = state
        .config
        .users
        .iter()
        .map(|u| {
            format!(
                "<form method=\"post\" action=\"{action}\" data-user=\"{sub}\" data-email=\"{email}\">\
                 <input type=\"hidden\" name=\"user_code\" value=\"{code}\">\
                 <button type=\"submit\" name=\"user\" value=\"{sub}\">Approve as {name} &lt;{email}&gt;</button></form>\n",
                sub = escape(&u.sub),
                email = escape(&u.email),
                name = escape(&u.name),
            )
        })
        .collect();
    Html(format!(
        "<!doctype html><title>Device sign-in</title><h1>Approve device {code}</h1>\n{forms}\
         <form method=\"post\" action=\"{action}\" data-user=\"deny\"><input type=\"hidden\" name=\"user_code\" value=\"{code}\">\
         <button type=\"submit\" name=\"deny\" value=\"1\">Deny</button></form>\n"
    ))
    .into_response()
}

/// `POST /device`: approves (or denies) a device code.
pub(crate) async fn device_submit(State(state): State<Arc<IdpState>>, body: Bytes) -> Response {
    let form = parse_form(&body);
    let Some(code) = form.get("user_code") else {
        return error_page(StatusCode::BAD_REQUEST, "user_code is required");
    };
    let approved_as = if form.contains_key("deny") {
        None
    } else {
        match form.get("user").and_then(|who| state.user(who)) {
            Some(u) => Some(u.sub.clone()),
            None => return error_page(StatusCode::BAD_REQUEST, "unknown user"),
        }
    };
    let now = state.clock.unix();
    let mut data = state.data();
    let Some(device) = find_device(&mut data.devices, code) else {
        return error_page(StatusCode::BAD_REQUEST, "unknown device code");
    };
    if device.status != DeviceStatus::Pending || device.expires_at <= now {
        return error_page(
            StatusCode::BAD_REQUEST,
            "device code expired or already used",
        );
    }
    let message = match approved_as {
        Some(sub) => {
            device.status = DeviceStatus::Approved {
                sub,
                auth_time: now,
            };
            "Device approved. You can close this window."
        }
        None => {
            device.status = DeviceStatus::Denied;
            "Device denied."
        }
    };
    Html(format!(
        "<!doctype html><title>Device sign-in</title><p id=\"result\">{message}</p>"
    ))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_redirects_only() {
        assert!(is_loopback_redirect("http://127.0.0.1:49152/callback"));
        assert!(is_loopback_redirect("http://localhost:8080/cb"));
        assert!(!is_loopback_redirect("https://127.0.0.1/cb"));
        assert!(!is_loopback_redirect("http://evil.example/cb"));
    }

    #[test]
    fn user_codes_normalise() {
        assert_eq!(normalise_user_code("bcdf-ghjk"), "BCDFGHJK");
    }
}
