//! `lanyard diagnose` when things are broken: no policy, no agent, no keychain, no network. The
//! archive is still written with each problem recorded, the command exits 0 with one summary line,
//! and only an unwritable FILE fails it. The redaction of a live session is tested end to end in
//! tests/tests/secrets.rs.

#![cfg(unix)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "lanyard-diagnose-{name}-{}-{:x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(dir.join("run")).expect("scratch");
        std::fs::create_dir_all(dir.join("home")).expect("scratch");
        Self(dir)
    }

    /// `lanyard diagnose --output <out>` with `policy`, a private runtime dir, no D-Bus session.
    fn diagnose(&self, policy: &Path, out: &Path) -> Output {
        Command::new(env!("CARGO_BIN_EXE_lanyard"))
            .args(["diagnose", "--output"])
            .arg(out)
            .env("LANYARD_POLICY", policy)
            .env("HOME", self.0.join("home"))
            .env("XDG_RUNTIME_DIR", self.0.join("run"))
            .env("XDG_CONFIG_HOME", self.0.join("home/.config"))
            // A session bus that is not there: the keychain is absent.
            .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus")
            .env_remove("LANYARD_NO_KEYCHAIN")
            .env_remove("LANYARD_AGENT_SOCKET")
            .stdin(Stdio::null())
            .output()
            .expect("run lanyard")
    }

    /// A dev-mode policy for one server, both it and the identity provider at a loopback port
    /// nobody listens on (connections are refused); `settings` are made for that port. Returns the
    /// policy's path and the port.
    fn dead_network_policy(&self, settings: impl FnOnce(u16) -> Value) -> (PathBuf, u16) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let policy = self.0.join("policy.json");
        let document = serde_json::json!({
            "idp": {"issuer": format!("http://127.0.0.1:{port}"), "client_id": "lanyard"},
            "servers": [{"id": "docs", "display_name": "Docs",
                         "url": format!("http://127.0.0.1:{port}/mcp"), "client_id": "lanyard-docs"}],
            "settings": settings(port),
            "dev_mode": true,
        });
        std::fs::write(&policy, document.to_string()).expect("policy");
        (policy, port)
    }

    /// `diagnose` into `out.zip`, which must succeed; the output and the archive's files.
    fn diagnose_ok(&self, policy: &Path) -> (Output, Vec<(String, String)>) {
        let out = self.0.join("out.zip");
        let o = self.diagnose(policy, &out);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let files = unzip(&out);
        (o, files)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn unzip(archive: &Path) -> Vec<(String, String)> {
    let file = std::fs::File::open(archive).expect("the archive exists");
    let mut zip = zip::ZipArchive::new(file).expect("a zip archive");
    (0..zip.len())
        .map(|i| {
            let mut entry = zip.by_index(i).expect("entry");
            let mut text = String::new();
            entry.read_to_string(&mut text).expect("UTF-8 text");
            (entry.name().to_owned(), text)
        })
        .collect()
}

fn file<'a>(files: &'a [(String, String)], name: &str) -> &'a str {
    files
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, t)| t.as_str())
        .unwrap_or_else(|| {
            panic!(
                "no {name} in {:?}",
                files.iter().map(|f| &f.0).collect::<Vec<_>>()
            )
        })
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn no_policy_no_agent_no_keychain_still_writes_the_archive() {
    let s = Scratch::new("nothing");
    let out = s.0.join("out.zip");
    let o = s.diagnose(&s.0.join("missing-policy.json"), &out);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let line = stdout(&o);
    assert_eq!(line.lines().count(), 1, "one summary line: {line}");
    assert!(
        line.starts_with(&format!("Diagnostics written to {}", out.display())),
        "{line}"
    );
    for problem in [
        "policy:",
        "agent: no agent is running",
        "keychain: absent",
        "logs:",
    ] {
        assert!(line.contains(problem), "{problem} missing from {line}");
    }
    let files = unzip(&out);
    assert!(file(&files, "summary.txt").contains("policy       PROBLEM"));
    assert!(file(&files, "policy-errors.txt").contains("missing-policy.json"));
    let status: Value = serde_json::from_str(file(&files, "status.json")).expect("json");
    assert_eq!(status["agent"], "not running", "{status}");
    let keychain: Value = serde_json::from_str(file(&files, "keychain.json")).expect("json");
    assert_eq!(keychain["keychain"], "absent", "{keychain}");
    let versions: Value = serde_json::from_str(file(&files, "versions.json")).expect("json");
    assert_eq!(versions["lanyard"], env!("CARGO_PKG_VERSION"));
    assert!(versions["agent"].is_null());
}

