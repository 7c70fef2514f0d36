//! `lanyard diagnose --output FILE`: one .zip a helpdesk opens with the OS's own tools, holding
//! what they need to see why sign-in or a server fails: versions and OS, the effective policy with
//! origins (`policy show --origins`' code), the agent's status (over the broker), discovery per
//! server fetched fresh, the clock skew against each server's HTTP `Date`, the keychain's state
//! (reachable or not, entries present or not) and the agent's last log lines.
//!
//! It never asks the agent for a token and never reads a keychain value. Every file goes through
//! [`lanyard_core::redact::redact`] on its way into the archive (one choke point: [`write_archive`]).
//! Each part that cannot be collected (no policy, no agent, no network, a locked keychain) is
//! recorded as a problem in its file and in `summary.txt`; only an unwritable FILE fails the
//! command.

mod keys;

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lanyard_core::engine::credentials::{http_config_for, keychain_key_for_secret};
use lanyard_core::engine::refresh_token_key;
use lanyard_core::ipc::{self, BlockingClient, ClientError, Request, Response};
use lanyard_core::oauth::discovery::{
    authorization_server_metadata_urls, discover_server, protected_resource_metadata_urls,
};
use lanyard_core::oauth::{HttpConfig, HttpExecutor, HttpRequest};
use lanyard_core::policy::sources::platform::PolicySources;
use lanyard_core::policy::{ClientAuthPolicy, Policy, PolicySnapshot, SecretSource};
use lanyard_core::redact::redact;
use lanyard_core::store::{KeyringStore, StoreError};
use serde_json::{json, Value};
use url::Url;

use crate::exit;

/// How many of the agent log's last lines go into the archive (per log source).
pub const LOG_LINES: usize = 500;
/// The tail of a log file read to find those lines (a log line is rarely over 4 KB).
const LOG_TAIL_BYTES: u64 = 2 * 1024 * 1024;
/// Skews above this are flagged (ID tokens and ID-JAGs are checked with about a minute of leeway).
const SKEW_WARN_SECS: i64 = 60;

/// One file of the archive, before redaction.
struct Part {
    name: String,
    text: String,
}

/// What was collected: the files, and one summary line per section.
#[derive(Default)]
struct Report {
    parts: Vec<Part>,
    lines: Vec<String>,
    problems: Vec<String>,
}

impl Report {
    fn file(&mut self, name: impl Into<String>, text: impl Into<String>) {
        self.parts.push(Part {
            name: name.into(),
            text: text.into(),
        });
    }

    fn json(&mut self, name: &str, value: &Value) {
        let text = serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{e}"));
        self.file(name, text + "\n");
    }

    fn ok(&mut self, section: &str, line: impl std::fmt::Display) {
        self.lines.push(format!("{section:<12} {line}"));
    }

    fn problem(&mut self, section: &str, line: impl std::fmt::Display) {
        let line = line.to_string();
        self.lines.push(format!("{section:<12} PROBLEM: {line}"));
        self.problems.push(format!("{section}: {line}"));
    }
}

/// `lanyard diagnose --output FILE`.
pub fn run(output: &Path, sources: &PolicySources, no_keychain: bool) -> u8 {
    let report = collect(sources, no_keychain);
    match write_archive(output, &report) {
        Ok(files) => {
            if report.problems.is_empty() {
                println!(
                    "Diagnostics written to {} ({files} files); no problems found.",
                    output.display()
                );
            } else {
                println!(
                    "Diagnostics written to {} ({files} files); {} problem{}: {}",
                    output.display(),
                    report.problems.len(),
                    if report.problems.len() == 1 { "" } else { "s" },
                    report.problems.join("; ")
                );
            }
            0
        }
        Err(e) => {
            eprintln!("lanyard: cannot write {}: {e}", output.display());
            exit::FAILURE
        }
    }
}

