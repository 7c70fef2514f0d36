//! Every client-authentication method on both legs: at the IdP (sign-in, token exchange, refresh)
//! and at the MCP authorization server (jwt-bearer), with secrets from the environment or a file
//! and keys from PEM files.

mod support;

use std::time::Duration;

use lanyard_core::engine::IdpStatus;
use lanyard_testbed::{
    AsConfig, ClientAuth, IdpConfig, McpConfig, RegisteredClient, TestbedConfig,
};
use serde_json::{json, Value};
use support::*;

/// A method as the testbed registers it and as the policy refers to it.
struct Method {
    registered: ClientAuth,
    policy: Value,
}

fn none() -> Method {
    Method {
        registered: ClientAuth::None,
        policy: json!({"method": "none"}),
    }
}

fn basic_from_env(var: &str, secret: &str) -> Method {
    std::env::set_var(var, secret);
    Method {
        registered: ClientAuth::ClientSecretBasic(secret.into()),
        policy: json!({"method": "client_secret_basic", "secret": {"env": var}}),
    }
}

fn basic_from_file(secret: &str) -> Method {
    // With the trailing newline editors add: it must not become part of the secret.
    let path = temp_file("secret", &format!("{secret}\n"));
    Method {
        registered: ClientAuth::ClientSecretBasic(secret.into()),
        policy: json!({"method": "client_secret_basic", "secret": {"file": path}}),
    }
}

fn post_from_env(var: &str, secret: &str) -> Method {
    std::env::set_var(var, secret);
    Method {
        registered: ClientAuth::ClientSecretPost(secret.into()),
        policy: json!({"method": "client_secret_post", "secret": {"env": var}}),
    }
}

fn post_from_file(secret: &str) -> Method {
    let path = temp_file("secret", &format!("{secret}\n"));
    Method {
        registered: ClientAuth::ClientSecretPost(secret.into()),
        policy: json!({"method": "client_secret_post", "secret": {"file": path}}),
    }
}

async fn rs256() -> Method {
    let (key_file, public) = rsa_client_key().await;
    Method {
        registered: ClientAuth::PrivateKeyJwt(public),
        policy: json!({"method": "private_key_jwt", "key_file": key_file, "alg": "RS256"}),
    }
}

fn es256() -> Method {
    let (key_file, public) = ec_client_key();
    Method {
        registered: ClientAuth::PrivateKeyJwt(public),
        policy: json!({"method": "private_key_jwt", "key_file": key_file, "alg": "ES256"}),
    }
}

/// Signs in, gets a token accepted by the MCP server, then lets the ID token near expiry so the
/// IdP refresh (client auth again) and a second grant run.
async fn run(idp: Method, auth: Method) {
    let config = TestbedConfig {
        idp: IdpConfig::default()
            .with_client(RegisteredClient::new("lanyard-desktop", idp.registered)),
        auth_servers: vec![AsConfig::new("docs", "lanyard-docs")
            .with_client(RegisteredClient::new("lanyard-docs", auth.registered))
            .with_issuer_path("/as", false)],
        mcp_servers: vec![McpConfig::new("docs", "docs", &["docs.read"])],
        ..TestbedConfig::default()
    };
    let tb = testbed(config).await;
    let mut policy = policy_json(&tb);
    policy["idp"]["client_auth"] = idp.policy;
    server_entry(&mut policy, "docs")["client_auth"] = auth.policy;
    lanyard_testbed::demo::allow_authorization_servers_of_confidential_clients(&tb, &mut policy);
    let lanyard = granted_and_accepted(&tb, &policy, "docs").await;
    let mcp = tb.mcp_server("docs").expect("mcp");

    // 50 minutes later the ID token (1 h) is refreshed at the IdP and the server re-granted.
    lanyard.advance(&tb, Duration::from_secs(50 * 60));
    let jumped_to = lanyard.now();
    lanyard
        .wait("the session renewed", |s| {
            matches!(&s.idp, IdpStatus::SignedIn { id_token_expires_at, refresh_error: None, .. }
                if *id_token_expires_at >= jumped_to + 3500)
        })
        .await;
    lanyard
        .wait_server("docs", "re-granted", |s| {
            matches!(s, lanyard_core::engine::ServerState::Granted { expires_at, .. }
                if *expires_at >= jumped_to + 290)
        })
        .await;
    assert_accepted(mcp, lanyard.token("docs", 60).await.access_token.expose()).await;
    let stats = tb.idp().stats();
    assert_eq!(stats.refresh_grants, 1);
    assert_eq!(stats.rejected_token_exchanges, 0);
    assert_eq!(
        tb.auth_server("docs").expect("as").stats().rejected_grants,
        0
    );
}

#[tokio::test]
async fn public_clients_on_both_legs() {
    run(none(), none()).await;
}

#[tokio::test]
async fn client_secret_basic_from_env_at_the_idp_and_from_a_file_at_the_as() {
    run(
        basic_from_env("LANYARD_E2E_BASIC_IDP", "idp-b4sic:secret"),
        basic_from_file("as-b4sic secret"),
    )
    .await;
}

#[tokio::test]
async fn client_secret_post_from_a_file_at_the_idp_and_from_env_at_the_as() {
    run(
        post_from_file("idp-p0st"),
        post_from_env("LANYARD_E2E_POST_AS", "as-p0st&=x"),
    )
    .await;
}

#[tokio::test]
async fn private_key_jwt_rs256_on_both_legs() {
    let idp = rs256().await;
    let auth = rs256().await;
    run(idp, auth).await;
}

#[tokio::test]
async fn private_key_jwt_es256_on_both_legs() {
    run(es256(), es256()).await;
}

#[tokio::test]
async fn mixed_methods_es256_at_the_idp_and_basic_at_the_as() {
    run(
        es256(),
        basic_from_env("LANYARD_E2E_BASIC_AS", "mixed-secret"),
    )
    .await;
}