#[test]
fn a_dead_network_is_recorded_per_server_and_the_log_tail_is_500_lines() {
    let s = Scratch::new("dead");
    let (policy, _) = s.dead_network_policy(|_| serde_json::json!({}));
    // An agent started by `lanyard login` logs next to its socket.
    let log_dir = s.0.join("run/lanyard");
    std::fs::create_dir_all(&log_dir).expect("log dir");
    let lines: Vec<String> = (1..=600).map(|n| format!("log line {n}")).collect();
    std::fs::write(log_dir.join("agent.log"), lines.join("\n") + "\n").expect("log");

    let (o, files) = s.diagnose_ok(&policy);
    assert!(
        stdout(&o).contains("discovery: failed for identity provider, docs"),
        "{}",
        stdout(&o)
    );
    let discovery: Value = serde_json::from_str(file(&files, "discovery.json")).expect("json");
    let docs = &discovery["servers"][0];
    assert!(
        docs["discovery"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("127.0.0.1")),
        "{docs}"
    );
    assert!(
        discovery["idp"]["metadata"]["error"].is_string(),
        "{discovery}"
    );
    assert!(file(&files, "clock-skew.txt").contains("identity provider: unknown"));
    assert!(file(&files, "policy-origins.txt").contains("servers[0]"));
    let tail = file(&files, "logs/agent-1.log");
    assert_eq!(tail.lines().count(), 500);
    assert_eq!(tail.lines().next(), Some("log line 101"));
    assert_eq!(tail.lines().last(), Some("log line 600"));
}

#[test]
fn only_an_unwritable_file_fails_and_leaves_nothing_behind() {
    let s = Scratch::new("unwritable");
    let out = s.0.join("no-such-dir/out.zip");
    let o = s.diagnose(&s.0.join("missing-policy.json"), &out);
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty());
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot write"));
    assert!(!out.exists());
    // A directory in the way: refused, and no partial file is left beside it.
    let dir = s.0.join("taken.zip");
    std::fs::create_dir_all(&dir).expect("dir");
    let o = s.diagnose(&s.0.join("missing-policy.json"), &dir);
    assert_eq!(o.status.code(), Some(1));
    let leftovers: Vec<_> = std::fs::read_dir(&s.0)
        .expect("scratch")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_proxy_password_in_the_policy_never_reaches_the_archive() {
    let s = Scratch::new("proxy-password");
    let (policy, port) = s.dead_network_policy(|port| {
        serde_json::json!({"proxy": format!("http://proxyuser:Pr0xy-Pa55@127.0.0.1:{port}")})
    });
    let (o, files) = s.diagnose_ok(&policy);
    for (name, text) in files
        .iter()
        .chain([("stdout".to_owned(), stdout(&o))].iter())
        .chain(
            [(
                "stderr".to_owned(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            )]
            .iter(),
        )
    {
        for secret in ["Pr0xy-Pa55", "proxyuser"] {
            assert!(!text.contains(secret), "{secret} is in {name}: {text}");
        }
    }
    let shown: Value = serde_json::from_str(file(&files, "policy.json")).expect("json");
    assert_eq!(
        shown["settings"]["proxy"],
        format!("http://[redacted]@127.0.0.1:{port}"),
        "the proxy is still named, without its credentials"
    );
}