fn collect(sources: &PolicySources, no_keychain: bool) -> Report {
    let mut report = Report::default();
    let snapshot = policy(&mut report, sources);
    let policy = snapshot.as_ref().map(|s| &s.policy);
    let endpoint = ipc::default_endpoint();
    let agent = agent_status(&mut report, endpoint.as_deref().ok());
    versions(&mut report, agent.as_ref());
    keychain(&mut report, policy, no_keychain);
    if let Some(policy) = policy {
        keys::client_keys(&mut report, policy, no_keychain);
    }
    match policy {
        Some(policy) => network(&mut report, policy),
        None => report.problem("discovery", "skipped: no usable policy names any server"),
    }
    logs(&mut report, endpoint.as_deref().ok());
    let mut summary = format!(
        "Lanyard diagnostics, collected {} by lanyard {} on {}/{}.\n\
         Every file in this archive passed through Lanyard's redaction (tokens, codes, keys, \
         cookies and secrets are replaced by [redacted]).\n\n",
        timestamp(SystemTime::now()),
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH
    );
    for line in &report.lines {
        summary.push_str(line);
        summary.push('\n');
    }
    report.parts.insert(
        0,
        Part {
            name: "summary.txt".into(),
            text: summary,
        },
    );
    report
}

fn timestamp(at: SystemTime) -> String {
    let secs = at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    chrono::DateTime::from_timestamp(i64::try_from(secs).unwrap_or(0), 0)
        .map(|t| t.to_rfc3339())
        .unwrap_or_else(|| format!("{secs} (unix)"))
}

fn policy(report: &mut Report, sources: &PolicySources) -> Option<PolicySnapshot> {
    let mut locations = String::from("# read from (later parts win):\n");
    for line in sources.locations() {
        locations.push_str(&format!("#   {line}\n"));
    }
    match sources.load() {
        Ok(snapshot) => {
            report.json(
                "policy.json",
                &serde_json::to_value(&snapshot.policy).unwrap_or(Value::Null),
            );
            let mut origins = locations;
            for line in crate::policy_cmd::origin_lines(&snapshot) {
                origins.push_str(&line);
                origins.push('\n');
            }
            report.file("policy-origins.txt", origins);
            for e in &snapshot.refused {
                report.problem("policy", format!("a part was ignored: {e}"));
            }
            report.ok(
                "policy",
                format!(
                    "usable: {} server{}, identity provider {}",
                    snapshot.policy.servers.len(),
                    if snapshot.policy.servers.len() == 1 {
                        ""
                    } else {
                        "s"
                    },
                    snapshot
                        .policy
                        .idp
                        .as_ref()
                        .map_or("not set", |i| i.issuer.as_str())
                ),
            );
            Some(snapshot)
        }
        Err(errors) => {
            let mut text = locations;
            text.push_str("# the policy is not usable:\n");
            for e in &errors {
                text.push_str(&format!("{e}\n"));
            }
            report.file("policy-errors.txt", text);
            report.problem(
                "policy",
                format!(
                    "not usable ({} problem{}; see policy-errors.txt)",
                    errors.len(),
                    if errors.len() == 1 { "" } else { "s" }
                ),
            );
            None
        }
    }
}

fn agent_status(report: &mut Report, endpoint: Option<&Path>) -> Option<ipc::AgentInfo> {
    let Some(endpoint) = endpoint else {
        report.json(
            "status.json",
            &json!({"agent": "unknown", "error": "this user's agent endpoint cannot be named"}),
        );
        report.problem(
            "agent",
            "its endpoint cannot be named (HOME / XDG_RUNTIME_DIR?)",
        );
        return None;
    };
    let shown = endpoint.display().to_string();
    let connected = BlockingClient::connect(endpoint).and_then(|mut client| {
        let info = client.agent().clone();
        match client.call(&Request::Status, Duration::from_secs(10))? {
            Response::Status { status } => Ok((info, status)),
            other => Err(ClientError::Protocol(format!(
                "a status request got {other:?}"
            ))),
        }
    });
    match connected {
        Ok((info, status)) => {
            report.json(
                "status.json",
                &json!({
                    "agent": {"version": info.version, "protocol": info.protocol, "pid": info.pid, "endpoint": shown},
                    "status": status,
                }),
            );
            report.ok(
                "agent",
                format!("running (pid {}, version {})", info.pid, info.version),
            );
            // "jwt-bearer" never precedes a word here: the redaction takes "bearer <word>" for
            // a credential.
            for server in &status.servers {
                let u = &server.usage;
                report.ok(
                    "usage",
                    format!(
                        "{}: last {} days {} ID-JAGs, {} access tokens by jwt-bearer, {} client requests",
                        server.id, u.window_days, u.id_jags, u.jwt_bearer_grants, u.client_requests
                    ),
                );
            }
            Some(info)
        }
        Err(e) => {
            let (state, line) = match &e {
                ClientError::NotRunning { .. } => (
                    "not running",
                    "no agent is running (start it with `lanyard login` or `lanyard agent`)"
                        .to_owned(),
                ),
                _ => ("unreachable", format!("the agent did not answer: {e}")),
            };
            report.json(
                "status.json",
                &json!({"agent": state, "endpoint": shown, "error": e.to_string()}),
            );
            report.problem("agent", line);
            None
        }
    }
}

