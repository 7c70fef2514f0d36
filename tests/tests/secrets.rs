//! Secrets stay where they belong, checked across real processes: the testbed in this process
//! (real HTTP on 127.0.0.1), a real `lanyard agent` started by `lanyard login` with the real
//! keychain (gnome-keyring on a private D-Bus session from `scripts/with-keyring.sh`; without it
//! the tests print a skip line), and `lanyard` CLI children.
//!
//! The user's session has every kind of secret: an authorization code and PKCE verifier, ID
//! tokens, refresh tokens, ID-JAGs and access tokens (the testbed IdP's record of its wire, plus the
//! tokens `lanyard token` hands out), a client secret in the keychain (`client_secret_basic`), one
//! in a root-deployed file (`client_secret_post`, client credentials), a `private_key_jwt` key file,
//! and — written into the agent's log by the test, as a bug might — cookies and secrets in forms.
//!
//! - `diagnose_archive_holds_no_secret`: `lanyard diagnose` over that session; no secret is in the
//!   unpacked archive, the agent's own log or any process's argv / our processes' environment.
//! - `only_the_keychain_holds_secrets_at_rest`: after sign-in, grants and sign-out, no secret is in
//!   any file under the user's home, runtime and temp directories, nor in the agent's argv and
//!   environment; the refresh token was in the keychain and nowhere else.
//!
//! `LANYARD_TEST_KEEP_ARCHIVE=path` keeps the diagnostics archive for inspection.
//!
//! Each search is shown to be able to fail: the same search over a copy holding a seeded secret
//! must find it.

#![cfg(target_os = "linux")]

mod kit;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lanyard_core::engine::credentials::keychain_key_for_secret;
use lanyard_core::engine::refresh_token_key;
use lanyard_core::ipc::BlockingClient;
use lanyard_core::secret::Secret;
use lanyard_core::store::{KeyringStore, SecretStore};
use lanyard_testbed::demo::DEMO_IDP_CLIENT_ID;
use lanyard_testbed::{AsConfig, ClientAuth, McpConfig, RegisteredClient, Testbed, TestbedConfig};
use serde_json::{json, Value};

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

/// A value nobody could have typed by accident (mixed case and digits, like a real token).
fn unique(label: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{label}-Zq8vW3kT-{nanos:x}{:08x}", rand::random::<u32>())
}

/// A labelled secret value to look for.
type Secrets = Vec<(String, String)>;

/// One user: a scratch root with `home`, `run` (XDG_RUNTIME_DIR), `tmp` (TMPDIR) and `etc` (what an
/// administrator deploys: the policy, a client secret file, a private key — outside the user's
/// directories, like /etc/lanyard).
struct World {
    testbed: Testbed,
    root: PathBuf,
    /// A keychain name for the tickets client secret no other test run uses.
    keychain_secret: String,
    /// Secrets the test made: client secrets and the private key's body.
    made: Secrets,
}

