//! How the engine finds a server's authorization server: the 401 challenge, the RFC 9728
//! well-knowns, RFC 8414 / OpenID metadata at the issuer (with and without a path and a trailing
//! slash), an issuer mismatch, and policy-given values that skip discovery.

mod support;

use lanyard_core::engine::ServerState;
use lanyard_testbed::{AsConfig, McpConfig, MetadataStyle, PrmLocation, Testbed, TestbedConfig};
use serde_json::Value;
use support::*;

async fn world(auth: AsConfig, mcp: McpConfig) -> Testbed {
    testbed(TestbedConfig {
        auth_servers: vec![auth],
        mcp_servers: vec![mcp],
        ..TestbedConfig::default()
    })
    .await
}

fn docs_as() -> AsConfig {
    AsConfig::new("docs", "lanyard-docs").with_scopes(&["docs.read"])
}

fn docs_mcp() -> McpConfig {
    McpConfig::new("docs", "docs", &["docs.read"]).with_path("/tenant/mcp")
}

/// Signs in with `policy`, expects `docs` granted, its token accepted, and the discovered AS shown.
async fn expect_granted(tb: &Testbed, policy: &Value) -> Lanyard {
    let lanyard = start_engine(tb, policy, Options::default());
    lanyard.sign_in().await;
    lanyard.wait_granted("docs").await;
    let mcp = tb.mcp_server("docs").expect("mcp");
    assert_accepted(mcp, lanyard.token("docs", 60).await.access_token.expose()).await;
    let issuer = tb.auth_server("docs").expect("as").issuer().to_owned();
    assert_eq!(
        lanyard
            .engine
            .status()
            .server("docs")
            .expect("docs")
            .authorization_server
            .as_deref(),
        Some(issuer.as_str()),
        "the AS issuer, byte for byte"
    );
    lanyard
}

#[tokio::test]
async fn path_inserted_protected_resource_metadata_only() {
    let mut mcp = docs_mcp();
    mcp.prm_location = PrmLocation::PathInserted;
    mcp.advertise_resource_metadata = false;
    let tb = world(docs_as(), mcp).await;
    expect_granted(&tb, &policy_json(&tb)).await;
}

#[tokio::test]
async fn root_protected_resource_metadata_only() {
    let mut mcp = docs_mcp();
    mcp.prm_location = PrmLocation::Root;
    mcp.advertise_resource_metadata = false;
    let tb = world(docs_as(), mcp).await;
    expect_granted(&tb, &policy_json(&tb)).await;
}

#[tokio::test]
async fn challenge_without_resource_metadata_falls_back_to_the_well_knowns() {
    let mut mcp = McpConfig::new("docs", "docs", &["docs.read"]);
    mcp.advertise_resource_metadata = false;
    let tb = world(docs_as(), mcp).await;
    expect_granted(&tb, &policy_json(&tb)).await;
    // The unauthenticated probe was answered 401 (and only that one).
    assert_eq!(tb.mcp_server("docs").expect("mcp").stats().unauthorized, 1);
}

#[tokio::test]
async fn issuer_with_a_trailing_slash() {
    let tb = world(
        docs_as().with_issuer_path("/oauth2/default", true),
        docs_mcp(),
    )
    .await;
    assert!(tb.auth_server("docs").expect("as").issuer().ends_with('/'));
    expect_granted(&tb, &policy_json(&tb)).await;
}

#[tokio::test]
async fn issuer_without_a_trailing_slash() {
    let tb = world(
        docs_as().with_issuer_path("/oauth2/default", false),
        docs_mcp(),
    )
    .await;
    assert!(!tb.auth_server("docs").expect("as").issuer().ends_with('/'));
    expect_granted(&tb, &policy_json(&tb)).await;
}

#[tokio::test]
async fn root_issuer_with_a_trailing_slash() {
    let tb = world(docs_as().with_issuer_path("", true), docs_mcp()).await;
    expect_granted(&tb, &policy_json(&tb)).await;
}

