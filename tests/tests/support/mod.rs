//! What the end-to-end tests share: a testbed, a Lanyard engine pointed at it through a policy, a
//! scripted browser, one clock for both sides, and waiting on the engine's status with a timeout.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use lanyard_core::clock::ManualClock;
use lanyard_core::engine::{self, EngineConfig, EngineHandle, ServerState, Status};
use lanyard_core::policy::Policy;
use lanyard_core::signin::Browser;
use lanyard_core::store::MemoryStore;
use lanyard_testbed::{McpHandle, Testbed, TestbedConfig};
use serde_json::{json, Value};

/// How long any single wait for the engine may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// The user the scripted browser signs in as.
pub const USER: &str = "alice";

/// A browser that signs in at the testbed IdP as a given user on a background task, and remembers
/// every URL it was asked to open.
#[derive(Debug)]
pub struct TestBrowser {
    user: Mutex<String>,
    opened: Mutex<Vec<url::Url>>,
}

impl TestBrowser {
    pub fn new(user: &str) -> Arc<Self> {
        Arc::new(Self {
            user: Mutex::new(user.to_owned()),
            opened: Mutex::new(Vec::new()),
        })
    }

    /// Every URL opened so far.
    pub fn opened(&self) -> Vec<url::Url> {
        self.opened.lock().expect("lock").clone()
    }

    pub fn set_user(&self, user: &str) {
        *self.user.lock().expect("lock") = user.to_owned();
    }
}

impl Browser for TestBrowser {
    fn open(&self, url: &url::Url) -> Result<(), String> {
        self.opened.lock().expect("lock").push(url.clone());
        let user = self.user.lock().expect("lock").clone();
        let url = url.to_string();
        tokio::spawn(async move {
            if let Err(e) = lanyard_testbed::complete_login(&url, &user).await {
                tracing::warn!("scripted login failed: {e:#}");
            }
        });
        Ok(())
    }
}

/// A browser that must never be opened.
#[derive(Debug, Default)]
pub struct NoBrowser;

impl Browser for NoBrowser {
    fn open(&self, url: &url::Url) -> Result<(), String> {
        panic!("the browser was opened unexpectedly: {url}");
    }
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Starts a testbed.
pub async fn testbed(config: TestbedConfig) -> Testbed {
    init_tracing();
    Testbed::start(config).await.expect("testbed start")
}

/// The policy JSON for a testbed: its IdP and one enterprise-managed entry per MCP server (id =
/// MCP server name), `dev_mode` on.
pub fn policy_json(tb: &Testbed) -> Value {
    let mut policy = lanyard_testbed::demo::lanyard_policy(tb);
    policy["dev_mode"] = json!(true);
    policy
}

/// The entry of server `id` in a policy JSON.
pub fn server_entry<'a>(policy: &'a mut Value, id: &str) -> &'a mut Value {
    policy["servers"]
        .as_array_mut()
        .expect("servers")
        .iter_mut()
        .find(|s| s["id"] == id)
        .expect("server entry")
}

pub fn parse_policy(policy: &Value) -> Policy {
    Policy::from_json(&policy.to_string(), "test policy").expect("valid policy")
}

/// An engine and the things a test controls around it.
pub struct Lanyard {
    pub engine: EngineHandle,
    pub clock: ManualClock,
    pub store: Arc<MemoryStore>,
    pub browser: Arc<TestBrowser>,
}

/// Options for [`start_engine`].
pub struct Options {
    pub store: Arc<MemoryStore>,
    pub browser: Option<Arc<dyn Browser>>,
    pub tweak: Box<dyn FnOnce(&mut EngineConfig)>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            store: Arc::new(MemoryStore::new()),
            browser: None,
            tweak: Box::new(|_| {}),
        }
    }
}

