//! Spending ID-JAGs like money, against the testbed over real HTTP with a jumpable clock: a server
//! no client asks for is granted once at sign-in and then left ready on first use (not refreshed);
//! the first request after idling mints once, with every concurrent request waiting on that one
//! mint; the counts per server survive a restart of the engine (the state file); a monthly budget
//! stops background refreshes but never a client's request.

mod support;

use std::sync::Arc;
use std::time::Duration;

use lanyard_core::engine::{IdleReason, ServerState};
use lanyard_testbed::demo::demo_config;
use serde_json::json;
use support::*;

/// 300-s tokens are refreshed 135–225 s after they are minted: 240 s later, every one is due.
const ALL_DUE: Duration = Duration::from_secs(240);

fn mints(tb: &lanyard_testbed::Testbed, id: &str) -> u64 {
    tb.auth_server(id).expect("AS").stats().jwt_bearer_mints
}

/// The demo testbed, and an engine on its policy with `settings`, signed in.
async fn signed_in_demo(settings: serde_json::Value) -> (lanyard_testbed::Testbed, Lanyard) {
    let tb = testbed(demo_config(Duration::ZERO)).await;
    let mut policy = policy_json(&tb);
    policy["settings"] = settings;
    let lanyard = start_engine(&tb, &policy, Options::default());
    lanyard.sign_in().await;
    (tb, lanyard)
}

/// Waits until server `id` is ready on first use because nobody used it.
async fn wait_unused(lanyard: &Lanyard, id: &str) {
    lanyard
        .wait_server(
            id,
            "ready on first use",
            ready_on_first_use(IdleReason::Unused),
        )
        .await;
}

fn ready_on_first_use(reason: IdleReason) -> impl FnMut(&ServerState) -> bool {
    move |s| matches!(s, ServerState::ReadyOnFirstUse { reason: r } if *r == reason)
}

#[tokio::test]
async fn an_unused_server_is_not_refreshed_and_a_used_one_stays_warm() {
    let (tb, lanyard) = signed_in_demo(json!({"idle_after_secs": 180})).await;
    // The sign-in grants every server once, so a denial or an error shows at once.
    let docs_first = lanyard.wait_granted("docs").await;
    lanyard.wait_granted("tickets").await;
    assert_eq!((mints(&tb, "docs"), mints(&tb, "tickets")), (1, 1));

    // A client uses docs; nobody asks for tickets.
    lanyard.advance(&tb, Duration::from_secs(100));
    lanyard.token("docs", 60).await;
    lanyard.advance(&tb, ALL_DUE - Duration::from_secs(100));
    lanyard
        .wait_server(
            "docs",
            "refreshed",
            |s| matches!(s, ServerState::Granted { expires_at, .. } if *expires_at > docs_first),
        )
        .await;
    wait_unused(&lanyard, "tickets").await;
    assert_eq!(mints(&tb, "docs"), 2);
    assert_eq!(mints(&tb, "tickets"), 1, "an unused server was refreshed");
    // Idle is calm, not a problem.
    assert_eq!(
        lanyard.engine.status().health(),
        lanyard_core::engine::Health::AllGood
    );

    // Hours later, with docs unused too, nothing more is minted for either.
    for _ in 0..10 {
        lanyard.advance(&tb, ALL_DUE);
        let_ticks_pass(5).await;
    }
    wait_unused(&lanyard, "docs").await;
    assert_eq!((mints(&tb, "docs"), mints(&tb, "tickets")), (2, 1));
    let status = lanyard.engine.status();
    let tickets = status.server("tickets").expect("tickets");
    assert_eq!(tickets.usage.id_jags, 1);
    assert_eq!(tickets.usage.jwt_bearer_grants, 1);
    assert_eq!(tickets.usage.client_requests, 0);
    let docs = status.server("docs").expect("docs");
    assert_eq!((docs.usage.id_jags, docs.usage.client_requests), (2, 1));
}

