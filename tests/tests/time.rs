//! Time: refresh ahead of expiry, `min_ttl`, an 8-hour sleep, IdP refresh-token rotation and
//! step-up after the IdP asks for a fresher sign-in. Both clocks jump together.

mod support;

use std::time::Duration;

use lanyard_core::engine::{refresh_token_key, EngineError, IdpStatus, ServerState};
use lanyard_core::store::SecretStore;
use lanyard_testbed::demo::{demo_config, DEMO_IDP_CLIENT_ID};
use serde_json::Value;
use support::*;

const SERVERS: [&str; 3] = ["docs", "tickets", "payroll"];

/// The demo world without the payroll denial: three servers, 300 s access tokens, 1 h ID tokens.
async fn demo() -> lanyard_testbed::Testbed {
    testbed(demo_config(Duration::ZERO)).await
}

async fn all_granted(lanyard: &Lanyard, after: u64) {
    lanyard
        .wait("all granted", |s| {
            s.servers.iter().all(|srv| {
                matches!(srv.state, ServerState::Granted { expires_at, .. } if expires_at > after)
            })
        })
        .await;
}

#[tokio::test]
async fn tokens_are_refreshed_ahead_of_expiry() {
    let tb = demo().await;
    let lanyard = start_engine(&tb, &policy_json(&tb), Options::default());
    lanyard.sign_in().await;
    all_granted(&lanyard, 0).await;
    let mut first = Vec::new();
    for id in SERVERS {
        first.push(lanyard.token(id, 0).await);
    }
    let exchanges = tb.idp().stats().token_exchanges;
    assert_eq!(exchanges, 3);

    // 80 % of the 300 s lifetime: every server gets a new token before the old one expires.
    lanyard.advance(&tb, Duration::from_secs(240));
    let jumped_to = lanyard.now();
    for (id, old) in SERVERS.iter().zip(&first) {
        assert!(old.expires_at > jumped_to, "the old token is still valid");
        lanyard
            .wait_server(id, "refreshed", |s| {
                matches!(s, ServerState::Granted { expires_at, .. } if *expires_at > old.expires_at)
            })
            .await;
        let new = lanyard.token(id, 0).await;
        assert_ne!(new.access_token.expose(), old.access_token.expose());
        assert!(new.expires_at > old.expires_at);
        assert_accepted(tb.mcp_server(id).expect("mcp"), new.access_token.expose()).await;
    }
    assert_eq!(
        tb.idp().stats().token_exchanges,
        6,
        "one exchange per new token"
    );
    assert_eq!(
        tb.idp().stats().refresh_grants,
        0,
        "the ID token was still fresh"
    );
}

#[tokio::test]
async fn token_always_has_the_requested_min_ttl() {
    let tb = demo().await;
    let lanyard = start_engine(&tb, &policy_json(&tb), Options::default());
    lanyard.sign_in().await;
    lanyard.wait_granted("docs").await;
    let first = lanyard.token("docs", 200).await;
    assert!(first.expires_at >= lanyard.now() + 200);

    // 30 s later the current token has 270 s left: enough for 200, not for 280.
    lanyard.advance(&tb, Duration::from_secs(30));
    let same = lanyard.token("docs", 200).await;
    assert_eq!(same.access_token.expose(), first.access_token.expose());
    let mints = tb.auth_server("docs").expect("as").stats().jwt_bearer_mints;
    let fresh = lanyard.token("docs", 280).await;
    assert!(
        fresh.expires_at >= lanyard.now() + 280,
        "{} < {} + 280",
        fresh.expires_at,
        lanyard.now()
    );
    assert_ne!(fresh.access_token.expose(), first.access_token.expose());
    assert_eq!(
        tb.auth_server("docs").expect("as").stats().jwt_bearer_mints,
        mints + 1
    );
    assert_accepted(
        tb.mcp_server("docs").expect("mcp"),
        fresh.access_token.expose(),
    )
    .await;
}

#[tokio::test]
async fn an_eight_hour_sleep_regrants_everything_after_refreshing_the_id_token() {
    let tb = demo().await;
    let lanyard = start_engine(&tb, &policy_json(&tb), Options::default());
    lanyard.sign_in().await;
    all_granted(&lanyard, 0).await;
    let before = tb.idp().stats();

    lanyard.advance(&tb, Duration::from_secs(8 * 3600));
    let woke_at = lanyard.now();
    // Asked right after waking, before anything was renewed: never an expired token.
    for id in SERVERS {
        let token = lanyard.token(id, 60).await;
        assert!(token.expires_at > woke_at + 60);
        assert_accepted(tb.mcp_server(id).expect("mcp"), token.access_token.expose()).await;
    }
    all_granted(&lanyard, woke_at).await;
    let status = lanyard
        .wait("the session renewed", |s| {
            matches!(&s.idp, IdpStatus::SignedIn { id_token_expires_at, .. }
                if *id_token_expires_at > woke_at)
        })
        .await;
    assert!(matches!(
        status.idp,
        IdpStatus::SignedIn {
            refresh_error: None,
            ..
        }
    ));
    let after = tb.idp().stats();
    assert_eq!(
        after.refresh_grants,
        before.refresh_grants + 1,
        "one IdP refresh"
    );
    assert_eq!(after.token_exchanges, before.token_exchanges + 3);
    assert_eq!(
        after.rejected_token_exchanges, 0,
        "the expired ID token was never sent"
    );
    assert_eq!(after.logins, 1, "no new browser sign-in");
    assert_eq!(lanyard.browser.opened().len(), 1);
}

