//! The Windows build of `lanyard` end to end under Wine (issue 8, part 2). `lanyard.exe`, built
//! for x86_64-pc-windows-gnu, runs in the private Wine prefix of scripts/wine/prefix.sh against the
//! testbed in this process on 127.0.0.1. It is one test made of named steps that share one prefix,
//! one testbed and one agent at a time; each step prints its name and outcome, the run ends with
//! `N passed, M failed`, and any failed step fails the test.
//!
//! The steps: the policy read from the Wine registry (HKLM, plus an HKCU value), a sign-in through
//! the browser the agent starts (`$BROWSER` = record-url.exe, a Windows program that only records
//! the URL — the agent's loopback start page, which redirects to the IdP; this test then submits
//! the IdP's login page as a browser would and delivers the IdP's redirect to the Windows agent's
//! loopback listener from fetch-url.exe, a Windows process of the same user, after the same
//! redirect from this Linux process — no Windows process of that user — was refused), the agent on its named pipe (`status`, `token`,
//! `--header-json`, each token checked at the testbed's MCP server), the peer audit, `proxy` under
//! the Python MCP SDK client, the session in Wine's Credential Manager surviving an agent restart
//! with no second sign-in, a live registry change, and the default opener (no `$BROWSER`).
//!
//! Ignored by plain `cargo nextest run` (it cross-builds lanyard.exe and needs Wine): `make
//! windows-e2e` runs it with LANYARD_REQUIRE_WINE=1, under which a missing Wine, mingw, Python
//! client or build fails it loudly; without that variable a missing Wine only skips it, saying so.
//! Wine cannot show: pipe ACLs against another Windows user (one Unix user, one wineserver), a real
//! browser, WebView2 (the tray app), Group Policy or Intune themselves (we write their registry
//! keys), and Windows' own Credential Manager encryption (Wine's stand-in keeps it in its registry).
#![cfg(target_os = "linux")]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context};
use lanyard_core::engine::{IdpStatus, KeychainStatus, ServerState, Status};
use lanyard_testbed::Testbed;
use serde_json::{json, Value};

/// Set to 1 by `make windows-e2e`: anything missing is a failure, not a skip.
const REQUIRE_ENV: &str = "LANYARD_REQUIRE_WINE";
const TARGET: &str = "x86_64-pc-windows-gnu";
/// Who the scripted browser signs in as (the demo IdP denies her Payroll).
const USER: &str = "alice@example.com";
/// Exit codes documented in `lanyard --help`.
const EXIT_DENIED: i32 = 5;
const EXIT_UNKNOWN_SERVER: i32 = 7;
const EXIT_AGENT_NOT_RUNNING: i32 = 8;
/// How long one Wine command may take (a cold wineserver start included).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repository root")
}

fn required() -> bool {
    std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1")
}

fn say(line: impl AsRef<str>) {
    println!("[wine e2e] {}", line.as_ref());
}

// ---------------------------------------------------------------------------------------------
// Steps

/// Named steps, each run to an outcome; the summary at the end fails the test on any failure.
struct Steps {
    outcomes: Vec<(String, Result<(), String>)>,
    started: Instant,
}

impl Steps {
    fn new() -> Self {
        Self {
            outcomes: Vec::new(),
            started: Instant::now(),
        }
    }

    /// Runs one step; its value when it passed.
    fn run<T>(&mut self, name: &str, step: impl FnOnce() -> anyhow::Result<T>) -> Option<T> {
        let n = self.outcomes.len() + 1;
        say(format!("step {n}: {name} …"));
        let started = Instant::now();
        let outcome = step();
        let took = started.elapsed().as_secs_f64();
        match outcome {
            Ok(value) => {
                say(format!("step {n}: {name}: passed ({took:.1} s)"));
                self.outcomes.push((name.to_owned(), Ok(())));
                Some(value)
            }
            Err(e) => {
                say(format!("step {n}: {name}: FAILED ({took:.1} s): {e:#}"));
                self.outcomes.push((name.to_owned(), Err(format!("{e:#}"))));
                None
            }
        }
    }

    fn finish(self) {
        let failed: Vec<&(String, Result<(), String>)> =
            self.outcomes.iter().filter(|(_, o)| o.is_err()).collect();
        let passed = self.outcomes.len() - failed.len();
        say(format!(
            "{passed} passed, {} failed ({:.0} s)",
            failed.len(),
            self.started.elapsed().as_secs_f64()
        ));
        for (name, outcome) in &failed {
            if let Err(e) = outcome {
                say(format!("  FAILED {name}: {e}"));
            }
        }
        assert!(
            failed.is_empty(),
            "{passed} passed, {} failed: {}",
            failed.len(),
            failed
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Processes

/// Runs `command` to completion with a deadline, collecting stdout and stderr.
fn run_for(mut command: Command, timeout: Duration) -> anyhow::Result<Output> {
    let what = format!("{command:?}");
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    let out = collect(child.stdout.take().context("stdout")?);
    let err = collect(child.stderr.take().context("stderr")?);
    let status = wait_for_exit(&mut child, timeout).with_context(|| what.clone())?;
    Ok(Output {
        status,
        stdout: out.taken_after_exit(),
        stderr: err.taken_after_exit(),
    })
}

/// What a reader thread has read so far from one of a child's pipes.
struct Collected(std::sync::Arc<std::sync::Mutex<(Vec<u8>, bool)>>);

/// Reads `pipe` on a thread until EOF, keeping what arrives.
fn collect(mut pipe: impl Read + Send + 'static) -> Collected {
    let shared = std::sync::Arc::new(std::sync::Mutex::new((Vec::new(), false)));
    let sink = shared.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => sink
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .0
                    .extend_from_slice(&chunk[..n]),
            }
        }
        sink.lock().unwrap_or_else(|p| p.into_inner()).1 = true;
    });
    Collected(shared)
}