#[tokio::test]
async fn the_first_request_after_idling_mints_once_for_every_concurrent_caller() {
    // 50 ms a request: the mint takes a few hundred ms, so the callers overlap it.
    let tb = testbed(demo_config(Duration::from_millis(50))).await;
    let mut policy = policy_json(&tb);
    policy["settings"] = json!({"idle_after_secs": 180});
    let lanyard = Arc::new(start_engine(&tb, &policy, Options::default()));
    lanyard.sign_in().await;
    lanyard.wait_granted("tickets").await;
    lanyard.advance(&tb, ALL_DUE);
    wait_unused(&lanyard, "tickets").await;
    // Long after the last token expired.
    lanyard.advance(&tb, Duration::from_secs(3600));
    let_ticks_pass(5).await;
    let exchanges = tb.idp().stats().token_exchanges;
    assert_eq!(mints(&tb, "tickets"), 1);

    let callers: Vec<_> = (0..8)
        .map(|_| {
            let lanyard = lanyard.clone();
            tokio::spawn(async move { lanyard.token("tickets", 60).await })
        })
        .collect();
    let mut tokens = Vec::new();
    for caller in callers {
        tokens.push(caller.await.expect("caller"));
    }
    assert_eq!(mints(&tb, "tickets"), 2, "one mint for all eight callers");
    assert_eq!(tb.idp().stats().token_exchanges, exchanges + 1);
    let first = tokens[0].access_token.expose().to_owned();
    assert!(tokens.iter().all(|t| t.access_token.expose() == first));
    assert_accepted(tb.mcp_server("tickets").expect("mcp"), &first).await;
    let status = lanyard.engine.status();
    let tickets = status.server("tickets").expect("tickets");
    assert!(matches!(tickets.state, ServerState::Granted { .. }));
    assert_eq!(tickets.usage.client_requests, 8);
    assert_eq!(tickets.usage.id_jags, 2);

    // In use again: kept warm at its next refresh.
    lanyard.advance(&tb, Duration::from_secs(100));
    lanyard.token("tickets", 60).await;
    lanyard.advance(&tb, ALL_DUE - Duration::from_secs(100));
    lanyard
        .wait("tickets refreshed", |_| mints(&tb, "tickets") == 3)
        .await;
}

#[tokio::test]
async fn counts_survive_a_restart() {
    let tb = testbed(demo_config(Duration::ZERO)).await;
    let policy = policy_json(&tb);
    let dir = temp_path("state");
    let state_file = dir.join("usage.json");
    let with_state = |path: std::path::PathBuf| Options {
        tweak: Box::new(move |config| config.state_file = Some(path)),
        ..Options::default()
    };
    let lanyard = start_engine(&tb, &policy, with_state(state_file.clone()));
    lanyard.sign_in().await;
    lanyard.wait_granted("docs").await;
    for _ in 0..3 {
        lanyard.token("docs", 60).await;
    }
    let before = lanyard.engine.status();
    let docs_before = before.server("docs").expect("docs").usage;
    assert_eq!((docs_before.id_jags, docs_before.client_requests), (1, 3));
    lanyard.engine.shutdown().await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&state_file)
            .expect("state file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the state file is the owner's only");
    }

    // A new engine (not signed in yet) shows the same counts.
    let again = start_engine(&tb, &policy, with_state(state_file.clone()));
    let status = again.engine.status();
    for server in &before.servers {
        assert_eq!(
            status.server(&server.id).expect("server").usage,
            server.usage,
            "{}",
            server.id
        );
    }
    again.engine.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_budget_stops_background_refreshes_but_never_a_client() {
    // 90 % of 2 is 1.8: after two ID-JAGs the docs server is near its budget.
    let (tb, lanyard) =
        signed_in_demo(json!({"idle_after_secs": 3600, "id_jag_monthly_budget": 2})).await;
    let first = lanyard.wait_granted("docs").await;
    lanyard.token("docs", 60).await;
    // One ID-JAG spent: the refresh goes.
    lanyard.advance(&tb, ALL_DUE);
    lanyard
        .wait_server(
            "docs",
            "refreshed",
            |s| matches!(s, ServerState::Granted { expires_at, .. } if *expires_at > first),
        )
        .await;
    assert_eq!(mints(&tb, "docs"), 2);
    lanyard.token("docs", 60).await;
    // Two spent: in use, but the next refresh stops.
    lanyard.advance(&tb, ALL_DUE);
    lanyard
        .wait_server(
            "docs",
            "near its budget",
            ready_on_first_use(IdleReason::NearBudget),
        )
        .await;
    assert_eq!(mints(&tb, "docs"), 2);
    // The old token still serves a request, which does not restart refreshes.
    lanyard.token("docs", 10).await;
    let_ticks_pass(5).await;
    assert_eq!(mints(&tb, "docs"), 2);
    assert!(matches!(
        lanyard.state("docs"),
        ServerState::ReadyOnFirstUse {
            reason: IdleReason::NearBudget
        }
    ));
    // Once it expired, a client's request still gets a token, beyond the budget too.
    for expected in [3, 4] {
        lanyard.advance(&tb, Duration::from_secs(400));
        let token = lanyard.token("docs", 60).await;
        assert_accepted(
            tb.mcp_server("docs").expect("mcp"),
            token.access_token.expose(),
        )
        .await;
        assert_eq!(mints(&tb, "docs"), expected);
    }
    let usage = lanyard.engine.status().server("docs").expect("docs").usage;
    assert_eq!(usage.id_jags, 4);
}

