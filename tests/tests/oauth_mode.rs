//! The `oauth` mode over real HTTP: the standard MCP authorization (authorization code + PKCE,
//! dynamic registration, RFC 9207 `iss`) against the testbed's authorization server, held by the
//! engine. Connecting opens the browser once; renewals are silent and rotate the refresh token; a
//! refresh token the server revoked brings *Connect* back; a forged redirect stores nothing; a
//! server that moved to another authorization server is connected there afresh; a client's
//! request never opens a browser; sign-out revokes the refresh token without ever waiting on the
//! server; a connect overtaken by a sign-out or a policy reload keeps nothing; and DPoP binds the
//! connection's tokens where the policy asks for it.

mod support;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use lanyard_core::engine::connection::{connection_key, REVOKE_WITHIN};
use lanyard_core::engine::grant::sign_proof;
use lanyard_core::engine::{EngineError, ServerState, TokenRequest};
use lanyard_core::secret::Secret;
use lanyard_core::store::SecretStore;
use lanyard_testbed::{
    AsConfig, AsHandle, Endpoint, Fault, FaultMode, McpConfig, McpHandle, RedirectFault,
    TestbedConfig,
};
use serde_json::json;
use support::*;

fn wiki_testbed() -> TestbedConfig {
    TestbedConfig {
        auth_servers: vec![
            AsConfig::new("wiki-as", "lanyard-wiki")
                .with_scopes(&["wiki.read", "wiki.write"])
                .with_code_flow(true),
            AsConfig::new("new-as", "lanyard-new")
                .with_scopes(&["wiki.read"])
                .with_code_flow(true),
        ],
        mcp_servers: vec![McpConfig::new("wiki", "wiki-as", &["wiki.read"])],
        ..TestbedConfig::default()
    }
}

/// The policy: `wiki` in `oauth` mode with dynamic registration and no client id.
fn oauth_policy(tb: &lanyard_testbed::Testbed) -> serde_json::Value {
    let mut policy = policy_json(tb);
    let entry = server_entry(&mut policy, "wiki");
    entry["mode"] = json!("oauth");
    entry["client_id"] = json!("");
    entry["allow_dynamic_registration"] = json!(true);
    policy
}

