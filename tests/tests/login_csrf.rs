//! Login CSRF from another local user, end to end (issue 18, finding 3): the engine signs in
//! through its real loopback listener while a second Unix user — made by the test — who has read
//! the authorization URL from the browser's command line signs in to the IdP with their own
//! account and delivers that redirect (right `state`, a valid code of theirs) to the listener from
//! their own process. Lanyard must refuse it and sign in with the employee's redirect. And a
//! sign-in by another account than the one before is named in the status.
#![cfg(target_os = "linux")]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lanyard_core::engine::IdpStatus;
use lanyard_core::signin::Browser;
use support::*;

#[path = "../../crates/lanyard-core/tests/common/other_user.rs"]
mod other_user;
use other_user::OtherUser;

/// The race as it happens: the attacker (bob, another Unix user) takes the authorization URL,
/// signs in at the IdP as bob and delivers bob's redirect first; then the employee's browser
/// signs in as alice.
struct RacedBrowser {
    attacker: Arc<OtherUser>,
    /// The HTTP status the attacker's delivery got.
    attacker_got: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for RacedBrowser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RacedBrowser")
    }
}

impl Browser for RacedBrowser {
    fn open(&self, url: &url::Url) -> Result<(), String> {
        let url = url.to_string();
        let attacker = self.attacker.clone();
        let got = self.attacker_got.clone();
        tokio::spawn(async move {
            let redirect = lanyard_testbed::login_redirect(&url, "bob")
                .await
                .expect("the attacker's own sign-in at the IdP");
            let status = tokio::task::spawn_blocking(move || attacker.curl(&redirect))
                .await
                .expect("join");
            *got.lock().expect("lock") = Some(status);
            if let Err(e) = lanyard_testbed::complete_login(&url, "alice").await {
                tracing::warn!("the employee's login failed: {e:#}");
            }
        });
        Ok(())
    }
}

#[tokio::test]
async fn another_users_redirect_is_refused_and_the_employee_signs_in_as_themselves() {
    let Some(attacker) = OtherUser::create("login_csrf") else {
        return;
    };
    let tb = testbed(lanyard_testbed::demo::demo_config(Duration::ZERO)).await;
    let policy = policy_json(&tb);
    let attacker_got = Arc::new(Mutex::new(None));
    let lanyard = start_engine(
        &tb,
        &policy,
        Options {
            browser: Some(Arc::new(RacedBrowser {
                attacker: Arc::new(attacker),
                attacker_got: attacker_got.clone(),
            })),
            ..Options::default()
        },
    );
    lanyard.sign_in().await;

    assert_eq!(
        attacker_got.lock().expect("lock").as_deref(),
        Some("403"),
        "another user's redirect was not refused"
    );
    match &lanyard.engine.status().idp {
        IdpStatus::SignedIn {
            subject,
            previous_subject,
            ..
        } => {
            assert_eq!(subject, "alice", "the attacker's sign-in was taken");
            assert_eq!(previous_subject, &None);
        }
        other => panic!("not signed in: {other:?}"),
    }
    // bob's code was never redeemed: one code grant, alice's.
    assert_eq!(tb.idp().stats().code_grants, 1);
}

#[tokio::test]
async fn a_sign_in_by_another_account_than_before_is_named_in_the_status() {
    let tb = testbed(lanyard_testbed::demo::demo_config(Duration::ZERO)).await;
    let policy = policy_json(&tb);
    let lanyard = start_engine(&tb, &policy, Options::default());
    let previous = |lanyard: &Lanyard| match lanyard.engine.status().idp {
        IdpStatus::SignedIn {
            subject,
            previous_subject,
            ..
        } => (subject, previous_subject),
        other => panic!("not signed in: {other:?}"),
    };

    lanyard.sign_in().await;
    assert_eq!(previous(&lanyard), ("alice".into(), None));
    // The same account again: nothing to say.
    lanyard.sign_in().await;
    assert_eq!(previous(&lanyard), ("alice".into(), None));

    // The session ends (revoked at the IdP) and the next sign-in is someone else's.
    tb.idp().revoke_all_sessions();
    lanyard.advance(&tb, Duration::from_secs(3500));
    lanyard
        .wait("the session ended", |s| {
            matches!(s.idp, IdpStatus::NeedsSignIn { .. })
        })
        .await;
    lanyard.browser.set_user("bob");
    lanyard.sign_in().await;
    assert_eq!(previous(&lanyard), ("bob".into(), Some("alice".into())));

    // A deliberate switch (sign out first) is not flagged.
    lanyard.engine.sign_out().await.expect("sign out");
    lanyard.browser.set_user("alice");
    lanyard.sign_in().await;
    assert_eq!(previous(&lanyard), ("alice".into(), None));
}
