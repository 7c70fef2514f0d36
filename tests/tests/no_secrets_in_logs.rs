//! No secret reaches a log line, a `Debug`-formatted status or an error.
//!
//! One full run of the engine against the testbed over real HTTP, with a TRACE subscriber for every
//! target (reqwest, hyper and the testbed included) writing into memory: sign-in through the login
//! page, five servers (one denied by IdP policy, one whose authorization server always fails, one
//! with `client_secret_basic`, one client-credentials server with `client_secret_post`), injected
//! faults, a jump of the shared clock that makes the engine renew the session and every token, and
//! sign-out. Then every secret that
//! crossed the wire — authorization code, PKCE verifier, ID tokens, refresh tokens, ID-JAGs, access
//! tokens, client secrets — is looked for in the log and in the `Debug`/`Display` output.
//!
//! `LANYARD_LEAK_TEST_LOG=path` keeps the captured log for inspection.

mod kit;

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lanyard_core::engine::credentials::keychain_key_for_secret;
use lanyard_core::engine::{self, refresh_token_key, EngineHandle, ServerState, Status};
use lanyard_core::secret::Secret;
use lanyard_core::store::{MemoryStore, SecretStore};
use lanyard_testbed::demo::{lanyard_policy, DEMO_IDP_CLIENT_ID};
use lanyard_testbed::{
    AsConfig, ClientAuth, Endpoint, Fault, FaultMode, McpConfig, RegisteredClient, Testbed,
    TestbedConfig,
};
use serde_json::{json, Value};
use tracing_subscriber::fmt::MakeWriter;

/// The captured log: every formatted event of the process.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

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

/// A value nobody could have typed into a log line by accident.
fn unique(label: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{label}-Zq8vW3kT-{nanos:x}")
}

fn world(basic_secret: &str, post_secret: &str) -> TestbedConfig {
    let mut config = TestbedConfig {
        auth_servers: Vec::new(),
        mcp_servers: Vec::new(),
        ..TestbedConfig::default()
    };
    let public = |name: &str| AsConfig::new(name, &format!("lanyard-{name}"));
    // docs' authorization server also issues refresh tokens, which the policy lets Lanyard use:
    // the renewal after the clock jump presents one.
    let mut docs = public("docs").with_scopes(&["docs.read"]);
    docs.refresh_token_lifetime = Some(Duration::from_secs(86_400));
    config.auth_servers = vec![
        docs,
        public("payroll").with_scopes(&["payroll.read"]),
        public("tickets")
            .with_client(RegisteredClient::new(
                "lanyard-tickets",
                ClientAuth::ClientSecretBasic(basic_secret.into()),
            ))
            .with_scopes(&["tickets.read"]),
        public("ci")
            .with_client(RegisteredClient::new(
                "lanyard-ci",
                ClientAuth::ClientSecretPost(post_secret.into()),
            ))
            .with_scopes(&["ci.read"]),
        public("wiki").with_scopes(&["wiki.read"]),
    ];
    for name in ["docs", "payroll", "tickets", "ci", "wiki"] {
        let scope = format!("{name}.read");
        config
            .mcp_servers
            .push(McpConfig::new(name, name, &[scope.as_str()]));
    }
    config
}

/// The demo policy for `tb`, with `tickets` on `client_secret_basic` and `ci` a client-credentials
/// server on `client_secret_post`, both secrets in the keychain.
fn policy(tb: &Testbed) -> Value {
    let mut policy = lanyard_policy(tb);
    for server in policy["servers"].as_array_mut().into_iter().flatten() {
        match server["id"].as_str() {
            Some("docs") => server["use_refresh_token"] = json!(true),
            Some("tickets") => {
                server["client_auth"] =
                    json!({"method": "client_secret_basic", "secret": {"keychain": "tickets"}});
            }
            Some("ci") => {
                server["mode"] = json!("client-credentials");
                server["client_auth"] =
                    json!({"method": "client_secret_post", "secret": {"keychain": "ci"}});
            }
            _ => {}
        }
    }
    lanyard_testbed::demo::allow_authorization_servers_of_confidential_clients(tb, &mut policy);
    policy
}

async fn wait_until(
    engine: &EngineHandle,
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

fn state<'a>(status: &'a Status, id: &str) -> &'a ServerState {
    match status.server(id) {
        Some(s) => &s.state,
        None => panic!("no server {id} in {status:?}"),
    }
}

fn granted_after(status: &Status, id: &str, after: u64) -> bool {
    matches!(state(status, id), ServerState::Granted { expires_at, .. } if *expires_at > after)
}

