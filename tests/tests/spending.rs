//! Spending ID-JAGs like money, against the testbed over real HTTP with a jumpable clock: a server
//! no client asks for is granted once at sign-in and then left ready on first use (not refreshed);
//! the first request after idling mints once, with every concurrent request waiting on that one
//! mint; the counts per server survive a restart of the engine (the state file); a monthly budget
//! stops background refreshes but never a client's request. A server in use is renewed late in its
//! token's life (an hour of use, about one ID-JAG) and its client never waits; a server whose
//! token lapsed in an outage is retried by its clients at once and by the agent at a spread time;
//! after
//! a resume from sleep the session is renewed before any request, so the first request to an idle
//! server costs one exchange and one jwt-bearer grant, and a failure streak from before the sleep
//! does not slow that renewal.

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

/// The demo testbed with docs alone, its authorization server issuing tokens that live
/// `lifetime`, and an engine on it with `settings`, signed in.
async fn docs_alone(
    lifetime: Duration,
    settings: serde_json::Value,
) -> (lanyard_testbed::Testbed, Lanyard) {
    let mut config = demo_config(Duration::ZERO);
    for auth_server in &mut config.auth_servers {
        auth_server.access_token_lifetime = lifetime;
    }
    let tb = testbed(config).await;
    let mut policy = policy_json(&tb);
    policy["servers"]
        .as_array_mut()
        .expect("servers")
        .retain(|s| s["id"] == "docs");
    policy["settings"] = settings;
    let lanyard = start_engine(&tb, &policy, Options::default());
    lanyard.sign_in().await;
    (tb, lanyard)
}

fn granted(state: &ServerState) -> (u64, u64) {
    match state {
        ServerState::Granted {
            expires_at,
            refresh_at,
            ..
        } => (*expires_at, *refresh_at),
        other => panic!("expected granted, got {other:?}"),
    }
}

const HOUR: u64 = 3600;

/// Clients need 60 s, the skew allowance is 30 s, five quick retries on the 1 s backoff take 31 s,
/// and six grants on the loopback testbed take well under a second each: a lead of 122 s (a
/// little more on a slow machine).
const LEAD: std::ops::RangeInclusive<u64> = 122..=130;

#[tokio::test]
async fn a_server_in_use_is_renewed_late_in_its_tokens_life_and_its_client_never_waits() {
    let (tb, lanyard) =
        docs_alone(Duration::from_secs(HOUR), json!({"idle_after_secs": 900})).await;
    let (expires, refresh_at) = granted(
        &lanyard
            .wait_server("docs", "granted", |s| {
                matches!(s, ServerState::Granted { .. })
            })
            .await,
    );
    let issued = expires - HOUR;
    // In the window of one lead before the lead: after 54 minutes of a 1-h token, where the
    // lifetime rule said 27 to 45.
    assert!(
        refresh_at <= expires - LEAD.start() && refresh_at >= expires - 2 * LEAD.end(),
        "renewed {} s before expiry",
        expires - refresh_at
    );
    assert!(refresh_at > issued + 3 * HOUR / 4);

    // Three hours of use, a request every 5 minutes: three renewals (the lifetime rule made about
    // five), and every request finds a token good for its 60 s.
    let exchanges = tb.idp().stats().token_exchanges;
    let mut renewals = 0;
    for minute in 1..=180u64 {
        lanyard.advance(&tb, Duration::from_secs(60));
        let now = lanyard.now();
        let (expires, refresh_at) = granted(&lanyard.state("docs"));
        if refresh_at <= now {
            // Renewed in the background (single-flight), before any client would notice.
            lanyard
                .wait_server(
                    "docs",
                    "renewed",
                    |s| matches!(s, ServerState::Granted { expires_at, .. } if *expires_at > expires),
                )
                .await;
            renewals += 1;
        }
        if minute % 5 == 0 {
            let (expires, _) = granted(&lanyard.state("docs"));
            assert!(expires > now + 60, "minute {minute}: the client would wait");
            lanyard.token("docs", 60).await;
        }
    }
    assert_eq!(renewals, 3);
    assert_eq!(tb.idp().stats().token_exchanges, exchanges + 3);
}

#[tokio::test]
async fn servers_kept_warm_all_day_are_still_renewed_at_45_to_75_percent() {
    let (_tb, lanyard) = docs_alone(Duration::from_secs(HOUR), json!({"idle_after_secs": 0})).await;
    let (expires, refresh_at) = granted(
        &lanyard
            .wait_server("docs", "granted", |s| {
                matches!(s, ServerState::Granted { .. })
            })
            .await,
    );
    let issued = expires - HOUR;
    assert!(
        (issued + 45 * HOUR / 100..=issued + 3 * HOUR / 4).contains(&refresh_at),
        "{} s into the token",
        refresh_at - issued
    );
}

