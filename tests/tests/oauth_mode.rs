//! The `oauth` mode over real HTTP: the standard MCP authorization (authorization code + PKCE,
//! dynamic registration, RFC 9207 `iss`) against the testbed's authorization server, held by the
//! engine. Connecting opens the browser once; renewals are silent and rotate the refresh token; a
//! refresh token the server revoked brings *Connect* back; a forged redirect stores nothing; a
//! server that moved to another authorization server is connected there afresh; and a client's
//! request never opens a browser.

mod support;

use std::time::Duration;

use lanyard_core::engine::connection::connection_key;
use lanyard_core::engine::{EngineError, ServerState, TokenRequest};
use lanyard_core::store::SecretStore;
use lanyard_testbed::{AsConfig, McpConfig, RedirectFault, TestbedConfig};
use serde_json::json;
use support::*;

fn wiki_testbed() -> TestbedConfig {
    TestbedConfig {
        auth_servers: vec![
            AsConfig::new("wiki-as", "lanyard-wiki")
                .with_scopes(&["wiki.read", "wiki.write"])
                .with_code_flow(true),
            AsConfig::new("new-as", "lanyard-new")
                .with_scopes(&["wiki.read"])
                .with_code_flow(true),
        ],
        mcp_servers: vec![McpConfig::new("wiki", "wiki-as", &["wiki.read"])],
        ..TestbedConfig::default()
    }
}

/// The policy: `wiki` in `oauth` mode with dynamic registration and no client id.
fn oauth_policy(tb: &lanyard_testbed::Testbed) -> serde_json::Value {
    let mut policy = policy_json(tb);
    let entry = server_entry(&mut policy, "wiki");
    entry["mode"] = json!("oauth");
    entry["client_id"] = json!("");
    entry["allow_dynamic_registration"] = json!(true);
    policy
}

