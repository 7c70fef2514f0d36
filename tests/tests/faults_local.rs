//! The fault matrix's local rows (docs/src/security/fault-matrix.md, "local faults"): the keychain
//! locked and unlocked, its item deleted under a running agent, a full disk under the agent's log,
//! a thousand helpers while the
//! IdP fails, a refresh-token rotation racing a sign-out, and an agent killed in the middle of a
//! refresh. Each row runs against the testbed over real HTTP on 127.0.0.1 and the real Secret
//! Service (gnome-keyring on the private D-Bus session of `scripts/with-keyring.sh`; without it the
//! keychain rows print a skip line and pass). Rows that need the wall clock to move (a refresh) drive
//! the engine through its public API with the testbed's clock; the others run a real `lanyard
//! agent` process and talk to it over its socket or with `lanyard` commands.

// Linux only: the Secret Service, mount namespaces, SIGKILL.
#![cfg(target_os = "linux")]

mod kit;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lanyard_core::engine::{
    self, refresh_token_key, EngineHandle, IdpStatus, KeychainStatus, ServerState, Status,
};
use lanyard_core::ipc::{BlockingClient, ClientError, ErrorCode, TokenRequestOptions};
use lanyard_core::secret::Secret;
use lanyard_core::signin::Browser;
use lanyard_core::store::{KeyringStore, SecretStore};
use lanyard_testbed::demo::{lanyard_policy, start_demo, DEMO_IDP_CLIENT_ID};
use lanyard_testbed::{Endpoint, Fault, FaultMode, Testbed};

const EXIT_NOT_SIGNED_IN: i32 = 4;

// ---- shared ------------------------------------------------------------------------------------

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

fn unique(what: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("lanyard-fault-{what}-{}-{nanos:x}", std::process::id())
}

/// A browser that must not be opened: the session must come back without one.
struct NoBrowser;

impl Browser for NoBrowser {
    fn open(&self, url: &url::Url) -> Result<(), String> {
        panic!("the browser was opened at {url}; the saved session should have been resumed");
    }
}

