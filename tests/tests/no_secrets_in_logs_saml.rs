//! No secret of a SAML session reaches a log line or a `Debug`-formatted status or error: the
//! `SAMLResponse` the browser posted, the assertion sent as the subject token, the IdP refresh
//! tokens (issued by the exchange, rotated by a renewal, presented as ID-JAG subjects), the
//! ID-JAGs and the access tokens. One run with a TRACE subscriber for every target (the HTTP stack
//! and the testbed included): SAML sign-in through the testbed's SSO page and its auto-posting
//! form, three servers (one denied), a clock jump that renews the IdP session and every token, and
//! sign-out. Its own test binary, since a process has one global subscriber. Linux only (the
//! testbed's SAML IdP is).
#![cfg(target_os = "linux")]

mod kit;

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use lanyard_core::engine::{self, refresh_token_key, ServerState, Status};
use lanyard_core::store::{MemoryStore, SecretStore};
use lanyard_testbed::demo::{lanyard_saml_policy, start_demo, DEMO_IDP_CLIENT_ID};
use tracing_subscriber::fmt::MakeWriter;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
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
        Err(_) => panic!("timed out waiting for {what}: {:#?}", engine.status()),
    }
}

fn granted_after(status: &Status, id: &str, after: u64) -> bool {
    matches!(
        status.server(id).map(|s| &s.state),
        Some(ServerState::Granted { expires_at, .. }) if *expires_at > after
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_of_a_saml_session_reaches_logs_status_or_errors() {
    let log = Captured::default();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(log.clone())
        .with_ansi(false)
        .try_init()
        .expect("the only subscriber of this test binary");

    let tb = start_demo(Duration::ZERO).await.expect("testbed");
    let store = Arc::new(MemoryStore::new());
    let browser = kit::ScriptedBrowser::new("alice");
    let policy = lanyard_saml_policy(&tb);
    let engine = engine::start(kit::engine_config(
        &policy,
        store.clone(),
        tb.clock(),
        browser.clone(),
    ))
    .expect("engine");

    engine.sign_in().await.expect("sign-in");
    let settled = wait_until(&engine, "docs and tickets granted, payroll denied", |s| {
        granted_after(s, "docs", 0)
            && granted_after(s, "tickets", 0)
            && matches!(
                s.server("payroll").map(|p| &p.state),
                Some(ServerState::Denied { .. })
            )
    })
    .await;
    let mut shown = vec![format!("{settled:#?}")];
    let mut secrets: Vec<(String, String)> = Vec::new();
    for id in ["docs", "tickets"] {
        let token = engine.token(id, Duration::ZERO).await.expect("token");
        shown.push(format!("{token:?}"));
        secrets.push((
            format!("{id} access token"),
            token.access_token.expose().into(),
        ));
    }
    let denied = engine
        .token("payroll", Duration::ZERO)
        .await
        .expect_err("denied");
    shown.extend([format!("{denied:?}"), denied.to_string()]);

    // Renew: past three quarters of the 8-hour IdP session (refresh-token grant, rotation) and
    // every access token.
    tb.clock().advance(Duration::from_secs(6 * 3600 + 600));
    let after = tb.clock().unix();
    let renewed = wait_until(&engine, "renewed", |s| {
        granted_after(s, "docs", after) && granted_after(s, "tickets", after)
    })
    .await;
    shown.push(format!("{renewed:#?}"));
    assert!(
        tb.idp().stats().refresh_grants >= 1,
        "the session was renewed"
    );
    let key = refresh_token_key(tb.idp().issuer(), DEMO_IDP_CLIENT_ID);
    let saved = store.get(&key).expect("store").expect("saved session");
    secrets.push(("refresh token (store)".into(), saved.expose().into()));

    engine.sign_out().await.expect("sign-out");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    // Issuer pins (not secret) outlive a sign-out on purpose.
    let no_secret = |s: &MemoryStore| s.keys().iter().all(|k| k.starts_with("issuer-pin:"));
    while tb.idp().stats().revocations.is_empty() || !no_secret(&store) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "sign-out incomplete"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = engine.status();
    shown.extend([format!("{out:?}"), format!("{out:#?}")]);
    engine.shutdown().await;

    // What crossed the wire: the posted SAMLResponse, the assertion (subject token), refresh
    // tokens, ID-JAGs and the IdP's tokens.
    let visit = browser
        .visits()
        .into_iter()
        .next()
        .expect("one login")
        .expect("the login succeeded");
    let posted = visit
        .posted
        .iter()
        .find(|(k, _)| k == "SAMLResponse")
        .map(|(_, v)| v.clone())
        .expect("a SAMLResponse was posted");
    let response_xml = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(&posted)
            .expect("base64"),
    )
    .expect("UTF-8");
    let signature_value = response_xml
        .split("<ds:SignatureValue>")
        .nth(1)
        .and_then(|rest| rest.split(['\n', '<']).next())
        .expect("a signature value")
        .to_owned();
    secrets.push(("SAMLResponse".into(), posted));
    secrets.push(("assertion signature".into(), signature_value));
    let wire = tb.idp().wire_secrets();
    assert!(
        wire.id_tokens.len() >= 2,
        "assertion + refresh token as subjects: {wire:?}"
    );
    for (label, values) in [
        ("subject token", &wire.id_tokens),
        ("refresh token", &wire.refresh_tokens),
        ("issued token", &wire.access_tokens),
    ] {
        secrets.extend(values.iter().map(|v| (label.to_string(), v.clone())));
    }

    let text =
        String::from_utf8_lossy(&log.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
    for expected in [
        "opening the browser to sign in",
        "signed in",
        "token granted",
        "signing out",
    ] {
        assert!(text.contains(expected), "the log lacks {expected:?}");
    }
    let mut leaks = Vec::new();
    for (label, value) in &secrets {
        assert!(value.len() >= 16, "{label} is too short to search for");
        if text.contains(value.as_str()) {
            leaks.push(format!("{label} in the log"));
        }
        if shown.iter().any(|s| s.contains(value.as_str())) {
            leaks.push(format!("{label} in Debug/Display output"));
        }
    }
    assert!(leaks.is_empty(), "leaks: {leaks:#?}");
    eprintln!(
        "checked {} SAML-session secrets against {} log lines",
        secrets.len(),
        text.lines().count()
    );
}