impl World {
    async fn start() -> Self {
        let root = std::env::temp_dir().join(format!(
            "lanyard-secrets-{}-{:x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        for dir in ["home", "run", "tmp", "etc"] {
            std::fs::create_dir_all(root.join(dir)).expect("scratch dir");
        }
        let basic = unique("tickets-basic-secret");
        let post = unique("ci-post-secret");
        let (private_pem, public_pem) = {
            use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
            let key = p256::SecretKey::random(&mut rand::thread_rng());
            let private = key.to_pkcs8_pem(LineEnding::LF).expect("pem").to_string();
            let public = key
                .public_key()
                .to_public_key_pem(LineEnding::LF)
                .expect("pem");
            (private, public)
        };
        let scope = |name: &str| format!("{name}.read");
        let config = TestbedConfig {
            auth_servers: vec![
                AsConfig::new("docs", "lanyard-docs").with_scopes(&["docs.read"]),
                AsConfig::new("tickets", "lanyard-tickets")
                    .with_client(RegisteredClient::new(
                        "lanyard-tickets",
                        ClientAuth::ClientSecretBasic(basic.clone()),
                    ))
                    .with_scopes(&["tickets.read"]),
                AsConfig::new("ci", "lanyard-ci")
                    .with_client(RegisteredClient::new(
                        "lanyard-ci",
                        ClientAuth::ClientSecretPost(post.clone()),
                    ))
                    .with_scopes(&["ci.read"]),
                AsConfig::new("keyed", "lanyard-keyed")
                    .with_client(RegisteredClient::new(
                        "lanyard-keyed",
                        ClientAuth::PrivateKeyJwt(public_pem),
                    ))
                    .with_scopes(&["keyed.read"]),
            ],
            mcp_servers: ["docs", "tickets", "ci", "keyed"]
                .iter()
                .map(|name| McpConfig::new(name, name, &[scope(name).as_str()]))
                .collect(),
            ..TestbedConfig::default()
        };
        let testbed = Testbed::start(config).await.expect("testbed");

        let etc = root.join("etc");
        let post_file = etc.join("ci-secret");
        std::fs::write(&post_file, format!("{post}\n")).expect("secret file");
        let key_file = etc.join("keyed.pem");
        std::fs::write(&key_file, &private_pem).expect("key file");
        let keychain_secret = unique("tickets");
        // The keychain is blocking D-Bus (its own runtime): off the test's async workers.
        let (key, value) = (keychain_key_for_secret(&keychain_secret), basic.clone());
        tokio::task::spawn_blocking(move || {
            KeyringStore::new("lanyard").set(&key, &Secret::new(value))
        })
        .await
        .expect("keychain task")
        .expect("seeding the keychain");

        let mut policy = lanyard_testbed::demo::lanyard_policy(&testbed);
        policy["dev_mode"] = json!(true);
        for server in policy["servers"].as_array_mut().expect("servers") {
            match server["id"].as_str() {
                Some("tickets") => {
                    server["client_auth"] = json!({"method": "client_secret_basic",
                        "secret": {"keychain": keychain_secret}});
                }
                Some("ci") => {
                    server["mode"] = json!("client-credentials");
                    server["client_auth"] =
                        json!({"method": "client_secret_post", "secret": {"file": post_file}});
                }
                Some("keyed") => {
                    server["client_auth"] =
                        json!({"method": "private_key_jwt", "key_file": key_file, "alg": "ES256"});
                }
                _ => {}
            }
        }
        lanyard_testbed::demo::allow_authorization_servers_of_confidential_clients(
            &testbed,
            &mut policy,
        );
        std::fs::write(
            etc.join("policy.json"),
            serde_json::to_vec_pretty(&policy).expect("json"),
        )
        .expect("policy");

        let mut made: Secrets = vec![
            ("client secret (keychain, basic)".into(), basic),
            ("client secret (file, post)".into(), post),
        ];
        // The key's base64 body, line by line (each line alone is key material).
        for line in private_pem.lines().filter(|l| !l.starts_with("-----")) {
            made.push(("private key (PEM body line)".into(), line.to_owned()));
        }
        World {
            testbed,
            root,
            keychain_secret,
            made,
        }
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn endpoint(&self) -> PathBuf {
        self.dir("run").join("lanyard/agent.sock")
    }

    /// The log `lanyard login` gives the agent it starts (next to the socket).
    fn agent_log(&self) -> PathBuf {
        self.dir("run").join("lanyard/agent.log")
    }

    /// `lanyard …` as this world's user, with the keychain (the agent's inherits this).
    fn lanyard(&self, args: &[&str]) -> Command {
        let bins = kit::binaries();
        let home = self.dir("home");
        let mut command = Command::new(&bins.lanyard);
        command
            .args(args)
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .env("XDG_STATE_HOME", home.join(".local/state"))
            .env("XDG_RUNTIME_DIR", self.dir("run"))
            .env("TMPDIR", self.dir("tmp"))
            .env("LANYARD_POLICY", self.dir("etc").join("policy.json"))
            .env(
                "BROWSER",
                format!("{} browse --user alice@example.com", bins.testbed.display()),
            )
            .env_remove("LANYARD_NO_KEYCHAIN")
            .env_remove("LANYARD_AGENT_SOCKET")
            .env_remove("LANYARD_LOG")
            .stdin(Stdio::null());
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.lanyard(args).output().expect("run lanyard")
    }

    fn run_ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "lanyard {args:?}: {}\n{}\nagent log:\n{}",
            o.status,
            String::from_utf8_lossy(&o.stderr),
            std::fs::read_to_string(self.agent_log()).unwrap_or_default()
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn agent_pid(&self) -> u32 {
        BlockingClient::connect(&self.endpoint())
            .expect("the agent answers")
            .agent()
            .pid
    }

    /// Signs in (starting the agent), lets every server be granted, and collects the access
    /// tokens `lanyard token` hands out.
    fn sign_in_and_grant(&self, secrets: &mut Secrets) {
        let login = self.run_ok(&["login"]);
        assert!(login.contains("Signed in as alice@example.com"), "{login}");
        for id in ["docs", "tickets", "ci", "keyed"] {
            let token = self.run_ok(&["token", id]).trim().to_owned();
            assert!(token.len() > 20, "{id}: {token}");
            secrets.push((format!("access token of {id}"), token));
        }
    }

    fn refresh_token_key(&self) -> String {
        refresh_token_key(self.testbed.idp().issuer(), DEMO_IDP_CLIENT_ID)
    }

    /// Every secret the IdP saw or issued, with the test's own.
    fn wire_secrets(&self, secrets: &mut Secrets) {
        let wire = self.testbed.idp().wire_secrets();
        assert!(!wire.codes.is_empty(), "no authorization code seen");
        assert!(!wire.code_verifiers.is_empty(), "no PKCE verifier seen");
        assert!(!wire.refresh_tokens.is_empty(), "no refresh token issued");
        assert!(!wire.id_tokens.is_empty(), "no ID token issued");
        assert!(!wire.access_tokens.is_empty(), "no ID-JAG issued");
        for (label, values) in [
            ("authorization code", &wire.codes),
            ("PKCE verifier", &wire.code_verifiers),
            ("refresh token", &wire.refresh_tokens),
            ("ID token", &wire.id_tokens),
            ("ID-JAG or IdP access token", &wire.access_tokens),
        ] {
            secrets.extend(values.iter().map(|v| (label.to_owned(), v.clone())));
        }
        // What the authorization servers saw or issued: ID-JAGs, client assertions, client
        // secrets, access tokens.
        for name in ["docs", "tickets", "ci", "keyed"] {
            let wire = self
                .testbed
                .auth_server(name)
                .expect("authorization server")
                .wire_secrets();
            assert!(!wire.is_empty(), "{name}'s token endpoint saw nothing");
            secrets.extend(
                wire.into_iter()
                    .map(|v| (format!("secret at {name}'s token endpoint"), v)),
            );
        }
        secrets.extend(self.made.iter().cloned());
        for (label, value) in secrets.iter() {
            assert!(value.len() >= 16, "{label} is too short to search for");
        }
    }

    fn stop_agent(&self) {
        if let Ok(client) = BlockingClient::connect(&self.endpoint()) {
            let pid = client.agent().pid.to_string();
            drop(client);
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.endpoint().exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.stop_agent();
        // Off any async worker (the keychain runs its own runtime).
        let key = keychain_key_for_secret(&self.keychain_secret);
        let _ = std::thread::spawn(move || KeyringStore::new("lanyard").delete(&key)).join();
        self.testbed.shutdown();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// What to look for for `secret`: the value, and for a JWT also its signature alone.
fn needles(secret: &str) -> Vec<&str> {
    let signature = secret.split('.').nth(2).filter(|s| s.len() >= 16);
    std::iter::once(secret).chain(signature).collect()
}

/// Every `(secret label, where)` for which a secret occurs in `bytes`.
fn find_in(bytes: &[u8], place: &str, secrets: &Secrets, found: &mut Vec<String>) {
    for (label, value) in secrets {
        for needle in needles(value) {
            if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                found.push(format!("{label} in {place}"));
                break;
            }
        }
    }
}

/// Searches every regular file under `dir` (recursively; sockets and the like skipped).
fn search_dir(dir: &Path, secrets: &Secrets, found: &mut Vec<String>) -> usize {
    let mut files = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            files += search_dir(&path, secrets, found);
        } else if kind.is_file() {
            if let Ok(bytes) = std::fs::read(&path) {
                files += 1;
                find_in(&bytes, &path.display().to_string(), secrets, found);
            }
        }
    }
    files
}

/// The argv of every process we can read, and the environment of `ours`.
fn search_processes(ours: &[u32], secrets: &Secrets, found: &mut Vec<String>) -> usize {
    let mut seen = 0;
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            seen += 1;
            find_in(&cmdline, &format!("argv of pid {pid}"), secrets, found);
        }
        if ours.contains(&pid) {
            let environ = std::fs::read(entry.path().join("environ"))
                .unwrap_or_else(|e| panic!("environment of our pid {pid}: {e}"));
            assert!(!environ.is_empty(), "pid {pid} has an environment");
            find_in(
                &environ,
                &format!("environment of pid {pid}"),
                secrets,
                found,
            );
        }
    }
    seen
}