impl Collected {
    /// The output once the child has exited. A wineserver (and Wine's services) started by this
    /// command inherit its pipes and keep them open after it exits, so EOF may never come: wait
    /// for it briefly, then take what was written.
    fn taken_after_exit(self) -> Vec<u8> {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let done = self.0.lock().unwrap_or_else(|p| p.into_inner()).1;
            if done || Instant::now() >= deadline {
                return std::mem::take(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()).0);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Waits for `child` to exit; kills it and fails after `timeout`.
fn wait_for_exit(child: &mut Child, timeout: Duration) -> anyhow::Result<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("did not finish within {} s (killed)", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn code(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

/// `what`'s output when it did not exit 0.
fn expect_success(output: Output, what: &str) -> anyhow::Result<String> {
    ensure!(
        output.status.success(),
        "{what} exited {}:\nstdout: {}\nstderr: {}",
        code(&output),
        text(&output.stdout).trim(),
        text(&output.stderr).trim()
    );
    Ok(text(&output.stdout))
}

// ---------------------------------------------------------------------------------------------
// Wine

/// The private prefix and the loader, as scripts/wine/prefix.sh prints them.
struct Wine {
    loader: PathBuf,
    env: BTreeMap<String, String>,
    prefix: PathBuf,
}

/// Undoes bash's `printf %q` for the plain values prefix.sh prints (backslash escapes only).
fn unquote(value: &str) -> String {
    let mut out = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Wine {
    /// Creates or checks the prefix (scripts/wine/prefix.sh) and takes its environment.
    fn prepare() -> anyhow::Result<Self> {
        let output = run_for(
            {
                let mut c = Command::new(root().join("scripts/wine/prefix.sh"));
                c.arg("--print-env").stdin(Stdio::null());
                c
            },
            Duration::from_secs(300),
        )?;
        let stdout = expect_success(output, "scripts/wine/prefix.sh")?;
        let mut env = BTreeMap::new();
        for line in stdout.lines() {
            if let Some((name, value)) = line
                .strip_prefix("export ")
                .and_then(|rest| rest.split_once('='))
            {
                env.insert(name.to_owned(), unquote(value));
            }
        }
        let loader = PathBuf::from(env.get("WINE").context("prefix.sh printed no WINE")?);
        let prefix = PathBuf::from(
            env.get("WINEPREFIX")
                .context("prefix.sh printed no WINEPREFIX")?,
        );
        Ok(Self {
            loader,
            env,
            prefix,
        })
    }

    /// `wine64 PROGRAM` in the prefix (PROGRAM: a Unix path to an .exe, or a builtin like `reg`).
    fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new(&self.loader);
        command.arg(program).envs(&self.env).stdin(Stdio::null());
        // The test's own Linux-side settings must not leak into the Windows processes.
        for name in [
            "LANYARD_AGENT_SOCKET",
            "LANYARD_POLICY",
            "LANYARD_NO_KEYCHAIN",
            "LANYARD_LOG",
            "BROWSER",
            "DISPLAY",
            "WAYLAND_DISPLAY",
        ] {
            command.env_remove(name);
        }
        command
    }

    /// Runs a builtin Wine program (`reg`, …) and returns its stdout, failing on a non-zero exit.
    fn builtin(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut command = self.command(args[0]);
        command.args(&args[1..]);
        expect_success(run_for(command, COMMAND_TIMEOUT)?, &args.join(" "))
    }

    /// Imports a .reg file's text into the prefix's registry with `reg import`.
    fn import_reg(&self, scratch: &Path, name: &str, text: &str) -> anyhow::Result<()> {
        let path = scratch.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        self.builtin(&["reg", "import", &windows_path(&path)])?;
        Ok(())
    }
}

/// The Windows path Wine gives a Unix path (drive Z: is `/`).
fn windows_path(path: &Path) -> String {
    format!("Z:{}", path.display()).replace('/', "\\")
}

/// A `lanyard.exe agent` under Wine, owned by this test.
struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the agent: Ctrl-C first (Wine turns SIGINT into a console Ctrl-C event), then kill.
    /// Says which one it took.
    fn stop(&mut self) -> anyhow::Result<&'static str> {
        if self.child.try_wait()?.is_some() {
            bail!("the agent had already exited:\n{}", self.log());
        }
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok("stopped on Ctrl-C");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child.kill()?;
        self.child.wait()?;
        Ok("killed (it did not stop on Ctrl-C within 10 s)")
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

/// Marks the prefix as used by this run (a directory holding our pid), so that two runs never
/// share its registry, pipe and Credential Manager at once; a dead owner's mark is taken over.
struct PrefixClaim(PathBuf);

impl PrefixClaim {
    fn take(prefix: &Path) -> anyhow::Result<Self> {
        let dir = prefix.join(".lanyard-e2e-running");
        for _ in 0..2 {
            match std::fs::create_dir(&dir) {
                Ok(()) => {
                    std::fs::write(dir.join("pid"), std::process::id().to_string())?;
                    return Ok(Self(dir));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let owner = std::fs::read_to_string(dir.join("pid")).unwrap_or_default();
                    let owner = owner.trim();
                    if !owner.is_empty() && Path::new(&format!("/proc/{owner}")).exists() {
                        bail!(
                            "another Wine end-to-end run (pid {owner}) is using {}; wait for it \
                             or set LANYARD_WINEPREFIX to another prefix",
                            prefix.display()
                        );
                    }
                    std::fs::remove_dir_all(&dir)?;
                }
                Err(e) => return Err(e).context(format!("creating {}", dir.display())),
            }
        }
        bail!("could not claim {}", prefix.display())
    }
}

impl Drop for PrefixClaim {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------
// The world: prefix, lanyard.exe, testbed

struct World {
    wine: Wine,
    exe: PathBuf,
    scratch: PathBuf,
    /// Where record-url.exe writes each URL the agent opens.
    urls: PathBuf,
    /// fetch-url.exe (scripts/wine/fetch-url.c), built into the scratch directory.
    fetcher: PathBuf,
    runtime: tokio::runtime::Runtime,
    testbed: Testbed,
    http: reqwest::Client,
    _claim: PrefixClaim,
}

impl World {
    /// `lanyard.exe ARGS` as the test's Windows user: the default pipe, the registry policy, the
    /// Credential Manager, and record-url.exe as `$BROWSER`.
    fn lanyard(&self, args: &[&str]) -> Command {
        let mut command = self.wine.command(&self.exe);
        command
            .args(args)
            // The agent starts $BROWSER with an allow-listed environment (no LANYARD_*): the log
            // goes on its command line. The shell's http handler (ShellExecute) gets the agent's
            // environment and reads LANYARD_BROWSER_LOG.
            .env(
                "BROWSER",
                format!("record-url --log={}", windows_path(&self.urls)),
            )
            .env("LANYARD_BROWSER_LOG", windows_path(&self.urls));
        command
    }

    fn run(&self, args: &[&str]) -> anyhow::Result<Output> {
        run_for(self.lanyard(args), COMMAND_TIMEOUT)
    }

    /// `lanyard.exe ARGS`, which must exit 0; its stdout.
    fn ok(&self, args: &[&str]) -> anyhow::Result<String> {
        expect_success(self.run(args)?, &format!("lanyard.exe {}", args.join(" ")))
    }

    fn status(&self) -> anyhow::Result<Status> {
        let stdout = self.ok(&["status", "--json"])?;
        serde_json::from_str(&stdout).with_context(|| format!("status --json: {stdout}"))
    }

    /// Polls `status --json` until `pred` holds.
    fn wait_status(
        &self,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&Status) -> bool,
    ) -> anyhow::Result<(Status, Duration)> {
        let started = Instant::now();
        loop {
            let status = self.status()?;
            if pred(&status) {
                return Ok((status, started.elapsed()));
            }
            if started.elapsed() >= timeout {
                bail!(
                    "{what}: not within {} s; last status: {}",
                    timeout.as_secs(),
                    serde_json::to_string(&status).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Starts `lanyard.exe agent` and waits until its pipe answers. `with_browser: false` leaves
    /// `$BROWSER` unset, so the agent opens URLs the Windows way.
    fn start_agent(&self, name: &str, with_browser: bool) -> anyhow::Result<Agent> {
        let log = self.scratch.join(format!("{name}.log"));
        let mut command = self.lanyard(&["agent"]);
        if !with_browser {
            command.env_remove("BROWSER");
        }
        command.env("LANYARD_LOG", "info");
        let child = command
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("starting lanyard.exe agent")?;
        let mut agent = Agent { child, log };
        // Ready when a client gets an answer over the pipe.
        let deadline = Instant::now() + Duration::from_secs(45);
        loop {
            if let Some(status) = agent.child.try_wait()? {
                bail!("the agent exited ({status}):\n{}", agent.log());
            }
            let output = self.run(&["status", "--json"])?;
            if output.status.success() {
                break;
            }
            ensure!(
                code(&output) == EXIT_AGENT_NOT_RUNNING,
                "status against the starting agent exited {}: {}\nagent log:\n{}",
                code(&output),
                text(&output.stderr),
                agent.log()
            );
            if Instant::now() >= deadline {
                bail!(
                    "the agent's pipe did not answer within 45 s:\n{}",
                    agent.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(agent)
    }

    /// Every URL record-url.exe was given so far: (how it was started, the URL). How: `None`
    /// for `$BROWSER`, `Some("shell-open")` for the registered http handler.
    fn opened(&self) -> Vec<(Option<String>, String)> {
        std::fs::read_to_string(&self.urls)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut words: Vec<&str> = l.split_whitespace().collect();
                let url = words.pop()?.to_owned();
                Some(((!words.is_empty()).then(|| words.join(" ")), url))
            })
            .collect()
    }

    fn opened_urls(&self) -> Vec<String> {
        self.opened().into_iter().map(|(_, url)| url).collect()
    }

    /// Waits for the `n`-th URL the agent opens, submits the IdP's login page for it as [`USER`],
    /// and waits for `login_child` (a `lanyard.exe login`) to finish.
    fn complete_sign_in(
        &self,
        mut login_child: Child,
        n: usize,
        expected_via: Option<&str>,
    ) -> anyhow::Result<String> {
        let deadline = Instant::now() + Duration::from_secs(45);
        let (via, url) = loop {
            if let Some(opened) = self.opened().get(n - 1) {
                break opened.clone();
            }
            if let Some(status) = login_child.try_wait()? {
                let mut stderr = String::new();
                if let Some(mut e) = login_child.stderr.take() {
                    let _ = e.read_to_string(&mut stderr);
                }
                bail!("login exited ({status}) before the browser was opened: {stderr}");
            }
            if Instant::now() >= deadline {
                let _ = login_child.kill();
                bail!(
                    "the agent opened no browser within 45 s (URLs so far: {:?})",
                    self.opened_urls()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        ensure!(
            via.as_deref() == expected_via,
            "the browser was started {} (expected {})",
            via.as_deref().unwrap_or("through $BROWSER"),
            expected_via.unwrap_or("through $BROWSER")
        );
        // The browser gets the agent's loopback start page, not the authorization URL (which
        // would sit on its command line). The agent answers it only to a process of its own
        // Windows user: this Linux process is none (403), fetch-url.exe under Wine is (302).
        ensure!(
            url.starts_with("http://127.0.0.1:") && url.contains("/start/"),
            "the browser was given {url}, not the agent's loopback start page"
        );
        let status = self.fetch_from_linux(&url)?;
        ensure!(
            status == 403,
            "the start page answered a process that is not the user's Windows process {status}"
        );
        let (status, location) = self.fetch_in_wine(&url)?;
        ensure!(
            status == 302,
            "the start page answered fetch-url.exe {status}"
        );
        let url = location.context("the start page's 302 has no Location")?;
        let authorize = self.testbed.idp().authorization_endpoint();
        ensure!(
            url.starts_with(&authorize),
            "the start page sent the browser to {url}, not to the IdP's {authorize}"
        );
        let redirect = self
            .runtime
            .block_on(lanyard_testbed::login_redirect(&url, USER))
            .context("submitting the IdP's login page")?;
        ensure!(
            redirect.starts_with("http://127.0.0.1:"),
            "the IdP redirected to {redirect}, not to a loopback listener"
        );
        // The redirect, delivered by another process than the user's own (login CSRF): refused,
        // and the sign-in goes on waiting for the genuine one.
        let status = self.fetch_from_linux(&redirect)?;
        ensure!(
            status == 403,
            "the agent took the redirect from a process that is not the user's Windows process \
             (answered {status})"
        );
        let (status, _) = self.fetch_in_wine(&redirect)?;
        ensure!(
            status == 200,
            "the agent's loopback listener answered fetch-url.exe {status}"
        );
        let status = wait_for_exit(&mut login_child, Duration::from_secs(45))?;
        let mut stderr = String::new();
        if let Some(mut e) = login_child.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        ensure!(
            status.success(),
            "lanyard.exe login exited {status}: {stderr}"
        );
        Ok(url)
    }

    /// GETs a loopback URL of the agent from a Windows process of the test's user
    /// (fetch-url.exe under Wine): the status and the `Location` header.
    fn fetch_in_wine(&self, url: &str) -> anyhow::Result<(u16, Option<String>)> {
        let mut command = self.wine.command(&self.fetcher);
        command.arg(url);
        let answer = expect_success(run_for(command, COMMAND_TIMEOUT)?, "fetch-url.exe")?;
        let status = answer
            .lines()
            .next()
            .and_then(|line| line.split(' ').nth(1))
            .and_then(|code| code.parse().ok())
            .with_context(|| format!("fetch-url.exe printed no status line: {answer:?}"))?;
        let location = answer
            .lines()
            .take_while(|line| !line.trim().is_empty())
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("location")
                    .then(|| value.trim().to_owned())
            });
        Ok((status, location))
    }

    /// GETs a loopback URL of the agent from this (Linux) process: the status.
    fn fetch_from_linux(&self, url: &str) -> anyhow::Result<u16> {
        self.runtime.block_on(async {
            let client = reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()?;
            anyhow::Ok(client.get(url).send().await?.status().as_u16())
        })
    }

    fn mcp_url(&self, server: &str) -> anyhow::Result<String> {
        Ok(self
            .testbed
            .mcp_server(server)
            .with_context(|| format!("no MCP server {server} in the testbed"))?
            .url()
            .to_owned())
    }

    /// POSTs one JSON-RPC request to the testbed's MCP server `server` from the Linux side, with
    /// `authorization` as the Authorization header; the status and the body.
    fn mcp_call(
        &self,
        server: &str,
        authorization: Option<&str>,
        method: &str,
        params: Value,
    ) -> anyhow::Result<(u16, String)> {
        let url = self.mcp_url(server)?;
        self.runtime.block_on(async {
            let mut request = self
                .http
                .post(&url)
                .header("Accept", "application/json, text/event-stream")
                .header("Content-Type", "application/json")
                .body(
                    json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
                        .to_string(),
                );
            if let Some(value) = authorization {
                request = request.header("Authorization", value);
            }
            let response = request.send().await.context("calling the MCP server")?;
            let status = response.status().as_u16();
            let body = response.text().await.context("reading the MCP answer")?;
            Ok((status, body))
        })
    }

    /// `token SERVER` from lanyard.exe, checked at the MCP server: whoami must name [`USER`].
    fn token_is_accepted(&self, server: &str) -> anyhow::Result<String> {
        let token = self.ok(&["token", server])?.trim().to_owned();
        ensure!(
            token.split('.').count() == 3,
            "token {server} printed no JWT (\"{}…\")",
            token.chars().take(12).collect::<String>()
        );
        let (status, body) = self.mcp_call(
            server,
            Some(&format!("Bearer {token}")),
            "tools/call",
            json!({"name": "whoami", "arguments": {}}),
        )?;
        ensure!(
            status == 200,
            "the {server} MCP server answered {status}: {body}"
        );
        ensure!(
            body.contains(&format!("email={USER}")) && body.contains(&format!("server={server}")),
            "whoami at {server} did not name {USER}: {body}"
        );
        Ok(token)
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.testbed.shutdown();
        if std::env::var_os("LANYARD_KEEP_SCRATCH").is_none() {
            let _ = std::fs::remove_dir_all(&self.scratch);
        }
    }
}

/// Builds (or finds up to date) the Windows `lanyard.exe`, one debug build reused across runs.
fn build_exe() -> anyhow::Result<PathBuf> {
    if let Some(exe) = std::env::var_os("LANYARD_WINDOWS_EXE") {
        let exe = PathBuf::from(exe);
        ensure!(
            exe.is_file(),
            "LANYARD_WINDOWS_EXE={} does not exist",
            exe.display()
        );
        return Ok(exe);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args([
            "build",
            "-q",
            "--target",
            TARGET,
            "-p",
            "lanyard-cli",
            "--bin",
            "lanyard",
        ])
        .current_dir(root())
        .stdin(Stdio::null());
    let output = run_for(command, Duration::from_secs(1800))?;
    ensure!(
        output.status.success(),
        "cargo build --target {TARGET} -p lanyard-cli failed:\n{}",
        text(&output.stderr)
    );
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let exe = target_dir.join(TARGET).join("debug/lanyard.exe");
    ensure!(
        exe.is_file(),
        "{} is missing after the build",
        exe.display()
    );
    Ok(exe)
}

// ---------------------------------------------------------------------------------------------
// The registry policy

/// The policy as an administrator deploys it (the layout of deploy/windows/servers-example.reg):
/// everything from HKLM, except one value only the user's HKCU key sets, and one value both set
/// (the machine's must win). It first removes whatever an earlier run left.
fn policy_reg(tb: &Testbed, servers: &[&str]) -> String {
    let machine = r"HKEY_LOCAL_MACHINE\SOFTWARE\Policies\Lanyard";
    let user = r"HKEY_CURRENT_USER\SOFTWARE\Policies\Lanyard";
    let mut reg = format!(
        "Windows Registry Editor Version 5.00\r\n\r\n[-{machine}]\r\n\r\n[-{user}]\r\n\r\n\
         [{machine}]\r\n\"dev_mode\"=dword:00000001\r\n\r\n\
         [{machine}\\idp]\r\n\"issuer\"=\"{issuer}\"\r\n\"client_id\"=\"{client}\"\r\n\r\n\
         [{machine}\\idp\\client_auth]\r\n\"method\"=\"none\"\r\n\r\n\
         [{machine}\\idp\\scopes]\r\n\"1\"=\"openid\"\r\n\"2\"=\"offline_access\"\r\n\"3\"=\"email\"\r\n\r\n\
         [{machine}\\settings]\r\n\"max_concurrency\"=dword:00000010\r\n\r\n\
         [{user}\\settings]\r\n\"max_concurrency\"=dword:00000004\r\n\"refresh_at_fraction\"=\"0.8\"\r\n\r\n",
        issuer = tb.idp().issuer(),
        client = lanyard_testbed::demo::DEMO_IDP_CLIENT_ID,
    );
    for server in servers {
        reg.push_str(&server_reg(tb, server));
    }
    reg
}

/// One server's subkey (id = subkey name), in the layout of servers-example.reg.
fn server_reg(tb: &Testbed, id: &str) -> String {
    let key = format!(r"HKEY_LOCAL_MACHINE\SOFTWARE\Policies\Lanyard\servers\{id}");
    let mcp = tb.mcp_server(id).expect("a demo server");
    let client_id = tb
        .auth_server_for(id)
        .and_then(|a| a.clients().first())
        .map(|c| c.client_id.clone())
        .unwrap_or_default();
    let mut reg = format!(
        "[{key}]\r\n\"display_name\"=\"{id} (registry)\"\r\n\"url\"=\"{url}\"\r\n\
         \"client_id\"=\"{client_id}\"\r\n\"mode\"=\"enterprise-managed\"\r\n\r\n\
         [{key}\\client_auth]\r\n\"method\"=\"none\"\r\n\r\n[{key}\\scopes]\r\n",
        url = mcp.url(),
    );
    for (i, scope) in mcp.required_scopes().iter().enumerate() {
        reg.push_str(&format!("\"{}\"=\"{scope}\"\r\n", i + 1));
    }
    reg.push_str("\r\n");
    reg
}

/// The `policy show --origins` line of `key`.
fn origin_line<'a>(origins: &'a str, key: &str) -> anyhow::Result<&'a str> {
    origins
        .lines()
        .find(|l| l.split_whitespace().next() == Some(key))
        .ok_or_else(|| anyhow!("policy show --origins has no line for {key}:\n{origins}"))
}

fn server_ids(status: &Status) -> Vec<String> {
    let mut ids: Vec<String> = status.servers.iter().map(|s| s.id.clone()).collect();
    ids.sort();
    ids
}

fn state_of<'a>(status: &'a Status, id: &str) -> Option<&'a ServerState> {
    status.server(id).map(|s| &s.state)
}

// ---------------------------------------------------------------------------------------------
// The test

#[test]
#[ignore = "cross-builds lanyard.exe and runs it under Wine: `make windows-e2e`"]
fn windows_lanyard_exe_end_to_end_under_wine() {
    let mut steps = Steps::new();

    if !Path::new("/usr/lib/wine/wine64").exists() && std::env::var_os("LANYARD_WINE").is_none() {
        let message =
            "Wine is not installed (Debian's wine64; scripts/install-deps.sh installs it)";
        assert!(!required(), "{message}, and {REQUIRE_ENV}=1 requires it");
        say(format!("SKIPPED: {message}"));
        return;
    }

    // Setup, each part a step: without it nothing else can run, so a failure ends the run here.
    let wine = steps.run("Wine prefix (scripts/wine/prefix.sh)", Wine::prepare);
    let exe = steps.run(&format!("build lanyard.exe for {TARGET}"), build_exe);
    let (Some(wine), Some(exe)) = (wine, exe) else {
        return steps.finish();
    };
    let world = steps.run("testbed on 127.0.0.1 and a clean prefix", || {
        let claim = PrefixClaim::take(&wine.prefix)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let testbed = runtime.block_on(lanyard_testbed::demo::start_demo(Duration::ZERO))?;
        let scratch = std::env::temp_dir().join(format!(
            "lanyard-wine-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&scratch)?;
        // Nothing of an earlier run: no policy keys, no saved session, our browser for http(s).
        let mut reset = String::from(
            "Windows Registry Editor Version 5.00\r\n\r\n\
             [-HKEY_LOCAL_MACHINE\\SOFTWARE\\Policies\\Lanyard]\r\n\r\n\
             [-HKEY_CURRENT_USER\\SOFTWARE\\Policies\\Lanyard]\r\n\r\n\
             [-HKEY_CURRENT_USER\\Software\\Wine\\Credential Manager]\r\n\r\n",
        );
        // The system's http(s) handler (what ShellExecute opens a URL with) is record-url.exe too,
        // tagged `shell-open`, so each step can tell which way the agent opened the browser.
        for scheme in ["http", "https"] {
            reset.push_str(&format!(
                "[HKEY_CLASSES_ROOT\\{scheme}\\shell\\open\\command]\r\n\
                 @=\"\\\"C:\\\\windows\\\\record-url.exe\\\" shell-open \\\"%1\\\"\"\r\n\r\n"
            ));
        }
        wine.import_reg(&scratch, "reset.reg", &reset)?;
        let fetcher = scratch.join("fetch-url.exe");
        let built = Command::new("x86_64-w64-mingw32-gcc")
            .args(["-O2", "-s", "-o"])
            .arg(&fetcher)
            .arg(root().join("scripts/wine/fetch-url.c"))
            .arg("-lws2_32")
            .status()
            .context("running x86_64-w64-mingw32-gcc")?;
        ensure!(built.success(), "building fetch-url.exe failed");
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()?;
        let world = World {
            urls: scratch.join("opened-urls.txt"),
            fetcher,
            exe: exe.clone(),
            scratch,
            runtime,
            testbed,
            http,
            _claim: claim,
            wine,
        };
        // No agent may be left from a run that was killed: the default pipe must be free.
        let output = world.run(&["status"])?;
        ensure!(
            code(&output) == EXIT_AGENT_NOT_RUNNING,
            "an agent already answers on this prefix's pipe (status exited {}): stop it \
             (wineserver -k with WINEPREFIX={})",
            code(&output),
            world.wine.prefix.display()
        );
        Ok(world)
    });
    let Some(world) = world else {
        return steps.finish();
    };
    let tb = &world.testbed;

    steps.run("policy from the Wine registry (HKLM + HKCU)", || {
        world.import_reg_policy(&["docs", "payroll"])?;
        let shown = world.ok(&["policy", "show"])?;
        let policy: Value =
            serde_json::from_str(&shown).with_context(|| format!("policy show: {shown}"))?;
        ensure!(
            policy["idp"]["issuer"] == tb.idp().issuer(),
            "idp.issuer: {policy}"
        );
        ensure!(
            policy["dev_mode"] == true,
            "dev_mode from a REG_DWORD 1: {policy}"
        );
        let mut ids: Vec<&str> = policy["servers"]
            .as_array()
            .context("no servers")?
            .iter()
            .filter_map(|s| s["id"].as_str())
            .collect();
        ids.sort();
        ensure!(
            ids == ["docs", "payroll"],
            "servers from the subkeys: {ids:?}"
        );
        ensure!(
            policy["settings"]["max_concurrency"] == 16,
            "HKLM's max_concurrency (16) must win over HKCU's (4): {}",
            policy["settings"]
        );
        ensure!(
            policy["settings"]["refresh_at_fraction"] == 0.8,
            "HKCU's refresh_at_fraction (0.8): {}",
            policy["settings"]
        );
        let origins = world.ok(&["policy", "show", "--origins"])?;
        let line = origin_line(&origins, "settings.refresh_at_fraction")?;
        ensure!(
            line.contains("HKCU"),
            "refresh_at_fraction not from HKCU: {line}"
        );
        let line = origin_line(&origins, "settings.max_concurrency")?;
        ensure!(
            line.contains("HKLM"),
            "max_concurrency not from HKLM: {line}"
        );
        say(format!("  policy show --origins:\n{}", origins.trim_end()));
        Ok(())
    });

    steps.run(
        "a %ProgramData%\\Lanyard\\policy.json a user owns is ignored by name (GetSecurityInfo)",
        || {
            // Wine derives a file's security descriptor from its Unix owner and mode: everything
            // in the prefix belongs to the user's SID (another uid: ANONYMOUS), and it cannot
            // store an Administrators owner. So this step proves the refusal on the real Windows
            // API path; the acceptance of an administrator's file is unit-tested on the decision
            // function (lanyard_core::os::judge_admin_security).
            let folder = self_prefix_program_data(&world).join("Lanyard");
            std::fs::create_dir_all(&folder)?;
            let planted = folder.join("policy.json");
            std::fs::write(
                &planted,
                r#"{"settings": {"proxy": "http://127.0.0.1:9", "support_url": "https://planted.example"}}"#,
            )?;
            let output = world.run(&["policy", "show"]);
            let _ = std::fs::remove_dir_all(&folder);
            let output = output?;
            let stdout = text(&output.stdout);
            let stderr = text(&output.stderr);
            ensure!(code(&output) == 0, "policy show failed: {stderr}");
            ensure!(
                !stdout.contains("127.0.0.1:9") && !stdout.contains("planted.example"),
                "the planted file was used: {stdout}"
            );
            ensure!(
                stderr.contains("C:\\ProgramData\\Lanyard\\policy.json: .: ignored: its folder \
                                 C:\\ProgramData\\Lanyard is owned by S-1-5-21-")
                    && stderr.contains("not by SYSTEM, Administrators or TrustedInstaller"),
                "no named refusal: {stderr}"
            );
            let policy: Value = serde_json::from_str(&stdout)?;
            ensure!(
                policy["settings"]["max_concurrency"] == 16,
                "the registry policy still applies: {policy}"
            );
            say(format!("  {}", stderr.trim_end()));
            Ok(())
        },
    );

    let mut agent = steps.run("sign-in: the agent opens $BROWSER (record-url.exe)", || {
        let agent = world.start_agent("agent-1", true)?;
        let status = world.status()?;
        ensure!(
            matches!(status.idp, IdpStatus::SignedOut),
            "a fresh prefix is signed out: {:?}",
            status.idp
        );
        let login = world
            .lanyard(&["login", "--no-start"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting lanyard.exe login")?;
        let before = tb.idp().stats();
        world.complete_sign_in(login, 1, None)?;
        let after = tb.idp().stats();
        ensure!(
            after.logins == before.logins + 1 && after.code_grants == before.code_grants + 1,
            "one login and one code grant at the IdP: {before:?} → {after:?}"
        );
        ensure!(
            world.opened_urls().len() == 1,
            "URLs opened: {:?}",
            world.opened_urls()
        );
        Ok(agent)
    });

    steps.run("status over the named pipe", || {
        let (status, _) = world.wait_status("docs granted", Duration::from_secs(20), |s| {
            matches!(state_of(s, "docs"), Some(ServerState::Granted { .. }))
                && !matches!(state_of(s, "payroll"), Some(ServerState::Granting) | None)
        })?;
        match &status.idp {
            IdpStatus::SignedIn { email, .. } => {
                ensure!(email.as_deref() == Some(USER), "signed in as {email:?}")
            }
            other => bail!("not signed in: {other:?}"),
        }
        ensure!(
            matches!(
                state_of(&status, "payroll"),
                Some(ServerState::Denied { .. })
            ),
            "the IdP denies alice Payroll: {:?}",
            state_of(&status, "payroll")
        );
        ensure!(
            matches!(status.keychain, KeychainStatus::Available),
            "the Credential Manager is the keychain: {:?}",
            status.keychain
        );
        let human = world.ok(&["status"])?;
        ensure!(
            human.contains("docs (registry)"),
            "status names the servers:\n{human}"
        );
        Ok(())
    });

    steps.run(
        "token and --header-json, accepted by the MCP server",
        || {
            let (status, _) = world.mcp_call("docs", None, "initialize", json!({}))?;
            ensure!(
                status == 401,
                "without a token the MCP server must refuse (got {status})"
            );
            let token = world.token_is_accepted("docs")?;
            let header = world.ok(&["token", "docs", "--header-json"])?;
            let header: Value = serde_json::from_str(&header)
                .with_context(|| format!("--header-json: {header}"))?;
            let value = header["Authorization"]
                .as_str()
                .context("--header-json has no Authorization")?;
            ensure!(
                header.as_object().is_some_and(|o| o.len() == 1),
                "--header-json holds only Authorization"
            );
            ensure!(
                value == format!("Bearer {token}"),
                "--header-json's bearer is the token"
            );
            let (status, body) = world.mcp_call(
                "docs",
                Some(value),
                "initialize",
                json!({"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "wine-e2e", "version": "1"}}),
            )?;
            ensure!(
                status == 200 && body.contains("\"result\""),
                "initialize: {status} {body}"
            );
            let denied = world.run(&["token", "payroll"])?;
            ensure!(
                code(&denied) == EXIT_DENIED,
                "token payroll exits 5 (denied), got {}",
                code(&denied)
            );
            let unknown = world.run(&["token", "nosuch"])?;
            ensure!(
                code(&unknown) == EXIT_UNKNOWN_SERVER,
                "token nosuch exits 7, got {}",
                code(&unknown)
            );
            Ok(())
        },
    );

    steps.run(
        "audit: the agent logs the peer's pid and executable",
        || {
            let agent = agent
                .as_ref()
                .context("no agent (the sign-in step failed)")?;
            let log = agent.log();
            let line = log
                .lines()
                .rev()
                .find(|l| l.contains("token handed out"))
                .with_context(|| format!("no \"token handed out\" in the agent log:\n{log}"))?;
            ensure!(
                line.contains("pid=Some(") && line.to_ascii_lowercase().contains("lanyard.exe"),
                "the audit line names no peer pid and executable: {line}"
            );
            Ok(())
        },
    );

    steps.run("proxy under the Python MCP SDK client", || {
        let python = root().join(".tools/proxy-py/bin/python");
        ensure!(
            python.exists(),
            "no Python MCP SDK at {} (scripts/install-deps.sh installs it)",
            python.display()
        );
        // The SDK passes the server only a minimal environment: the wrapper brings the prefix.
        let wrapper = world.scratch.join("lanyard-under-wine");
        let mut script = String::from("#!/bin/sh\n");
        for (name, value) in &world.wine.env {
            script.push_str(&format!("export {name}='{value}'\n"));
        }
        script.push_str(&format!(
            "exec '{}' '{}' \"$@\"\n",
            world.wine.loader.display(),
            world.exe.display()
        ));
        std::fs::write(&wrapper, script)?;
        std::fs::set_permissions(
            &wrapper,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        let calls_before = tb.mcp_server("docs").context("docs")?.stats().tool_calls;
        let mut child = Command::new(&python)
            .arg(root().join("tests/proxy-clients/python_client.py"))
            .arg(&wrapper)
            .arg("docs")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting the Python client")?;
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(b"whoami\necho hello from wine\nquit\n")?;
        let mut out = child.stdout.take().context("stdout")?;
        let mut err = child.stderr.take().context("stderr")?;
        let reader = std::thread::spawn(move || {
            let (mut o, mut e) = (String::new(), String::new());
            let _ = out.read_to_string(&mut o);
            let _ = err.read_to_string(&mut e);
            (o, e)
        });
        let status = wait_for_exit(&mut child, COMMAND_TIMEOUT)?;
        let (stdout, stderr) = reader.join().map_err(|_| anyhow!("reader panicked"))?;
        ensure!(
            status.success(),
            "the Python client exited {status}:\n{stdout}\n{stderr}"
        );
        let events: Vec<Value> = stdout
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()
            .with_context(|| format!("client output: {stdout}"))?;
        let ready = events.first().context("no events")?;
        ensure!(ready["event"] == "ready", "first event: {ready}");
        ensure!(
            ready["tools"]
                .as_array()
                .is_some_and(|t| t.iter().any(|n| n == "whoami")),
            "tools/list through the proxy: {ready}"
        );
        let whoami = events.get(1).context("no whoami result")?;
        ensure!(
            whoami["text"]
                .as_str()
                .is_some_and(|t| t.contains(&format!("email={USER}"))),
            "whoami through the proxy: {whoami}"
        );
        let echo = events.get(2).context("no echo result")?;
        ensure!(
            echo["text"] == "hello from wine",
            "echo through the proxy: {echo}"
        );
        let calls_after = tb.mcp_server("docs").context("docs")?.stats().tool_calls;
        ensure!(
            calls_after >= calls_before + 2,
            "the MCP server saw the two calls ({calls_before} → {calls_after})"
        );
        Ok(())
    });

    steps.run(
        "the session is in Wine's Credential Manager, no secret in plain files",
        || {
            let creds = world.wine.builtin(&[
                "reg",
                "query",
                r"HKCU\Software\Wine\Credential Manager",
                "/s",
            ])?;
            ensure!(
                creds.to_ascii_lowercase().contains("lanyard"),
                "no Lanyard credential in Wine's Credential Manager:\n{creds}"
            );
            let secrets = tb.idp().wire_secrets();
            let mut places: Vec<(String, String)> = Vec::new();
            if let Some(agent) = agent.as_ref() {
                places.push(("the agent log".into(), agent.log()));
            }
            for entry in std::fs::read_dir(&world.scratch)? {
                let path = entry?.path();
                if path.is_file() {
                    places.push((
                        path.display().to_string(),
                        String::from_utf8_lossy(&std::fs::read(&path)?).into_owned(),
                    ));
                }
            }
            for (place, content) in &places {
                for secret in secrets.refresh_tokens.iter().chain(&secrets.id_tokens) {
                    ensure!(
                        !content.contains(secret.as_str()),
                        "a session secret is in {place}"
                    );
                }
            }
            Ok(())
        },
    );

    steps.run(
        "Credential Manager round trip: agent restart, token without a new sign-in",
        || {
            let mut old = agent.take().context("no agent (the sign-in step failed)")?;
            let how = old.stop()?;
            say(format!("  the first agent {how}"));
            let gone = world.run(&["status"])?;
            ensure!(
                code(&gone) == EXIT_AGENT_NOT_RUNNING,
                "with the agent stopped, status exits 8 (got {})",
                code(&gone)
            );
            let before = tb.idp().stats();
            let new = world.start_agent("agent-2", true)?;
            let (_, took) =
                world.wait_status("docs granted again", Duration::from_secs(30), |s| {
                    matches!(state_of(s, "docs"), Some(ServerState::Granted { .. }))
                })?;
            world.token_is_accepted("docs")?;
            let after = tb.idp().stats();
            agent = Some(new);
            ensure!(
                world.opened_urls().len() == 1,
                "the restarted agent opened the browser again: {:?}",
                world.opened_urls()
            );
            ensure!(
                after.logins == before.logins && after.code_grants == before.code_grants,
                "no new sign-in at the IdP: {before:?} → {after:?}"
            );
            ensure!(
            after.refresh_grants > before.refresh_grants,
            "the restored session was renewed with the stored refresh token: {before:?} → {after:?}"
        );
            say(format!(
                "  granted again {:.1} s after the restart",
                took.as_secs_f64()
            ));
            Ok(())
        },
    );

    steps.run(
        "live registry change: a server added and one removed while the agent runs",
        || {
            ensure!(agent.is_some(), "no agent (an earlier step failed)");
            let added = format!(
                "Windows Registry Editor Version 5.00\r\n\r\n{}",
                server_reg(tb, "tickets")
            );
            let started = Instant::now();
            world
                .wine
                .import_reg(&world.scratch, "add-tickets.reg", &added)?;
            world.wine.builtin(&[
                "reg",
                "delete",
                r"HKLM\SOFTWARE\Policies\Lanyard\servers\payroll",
                "/f",
            ])?;
            let (status, _) = world.wait_status(
                "tickets granted and payroll gone (needs windows_registry::watch_registry)",
                Duration::from_secs(15),
                |s| {
                    matches!(state_of(s, "tickets"), Some(ServerState::Granted { .. }))
                        && s.server("payroll").is_none()
                },
            )?;
            say(format!(
                "  applied {:.1} s after the registry write",
                started.elapsed().as_secs_f64()
            ));
            ensure!(
                server_ids(&status) == ["docs", "tickets"],
                "servers: {:?}",
                server_ids(&status)
            );
            world.token_is_accepted("tickets")?;
            Ok(())
        },
    );

    steps.run(
        "default opener: no $BROWSER, the registered http handler gets the URL",
        || {
            world.ok(&["logout"])?;
            if let Some(mut old) = agent.take() {
                old.stop()?;
            }
            let new = world.start_agent("agent-3", false)?;
            agent = Some(new);
            let login = world
                .lanyard(&["login", "--no-start"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .context("starting lanyard.exe login")?;
            world.complete_sign_in(login, 2, Some("shell-open"))?;
            world.token_is_accepted("docs")?;
            Ok(())
        },
    );

    steps.run(
        "device-key: the CNG path runs as far as Wine's ncrypt goes, and fails by name",
        || {
            // Wine's ncrypt opens the key storage providers but answers NCryptOpenKey and
            // NCryptCreatePersistedKey for a named key with NTE_NOT_SUPPORTED: signing with a
            // persisted CNG key cannot run here. What runs: the policy's Windows key reference
            // is accepted on Windows, the providers are opened, and the refusal is a named
            // error (store, key, code), not a crash.
            let policy = world.scratch.join("device-key-policy.json");
            std::fs::write(
                &policy,
                r#"{"idp": {"issuer": "https://idp.example", "client_id": "lanyard",
                   "client_auth": {"method": "private_key_jwt",
                                   "key": {"store": "windows", "name": "Lanyard Wine Key"}}},
                   "servers": [], "dev_mode": true}"#,
            )?;
            for verb in ["create", "show"] {
                let mut command = world.lanyard(&["device-key", verb]);
                command.env("LANYARD_POLICY", windows_path(&policy));
                let output = run_for(command, COMMAND_TIMEOUT)?;
                let stderr = text(&output.stderr);
                ensure!(
                    !stderr.contains("panicked"),
                    "device-key {verb} crashed: {stderr}"
                );
                match code(&output) {
                    // A Wine whose ncrypt persists named keys: the key is shown.
                    0 => ensure!(
                        text(&output.stdout).contains("CNG key \"Lanyard Wine Key\""),
                        "device-key {verb}: {}",
                        text(&output.stdout)
                    ),
                    _ => ensure!(
                        stderr.contains("Windows CNG")
                            && stderr.contains("\"Lanyard Wine Key\"")
                            && stderr.contains("not supported"),
                        "device-key {verb}: {stderr}"
                    ),
                }
                say(format!("  device-key {verb}: {}", stderr.trim()));
            }
            Ok(())
        },
    );

    if let Some(mut agent) = agent.take() {
        let _ = agent.stop();
    }
    drop(world);
    steps.finish();
}

/// The prefix's `C:\\ProgramData` as a Unix path.
fn self_prefix_program_data(world: &World) -> PathBuf {
    world.wine.prefix.join("drive_c/ProgramData")
}

impl World {
    /// Writes the policy of `servers` into the prefix's HKLM and HKCU policy keys.
    fn import_reg_policy(&self, servers: &[&str]) -> anyhow::Result<()> {
        self.wine.import_reg(
            &self.scratch,
            "policy.reg",
            &policy_reg(&self.testbed, servers),
        )
    }
}