/// A server in use whose token lapsed while the IdP was down: its clients may try again after the
/// plain backoff (a second), as before, while the agent's own retry, which only warms the server
/// for the next request, comes up to ten minutes later, so that a fleet's lapsed servers do not
/// all come back in the outage's first seconds.
#[tokio::test]
async fn a_lapsed_server_is_retried_by_its_clients_at_once_and_by_the_agent_at_a_spread_time() {
    use lanyard_core::engine::EngineError;
    use lanyard_testbed::{Endpoint, Fault, FaultMode};
    let (tb, lanyard) = signed_in_demo(json!({"idle_after_secs": 900})).await;
    let servers = ["docs", "tickets"];
    for id in servers {
        lanyard.wait_granted(id).await;
        lanyard.token(id, 60).await;
    }
    tb.idp()
        .faults()
        .inject(Endpoint::Token, Fault::Status(503), FaultMode::Persistent);
    // The 300-s tokens expire; their renewals (due at 150-178 s) fail now.
    lanyard.advance(&tb, Duration::from_secs(300));
    let now = lanyard.now();
    let mut agent_retries = Vec::new();
    for id in servers {
        let state = lanyard
            .wait_server(id, "failing", |s| matches!(s, ServerState::Failing { .. }))
            .await;
        let ServerState::Failing { retry_at, .. } = state else {
            unreachable!()
        };
        assert!(
            retry_at > now && retry_at <= now + 1 + 600,
            "{id}: {retry_at}"
        );
        agent_retries.push(retry_at);
        match lanyard.engine.token(id, Duration::from_secs(60)).await {
            Err(EngineError::Unavailable { retry_at, .. }) => {
                assert!(
                    retry_at <= now + 1,
                    "{id}: a client waits {} s",
                    retry_at - now
                )
            }
            other => panic!("expected unavailable, got {other:?}"),
        }
    }
    // The plain backoff would say a second later for both.
    assert!(
        agent_retries.iter().any(|&r| r > now + 3),
        "not spread: {agent_retries:?}"
    );
    // The IdP is back: a client's request goes after the backoff and is answered at once.
    tb.idp().faults().clear();
    lanyard.advance(&tb, Duration::from_secs(2));
    let token = lanyard.token("docs", 60).await;
    assert!(token.expires_at > lanyard.now() + 60);
    // A server nobody asked again is warmed by the agent at its own time.
    let tickets_retry = agent_retries[1];
    if tickets_retry > lanyard.now() {
        assert!(matches!(
            lanyard.state("tickets"),
            ServerState::Failing { .. }
        ));
        lanyard.advance(&tb, Duration::from_secs(tickets_retry - lanyard.now()));
    }
    lanyard.wait_granted("tickets").await;
}

/// Eight hours asleep: on the resume notice the engine renews the session by itself, so the first
/// request to the idle server needs an exchange and a jwt-bearer grant (two round trips), not a
/// session renewal first (three).
#[tokio::test]
async fn after_a_resume_the_session_is_renewed_before_the_first_request_which_needs_two_round_trips(
) {
    let (tb, lanyard) =
        docs_alone(Duration::from_secs(HOUR), json!({"idle_after_secs": 900})).await;
    lanyard.wait_granted("docs").await;
    lanyard.sleep_and_wake(&tb, Duration::from_secs(8 * HOUR));
    let now = lanyard.now();
    lanyard
        .wait("the session renewed on waking, docs idle", |s| {
            matches!(s.idp, lanyard_core::engine::IdpStatus::SignedIn { id_token_expires_at, .. } if id_token_expires_at > now + 600)
                && matches!(s.server("docs").map(|d| &d.state), Some(ServerState::ReadyOnFirstUse { .. }))
        })
        .await;
    let before = tb.idp().stats();
    let token = lanyard.token("docs", 60).await;
    assert!(token.expires_at > lanyard.now() + 60);
    let after = tb.idp().stats();
    assert_eq!(after.token_exchanges, before.token_exchanges + 1);
    assert_eq!(
        after.refresh_grants, before.refresh_grants,
        "no session renewal in the request's way"
    );
}

/// The lid closes while a renewal is failing (the network goes with it): the failure streak that
/// starts then is not an outage that lasted the night. After the resume, the session's renewal and
/// the server's retries start from the plain backoff (a second or two), not from a wait as long as
/// the night (up to `recovery_jitter_secs`, 20 minutes), so the network's return a moment after
/// waking is used at once.
#[tokio::test]
async fn after_a_resume_a_failure_streak_from_before_the_sleep_does_not_slow_recovery() {
    use lanyard_core::engine::EngineError;
    use lanyard_testbed::{Endpoint, Fault, FaultMode};
    let (tb, lanyard) = docs_alone(Duration::from_secs(300), json!({"idle_after_secs": 0})).await;
    lanyard.wait_granted("docs").await;
    let faults = tb.idp().faults();
    faults.inject(Endpoint::Token, Fault::Status(503), FaultMode::Persistent);
    // The renewal fails just before the lid closes.
    lanyard.advance(&tb, ALL_DUE);
    lanyard
        .wait_server("docs", "failing", |s| {
            matches!(s, ServerState::Failing { .. })
        })
        .await;
    // Eight hours later the laptop wakes, the network not back yet: everything fails once more.
    lanyard.sleep_and_wake(&tb, Duration::from_secs(8 * HOUR));
    let now = lanyard.now();
    lanyard
        .wait_server(
            "docs",
            "failing again after waking",
            |s| matches!(s, ServerState::Failing { attempts, .. } if *attempts >= 2),
        )
        .await;
    match lanyard.engine.token("docs", Duration::from_secs(60)).await {
        Err(EngineError::Unavailable { retry_at, .. }) => assert!(
            retry_at <= now + 2,
            "a client may try again {} s after waking",
            retry_at - now
        ),
        other => panic!("expected unavailable, got {other:?}"),
    }
    // The network is back two seconds later: the session is renewed and a request is answered.
    faults.clear();
    lanyard.advance(&tb, Duration::from_secs(2));
    let token = lanyard.token("docs", 60).await;
    assert!(token.expires_at > lanyard.now() + 60);
    lanyard
        .wait("the session renewed", |s| {
            matches!(s.idp, lanyard_core::engine::IdpStatus::SignedIn { id_token_expires_at, .. } if id_token_expires_at > now + 600)
        })
        .await;
}
