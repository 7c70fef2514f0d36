//! The real OS keychain: [`KeyringStore`] against a Secret Service (gnome-keyring on a private D-Bus
//! session, from `scripts/with-keyring.sh`, which sets `LANYARD_TEST_KEYRING=1`; `make test` runs
//! every tier under it). Without that marker the tests that need a keyring print a skip line and
//! pass. The last test needs no keyring: it re-runs itself in a child process whose session bus
//! points nowhere and checks that this is reported as [`StoreError::Unavailable`].

mod kit;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lanyard_core::engine::{self, refresh_token_key, IdpStatus, ServerState, Status};
use lanyard_core::secret::Secret;
use lanyard_core::signin::Browser;
use lanyard_core::store::{KeyringStore, SecretStore, StoreError};
use lanyard_testbed::demo::{lanyard_policy, lanyard_saml_policy, start_demo, DEMO_IDP_CLIENT_ID};
use url::Url;

/// Whether a real, unlocked Secret Service is there; prints the skip line when not.
fn keyring_or_skip(test: &str) -> bool {
    if std::env::var_os("LANYARD_TEST_KEYRING").is_some() {
        return true;
    }
    println!(
        "SKIPPED {test}: LANYARD_TEST_KEYRING is not set; run under scripts/with-keyring.sh \
         (make test does) for a real Secret Service"
    );
    false
}

/// A keychain service name no other test run uses.
fn unique_service(what: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("lanyard-test-{what}-{}-{nanos:x}", std::process::id())
}

/// Values longer than one entry may hold (Windows' Credential Manager: 2,560 bytes) are kept in
/// parts; exercised here against the real Secret Service with a tiny part size. Parts of an
/// overwritten or deleted value do not linger, and a lost part is a named error, never a wrong
/// secret.
#[test]
fn keyring_keeps_long_values_in_parts_without_leftovers() {
    if !keyring_or_skip("keyring_keeps_long_values_in_parts_without_leftovers") {
        return;
    }
    let service = unique_service("parts");
    let store = KeyringStore::with_part_size(service.clone(), 16);
    let key = "refresh-token:https://idp.test:parts";
    let long: String = (0..100)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    store
        .set(key, &Secret::new(long.clone()))
        .expect("set long");
    assert_eq!(
        store.get(key).expect("get").expect("present").expose(),
        long
    );

    // What the OS keychain holds: a marker naming the parts, never the secret in one piece.
    let raw = |k: &str| keyring::Entry::new(&service, k).and_then(|e| e.get_password());
    let head = raw(key).expect("head entry");
    assert!(
        head.starts_with("lanyard-parts:v1:") && head.ends_with(":7"),
        "{head}"
    );
    let generation = head.split(':').nth(2).expect("generation").to_owned();
    let part = |g: &str, i: usize| format!("{key}#{g}.{i}");
    assert_eq!(raw(&part(&generation, 0)).expect("part 0"), long[..16]);

    // A longer value replaces it; the old generation's parts are gone.
    let longer = format!("{long}{long}");
    store
        .set(key, &Secret::new(longer.clone()))
        .expect("overwrite");
    assert_eq!(
        store.get(key).expect("get").expect("present").expose(),
        longer
    );
    for i in 0..7 {
        assert!(raw(&part(&generation, i)).is_err(), "old part {i} lingers");
    }
    // A short value is kept whole, and the parts go.
    let head = raw(key).expect("head entry");
    let generation = head.split(':').nth(2).expect("generation").to_owned();
    store.set(key, &Secret::new("short")).expect("short");
    assert_eq!(raw(key).expect("whole"), "short");
    assert!(
        raw(&part(&generation, 0)).is_err(),
        "parts of the long value linger"
    );

    // A lost part (someone deleted it in the keychain app) is named, not glued over.
    store
        .set(key, &Secret::new(long.clone()))
        .expect("set long again");
    let head = raw(key).expect("head entry");
    let generation = head.split(':').nth(2).expect("generation").to_owned();
    keyring::Entry::new(&service, &part(&generation, 3))
        .and_then(|e| e.delete_credential())
        .expect("delete one part");
    match store.get(key) {
        Err(StoreError::Failed(message)) => {
            assert!(message.contains("part 4 of 7"), "{message}");
            assert!(
                !message.contains(&long[..16]),
                "no secret in the error: {message}"
            );
        }
        other => panic!("expected a named failure, got {other:?}"),
    }
    store.delete(key).expect("delete");
    assert_eq!(store.get(key), Ok(None));
    for i in 0..7 {
        assert!(
            raw(&part(&generation, i)).is_err(),
            "part {i} outlived delete"
        );
    }
}