/// The demo world with the docs server's authorization server answering jwt-bearer grants with a
/// refresh token (valid a day, rotated at each use).
async fn refresh_token_world() -> lanyard_testbed::Testbed {
    let mut config = demo_config(Duration::ZERO);
    for auth_server in &mut config.auth_servers {
        if auth_server.name == "docs" {
            auth_server.refresh_token_lifetime = Some(Duration::from_secs(86_400));
        }
    }
    testbed(config).await
}

fn refresh_mints(tb: &lanyard_testbed::Testbed, id: &str) -> u64 {
    tb.auth_server(id).expect("AS").stats().refresh_mints
}

#[tokio::test]
async fn with_use_refresh_token_renewals_skip_the_id_jag_for_at_most_eight_hours() {
    let tb = refresh_token_world().await;
    let mut policy = policy_json(&tb);
    // Only docs, so that every exchange the IdP sees is one of docs'.
    policy["servers"]
        .as_array_mut()
        .expect("servers")
        .retain(|s| s["id"] == "docs");
    server_entry(&mut policy, "docs")["use_refresh_token"] = json!(true);
    let lanyard = start_engine(&tb, &policy, Options::default());
    lanyard.sign_in().await;
    let mut expires = lanyard.wait_granted("docs").await;
    let exchanges = tb.idp().stats().token_exchanges;
    assert_eq!((mints(&tb, "docs"), refresh_mints(&tb, "docs")), (1, 0));

    // Renewals use the refresh token: no ID-JAG, no jwt-bearer grant.
    for renewal in 1..=3 {
        lanyard.advance(&tb, ALL_DUE);
        expires = match lanyard
            .wait_server(
                "docs",
                "renewed",
                |s| matches!(s, ServerState::Granted { expires_at, .. } if *expires_at > expires),
            )
            .await
        {
            ServerState::Granted { expires_at, .. } => expires_at,
            _ => unreachable!(),
        };
        assert_eq!(refresh_mints(&tb, "docs"), renewal);
    }
    assert_eq!(mints(&tb, "docs"), 1);
    assert_eq!(
        tb.idp().stats().token_exchanges,
        exchanges,
        "no ID-JAG for the renewals"
    );
    let token = lanyard.token("docs", 60).await;
    assert_accepted(
        tb.mcp_server("docs").expect("mcp"),
        token.access_token.expose(),
    )
    .await;
    let usage = lanyard.engine.status().server("docs").expect("docs").usage;
    assert_eq!((usage.id_jags, usage.jwt_bearer_grants), (1, 1));

    // The IdP cuts alice off from docs; within eight hours of the first ID-JAG the next renewal
    // asks it again, and the denial shows.
    let docs_as = tb.auth_server("docs").expect("AS").issuer().to_owned();
    tb.idp().deny("alice", &docs_as);
    lanyard.advance(&tb, Duration::from_secs(8 * 3600));
    lanyard
        .wait_server("docs", "denied", |s| {
            matches!(s, ServerState::Denied { .. })
        })
        .await;
    assert_eq!(refresh_mints(&tb, "docs"), 3, "the old chain was not used");
}

