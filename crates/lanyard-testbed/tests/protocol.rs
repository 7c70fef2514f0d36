//! The testbed over real HTTP on 127.0.0.1: every leg of Enterprise-Managed Authorization, the
//! refusals it must produce, client authentication, faults and runtime controls.

mod support;

use std::time::{Duration, Instant};

use lanyard_testbed::oauth::{GRANT_DEVICE_CODE, GRANT_JWT_BEARER, TOKEN_TYPE_ID_JAG};
use lanyard_testbed::{
    complete_device, AsConfig, ClientAuth, Endpoint, Fault, FaultMode, IdpConfig, McpConfig,
    MetadataStyle, PrmLocation, RegisteredClient, Testbed, TestbedConfig,
};
use serde_json::{json, Value};
use support::*;

#[tokio::test]
async fn full_enterprise_managed_flow() {
    let tb = Testbed::start(TestbedConfig::default())
        .await
        .expect("start");
    let mcp = tb.mcp_server("docs").expect("docs");
    let auth = tb.auth_server("docs").expect("as");

    // Discovery: 401 challenge → PRM → AS metadata; IdP metadata.
    let (status, headers, _) = rpc(mcp, None, "initialize", json!({})).await;
    assert_eq!(status, 401);
    let challenge = headers["www-authenticate"].to_str().expect("str");
    assert!(challenge.contains(&format!(
        "resource_metadata=\"{}\"",
        mcp.resource_metadata_url()
    )));
    assert!(challenge.contains("scope=\"docs.read\""));
    assert!(!challenge.contains("invalid_token"));
    let prm: Value = http()
        .get(mcp.resource_metadata_url())
        .send()
        .await
        .expect("prm")
        .json()
        .await
        .expect("json");
    assert_eq!(prm["resource"], mcp.resource());
    assert_eq!(prm["authorization_servers"][0], auth.issuer());
    let meta: Value = http()
        .get(auth.metadata_url())
        .send()
        .await
        .expect("meta")
        .json()
        .await
        .expect("json");
    assert_eq!(meta["issuer"], auth.issuer());
    assert_eq!(
        meta["authorization_grant_profiles_supported"][0],
        "urn:ietf:params:oauth:grant-profile:id-jag"
    );
    let idp_meta: Value = http()
        .get(tb.idp().discovery_url())
        .send()
        .await
        .expect("idp")
        .json()
        .await
        .expect("json");
    assert_eq!(idp_meta["issuer"], tb.idp().issuer());
    assert_eq!(
        idp_meta["identity_chaining_requested_token_types_supported"][0],
        TOKEN_TYPE_ID_JAG
    );
    assert_eq!(
        idp_meta["authorization_response_iss_parameter_supported"],
        true
    );

    // Leg 1.
    let signin = sign_in(&tb, "alice@example.com").await;
    let id = claims(&signin.id_token);
    assert_eq!(id["sub"], "alice");
    assert_eq!(id["aud"], "lanyard-desktop");
    assert_eq!(id["nonce"], "n-456");
    assert_eq!(id["email"], "alice@example.com");
    assert!(signin.refresh_token.is_some());

    // Leg 2.
    let (status, body) = exchange(
        &tb,
        &signin.id_token,
        auth.issuer(),
        mcp.resource(),
        "docs.read",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["issued_token_type"], TOKEN_TYPE_ID_JAG);
    assert_eq!(body["token_type"], "N_A");
    let jag = body["access_token"].as_str().expect("jag");
    assert_eq!(jwt_header(jag)["typ"], "oauth-id-jag+jwt");
    let jc = claims(jag);
    assert_eq!(jc["aud"], auth.issuer());
    assert_eq!(jc["client_id"], "lanyard-docs");
    assert_eq!(jc["resource"], mcp.resource());
    assert_eq!(
        jc["exp"].as_u64().expect("exp") - jc["iat"].as_u64().expect("iat"),
        300
    );

    // Leg 3.
    let (status, body) = jwt_bearer(auth, jag, "lanyard-docs", mcp.resource(), "docs.read").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert!(body.get("refresh_token").is_none());
    let at = body["access_token"].as_str().expect("at");
    assert_eq!(claims(at)["aud"], mcp.resource());

    // MCP.
    let (status, headers, body) = rpc(
        mcp,
        Some(at),
        "initialize",
        json!({"protocolVersion": "2025-11-25", "capabilities": {}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(headers.contains_key("mcp-session-id"));
    assert_eq!(body["result"]["protocolVersion"], "2025-11-25");
    assert!(body["result"]["capabilities"]["extensions"]
        ["io.modelcontextprotocol/enterprise-managed-authorization"]
        .is_object());
    let (status, _, body) = rpc(
        mcp,
        Some(at),
        "tools/call",
        json!({"name": "whoami", "arguments": {}}),
    )
    .await;
    assert_eq!(status, 200);
    let text = body["result"]["content"][0]["text"].as_str().expect("text");
    assert!(
        text.contains("sub=alice")
            && text.contains("email=alice@example.com")
            && text.contains("client_id=lanyard-docs"),
        "{text}"
    );
    let (_, _, body) = rpc(
        mcp,
        Some(at),
        "tools/call",
        json!({"name": "echo", "arguments": {"text": "hi"}}),
    )
    .await;
    assert_eq!(body["result"]["content"][0]["text"], "hi");

    let idp = tb.idp().stats();
    assert_eq!(
        (idp.authorize_requests, idp.code_grants, idp.token_exchanges),
        (1, 1, 1)
    );
    assert_eq!(auth.stats().jwt_bearer_mints, 1);
    assert_eq!(mcp.stats().tool_calls, 2);
}

#[tokio::test]
async fn replayed_id_jag_is_rejected() {
    let tb = Testbed::start(TestbedConfig::default())
        .await
        .expect("start");
    let mcp = tb.mcp_server("docs").expect("docs");
    let auth = tb.auth_server("docs").expect("as");
    let signin = sign_in(&tb, "bob").await;
    let (_, body) = exchange(
        &tb,
        &signin.id_token,
        auth.issuer(),
        mcp.resource(),
        "docs.read",
    )
    .await;
    let jag = body["access_token"].as_str().expect("jag");
    let (status, _) = jwt_bearer(auth, jag, "lanyard-docs", mcp.resource(), "docs.read").await;
    assert_eq!(status, 200);
    let (status, body) = jwt_bearer(auth, jag, "lanyard-docs", mcp.resource(), "docs.read").await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(body["error_description"], "jti already used");
    assert_eq!(auth.stats().rejected_replays, 1);
}

#[tokio::test]
async fn audience_and_issuer_mismatches_are_rejected() {
    let config = TestbedConfig {
        auth_servers: vec![AsConfig::new("slashy", "lanyard-slashy")
            .with_issuer_path("/tenant-a", true)
            .with_scopes(&["docs.read"])],
        mcp_servers: vec![
            McpConfig::new("docs", "slashy", &["docs.read"]).with_path("/tenant-a/mcp")
        ],
        ..TestbedConfig::default()
    };
    let tb = Testbed::start(config).await.expect("start");
    let auth = tb.auth_server("slashy").expect("as");
    let mcp = tb.mcp_server("docs").expect("mcp");
    assert!(auth.issuer().ends_with("/tenant-a/"));

    // Metadata lives at the path-inserted location and names the issuer with its slash.
    let meta: Value = http()
        .get(auth.metadata_url())
        .send()
        .await
        .expect("meta")
        .json()
        .await
        .expect("json");
    assert_eq!(meta["issuer"], auth.issuer());
    auth.set_wrong_issuer_in_metadata(true);
    let meta: Value = http()
        .get(auth.metadata_url())
        .send()
        .await
        .expect("meta")
        .json()
        .await
        .expect("json");
    assert_ne!(meta["issuer"], auth.issuer());
    auth.set_wrong_issuer_in_metadata(false);

    // Audience without the trailing slash: the IdP issues it, the AS refuses it.
    let signin = sign_in(&tb, "alice").await;
    let no_slash = auth.issuer().trim_end_matches('/');
    let (status, body) =
        exchange(&tb, &signin.id_token, no_slash, mcp.resource(), "docs.read").await;
    assert_eq!(status, 200, "{body}");
    let jag = body["access_token"].as_str().expect("jag");
    let (status, body) = jwt_bearer(auth, jag, "lanyard-slashy", mcp.resource(), "docs.read").await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
    assert!(body["error_description"]
        .as_str()
        .expect("d")
        .contains("audience"));

    // Right audience, wrong client at the AS.
    let (_, body) = exchange(
        &tb,
        &signin.id_token,
        auth.issuer(),
        mcp.resource(),
        "docs.read",
    )
    .await;
    let jag = body["access_token"].as_str().expect("jag");
    let (status, body) = jwt_bearer(auth, jag, "someone-else", mcp.resource(), "docs.read").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    // Unknown resource.
    let (status, body) = jwt_bearer(
        auth,
        jag,
        "lanyard-slashy",
        "http://127.0.0.1:1/other",
        "docs.read",
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_target"))
    );
    // The same ID-JAG still works once everything is right (rejections did not burn the jti).
    let (status, body) = jwt_bearer(auth, jag, "lanyard-slashy", mcp.resource(), "docs.read").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn policy_denies_and_allows() {
    let tb = Testbed::start(TestbedConfig::default())
        .await
        .expect("start");
    let mcp = tb.mcp_server("docs").expect("docs");
    let auth = tb.auth_server("docs").expect("as");
    tb.idp().deny("alice@example.com", auth.issuer());
    let alice = sign_in(&tb, "alice").await;
    let (status, body) = exchange(
        &tb,
        &alice.id_token,
        auth.issuer(),
        mcp.resource(),
        "docs.read",
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "access_denied");
    assert_eq!(
        body["error_description"],
        format!(
            "alice@example.com is not allowed to use {} by policy",
            auth.issuer()
        )
    );
    let bob = sign_in(&tb, "bob").await;
    let (status, _) = exchange(
        &tb,
        &bob.id_token,
        auth.issuer(),
        mcp.resource(),
        "docs.read",
    )
    .await;
    assert_eq!(status, 200);
    tb.idp().allow("alice@example.com", auth.issuer());
    let (status, _) = exchange(
        &tb,
        &alice.id_token,
        auth.issuer(),
        mcp.resource(),
        "docs.read",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(tb.idp().stats().rejected_token_exchanges, 1);
}

#[tokio::test]
async fn step_up_requires_a_fresh_sign_in() {
    let tb = Testbed::start(TestbedConfig::default())
        .await
        .expect("start");
    let mcp = tb.mcp_server("docs").expect("docs");
    let auth = tb.auth_server("docs").expect("as");
    tb.idp()
        .require_auth_within(auth.issuer(), Some(Duration::from_secs(60)));
    let first = sign_in(&tb, "alice").await;
    let (status, _) = exchange(
        &tb,
        &first.id_token,
        auth.issuer(),
        mcp.resource(),
        "docs.read",
    )
    .await;
    assert_eq!(status, 200);
    tb.clock().advance(Duration::from_secs(120));
    let (status, body) = exchange(
        &tb,
        &first.id_token,
        auth.issuer(),
        mcp.resource(),
        "docs.read",
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "insufficient_user_authentication");
    assert_eq!(body["max_age"], 60);
    // Refreshing keeps the original auth_time, so it does not help.
    let (_, refreshed) = post_form(
        &tb.idp().token_endpoint(),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", first.refresh_token.as_deref().expect("rt")),
            ("client_id", "lanyard-desktop"),
        ],
    )
    .await;
    let refreshed_id = refreshed["id_token"].as_str().expect("id");
    assert_eq!(
        claims(refreshed_id)["auth_time"],
        claims(&first.id_token)["auth_time"]
    );
    let (status, _) = exchange(
        &tb,
        refreshed_id,
        auth.issuer(),
        mcp.resource(),
        "docs.read",
    )
    .await;
    assert_eq!(status, 400);
    let again = sign_in(&tb, "alice").await;
    let (status, body) = exchange(
        &tb,
        &again.id_token,
        auth.issuer(),
        mcp.resource(),
        "docs.read",
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn refresh_tokens_rotate_and_revoke() {
    let tb = Testbed::start(TestbedConfig::default())
        .await
        .expect("start");
    let signin = sign_in(&tb, "alice").await;
    let old = signin.refresh_token.expect("rt");
    let (status, body) = refresh(&tb, old.clone()).await;
    assert_eq!(status, 200, "{body}");
    let new = body["refresh_token"].as_str().expect("new rt").to_string();
    assert_ne!(new, old);
    assert!(body["id_token"].is_string());
    let (status, body) = refresh(&tb, old).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, body) = refresh(&tb, new.clone()).await;
    assert_eq!(status, 200, "{body}");
    let newest = body["refresh_token"].as_str().expect("rt").to_string();

    let (status, _) = post_form(
        &tb.idp().revocation_endpoint(),
        &[
            ("token", &newest),
            ("token_type_hint", "refresh_token"),
            ("client_id", "lanyard-desktop"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = refresh(&tb, newest).await;
    assert_eq!(status, 400);
    let stats = tb.idp().stats();
    assert_eq!(stats.refresh_grants, 2);
    assert_eq!(stats.rejected_refreshes, 2);
    assert_eq!(stats.revocations.len(), 1);
    assert_eq!(
        stats.revocations[0].token_type_hint.as_deref(),
        Some("refresh_token")
    );
    assert_eq!(stats.revocations[0].revoked, "refresh_token");

    // Revoking all sessions kills refresh tokens and makes earlier ID tokens useless for exchange.
    let again = sign_in(&tb, "bob").await;
    tb.idp().revoke_all_sessions();
    let (status, _) = refresh(&tb, again.refresh_token.expect("rt")).await;
    assert_eq!(status, 400);
    let auth = tb.auth_server("docs").expect("as");
    let (status, body) = exchange(
        &tb,
        &again.id_token,
        auth.issuer(),
        &auth.resources()[0],
        "docs.read",
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

fn rsa_key_pair() -> (jsonwebtoken::EncodingKey, String) {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::{EncodePublicKey, LineEnding};
    let private = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("rsa");
    let der = private.to_pkcs1_der().expect("der");
    let public_pem = private
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("pem");
    (
        jsonwebtoken::EncodingKey::from_rsa_der(der.as_bytes()),
        public_pem,
    )
}

fn client_assertion(
    key: &jsonwebtoken::EncodingKey,
    client_id: &str,
    aud: &str,
    jti: &str,
) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &json!({"iss": client_id, "sub": client_id, "aud": aud, "jti": jti, "iat": now, "exp": now + 120}),
        key,
    )
    .expect("sign")
}

#[tokio::test]
async fn client_authentication_methods() {
    let (key, public_pem) = tokio::task::spawn_blocking(rsa_key_pair)
        .await
        .expect("keygen");
    let auth_config = AsConfig::new("cc", "public-one")
        .add_client(RegisteredClient::new(
            "basic-one",
            ClientAuth::ClientSecretBasic("s3cret".into()),
        ))
        .add_client(RegisteredClient::new(
            "post-one",
            ClientAuth::ClientSecretPost("p0st".into()),
        ))
        .add_client(RegisteredClient::new(
            "jwt-one",
            ClientAuth::PrivateKeyJwt(public_pem),
        ))
        .with_scopes(&["docs.read"]);
    let config = TestbedConfig {
        auth_servers: vec![auth_config],
        mcp_servers: vec![McpConfig::new("docs", "cc", &["docs.read"])],
        ..TestbedConfig::default()
    };
    let tb = Testbed::start(config).await.expect("start");
    let auth = tb.auth_server("cc").expect("as");
    let mcp = tb.mcp_server("docs").expect("mcp");
    let token = auth.token_endpoint();
    let cc = [
        ("grant_type", "client_credentials"),
        ("scope", "docs.read"),
        ("resource", mcp.resource()),
    ];
    let with = |extra: &[(&'static str, &str)]| {
        let mut v: Vec<(&str, String)> = cc.iter().map(|(k, v)| (*k, v.to_string())).collect();
        v.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        v
    };
    async fn send(req: reqwest::RequestBuilder, form: Vec<(&str, String)>) -> (u16, Value) {
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        post_form_with(req, &pairs).await
    }

    // client_secret_basic
    let (status, body) = send(
        http().post(&token).basic_auth("basic-one", Some("s3cret")),
        with(&[]),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let at = body["access_token"].as_str().expect("at");
    assert_eq!(claims(at)["sub"], "basic-one");
    let (_, _, whoami) = rpc(mcp, Some(at), "tools/call", json!({"name": "whoami"})).await;
    assert!(whoami["result"]["content"][0]["text"]
        .as_str()
        .expect("t")
        .contains("client_id=basic-one"));
    let (status, _) = send(
        http().post(&token).basic_auth("basic-one", Some("wrong")),
        with(&[]),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = send(
        http().post(&token),
        with(&[("client_id", "basic-one"), ("client_secret", "s3cret")]),
    )
    .await;
    assert_eq!(status, 401, "basic client must not use client_secret_post");

    // client_secret_post
    let (status, body) = send(
        http().post(&token),
        with(&[("client_id", "post-one"), ("client_secret", "p0st")]),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = send(
        http().post(&token),
        with(&[("client_id", "post-one"), ("client_secret", "nope")]),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = send(
        http().post(&token).basic_auth("post-one", Some("p0st")),
        with(&[]),
    )
    .await;
    assert_eq!(status, 401, "post client must not use client_secret_basic");

    // private_key_jwt: issuer or token endpoint as aud; replay and wrong aud refused.
    let assertion_type = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
    let a1 = client_assertion(&key, "jwt-one", auth.issuer(), "j1");
    let (status, body) = send(
        http().post(&token),
        with(&[
            ("client_assertion_type", assertion_type),
            ("client_assertion", &a1),
        ]),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(
        http().post(&token),
        with(&[
            ("client_assertion_type", assertion_type),
            ("client_assertion", &a1),
        ]),
    )
    .await;
    assert_eq!(status, 401, "replayed assertion: {body}");
    let a2 = client_assertion(&key, "jwt-one", &token, "j2");
    let (status, _) = send(
        http().post(&token),
        with(&[
            ("client_assertion_type", assertion_type),
            ("client_assertion", &a2),
        ]),
    )
    .await;
    assert_eq!(status, 200);
    let a3 = client_assertion(&key, "jwt-one", "http://127.0.0.1:1/elsewhere", "j3");
    let (status, _) = send(
        http().post(&token),
        with(&[
            ("client_assertion_type", assertion_type),
            ("client_assertion", &a3),
        ]),
    )
    .await;
    assert_eq!(status, 401);
    let (other_key, _) = tokio::task::spawn_blocking(rsa_key_pair)
        .await
        .expect("keygen");
    let a4 = client_assertion(&other_key, "jwt-one", auth.issuer(), "j4");
    let (status, _) = send(
        http().post(&token),
        with(&[
            ("client_assertion_type", assertion_type),
            ("client_assertion", &a4),
        ]),
    )
    .await;
    assert_eq!(status, 401, "wrong signing key");

    // none: fine for jwt-bearer, not for client credentials.
    let (status, body) = send(http().post(&token), with(&[("client_id", "public-one")])).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unauthorized_client"))
    );
    let (status, _) = send(http().post(&token), with(&[("client_id", "unknown")])).await;
    assert_eq!(status, 401);
    assert_eq!(auth.stats().client_credentials_mints, 4);

    // The ID-JAG's client_id names the AS client; a jwt-bearer by that public client works.
    let signin = sign_in(&tb, "alice").await;
    let (_, body) = exchange(
        &tb,
        &signin.id_token,
        auth.issuer(),
        mcp.resource(),
        "docs.read",
    )
    .await;
    let jag = body["access_token"].as_str().expect("jag");
    assert_eq!(claims(jag)["client_id"], "public-one");
    let (status, body) = post_form(
        &token,
        &[
            ("grant_type", GRANT_JWT_BEARER),
            ("assertion", jag),
            ("client_id", "public-one"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn faults_apply_and_clear() {
    let tb = Testbed::start(TestbedConfig::default())
        .await
        .expect("start");
    let auth = tb.auth_server("docs").expect("as");
    let mcp = tb.mcp_server("docs").expect("mcp");
    let idp = tb.idp();
    let discovery = idp.discovery_url();

    idp.faults()
        .inject(Endpoint::Metadata, Fault::Status(503), FaultMode::Once);
    assert_eq!(
        http()
            .get(&discovery)
            .send()
            .await
            .expect("send")
            .status()
            .as_u16(),
        503
    );
    assert_eq!(
        http()
            .get(&discovery)
            .send()
            .await
            .expect("send")
            .status()
            .as_u16(),
        200
    );

    idp.faults().inject(
        Endpoint::Metadata,
        Fault::MalformedJson,
        FaultMode::Persistent,
    );
    for _ in 0..2 {
        let text = http()
            .get(&discovery)
            .send()
            .await
            .expect("send")
            .text()
            .await
            .expect("text");
        assert!(serde_json::from_str::<Value>(&text).is_err());
    }
    idp.faults().clear();
    let ok: Value = http()
        .get(&discovery)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(ok["issuer"], idp.issuer());

    auth.faults()
        .inject(Endpoint::Token, Fault::Oversized(8 << 20), FaultMode::Once);
    let (status, _) = post_form(
        &auth.token_endpoint(),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(status, 200);
    auth.faults()
        .inject(Endpoint::Token, Fault::Oversized(8 << 20), FaultMode::Once);
    let big = http()
        .post(auth.token_endpoint())
        .send()
        .await
        .expect("send")
        .bytes()
        .await
        .expect("bytes");
    assert!(big.len() >= 8 << 20);

    auth.faults().inject(
        Endpoint::Jwks,
        Fault::Slow(Duration::from_millis(300)),
        FaultMode::Once,
    );
    let started = Instant::now();
    assert_eq!(
        http()
            .get(auth.jwks_uri())
            .send()
            .await
            .expect("send")
            .status()
            .as_u16(),
        200
    );
    assert!(started.elapsed() >= Duration::from_millis(300));

    mcp.faults().inject_all(Fault::Deny, FaultMode::Persistent);
    let (status, _, _) = rpc(mcp, Some("anything"), "ping", json!({})).await;
    assert_eq!(status, 403);
    assert_eq!(mcp.faults().armed(), 1);
    tb.clear_faults();
    let (status, _, _) = rpc(mcp, Some("anything"), "ping", json!({})).await;
    assert_eq!(status, 401);

    idp.faults()
        .inject(Endpoint::Token, Fault::Deny, FaultMode::Once);
    let (status, body) = post_form(&idp.token_endpoint(), &[("grant_type", "refresh_token")]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("access_denied"))
    );

    tb.set_latency(Duration::from_millis(200));
    let started = Instant::now();
    http().get(&discovery).send().await.expect("send");
    assert!(started.elapsed() >= Duration::from_millis(200));
    tb.set_latency(Duration::ZERO);
}

#[tokio::test]
async fn mcp_challenges_and_scopes() {
    let tb = Testbed::start(TestbedConfig::default())
        .await
        .expect("start");
    let mcp = tb.mcp_server("docs").expect("mcp");
    let auth = tb.auth_server("docs").expect("as");
    let (status, headers, _) = rpc(mcp, Some("garbage"), "ping", json!({})).await;
    assert_eq!(status, 401);
    assert!(headers["www-authenticate"]
        .to_str()
        .expect("s")
        .contains("error=\"invalid_token\""));

    // Both PRM locations answer.
    let origin = mcp.url().trim_end_matches("/mcp");
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ] {
        let prm: Value = http()
            .get(format!("{origin}{path}"))
            .send()
            .await
            .expect("prm")
            .json()
            .await
            .expect("json");
        assert_eq!(prm["resource"], mcp.resource());
    }

    // A token with only docs.write is refused with 403 insufficient_scope.
    let signin = sign_in(&tb, "alice").await;
    let (_, body) = exchange(
        &tb,
        &signin.id_token,
        auth.issuer(),
        mcp.resource(),
        "docs.write",
    )
    .await;
    let jag = body["access_token"].as_str().expect("jag");
    let (status, body) = jwt_bearer(auth, jag, "lanyard-docs", mcp.resource(), "docs.write").await;
    assert_eq!(status, 200, "{body}");
    let at = body["access_token"].as_str().expect("at");
    let (status, headers, _) = rpc(mcp, Some(at), "tools/list", json!({})).await;
    assert_eq!(status, 403);
    let challenge = headers["www-authenticate"].to_str().expect("s");
    assert!(
        challenge.contains("error=\"insufficient_scope\"")
            && challenge.contains("scope=\"docs.read\"")
    );

    // Expiry follows the test clock.
    let at = access_token(&tb, &signin.id_token, "docs").await;
    let (status, _, body) = rpc(mcp, Some(&at), "tools/list", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(body["result"]["tools"][0]["name"], "whoami");
    tb.clock().advance(Duration::from_secs(301));
    let (status, headers, _) = rpc(mcp, Some(&at), "ping", json!({})).await;
    assert_eq!(status, 401);
    assert!(headers["www-authenticate"]
        .to_str()
        .expect("s")
        .contains("invalid_token"));

    // Notifications are accepted without a body; DELETE ends the session; GET is not offered.
    let resp = http()
        .post(mcp.url())
        .bearer_auth(access_token(&tb, &sign_in(&tb, "bob").await.id_token, "docs").await)
        .json(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 202);
    assert_eq!(
        http()
            .get(mcp.url())
            .send()
            .await
            .expect("get")
            .status()
            .as_u16(),
        405
    );
}

#[tokio::test]
async fn device_flow() {
    let mut config = TestbedConfig::idp_only();
    config.idp.device_interval_secs = 1;
    let tb = Testbed::start(config).await.expect("start");
    let idp = tb.idp();
    let (status, auth) = post_form(
        &idp.device_authorization_endpoint(),
        &[
            ("client_id", "lanyard-desktop"),
            ("scope", "openid offline_access email"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{auth}");
    let device_code = auth["device_code"].as_str().expect("dc");
    let (status, body) = poll(&tb, device_code).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("authorization_pending"))
    );
    let (_, body) = poll(&tb, device_code).await;
    assert_eq!(body["error"], "slow_down");
    complete_device(
        auth["verification_uri_complete"].as_str().expect("uri"),
        "bob@example.com",
    )
    .await
    .expect("approve");
    // The slow_down raised the interval to 6 s; the test clock skips the wait.
    tb.clock().advance(Duration::from_secs(7));
    let (status, body) = poll(&tb, device_code).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(claims(body["id_token"].as_str().expect("id"))["sub"], "bob");
    assert!(body["refresh_token"].is_string());
    let (_, body) = poll(&tb, device_code).await;
    assert_eq!(body["error"], "invalid_grant");

    let (_, auth) = post_form(
        &idp.device_authorization_endpoint(),
        &[("client_id", "lanyard-desktop")],
    )
    .await;
    let device_code = auth["device_code"].as_str().expect("dc").to_string();
    tb.clock().advance(Duration::from_secs(601));
    let (_, body) = post_form(
        &idp.token_endpoint(),
        &[
            ("grant_type", GRANT_DEVICE_CODE),
            ("device_code", &device_code),
            ("client_id", "lanyard-desktop"),
        ],
    )
    .await;
    assert_eq!(body["error"], "expired_token");
}

#[tokio::test]
async fn authorize_rejects_bad_requests() {
    let tb = Testbed::start(TestbedConfig::idp_only())
        .await
        .expect("start");
    let redirect_uri = loopback().await;
    let (_, challenge) = pkce();
    // Non-loopback redirect: an error page, no redirect.
    let url = authorize_url(&tb, "https://evil.example/cb", &challenge, &[]);
    let resp = http().get(&url).send().await.expect("send");
    assert_eq!(resp.status().as_u16(), 400);
    // Missing PKCE: redirected back with an error.
    let mut url =
        url::Url::parse(&authorize_url(&tb, &redirect_uri, &challenge, &[])).expect("url");
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != "code_challenge")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    let visit = lanyard_testbed::complete_login(url.as_str(), "alice")
        .await
        .expect("visit");
    assert_eq!(
        query_param(&visit.redirect_url, "error").as_deref(),
        Some("invalid_request")
    );
    assert_eq!(
        query_param(&visit.redirect_url, "state").as_deref(),
        Some("st-123")
    );

    // Wrong verifier and code reuse.
    let (verifier, challenge) = pkce();
    let visit = lanyard_testbed::complete_login(
        &authorize_url(
            &tb,
            &redirect_uri,
            &challenge,
            &[("prompt", "login"), ("max_age", "0")],
        ),
        "alice",
    )
    .await
    .expect("visit");
    let code = query_param(&visit.redirect_url, "code").expect("code");
    let redeem = |v: String| {
        let code = code.clone();
        let redirect_uri = redirect_uri.clone();
        let endpoint = tb.idp().token_endpoint();
        async move {
            post_form(
                &endpoint,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", &redirect_uri),
                    ("code_verifier", &v),
                    ("client_id", "lanyard-desktop"),
                ],
            )
            .await
        }
    };
    let (status, body) = redeem("wrong-verifier".into()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, _) = redeem(verifier).await;
    assert_eq!(
        status, 400,
        "a code is single use even after a failed attempt"
    );
}

async fn refresh(tb: &Testbed, rt: String) -> (u16, Value) {
    post_form(
        &tb.idp().token_endpoint(),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &rt),
            ("client_id", "lanyard-desktop"),
        ],
    )
    .await
}

async fn poll(tb: &Testbed, device_code: &str) -> (u16, Value) {
    post_form(
        &tb.idp().token_endpoint(),
        &[
            ("grant_type", GRANT_DEVICE_CODE),
            ("device_code", device_code),
            ("client_id", "lanyard-desktop"),
        ],
    )
    .await
}

#[tokio::test]
async fn discovery_variants_and_idp_options() {
    let mut idp = IdpConfig::default().with_issuer_path("/tenant-idp", true);
    idp.advertise_iss_parameter = false;
    idp.reject_unknown_audience = true;
    let mut oidc_as = AsConfig::new("oidc", "lanyard-oidc").with_issuer_path("/realm", false);
    oidc_as.metadata_style = MetadataStyle::OidcOnly;
    let mut mcp = McpConfig::new("m", "oidc", &["x.read"]).with_path("/tenant/mcp");
    mcp.prm_location = PrmLocation::Root;
    mcp.advertise_resource_metadata = false;
    let config = TestbedConfig {
        idp,
        auth_servers: vec![oidc_as],
        mcp_servers: vec![mcp],
        ..TestbedConfig::default()
    };
    let tb = Testbed::start(config).await.expect("start");
    let auth = tb.auth_server("oidc").expect("as");
    let mcp = tb.mcp_server("m").expect("mcp");

    assert!(tb.idp().issuer().ends_with("/tenant-idp/"));
    let meta: Value = http()
        .get(tb.idp().discovery_url())
        .send()
        .await
        .expect("d")
        .json()
        .await
        .expect("j");
    assert_eq!(meta["issuer"], tb.idp().issuer());
    assert_eq!(
        meta["authorization_response_iss_parameter_supported"],
        false
    );

    let origin = auth.issuer().trim_end_matches("/realm");
    let status =
        |url: String| async move { http().get(url).send().await.expect("get").status().as_u16() };
    assert_eq!(
        status(format!(
            "{origin}/.well-known/oauth-authorization-server/realm"
        ))
        .await,
        404
    );
    assert_eq!(
        status(format!("{origin}/.well-known/openid-configuration/realm")).await,
        200
    );
    assert_eq!(
        status(format!("{origin}/realm/.well-known/openid-configuration")).await,
        200
    );

    let (code, headers, _) = rpc(mcp, None, "ping", json!({})).await;
    assert_eq!(code, 401);
    let challenge = headers["www-authenticate"].to_str().expect("s");
    assert!(!challenge.contains("resource_metadata") && challenge.contains("scope=\"x.read\""));
    let mcp_origin = mcp.url().trim_end_matches("/tenant/mcp");
    assert_eq!(
        status(format!("{mcp_origin}/.well-known/oauth-protected-resource")).await,
        200
    );
    assert_eq!(
        status(format!(
            "{mcp_origin}/.well-known/oauth-protected-resource/tenant/mcp"
        ))
        .await,
        404
    );

    // No RFC 9207 iss parameter in the redirect.
    let redirect_uri = loopback().await;
    let (verifier, challenge) = pkce();
    let visit = lanyard_testbed::complete_login(
        &authorize_url(&tb, &redirect_uri, &challenge, &[]),
        "alice",
    )
    .await
    .expect("login");
    assert!(query_param(&visit.redirect_url, "iss").is_none());
    let code = query_param(&visit.redirect_url, "code").expect("code");
    let (_, body) = post_form(
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
    let id_token = body["id_token"].as_str().expect("id");
    assert!(body.get("refresh_token").is_some());

    // Unknown audiences are refused at the IdP when configured so.
    let (code, body) = exchange(
        &tb,
        id_token,
        "http://127.0.0.1:1/nobody",
        mcp.resource(),
        "x.read",
    )
    .await;
    assert_eq!(
        (code, body["error"].as_str()),
        (400, Some("invalid_target"))
    );

    // The AS cannot reach the IdP's JWKS: a server error, then recovery.
    tb.idp()
        .faults()
        .inject(Endpoint::Jwks, Fault::Status(503), FaultMode::Once);
    let (_, body) = exchange(&tb, id_token, auth.issuer(), mcp.resource(), "x.read").await;
    let jag = body["access_token"].as_str().expect("jag");
    let (code, body) = jwt_bearer(auth, jag, "lanyard-oidc", mcp.resource(), "x.read").await;
    assert_eq!((code, body["error"].as_str()), (500, Some("server_error")));
    let (code, body) = jwt_bearer(auth, jag, "lanyard-oidc", mcp.resource(), "x.read").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(auth.stats().jwks_fetches, 2);
}