fn versions(report: &mut Report, agent: Option<&ipc::AgentInfo>) {
    let os_release = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_owned())
        });
    report.json(
        "versions.json",
        &json!({
            "lanyard": env!("CARGO_PKG_VERSION"),
            "broker_protocol": ipc::PROTOCOL_VERSION,
            "agent": agent.map(|a| json!({"version": a.version, "protocol": a.protocol, "pid": a.pid})),
            "os": std::env::consts::OS,
            "os_family": std::env::consts::FAMILY,
            "arch": std::env::consts::ARCH,
            "os_release": os_release,
            "collected_at": timestamp(SystemTime::now()),
        }),
    );
}

/// The keychain entries the policy implies: the IdP session and every client secret it refers to.
fn keychain_entries(policy: &Policy) -> Vec<(String, String)> {
    let mut entries = Vec::new();
    let mut secret_ref = |what: String, auth: &ClientAuthPolicy| {
        if let ClientAuthPolicy::ClientSecretBasic {
            secret: SecretSource::Keychain(name),
        }
        | ClientAuthPolicy::ClientSecretPost {
            secret: SecretSource::Keychain(name),
        } = auth
        {
            entries.push((what, keychain_key_for_secret(name)));
        }
    };
    if let Some(idp) = &policy.idp {
        secret_ref("IdP client secret".into(), &idp.client_auth);
    }
    for server in &policy.servers {
        secret_ref(
            format!("client secret of {}", server.id),
            &server.client_auth,
        );
    }
    if let Some(idp) = &policy.idp {
        entries.insert(
            0,
            (
                "IdP session (refresh token)".into(),
                refresh_token_key(&idp.issuer, &idp.client_id),
            ),
        );
    }
    entries
}

fn keychain(report: &mut Report, policy: Option<&Policy>, no_keychain: bool) {
    if no_keychain {
        report.json(
            "keychain.json",
            &json!({"keychain": "not used", "why": "--no-keychain / LANYARD_NO_KEYCHAIN: the agent keeps the session in memory"}),
        );
        report.ok("keychain", "not used (--no-keychain)");
        return;
    }
    let store = KeyringStore::new("lanyard");
    let mut entries = policy.map(keychain_entries).unwrap_or_default();
    if entries.is_empty() {
        // Nothing to look for: still learn whether the keychain answers.
        entries.push(("reachability probe".into(), "lanyard-diagnose-probe".into()));
    }
    let mut state = "reachable";
    let mut detail = None;
    let mut shown = Vec::new();
    for (what, key) in &entries {
        match store.contains(key) {
            // The entry's name holds the issuer after `refresh-token:`, which redaction would
            // blank; the label says which entry it is.
            Ok(present) => shown.push(json!({"entry": what, "present": present})),
            Err(e) => {
                state = match e {
                    StoreError::Locked(_) => "locked",
                    StoreError::Unavailable(_) => "absent",
                    StoreError::Failed(_) => "failed",
                };
                detail = Some(e.to_string());
                break;
            }
        }
    }
    report.json(
        "keychain.json",
        &json!({"keychain": state, "service": "lanyard", "error": detail, "entries": shown}),
    );
    match detail {
        None => {
            let present = shown.iter().filter(|e| e["present"] == true).count();
            report.ok(
                "keychain",
                format!("reachable; {present} of {} entries present", shown.len()),
            );
        }
        Some(e) => report.problem("keychain", format!("{state}: {e}")),
    }
}