#[tokio::test]
async fn without_use_refresh_token_every_renewal_is_a_new_id_jag() {
    let tb = refresh_token_world().await;
    let lanyard = start_engine(&tb, &policy_json(&tb), Options::default());
    lanyard.sign_in().await;
    let first = lanyard.wait_granted("docs").await;
    lanyard.advance(&tb, ALL_DUE);
    lanyard
        .wait_server(
            "docs",
            "renewed",
            |s| matches!(s, ServerState::Granted { expires_at, .. } if *expires_at > first),
        )
        .await;
    assert_eq!((mints(&tb, "docs"), refresh_mints(&tb, "docs")), (2, 0));
}

#[tokio::test]
async fn a_request_while_the_idle_token_is_still_good_is_answered_at_once_and_rewarms_it() {
    let (tb, lanyard) = signed_in_demo(json!({"idle_after_secs": 120})).await;
    let expires = lanyard.wait_granted("docs").await;
    // Due (135–225 s into a 300-s token) and unused: idle, with its token still good.
    lanyard.advance(&tb, Duration::from_secs(230));
    wait_unused(&lanyard, "docs").await;
    assert_eq!(mints(&tb, "docs"), 1);

    // The old token answers at once; the refresh follows in the background.
    let token = lanyard.token("docs", 30).await;
    assert_eq!(token.expires_at, expires, "answered with the token in hand");
    lanyard
        .wait_server(
            "docs",
            "warm again",
            |s| matches!(s, ServerState::Granted { expires_at, .. } if *expires_at > expires),
        )
        .await;
    assert_eq!(mints(&tb, "docs"), 2);
}

/// An outage while nobody uses a server: its failed background refresh is not retried (the retry
/// would be a refresh of an unused server), it turns calm, ready on first use; a client's first
/// request after the outage mints once. A first grant that fails is still retried (it must show).
#[tokio::test]
async fn a_failed_refresh_of_an_unused_server_is_not_retried_it_is_ready_on_first_use() {
    use lanyard_testbed::{Endpoint, Fault, FaultMode};
    let (tb, lanyard) = signed_in_demo(json!({"idle_after_secs": 600})).await;
    lanyard.wait_granted("docs").await;
    // A client uses docs now, so its refresh (135–225 s into the 300-s token) goes out.
    lanyard.token("docs", 60).await;
    let faults = tb.auth_server("docs").expect("AS").faults();
    faults.inject(Endpoint::Token, Fault::Status(503), FaultMode::Persistent);
    lanyard.advance(&tb, Duration::from_secs(230));
    lanyard
        .wait_server("docs", "failing", |s| {
            matches!(s, ServerState::Failing { .. })
        })
        .await;
    let tried = faults.requests(Endpoint::Token);
    // Nobody asks again; past the idle window the retry falls due on an unused server.
    lanyard.advance(&tb, Duration::from_secs(600));
    wait_unused(&lanyard, "docs").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        faults.requests(Endpoint::Token),
        tried,
        "the failed refresh of an unused server was retried"
    );
    // After the outage, the first request mints once.
    faults.clear();
    let before = mints(&tb, "docs");
    lanyard.token("docs", 60).await;
    assert_eq!(mints(&tb, "docs"), before + 1);
}
