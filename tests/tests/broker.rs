//! End-to-end tests of the local broker across processes: the testbed in this process, a real
//! `lanyard agent` child with its own XDG_RUNTIME_DIR, and `lanyard` CLI children talking to it over
//! the Unix socket. Sign-in goes through `$BROWSER` = `lanyard-testbed browse`, which submits the
//! dev IdP's login page. The agent runs with `--no-keychain` (the keychain has its own tests).

// The Unix-socket broker; the Windows named pipe is covered end to end by windows_wine.rs.
#![cfg(unix)]

mod kit;
#[path = "../../crates/lanyard-core/tests/common/other_user.rs"]
mod other_user;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use lanyard_core::engine::{IdpStatus, ServerState};
use lanyard_core::ipc::{BlockingClient, MAX_REQUEST_BYTES};
use lanyard_testbed::{AsConfig, Endpoint, Fault, FaultMode, McpConfig, Testbed, TestbedConfig};
use other_user::OtherUser;
use serde_json::Value;

/// Exit codes documented in `lanyard --help`.
const EXIT_FAILURE: i32 = 1;
const EXIT_MISCONFIGURED: i32 = 3;
const EXIT_NOT_SIGNED_IN: i32 = 4;
const EXIT_DENIED: i32 = 5;
const EXIT_UNKNOWN_SERVER: i32 = 7;
const EXIT_AGENT_NOT_RUNNING: i32 = 8;
const EXIT_AGENT_ALREADY_RUNNING: i32 = 10;

/// One isolated user session: a scratch dir, a policy for the testbed, a private runtime dir.
struct World {
    testbed: Testbed,
    dir: PathBuf,
    policy: PathBuf,
    runtime_dir: PathBuf,
}

