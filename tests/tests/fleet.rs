//! Fleet-gentle scheduling against the testbed: a server minted on demand (not at sign-in, at the
//! first client request, then kept fresh), and scheduled refreshes held to one per host still all
//! happen.

mod support;

use std::time::Duration;

use lanyard_core::engine::ServerState;
use lanyard_testbed::demo::demo_config;
use serde_json::json;
use support::*;

const SERVERS: [&str; 3] = ["docs", "tickets", "payroll"];

#[tokio::test]
async fn an_on_demand_server_is_minted_at_the_first_request_and_then_kept_fresh() {
    let tb = testbed(demo_config(Duration::ZERO)).await;
    let mut policy = policy_json(&tb);
    policy["settings"] = json!({"on_demand_servers": ["tickets"]});
    let lanyard = start_engine(&tb, &policy, Options::default());
    lanyard.sign_in().await;
    lanyard.wait_granted("docs").await;
    lanyard.wait_granted("payroll").await;

    // Signed in, two servers granted, nothing asked of the tickets server's AS.
    let tickets_as = tb.auth_server("tickets").expect("tickets AS");
    assert_eq!(tickets_as.stats().jwt_bearer_mints, 0);
    assert_eq!(tb.idp().stats().token_exchanges, 2);
    assert_eq!(lanyard.state("tickets"), ServerState::NotSignedIn);

    // The first request waits for the mint and gets a working token.
    let first = lanyard.token("tickets", 60).await;
    assert!(first.expires_at > lanyard.now() + 60);
    assert_accepted(
        tb.mcp_server("tickets").expect("mcp"),
        first.access_token.expose(),
    )
    .await;
    assert_eq!(tickets_as.stats().jwt_bearer_mints, 1);
    assert_eq!(tb.idp().stats().token_exchanges, 3);
    // The next request is served from the same token.
    let again = lanyard.token("tickets", 60).await;
    assert_eq!(again.access_token.expose(), first.access_token.expose());
    assert_eq!(tickets_as.stats().jwt_bearer_mints, 1);

    // From now on it is refreshed ahead of expiry like every other server.
    lanyard.advance(&tb, Duration::from_secs(240));
    lanyard
        .wait_server("tickets", "refreshed", |s| {
            matches!(s, ServerState::Granted { expires_at, .. } if *expires_at > first.expires_at)
        })
        .await;
    assert_eq!(tickets_as.stats().jwt_bearer_mints, 2);
}

#[tokio::test]
async fn refreshes_held_to_one_per_host_all_happen() {
    let tb = testbed(demo_config(Duration::from_millis(20))).await;
    let mut policy = policy_json(&tb);
    // Every grant goes through the one IdP: one scheduled grant at a time.
    policy["settings"] = json!({"max_concurrency_per_host": 1});
    let lanyard = start_engine(&tb, &policy, Options::default());
    lanyard.sign_in().await;
    let mut first = Vec::new();
    for id in SERVERS {
        // The sign-in's grants are not held back.
        first.push(lanyard.wait_granted(id).await);
    }
    let exchanges = tb.idp().stats().token_exchanges;
    assert_eq!(exchanges, 3);

    // All three are due at once (300 s tokens, 240 s later): they go one after another, and each
    // one's end releases the next.
    lanyard.advance(&tb, Duration::from_secs(240));
    for (id, old) in SERVERS.iter().zip(&first) {
        lanyard
            .wait_server(
                id,
                "refreshed",
                |s| matches!(s, ServerState::Granted { expires_at, .. } if *expires_at > *old),
            )
            .await;
    }
    assert_eq!(tb.idp().stats().token_exchanges, exchanges + 3);
    assert_eq!(tb.idp().stats().rejected_token_exchanges, 0);
}