#[test]
fn keyring_set_get_overwrite_delete() {
    if !keyring_or_skip("keyring_set_get_overwrite_delete") {
        return;
    }
    let store = KeyringStore::new(unique_service("round-trip"));
    let key = "refresh-token:https://idp.test:round-trip";
    assert_eq!(store.get(key), Ok(None), "a fresh key is empty");

    store.set(key, &Secret::new("first value")).expect("set");
    let got = store.get(key).expect("get").expect("present");
    assert_eq!(got.expose(), "first value");

    store
        .set(key, &Secret::new("second value, longer"))
        .expect("overwrite");
    let got = store.get(key).expect("get").expect("present");
    assert_eq!(got.expose(), "second value, longer");

    store.delete(key).expect("delete");
    assert_eq!(store.get(key), Ok(None), "deleted");
    store.delete(key).expect("deleting a missing entry is fine");
}

#[test]
fn keyring_entries_are_separate_per_key_and_service() {
    if !keyring_or_skip("keyring_entries_are_separate_per_key_and_service") {
        return;
    }
    let a = KeyringStore::new(unique_service("a"));
    let b = KeyringStore::new(unique_service("b"));
    a.set("k1", &Secret::new("a-k1")).expect("set");
    a.set("k2", &Secret::new("a-k2")).expect("set");
    assert_eq!(b.get("k1"), Ok(None), "another service sees nothing");
    assert_eq!(
        a.get("k1").expect("get").map(|s| s.expose().to_owned()),
        Some("a-k1".to_owned())
    );
    a.delete("k1").expect("delete");
    assert_eq!(
        a.get("k2").expect("get").map(|s| s.expose().to_owned()),
        Some("a-k2".to_owned()),
        "deleting one key leaves the other"
    );
    a.delete("k2").expect("delete");
    b.delete("never-set").expect("missing entry");
}

/// A browser that must not be opened (the second engine resumes without one).
struct NoBrowser;

impl Browser for NoBrowser {
    fn open(&self, url: &Url) -> Result<(), String> {
        panic!("the browser was opened at {url}; the saved session should have been resumed");
    }
}

async fn wait_until(
    engine: &engine::EngineHandle,
    what: &str,
    pred: impl FnMut(&Status) -> bool,
) -> Status {
    match tokio::time::timeout(Duration::from_secs(30), engine.wait_for(pred)).await {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => panic!("engine stopped while waiting for {what}: {e}"),
        Err(_) => panic!(
            "timed out waiting for {what}; status: {:#?}",
            engine.status()
        ),
    }
}