impl World {
    fn new(testbed: Testbed) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "lanyard-broker-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let runtime_dir = dir.join("run");
        std::fs::create_dir_all(&runtime_dir).expect("runtime dir");
        let policy = dir.join("policy.json");
        let json = lanyard_testbed::demo::lanyard_policy(&testbed);
        std::fs::write(&policy, serde_json::to_vec_pretty(&json).expect("json")).expect("policy");
        Self {
            testbed,
            dir,
            policy,
            runtime_dir,
        }
    }

    fn endpoint(&self) -> PathBuf {
        self.runtime_dir.join("lanyard/agent.sock")
    }

    /// `lanyard …` as this world's user.
    fn lanyard(&self, args: &[&str]) -> Command {
        let bins = kit::binaries();
        let mut command = Command::new(&bins.lanyard);
        command
            .args(args)
            .env("XDG_RUNTIME_DIR", &self.runtime_dir)
            .env("XDG_STATE_HOME", self.dir.join("state"))
            .env("LANYARD_POLICY", &self.policy)
            .env("LANYARD_NO_KEYCHAIN", "1")
            .env(
                "BROWSER",
                format!("{} browse --user alice@example.com", bins.testbed.display()),
            )
            .env_remove("LANYARD_AGENT_SOCKET")
            .env_remove("LANYARD_LOG")
            .stdin(Stdio::null());
        command
    }

    /// Runs a CLI command to completion.
    fn run(&self, args: &[&str]) -> Output {
        self.lanyard(args).output().expect("run lanyard")
    }

    fn start_agent(&self) -> Agent {
        let log = self
            .dir
            .join(format!("agent-{}.log", rand::random::<u32>()));
        let child = self
            .lanyard(&["agent"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn agent");
        let deadline = Instant::now() + Duration::from_secs(20);
        while BlockingClient::connect(&self.endpoint()).is_err() {
            assert!(
                Instant::now() < deadline,
                "the agent did not answer: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Agent { child, log }
    }

    /// How many access tokens the docs server's authorization server has minted.
    fn docs_mints(&self) -> u64 {
        self.testbed
            .auth_server("docs")
            .expect("docs AS")
            .stats()
            .jwt_bearer_mints
    }

    /// A running agent, and a client of it that has signed in.
    fn signed_in_agent(&self) -> (Agent, BlockingClient) {
        let agent = self.start_agent();
        let mut client = BlockingClient::connect(&self.endpoint()).expect("connect");
        client.sign_in(false).expect("sign in");
        (agent, client)
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.testbed.shutdown();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then the exit status (bounded wait).
    fn terminate(&mut self) -> std::process::ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "the agent ignored SIGTERM");
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

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited normally")
}

/// Asserts a helper failure: the exit code, nothing on stdout, exactly one line on stderr.
fn assert_fails(o: &Output, expected: i32, what: &str) {
    assert_eq!(code(o), expected, "{what}: stderr {}", stderr(o));
    assert!(o.stdout.is_empty(), "{what}: stdout must stay empty");
    assert_eq!(
        stderr(o).lines().count(),
        1,
        "{what}: one line: {}",
        stderr(o)
    );
}

async fn demo_world() -> World {
    let testbed = lanyard_testbed::demo::start_demo(Duration::ZERO)
        .await
        .expect("testbed");
    World::new(testbed)
}

/// A fresh demo world, and `f` run against it off the test's async workers (it starts child
/// processes and blocks on them).
async fn in_demo_world<T: Send + 'static>(f: impl FnOnce(&World) -> T + Send + 'static) -> T {
    let world = std::sync::Arc::new(demo_world().await);
    blocking(move || f(&world)).await
}

/// Blocking work (child processes) off the test's async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agent_and_cli_end_to_end() {
    in_demo_world(|world| {
        // No agent yet: helpers say so, fast, without opening anything.
        let o = world.run(&["token", "docs"]);
        assert_fails(&o, EXIT_AGENT_NOT_RUNNING, "token without agent");
        assert!(stderr(&o).contains("lanyard agent"), "{}", stderr(&o));

        let mut agent = world.start_agent();
        assert_fails(
            &world.run(&["token", "docs"]),
            EXIT_NOT_SIGNED_IN,
            "token before sign-in",
        );

        // One agent per user: a second start names the first.
        let second = world.run(&["agent"]);
        assert_eq!(
            code(&second),
            EXIT_AGENT_ALREADY_RUNNING,
            "{}",
            stderr(&second)
        );
        assert!(
            stderr(&second).contains(&format!("pid {}", agent.pid())),
            "{}",
            stderr(&second)
        );

        let login = world.run(&["login", "--no-start"]);
        assert_eq!(code(&login), 0, "login: {}", stderr(&login));
        assert!(stdout(&login).contains("Signed in as alice@example.com"));

        let plain = world.run(&["token", "docs"]);
        assert_eq!(code(&plain), 0, "{}", stderr(&plain));
        assert!(plain.stderr.is_empty());
        let token = stdout(&plain).trim_end().to_owned();
        assert_eq!(
            stdout(&plain),
            format!("{token}\n"),
            "only the token on stdout"
        );
        assert_eq!(token.split('.').count(), 3, "a JWT access token");

        let header = world.run(&["token", "docs", "--header-json"]);
        assert_eq!(code(&header), 0);
        let header: Value = serde_json::from_slice(&header.stdout).expect("header json");
        let header = header.as_object().expect("an object");
        assert_eq!(header.len(), 1, "only the Authorization header");
        assert_eq!(header["Authorization"], format!("Bearer {token}"));

        let json = world.run(&["token", "docs", "--json", "--min-ttl", "30"]);
        assert_eq!(code(&json), 0);
        let json: Value = serde_json::from_slice(&json.stdout).expect("token json");
        assert_eq!(json["access_token"], token.as_str());
        assert!(json["expires_at"].as_u64().expect("expires_at") > 0);
        assert_eq!(json["scopes"], serde_json::json!(["docs.read"]));

        assert_fails(
            &world.run(&["token", "payroll"]),
            EXIT_DENIED,
            "denied server",
        );
        assert_fails(
            &world.run(&["token", "nope"]),
            EXIT_UNKNOWN_SERVER,
            "unknown server",
        );
        // `lanyard refresh`: one server, every server, and an unknown one by its exit code.
        let refreshed = world.run(&["refresh", "docs"]);
        assert_eq!(code(&refreshed), 0, "{}", stderr(&refreshed));
        assert!(stderr(&refreshed).contains("grant docs anew"));
        assert_eq!(code(&world.run(&["refresh"])), 0);
        assert_fails(
            &world.run(&["refresh", "nope"]),
            EXIT_UNKNOWN_SERVER,
            "refresh of an unknown server",
        );

        // Audit: the last hand-out of docs names this CLI binary and a pid.
        let status = world.run(&["status", "--json"]);
        assert_eq!(code(&status), 0);
        let status: Value = serde_json::from_slice(&status.stdout).expect("status json");
        let docs = status["servers"]
            .as_array()
            .expect("servers")
            .iter()
            .find(|s| s["id"] == "docs")
            .expect("docs")
            .clone();
        let requester = &docs["last_used"]["requester"];
        assert!(requester["pid"].as_u64().is_some(), "{docs}");
        let exe = requester["executable"].as_str().expect("executable");
        assert!(exe.ends_with("/lanyard"), "{exe}");
        let text = world.run(&["status"]);
        assert!(stdout(&text).contains("last used"), "{}", stdout(&text));

        let servers = world.run(&["servers"]);
        assert_eq!(stdout(&servers).lines().count(), 3, "{}", stdout(&servers));

        // Nothing secret in the agent's log.
        assert!(agent.log().contains("token handed out"));
        assert!(
            !agent.log().contains(&token),
            "the token leaked into the agent log"
        );

        let logout = world.run(&["logout"]);
        assert_eq!(code(&logout), 0, "{}", stderr(&logout));
        assert_fails(
            &world.run(&["token", "docs"]),
            EXIT_NOT_SIGNED_IN,
            "after logout",
        );

        // SIGTERM: a clean exit that removes the socket.
        let status = agent.terminate();
        assert!(status.success(), "agent exit {status:?}: {}", agent.log());
        assert!(!world.endpoint().exists(), "the socket must be removed");
        assert_fails(
            &world.run(&["token", "docs"]),
            EXIT_AGENT_NOT_RUNNING,
            "after stop",
        );
    })
    .await;
}

/// Server `id` in `lanyard status --json`.
fn server_json(world: &World, id: &str) -> Value {
    let status = world.run(&["status", "--json"]);
    assert_eq!(code(&status), 0, "{}", stderr(&status));
    let status: Value = serde_json::from_slice(&status.stdout).expect("status json");
    status["servers"]
        .as_array()
        .expect("servers")
        .iter()
        .find(|s| s["id"] == id)
        .expect("server")
        .clone()
}

/// An `oauth` server through the CLI and the broker: `lanyard status` shows *Connect*, `lanyard
/// token` refuses naming `lanyard connect` (exit 4) without a browser, and `lanyard connect`
/// opens `$BROWSER` once (the testbed's authorization server approves, the agent registers,
/// authorizes and keeps the connection); the token comes after.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_oauth_server_is_connected_with_lanyard_connect() {
    let testbed = Testbed::start(TestbedConfig {
        auth_servers: vec![AsConfig::new("wiki", "lanyard-wiki")
            .with_scopes(&["wiki.read"])
            .with_code_flow(true)],
        mcp_servers: vec![McpConfig::new("wiki", "wiki", &["wiki.read"])],
        ..TestbedConfig::default()
    })
    .await
    .expect("testbed");
    let world = std::sync::Arc::new(World::new(testbed));
    blocking(move || {
        let mut policy: Value =
            serde_json::from_slice(&std::fs::read(&world.policy).expect("policy")).expect("json");
        for server in policy["servers"].as_array_mut().expect("servers") {
            server["mode"] = "oauth".into();
            server["client_id"] = "".into();
            server["allow_dynamic_registration"] = true.into();
        }
        std::fs::write(&world.policy, policy.to_string()).expect("policy");
        let _agent = world.start_agent();
        let deadline = Instant::now() + Duration::from_secs(10);
        while server_json(&world, "wiki")["state"]["state"] != "needs_connect" {
            assert!(Instant::now() < deadline, "{}", server_json(&world, "wiki"));
            std::thread::sleep(Duration::from_millis(50));
        }
        let status = world.run(&["status"]);
        assert!(
            stdout(&status).contains("lanyard connect wiki"),
            "{}",
            stdout(&status)
        );
        let refused = world.run(&["token", "wiki"]);
        assert_fails(&refused, EXIT_NOT_SIGNED_IN, "token before connect");
        assert!(
            stderr(&refused).contains("lanyard connect wiki"),
            "{}",
            stderr(&refused)
        );
        let auth_server = world.testbed.auth_server("wiki").expect("AS");
        assert_eq!(auth_server.stats().code_mints, 0, "no browser, no code");

        let connect = world.run(&["connect", "wiki"]);
        assert_eq!(code(&connect), 0, "connect: {}", stderr(&connect));
        assert!(
            stdout(&connect).contains("Connected wiki"),
            "{}",
            stdout(&connect)
        );
        assert_eq!(auth_server.stats().registrations, 1);
        assert_eq!(auth_server.stats().code_mints, 1);
        let token = world.run(&["token", "wiki"]);
        assert_eq!(code(&token), 0, "{}", stderr(&token));
        assert_eq!(stdout(&token).matches('.').count(), 2, "a JWT");
    })
    .await;
}

