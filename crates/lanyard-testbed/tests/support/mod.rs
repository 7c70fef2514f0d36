//! What the integration tests share: a tiny loopback "app" that receives the IdP redirect, PKCE,
//! and thin HTTP wrappers for each leg of the protocol. Deliberately independent of lanyard-core.
#![allow(dead_code)]

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use lanyard_testbed::oauth::{
    GRANT_JWT_BEARER, GRANT_TOKEN_EXCHANGE, TOKEN_TYPE_ID_JAG, TOKEN_TYPE_ID_TOKEN,
};
use lanyard_testbed::{complete_login, AsHandle, McpHandle, Testbed};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// A loopback listener answering every GET with "signed in"; returns its redirect URI.
pub async fn loopback() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new().route("/callback", axum::routing::get(|| async { "signed in" }));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/callback")
}

pub fn pkce() -> (String, String) {
    let verifier = format!("verifier-{}", rand_string());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

pub fn rand_string() -> String {
    lanyard_testbed::oauth::pkce_s256(&format!("{:?}", std::time::Instant::now()))
}

pub fn query_param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

pub async fn post_form(url: &str, form: &[(&str, &str)]) -> (u16, Value) {
    post_form_with(http().post(url), form).await
}

pub async fn post_form_with(req: reqwest::RequestBuilder, form: &[(&str, &str)]) -> (u16, Value) {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form.iter())
        .finish();
    let resp = req
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("send");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Tokens from a sign-in.
pub struct SignIn {
    pub id_token: String,
    pub refresh_token: Option<String>,
    pub body: Value,
}

pub fn authorize_url(
    tb: &Testbed,
    redirect_uri: &str,
    challenge: &str,
    extra: &[(&str, &str)],
) -> String {
    let mut url = url::Url::parse(&tb.idp().authorization_endpoint()).expect("url");
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", "lanyard-desktop")
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("scope", "openid offline_access email")
        .append_pair("state", "st-123")
        .append_pair("nonce", "n-456")
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "S256")
        .extend_pairs(extra.iter());
    url.to_string()
}

/// Signs `user` in through the scripted browser and redeems the code.
pub async fn sign_in(tb: &Testbed, user: &str) -> SignIn {
    let redirect_uri = loopback().await;
    let (verifier, challenge) = pkce();
    let url = authorize_url(tb, &redirect_uri, &challenge, &[]);
    let visit = complete_login(&url, user).await.expect("login");
    assert_eq!(visit.body, "signed in");
    assert_eq!(
        query_param(&visit.redirect_url, "state").as_deref(),
        Some("st-123")
    );
    assert_eq!(
        query_param(&visit.redirect_url, "iss").as_deref(),
        Some(tb.idp().issuer())
    );
    let code = query_param(&visit.redirect_url, "code").expect("code");
    let (status, body) = post_form(
        &tb.idp().token_endpoint(),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &redirect_uri),
            ("code_verifier", &verifier),
            ("client_id", "lanyard-desktop"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    SignIn {
        id_token: body["id_token"].as_str().expect("id_token").to_string(),
        refresh_token: body["refresh_token"].as_str().map(str::to_string),
        body,
    }
}

/// Leg 2: ID token → ID-JAG for `audience`.
pub async fn exchange(
    tb: &Testbed,
    id_token: &str,
    audience: &str,
    resource: &str,
    scope: &str,
) -> (u16, Value) {
    post_form(
        &tb.idp().token_endpoint(),
        &[
            ("grant_type", GRANT_TOKEN_EXCHANGE),
            ("requested_token_type", TOKEN_TYPE_ID_JAG),
            ("subject_token", id_token),
            ("subject_token_type", TOKEN_TYPE_ID_TOKEN),
            ("audience", audience),
            ("resource", resource),
            ("scope", scope),
            ("client_id", "lanyard-desktop"),
        ],
    )
    .await
}

/// Leg 3: ID-JAG → access token (public client `client_id`).
pub async fn jwt_bearer(
    auth: &AsHandle,
    jag: &str,
    client_id: &str,
    resource: &str,
    scope: &str,
) -> (u16, Value) {
    post_form(
        &auth.token_endpoint(),
        &[
            ("grant_type", GRANT_JWT_BEARER),
            ("assertion", jag),
            ("client_id", client_id),
            ("resource", resource),
            ("scope", scope),
        ],
    )
    .await
}

/// Legs 2 and 3 for the named MCP server; returns the access token.
pub async fn access_token(tb: &Testbed, id_token: &str, mcp_name: &str) -> String {
    let mcp = tb.mcp_server(mcp_name).expect("mcp");
    let auth = tb.auth_server_for(mcp_name).expect("as");
    let scope = mcp.required_scopes().join(" ");
    let (status, body) = exchange(tb, id_token, auth.issuer(), mcp.resource(), &scope).await;
    assert_eq!(status, 200, "{body}");
    let client_id = auth.clients()[0].client_id.clone();
    let jag = body["access_token"].as_str().expect("jag").to_string();
    let (status, body) = jwt_bearer(auth, &jag, &client_id, mcp.resource(), &scope).await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().expect("at").to_string()
}

/// One JSON-RPC call; returns status, headers and body.
pub async fn rpc(
    mcp: &McpHandle,
    token: Option<&str>,
    method: &str,
    params: Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = http()
        .post(mcp.url())
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("send");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("text");
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Claims of a JWT, unverified (tests only).
pub fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("json")
}

/// Header of a JWT (tests only).
pub fn jwt_header(jwt: &str) -> Value {
    let header = jwt.split('.').next().expect("header");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("b64")).expect("json")
}