fn granted(status: &Status, id: &str) -> bool {
    matches!(
        status.server(id).map(|s| &s.state),
        Some(ServerState::Granted { .. })
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_persists_in_the_keyring_and_resumes_without_a_browser() {
    if !keyring_or_skip("session_persists_in_the_keyring_and_resumes_without_a_browser") {
        return;
    }
    persists_and_resumes(SignIn::Oidc).await;
}

/// The same with a SAML 2.0 sign-in: the IdP refresh token from the assertion exchange is what the
/// keyring keeps, where the OpenID Connect one would be.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saml_session_persists_in_the_keyring_and_resumes_without_a_browser() {
    if !keyring_or_skip("saml_session_persists_in_the_keyring_and_resumes_without_a_browser") {
        return;
    }
    persists_and_resumes(SignIn::Saml).await;
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SignIn {
    Oidc,
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    Saml,
}

async fn persists_and_resumes(how: SignIn) {
    let tb = start_demo(Duration::ZERO).await.expect("testbed");
    let policy = match how {
        SignIn::Oidc => lanyard_policy(&tb),
        SignIn::Saml => lanyard_saml_policy(&tb),
    };
    let logins = |tb: &lanyard_testbed::Testbed| {
        let stats = tb.idp().stats();
        match how {
            SignIn::Oidc => stats.logins,
            SignIn::Saml => stats.saml_logins,
        }
    };
    let service = unique_service("session");
    let store: Arc<KeyringStore> = Arc::new(KeyringStore::new(service.clone()));
    let key = refresh_token_key(tb.idp().issuer(), DEMO_IDP_CLIENT_ID);

    // First run: a browser sign-in; the refresh token lands in the keyring.
    let browser = kit::ScriptedBrowser::new("alice");
    let engine = engine::start(kit::engine_config(
        &policy,
        store.clone(),
        tb.clock(),
        browser.clone(),
    ))
    .expect("engine");
    engine.sign_in().await.expect("sign-in");
    wait_until(&engine, "docs and tickets granted", |s| {
        granted(s, "docs") && granted(s, "tickets")
    })
    .await;
    let saved = {
        let store = store.clone();
        let key = key.clone();
        tokio::task::spawn_blocking(move || store.get(&key))
            .await
            .expect("join")
            .expect("keyring")
            .expect("the refresh token is in the keyring")
    };
    assert_eq!(
        engine.status().keychain,
        engine::KeychainStatus::Available,
        "the keychain write was reported as working"
    );
    assert_eq!(browser.opened().len(), 1);
    engine.shutdown().await;

    // Second run, same keyring service: resumes from the saved refresh token, no browser.
    let refreshes_before = tb.idp().stats().refresh_grants;
    let engine = engine::start(kit::engine_config(
        &policy,
        store.clone(),
        tb.clock(),
        Arc::new(NoBrowser),
    ))
    .expect("engine");
    let resumed = wait_until(&engine, "the session resumed and docs granted", |s| {
        matches!(s.idp, IdpStatus::SignedIn { .. }) && granted(s, "docs") && granted(s, "tickets")
    })
    .await;
    match &resumed.idp {
        IdpStatus::SignedIn { subject, .. } => assert_eq!(subject, "alice"),
        other => panic!("not signed in: {other:?}"),
    }
    assert_eq!(tb.idp().stats().refresh_grants, refreshes_before + 1);
    assert_eq!(logins(&tb), 1, "no second login");

    // The IdP rotated the refresh token; the keyring holds the new one.
    let rotated = {
        let store = store.clone();
        let key = key.clone();
        tokio::task::spawn_blocking(move || store.get(&key))
            .await
            .expect("join")
            .expect("keyring")
            .expect("still saved")
    };
    assert_ne!(rotated, saved, "the rotated refresh token was persisted");

    // Sign-out wipes the keyring entry. A read racing the engine's delete can find the item and
    // then see it vanish before the secret is fetched; the keyring crate reports that as a
    // platform failure (`Unavailable`), so only `Ok(None)` ends the wait.
    engine.sign_out().await.expect("sign-out");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (s, k) = (store.clone(), key.clone());
        let left = tokio::task::spawn_blocking(move || s.get(&k))
            .await
            .expect("join");
        if left == Ok(None) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sign-out left the refresh token in the keyring: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    engine.shutdown().await;
}

const CHILD_MARKER: &str = "LANYARD_TEST_KEYRING_CHILD_NO_BUS";

/// With no Secret Service on the session bus, the store says `Unavailable` (not `Failed`, not a
/// silent fallback). Runs in a child process of this test binary whose
/// `DBUS_SESSION_BUS_ADDRESS` points at a socket that does not exist.
#[test]
fn no_secret_service_is_reported_as_unavailable() {
    if std::env::var_os(CHILD_MARKER).is_some() {
        let store = KeyringStore::new(unique_service("no-bus"));
        let results = [
            ("get", store.get("k").map(|_| ())),
            ("set", store.set("k", &Secret::new("v"))),
            ("delete", store.delete("k")),
        ];
        for (op, result) in results {
            match result {
                Err(StoreError::Unavailable(reason)) => {
                    println!("{op}: unavailable as expected ({reason})")
                }
                other => panic!("{op} without a Secret Service gave {other:?}"),
            }
        }
        return;
    }
    let exe = std::env::current_exe().expect("test binary");
    let missing = std::env::temp_dir().join(format!("lanyard-no-bus-{}", std::process::id()));
    let output = Command::new(exe)
        .args([
            "--exact",
            "no_secret_service_is_reported_as_unavailable",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_MARKER, "1")
        .env(
            "DBUS_SESSION_BUS_ADDRESS",
            format!("unix:path={}", missing.display()),
        )
        .env_remove("LANYARD_TEST_KEYRING")
        .env_remove("DISPLAY")
        .output()
        .expect("re-running the test binary");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("unavailable as expected"),
        "child failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
}