/// Discovery per server and the clock skew per host, over the policy's proxy and CAs.
fn network(report: &mut Report, policy: &Policy) {
    let base = HttpConfig {
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(10),
        ..HttpConfig::default()
    };
    let http = match http_config_for(&policy.settings, base)
        .and_then(|config| HttpExecutor::new(&config).map_err(|e| e.to_string()))
    {
        Ok(http) => http,
        Err(e) => {
            report.json("discovery.json", &json!({"error": e}));
            report.problem("discovery", format!("no HTTP client: {e}"));
            return;
        }
    };
    let runtime = match crate::two_worker_runtime() {
        Ok(runtime) => runtime,
        Err(e) => {
            report.problem("discovery", format!("cannot start: {e}"));
            return;
        }
    };
    let (idp, servers) = runtime.block_on(async {
        let idp = match &policy.idp {
            Some(idp) => Some(idp_metadata(&http, &idp.issuer).await),
            None => None,
        };
        let mut tasks = tokio::task::JoinSet::new();
        for (index, server) in policy.servers.iter().enumerate() {
            let http = http.clone();
            let server = server.clone();
            tasks.spawn(async move { (index, server_discovery(&http, &server).await) });
        }
        let mut servers = Vec::new();
        while let Some(done) = tasks.join_next().await {
            if let Ok(done) = done {
                servers.push(done);
            }
        }
        servers.sort_by_key(|(index, _)| *index);
        (idp, servers)
    });
    runtime.shutdown_timeout(Duration::from_secs(1));

    let mut clock = Vec::new();
    let mut failed = Vec::new();
    if let Some(idp) = &idp {
        clock.push(json!({"host": "identity provider", "skew": idp["metadata"]["clock"].clone()}));
        if idp["metadata"].get("error").is_some() {
            failed.push("identity provider".to_owned());
        }
    }
    for (_, server) in &servers {
        let id = server["id"].as_str().unwrap_or_default().to_owned();
        clock.push(json!({
            "host": format!("authorization server of {id}"),
            "skew": server["authorization_server_metadata"]["clock"].clone(),
        }));
        if server["discovery"].get("error").is_some() {
            failed.push(id);
        }
    }
    let servers: Vec<Value> = servers.into_iter().map(|(_, v)| v).collect();
    report.json("discovery.json", &json!({"idp": idp, "servers": servers}));
    if failed.is_empty() {
        report.ok("discovery", format!("{} servers discovered", servers.len()));
    } else {
        report.problem(
            "discovery",
            format!("failed for {} (see discovery.json)", failed.join(", ")),
        );
    }
    clock_report(report, &clock);
}

fn clock_report(report: &mut Report, clock: &[Value]) {
    let mut text = String::from(
        "# This machine's clock against each server's HTTP Date header (1 s resolution).\n\
         # Positive: the server is ahead. Over a minute breaks ID token and ID-JAG checks.\n",
    );
    let mut worst: Option<(i64, String)> = None;
    for entry in clock {
        let host = entry["host"].as_str().unwrap_or_default();
        match entry["skew"]["seconds"].as_i64() {
            Some(seconds) => {
                text.push_str(&format!(
                    "{host}: {seconds:+} s (Date: {})\n",
                    entry["skew"]["date"].as_str().unwrap_or_default()
                ));
                if worst.as_ref().is_none_or(|(w, _)| seconds.abs() > w.abs()) {
                    worst = Some((seconds, host.to_owned()));
                }
            }
            None => text.push_str(&format!(
                "{host}: unknown ({})\n",
                entry["skew"]["error"]
                    .as_str()
                    .unwrap_or("no answer with a Date header")
            )),
        }
    }
    report.file("clock-skew.txt", text);
    match worst {
        Some((seconds, host)) if seconds.abs() > SKEW_WARN_SECS => report.problem(
            "clock",
            format!("{host} is {seconds:+} s off this machine's clock"),
        ),
        Some((seconds, host)) => report.ok("clock", format!("largest skew {seconds:+} s ({host})")),
        None => report.problem("clock", "no server answered with a Date header"),
    }
}