/// `lanyard connect` with no agent running starts one in the background, as `lanyard login`
/// does, and connects. With `servers[].dpop: required` the connection is bound to the device's
/// key: `lanyard token --dpop` hands a script the token with a proof the MCP server takes.
/// `lanyard status` says where the server is connected, in JSON and in words.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connect_starts_an_agent_and_binds_the_connection_with_dpop() {
    let testbed = Testbed::start(TestbedConfig {
        auth_servers: vec![AsConfig::new("wiki", "lanyard-wiki")
            .with_scopes(&["wiki.read"])
            .with_code_flow(true)
            .with_dpop(true)],
        mcp_servers: vec![McpConfig::new("wiki", "wiki", &["wiki.read"])],
        ..TestbedConfig::default()
    })
    .await
    .expect("testbed");
    let world = std::sync::Arc::new(World::new(testbed));
    let url = world
        .testbed
        .mcp_server("wiki")
        .expect("mcp")
        .url()
        .to_owned();
    let issuer = world
        .testbed
        .auth_server("wiki")
        .expect("AS")
        .issuer()
        .to_owned();
    let (world2, url2) = (world.clone(), url.clone());
    let (token, proof) = blocking(move || {
        let world = world2;
        let mut policy: Value =
            serde_json::from_slice(&std::fs::read(&world.policy).expect("policy")).expect("json");
        for server in policy["servers"].as_array_mut().expect("servers") {
            server["mode"] = "oauth".into();
            server["client_id"] = "".into();
            server["allow_dynamic_registration"] = true.into();
            server["dpop"] = "required".into();
        }
        std::fs::write(&world.policy, policy.to_string()).expect("policy");
        assert!(
            BlockingClient::connect(&world.endpoint()).is_err(),
            "no agent yet"
        );
        let refused = world.run(&["connect", "wiki", "--no-start"]);
        assert_fails(&refused, EXIT_AGENT_NOT_RUNNING, "connect --no-start");

        let connect = world.run(&["connect", "wiki"]);
        assert_eq!(code(&connect), 0, "connect: {}", stderr(&connect));
        assert!(
            stderr(&connect).contains("Starting the Lanyard agent"),
            "{}",
            stderr(&connect)
        );
        assert!(
            stdout(&connect).contains("Connected wiki"),
            "{}",
            stdout(&connect)
        );
        let agent_pid = BlockingClient::connect(&world.endpoint())
            .expect("the agent runs")
            .agent()
            .pid;
        let auth_server = world.testbed.auth_server("wiki").expect("AS");
        assert_eq!(auth_server.stats().code_mints, 1);
        assert_eq!(auth_server.stats().dpop_bound_mints, 1);

        let wiki = server_json(&world, "wiki");
        assert_eq!(
            wiki["authorization_server"],
            Value::from(issuer.clone()),
            "{wiki}"
        );
        assert_eq!(wiki["state"]["state"], "granted", "{wiki}");
        assert_eq!(wiki["dpop_bound"], true, "{wiki}");
        let status = stdout(&world.run(&["status"]));
        assert!(status.contains("connected"), "{status}");
        assert!(
            status.contains(&format!("connected at {issuer}")),
            "{status}"
        );

        let scripted = world.run(&["token", "wiki", "--json", "--dpop", "POST", &url2]);
        assert_eq!(code(&scripted), 0, "{}", stderr(&scripted));
        let scripted: Value = serde_json::from_slice(&scripted.stdout).expect("JSON");
        // Never the whole answer in a failure message: it holds the token and the proof.
        assert_eq!(scripted["token_type"], "DPoP");
        let killed = Command::new("kill")
            .args(["-TERM", &agent_pid.to_string()])
            .status()
            .expect("kill");
        assert!(killed.success());
        (
            scripted["access_token"].as_str().expect("token").to_owned(),
            scripted["dpop_proof"].as_str().expect("proof").to_owned(),
        )
    })
    .await;
    let client = reqwest::Client::new();
    let called =
        lanyard_testbed::whoami_call(&client, &url, &format!("DPoP {token}"), Some(&proof))
            .send()
            .await
            .expect("request");
    assert_eq!(
        called.status().as_u16(),
        200,
        "the bound token with its proof"
    );
    let bearer = lanyard_testbed::whoami_call(&client, &url, &format!("Bearer {token}"), None)
        .send()
        .await
        .expect("request");
    assert_eq!(bearer.status().as_u16(), 401, "a bearer copy was taken");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn usage_counts_survive_an_agent_restart() {
    let world = std::sync::Arc::new(demo_world().await);
    let w = world.clone();
    blocking(move || {
        let world = w;
        let mut agent = world.start_agent();
        let login = world.run(&["login", "--no-start"]);
        assert_eq!(code(&login), 0, "login: {}", stderr(&login));
        for _ in 0..3 {
            let token = world.run(&["token", "docs"]);
            assert_eq!(code(&token), 0, "{}", stderr(&token));
        }
        let usage = server_json(&world, "docs")["usage"].clone();
        assert_eq!(usage["id_jags"], 1, "{usage}");
        assert_eq!(usage["jwt_bearer_grants"], 1, "{usage}");
        assert_eq!(usage["client_requests"], 3, "{usage}");
        assert_eq!(usage["window_days"], 30, "{usage}");
        let text = world.run(&["status"]);
        assert!(
            stdout(&text)
                .contains("last 30 days: 1 ID-JAGs, 1 jwt-bearer grants, 3 client requests"),
            "{}",
            stdout(&text)
        );

        let status = agent.terminate();
        assert!(status.success(), "agent exit {status:?}: {}", agent.log());
        let file = world.dir.join("state/lanyard/usage.json");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&file)
                .expect("the state file")
                .permissions(),
        );
        assert_eq!(mode & 0o077, 0, "the state file is the owner's only");
        let saved = std::fs::read_to_string(&file).expect("state file");
        assert!(
            !saved.contains("eyJ"),
            "no token in the state file: {saved}"
        );

        // A new agent, not signed in (no keychain here): the same counts.
        let _again = world.start_agent();
        let usage_after = server_json(&world, "docs")["usage"].clone();
        assert_eq!(usage_after, usage, "counts after the restart");

        // `lanyard diagnose` carries them: a summary line per server, and the status file.
        let archive = world.dir.join("diagnostics.zip");
        let out = world.run(&[
            "diagnose",
            "--output",
            archive.to_str().expect("utf-8 path"),
        ]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let mut zip =
            zip::ZipArchive::new(std::fs::File::open(&archive).expect("archive")).expect("zip");
        let mut summary = String::new();
        zip.by_name("summary.txt")
            .expect("summary.txt")
            .read_to_string(&mut summary)
            .expect("text");
        assert!(
            summary.contains(
                "docs: last 30 days 1 ID-JAGs, 1 access tokens by jwt-bearer, 3 client requests"
            ),
            "{summary}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn login_starts_an_agent_in_the_background() {
    in_demo_world(|world| {
        let login = world.run(&["login"]);
        assert_eq!(code(&login), 0, "{}", stderr(&login));
        assert!(stderr(&login).contains("Starting the Lanyard agent"));
        let client = BlockingClient::connect(&world.endpoint()).expect("the agent runs");
        let agent_pid = client.agent().pid;
        assert_ne!(agent_pid, 0);
        let token = world.run(&["token", "tickets"]);
        assert_eq!(code(&token), 0, "{}", stderr(&token));
        let killed = Command::new("kill")
            .args(["-TERM", &agent_pid.to_string()])
            .status()
            .expect("kill");
        assert!(killed.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        while world.endpoint().exists() {
            assert!(
                Instant::now() < deadline,
                "the background agent did not stop"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await;
}

/// With no policy installed, `lanyard login` says so in `lanyard status`'s words, exits 3
/// (misconfigured) and opens no browser.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn login_without_a_policy_says_so_and_opens_nothing() {
    in_demo_world(|world| {
        let missing = world.dir.join("nowhere/policy.json");
        let opened = world.dir.join("browser-opened");
        let browser = world.dir.join("browser.sh");
        std::fs::write(
            &browser,
            format!("#!/bin/sh\necho \"$1\" > '{}'\n", opened.display()),
        )
        .expect("browser script");
        let chmod = Command::new("chmod")
            .args(["+x", &browser.display().to_string()])
            .status()
            .expect("chmod");
        assert!(chmod.success());
        let run = |args: &[&str]| {
            world
                .lanyard(args)
                .env("LANYARD_POLICY", &missing)
                .env("BROWSER", &browser)
                .output()
                .expect("run lanyard")
        };
        let login = run(&["login"]);
        let said = format!("{}{}", stdout(&login), stderr(&login));
        assert_eq!(code(&login), EXIT_MISCONFIGURED, "{said}");
        assert!(said.contains("no policy is installed"), "{said}");
        assert!(
            !said.contains("opening your browser"),
            "login must not promise a browser: {said}"
        );
        let status = run(&["status"]);
        let first_line = "Misconfigured: the managed policy is not usable; ask IT to fix it:";
        assert!(stdout(&status).contains(first_line), "{}", stdout(&status));
        assert!(
            said.contains(first_line),
            "the same words as status: {said}"
        );
        // A sign-in asked of the agent directly is refused as misconfigured, not "unavailable".
        let mut client = BlockingClient::connect(&world.endpoint()).expect("the agent runs");
        match client.sign_in(false) {
            Err(lanyard_core::ipc::ClientError::Agent(reply)) => {
                assert_eq!(
                    reply.code,
                    lanyard_core::ipc::ErrorCode::Misconfigured,
                    "{reply:?}"
                );
                assert!(
                    reply.message.contains("no policy is installed"),
                    "{reply:?}"
                );
            }
            other => panic!("expected a misconfigured refusal, got {other:?}"),
        }
        assert!(!opened.exists(), "a browser was opened");
        let killed = Command::new("kill")
            .args(["-TERM", &client.agent().pid.to_string()])
            .status()
            .expect("kill");
        assert!(killed.success());
    })
    .await;
}

/// 200 concurrent `lanyard token` processes for 5 servers, all arriving while the sign-in's grants
/// are still in flight (the authorization servers answer slowly), share one mint per server.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_token_calls_mint_once_per_server() {
    const SERVERS: usize = 5;
    const CALLS: usize = 200;
    let mut config = TestbedConfig::default();
    for i in 0..SERVERS {
        let id = format!("s{i}");
        let scope = format!("{id}.read");
        config.auth_servers.push(
            AsConfig::new(&id, &format!("lanyard-{id}"))
                .with_issuer_path(&format!("/oauth2/{id}"), false)
                .with_scopes(&[&scope]),
        );
        config
            .mcp_servers
            .push(McpConfig::new(&id, &id, &[scope.as_str()]));
    }
    let testbed = Testbed::start(config).await.expect("testbed");
    for auth_server in testbed.auth_servers() {
        auth_server.faults().inject(
            Endpoint::Token,
            Fault::Slow(Duration::from_millis(2500)),
            FaultMode::Persistent,
        );
    }
    let world = std::sync::Arc::new(World::new(testbed));
    let w = world.clone();
    let outputs = blocking(move || {
        let world = w;
        let (agent, _client) = world.signed_in_agent();
        // The grants started with the sign-in; every call below arrives while they are slow.
        let children: Vec<(usize, Child)> = (0..CALLS)
            .map(|i| {
                let server = format!("s{}", i % SERVERS);
                let child = world
                    .lanyard(&["token", &server])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn lanyard token");
                (i % SERVERS, child)
            })
            .collect();
        let outputs: Vec<(usize, Output)> = children
            .into_iter()
            .map(|(server, child)| (server, child.wait_with_output().expect("wait")))
            .collect();
        drop(agent);
        outputs
    })
    .await;
    let mut tokens: Vec<Option<String>> = vec![None; SERVERS];
    for (server, output) in &outputs {
        assert_eq!(code(output), 0, "s{server}: {}", stderr(output));
        let token = stdout(output).trim_end().to_owned();
        assert!(!token.is_empty());
        match &tokens[*server] {
            None => tokens[*server] = Some(token),
            Some(first) => assert_eq!(first, &token, "s{server}: every caller gets the one token"),
        }
    }
    assert_eq!(outputs.len(), CALLS);
    for auth_server in world.testbed.auth_servers() {
        assert_eq!(
            auth_server.stats().jwt_bearer_mints,
            1,
            "{}: one mint for all callers",
            auth_server.name()
        );
    }
}

fn read_reply(reader: &mut impl BufRead) -> Value {
    let mut line = String::new();
    reader.read_line(&mut line).expect("read reply");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("reply {line:?}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_and_oversized_requests_get_an_error_and_the_broker_keeps_serving() {
    in_demo_world(|world| {
        let agent = world.start_agent();
        let stream = UnixStream::connect(world.endpoint()).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut writer = stream;

        writer.write_all(b"this is not json\n").expect("write");
        let reply = read_reply(&mut reader);
        assert_eq!(reply["type"], "error");
        assert_eq!(reply["code"], "bad_request");

        writer.write_all(b"{\"op\":\"status\"}\n").expect("write");
        assert_eq!(read_reply(&mut reader)["code"], "hello_required");

        writer
            .write_all(b"{\"op\":\"hello\",\"protocol\":2,\"client\":\"test\"}\n")
            .expect("write");
        let hello = read_reply(&mut reader);
        assert_eq!(hello["type"], "hello", "{hello}");
        assert_eq!(hello["agent_pid"], agent.pid());

        writer
            .write_all(b"{\"op\":\"launch_missiles\"}\n")
            .expect("write");
        assert_eq!(read_reply(&mut reader)["code"], "bad_request");
        writer.write_all(b"{\"op\":\"status\"}\n").expect("write");
        assert_eq!(read_reply(&mut reader)["type"], "status");

        // Oversized: an error, then the connection is closed.
        let mut big = vec![b'x'; MAX_REQUEST_BYTES + 100];
        big.push(b'\n');
        let _ = writer.write_all(&big);
        assert_eq!(read_reply(&mut reader)["code"], "too_large");
        let mut rest = Vec::new();
        let _ = reader.read_to_end(&mut rest);
        assert!(rest.is_empty(), "nothing after too_large");

        // A client of another protocol version is told which one the agent speaks.
        let mut other = UnixStream::connect(world.endpoint()).expect("connect");
        other
            .write_all(b"{\"op\":\"hello\",\"protocol\":99,\"client\":\"future\"}\n")
            .expect("write");
        let reply = read_reply(&mut BufReader::new(other));
        assert_eq!(reply["code"], "version_mismatch");
        assert_eq!(reply["agent_protocol"], 2);

        // The broker still serves everyone.
        let status = world.run(&["status", "--json"]);
        assert_eq!(code(&status), 0, "{}", stderr(&status));
        assert!(agent.log().contains("malformed request"));
        assert!(agent.log().contains("request over"));
    })
    .await;
}

/// A process of another user is refused by the peer-credential check. The socket directory
/// (0700) would stop it first, so the test opens the directory and socket to everyone to reach
/// the check itself. Needs root (to run as `nobody`); CI runs as root.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connection_from_another_user_is_refused_and_logged() {
    if !running_as_root() {
        eprintln!("SKIPPED: needs root to run a client as another user");
        return;
    }
    in_demo_world(|world| {
        let agent = world.start_agent();
        // The other user needs to reach and run the binaries: copy them into the open dir.
        let client = open_copy(&kit::binaries().lanyard, &world.dir.join("lanyard-client"));
        let raw = open_copy(&kit::binaries().testbed, &world.dir.join("raw-client"));
        open_mode(&world.dir, 0o755);
        open_mode(&world.runtime_dir, 0o755);
        open_mode(&world.runtime_dir.join("lanyard"), 0o755);
        open_mode(&world.endpoint(), 0o666);
        // A client that checks nothing reaches the agent, which refuses it.
        let output = Command::new("runuser")
            .args(["-u", "nobody", "--"])
            .arg(&raw)
            .args(["ask", "--socket"])
            .arg(world.endpoint())
            .arg(r#"{"op":"hello","protocol":2,"client":"nobody"}"#)
            .stdin(Stdio::null())
            .output()
            .expect("runuser");
        assert_eq!(code(&output), 0, "{}", stderr(&output));
        assert!(
            stdout(&output).contains("serves only the user who runs it"),
            "{}",
            stdout(&output)
        );
        let log = agent.log();
        assert!(
            log.contains("refused a broker connection from another user"),
            "{log}"
        );
        assert!(log.contains("65534"), "the refused uid is logged: {log}");
        // Lanyard's own client, as that user, refuses the agent of root before any hello.
        let output = Command::new("runuser")
            .args(["-u", "nobody", "--"])
            .arg(&client)
            .args(["token", "docs"])
            .env("LANYARD_AGENT_SOCKET", world.endpoint())
            .stdin(Stdio::null())
            .output()
            .expect("runuser");
        assert_fails(&output, EXIT_FAILURE, "nobody's client");
        assert!(
            stderr(&output).contains("is owned by uid 0, not you: refusing"),
            "{}",
            stderr(&output)
        );
        // The owner's own client distrusts the directory now open to others...
        let opened = world.run(&["token", "docs"]);
        assert_fails(&opened, EXIT_FAILURE, "owner, open directory");
        assert!(
            stderr(&opened).contains("is open to other users"),
            "{}",
            stderr(&opened)
        );
        // ...and once it is private again, the owner is still served.
        open_mode(&world.runtime_dir.join("lanyard"), 0o700);
        assert_fails(
            &world.run(&["token", "docs"]),
            EXIT_NOT_SIGNED_IN,
            "owner after refusal",
        );
    })
    .await;
}

fn open_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// `from` copied to `to`, readable and runnable by every user.
fn open_copy(from: &Path, to: &Path) -> PathBuf {
    std::fs::copy(from, to).expect("copy binary");
    open_mode(to, 0o755);
    to.to_path_buf()
}

/// A fake agent run by another user (`lanyard-testbed impostor`), killed when dropped.
struct Impostor {
    child: Child,
    socket: PathBuf,
    record: PathBuf,
}

impl Impostor {
    /// Starts one as `user`, listening in `dir` (made theirs, as a squatter's directory is).
    fn start(user: &OtherUser, world: &World, dir: &Path) -> Self {
        for theirs in [dir, &world.dir.join("impostor-notes")] {
            std::fs::create_dir_all(theirs).expect("impostor dir");
            open_mode(theirs, 0o700);
            chown(theirs, user.uid);
        }
        let program = open_copy(&kit::binaries().testbed, &world.dir.join("impostor-bin"));
        let socket = dir.join("agent.sock");
        let record = world.dir.join("impostor-notes/received.txt");
        let mut child = user
            .command(&program)
            .args(["impostor", "--socket"])
            .arg(&socket)
            .arg("--record")
            .arg(&record)
            .args(["--server-url", "http://impostor.example/mcp"])
            .args(["--support-url", "file:///etc/passwd"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the impostor");
        let mut ready = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut ready)
            .expect("the impostor's first line");
        assert!(ready.starts_with("listening"), "{ready:?}");
        Self {
            child,
            socket,
            record,
        }
    }

    /// Every line the impostor received so far. Sends a probe line first and waits for its
    /// answer: the impostor serves connections in order, so everything before it is recorded.
    fn received(&self) -> Vec<String> {
        let mut probe = UnixStream::connect(&self.socket).expect("probe");
        probe
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        probe.write_all(b"{\"op\":\"probe\"}\n").expect("probe");
        let reply = read_reply(&mut BufReader::new(probe));
        assert_eq!(reply["type"], "done");
        std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.contains("\"probe\""))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Impostor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chown(path: &Path, uid: u32) {
    let done = Command::new("chown")
        .arg(uid.to_string())
        .arg(path)
        .status()
        .expect("chown");
    assert!(done.success());
}

/// Another user listens where the agent would (a squatted directory, the old shared
/// `/tmp/lanyard-<uid>` fallback, or a socket re-owned after it was bound): `lanyard token` and
/// `lanyard proxy` refuse it by name and send it nothing, not even a hello.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_impostor_agent_of_another_user_is_refused_before_the_hello() {
    let Some(user) = OtherUser::create("broker") else {
        return;
    };
    in_demo_world(move |world| {
        open_mode(&world.dir, 0o755);
        let impostor = Impostor::start(&user, world, &world.dir.join("squat"));
        let refused_with = |what: &str, output: &Output| {
            assert_fails(output, EXIT_FAILURE, what);
            let said = stderr(output);
            let expected = format!(
                "the agent at {} is owned by uid {}, not you: refusing",
                impostor.socket.display(),
                user.uid
            );
            assert!(said.contains(&expected), "{what}: {said}");
        };
        let as_victim = |args: &[&str]| {
            world
                .lanyard(args)
                .env("LANYARD_AGENT_SOCKET", &impostor.socket)
                .output()
                .expect("run lanyard")
        };
        // 1. The directory is theirs: refused before connecting.
        refused_with("token, squatted dir", &as_victim(&["token", "docs"]));
        refused_with("proxy, squatted dir", &as_victim(&["proxy", "docs"]));
        assert_eq!(impostor.received(), Vec::<String>::new());

        // 2. Directory and socket handed to the victim after the impostor bound it: the files
        // look right, but the process listening is still the other user's (SO_PEERCRED).
        chown(impostor.socket.parent().expect("dir"), 0);
        chown(&impostor.socket, 0);
        refused_with("token, peer check", &as_victim(&["token", "docs"]));
        refused_with("proxy, peer check", &as_victim(&["proxy", "docs"]));
        let status = as_victim(&["status"]);
        refused_with("status, peer check", &status);
        assert_eq!(
            impostor.received(),
            Vec::<String>::new(),
            "a client said something to the impostor"
        );
    })
    .await;
}

/// With no runtime directory (cron, SSH without a session), the endpoint is in the user's home,
/// never in a shared directory another user could create first.
#[test]
fn without_a_runtime_directory_the_endpoint_is_in_the_home_directory() {
    let home = std::env::temp_dir().join(format!("lanyard-home-{}", std::process::id()));
    std::fs::create_dir_all(&home).expect("home");
    let output = Command::new(&kit::binaries().lanyard)
        .args(["token", "docs"])
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("LANYARD_AGENT_SOCKET")
        .env("HOME", &home)
        .stdin(Stdio::null())
        .output()
        .expect("run lanyard");
    assert_fails(&output, EXIT_AGENT_NOT_RUNNING, "no agent");
    let uid = my_uid();
    let session = format!("/run/user/{uid}/lanyard/agent.sock");
    let in_home = home.join(".cache/lanyard/agent.sock").display().to_string();
    let said = stderr(&output);
    assert!(
        said.contains(&in_home) || said.contains(&session),
        "the endpoint is neither in HOME nor the session dir: {said}"
    );
    assert!(!said.contains(&format!("lanyard-{uid}/")), "{said}");
    let _ = std::fs::remove_dir_all(home);
}

fn my_uid() -> String {
    let out = Command::new("id").arg("-u").output().expect("id");
    stdout(&out).trim().to_owned()
}

/// More connections than the broker serves at once (1,024), none of which says anything: each is
/// closed after the hello allowance, and a real client that comes after them is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn silent_connections_are_closed_and_cannot_starve_a_real_client() {
    const SILENT: usize = 1100;
    in_demo_world(|world| {
        let _agent = world.start_agent();
        let silent: Vec<UnixStream> = (0..SILENT)
            .map(|_| UnixStream::connect(world.endpoint()).expect("connect"))
            .collect();
        let started = Instant::now();
        let mut real = world
            .lanyard(&["status", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn lanyard status");
        let deadline = started + Duration::from_secs(30);
        while real.try_wait().expect("wait").is_none() {
            if Instant::now() > deadline {
                let _ = real.kill();
                panic!("a real client was starved by {SILENT} silent connections");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let output = real.wait_with_output().expect("output");
        assert_eq!(code(&output), 0, "{}", stderr(&output));
        eprintln!(
            "served after {:?} behind {SILENT} silent connections",
            started.elapsed()
        );
        // The first and the last silent connection (one of those waiting in the backlog) are
        // closed by the agent: a read ends instead of timing out.
        for stream in [&silent[0], &silent[SILENT - 1]] {
            stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .expect("timeout");
            let mut byte = [0u8; 1];
            let read = (&*stream).read(&mut byte);
            assert!(
                matches!(read, Ok(0)),
                "a silent connection was kept: {read:?}"
            );
        }
    })
    .await;
}

/// A client looping on `refresh`, `refresh_all` and forced tokens gets answers, but the identity
/// provider and the authorization server see at most one forced refresh per server per interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forced_refreshes_reach_the_idp_and_the_server_once_per_interval() {
    use lanyard_core::ipc::TokenRequestOptions;
    use lanyard_testbed::Endpoint as Wire;
    in_demo_world(|world| {
        let (_agent, mut client) = world.signed_in_agent();
        client
            .token("docs", TokenRequestOptions::default())
            .expect("token");
        let mints = || world.docs_mints();
        let idp_requests = || world.testbed.idp().faults().requests(Wire::Token);
        // Past the engine's own 2-s reuse window for forced refreshes.
        std::thread::sleep(Duration::from_millis(2100));
        let (mints_before, idp_before) = (mints(), idp_requests());
        let force = TokenRequestOptions {
            force_refresh: true,
            ..Default::default()
        };
        for _ in 0..20 {
            client.refresh("docs").expect("refresh");
            client.refresh_all().expect("refresh all");
            let token = client.token("docs", force.clone()).expect("forced token");
            assert!(token.expires_at > 0);
            // Long enough for a grant to finish: without a limit each round mints anew.
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(500));
        let minted = mints() - mints_before;
        let asked_idp = idp_requests() - idp_before;
        eprintln!("20 rounds of refresh + refresh_all + forced token: {minted} mints for docs, {asked_idp} IdP token requests");
        assert!(minted >= 1, "the first forced refresh went through");
        assert!(minted <= 3, "{minted} mints for docs in 20 rounds");
        // docs, tickets and payroll (denied) once each for refresh_all, docs once more.
        assert!(asked_idp <= 6, "{asked_idp} IdP token requests in 20 rounds");
    })
    .await;
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The proxy's retries: `force_refresh` mints anew (once for a burst), `extra_scopes` mints the
/// union once and then the token carries it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn force_refresh_and_extra_scopes_mint_anew_once() {
    use lanyard_core::ipc::TokenRequestOptions;
    in_demo_world(|world| {
        let (_agent, mut client) = world.signed_in_agent();
        let mints = || world.docs_mints();
        let first = client
            .token("docs", TokenRequestOptions::default())
            .expect("token");
        assert_eq!(mints(), 1);
        // Older than the reuse window, a forced refresh mints; a second one right after does not.
        std::thread::sleep(Duration::from_millis(2100));
        let force = TokenRequestOptions {
            force_refresh: true,
            ..Default::default()
        };
        let forced = client.token("docs", force.clone()).expect("forced");
        assert_ne!(forced.access_token, first.access_token);
        assert_eq!(mints(), 2);
        let again = client.token("docs", force).expect("forced again");
        assert_eq!(again.access_token, forced.access_token);
        assert_eq!(mints(), 2);

        let wider = TokenRequestOptions {
            extra_scopes: vec!["docs.write".into()],
            ..Default::default()
        };
        let token = client.token("docs", wider.clone()).expect("wider");
        assert!(
            token.scopes.contains(&"docs.write".to_owned()),
            "{:?}",
            token.scopes
        );
        assert!(
            token.scopes.contains(&"docs.read".to_owned()),
            "{:?}",
            token.scopes
        );
        assert_eq!(mints(), 3);
        let same = client.token("docs", wider).expect("wider again");
        assert_eq!(same.access_token, token.access_token);
        assert_eq!(mints(), 3);
    })
    .await;
}

/// Says hello (protocol 2) on a raw connection and returns its reader and writer.
fn raw_hello(endpoint: &Path) -> (BufReader<UnixStream>, UnixStream) {
    let stream = UnixStream::connect(endpoint).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    writer
        .write_all(b"{\"op\":\"hello\",\"protocol\":2,\"client\":\"test\"}\n")
        .expect("write");
    assert_eq!(read_reply(&mut reader)["type"], "hello");
    (reader, writer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscribe_sends_the_current_status_then_each_change() {
    in_demo_world(|world| {
        let _agent = world.start_agent();
        let mut updates = BlockingClient::connect(&world.endpoint())
            .expect("connect")
            .subscribe()
            .expect("subscribe");
        let first = updates.next().expect("a first status").expect("status");
        assert!(
            matches!(first.idp, IdpStatus::SignedOut | IdpStatus::Restoring),
            "{:?}",
            first.idp
        );

        // A sign-in by another client shows up on the stream, up to every server granted.
        let login = world.run(&["login", "--no-start"]);
        assert_eq!(code(&login), 0, "login: {}", stderr(&login));
        let mut seen_signed_in = false;
        for status in updates.by_ref() {
            let status = status.expect("status");
            seen_signed_in |= matches!(status.idp, IdpStatus::SignedIn { .. });
            if status
                .servers
                .iter()
                .filter(|s| s.id != "payroll")
                .all(|s| matches!(s.state, ServerState::Granted { .. }))
                && seen_signed_in
            {
                break;
            }
        }
        assert!(seen_signed_in);

        // And so does a sign-out.
        let logout = world.run(&["logout"]);
        assert_eq!(code(&logout), 0, "logout: {}", stderr(&logout));
        let signed_out = updates
            .by_ref()
            .map(|s| s.expect("status"))
            .find(|s| matches!(s.idp, IdpStatus::SignedOut));
        assert!(signed_out.is_some(), "the sign-out reached the subscriber");

        // `lanyard status --watch --json`: one object per line, the current status first.
        let mut watch = world
            .lanyard(&["status", "--watch", "--json"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn status --watch");
        let mut lines = BufReader::new(watch.stdout.take().expect("stdout"));
        let first = read_reply(&mut lines);
        assert_eq!(first["idp"]["state"], "signed_out", "{first}");
        let login = world.run(&["login", "--no-start"]);
        assert_eq!(code(&login), 0, "login: {}", stderr(&login));
        let mut signed_in = false;
        for _ in 0..50 {
            if read_reply(&mut lines)["idp"]["state"] == "signed_in" {
                signed_in = true;
                break;
            }
        }
        assert!(signed_in, "status --watch printed the sign-in");
        let _ = watch.kill();
        let _ = watch.wait();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_version_1_client_is_refused_with_what_to_do() {
    in_demo_world(|world| {
        let _agent = world.start_agent();
        let mut old = UnixStream::connect(world.endpoint()).expect("connect");
        old.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        old.write_all(b"{\"op\":\"hello\",\"protocol\":1,\"client\":\"lanyard-cli 0.0.9\"}\n")
            .expect("write");
        let mut reader = BufReader::new(old);
        let reply = read_reply(&mut reader);
        assert_eq!(reply["code"], "version_mismatch", "{reply}");
        assert_eq!(reply["agent_protocol"], 2);
        let message = reply["message"].as_str().expect("message");
        assert!(
            message.contains("protocol 2") && message.contains("client 1"),
            "{message}"
        );
        let mut rest = Vec::new();
        let _ = reader.read_to_end(&mut rest);
        assert!(rest.is_empty(), "the agent hangs up after refusing");
    })
    .await;
}

/// A subscriber that never reads while the status changes a hundred times and more: its socket buffer
/// fills, the agent keeps answering everyone else promptly, and when it finally reads it catches
/// up to the latest status (coalesced, not a queue of every change).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_subscriber_does_not_hold_up_the_agent() {
    in_demo_world(|world| {
        let _agent = world.start_agent();
        let login = world.run(&["login", "--no-start"]);
        assert_eq!(code(&login), 0, "login: {}", stderr(&login));

        let (mut stalled, mut stalled_writer) = raw_hello(&world.endpoint());
        stalled_writer
            .write_all(b"{\"op\":\"subscribe\"}\n")
            .expect("subscribe");
        // From here on the stalled subscriber reads nothing until the end.

        // Each `lanyard token` is a new process, so each changes the server's `last_used` and
        // with it the status (refreshes would not: the broker coalesces them).
        let mut client = BlockingClient::connect(&world.endpoint()).expect("connect");
        let mut slowest = Duration::ZERO;
        for _ in 0..120 {
            let started = Instant::now();
            let token = world.run(&["token", "docs"]);
            assert_eq!(code(&token), 0, "{}", stderr(&token));
            client.status().expect("status");
            slowest = slowest.max(started.elapsed());
        }
        assert!(
            slowest < Duration::from_secs(5),
            "a request took {slowest:?} while a subscriber stalled"
        );

        // The stalled reader drains what the kernel buffered, then sees the latest status.
        stalled
            .get_ref()
            .set_read_timeout(Some(Duration::from_secs(3)))
            .expect("timeout");
        let mut last = None;
        let mut lines = 0;
        loop {
            let mut line = String::new();
            match stalled.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    lines += 1;
                    last = Some(line);
                }
            }
        }
        // Read after the stream went quiet: a `done` reply can overtake the status it caused.
        let latest = client.status().expect("status");
        let last: Value = serde_json::from_str(&last.expect("status lines")).expect("json");
        assert_eq!(last["type"], "status");
        let want = serde_json::to_value(&latest).expect("json");
        assert_eq!(
            last["status"]["servers"], want["servers"],
            "caught up to the latest"
        );
        eprintln!("the stalled subscriber got {lines} lines for 120 token hand-outs");
    })
    .await;
}