fn unzip(archive: &Path) -> Vec<(String, Vec<u8>)> {
    let file = std::fs::File::open(archive).expect("the archive");
    let mut zip = zip::ZipArchive::new(file).expect("a zip archive");
    (0..zip.len())
        .map(|i| {
            let mut entry = zip.by_index(i).expect("entry");
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut bytes).expect("read entry");
            (entry.name().to_owned(), bytes)
        })
        .collect()
}

fn text<'a>(files: &'a [(String, Vec<u8>)], name: &str) -> std::borrow::Cow<'a, str> {
    let (_, bytes) = files
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no {name} in the archive"));
    String::from_utf8_lossy(bytes)
}

/// Blocking work (child processes) off the test's async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnose_archive_holds_no_secret() {
    if !keyring_or_skip("diagnose_archive_holds_no_secret") {
        return;
    }
    let world = std::sync::Arc::new(World::start().await);
    let w = world.clone();
    blocking(move || {
        let world = w;
        let mut secrets = Secrets::new();
        world.sign_in_and_grant(&mut secrets);
        world.wire_secrets(&mut secrets);
        let agent = world.agent_pid();

        // The agent's real log and every process list entry hold none of them.
        let mut found = Vec::new();
        let log = std::fs::read(world.agent_log()).expect("the agent's log");
        assert!(
            String::from_utf8_lossy(&log).contains("token handed out"),
            "the agent's log is live"
        );
        find_in(&log, "the agent's log", &secrets, &mut found);
        let processes = search_processes(&[agent, std::process::id()], &secrets, &mut found);
        assert!(found.is_empty(), "secrets leaked:\n{}", found.join("\n"));

        // Then seed every kind into the log as a bug might write them: the archive must still
        // hold none of them.
        let cookie = unique("idp-session-cookie");
        secrets.push(("cookie".into(), cookie.clone()));
        let value = |label: &str| {
            secrets
                .iter()
                .find(|(l, _)| l.starts_with(label))
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("no {label}"))
        };
        let pem = std::fs::read_to_string(world.dir("etc").join("keyed.pem")).expect("pem");
        let seeded = [
            format!("SEEDED-1 authorization: Bearer {}", value("access token of docs")),
            format!("SEEDED-2 POST /token body=grant_type=refresh_token&refresh_token={}", value("refresh token")),
            format!("SEEDED-3 {{\"id_token\":\"{}\",\"token_type\":\"Bearer\"}}", value("ID token")),
            format!("SEEDED-4 exchange answered {}", value("ID-JAG")),
            format!("SEEDED-5 redirect /callback?code={}&state=x", value("authorization code")),
            format!("SEEDED-6 code_verifier={}", value("PKCE verifier")),
            format!("SEEDED-7 {{\"client_secret\": \"{}\"}}", value("client secret (keychain")),
            format!("SEEDED-8 read the secret file: {}", value("client secret (file")),
            format!("SEEDED-9 Cookie: __Host-session={cookie}; theme=dark"),
            format!("SEEDED-10 set-cookie: sid={cookie}"),
            format!("SEEDED-11 token {} handed out", value("access token of keyed")),
            format!("SEEDED-12 key file contents:\n{pem}"),
        ]
        .join("\n");
        let mut log_file = std::fs::OpenOptions::new()
            .append(true)
            .open(world.agent_log())
            .expect("the agent's log");
        std::io::Write::write_all(&mut log_file, format!("{seeded}\n").as_bytes())
            .expect("seeding the log");
        drop(log_file);
        // The search can fail: it finds every secret the seeded lines carry.
        let mut control = Vec::new();
        find_in(seeded.as_bytes(), "the seeded lines", &secrets, &mut control);
        for label in [
            "access token of docs",
            "refresh token",
            "ID token",
            "ID-JAG",
            "authorization code",
            "PKCE verifier",
            "client secret (keychain",
            "client secret (file",
            "cookie",
            "access token of keyed",
            "private key",
        ] {
            assert!(
                control.iter().any(|f| f.starts_with(label)),
                "the search missed the seeded {label}: {control:?}"
            );
        }

        let archive = world.dir("home").join("Downloads/lanyard-diagnostics.zip");
        std::fs::create_dir_all(archive.parent().expect("dir")).expect("Downloads");
        let summary = world.run_ok(&["diagnose", "--output", archive.to_str().expect("utf-8")]);
        assert!(summary.starts_with("Diagnostics written to"), "{summary}");
        if let Some(keep) = std::env::var_os("LANYARD_TEST_KEEP_ARCHIVE") {
            std::fs::copy(&archive, keep).expect("keeping the archive");
        }
        let files = unzip(&archive);
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        for expected in [
            "summary.txt",
            "versions.json",
            "policy.json",
            "policy-origins.txt",
            "status.json",
            "keychain.json",
            "discovery.json",
            "clock-skew.txt",
            "logs/where.txt",
            "logs/agent-1.log",
        ] {
            assert!(names.contains(&expected), "{expected} missing: {names:?}");
        }
        // The archive says what a helpdesk needs: the agent, the session in the keychain,
        // discovery of every server, the clock, and the log with the seeded lines (redacted).
        let status: Value = serde_json::from_str(&text(&files, "status.json")).expect("json");
        assert_eq!(status["agent"]["pid"], agent, "{status}");
        assert!(status["status"]["idp"].to_string().contains("alice@example.com"));
        let keychain: Value = serde_json::from_str(&text(&files, "keychain.json")).expect("json");
        assert_eq!(keychain["keychain"], "reachable", "{keychain}");
        let present = |what: &str| {
            keychain["entries"]
                .as_array()
                .expect("entries")
                .iter()
                .any(|e| e["entry"].as_str().is_some_and(|n| n.contains(what)) && e["present"] == true)
        };
        assert!(present("refresh token") && present("tickets"), "{keychain}");
        let discovery: Value = serde_json::from_str(&text(&files, "discovery.json")).expect("json");
        for server in discovery["servers"].as_array().expect("servers") {
            assert!(server["discovery"]["error"].is_null(), "{server}");
            assert!(server["authorization_server_metadata"]["document"]["token_endpoint"].is_string(), "{server}");
        }
        assert!(text(&files, "clock-skew.txt").contains("identity provider: +0 s")
            || text(&files, "clock-skew.txt").contains("identity provider: -0 s")
            || text(&files, "clock-skew.txt").contains("identity provider: +1 s")
            || text(&files, "clock-skew.txt").contains("identity provider: -1 s"),
            "{}", text(&files, "clock-skew.txt"));
        assert!(text(&files, "policy-origins.txt").contains("servers[0]"));
        let log = text(&files, "logs/agent-1.log");
        for n in 1..=12 {
            assert!(log.contains(&format!("SEEDED-{n} ")), "seeded line {n} is missing:\n{log}");
        }
        assert!(log.contains("token handed out"), "the agent's own lines are in");
        assert!(log.contains("[redacted"), "{log}");

        let mut found = Vec::new();
        for (name, bytes) in &files {
            find_in(bytes, &format!("archive file {name}"), &secrets, &mut found);
        }
        assert!(found.is_empty(), "secrets in the archive:\n{}", found.join("\n"));
        eprintln!(
            "checked {} secrets against {} archive files, the agent's log and {processes} processes",
            secrets.len(),
            files.len()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_keychain_holds_secrets_at_rest() {
    if !keyring_or_skip("only_the_keychain_holds_secrets_at_rest") {
        return;
    }
    let world = std::sync::Arc::new(World::start().await);
    let w = world.clone();
    blocking(move || {
        let world = w;
        let mut secrets = Secrets::new();
        world.sign_in_and_grant(&mut secrets);
        let keychain = KeyringStore::new("lanyard");
        let saved = keychain
            .get(&world.refresh_token_key())
            .expect("the keychain answers")
            .expect("the session is in the keychain");
        secrets.push(("refresh token (keychain)".into(), saved.expose().to_owned()));
        let agent = world.agent_pid();
        // The keychain is the one place at rest for the refresh token. gnome-keyring (from
        // scripts/with-keyring.sh) keeps its collections under XDG_DATA_HOME/keyrings, encrypted
        // with the login password: while signed in the token is in there, but not as plain text.
        let keyrings = std::env::var_os("XDG_DATA_HOME")
            .map(|d| Path::new(&d).join("keyrings"))
            .expect("with-keyring.sh sets XDG_DATA_HOME");
        let mut in_keyring_files = Vec::new();
        let keyring_files = search_dir(&keyrings, &secrets, &mut in_keyring_files);
        assert!(
            keyring_files >= 1,
            "no keyring file in {}",
            keyrings.display()
        );
        assert!(
            in_keyring_files.is_empty(),
            "plain text in the keyring's files:\n{}",
            in_keyring_files.join("\n")
        );

        world.run_ok(&["logout"]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while world.testbed.idp().stats().revocations.is_empty() {
            assert!(Instant::now() < deadline, "sign-out revoked nothing");
            std::thread::sleep(Duration::from_millis(20));
        }
        // The agent wipes the keychain entry right after the revocation; allow it a moment. A read
        // that races the deletion may fail (the item vanishes between search and read): retry.
        loop {
            let left = keychain.get(&world.refresh_token_key());
            if matches!(left, Ok(None)) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "sign-out wipes the session from the keychain: {:?}",
                left.map(|s| s.is_some())
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        world.wire_secrets(&mut secrets);

        // The agent is still running (signed out): its argv and environment, and every file in
        // the user's home, runtime and temp directories (the agent's log, socket directory and
        // lock included).
        let mut found = Vec::new();
        search_processes(&[agent], &secrets, &mut found);
        let mut files = 0;
        for dir in ["home", "run", "tmp"] {
            files += search_dir(&world.dir(dir), &secrets, &mut found);
        }
        assert!(
            world.agent_log().exists() && files >= 2,
            "the search saw the agent's files ({files})"
        );
        assert!(found.is_empty(), "secrets at rest:\n{}", found.join("\n"));

        // The search can fail: a secret written under home is found.
        let canary = world.dir("home").join(".cache/canary");
        std::fs::create_dir_all(canary.parent().expect("dir")).expect("dir");
        std::fs::write(&canary, format!("oops {}\n", saved.expose())).expect("canary");
        let mut control = Vec::new();
        search_dir(&world.dir("home"), &secrets, &mut control);
        assert!(
            control.iter().any(|f| f.contains("canary")),
            "the search missed a planted refresh token: {control:?}"
        );
        eprintln!(
            "checked {} secrets against {files} files and the agent's argv and environment",
            secrets.len()
        );
    })
    .await;
}