#[tokio::test]
async fn openid_configuration_only_authorization_server() {
    let mut auth = docs_as().with_issuer_path("/realms/corp", false);
    auth.metadata_style = MetadataStyle::OidcOnly;
    let tb = world(auth, docs_mcp()).await;
    expect_granted(&tb, &policy_json(&tb)).await;
}

#[tokio::test]
async fn issuer_mismatch_fails_the_server_with_a_named_error() {
    let mut auth = docs_as().with_issuer_path("/as", false);
    auth.wrong_issuer_in_metadata = true;
    let tb = world(auth, docs_mcp()).await;
    let lanyard = start_engine(&tb, &policy_json(&tb), Options::default());
    lanyard.sign_in().await;
    let state = lanyard
        .wait_server("docs", "failing", |s| {
            matches!(s, ServerState::Failing { .. })
        })
        .await;
    let ServerState::Failing {
        error, retry_at, ..
    } = state
    else {
        unreachable!()
    };
    let issuer = tb.auth_server("docs").expect("as").issuer().to_owned();
    assert!(
        error.contains("issuer") && error.contains(&format!("{issuer:?}")),
        "the error names the mismatch: {error}"
    );
    assert!(retry_at > lanyard.now());
    // Nothing was exchanged or minted for an AS that could not be verified.
    assert_eq!(tb.idp().stats().token_exchanges, 0);
    assert_eq!(
        tb.auth_server("docs").expect("as").stats().jwt_bearer_mints,
        0
    );

    // Once the AS publishes the right issuer, the retry succeeds.
    tb.auth_server("docs")
        .expect("as")
        .set_wrong_issuer_in_metadata(false);
    lanyard.advance(
        &tb,
        std::time::Duration::from_secs(retry_at - lanyard.now() + 1),
    );
    lanyard.wait_granted("docs").await;
}

#[tokio::test]
async fn policy_given_authorization_server_and_resource_skip_discovery() {
    let mut mcp = docs_mcp();
    mcp.advertise_resource_metadata = false;
    let tb = world(docs_as().with_issuer_path("/as", true), mcp).await;
    let mut policy = policy_json(&tb);
    let issuer = tb.auth_server("docs").expect("as").issuer().to_owned();
    let resource = tb.mcp_server("docs").expect("mcp").resource().to_owned();
    let entry = server_entry(&mut policy, "docs");
    entry["authorization_server"] = issuer.into();
    entry["resource"] = resource.into();
    // A wrong PRM must not matter, because it is never read.
    tb.mcp_server("docs").expect("mcp").faults().inject(
        lanyard_testbed::Endpoint::ProtectedResourceMetadata,
        lanyard_testbed::Fault::Status(500),
        lanyard_testbed::FaultMode::Persistent,
    );
    expect_granted(&tb, &policy).await;
    let stats = tb.mcp_server("docs").expect("mcp").stats();
    // The only MCP request was the test's own whoami: no unauthenticated probe.
    assert_eq!(stats.requests, 1);
    assert_eq!(stats.unauthorized, 0);
}

