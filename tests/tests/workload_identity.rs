//! Workload identity federation (SEP-1933) over real HTTP: a machine with no user and no stored
//! secret presents its platform's JWT (a CI job's OIDC token, a Kubernetes service-account
//! token) as the jwt-bearer assertion. The token file is read again at every grant, so a rotated
//! token is the one used; a refusal is a named, standing state, not a retry loop.

mod support;

use std::time::Duration;

use lanyard_core::engine::ServerState;
use lanyard_testbed::{AsConfig, McpConfig, TestbedConfig};
use serde_json::json;
use support::*;

const PLATFORM: &str = "https://token.actions.githubusercontent.example";

/// A platform JWT for `audience`, signed with the platform's key (`private_pem`).
fn workload_jwt(private_pem: &[u8], audience: &str, subject: &str, now: u64) -> String {
    let key = jsonwebtoken::EncodingKey::from_ec_pem(private_pem).expect("platform key");
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.typ = Some("JWT".into());
    let claims = json!({
        "iss": PLATFORM, "sub": subject, "aud": audience,
        "iat": now, "exp": now + 600, "jti": format!("{subject}-{now}"),
    });
    jsonwebtoken::encode(&header, &claims, &key).expect("signed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_token_grants_the_machine_is_read_again_when_rotated_and_a_refusal_is_named() {
    let (platform_key_file, platform_public) = ec_client_key();
    let platform_key = std::fs::read(&platform_key_file).expect("key");
    let config = TestbedConfig {
        auth_servers: vec![
            AsConfig::new("ci", "lanyard-ci").trusting_workload(PLATFORM, &platform_public)
        ],
        mcp_servers: vec![McpConfig::new("ci", "ci", &["ci.read"])],
        ..TestbedConfig::default()
    };
    let tb = testbed(config).await;
    let issuer = tb.auth_server("ci").expect("AS").issuer().to_owned();
    let now = tb.clock().unix();
    let token_file = temp_file(
        "workload-token",
        &workload_jwt(&platform_key, &issuer, "repo:acme/app:ref:main", now),
    );
    let mut policy = policy_json(&tb);
    let entry = server_entry(&mut policy, "ci");
    entry["mode"] = json!("workload-identity");
    entry["workload_token"] = json!({ "file": token_file });
    entry["authorization_server"] = json!(issuer);

    // No sign-in: the machine's server is granted at start.
    let lanyard = start_engine(&tb, &policy, Options::default());
    lanyard.wait_granted("ci").await;
    let mcp = tb.mcp_server("ci").expect("mcp");
    let first = lanyard.token("ci", 60).await.access_token;
    let seen = whoami(mcp, first.expose()).await.expect("accepted");
    assert!(seen.contains("sub=repo:acme/app:ref:main"), "{seen}");
    let stats = || tb.auth_server("ci").expect("AS").stats();
    assert_eq!(stats().workload_mints, 1);

    // The platform rotates the token in place; the next grant presents the new one.
    std::fs::write(
        &token_file,
        workload_jwt(&platform_key, &issuer, "repo:acme/app:ref:release", now + 1),
    )
    .expect("rotate");
    // Past the engine's least interval between two grants of a server.
    lanyard.advance(&tb, Duration::from_secs(11));
    lanyard.engine.refresh("ci").await.expect("refresh");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while stats().workload_mints < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stats().workload_mints, 2, "the rotated token was presented");
    // The AS has answered; the engine takes the new token in a moment.
    let second = loop {
        let token = lanyard.token("ci", 60).await.access_token;
        if token.expose() != first.expose() || std::time::Instant::now() >= deadline {
            break token;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_ne!(
        first.expose(),
        second.expose(),
        "the new token never replaced the old"
    );
    let seen = whoami(mcp, second.expose()).await.expect("accepted");
    assert!(seen.contains("sub=repo:acme/app:ref:release"), "{seen}");

    // A token for another audience is refused: a standing, named state, not a loop.
    std::fs::write(
        &token_file,
        workload_jwt(
            &platform_key,
            "https://elsewhere.example",
            "repo:acme/app",
            now + 2,
        ),
    )
    .expect("rotate");
    let refused_before = stats().rejected_grants;
    lanyard.advance(&tb, Duration::from_secs(11));
    lanyard.engine.refresh("ci").await.expect("refresh");
    let state = lanyard
        .wait_server("ci", "denied", |s| matches!(s, ServerState::Denied { .. }))
        .await;
    let ServerState::Denied { code, description } = state else {
        unreachable!()
    };
    assert_eq!(code, "invalid_grant");
    let description = description.unwrap_or_default();
    assert!(
        description.contains("refused the workload token") && description.contains("audience"),
        "{description}"
    );
    assert!(
        !description.contains("eyJ"),
        "the token is in the message: {description}"
    );
    lanyard.advance(&tb, Duration::from_secs(3600));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        stats().rejected_grants,
        refused_before + 1,
        "a refused workload token was tried again by itself"
    );
}