async fn wait_until(
    engine: &EngineHandle,
    what: &str,
    pred: impl FnMut(&Status) -> bool,
) -> Status {
    match tokio::time::timeout(Duration::from_secs(20), engine.wait_for(pred)).await {
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

/// Polls `pred` every 50 ms for up to 15 s.
async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    mut pred: impl FnMut() -> F,
) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !pred().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The keychain's answer for `key`, read on a blocking thread.
async fn keychain_get(store: &Arc<KeyringStore>, key: &str) -> Option<Secret> {
    let (store, key) = (store.clone(), key.to_owned());
    tokio::task::spawn_blocking(move || store.get(&key))
        .await
        .expect("join")
        .expect("the keychain answers")
}

/// Whether the keychain answers "no entry" for `key` (a read racing a delete may fail: not empty).
async fn keychain_empty(store: &Arc<KeyringStore>, key: &str) -> bool {
    let (store, key) = (store.clone(), key.to_owned());
    tokio::task::spawn_blocking(move || store.get(&key) == Ok(None))
        .await
        .expect("join")
}

/// Locks and unlocks the Secret Service's default collection over D-Bus, as the desktop's lock
/// screen and unlock dialog do (gnome-keyring's unlock prompt needs a display; its password
/// interface does the same without one).
mod secret_service {
    use zbus::zvariant::{ObjectPath, OwnedObjectPath, OwnedValue, Value};

    const DEST: &str = "org.freedesktop.secrets";
    const SERVICE: &str = "/org/freedesktop/secrets";

    async fn default_collection(bus: &zbus::Connection) -> OwnedObjectPath {
        let reply = bus
            .call_method(
                Some(DEST),
                SERVICE,
                Some("org.freedesktop.Secret.Service"),
                "ReadAlias",
                &("default",),
            )
            .await
            .expect("ReadAlias");
        reply.body().deserialize().expect("a collection path")
    }

    pub async fn lock_default() {
        let bus = zbus::Connection::session().await.expect("session bus");
        let collection = default_collection(&bus).await;
        bus.call_method(
            Some(DEST),
            SERVICE,
            Some("org.freedesktop.Secret.Service"),
            "Lock",
            &(vec![collection.as_ref()],),
        )
        .await
        .expect("Lock");
        assert!(is_locked(&bus, &collection).await, "the collection locked");
    }

    pub async fn unlock_default(password: &str) {
        let bus = zbus::Connection::session().await.expect("session bus");
        let collection = default_collection(&bus).await;
        let reply = bus
            .call_method(
                Some(DEST),
                SERVICE,
                Some("org.freedesktop.Secret.Service"),
                "OpenSession",
                &("plain", Value::from("")),
            )
            .await
            .expect("OpenSession");
        let (_, session): (OwnedValue, OwnedObjectPath) =
            reply.body().deserialize().expect("a session");
        let secret: (ObjectPath<'_>, Vec<u8>, Vec<u8>, &str) = (
            session.as_ref(),
            Vec::new(),
            password.as_bytes().to_vec(),
            "text/plain",
        );
        bus.call_method(
            Some(DEST),
            SERVICE,
            Some("org.gnome.keyring.InternalUnsupportedGuiltRiddenInterface"),
            "UnlockWithMasterPassword",
            &(collection.as_ref(), secret),
        )
        .await
        .expect("UnlockWithMasterPassword");
        assert!(
            !is_locked(&bus, &collection).await,
            "the collection unlocked"
        );
    }

    async fn is_locked(bus: &zbus::Connection, collection: &OwnedObjectPath) -> bool {
        let reply = bus
            .call_method(
                Some(DEST),
                collection.as_ref(),
                Some("org.freedesktop.DBus.Properties"),
                "Get",
                &("org.freedesktop.Secret.Collection", "Locked"),
            )
            .await
            .expect("Locked property");
        let value: OwnedValue = reply.body().deserialize().expect("a variant");
        bool::try_from(value).expect("a boolean")
    }
}

// ---- a real agent ------------------------------------------------------------------------------

/// One user's session: a scratch dir, a policy for the testbed, a private runtime dir, and the
/// keychain (the Secret Service of the test's bus) or none.
struct World {
    testbed: Testbed,
    dir: PathBuf,
    policy: PathBuf,
    runtime_dir: PathBuf,
    keychain: bool,
}

impl World {
    async fn new(keychain: bool) -> Self {
        let testbed = start_demo(Duration::ZERO).await.expect("testbed");
        let dir = std::env::temp_dir().join(unique("world"));
        let runtime_dir = dir.join("run");
        std::fs::create_dir_all(&runtime_dir).expect("runtime dir");
        let policy = dir.join("policy.json");
        let json = lanyard_policy(&testbed);
        std::fs::write(&policy, serde_json::to_vec_pretty(&json).expect("json")).expect("policy");
        Self {
            testbed,
            dir,
            policy,
            runtime_dir,
            keychain,
        }
    }

    fn endpoint(&self) -> PathBuf {
        self.runtime_dir.join("lanyard/agent.sock")
    }

    /// The keychain entry of this world's session.
    fn key(&self) -> String {
        refresh_token_key(self.testbed.idp().issuer(), DEMO_IDP_CLIENT_ID)
    }

    /// `program args…` as this world's user (`program` is `lanyard`, or a wrapper running it).
    fn command(&self, program: &Path) -> Command {
        let bins = kit::binaries();
        let mut command = Command::new(program);
        command
            .env("XDG_RUNTIME_DIR", &self.runtime_dir)
            .env("XDG_STATE_HOME", &self.runtime_dir)
            .env("LANYARD_POLICY", &self.policy)
            .env(
                "BROWSER",
                format!("{} browse --user alice@example.com", bins.testbed.display()),
            )
            .env_remove("LANYARD_AGENT_SOCKET")
            .env_remove("LANYARD_LOG")
            .stdin(Stdio::null());
        if self.keychain {
            command.env_remove("LANYARD_NO_KEYCHAIN");
        } else {
            command.env("LANYARD_NO_KEYCHAIN", "1");
        }
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(&kit::binaries().lanyard)
            .args(args)
            .output()
            .expect("run lanyard")
    }

    fn start_agent(&self) -> Agent {
        let log = self.dir.join(unique("agent-log"));
        let child = self
            .command(&kit::binaries().lanyard)
            .arg("agent")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn agent");
        self.wait_for_agent(Agent { child, log })
    }

    fn wait_for_agent(&self, mut agent: Agent) -> Agent {
        let deadline = Instant::now() + Duration::from_secs(20);
        while BlockingClient::connect(&self.endpoint()).is_err() {
            if let Ok(Some(status)) = agent.child.try_wait() {
                panic!("the agent exited ({status}): {}", agent.log());
            }
            assert!(
                Instant::now() < deadline,
                "the agent did not answer: {}",
                agent.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        agent
    }

    fn client(&self) -> BlockingClient {
        BlockingClient::connect(&self.endpoint()).expect("connect to the agent")
    }

    fn status(&self) -> Status {
        self.client().status().expect("status")
    }

    /// Polls the agent's status until `pred` holds (15 s at most).
    fn wait_status(&self, what: &str, mut pred: impl FnMut(&Status) -> bool) -> Status {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let status = self.status();
            if pred(&status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {status:#?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn login(&self) {
        let login = self.run(&["login", "--no-start"]);
        assert_eq!(login.status.code(), Some(0), "login: {}", text(&login));
        self.wait_status("docs granted", |s| granted(s, "docs"));
    }

    /// The keychain item of this world's session, read with `secret-tool` (another process).
    fn keychain_item(&self) -> Option<String> {
        let out = Command::new("secret-tool")
            .args(["lookup", "service", "lanyard", "username", &self.key()])
            .output()
            .expect("secret-tool");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if self.keychain {
            let _ = Command::new("secret-tool")
                .args(["clear", "service", "lanyard", "username", &self.key()])
                .status();
        }
        self.testbed.shutdown();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&mut self, signal: &str) {
        let sent = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
    }

    /// Sends `signal` and waits (10 s at most) for the agent to end.
    fn stop(&mut self, signal: &str) -> std::process::ExitStatus {
        self.signal(signal);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "the agent ignored {signal}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Blocking work (child processes, the broker client) off the test's async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

// ---- the rows ----------------------------------------------------------------------------------

/// The keychain is locked mid-session (screen lock, `Lock` over D-Bus) and unlocked later. While
/// locked, the rotated refresh token cannot be saved: the status says `locked` and tokens keep
/// coming from memory. After the unlock the engine writes the session again by itself (retries
/// from [`engine::KEYCHAIN_RETRY_SECS`], backing off), so a restart resumes it without a browser.
///
/// Locking the collection would disturb every other keychain test on the shared bus, so the row
/// re-runs itself under a Secret Service of its own (`scripts/with-keyring.sh`, nested).
#[test]
fn fault_keychain_locked_mid_session_then_unlocked() {
    const NAME: &str = "fault_keychain_locked_mid_session_then_unlocked";
    const OWN_KEYRING: &str = "LANYARD_FAULT_OWN_KEYRING";
    if !keyring_or_skip(NAME) {
        return;
    }
    if std::env::var_os(OWN_KEYRING).is_none() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/with-keyring.sh");
        let out = Command::new("bash")
            .arg(script)
            .arg(std::env::current_exe().expect("test binary"))
            .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
            .env(OWN_KEYRING, "1")
            .stdin(Stdio::null())
            .output()
            .expect("re-run under a keyring of its own");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{}",
            text(&out)
        );
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(keychain_locked_then_unlocked());
}

async fn keychain_locked_then_unlocked() {
    let tb = start_demo(Duration::ZERO).await.expect("testbed");
    let policy = lanyard_policy(&tb);
    let store = Arc::new(KeyringStore::new(unique("locked")));
    let key = refresh_token_key(tb.idp().issuer(), DEMO_IDP_CLIENT_ID);
    let engine = engine::start(kit::engine_config(
        &policy,
        store.clone(),
        tb.clock(),
        kit::ScriptedBrowser::new("alice"),
    ))
    .expect("engine");
    engine.sign_in().await.expect("sign-in");
    wait_until(&engine, "docs granted", |s| granted(s, "docs")).await;
    let first = keychain_get(&store, &key).await.expect("saved at sign-in");

    secret_service::lock_default().await;
    // 50 minutes on: the ID token is renewed and the IdP rotates the refresh token.
    let refreshes = tb.idp().stats().refresh_grants;
    tb.clock().advance(Duration::from_secs(50 * 60));
    let status = wait_until(&engine, "the renewal and a locked keychain", |s| {
        matches!(s.keychain, KeychainStatus::Locked { .. })
            && matches!(
                s.idp,
                IdpStatus::SignedIn {
                    refresh_error: None,
                    ..
                }
            )
            && granted(s, "docs")
    })
    .await;
    assert_eq!(tb.idp().stats().refresh_grants, refreshes + 1);
    let KeychainStatus::Locked { reason } = &status.keychain else {
        unreachable!()
    };
    assert!(!reason.is_empty());
    // Tokens keep coming from memory.
    let token = engine
        .token("docs", Duration::from_secs(60))
        .await
        .expect("a token while the keychain is locked");
    assert!(!token.access_token.expose().is_empty());

    // Still locked at the next retry: still `locked`, nothing lost.
    tb.clock()
        .advance(Duration::from_secs(engine::KEYCHAIN_RETRY_SECS + 1));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(matches!(
        engine.status().keychain,
        KeychainStatus::Locked { .. }
    ));

    let password =
        std::env::var("LANYARD_TEST_KEYRING_PASSWORD").unwrap_or_else(|_| "test-pass".into());
    secret_service::unlock_default(&password).await;
    // The retry after a second refusal comes twice as late.
    tb.clock()
        .advance(Duration::from_secs(2 * engine::KEYCHAIN_RETRY_SECS + 1));
    wait_until(&engine, "the keychain available again", |s| {
        s.keychain == KeychainStatus::Available
    })
    .await;
    let saved = keychain_get(&store, &key).await.expect("saved again");
    assert_ne!(
        saved, first,
        "the rotated refresh token was written after the unlock"
    );
    engine.shutdown().await;

    // A restart resumes the session from the keychain: no browser, no second login.
    let engine = engine::start(kit::engine_config(
        &policy,
        store.clone(),
        tb.clock(),
        Arc::new(NoBrowser),
    ))
    .expect("engine");
    wait_until(&engine, "resumed and granted", |s| {
        matches!(s.idp, IdpStatus::SignedIn { .. }) && granted(s, "docs")
    })
    .await;
    assert_eq!(tb.idp().stats().logins, 1, "no second sign-in");
    engine.sign_out().await.expect("sign-out");
    eventually("the keychain wiped", || keychain_empty(&store, &key)).await;
    engine.shutdown().await;
}

/// Someone deletes Lanyard's item in the keychain app while the agent runs. The agent keeps
/// serving from memory; the next start finds no saved session and says "not signed in" (exit 4,
/// `lanyard login`), never crashes; signing in again restores everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_keychain_item_deleted_under_a_running_agent() {
    if !keyring_or_skip("fault_keychain_item_deleted_under_a_running_agent") {
        return;
    }
    let world = Arc::new(World::new(true).await);
    let w = world.clone();
    blocking(move || {
        let world = w;
        let mut agent = world.start_agent();
        world.login();
        assert!(world.keychain_item().is_some(), "the session is saved");

        let cleared = Command::new("secret-tool")
            .args(["clear", "service", "lanyard", "username", &world.key()])
            .status()
            .expect("secret-tool clear");
        assert!(cleared.success());
        assert!(world.keychain_item().is_none(), "the item is gone");

        // The running agent is unaffected.
        let token = world.run(&["token", "docs"]);
        assert_eq!(token.status.code(), Some(0), "{}", text(&token));
        assert!(matches!(world.status().idp, IdpStatus::SignedIn { .. }));
        assert!(agent.stop("-TERM").success(), "{}", agent.log());

        // The next start: nothing to resume, a clear state, a helper exit code, no crash.
        let mut agent = world.start_agent();
        let status = world.wait_status("the restore finished", |s| {
            !matches!(s.idp, IdpStatus::Restoring)
        });
        assert!(
            matches!(
                status.idp,
                IdpStatus::SignedOut | IdpStatus::NeedsSignIn { .. }
            ),
            "{:?}",
            status.idp
        );
        let token = world.run(&["token", "docs"]);
        assert_eq!(
            token.status.code(),
            Some(EXIT_NOT_SIGNED_IN),
            "{}",
            text(&token)
        );
        assert!(
            String::from_utf8_lossy(&token.stderr).contains("sign in"),
            "{}",
            text(&token)
        );
        assert!(
            agent.child.try_wait().expect("wait").is_none(),
            "the agent runs"
        );

        world.login();
        assert!(world.keychain_item().is_some(), "saved again");
        assert_eq!(world.testbed.idp().stats().logins, 2);
        assert!(agent.stop("-TERM").success(), "{}", agent.log());
    })
    .await;
}

/// The disk holding the agent's log fills up (a 64 KiB tmpfs in a private mount namespace). The
/// agent signs in and serves tokens as before; lost lines are counted, and once the log can be
/// written again one line says how many were lost and why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_log_disk_full() {
    // A private mount namespace with its own tmpfs needs root (CI and this machine run as root).
    let can_mount = Command::new("unshare")
        .args(["-m", "sh", "-c", "mount -t tmpfs -o size=4k probe /mnt"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !can_mount {
        println!("SKIPPED fault_log_disk_full: `unshare -m` + `mount -t tmpfs` needs root here");
        return;
    }
    let world = Arc::new(World::new(false).await);
    let w = world.clone();
    blocking(move || {
        let world = w;
        let logs = world.dir.join("logs");
        std::fs::create_dir_all(&logs).expect("logs dir");
        // A tmpfs over `logs` that only the agent sees; its stderr is a file on it.
        let script =
            r#"mount -t tmpfs -o size=64k lanyard-log "$1" && exec "$2" agent 2>>"$1/agent.log""#;
        let mut command = world.command(Path::new("unshare"));
        command
            .args(["-m", "--propagation", "private", "sh", "-c", script, "sh"])
            .arg(&logs)
            .arg(&kit::binaries().lanyard)
            .env("LANYARD_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = command
            .spawn()
            .expect("spawn the agent in its own mount namespace");
        let mut agent = world.wait_for_agent(Agent {
            child,
            log: logs.join("unused"),
        });
        // The agent's view of its log directory.
        let seen = PathBuf::from(format!("/proc/{}/root", agent.child.id()))
            .join(logs.strip_prefix("/").expect("absolute"));
        let log = seen.join("agent.log");
        assert!(
            std::fs::read_to_string(&log)
                .expect("the agent's log")
                .contains("broker listening"),
            "the agent logs to the tmpfs"
        );
        assert!(
            !logs.join("agent.log").exists(),
            "the tmpfs is private to the agent's namespace"
        );

        // Fill the disk.
        let filler = seen.join("filler");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&filler).expect("filler");
            let chunk = [b'x'; 4096];
            loop {
                match f.write_all(&chunk) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(28) => break,
                    Err(e) => panic!("filling the tmpfs: {e}"),
                }
            }
        }
        // The log's last page still has room: fill it too, with whole padding lines.
        {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&log)
                .expect("the log");
            let line = format!("{}\n", "#".repeat(63));
            loop {
                match f.write(line.as_bytes()) {
                    Ok(n) if n == line.len() => {}
                    Ok(_) => break,
                    Err(e) if e.raw_os_error() == Some(28) => break,
                    Err(e) => panic!("filling the log's last page: {e}"),
                }
            }
        }
        let full_at = std::fs::metadata(&log).expect("log").len();

        // Sign-in and tokens work while every log line is refused.
        world.login();
        for _ in 0..3 {
            let token = world.run(&["token", "docs"]);
            assert_eq!(token.status.code(), Some(0), "{}", text(&token));
        }
        assert!(
            agent.child.try_wait().expect("wait").is_none(),
            "the agent runs"
        );
        assert_eq!(
            std::fs::metadata(&log).expect("log").len(),
            full_at,
            "nothing could be written"
        );

        // Room again: the next line is preceded by exactly one notice.
        std::fs::remove_file(&filler).expect("free the disk");
        let logout = world.run(&["logout"]);
        assert_eq!(logout.status.code(), Some(0), "{}", text(&logout));
        let deadline = Instant::now() + Duration::from_secs(10);
        let written = loop {
            let written = std::fs::read_to_string(&log).expect("log");
            if written.contains("signing out") {
                break written;
            }
            assert!(
                Instant::now() < deadline,
                "no line after the disk had room: {written}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let notices: Vec<&str> = written
            .lines()
            .filter(|l| l.contains("could not be written"))
            .collect();
        assert_eq!(notices.len(), 1, "{written}");
        assert!(
            notices[0].contains("No space left on device"),
            "{}",
            notices[0]
        );
        let lost: u64 = notices[0]
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .expect("a count");
        assert!(
            lost >= 2,
            "sign-in and grants log several lines: {}",
            notices[0]
        );
        assert!(agent.stop("-TERM").success());
    })
    .await;
}

/// A thousand helpers at once (broker connections, each a client that saw a 401 and asks for a
/// fresh token) while the IdP answers 503. One grant goes to the IdP and fails; every helper gets
/// an answer (the still-valid token, or "temporarily unavailable" with the retry time) and the
/// IdP sees a bounded number of requests, not a storm. When the IdP is back, the next retry works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_thousand_helpers_while_the_idp_fails() {
    const HELPERS: usize = 1000;
    let world = Arc::new(World::new(false).await);
    let w = world.clone();
    blocking(move || {
        let world = w;
        let mut agent = world.start_agent();
        world.login();
        let before = world
            .client()
            .token("docs", TokenRequestOptions::default())
            .expect("a token");
        // A fresh mint counts as new for a forced refresh for 2 s: let that pass.
        std::thread::sleep(Duration::from_millis(2100));

        let idp = world.testbed.idp().faults();
        idp.inject(Endpoint::Token, Fault::Status(503), FaultMode::Persistent);
        let idp_requests = idp.requests(Endpoint::Token);
        let started = Instant::now();
        let barrier = Arc::new(std::sync::Barrier::new(HELPERS));
        let helpers: Vec<_> = (0..HELPERS)
            .map(|_| {
                let (endpoint, barrier) = (world.endpoint(), barrier.clone());
                std::thread::Builder::new()
                    .stack_size(128 * 1024)
                    .spawn(move || {
                        let mut client = BlockingClient::connect(&endpoint)?;
                        barrier.wait();
                        client.token(
                            "docs",
                            TokenRequestOptions {
                                force_refresh: true,
                                ..TokenRequestOptions::default()
                            },
                        )
                    })
                    .expect("spawn a helper")
            })
            .collect();
        let (mut served, mut unavailable) = (0, 0);
        for helper in helpers {
            match helper.join().expect("helper thread") {
                Ok(token) => {
                    assert_eq!(token.access_token, before.access_token, "the valid token");
                    served += 1;
                }
                Err(ClientError::Agent(reply)) if reply.code == ErrorCode::Unavailable => {
                    unavailable += 1
                }
                Err(e) => panic!("a helper got {e:?}"),
            }
        }
        let took = started.elapsed();
        let storm = idp.requests(Endpoint::Token) - idp_requests;
        println!(
            "{HELPERS} helpers: {served} served the valid token, {unavailable} told \
             'unavailable'; {storm} IdP token request(s); {took:?}"
        );
        assert_eq!(served + unavailable, HELPERS);
        assert!(storm >= 1, "the failing IdP was asked");
        assert!(
            storm <= 3,
            "a retry storm: {storm} IdP requests for {HELPERS} helpers"
        );
        assert!(took < Duration::from_secs(30), "{took:?}");
        let status = world.status();
        assert!(
            matches!(
                status.server("docs").map(|s| &s.state),
                Some(ServerState::Failing { .. })
            ),
            "{:?}",
            status.server("docs")
        );

        // The IdP comes back: the retry (backoff from 1 s) mints a new token.
        idp.clear();
        let deadline = Instant::now() + Duration::from_secs(15);
        let after = loop {
            match world.client().token(
                "docs",
                TokenRequestOptions {
                    force_refresh: true,
                    ..TokenRequestOptions::default()
                },
            ) {
                Ok(token) if token.access_token != before.access_token => break token,
                _ => {}
            }
            assert!(
                Instant::now() < deadline,
                "no new token after the IdP recovered"
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        assert!(!after.access_token.expose().is_empty());
        assert!(agent.stop("-TERM").success(), "{}", agent.log());
    })
    .await;
}

/// The user signs out while a refresh is under way and the IdP rotates the refresh token. After
/// sign-out no refresh token is live at the IdP and none is in the keychain: the rotated one that
/// arrives late is revoked and taken out of the keychain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_refresh_rotation_races_sign_out() {
    if !keyring_or_skip("fault_refresh_rotation_races_sign_out") {
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let tb = start_demo(Duration::ZERO).await.expect("testbed");
    // No servers: the only request at the IdP's token endpoint after the jump is the refresh.
    let mut policy = lanyard_policy(&tb);
    policy["servers"] = serde_json::json!([]);
    let store = Arc::new(KeyringStore::new(unique("race")));
    let key = refresh_token_key(tb.idp().issuer(), DEMO_IDP_CLIENT_ID);
    let engine = engine::start(kit::engine_config(
        &policy,
        store.clone(),
        tb.clock(),
        kit::ScriptedBrowser::new("alice"),
    ))
    .expect("engine");
    engine.sign_in().await.expect("sign-in");
    wait_until(&engine, "signed in", |s| {
        matches!(s.idp, IdpStatus::SignedIn { .. })
    })
    .await;

    // The next answer of the IdP's token endpoint (the refresh) is held for a second after the
    // IdP has rotated the refresh token.
    let faults = tb.idp().faults();
    faults.inject(
        Endpoint::Token,
        Fault::SlowAnswer(Duration::from_millis(1000)),
        FaultMode::Once,
    );
    let refreshes = tb.idp().stats().refresh_grants;
    tb.clock().advance(Duration::from_secs(50 * 60));
    eventually("the rotation at the IdP", || {
        std::future::ready(tb.idp().stats().refresh_grants > refreshes)
    })
    .await;
    // Sign-out while the rotated token is on its way back.
    engine.sign_out().await.expect("sign-out");
    wait_until(&engine, "signed out", |s| {
        matches!(s.idp, IdpStatus::SignedOut)
    })
    .await;
    // The rotated refresh token does not survive anywhere.
    eventually("no live refresh token and an empty keychain", || async {
        tb.idp().live_refresh_tokens() == 0 && keychain_empty(&store, &key).await
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        tb.idp().live_refresh_tokens(),
        0,
        "a refresh token came back"
    );
    assert!(
        keychain_empty(&store, &key).await,
        "the keychain holds a refresh token again"
    );
    assert!(matches!(engine.status().idp, IdpStatus::SignedOut));
    assert_eq!(
        tb.idp().stats().revocations.len(),
        2,
        "the old and the rotated token"
    );
    engine.shutdown().await;
}

/// The agent is killed (SIGKILL) while its refresh is at the IdP (held there by testbed latency,
/// before the IdP acts on it). The keychain holds the previous refresh token whole (one entry, no
/// parts or marker left), and the next agent resumes the session with it: no new sign-in. When the
/// IdP had already rotated the token, the next agent names the state (`needs_sign_in`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_agent_sigkill_mid_refresh() {
    if !keyring_or_skip("fault_agent_sigkill_mid_refresh") {
        return;
    }
    let world = Arc::new(World::new(true).await);
    let w = world.clone();
    blocking(move || {
        let world = w;
        let mut agent = world.start_agent();
        world.login();
        assert!(agent.stop("-TERM").success(), "{}", agent.log());
        let saved = world.keychain_item().expect("the session is saved");

        // The next agent resumes with a refresh; the IdP holds it for 3 s and the agent dies.
        let faults = world.testbed.idp().faults();
        faults.inject(
            Endpoint::Token,
            Fault::Slow(Duration::from_secs(3)),
            FaultMode::Once,
        );
        let seen = faults.requests(Endpoint::Token);
        let mut agent = world.start_agent();
        let deadline = Instant::now() + Duration::from_secs(10);
        while faults.requests(Endpoint::Token) == seen {
            assert!(Instant::now() < deadline, "no refresh reached the IdP");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(matches!(world.status().idp, IdpStatus::Restoring));
        let killed = agent.stop("-KILL");
        assert!(!killed.success());
        // The held request ends at the IdP (answered into a closed connection, or dropped).
        std::thread::sleep(Duration::from_millis(3300));

        // What the keychain holds: the previous refresh token, whole.
        let item = world.keychain_item().expect("the session is still saved");
        assert!(
            !item.starts_with("lanyard-parts:"),
            "a parts marker was left"
        );
        let parts = Command::new("secret-tool")
            .args(["search", "--all", "service", "lanyard"])
            .output()
            .expect("secret-tool search");
        let listing = String::from_utf8_lossy(&parts.stdout).into_owned();
        let key = world.key();
        assert!(
            !listing.contains(&format!("{key}#")),
            "parts were left in the keychain"
        );

        // The next agent resumes: no new sign-in.
        let mut agent = world.start_agent();
        let status = world.wait_status("restored", |s| !matches!(s.idp, IdpStatus::Restoring));
        let rotated_before_kill = item != saved;
        println!(
            "after SIGKILL mid-refresh: keychain {} the pre-kill token; IdP refreshes {}; \
             session {:?}",
            if rotated_before_kill {
                "does not hold"
            } else {
                "holds"
            },
            world.testbed.idp().stats().refresh_grants,
            status.idp
        );
        assert!(
            matches!(status.idp, IdpStatus::SignedIn { .. }),
            "the session was lost: {:?}\n{}",
            status.idp,
            agent.log()
        );
        world.wait_status("docs granted", |s| granted(s, "docs"));
        assert_eq!(world.testbed.idp().stats().logins, 1, "no second sign-in");
        let token = world.run(&["token", "docs"]);
        assert_eq!(token.status.code(), Some(0), "{}", text(&token));
        assert_ne!(
            world.keychain_item().expect("saved"),
            saved,
            "the rotated refresh token replaced the old one"
        );
        assert!(agent.stop("-TERM").success(), "{}", agent.log());

        // The limit: the IdP rotated the token and the agent died before hearing of it. The
        // keychain's token is spent (an IdP without a reuse grace period refuses it), so the next
        // agent says "sign in again" — a named state, never a crash — and a sign-in recovers.
        faults.inject(
            Endpoint::Token,
            Fault::SlowAnswer(Duration::from_secs(3)),
            FaultMode::Once,
        );
        let refreshes = world.testbed.idp().stats().refresh_grants;
        let mut agent = world.start_agent();
        let deadline = Instant::now() + Duration::from_secs(10);
        while world.testbed.idp().stats().refresh_grants == refreshes {
            assert!(Instant::now() < deadline, "no rotation at the IdP");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!agent.stop("-KILL").success());
        std::thread::sleep(Duration::from_millis(3300));
        let item = world.keychain_item().expect("still saved");
        assert!(
            !item.starts_with("lanyard-parts:"),
            "a parts marker was left"
        );
        let mut agent = world.start_agent();
        let status = world.wait_status("restored", |s| !matches!(s.idp, IdpStatus::Restoring));
        match &status.idp {
            IdpStatus::NeedsSignIn { reason } => {
                assert!(reason.contains("sign in again"), "{reason}")
            }
            other => panic!("expected needs_sign_in, got {other:?}"),
        }
        let token = world.run(&["token", "docs"]);
        assert_eq!(
            token.status.code(),
            Some(EXIT_NOT_SIGNED_IN),
            "{}",
            text(&token)
        );
        world.login();
        assert_eq!(world.testbed.idp().stats().logins, 2);
        assert!(agent.stop("-TERM").success(), "{}", agent.log());
    })
    .await;
}

/// The real agent keeps its memory (the session, every token) out of core files: its core-size
/// limit is zero, as the kernel reports it for the agent's pid. (That it is also non-dumpable is
/// checked on the function itself: `os::memory_guard`'s unit test.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_writes_no_core_file() {
    let world = Arc::new(World::new(false).await);
    let w = world.clone();
    blocking(move || {
        let world = w;
        let mut agent = world.start_agent();
        let pid = agent.child.id();
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
        let core = limits
            .lines()
            .find(|l| l.starts_with("Max core file size"))
            .expect("core line");
        let fields: Vec<&str> = core.split_whitespace().collect();
        assert_eq!(fields[4..6], ["0", "0"], "{core}");
        let _ = agent.child.kill();
        let _ = agent.child.wait();
    })
    .await;
}