/// The first issuer discovered for a server is pinned (in the keychain, so across restarts); a
/// server that later names another one is refused with a named error and nothing is exchanged
/// for the new audience, until an administrator accepts it in the policy.
#[tokio::test]
async fn a_changed_authorization_server_is_refused_until_an_administrator_accepts_it() {
    let tb = testbed(TestbedConfig {
        // "elsewhere" knows Lanyard's client id too: only the pin stands in the way.
        auth_servers: vec![
            docs_as(),
            AsConfig::new("elsewhere", "lanyard-docs").with_scopes(&["docs.read"]),
        ],
        mcp_servers: vec![docs_mcp()],
        ..TestbedConfig::default()
    })
    .await;
    let policy = policy_json(&tb);
    let store = std::sync::Arc::new(lanyard_core::store::MemoryStore::new());
    let first = start_engine(
        &tb,
        &policy,
        Options {
            store: store.clone(),
            ..Options::default()
        },
    );
    first.sign_in().await;
    first.wait_granted("docs").await;
    let docs_issuer = tb.auth_server("docs").expect("as").issuer().to_owned();
    let pin = lanyard_core::store::SecretStore::get(
        store.as_ref(),
        &lanyard_core::engine::grant::issuer_pin_key("docs"),
    )
    .expect("store")
    .expect("pinned at the first discovery");
    assert!(pin.expose().ends_with(&docs_issuer), "{pin:?}");
    first.engine.shutdown().await;

    // The server now names another authorization server; a new agent (same keychain) refuses it.
    let elsewhere = tb.auth_server("elsewhere").expect("as").issuer().to_owned();
    tb.mcp_server("docs")
        .expect("mcp")
        .announce_authorization_server(Some(&elsewhere));
    let exchanges_before = tb.idp().stats().token_exchanges;
    let second = start_engine(
        &tb,
        &policy,
        Options {
            store: store.clone(),
            ..Options::default()
        },
    );
    second.sign_in().await;
    let state = second
        .wait_server("docs", "failing", |s| {
            matches!(s, ServerState::Failing { .. })
        })
        .await;
    let ServerState::Failing { error, .. } = state else {
        unreachable!()
    };
    assert!(
        error.contains("changed from")
            && error.contains(&docs_issuer)
            && error.contains(&elsewhere)
            && error.contains("administrator"),
        "{error}"
    );
    assert_eq!(
        tb.idp().stats().token_exchanges,
        exchanges_before,
        "no ID-JAG was asked for the new audience"
    );
    assert_eq!(
        tb.auth_server("elsewhere")
            .expect("as")
            .stats()
            .jwt_bearer_mints,
        0
    );

    // IT accepts the move in the policy: the grant now goes to the new authorization server
    // (which, in this world, does not serve the resource: its refusal proves the grant got there).
    let mut accepted = policy.clone();
    server_entry(&mut accepted, "docs")["allowed_authorization_servers"] =
        serde_json::json!([elsewhere]);
    second
        .engine
        .apply_policy(parse_policy(&accepted))
        .await
        .expect("apply");
    second.engine.refresh_all().await.expect("refresh");
    let state = second
        .wait_server(
            "docs",
            "refused by the new AS",
            |s| matches!(s, ServerState::Failing { error, .. } if error.contains("invalid_target")),
        )
        .await;
    assert!(!format!("{state:?}").contains("changed from"), "{state:?}");
    assert!(tb.idp().stats().token_exchanges > exchanges_before);
}

/// Outside dev_mode a server cannot send Lanyard to a plain-HTTP URL: discovery refuses the
/// challenge's `resource_metadata` (here the testbed's own, over http) before fetching it.
#[tokio::test]
async fn discovery_outside_dev_mode_follows_no_plain_http_url() {
    let tb = world(docs_as(), docs_mcp()).await;
    let mcp = tb.mcp_server("docs").expect("mcp");
    let http = lanyard_core::oauth::HttpExecutor::new(&Default::default()).expect("http");
    let url = url::Url::parse(mcp.url()).expect("url");
    let error = lanyard_core::oauth::discovery::discover_server_with(
        &http,
        &url,
        lanyard_core::oauth::discovery::DiscoveredUrls::HttpsOnly,
    )
    .await
    .expect_err("plain HTTP refused");
    assert!(
        error.to_string().contains("resource_metadata") && error.to_string().contains("plain HTTP"),
        "{error}"
    );
    assert_eq!(
        mcp.faults()
            .requests(lanyard_testbed::Endpoint::ProtectedResourceMetadata),
        0,
        "the PRM was never fetched"
    );
    // dev_mode (the testbed) follows it.
    lanyard_core::oauth::discovery::discover_server_with(
        &http,
        &url,
        lanyard_core::oauth::discovery::DiscoveredUrls::AlsoLoopbackHttp,
    )
    .await
    .expect("dev_mode follows loopback HTTP");
}
