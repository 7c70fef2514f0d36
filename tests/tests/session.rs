//! The IdP session and the keychain: sign-out revokes and wipes, a second engine resumes a saved
//! session without a browser, and a locked keychain is shown while sign-in still works in memory.

mod support;

use std::sync::Arc;
use std::time::Duration;

use lanyard_core::engine::{
    refresh_token_key, EngineError, IdpStatus, KeychainStatus, ServerState,
};
use lanyard_core::store::{SecretStore, StoreError};
use lanyard_testbed::demo::{demo_config, DEMO_IDP_CLIENT_ID};
use support::*;

#[tokio::test]
async fn sign_out_revokes_at_the_idp_and_wipes_the_store() {
    let tb = testbed(demo_config(Duration::ZERO)).await;
    let lanyard = start_engine(&tb, &policy_json(&tb), Options::default());
    lanyard.sign_in().await;
    lanyard.wait_granted("docs").await;
    let key = refresh_token_key(tb.idp().issuer(), DEMO_IDP_CLIENT_ID);
    assert!(lanyard.store.get(&key).expect("store").is_some());
    assert_eq!(tb.idp().live_refresh_tokens(), 1);

    lanyard.engine.sign_out().await.expect("sign out");
    let status = lanyard
        .wait("signed out", |s| matches!(s.idp, IdpStatus::SignedOut))
        .await;
    assert!(status
        .servers
        .iter()
        .all(|s| s.state == ServerState::NotSignedIn));
    eventually("the revocation at the IdP", || {
        !tb.idp().stats().revocations.is_empty()
    })
    .await;
    let revocations = tb.idp().stats().revocations;
    assert_eq!(revocations.len(), 1);
    assert_eq!(revocations[0].client_id, DEMO_IDP_CLIENT_ID);
    assert_eq!(revocations[0].revoked, "refresh_token");
    assert_eq!(tb.idp().live_refresh_tokens(), 0);
    eventually("the store wiped", || holds_no_secret(&lanyard.store)).await;
    assert_eq!(
        lanyard.engine.token("docs", Duration::ZERO).await.err(),
        Some(EngineError::NotSignedIn)
    );
}

#[tokio::test]
async fn a_second_engine_resumes_the_session_without_a_browser() {
    let tb = testbed(demo_config(Duration::ZERO)).await;
    let policy = policy_json(&tb);
    let first = start_engine(&tb, &policy, Options::default());
    first.sign_in().await;
    first.wait_granted("docs").await;
    first.engine.shutdown().await;
    assert_eq!(tb.idp().stats().logins, 1);

    let second = start_engine(
        &tb,
        &policy,
        Options {
            store: first.store.clone(),
            browser: Some(Arc::new(NoBrowser)),
            ..Options::default()
        },
    );
    let status = second
        .wait("resumed and granted", |s| {
            matches!(s.idp, IdpStatus::SignedIn { .. })
                && s.servers
                    .iter()
                    .all(|srv| matches!(srv.state, ServerState::Granted { .. }))
        })
        .await;
    assert_eq!(status.keychain, KeychainStatus::Available);
    let stats = tb.idp().stats();
    assert_eq!(stats.logins, 1, "no second browser sign-in");
    assert_eq!(
        stats.refresh_grants, 1,
        "resumed with the saved refresh token"
    );
    for mcp in tb.mcp_servers() {
        let token = second.token(mcp.name(), 60).await;
        assert_accepted(mcp, token.access_token.expose()).await;
    }
    // The rotated refresh token replaced the saved one.
    let key = refresh_token_key(tb.idp().issuer(), DEMO_IDP_CLIENT_ID);
    assert!(second.store.get(&key).expect("store").is_some());
    assert_eq!(tb.idp().live_refresh_tokens(), 1);
}

#[tokio::test]
async fn a_locked_keychain_is_shown_and_sign_in_still_works_in_memory() {
    let tb = testbed(demo_config(Duration::ZERO)).await;
    let store = Arc::new(lanyard_core::store::MemoryStore::new());
    store.set_failure(Some(StoreError::Locked("test keychain locked".into())));
    let lanyard = start_engine(
        &tb,
        &policy_json(&tb),
        Options {
            store: store.clone(),
            ..Options::default()
        },
    );
    lanyard.sign_in().await;
    let status = lanyard
        .wait("locked keychain shown and servers granted", |s| {
            matches!(s.keychain, KeychainStatus::Locked { .. })
                && s.servers
                    .iter()
                    .all(|srv| matches!(srv.state, ServerState::Granted { .. }))
        })
        .await;
    let KeychainStatus::Locked { reason } = &status.keychain else {
        unreachable!()
    };
    assert!(reason.contains("test keychain locked"), "{reason}");
    assert!(matches!(status.idp, IdpStatus::SignedIn { .. }));
    for mcp in tb.mcp_servers() {
        let token = lanyard.token(mcp.name(), 60).await;
        assert_accepted(mcp, token.access_token.expose()).await;
    }
    // The session lives in memory: renewing the ID token works without the keychain.
    lanyard.advance(&tb, Duration::from_secs(50 * 60));
    let jumped_to = lanyard.now();
    lanyard
        .wait("renewed in memory", |s| {
            matches!(&s.idp, IdpStatus::SignedIn { id_token_expires_at, refresh_error: None, .. }
                if *id_token_expires_at > jumped_to + 3000)
        })
        .await;
    store.set_failure(None);
    assert!(store.is_empty(), "nothing was written while locked");
}
