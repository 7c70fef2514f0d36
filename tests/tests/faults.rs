//! Injected faults on the three network legs the engine repeats by itself — the token exchange at
//! the IdP, the jwt-bearer grant at the authorization server and the IdP refresh — each ends in a
//! named state and heals by itself once the fault is gone and the retry time has passed.

mod support;

use std::time::Duration;

use lanyard_core::engine::{IdpStatus, ServerState};
use lanyard_testbed::demo::demo_config;
use lanyard_testbed::{Endpoint, Fault, FaultMode, Faults, Testbed};
use support::*;

#[derive(Clone, Copy, Debug)]
enum Leg {
    Exchange,
    JwtBearer,
    IdpRefresh,
}

fn slow() -> Fault {
    Fault::Slow(Duration::from_secs(2))
}

fn oversized() -> Fault {
    Fault::Oversized(256 * 1024)
}

fn faults_of(tb: &Testbed, leg: Leg) -> &Faults {
    match leg {
        Leg::Exchange | Leg::IdpRefresh => tb.idp().faults(),
        Leg::JwtBearer => tb.auth_server("docs").expect("as").faults(),
    }
}

async fn run(leg: Leg, fault: Fault, expect_in_error: &str) {
    let mut config = demo_config(Duration::ZERO);
    config.auth_servers.truncate(1);
    config.mcp_servers.truncate(1);
    let tb = testbed(config).await;
    let lanyard = start_engine(
        &tb,
        &policy_json(&tb),
        Options {
            tweak: Box::new(|c| {
                c.http.request_timeout = Duration::from_millis(500);
                c.http.max_body_bytes = 64 * 1024;
            }),
            ..Options::default()
        },
    );
    lanyard.sign_in().await;
    let first_exp = lanyard.wait_granted("docs").await;
    faults_of(&tb, leg).inject(Endpoint::Token, fault, FaultMode::Persistent);

    let retry_at = match leg {
        Leg::Exchange | Leg::JwtBearer => {
            lanyard.engine.refresh("docs").await.expect("refresh");
            let state = lanyard
                .wait_server("docs", "failing", |s| {
                    matches!(s, ServerState::Failing { .. })
                })
                .await;
            let ServerState::Failing {
                error,
                retry_at,
                attempts,
            } = state
            else {
                unreachable!()
            };
            assert!(attempts >= 1);
            assert!(
                error.to_lowercase().contains(expect_in_error),
                "{leg:?}: {error:?} should mention {expect_in_error:?}"
            );
            let origin = match leg {
                Leg::Exchange => "identity provider",
                _ => "authorization server",
            };
            assert!(error.contains(origin), "{error}");
            // The still-valid token keeps being handed out meanwhile.
            let token = lanyard.token("docs", 0).await;
            assert_eq!(token.expires_at, first_exp);
            retry_at
        }
        Leg::IdpRefresh => {
            // 50 minutes on, the ID token needs renewing and the access token has expired.
            lanyard.advance(&tb, Duration::from_secs(50 * 60));
            let status = lanyard
                .wait("the IdP refresh error", |s| {
                    matches!(
                        &s.idp,
                        IdpStatus::SignedIn {
                            refresh_error: Some(_),
                            ..
                        }
                    )
                })
                .await;
            let IdpStatus::SignedIn {
                refresh_error: Some(error),
                ..
            } = &status.idp
            else {
                unreachable!()
            };
            assert!(
                error.to_lowercase().contains(expect_in_error),
                "{error:?} should mention {expect_in_error:?}"
            );
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
            assert!(error.contains("identity provider"), "{error}");
            assert_eq!(tb.idp().stats().rejected_token_exchanges, 0);
            retry_at
        }
    };
    assert!(retry_at > lanyard.now());

    // The fault clears; past the retry time everything recovers without help.
    faults_of(&tb, leg).clear();
    lanyard.advance(&tb, Duration::from_secs(retry_at - lanyard.now() + 1));
    let healed_from = lanyard.now();
    lanyard
        .wait_server(
            "docs",
            "granted again",
            |s| matches!(s, ServerState::Granted { expires_at, .. } if *expires_at > healed_from),
        )
        .await;
    let status = lanyard
        .wait("no refresh error", |s| {
            matches!(
                &s.idp,
                IdpStatus::SignedIn {
                    refresh_error: None,
                    ..
                }
            )
        })
        .await;
    assert!(status.is_settled());
    let token = lanyard.token("docs", 60).await;
    assert_accepted(
        tb.mcp_server("docs").expect("mcp"),
        token.access_token.expose(),
    )
    .await;
}

macro_rules! fault_tests {
    ($($name:ident: $leg:expr, $fault:expr, $text:expr;)*) => {$(
        #[tokio::test]
        async fn $name() {
            run($leg, $fault, $text).await;
        }
    )*};
}

fault_tests! {
    exchange_5xx: Leg::Exchange, Fault::Status(503), "503";
    exchange_slow: Leg::Exchange, slow(), "time";
    exchange_malformed_json: Leg::Exchange, Fault::MalformedJson, "json";
    exchange_oversized: Leg::Exchange, oversized(), "more than 65536 bytes";
    jwt_bearer_5xx: Leg::JwtBearer, Fault::Status(500), "500";
    jwt_bearer_slow: Leg::JwtBearer, slow(), "time";
    jwt_bearer_malformed_json: Leg::JwtBearer, Fault::MalformedJson, "json";
    jwt_bearer_oversized: Leg::JwtBearer, oversized(), "more than 65536 bytes";
    idp_refresh_5xx: Leg::IdpRefresh, Fault::Status(502), "502";
    idp_refresh_slow: Leg::IdpRefresh, slow(), "time";
    idp_refresh_malformed_json: Leg::IdpRefresh, Fault::MalformedJson, "json";
    idp_refresh_oversized: Leg::IdpRefresh, oversized(), "more than 65536 bytes";
}