/// Starts an engine on `policy` with a [`ManualClock`] set to the testbed's time (its moves reach the
/// engine as wake notices, the production path; no polling tick), a short sign-in timeout and
/// backoff, and the scripted browser signing in as [`USER`].
pub fn start_engine(tb: &Testbed, policy: &Value, options: Options) -> Lanyard {
    let clock = ManualClock::new(tb.clock().now());
    let browser = TestBrowser::new(USER);
    let dyn_browser: Arc<dyn Browser> = options.browser.unwrap_or_else(|| browser.clone());
    let mut parsed = parse_policy(policy);
    // One difference from production: without `settings.idle_after_secs` every server is kept
    // warm (0), as before idle servers existed, because most tests exercise refreshes of servers
    // no client asks for; `spending.rs` tests idling.
    if policy.pointer("/settings/idle_after_secs").is_none() {
        parsed.settings.idle_after_secs = 0;
    }
    let mut config = EngineConfig::new(
        parsed,
        options.store.clone(),
        Arc::new(clock.clone()),
        dyn_browser,
    );
    config.sign_in_timeout = Duration::from_secs(15);
    (options.tweak)(&mut config);
    let engine = engine::start(config).expect("engine start");
    Lanyard {
        engine,
        clock,
        store: options.store,
        browser,
    }
}

impl Lanyard {
    /// Moves the engine's clock and the testbed's clock forward together.
    pub fn advance(&self, tb: &Testbed, by: Duration) {
        tb.clock().advance(by);
        self.clock.advance(by);
    }

    /// The laptop slept for `by` and woke: both clocks move forward, and the engine hears that the
    /// machine resumed (as from logind), not merely that its clock was set.
    pub fn sleep_and_wake(&self, tb: &Testbed, by: Duration) {
        tb.clock().advance(by);
        self.clock.resume_after(by);
    }

    /// Sets the engine's clock to the testbed's (which also moves with real time).
    pub fn sync(&self, tb: &Testbed) {
        self.clock.set(tb.clock().now());
    }

    pub fn now(&self) -> u64 {
        lanyard_core::clock::Clock::unix_now(&self.clock)
    }

    /// Signs in and waits until every server has settled out of `Granting`.
    pub async fn sign_in(&self) {
        tokio::time::timeout(WAIT, self.engine.sign_in())
            .await
            .expect("sign-in timed out")
            .expect("sign-in");
    }

    /// Waits for `pred` on the status, failing the test with `what` and the last status.
    pub async fn wait(&self, what: &str, pred: impl FnMut(&Status) -> bool) -> Status {
        wait_for(&self.engine, what, pred).await
    }

    /// Waits until server `id` satisfies `pred`.
    pub async fn wait_server(
        &self,
        id: &str,
        what: &str,
        mut pred: impl FnMut(&ServerState) -> bool,
    ) -> ServerState {
        let status = self
            .wait(&format!("{id}: {what}"), |s| {
                s.server(id).is_some_and(|srv| pred(&srv.state))
            })
            .await;
        status.server(id).expect("server").state.clone()
    }

    /// Waits until server `id` is granted and returns its `expires_at`.
    pub async fn wait_granted(&self, id: &str) -> u64 {
        match self
            .wait_server(id, "granted", |s| matches!(s, ServerState::Granted { .. }))
            .await
        {
            ServerState::Granted { expires_at, .. } => expires_at,
            _ => unreachable!(),
        }
    }

    /// A token for server `id` with at least `min_ttl` seconds left.
    pub async fn token(&self, id: &str, min_ttl: u64) -> lanyard_core::engine::AccessToken {
        tokio::time::timeout(WAIT, self.engine.token(id, Duration::from_secs(min_ttl)))
            .await
            .expect("token() timed out")
            .unwrap_or_else(|e| panic!("token for {id}: {e}"))
    }

    pub fn state(&self, id: &str) -> ServerState {
        self.engine
            .status()
            .server(id)
            .expect("server")
            .state
            .clone()
    }
}