async fn needs_connect(lanyard: &Lanyard) {
    lanyard
        .wait_server("wiki", "needs connect", |s| {
            matches!(s, ServerState::NeedsConnect)
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_once_then_silent_refresh_until_the_server_revokes_it() {
    let tb = testbed(wiki_testbed()).await;
    let lanyard = start_engine(&tb, &oauth_policy(&tb), Options::default());
    let stats = || tb.auth_server("wiki-as").expect("AS").stats();

    // Not connected: the state says so, and a client's request is refused naming the command,
    // without a browser.
    needs_connect(&lanyard).await;
    let refused = lanyard
        .engine
        .token("wiki", Duration::from_secs(60))
        .await
        .expect_err("not connected");
    assert!(
        matches!(&refused, EngineError::NotConnected { server } if server == "wiki"),
        "{refused:?}"
    );
    assert!(
        refused.to_string().contains("lanyard connect wiki"),
        "{refused}"
    );
    assert!(
        lanyard.browser.opened().is_empty(),
        "no browser for a client"
    );

    // Connect: the browser opens once; the engine registers, authorizes and keeps the
    // connection in the keychain.
    tokio::time::timeout(WAIT, lanyard.engine.connect("wiki"))
        .await
        .expect("connect timed out")
        .expect("connected");
    assert_eq!(lanyard.browser.opened().len(), 1);
    lanyard.wait_granted("wiki").await;
    assert_eq!(stats().registrations, 1);
    assert_eq!(stats().code_mints, 1);
    let opened = &lanyard.browser.opened()[0];
    let param = |k: &str| {
        opened
            .query_pairs()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.into_owned())
    };
    assert_eq!(param("code_challenge_method").as_deref(), Some("S256"));
    assert_eq!(
        param("resource").as_deref(),
        Some(tb.mcp_server("wiki").expect("mcp").resource())
    );
    assert_eq!(param("scope").as_deref(), Some("wiki.read offline_access"));
    let first = lanyard.token("wiki", 60).await.access_token;
    let mcp = tb.mcp_server("wiki").expect("mcp");
    let seen = whoami(mcp, first.expose()).await.expect("accepted");
    assert!(seen.contains("sub=alice"), "{seen}");
    let refresh_before = kept_connection(&lanyard).expect("connection kept")["refresh_token"]
        .as_str()
        .expect("refresh token")
        .to_owned();

    // A renewal: silent (no browser), by the refresh token, which rotates.
    lanyard.advance(&tb, Duration::from_secs(11));
    lanyard.engine.refresh("wiki").await.expect("refresh");
    eventually("renewed by the refresh token", || {
        stats().refresh_mints == 1
    })
    .await;
    let second = loop {
        let token = lanyard.token("wiki", 60).await.access_token;
        if token.expose() != first.expose() {
            break token;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_accepted(mcp, second.expose()).await;
    assert_eq!(
        lanyard.browser.opened().len(),
        1,
        "a renewal opens no browser"
    );
    let refresh_after = kept_connection(&lanyard).expect("connection kept")["refresh_token"]
        .as_str()
        .expect("refresh token")
        .to_owned();
    // Compared, never printed: a refresh token stays out of the test's output.
    assert!(
        refresh_before != refresh_after,
        "the rotated refresh token is kept"
    );

    // The server revokes the refresh token: the next renewal finds it gone, the connection is
    // wiped, and the server shows Connect again.
    tb.auth_server("wiki-as")
        .expect("AS")
        .revoke_refresh_tokens();
    lanyard.advance(&tb, Duration::from_secs(11));
    lanyard.engine.refresh("wiki").await.expect("refresh");
    needs_connect(&lanyard).await;
    // Wiped through the engine's ordered keychain writes, just after the state changed.
    eventually("the refused connection is wiped", || {
        kept_connection(&lanyard).is_none()
    })
    .await;
    assert_eq!(
        lanyard.browser.opened().len(),
        1,
        "never a browser by itself"
    );

    // Connect again, then sign-out wipes the connection.
    lanyard
        .engine
        .connect("wiki")
        .await
        .expect("connected again");
    lanyard.wait_granted("wiki").await;
    lanyard.engine.sign_out().await.expect("sign out");
    needs_connect(&lanyard).await;
    eventually("the connection is wiped", || {
        kept_connection(&lanyard).is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_state_or_iss_on_the_redirect_is_refused_and_nothing_is_stored() {
    let tb = testbed(wiki_testbed()).await;
    let lanyard = start_engine(
        &tb,
        &oauth_policy(&tb),
        Options {
            tweak: Box::new(|c| c.sign_in_timeout = Duration::from_secs(3)),
            ..Options::default()
        },
    );
    needs_connect(&lanyard).await;
    let auth_server = tb.auth_server("wiki-as").expect("AS");

    // Another issuer in `iss`: refused at once.
    auth_server.set_redirect_fault(Some(RedirectFault::WrongIssuer));
    let error = lanyard
        .engine
        .connect("wiki")
        .await
        .expect_err("a foreign iss");
    assert!(error.to_string().contains("impostor"), "{error}");

    // Another `state`: not this sign-in's answer; the listener waits on, and gives up.
    auth_server.set_redirect_fault(Some(RedirectFault::WrongState));
    let error = lanyard
        .engine
        .connect("wiki")
        .await
        .expect_err("a forged state");
    assert!(
        error.to_string().contains("not completed in time"),
        "{error}"
    );

    assert_eq!(auth_server.stats().code_mints, 0, "no code was redeemed");
    assert!(kept_connection(&lanyard).is_none(), "nothing was kept");
    assert!(matches!(lanyard.state("wiki"), ServerState::NeedsConnect));

    // An enterprise-managed server never takes this path.
    let mut policy = policy_json(&tb);
    server_entry(&mut policy, "wiki")["scopes"] = json!(["wiki.read"]);
    let ema = start_engine(&tb, &policy, Options::default());
    let refused = ema.engine.connect("wiki").await.expect_err("not oauth");
    assert!(
        matches!(refused, EngineError::NotConnectable { .. }),
        "{refused:?}"
    );
    assert!(ema.browser.opened().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_moves_its_authorization_server_is_connected_there_afresh() {
    let tb = testbed(wiki_testbed()).await;
    let lanyard = start_engine(&tb, &oauth_policy(&tb), Options::default());
    needs_connect(&lanyard).await;
    lanyard.engine.connect("wiki").await.expect("connected");
    lanyard.wait_granted("wiki").await;
    let old = tb.auth_server("wiki-as").expect("AS");
    let new = tb.auth_server("new-as").expect("new AS");
    let mcp = tb.mcp_server("wiki").expect("mcp");

    // The server now names another authorization server. A client whose token it refuses asks
    // for a new one: the engine looks again, sees the move, and does not take the connection
    // there (SEP-2352); the old server still would have renewed it.
    new.accept_resource(mcp.resource());
    mcp.announce_authorization_server(Some(new.issuer()));
    lanyard.advance(&tb, Duration::from_secs(11));
    let refused = lanyard
        .engine
        .token_with(
            "wiki",
            TokenRequest {
                min_ttl: Duration::from_secs(60),
                force_refresh: true,
                ..TokenRequest::default()
            },
        )
        .await
        .expect_err("moved: connect again");
    assert!(
        matches!(&refused, EngineError::NotConnected { .. }),
        "{refused:?}"
    );
    needs_connect(&lanyard).await;
    assert_eq!(
        old.stats().refresh_mints,
        0,
        "nothing renewed at the old server"
    );

    // Connecting again discovers the new one, registers there (the old client is not shown to
    // it) and is granted by it.
    lanyard
        .engine
        .connect("wiki")
        .await
        .expect("connected anew");
    lanyard.wait_granted("wiki").await;
    assert_eq!(new.stats().registrations, 1);
    assert_eq!(new.stats().code_mints, 1);
    assert_eq!(
        old.stats().code_mints,
        1,
        "the old server saw no second connect"
    );
    let token = lanyard.token("wiki", 60).await.access_token;
    assert_eq!(claims(token.expose())["iss"], json!(new.issuer()));
    let opened = lanyard.browser.opened();
    assert!(
        opened[1].as_str().starts_with(new.issuer()),
        "{}",
        opened[1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scope_the_connection_lacks_asks_for_a_new_consent_never_a_browser() {
    let tb = testbed(wiki_testbed()).await;
    let lanyard = start_engine(&tb, &oauth_policy(&tb), Options::default());
    needs_connect(&lanyard).await;
    lanyard.engine.connect("wiki").await.expect("connected");
    lanyard.wait_granted("wiki").await;

    // A 403 insufficient_scope made a client ask for wiki.write: refused naming the command;
    // a refresh token cannot widen the grant and a client's request opens no browser.
    let wider = || TokenRequest {
        min_ttl: Duration::from_secs(60),
        extra_scopes: vec!["wiki.write".into()],
        ..TokenRequest::default()
    };
    let refused = lanyard
        .engine
        .token_with("wiki", wider())
        .await
        .expect_err("needs consent");
    assert!(
        matches!(&refused, EngineError::ConsentNeeded { scopes, .. } if scopes == &["wiki.write"]),
        "{refused:?}"
    );
    assert!(
        refused.to_string().contains("lanyard connect wiki"),
        "{refused}"
    );
    assert_eq!(lanyard.browser.opened().len(), 1);

    // Connecting again asks for it too, and the token then carries it.
    lanyard
        .engine
        .connect("wiki")
        .await
        .expect("connected again");
    let scope = lanyard.browser.opened()[1]
        .query_pairs()
        .find(|(k, _)| k == "scope")
        .map(|(_, v)| v.into_owned());
    assert_eq!(
        scope.as_deref(),
        Some("wiki.read wiki.write offline_access")
    );
    let token = tokio::time::timeout(WAIT, lanyard.engine.token_with("wiki", wider()))
        .await
        .expect("in time")
        .expect("granted with the wider scope");
    assert!(
        token.scopes.contains(&"wiki.write".to_owned()),
        "{:?}",
        token.scopes
    );
}

/// The policy names the authorization server: one the MCP server names instead is refused before
/// anything is sent to it (the browser never opens), and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorization_server_the_policy_does_not_name_is_refused_before_the_browser() {
    let tb = testbed(wiki_testbed()).await;
    let mut policy = oauth_policy(&tb);
    let other = tb.auth_server("new-as").expect("AS").issuer().to_owned();
    server_entry(&mut policy, "wiki")["authorization_server"] = json!(other);
    let lanyard = start_engine(&tb, &policy, Options::default());
    needs_connect(&lanyard).await;
    let refused = tokio::time::timeout(WAIT, lanyard.engine.connect("wiki"))
        .await
        .expect("connect timed out")
        .expect_err("refused");
    assert!(
        refused
            .to_string()
            .contains("which the policy does not name"),
        "{refused}"
    );
    assert!(lanyard.browser.opened().is_empty(), "the browser opened");
    assert!(kept_connection(&lanyard).is_none(), "nothing was kept");
    let named_by_the_server = tb.auth_server("wiki-as").expect("AS").stats();
    assert_eq!(named_by_the_server.code_mints, 0);
    assert_eq!(
        named_by_the_server.registrations, 0,
        "nothing registered at an authorization server the policy does not name"
    );
}

/// The log of this test process, for the tests that look for a named line.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// The process's log, captured from the first call on.
    fn install() -> Captured {
        static LOG: OnceLock<Captured> = OnceLock::new();
        LOG.get_or_init(|| {
            let log = Captured::default();
            let _ = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::DEBUG)
                .with_writer(log.clone())
                .with_ansi(false)
                .try_init();
            log
        })
        .clone()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// The connection kept for `wiki`, as JSON.
fn kept_connection(lanyard: &Lanyard) -> Option<serde_json::Value> {
    lanyard
        .store
        .get(&connection_key("wiki"))
        .expect("store")
        .map(|kept| serde_json::from_str(kept.expose()).expect("json"))
}

/// A refresh grant at `auth_server`'s token endpoint, sent by hand: the status and the error.
async fn try_refresh(
    auth_server: &AsHandle,
    client_id: &str,
    refresh_token: &str,
) -> (u16, String) {
    let response = http()
        .post(auth_server.token_endpoint())
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", client_id),
        ])
        .send()
        .await
        .expect("token request");
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Awaits a connect the test let run in the background: refused, because `why` overtook it, and
/// nothing was kept.
async fn overtaken(
    connecting: tokio::task::JoinHandle<Result<(), EngineError>>,
    lanyard: &Lanyard,
    why: &str,
) {
    let refused = tokio::time::timeout(WAIT, connecting)
        .await
        .expect("connect answered")
        .expect("task")
        .expect_err(why);
    assert!(
        refused.to_string().contains("nothing was kept"),
        "{refused}"
    );
    let_ticks_pass(20).await;
    assert!(kept_connection(lanyard).is_none(), "a connection was kept");
}

/// The policy without the `wiki` server.
fn without_wiki(policy: &serde_json::Value) -> serde_json::Value {
    let mut without = policy.clone();
    without["servers"]
        .as_array_mut()
        .expect("servers")
        .retain(|s| s["id"] != "wiki");
    without
}

/// Waits until `wiki`'s connection is out of the keychain and the refresh token of `client_id`
/// was revoked at `auth_server`.
async fn wiped_and_revoked(lanyard: &Lanyard, auth_server: &AsHandle, client_id: &str) {
    eventually("the connection is wiped", || {
        kept_connection(lanyard).is_none()
    })
    .await;
    eventually("the refresh token is revoked", || {
        auth_server
            .stats()
            .revocations
            .iter()
            .any(|r| r.client_id == client_id && r.revoked == "refresh_token")
    })
    .await;
}

/// Sign-out wipes the connection first, then revokes its refresh token at the authorization
/// server's RFC 7009 endpoint (it is dead there afterwards). With that endpoint hanging, sign-out
/// still wipes at once and the revocation is given up within its bound, said in a named log line
/// that carries no secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_out_revokes_the_refresh_token_and_never_waits_on_the_server() {
    let log = Captured::install();
    let tb = testbed(wiki_testbed()).await;
    let lanyard = start_engine(&tb, &oauth_policy(&tb), Options::default());
    let auth_server = tb.auth_server("wiki-as").expect("AS");
    needs_connect(&lanyard).await;
    lanyard.engine.connect("wiki").await.expect("connected");
    lanyard.wait_granted("wiki").await;

    // The status names the authorization server the connection is held at.
    let shown = lanyard.engine.status();
    let wiki = shown.server("wiki").expect("wiki");
    assert_eq!(
        wiki.authorization_server.as_deref(),
        Some(auth_server.issuer())
    );

    let kept = kept_connection(&lanyard).expect("kept");
    let refresh_token = kept["refresh_token"].as_str().expect("rt").to_owned();
    let client_id = kept["client_id"].as_str().expect("client").to_owned();
    lanyard.engine.sign_out().await.expect("sign out");
    needs_connect(&lanyard).await;
    wiped_and_revoked(&lanyard, auth_server, &client_id).await;
    let revocation = auth_server.stats().revocations.pop().expect("one");
    assert_eq!(revocation.token_type_hint.as_deref(), Some("refresh_token"));
    assert_eq!(
        try_refresh(auth_server, &client_id, &refresh_token).await,
        (400, "invalid_grant".to_owned()),
        "the refresh token is dead at the server"
    );
    assert!(lanyard
        .engine
        .status()
        .server("wiki")
        .expect("wiki")
        .authorization_server
        .is_none());

    // The revocation endpoint hangs: sign-out still wipes at once, and gives up in time.
    lanyard
        .engine
        .connect("wiki")
        .await
        .expect("connected again");
    lanyard.wait_granted("wiki").await;
    let refresh_token = kept_connection(&lanyard).expect("kept")["refresh_token"]
        .as_str()
        .expect("rt")
        .to_owned();
    auth_server.faults().inject(
        Endpoint::Revoke,
        Fault::Slow(Duration::from_secs(60)),
        FaultMode::Persistent,
    );
    // The endpoint hangs 60 s: bounds well under that prove sign-out never waits on it, with
    // room for a slow CI machine.
    let started = Instant::now();
    tokio::time::timeout(WAIT, lanyard.engine.sign_out())
        .await
        .expect("sign-out does not wait on the server")
        .expect("sign out");
    eventually("the connection is wiped", || {
        kept_connection(&lanyard).is_none()
    })
    .await;
    assert!(started.elapsed() < WAIT, "{:?}", started.elapsed());
    let given_up = "revoking the connection's refresh token took too long; given up";
    let deadline = Instant::now() + REVOKE_WITHIN + Duration::from_secs(5);
    while !log.text().contains(given_up) {
        assert!(Instant::now() < deadline, "no log line: {}", log.text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        started.elapsed() < REVOKE_WITHIN + WAIT,
        "{:?}",
        started.elapsed()
    );
    let text = log.text();
    let line = text
        .lines()
        .find(|l| l.contains(given_up))
        .expect("the line");
    assert!(line.contains("server=wiki"), "{line}");
    assert!(!text.contains(&refresh_token), "a refresh token in the log");
}

/// A browser that opens nothing by itself: the test completes the round trip when it wants.
#[derive(Debug, Default)]
struct HeldBrowser {
    opened: Mutex<Vec<url::Url>>,
}

impl lanyard_core::signin::Browser for HeldBrowser {
    fn open(&self, url: &url::Url) -> Result<(), String> {
        self.opened.lock().expect("lock").push(url.clone());
        Ok(())
    }
}

impl HeldBrowser {
    /// The first URL opened after the first `before` ones.
    async fn wait_opened_after(&self, before: usize) -> url::Url {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(url) = self.opened.lock().expect("lock").get(before).cloned() {
                return url;
            }
            assert!(Instant::now() < deadline, "the browser was not opened");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_opened(&self) -> url::Url {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(url) = self.opened.lock().expect("lock").last().cloned() {
                return url;
            }
            assert!(Instant::now() < deadline, "the browser was not opened");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A connect whose browser round trip completes after a sign-out keeps nothing: the server stays
/// at *Connect*, the keychain holds no connection, and the refresh token the server issued
/// meanwhile is revoked. The same for a policy reload that removes the server while the browser
/// is open, and for a sign-out while the code exchange is under way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_overtaken_by_a_sign_out_or_a_policy_reload_keeps_nothing() {
    let tb = testbed(wiki_testbed()).await;
    let browser = Arc::new(HeldBrowser::default());
    let policy = oauth_policy(&tb);
    let lanyard = start_engine(
        &tb,
        &policy,
        Options {
            browser: Some(browser.clone() as Arc<dyn lanyard_core::signin::Browser>),
            ..Options::default()
        },
    );
    let auth_server = tb.auth_server("wiki-as").expect("AS");
    needs_connect(&lanyard).await;

    // Sign-out while the browser is open; the user finishes in the browser afterwards.
    let engine = lanyard.engine.clone();
    let connecting = tokio::spawn(async move { engine.connect("wiki").await });
    let url = browser.wait_opened().await;
    // The status says a connect is under way (the window and the tray then offer no second one).
    let shows_connecting = || {
        lanyard
            .engine
            .status()
            .server("wiki")
            .is_some_and(|s| s.connecting)
    };
    eventually("the status says the connect is under way", shows_connecting).await;
    lanyard.engine.sign_out().await.expect("sign out");
    needs_connect(&lanyard).await;
    eventually("the status says sign-out ended the connect", || {
        !shows_connecting()
    })
    .await;
    lanyard_testbed::complete_login(url.as_str(), USER)
        .await
        .expect("the browser round trip");
    overtaken(connecting, &lanyard, "overtaken by the sign-out").await;
    assert_eq!(auth_server.stats().code_mints, 1, "the code was redeemed");
    assert!(matches!(lanyard.state("wiki"), ServerState::NeedsConnect));
    let refused = lanyard
        .engine
        .token("wiki", Duration::from_secs(60))
        .await
        .expect_err("not connected");
    assert!(
        matches!(&refused, EngineError::NotConnected { .. }),
        "{refused:?}"
    );
    eventually("the refresh token issued meanwhile is revoked", || {
        auth_server
            .stats()
            .revocations
            .iter()
            .any(|r| r.revoked == "refresh_token")
    })
    .await;

    // A policy reload removes the server while the browser is open.
    let engine = lanyard.engine.clone();
    let before = browser.opened.lock().expect("lock").len();
    let connecting = tokio::spawn(async move { engine.connect("wiki").await });
    let url = browser.wait_opened_after(before).await;
    let without = without_wiki(&policy);
    lanyard
        .engine
        .apply_policy(parse_policy(&without))
        .await
        .expect("reloaded");
    lanyard_testbed::complete_login(url.as_str(), USER)
        .await
        .expect("the browser round trip");
    overtaken(connecting, &lanyard, "overtaken by the reload").await;
    assert_eq!(auth_server.stats().code_mints, 2);
    // Back in the policy: still to be connected.
    lanyard
        .engine
        .apply_policy(parse_policy(&policy))
        .await
        .expect("reloaded");
    needs_connect(&lanyard).await;

    // Sign-out during the code exchange (the server has issued the tokens, its answer is late).
    let engine = lanyard.engine.clone();
    let before = browser.opened.lock().expect("lock").len();
    let connecting = tokio::spawn(async move { engine.connect("wiki").await });
    let url = browser.wait_opened_after(before).await;
    auth_server.faults().inject(
        Endpoint::Token,
        Fault::SlowAnswer(Duration::from_millis(1500)),
        FaultMode::Once,
    );
    lanyard_testbed::complete_login(url.as_str(), USER)
        .await
        .expect("the browser round trip");
    eventually("the code is being redeemed", || {
        auth_server.stats().code_mints == 3
    })
    .await;
    lanyard.engine.sign_out().await.expect("sign out");
    let refused = tokio::time::timeout(WAIT, connecting)
        .await
        .expect("connect answered")
        .expect("task")
        .expect_err("overtaken by the sign-out");
    assert!(
        refused.to_string().contains("nothing was kept"),
        "{refused}"
    );
    let_ticks_pass(20).await;
    assert!(kept_connection(&lanyard).is_none(), "a connection was kept");
    assert!(matches!(lanyard.state("wiki"), ServerState::NeedsConnect));
}

/// `servers[].dpop` in `oauth` mode: with `required` the code exchange and every refresh carry a
/// proof of the device's key (the server's nonce followed), the tokens are bound to it, and the
/// MCP server takes the token only with a fresh proof; after a restart (a new in-memory key) the
/// server asks for a connect. `if_supported` binds only to a key that outlives the agent, so with
/// the in-memory key a restart renews silently. `required` against an authorization server
/// without DPoP is refused, named, before the browser opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dpop_binds_the_connection_and_its_renewals() {
    let mut config = wiki_testbed();
    config.auth_servers[0] = config.auth_servers[0].clone().with_dpop(true);
    let tb = testbed(config).await;
    let mut policy = oauth_policy(&tb);
    server_entry(&mut policy, "wiki")["dpop"] = json!("required");
    let lanyard = start_engine(&tb, &policy, Options::default());
    let auth_server = tb.auth_server("wiki-as").expect("AS");
    let mcp = tb.mcp_server("wiki").expect("mcp");
    needs_connect(&lanyard).await;
    lanyard.engine.connect("wiki").await.expect("connected");
    lanyard.wait_granted("wiki").await;
    let jkt = lanyard.engine.dpop_key().thumbprint().to_owned();
    let first = lanyard.token("wiki", 60).await;
    assert_eq!(first.dpop_jkt.as_deref(), Some(jkt.as_str()));
    assert_eq!(
        claims(first.access_token.expose())["cnf"]["jkt"],
        json!(jkt)
    );
    assert_eq!(auth_server.stats().dpop_bound_mints, 1);
    assert!(
        lanyard
            .engine
            .status()
            .server("wiki")
            .expect("wiki")
            .dpop_bound
    );

    // Bound: a bearer copy is refused, a fresh proof of the key is taken.
    assert_eq!(whoami(mcp, first.access_token.expose()).await, Err(401));
    let seen = bound_whoami(&lanyard, mcp, &first.access_token).await;
    assert!(seen.contains("sub=alice"), "{seen}");

    // The renewal proves the key too (the refresh token is bound): bound again.
    lanyard.advance(&tb, Duration::from_secs(11));
    lanyard.engine.refresh("wiki").await.expect("refresh");
    eventually("renewed", || auth_server.stats().refresh_mints == 1).await;
    let second = loop {
        let token = lanyard.token("wiki", 60).await;
        if token.access_token.expose() != first.access_token.expose() {
            break token;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(second.dpop_jkt.as_deref(), Some(jkt.as_str()));
    assert_eq!(auth_server.stats().dpop_bound_mints, 2);
    let seen = bound_whoami(&lanyard, mcp, &second.access_token).await;
    assert!(seen.contains("sub=alice"), "{seen}");

    // The agent restarts: its in-memory key is new, and the refresh token bound to the old one
    // is of no use. The server asks for a connect, and the refresh token is not even sent.
    let restarted = start_engine(
        &tb,
        &policy,
        Options {
            store: lanyard.store.clone(),
            ..Options::default()
        },
    );
    needs_connect(&restarted).await;
    assert_eq!(auth_server.stats().refresh_mints, 1, "no refresh sent");
    eventually("the dead connection is wiped", || {
        kept_connection(&restarted).is_none()
    })
    .await;

    // `if_supported` (the default) binds an `oauth` connection only to a key that outlives the
    // agent; with the in-memory key it stays bearer, so a restart still renews silently.
    let mut policy = oauth_policy(&tb);
    server_entry(&mut policy, "wiki")["dpop"] = json!("if_supported");
    let unbound = start_engine(&tb, &policy, Options::default());
    needs_connect(&unbound).await;
    unbound.engine.connect("wiki").await.expect("connected");
    unbound.wait_granted("wiki").await;
    assert!(unbound.token("wiki", 60).await.dpop_jkt.is_none());
    assert_eq!(auth_server.stats().dpop_bound_mints, 2, "not bound");
    let refreshes = auth_server.stats().refresh_mints;
    let after_restart = start_engine(
        &tb,
        &policy,
        Options {
            store: unbound.store.clone(),
            ..Options::default()
        },
    );
    after_restart.wait_granted("wiki").await;
    assert_eq!(auth_server.stats().refresh_mints, refreshes + 1);
    assert!(
        after_restart.browser.opened().is_empty(),
        "no browser after a restart"
    );

    // `required` where the authorization server offers no DPoP: named, before any browser.
    let plain = testbed(wiki_testbed()).await;
    let mut policy = oauth_policy(&plain);
    server_entry(&mut policy, "wiki")["dpop"] = json!("required");
    let refusing = start_engine(&plain, &policy, Options::default());
    needs_connect(&refusing).await;
    let refused = refusing
        .engine
        .connect("wiki")
        .await
        .expect_err("DPoP required");
    assert!(refused.to_string().contains("requires DPoP"), "{refused}");
    assert!(refusing.browser.opened().is_empty(), "the browser opened");
    assert!(kept_connection(&refusing).is_none());
}

/// `whoami` at `mcp` with a DPoP-bound `token` and a fresh proof for the request (the server's
/// nonce followed when it asks for one).
async fn bound_whoami(lanyard: &Lanyard, mcp: &McpHandle, token: &Secret) -> String {
    let mut nonce = None;
    for _ in 0..2 {
        let url = url::Url::parse(mcp.url()).expect("url");
        let proof = sign_proof(
            &lanyard.engine.dpop_key(),
            "POST",
            &url,
            lanyard.now(),
            Some(token.clone()),
            nonce.take(),
        )
        .await
        .expect("proof");
        let response = lanyard_testbed::whoami_call(
            &http(),
            mcp.url(),
            &format!("DPoP {}", token.expose()),
            Some(proof.expose()),
        )
        .send()
        .await
        .expect("MCP request");
        if response.status() == 401 {
            nonce = response
                .headers()
                .get("dpop-nonce")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            if nonce.is_some() {
                continue;
            }
        }
        assert_eq!(response.status(), 200, "a bound token with its proof");
        return response.text().await.expect("body");
    }
    panic!("the MCP server kept asking for a nonce");
}

/// A connected server that the policy takes away takes its connection with it: out of the
/// keychain, and its refresh token revoked at the server, as at sign-out. A renewal under way
/// when the server is removed, or when the user signs out, has its rotated refresh token revoked
/// too: no live refresh token is left at the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_the_policy_removes_takes_its_connection_with_it() {
    let tb = testbed(wiki_testbed()).await;
    let policy = oauth_policy(&tb);
    let lanyard = start_engine(&tb, &policy, Options::default());
    let auth_server = tb.auth_server("wiki-as").expect("AS");
    needs_connect(&lanyard).await;
    lanyard.engine.connect("wiki").await.expect("connected");
    lanyard.wait_granted("wiki").await;
    let kept = kept_connection(&lanyard).expect("kept");
    let refresh_token = kept["refresh_token"].as_str().expect("rt").to_owned();
    let client_id = kept["client_id"].as_str().expect("client").to_owned();

    let without = without_wiki(&policy);
    lanyard
        .engine
        .apply_policy(parse_policy(&without))
        .await
        .expect("reloaded");
    wiped_and_revoked(&lanyard, auth_server, &client_id).await;
    assert_eq!(
        try_refresh(auth_server, &client_id, &refresh_token).await,
        (400, "invalid_grant".to_owned()),
        "the refresh token is dead at the server"
    );
    assert!(lanyard.engine.status().server("wiki").is_none());

    // Revocations of refresh tokens that were live at the server (of any registered client: each
    // connect registers anew).
    let live_revoked = || {
        auth_server
            .stats()
            .revocations
            .iter()
            .filter(|r| r.revoked == "refresh_token")
            .count()
    };
    // A renewal under way (the server has rotated the refresh token, its answer is late) when the
    // server is removed, or when the user signs out: the rotated refresh token, which the engine
    // never keeps, is revoked too. The wiped one was rotated away already (the server sees an
    // unknown token), so exactly one live refresh token is revoked each time.
    for overtaken_by_sign_out in [false, true] {
        // Back in the policy (and signed out): a new connect, never the old connection.
        lanyard
            .engine
            .apply_policy(parse_policy(&policy))
            .await
            .expect("reloaded");
        needs_connect(&lanyard).await;
        lanyard
            .engine
            .connect("wiki")
            .await
            .expect("connected again");
        lanyard.wait_granted("wiki").await;
        let before = live_revoked();
        let refreshes = auth_server.stats().refresh_mints;
        auth_server.faults().inject(
            Endpoint::Token,
            Fault::SlowAnswer(Duration::from_millis(1500)),
            FaultMode::Once,
        );
        lanyard.engine.refresh("wiki").await.expect("asked");
        eventually("the renewal is being answered", || {
            auth_server.stats().refresh_mints == refreshes + 1
        })
        .await;
        if overtaken_by_sign_out {
            lanyard.engine.sign_out().await.expect("signed out");
        } else {
            lanyard
                .engine
                .apply_policy(parse_policy(&without))
                .await
                .expect("reloaded");
        }
        eventually("the rotated refresh token is revoked", || {
            live_revoked() == before + 1
        })
        .await;
        let_ticks_pass(20).await;
        assert!(kept_connection(&lanyard).is_none(), "a connection was kept");
    }
    assert!(matches!(lanyard.state("wiki"), ServerState::NeedsConnect));
}