/// GETs the first of `urls` that answers 2xx: its URL, JSON document and clock skew.
async fn fetch_document(http: &HttpExecutor, urls: Vec<Url>) -> Value {
    let mut tried = Vec::new();
    for url in urls {
        let sent = SystemTime::now();
        let started = Instant::now();
        let response = match http.execute(&HttpRequest::get(url.clone())).await {
            Ok(response) => response,
            Err(e) => {
                tried.push(format!("{url}: {e}"));
                return json!({"error": e.to_string(), "tried": tried, "clock": {"error": e.to_string()}});
            }
        };
        // The server stamped its Date somewhere during the round trip: compare with the middle.
        let middle = sent + started.elapsed() / 2;
        let clock = response
            .header_values("date")
            .next()
            .map(|date| skew(date, middle))
            .unwrap_or_else(|| json!({"error": "no Date header"}));
        if !(200..300).contains(&response.status) {
            tried.push(format!("{url}: HTTP {}", response.status));
            continue;
        }
        let document = serde_json::from_slice::<Value>(&response.body).unwrap_or_else(|e| {
            json!({"unparsable": e.to_string(), "body": String::from_utf8_lossy(&response.body)})
        });
        return json!({"url": url.as_str(), "document": document, "clock": clock, "tried": tried});
    }
    json!({"error": "no well-known location answered", "tried": tried, "clock": {"error": "no answer"}})
}

fn skew(date: &str, local: SystemTime) -> Value {
    let Ok(server) = chrono::DateTime::parse_from_rfc2822(date) else {
        return json!({"error": format!("unreadable Date header {date:?}")});
    };
    let local = local
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    #[allow(clippy::cast_precision_loss)] // seconds since 1970 fit an f64 exactly
    let seconds = (server.timestamp() as f64 - local).round() as i64;
    json!({"date": date, "seconds": seconds})
}

async fn idp_metadata(http: &HttpExecutor, issuer: &str) -> Value {
    let metadata = match Url::parse(&format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )) {
        Ok(url) => fetch_document(http, vec![url]).await,
        Err(e) => json!({"error": format!("the issuer is not a URL: {e}")}),
    };
    json!({"issuer": issuer, "metadata": metadata})
}

async fn server_discovery(
    http: &HttpExecutor,
    server: &lanyard_core::policy::ServerPolicy,
) -> Value {
    let url = match Url::parse(&server.url) {
        Ok(url) => url,
        Err(e) => {
            return json!({"id": server.id, "url": server.url, "discovery": {"error": format!("not a URL: {e}")}});
        }
    };
    let (discovery, discovered_issuer) = match discover_server(http, &url).await {
        Ok(found) => (
            json!({
                "resource": found.resource,
                "authorization_server": found.authorization_server.issuer,
                "challenge_scopes": found.challenge_scopes,
                "advertises_id_jag": found.authorization_server.advertises_id_jag(),
            }),
            Some(found.authorization_server.issuer),
        ),
        Err(e) => (json!({"error": e.to_string()}), None),
    };
    let prm = fetch_document(http, protected_resource_metadata_urls(&url)).await;
    let issuer = server
        .authorization_server
        .clone()
        .or(discovered_issuer)
        .or_else(|| {
            prm["document"]["authorization_servers"][0]
                .as_str()
                .map(str::to_owned)
        });
    let as_metadata = match issuer.as_deref().map(Url::parse) {
        Some(Ok(issuer)) => fetch_document(http, authorization_server_metadata_urls(&issuer)).await,
        Some(Err(e)) => json!({"error": format!("the issuer is not a URL: {e}")}),
        None => json!({"error": "no authorization server is known (policy or discovery)"}),
    };
    json!({
        "id": server.id,
        "url": server.url,
        "mode": server.mode,
        "discovery": discovery,
        "protected_resource_metadata": prm,
        "authorization_server": issuer,
        "authorization_server_metadata": as_metadata,
    })
}

/// The agent's log files on this OS, most likely first.
fn log_files(endpoint: Option<&Path>) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if cfg!(windows) {
        // `login` and the tray start the agent with its output in %LOCALAPPDATA%\Lanyard.
        if let Some(base) = std::env::var_os("LOCALAPPDATA") {
            files.push(PathBuf::from(base).join("Lanyard").join("agent.log"));
        }
        return files;
    }
    if cfg!(target_os = "macos") {
        // The LaunchAgent's stderr.
        if let Some(home) = std::env::var_os("HOME") {
            files.push(PathBuf::from(home).join("Library/Logs/Lanyard/agent.log"));
        }
    }
    // An agent started by `lanyard login` or the tray logs next to its socket.
    if let Some(dir) = endpoint.and_then(Path::parent) {
        files.push(dir.join("agent.log"));
    }
    files
}

