//! Fleet-gentle scheduling against the testbed: a server minted on demand (not at sign-in, at the
//! first client request, then kept fresh); scheduled refreshes held to one per host still all
//! happen; after a long outage retries wait about as long as the outage, while a client's own
//! request may try again after half a minute.

mod support;

use std::time::Duration;

use lanyard_core::engine::{EngineError, ServerState};
use lanyard_testbed::demo::demo_config;
use lanyard_testbed::{Endpoint, Fault, FaultMode};
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
    assert_eq!(
        lanyard.state("tickets"),
        ServerState::ReadyOnFirstUse {
            reason: lanyard_core::engine::IdleReason::Unused
        }
    );

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

#[tokio::test]
async fn after_a_long_outage_retries_spread_but_a_client_request_goes_after_half_a_minute() {
    let tb = testbed(demo_config(Duration::ZERO)).await;
    let lanyard = start_engine(&tb, &policy_json(&tb), Options::default());
    lanyard.sign_in().await;
    for id in SERVERS {
        lanyard.wait_granted(id).await;
    }

    // The IdP's token endpoint is down; the 300 s tokens come due and then expire.
    tb.idp()
        .faults()
        .inject(Endpoint::Token, Fault::Status(503), FaultMode::Persistent);
    lanyard.advance(&tb, Duration::from_secs(400));
    for id in SERVERS {
        lanyard
            .wait_server(id, "failing", |s| matches!(s, ServerState::Failing { .. }))
            .await;
    }
    // Fifteen minutes into the outage, each retry waits about that long again (plain backoff would
    // say at most 5 min).
    lanyard.advance(&tb, Duration::from_secs(900));
    let now = lanyard.now();
    for id in SERVERS {
        let state = lanyard
            .wait_server(
                id,
                "retried and failing again",
                |s| matches!(s, ServerState::Failing { retry_at, .. } if *retry_at > now),
            )
            .await;
        let ServerState::Failing { retry_at, .. } = state else {
            unreachable!()
        };
        assert!(
            retry_at >= now + 800,
            "{id}: retry in {} s, not spread over the outage's length",
            retry_at - now
        );
    }

    // The network is back. Right after a failure a client hears "unavailable"…
    tb.idp().faults().clear();
    match lanyard.engine.token("docs", Duration::from_secs(60)).await {
        Err(EngineError::Unavailable { retry_at, .. }) => assert!(retry_at > now + 800),
        other => panic!("expected unavailable, got {other:?}"),
    }
    // …and half a minute later its request goes at once, long before the scheduled retry.
    lanyard.advance(&tb, Duration::from_secs(30));
    let token = lanyard.token("docs", 60).await;
    assert!(token.expires_at > lanyard.now() + 60);
    assert_accepted(
        tb.mcp_server("docs").expect("mcp"),
        token.access_token.expose(),
    )
    .await;
    // The others wait for their own spread retry.
    assert!(matches!(
        lanyard.state("tickets"),
        ServerState::Failing { .. }
    ));
    assert!(matches!(
        lanyard.state("payroll"),
        ServerState::Failing { .. }
    ));
}