#[tokio::test]
async fn refresh_token_rotation_keeps_the_new_one_in_the_store() {
    let tb = demo().await;
    let lanyard = start_engine(&tb, &policy_json(&tb), Options::default());
    lanyard.sign_in().await;
    all_granted(&lanyard, 0).await;
    let key = refresh_token_key(tb.idp().issuer(), DEMO_IDP_CLIENT_ID);
    let old = lanyard
        .store
        .get(&key)
        .expect("store")
        .expect("refresh token saved at sign-in");

    lanyard.advance(&tb, Duration::from_secs(50 * 60));
    let jumped_to = lanyard.now();
    lanyard
        .wait("the session renewed", |s| {
            matches!(&s.idp, IdpStatus::SignedIn { id_token_expires_at, .. }
                if *id_token_expires_at > jumped_to + 3000)
        })
        .await;
    assert_eq!(tb.idp().stats().refresh_grants, 1);
    let new = lanyard
        .store
        .get(&key)
        .expect("store")
        .expect("rotated token saved");
    assert_ne!(
        new.expose(),
        old.expose(),
        "the store holds the rotated token"
    );
    assert_eq!(tb.idp().live_refresh_tokens(), 1);

    // The old refresh token is dead at the IdP.
    let resp = http()
        .post(tb.idp().token_endpoint())
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", old.expose()),
            ("client_id", DEMO_IDP_CLIENT_ID),
        ])
        .send()
        .await
        .expect("refresh request");
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"], "invalid_grant");
    // And the engine keeps working with the new one at the next renewal.
    lanyard.advance(&tb, Duration::from_secs(50 * 60));
    let jumped_to = lanyard.now();
    lanyard
        .wait("renewed again", |s| {
            matches!(&s.idp, IdpStatus::SignedIn { id_token_expires_at, refresh_error: None, .. }
                if *id_token_expires_at > jumped_to + 3000)
        })
        .await;
    let newest = lanyard.store.get(&key).expect("store").expect("saved");
    assert_ne!(newest.expose(), new.expose());
    assert_eq!(tb.idp().stats().refresh_grants, 2);
}

#[tokio::test]
async fn step_up_asks_for_a_fresh_sign_in_and_then_grants() {
    let tb = demo().await;
    let lanyard = start_engine(&tb, &policy_json(&tb), Options::default());
    lanyard.sign_in().await;
    all_granted(&lanyard, 0).await;

    // Tickets now wants a sign-in within the last 5 minutes; alice signed in 10 minutes ago.
    let tickets_as = tb.auth_server("tickets").expect("as").issuer().to_owned();
    tb.idp()
        .require_auth_within(&tickets_as, Some(Duration::from_secs(300)));
    lanyard.advance(&tb, Duration::from_secs(600));
    let state = lanyard
        .wait_server("tickets", "step-up required", |s| {
            matches!(s, ServerState::StepUpRequired { .. })
        })
        .await;
    assert_eq!(state, ServerState::StepUpRequired { max_age: Some(300) });
    assert_eq!(
        lanyard.engine.token("tickets", Duration::ZERO).await.err(),
        Some(EngineError::StepUpRequired)
    );
    // The others are unaffected.
    all_granted_but(&lanyard, "tickets").await;

    lanyard.sign_in().await;
    lanyard
        .wait_server("tickets", "granted after step-up", |s| {
            matches!(s, ServerState::Granted { .. })
        })
        .await;
    let opened = lanyard.browser.opened();
    assert_eq!(opened.len(), 2);
    let query: Vec<(String, String)> = opened[1].query_pairs().into_owned().collect();
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(param("prompt"), Some("login"));
    assert_eq!(param("max_age"), Some("300"));
    assert_eq!(tb.idp().stats().logins, 2);
    let token = lanyard.token("tickets", 60).await;
    assert_accepted(
        tb.mcp_server("tickets").expect("mcp"),
        token.access_token.expose(),
    )
    .await;
}

async fn all_granted_but(lanyard: &Lanyard, except: &str) {
    lanyard
        .wait("the other servers granted", |s| {
            s.servers
                .iter()
                .filter(|srv| srv.id != except)
                .all(|srv| matches!(srv.state, ServerState::Granted { .. }))
        })
        .await;
}