/// Asks for every grantable server's token; records the tokens as secrets and returns their
/// `Debug` forms.
async fn collect_tokens(
    engine: &EngineHandle,
    round: &str,
    secrets: &mut Vec<(String, String)>,
) -> Vec<String> {
    let mut shown = Vec::new();
    for id in ["docs", "tickets", "ci"] {
        let token = engine
            .token(id, Duration::ZERO)
            .await
            .unwrap_or_else(|e| panic!("token for {id}: {e}"));
        let debug = format!("{token:?}");
        assert!(debug.contains("[redacted]"), "{debug}");
        shown.push(debug);
        secrets.push((
            format!("{id} access token ({round})"),
            token.access_token.expose().to_owned(),
        ));
    }
    shown
}

/// Where `secret` (or, for a JWT, its signature) occurs in `text`: the offending line with the
/// secret itself blanked out.
fn leak(text: &str, secret: &str) -> Option<String> {
    let signature = secret.split('.').nth(2).filter(|s| s.len() >= 16);
    let needles: Vec<&str> = std::iter::once(secret).chain(signature).collect();
    text.lines()
        .find(|line| needles.iter().any(|n| line.contains(n)))
        .map(|line| {
            needles
                .iter()
                .fold(line.to_owned(), |l, n| l.replace(n, "<SECRET>"))
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_logs_status_or_errors() {
    let log = Captured::default();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(log.clone())
        .with_ansi(false)
        .with_target(true)
        .try_init()
        .expect("the only subscriber of this test binary");

    let basic_secret = unique("tickets-basic-secret");
    let post_secret = unique("ci-post-secret");
    let tb = Testbed::start(world(&basic_secret, &post_secret))
        .await
        .expect("testbed");
    let payroll_as = tb.auth_server("payroll").expect("payroll AS").issuer();
    tb.idp().deny("alice", payroll_as);

    let store = Arc::new(MemoryStore::new());
    store
        .set(
            &keychain_key_for_secret("tickets"),
            &Secret::new(basic_secret.clone()),
        )
        .expect("store");
    store
        .set(
            &keychain_key_for_secret("ci"),
            &Secret::new(post_secret.clone()),
        )
        .expect("store");
    let browser = kit::ScriptedBrowser::new("alice");
    let config = kit::engine_config(&policy(&tb), store.clone(), tb.clock(), browser.clone());
    // wiki's authorization server fails every token request: a server with no token at all.
    tb.auth_server("wiki").expect("wiki AS").faults().inject(
        Endpoint::Token,
        Fault::Status(503),
        FaultMode::Persistent,
    );
    let engine = engine::start(config).expect("engine");

    // Sign in; every server settles: three granted, payroll denied by the IdP, wiki failing.
    engine.sign_in().await.expect("sign-in");
    let settled = wait_until(&engine, "every server settled", |s| {
        ["docs", "tickets", "ci"]
            .iter()
            .all(|id| granted_after(s, id, 0))
            && matches!(state(s, "payroll"), ServerState::Denied { .. })
            && matches!(state(s, "wiki"), ServerState::Failing { .. })
    })
    .await;

    let mut secrets: Vec<(String, String)> = vec![
        ("client secret (basic)".into(), basic_secret.clone()),
        ("client secret (post)".into(), post_secret.clone()),
    ];
    let mut shown: Vec<String> = vec![format!("{settled:?}"), format!("{settled:#?}")];
    shown.extend(collect_tokens(&engine, "first", &mut secrets).await);

    let refresh_key = refresh_token_key(tb.idp().issuer(), DEMO_IDP_CLIENT_ID);
    let saved = store
        .get(&refresh_key)
        .expect("store")
        .expect("a saved session");
    secrets.push(("refresh token (store)".into(), saved.expose().to_owned()));

    // Errors: a denied server, and failed grants (500 at one AS, malformed JSON at another).
    let denied = engine
        .token("payroll", Duration::ZERO)
        .await
        .expect_err("payroll is denied");
    shown.extend([format!("{denied:?}"), denied.to_string()]);

    let faulty = |name: &str| tb.auth_server(name).expect("AS").faults().clone();
    faulty("docs").inject(Endpoint::Token, Fault::Status(500), FaultMode::Persistent);
    faulty("tickets").inject(Endpoint::Token, Fault::MalformedJson, FaultMode::Persistent);
    engine.refresh("docs").await.expect("refresh docs");
    engine.refresh("tickets").await.expect("refresh tickets");
    let failing = wait_until(&engine, "docs and tickets failing", |s| {
        matches!(state(s, "docs"), ServerState::Failing { .. })
            && matches!(state(s, "tickets"), ServerState::Failing { .. })
    })
    .await;
    shown.extend([format!("{failing:?}"), format!("{failing:#?}")]);
    let unavailable = engine
        .token("wiki", Duration::ZERO)
        .await
        .expect_err("wiki's authorization server never answers");
    shown.extend([format!("{unavailable:?}"), unavailable.to_string()]);
    for name in ["docs", "tickets"] {
        faulty(name).clear();
    }

    // Jump past the ID token's refresh point and every access token's expiry: the engine renews
    // the session (refresh-token rotation) and re-grants every server.
    let refreshes_before = tb.idp().stats().refresh_grants;
    tb.clock().advance(Duration::from_secs(3300));
    let after = tb.clock().unix();
    let renewed = wait_until(&engine, "session and tokens renewed", |s| {
        ["docs", "tickets", "ci"]
            .iter()
            .all(|id| granted_after(s, id, after))
    })
    .await;
    shown.push(format!("{renewed:#?}"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tb.idp().stats().refresh_grants == refreshes_before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the session was not renewed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shown.extend(collect_tokens(&engine, "after the clock jump", &mut secrets).await);
    if let Some(rotated) = store.get(&refresh_key).expect("store") {
        secrets.push((
            "refresh token (rotated)".into(),
            rotated.expose().to_owned(),
        ));
    }

    // Sign out: the refresh token is revoked at the IdP and wiped from the store.
    engine.sign_out().await.expect("sign-out");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tb.idp().stats().revocations.is_empty()
        || store.get(&refresh_key).ok().flatten().is_some()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "sign-out did not revoke and wipe the session"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let signed_out = engine.status();
    shown.extend([format!("{signed_out:?}"), format!("{signed_out:#?}")]);
    let not_signed_in = engine
        .token("docs", Duration::ZERO)
        .await
        .expect_err("signed out");
    shown.extend([format!("{not_signed_in:?}"), not_signed_in.to_string()]);
    engine.shutdown().await;

    // Everything the authorization servers saw or issued: ID-JAGs, client secrets, access tokens
    // and docs' refresh tokens (one of them presented for the renewal).
    let docs_as = tb.auth_server("docs").expect("docs AS");
    assert!(
        docs_as.stats().refresh_mints >= 1,
        "docs was not renewed with its refresh token"
    );
    for auth_server in tb.auth_servers() {
        secrets.extend(
            auth_server
                .wire_secrets()
                .into_iter()
                .map(|v| (format!("{} wire secret", auth_server.name()), v)),
        );
    }

    // Everything the IdP saw or issued: codes, PKCE verifiers, ID tokens, refresh tokens, ID-JAGs.
    let wire = tb.idp().wire_secrets();
    assert!(!wire.codes.is_empty(), "no authorization code seen");
    assert!(!wire.code_verifiers.is_empty(), "no PKCE verifier seen");
    assert!(wire.id_tokens.len() >= 2, "sign-in and renewal: {wire:?}");
    assert!(wire.refresh_tokens.len() >= 2, "rotation: {wire:?}");
    let visit = browser.visits().into_iter().next().expect("one login");
    let visit = visit.expect("the login succeeded");
    assert!(
        visit.redirect_url.contains(&wire.codes[0]),
        "the code the browser carried is the one the IdP redeemed"
    );
    let labelled = [
        ("authorization code", &wire.codes),
        ("PKCE verifier", &wire.code_verifiers),
        ("refresh token", &wire.refresh_tokens),
        ("ID token", &wire.id_tokens),
        ("IdP access token or ID-JAG", &wire.access_tokens),
    ];
    for (label, values) in labelled {
        secrets.extend(values.iter().map(|v| (label.to_string(), v.clone())));
    }
    for (label, value) in &secrets {
        assert!(value.len() >= 16, "{label} is too short to search for");
    }

    // The log is real: non-empty, with the engine's events and the HTTP stack's traces in it.
    let text = log.text();
    if let Some(path) = std::env::var_os("LANYARD_LEAK_TEST_LOG") {
        std::fs::write(&path, &text).expect("writing the captured log");
    }
    for expected in [
        "signed in",
        "token granted",
        "access denied by policy",
        "grant failed",
        "signing out",
    ] {
        assert!(text.contains(expected), "the log lacks {expected:?}");
    }
    assert!(
        text.lines()
            .any(|l| l.contains("hyper") || l.contains("reqwest")),
        "no trace of the HTTP stack in the log"
    );

    let mut leaks = Vec::new();
    for (label, value) in &secrets {
        if let Some(line) = leak(&text, value) {
            leaks.push(format!("{label} in the log: {line}"));
        }
        for s in &shown {
            if let Some(line) = leak(s, value) {
                leaks.push(format!("{label} in Debug/Display output: {line}"));
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "{} secrets leaked (of {} checked against {} log lines):\n{}",
        leaks.len(),
        secrets.len(),
        text.lines().count(),
        leaks.join("\n")
    );
    eprintln!(
        "checked {} secrets against {} log lines and {} Debug/Display strings",
        secrets.len(),
        text.lines().count(),
        shown.len()
    );
}