async fn needs_connect(lanyard: &Lanyard) {
    lanyard
        .wait_server("wiki", "needs connect", |s| {
            matches!(s, ServerState::NeedsConnect)
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_once_then_silent_refresh_until_the_server_revokes_it() {
    let tb = testbed(wiki_testbed()).await;
    let lanyard = start_engine(&tb, &oauth_policy(&tb), Options::default());
    let stats = || tb.auth_server("wiki-as").expect("AS").stats();

    // Not connected: the state says so, and a client's request is refused naming the command,
    // without a browser.
    needs_connect(&lanyard).await;
    let refused = lanyard
        .engine
        .token("wiki", Duration::from_secs(60))
        .await
        .expect_err("not connected");
    assert!(
        matches!(&refused, EngineError::NotConnected { server } if server == "wiki"),
        "{refused:?}"
    );
    assert!(
        refused.to_string().contains("lanyard connect wiki"),
        "{refused}"
    );
    assert!(
        lanyard.browser.opened().is_empty(),
        "no browser for a client"
    );

    // Connect: the browser opens once; the engine registers, authorizes and keeps the
    // connection in the keychain.
    tokio::time::timeout(WAIT, lanyard.engine.connect("wiki"))
        .await
        .expect("connect timed out")
        .expect("connected");
    assert_eq!(lanyard.browser.opened().len(), 1);
    lanyard.wait_granted("wiki").await;
    assert_eq!(stats().registrations, 1);
    assert_eq!(stats().code_mints, 1);
    let opened = &lanyard.browser.opened()[0];
    let param = |k: &str| {
        opened
            .query_pairs()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.into_owned())
    };
    assert_eq!(param("code_challenge_method").as_deref(), Some("S256"));
    assert_eq!(
        param("resource").as_deref(),
        Some(tb.mcp_server("wiki").expect("mcp").resource())
    );
    assert_eq!(param("scope").as_deref(), Some("wiki.read offline_access"));
    let first = lanyard.token("wiki", 60).await.access_token;
    let mcp = tb.mcp_server("wiki").expect("mcp");
    let seen = whoami(mcp, first.expose()).await.expect("accepted");
    assert!(seen.contains("sub=alice"), "{seen}");
    let kept = lanyard
        .store
        .get(&connection_key("wiki"))
        .expect("store")
        .expect("connection kept");
    let refresh_before = serde_json::from_str::<serde_json::Value>(kept.expose()).expect("json")
        ["refresh_token"]
        .as_str()
        .expect("refresh token")
        .to_owned();

    // A renewal: silent (no browser), by the refresh token, which rotates.
    lanyard.advance(&tb, Duration::from_secs(11));
    lanyard.engine.refresh("wiki").await.expect("refresh");
    eventually("renewed by the refresh token", || {
        stats().refresh_mints == 1
    })
    .await;
    let second = loop {
        let token = lanyard.token("wiki", 60).await.access_token;
        if token.expose() != first.expose() {
            break token;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_accepted(mcp, second.expose()).await;
    assert_eq!(
        lanyard.browser.opened().len(),
        1,
        "a renewal opens no browser"
    );
    let kept = lanyard
        .store
        .get(&connection_key("wiki"))
        .expect("store")
        .expect("connection kept");
    let refresh_after = serde_json::from_str::<serde_json::Value>(kept.expose()).expect("json")
        ["refresh_token"]
        .as_str()
        .expect("refresh token")
        .to_owned();
    assert_ne!(
        refresh_before, refresh_after,
        "the rotated refresh token is kept"
    );

    // The server revokes the refresh token: the next renewal finds it gone, the connection is
    // wiped, and the server shows Connect again.
    tb.auth_server("wiki-as")
        .expect("AS")
        .revoke_refresh_tokens();
    lanyard.advance(&tb, Duration::from_secs(11));
    lanyard.engine.refresh("wiki").await.expect("refresh");
    needs_connect(&lanyard).await;
    assert!(lanyard
        .store
        .get(&connection_key("wiki"))
        .expect("store")
        .is_none());
    assert_eq!(
        lanyard.browser.opened().len(),
        1,
        "never a browser by itself"
    );

    // Connect again, then sign-out wipes the connection.
    lanyard
        .engine
        .connect("wiki")
        .await
        .expect("connected again");
    lanyard.wait_granted("wiki").await;
    lanyard.engine.sign_out().await.expect("sign out");
    needs_connect(&lanyard).await;
    eventually("the connection is wiped", || {
        lanyard
            .store
            .get(&connection_key("wiki"))
            .is_ok_and(|v| v.is_none())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_state_or_iss_on_the_redirect_is_refused_and_nothing_is_stored() {
    let tb = testbed(wiki_testbed()).await;
    let lanyard = start_engine(
        &tb,
        &oauth_policy(&tb),
        Options {
            tweak: Box::new(|c| c.sign_in_timeout = Duration::from_secs(3)),
            ..Options::default()
        },
    );
    needs_connect(&lanyard).await;
    let auth_server = tb.auth_server("wiki-as").expect("AS");

    // Another issuer in `iss`: refused at once.
    auth_server.set_redirect_fault(Some(RedirectFault::WrongIssuer));
    let error = lanyard
        .engine
        .connect("wiki")
        .await
        .expect_err("a foreign iss");
    assert!(error.to_string().contains("impostor"), "{error}");

    // Another `state`: not this sign-in's answer; the listener waits on, and gives up.
    auth_server.set_redirect_fault(Some(RedirectFault::WrongState));
    let error = lanyard
        .engine
        .connect("wiki")
        .await
        .expect_err("a forged state");
    assert!(
        error.to_string().contains("not completed in time"),
        "{error}"
    );

    assert_eq!(auth_server.stats().code_mints, 0, "no code was redeemed");
    assert!(lanyard
        .store
        .get(&connection_key("wiki"))
        .expect("store")
        .is_none());
    assert!(matches!(lanyard.state("wiki"), ServerState::NeedsConnect));

    // An enterprise-managed server never takes this path.
    let mut policy = policy_json(&tb);
    server_entry(&mut policy, "wiki")["scopes"] = json!(["wiki.read"]);
    let ema = start_engine(&tb, &policy, Options::default());
    let refused = ema.engine.connect("wiki").await.expect_err("not oauth");
    assert!(
        matches!(refused, EngineError::NotConnectable { .. }),
        "{refused:?}"
    );
    assert!(ema.browser.opened().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_moves_its_authorization_server_is_connected_there_afresh() {
    let tb = testbed(wiki_testbed()).await;
    let lanyard = start_engine(&tb, &oauth_policy(&tb), Options::default());
    needs_connect(&lanyard).await;
    lanyard.engine.connect("wiki").await.expect("connected");
    lanyard.wait_granted("wiki").await;
    let old = tb.auth_server("wiki-as").expect("AS");
    let new = tb.auth_server("new-as").expect("new AS");
    let mcp = tb.mcp_server("wiki").expect("mcp");

    // The server now names another authorization server. A client whose token it refuses asks
    // for a new one: the engine looks again, sees the move, and does not take the connection
    // there (SEP-2352); the old server still would have renewed it.
    new.accept_resource(mcp.resource());
    mcp.announce_authorization_server(Some(new.issuer()));
    lanyard.advance(&tb, Duration::from_secs(11));
    let refused = lanyard
        .engine
        .token_with(
            "wiki",
            TokenRequest {
                min_ttl: Duration::from_secs(60),
                force_refresh: true,
                ..TokenRequest::default()
            },
        )
        .await
        .expect_err("moved: connect again");
    assert!(
        matches!(&refused, EngineError::NotConnected { .. }),
        "{refused:?}"
    );
    needs_connect(&lanyard).await;
    assert_eq!(
        old.stats().refresh_mints,
        0,
        "nothing renewed at the old server"
    );

    // Connecting again discovers the new one, registers there (the old client is not shown to
    // it) and is granted by it.
    lanyard
        .engine
        .connect("wiki")
        .await
        .expect("connected anew");
    lanyard.wait_granted("wiki").await;
    assert_eq!(new.stats().registrations, 1);
    assert_eq!(new.stats().code_mints, 1);
    assert_eq!(
        old.stats().code_mints,
        1,
        "the old server saw no second connect"
    );
    let token = lanyard.token("wiki", 60).await.access_token;
    assert_eq!(claims(token.expose())["iss"], json!(new.issuer()));
    let opened = lanyard.browser.opened();
    assert!(
        opened[1].as_str().starts_with(new.issuer()),
        "{}",
        opened[1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scope_the_connection_lacks_asks_for_a_new_consent_never_a_browser() {
    let tb = testbed(wiki_testbed()).await;
    let lanyard = start_engine(&tb, &oauth_policy(&tb), Options::default());
    needs_connect(&lanyard).await;
    lanyard.engine.connect("wiki").await.expect("connected");
    lanyard.wait_granted("wiki").await;

    // A 403 insufficient_scope made a client ask for wiki.write: refused naming the command;
    // a refresh token cannot widen the grant and a client's request opens no browser.
    let wider = || TokenRequest {
        min_ttl: Duration::from_secs(60),
        extra_scopes: vec!["wiki.write".into()],
        ..TokenRequest::default()
    };
    let refused = lanyard
        .engine
        .token_with("wiki", wider())
        .await
        .expect_err("needs consent");
    assert!(
        matches!(&refused, EngineError::ConsentNeeded { scopes, .. } if scopes == &["wiki.write"]),
        "{refused:?}"
    );
    assert!(
        refused.to_string().contains("lanyard connect wiki"),
        "{refused}"
    );
    assert_eq!(lanyard.browser.opened().len(), 1);

    // Connecting again asks for it too, and the token then carries it.
    lanyard
        .engine
        .connect("wiki")
        .await
        .expect("connected again");
    let scope = lanyard.browser.opened()[1]
        .query_pairs()
        .find(|(k, _)| k == "scope")
        .map(|(_, v)| v.into_owned());
    assert_eq!(
        scope.as_deref(),
        Some("wiki.read wiki.write offline_access")
    );
    let token = tokio::time::timeout(WAIT, lanyard.engine.token_with("wiki", wider()))
        .await
        .expect("in time")
        .expect("granted with the wider scope");
    assert!(
        token.scopes.contains(&"wiki.write".to_owned()),
        "{:?}",
        token.scopes
    );
}

/// The policy names the authorization server: one the MCP server names instead is refused before
/// anything is sent to it (the browser never opens), and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorization_server_the_policy_does_not_name_is_refused_before_the_browser() {
    let tb = testbed(wiki_testbed()).await;
    let mut policy = oauth_policy(&tb);
    let other = tb.auth_server("new-as").expect("AS").issuer().to_owned();
    server_entry(&mut policy, "wiki")["authorization_server"] = json!(other);
    let lanyard = start_engine(&tb, &policy, Options::default());
    needs_connect(&lanyard).await;
    let refused = tokio::time::timeout(WAIT, lanyard.engine.connect("wiki"))
        .await
        .expect("connect timed out")
        .expect_err("refused");
    assert!(
        refused
            .to_string()
            .contains("which the policy does not name"),
        "{refused}"
    );
    assert!(lanyard.browser.opened().is_empty(), "the browser opened");
    assert!(lanyard
        .store
        .get(&connection_key("wiki"))
        .expect("store")
        .is_none());
    assert_eq!(tb.auth_server("wiki-as").expect("AS").stats().code_mints, 0);
}