/// The last `LOG_LINES` lines of `path`.
fn tail(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let start = len.saturating_sub(LOG_TAIL_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.take(LOG_TAIL_BYTES).read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    // A cut first line is dropped when the file was read from the middle.
    let skip = usize::from(start > 0);
    let from = lines
        .len()
        .saturating_sub(LOG_LINES)
        .max(skip.min(lines.len()));
    Ok(lines[from..].join("\n") + "\n")
}

/// The systemd user unit's journal (Linux: the packaged agent logs to stderr, i.e. the journal).
fn journal() -> Option<Result<String, String>> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let lines = LOG_LINES.to_string();
    let output = std::process::Command::new("journalctl")
        .args([
            "--user",
            "--unit",
            "lanyard-agent.service",
            "--lines",
            &lines,
            "--no-pager",
            "--output",
            "short-iso",
        ])
        .stdin(std::process::Stdio::null())
        .output();
    Some(match output {
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).into_owned()),
        Ok(o) => Err(format!(
            "journalctl exited {}: {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("journalctl: {e}")),
    })
}

fn logs(report: &mut Report, endpoint: Option<&Path>) {
    let mut found = Vec::new();
    let mut index = String::from("# Where the agent's log was looked for, and what was found.\n");
    for (n, path) in log_files(endpoint).into_iter().enumerate() {
        match tail(&path) {
            Ok(text) => {
                let name = format!("logs/agent-{}.log", n + 1);
                index.push_str(&format!(
                    "{name}: last {} lines of {}\n",
                    text.lines().count(),
                    path.display()
                ));
                report.file(name, text);
                found.push(path.display().to_string());
            }
            Err(e) => index.push_str(&format!("{}: {e}\n", path.display())),
        }
    }
    match journal() {
        Some(Ok(text)) if text.lines().any(|l| !l.starts_with("-- ")) => {
            index.push_str(&format!(
                "logs/journal.log: last {} lines of the user unit lanyard-agent.service\n",
                text.lines().count()
            ));
            report.file("logs/journal.log", text);
            found.push("the journal (lanyard-agent.service)".into());
        }
        Some(Ok(_)) => index.push_str("journal (lanyard-agent.service): no entries\n"),
        Some(Err(e)) => index.push_str(&format!("journal (lanyard-agent.service): {e}\n")),
        None => {}
    }
    report.file("logs/where.txt", index);
    if found.is_empty() {
        report.problem("logs", "no agent log found (see logs/where.txt)");
    } else {
        report.ok("logs", format!("from {}", found.join(", ")));
    }
}

/// `at` as a zip timestamp (UTC; zip has no time zone).
fn zip_time(at: SystemTime) -> Option<zip::DateTime> {
    use chrono::{Datelike, Timelike};
    let secs = at.duration_since(UNIX_EPOCH).ok()?.as_secs();
    let t = chrono::DateTime::from_timestamp(i64::try_from(secs).ok()?, 0)?;
    zip::DateTime::from_date_and_time(
        u16::try_from(t.year()).ok()?,
        u8::try_from(t.month()).ok()?,
        u8::try_from(t.day()).ok()?,
        u8::try_from(t.hour()).ok()?,
        u8::try_from(t.minute()).ok()?,
        u8::try_from(t.second()).ok()?,
    )
    .ok()
}

/// Writes the archive: each part redacted, stored uncompressed. Written beside `output` first and
/// renamed, so a failed run leaves no half archive. Returns the number of files.
fn write_archive(output: &Path, report: &Report) -> Result<usize, String> {
    let name = output
        .file_name()
        .ok_or_else(|| "not a file name".to_owned())?
        .to_string_lossy()
        .into_owned();
    let partial = output.with_file_name(format!(".{name}.partial"));
    let result = (|| {
        let file = std::fs::File::create(&partial).map_err(|e| e.to_string())?;
        let mut zip = zip::ZipWriter::new(file);
        let mut options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .unix_permissions(0o644);
        if let Some(now) = zip_time(SystemTime::now()) {
            options = options.last_modified_time(now);
        }
        for part in &report.parts {
            zip.start_file(part.name.as_str(), options)
                .map_err(|e| e.to_string())?;
            zip.write_all(redact(&part.text).as_bytes())
                .map_err(|e| e.to_string())?;
        }
        let file = zip.finish().map_err(|e| e.to_string())?;
        file.sync_all().map_err(|e| e.to_string())?;
        std::fs::rename(&partial, output).map_err(|e| e.to_string())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result.map(|()| report.parts.len())
}
