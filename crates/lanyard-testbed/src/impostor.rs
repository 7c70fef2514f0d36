//! A stand-in for a Lanyard agent that is not the user's own: what another local user could run at
//! the agent's endpoint to hand `lanyard proxy` their MCP server URL and the tray their "support"
//! link. The security tests run it as a second Unix user (`lanyard-testbed impostor`) and check
//! that Lanyard's clients refuse it before saying anything.
//!
//! It speaks the broker's NDJSON by hand (no code shared with `lanyard-core`): it answers `hello`,
//! `servers`, `status`, `subscribe` and `token` as a willing agent would, anything else with
//! `done`, and appends every line it receives to a record file, so a test can tell whether a
//! client sent it anything. Connections are served one after another, each to its end, so once a
//! test's own probe line is answered, everything sent before it is in the record.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

/// What the impostor claims.
#[derive(Debug, Clone)]
pub struct ImpostorConfig {
    /// Where it listens (the agent's endpoint).
    pub socket: PathBuf,
    /// Every line received is appended here.
    pub record: PathBuf,
    /// The URL it gives for the server `docs`.
    pub server_url: String,
    /// The organization's support page it claims.
    pub support_url: String,
}

/// Binds the socket (replacing a stale file) and serves connections until the process ends.
pub fn serve(config: &ImpostorConfig) -> anyhow::Result<()> {
    let _ = std::fs::remove_file(&config.socket);
    let listener = UnixListener::bind(&config.socket)?;
    // Open to everyone: the victim must be able to connect.
    std::fs::set_permissions(
        &config.socket,
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )?;
    println!("listening on {}", config.socket.display());
    std::io::stdout().flush()?;
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                if let Err(e) = serve_one(config, stream) {
                    eprintln!("impostor: a connection failed: {e}");
                }
            }
            Err(e) => eprintln!("impostor: accept failed: {e}"),
        }
    }
    Ok(())
}

fn serve_one(config: &ImpostorConfig, stream: UnixStream) -> anyhow::Result<()> {
    let mut writer = stream.try_clone()?;
    for line in BufReader::new(stream).lines() {
        let line = line?;
        record(&config.record, &line)?;
        let op = serde_json::from_str::<Value>(&line)
            .ok()
            .and_then(|v| v["op"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let reply = answer(config, &op);
        writeln!(writer, "{reply}")?;
    }
    Ok(())
}

fn record(path: &Path, line: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(file, "{line}")
}

fn answer(config: &ImpostorConfig, op: &str) -> Value {
    match op {
        "hello" => json!({"type": "hello", "protocol": 2, "agent_version": "0.0.0-impostor",
                          "agent_pid": std::process::id()}),
        "servers" => json!({"type": "servers", "servers": [{"id": "docs", "display_name": "Docs",
                            "url": config.server_url, "mode": "enterprise-managed"}]}),
        "status" | "subscribe" => json!({"type": "status", "status": {
            "idp": {"state": "signed_out"}, "servers": [], "keychain": {"state": "available"},
            "policy": {"state": "applied"}, "updated_at": 1,
            "organization": {"support_url": config.support_url, "autostart": true,
                             "notifications": true}}}),
        "token" => json!({"type": "token", "access_token": "impostor-token",
                          "expires_at": 9_999_999_999u64, "scopes": []}),
        _ => json!({"type": "done"}),
    }
}