/// Waits for `pred` on the engine's status, failing with `what` and the last status after [`WAIT`].
pub async fn wait_for(
    engine: &EngineHandle,
    what: &str,
    pred: impl FnMut(&Status) -> bool,
) -> Status {
    match tokio::time::timeout(WAIT, engine.wait_for(pred)).await {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => panic!("waiting for {what}: {e}"),
        Err(_) => panic!(
            "timed out waiting for {what}; last status: {:#?}",
            engine.status()
        ),
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
}

/// Calls the MCP server's `whoami` tool with `token`: `Ok(text)` or `Err(HTTP status)`.
pub async fn whoami(mcp: &McpHandle, token: &str) -> Result<String, u16> {
    let resp = lanyard_testbed::whoami_call(&http(), mcp.url(), &format!("Bearer {token}"), None)
        .send()
        .await
        .expect("MCP request");
    let status = resp.status().as_u16();
    if status != 200 {
        return Err(status);
    }
    let body: Value = resp.json().await.expect("MCP JSON");
    Ok(body["result"]["content"][0]["text"]
        .as_str()
        .expect("whoami text")
        .to_owned())
}

/// Starts an engine on `policy`, signs in, and waits until server `id` is granted with a token
/// its MCP server accepts.
pub async fn granted_and_accepted(tb: &Testbed, policy: &Value, id: &str) -> Lanyard {
    let lanyard = start_engine(tb, policy, Options::default());
    lanyard.sign_in().await;
    lanyard.wait_granted(id).await;
    let mcp = tb.mcp_server(id).expect("mcp");
    assert_accepted(mcp, lanyard.token(id, 60).await.access_token.expose()).await;
    lanyard
}

/// Asserts that `token` works at `mcp` as alice.
pub async fn assert_accepted(mcp: &McpHandle, token: &str) {
    let text = whoami(mcp, token)
        .await
        .unwrap_or_else(|status| panic!("{} refused the token: HTTP {status}", mcp.name()));
    assert!(
        text.contains("sub=alice") && text.contains(&format!("server={}", mcp.name())),
        "{text}"
    );
}

/// Claims of a JWT, unverified.
pub fn claims(jwt: &str) -> Value {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1).expect("JWT payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

/// The testbed clock's current Unix second.
pub fn testbed_now(tb: &Testbed) -> u64 {
    tb.clock()
        .now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("time")
        .as_secs()
}

/// Lets the engine run a few ticks (used only to show that nothing happens meanwhile; never to
/// wait for something to happen).
pub async fn let_ticks_pass(n: u32) {
    for _ in 0..n {
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
}

/// Polls `cond` (state outside the engine, e.g. testbed counters) every 20 ms until it holds,
/// failing with `what` after [`WAIT`].
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A fresh path in the temp directory (not created).
pub fn temp_path(name: &str) -> std::path::PathBuf {
    let unique: u64 = rand::random();
    std::env::temp_dir().join(format!(
        "lanyard-e2e-{}-{unique:x}-{name}",
        std::process::id()
    ))
}

/// Writes `contents` to a fresh temp file and returns its path.
pub fn temp_file(name: &str, contents: &str) -> std::path::PathBuf {
    let path = temp_path(name);
    std::fs::write(&path, contents).expect("write temp file");
    path
}

/// A key pair for `private_key_jwt`: (private key PEM file, public key PEM for the testbed).
pub async fn rsa_client_key() -> (std::path::PathBuf, String) {
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    let (private, public) = tokio::task::spawn_blocking(|| {
        let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("rsa keygen");
        let private = key.to_pkcs8_pem(LineEnding::LF).expect("pem").to_string();
        let public = key
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("pem");
        (private, public)
    })
    .await
    .expect("keygen task");
    (temp_file("rsa.pem", &private), public)
}

/// A P-256 key pair for `private_key_jwt` with ES256.
pub fn ec_client_key() -> (std::path::PathBuf, String) {
    use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    let key = p256::SecretKey::random(&mut rand::thread_rng());
    let private = key.to_pkcs8_pem(LineEnding::LF).expect("pem").to_string();
    let public = key
        .public_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("pem");
    (temp_file("ec.pem", &private), public)
}

/// Whether `store` holds nothing but issuer pins (which are not secret and outlive a session on
/// purpose: `engine::grant::issuer_pin_key`).
pub fn holds_no_secret(store: &lanyard_core::store::MemoryStore) -> bool {
    store.keys().iter().all(|k| k.starts_with("issuer-pin:"))
}
