//! Runs the built `lanyard clients …` binary against a temporary home directory
//! (`LANYARD_CLIENTS_HOME`): real files, backups, dry runs, a malformed file and a symlinked one.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const POLICY: &str = r#"{
    "idp": {"issuer": "https://idp.example", "client_id": "lanyard"},
    "servers": [
        {"id": "docs", "display_name": "Docs", "url": "https://docs.example/mcp", "client_id": "c1"},
        {"id": "crm", "display_name": "CRM", "url": "https://crm.example/mcp", "client_id": "c2"}
    ]
}"#;

const CURSOR_BEFORE: &str = "{\n  \"mcpServers\": {\n    \"sqlite\": {\"command\": \"uvx\", \"args\": [\"mcp-server-sqlite\"]}\n  },\n  \"other\": true\n}\n";

/// A fresh directory under the system temp dir, removed when dropped.
struct TempHome(PathBuf);

impl TempHome {
    fn new(name: &str) -> TempHome {
        let dir =
            std::env::temp_dir().join(format!("lanyard-clients-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("policy.json"), POLICY).expect("policy");
        TempHome(dir)
    }

    fn lanyard(&self, args: &[&str]) -> Output {
        let output = Command::new(env!("CARGO_BIN_EXE_lanyard"))
            .args(args)
            .env("LANYARD_CLIENTS_HOME", &self.0)
            .env("LANYARD_POLICY", self.0.join("policy.json"))
            .env_remove("XDG_CONFIG_HOME")
            .output()
            .expect("lanyard runs");
        eprintln!(
            "$ lanyard {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    fn cursor(&self) -> PathBuf {
        self.0.join(".cursor").join("mcp.json")
    }

    fn desktop(&self) -> PathBuf {
        let dir = if cfg!(target_os = "macos") {
            self.0.join("Library").join("Application Support")
        } else if cfg!(windows) {
            self.0.join("AppData").join("Roaming")
        } else {
            self.0.join(".config")
        };
        dir.join("Claude").join("claude_desktop_config.json")
    }

    fn vscode(&self) -> PathBuf {
        self.desktop()
            .parent()
            .and_then(Path::parent)
            .expect("app config dir")
            .join("Code")
            .join("User")
            .join("mcp.json")
    }
}

impl Drop for TempHome {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The backups Lanyard left next to `path`.
fn backups(path: &Path) -> Vec<PathBuf> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .expect("file name")
        .to_string();
    let mut found: Vec<PathBuf> = std::fs::read_dir(path.parent().expect("parent"))
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{name}.lanyard-backup-")))
        })
        .collect();
    found.sort();
    found
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn install_all_then_again_then_dry_run_then_remove() {
    let home = TempHome::new("all");
    std::fs::create_dir_all(home.cursor().parent().expect("parent")).expect("cursor dir");
    std::fs::write(home.cursor(), CURSOR_BEFORE).expect("cursor config");
    let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_lanyard")).expect("exe path");
    let exe = exe.to_str().expect("utf-8 path");

    let first = home.lanyard(&["clients", "install", "all"]);
    assert!(first.status.success());
    // Every client got both servers; only the file that existed was backed up, once.
    let claude: serde_json::Value =
        serde_json::from_str(&read(&home.0.join(".claude.json"))).expect("claude json");
    assert_eq!(claude["mcpServers"]["lanyard-docs"]["type"], "http");
    assert_eq!(
        claude["mcpServers"]["lanyard-docs"]["url"],
        "https://docs.example/mcp"
    );
    assert_eq!(
        claude["mcpServers"]["lanyard-crm"]["headersHelper"],
        format!("{exe} token --header-json --no-oauth-fallback crm")
    );
    let desktop: serde_json::Value =
        serde_json::from_str(&read(&home.desktop())).expect("desktop json");
    assert_eq!(desktop["mcpServers"]["lanyard-docs"]["command"], exe);
    assert_eq!(
        desktop["mcpServers"]["lanyard-docs"]["args"],
        serde_json::json!(["proxy", "docs"])
    );
    let vscode = read(&home.vscode());
    assert!(
        vscode.contains("\"servers\": {\n    // Managed by Lanyard"),
        "{vscode}"
    );
    assert!(vscode.contains(&format!(
        "\"command\": {}",
        serde_json::to_string(exe).expect("quote")
    )));
    let cursor = read(&home.cursor());
    assert!(cursor.starts_with(
        "{\n  \"mcpServers\": {\n    \"sqlite\": {\"command\": \"uvx\", \"args\": [\"mcp-server-sqlite\"]},\n    \"lanyard-docs\": {"
    ));
    assert!(cursor.ends_with("  },\n  \"other\": true\n}\n"));
    let cursor_backups = backups(&home.cursor());
    assert_eq!(cursor_backups.len(), 1);
    assert_eq!(read(&cursor_backups[0]), CURSOR_BEFORE);
    assert!(
        backups(&home.desktop()).is_empty() && backups(&home.0.join(".claude.json")).is_empty()
    );
    for text in [
        read(&home.0.join(".claude.json")),
        read(&home.desktop()),
        vscode.clone(),
        cursor.clone(),
    ] {
        assert!(
            !text.contains("Bearer"),
            "no token, no header value in a client file: {text}"
        );
    }

    // Idempotent: same bytes, no new backup.
    let second = home.lanyard(&["clients", "install", "all"]);
    assert!(second.status.success());
    assert!(stdout(&second).contains("Cursor: nothing to change"));
    assert_eq!(read(&home.cursor()), cursor);
    assert_eq!(read(&home.vscode()), vscode);
    assert_eq!(backups(&home.cursor()).len(), 1);
    assert!(backups(&home.vscode()).is_empty());

    // A dry run prints the diff and writes nothing.
    let dry = home.lanyard(&["clients", "remove", "cursor", "--dry-run"]);
    assert!(dry.status.success());
    let diff = stdout(&dry);
    assert!(
        diff.contains(&format!("--- {}\n", home.cursor().display())),
        "{diff}"
    );
    assert!(diff.contains("-    \"lanyard-docs\": {\n"), "{diff}");
    // The separating comma goes with our entries, so the user's last line shows as changed.
    assert!(
        diff.contains(
            "-    \"sqlite\": {\"command\": \"uvx\", \"args\": [\"mcp-server-sqlite\"]},\n"
        ),
        "{diff}"
    );
    assert!(
        diff.contains(
            "+    \"sqlite\": {\"command\": \"uvx\", \"args\": [\"mcp-server-sqlite\"]}\n"
        ),
        "{diff}"
    );
    assert_eq!(read(&home.cursor()), cursor);
    assert_eq!(backups(&home.cursor()).len(), 1);

    // `list` names each client, its mode (helper or proxy), its file and our entries.
    let list = home.lanyard(&["clients", "list"]);
    assert!(list.status.success());
    let listed = stdout(&list);
    assert!(
        listed.contains(&format!(
            "cursor          proxy  {}",
            home.cursor().display()
        )),
        "{listed}"
    );
    assert!(
        listed.contains("installed: lanyard-docs, lanyard-crm"),
        "{listed}"
    );

    // Remove gives back the user's file exactly, with a second backup of what it replaced.
    let removed = home.lanyard(&["clients", "remove", "cursor"]);
    assert!(removed.status.success());
    assert_eq!(read(&home.cursor()), CURSOR_BEFORE);
    let cursor_backups = backups(&home.cursor());
    assert_eq!(cursor_backups.len(), 2);
    assert!(cursor_backups.iter().any(|b| read(b) == cursor));
    let listed = stdout(&home.lanyard(&["clients", "list"]));
    assert!(listed.contains("installed: no Lanyard entries"), "{listed}");
}

/// A server whose key file this machine cannot read is still wired (wiring needs no secret); the
/// install warns about it by name and succeeds.
#[test]
fn a_server_with_an_unreadable_key_file_is_wired_with_a_warning() {
    let home = TempHome::new("unreadable-key");
    let missing_key = home.0.join("keys").join("crm.pem");
    let policy = serde_json::json!({
        "idp": {"issuer": "https://idp.example", "client_id": "lanyard"},
        "servers": [
            {"id": "docs", "display_name": "Docs", "url": "https://docs.example/mcp", "client_id": "c1"},
            {"id": "crm", "display_name": "CRM", "url": "https://crm.example/mcp", "client_id": "c2",
             "authorization_server": "https://as.crm.example",
             "client_auth": {"method": "private_key_jwt", "key_file": missing_key, "alg": "ES256"}}
        ]
    });
    std::fs::write(home.0.join("policy.json"), policy.to_string()).expect("policy");
    let out = home.lanyard(&["clients", "install", "cursor"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let cursor = read(&home.cursor());
    for id in ["docs", "crm"] {
        assert!(
            cursor.contains(&format!("\"{id}\"")),
            "{id} not wired: {cursor}"
        );
    }
    let err = stderr(&out);
    assert!(
        err.contains("warning") && err.contains("servers[1].client_auth.key_file"),
        "the unreadable key file must be named: {err}"
    );
    assert!(err.contains(&missing_key.display().to_string()), "{err}");
    // Validation for deployment still refuses the policy on this machine.
    let validate = home.lanyard(&[
        "policy",
        "validate",
        &home.0.join("policy.json").display().to_string(),
    ]);
    assert_eq!(validate.status.code(), Some(3), "{}", stderr(&validate));
}

#[test]
fn a_malformed_file_is_reported_and_left_alone() {
    let home = TempHome::new("malformed");
    let broken = "{\n  \"mcpServers\": {\n    \"a\": {\"command\": \"x\"}\n    \"b\": {}\n  }\n}\n";
    std::fs::create_dir_all(home.desktop().parent().expect("parent")).expect("dir");
    std::fs::write(home.desktop(), broken).expect("write");
    for args in [
        &["clients", "install", "claude-desktop"][..],
        &["clients", "remove", "claude-desktop", "--dry-run"],
    ] {
        let output = home.lanyard(args);
        assert_eq!(output.status.code(), Some(1));
        let message = stderr(&output);
        assert!(
            message.contains("line 4, column 5: unexpected character '\"', expected ',' or '}'"),
            "{message}"
        );
        assert!(message.contains("left unchanged"), "{message}");
    }
    assert_eq!(read(&home.desktop()), broken);
    assert!(backups(&home.desktop()).is_empty());
    let list = home.lanyard(&["clients", "list"]);
    assert_eq!(list.status.code(), Some(1));
    assert!(stdout(&list).contains("unreadable: line 4, column 5"));
}

#[test]
fn unknown_clients_and_a_config_override() {
    let home = TempHome::new("override");
    let output = home.lanyard(&["clients", "install", "emacs"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("unknown client \"emacs\""));
    let custom = home.0.join("elsewhere").join("mcp.json");
    let output = home.lanyard(&[
        "clients",
        "install",
        "cursor",
        "--config",
        custom.to_str().expect("utf-8"),
    ]);
    assert!(output.status.success());
    assert!(read(&custom).contains("\"lanyard-crm\""));
    assert!(!home.cursor().exists());
}

#[cfg(unix)]
#[test]
fn a_symlinked_config_is_edited_where_it_points() {
    let home = TempHome::new("symlink");
    let real = home.0.join("dotfiles").join("cursor-mcp.json");
    std::fs::create_dir_all(real.parent().expect("parent")).expect("dir");
    std::fs::write(&real, CURSOR_BEFORE).expect("write");
    std::fs::create_dir_all(home.cursor().parent().expect("parent")).expect("dir");
    std::os::unix::fs::symlink(&real, home.cursor()).expect("symlink");
    assert!(home
        .lanyard(&["clients", "install", "cursor"])
        .status
        .success());
    assert!(std::fs::symlink_metadata(home.cursor())
        .expect("meta")
        .file_type()
        .is_symlink());
    assert!(read(&real).contains("\"lanyard-docs\""));
    assert_eq!(backups(&real).len(), 1);
}

/// `settings.ai_clients` decides what `clients install all` wires: here Cursor only, so neither
/// Claude Desktop's nor VS Code's file is created.
#[test]
fn install_all_wires_only_the_clients_the_policy_names() {
    let home = TempHome::new("ai-clients");
    let mut policy: serde_json::Value = serde_json::from_str(POLICY).expect("policy");
    policy["settings"]["ai_clients"] = serde_json::json!(["cursor"]);
    std::fs::write(home.0.join("policy.json"), policy.to_string()).expect("policy");
    let out = home.lanyard(&["clients", "install", "all"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(home.cursor().exists(), "Cursor is wired");
    assert!(!home.desktop().exists(), "Claude Desktop is not");
    assert!(!home.vscode().exists(), "VS Code is not");
}

/// Codex CLI: entries through `lanyard proxy` in `~/.codex/config.toml`; with
/// `settings.ai_clients_native` naming `codex` and `vscode`, each client's own enterprise-managed
/// configuration instead, `clients list` saying so, an `oauth` server skipped with its reason;
/// `remove` leaves the files as they were.
#[test]
fn codex_and_native_clients_from_the_policy() {
    let home = TempHome::new("codex-native");
    let codex = home.0.join(".codex").join("config.toml");
    let before = "# mine\nmodel = \"o3\"\n";
    std::fs::create_dir_all(codex.parent().expect("dir")).expect("dir");
    std::fs::write(&codex, before).expect("write");
    let out = home.lanyard(&["clients", "install", "codex"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = read(&codex);
    assert!(text.starts_with(before), "{text}");
    assert!(
        text.contains("[mcp_servers.lanyard-docs]\ncommand = "),
        "{text}"
    );
    assert!(text.contains("args = [\"proxy\", \"crm\"]"), "{text}");
    let listed = home.lanyard(&["clients", "list"]);
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(listed.contains("codex           proxy "), "{listed}");
    assert!(
        listed.contains("installed: lanyard-docs, lanyard-crm"),
        "{listed}"
    );

    let mut policy: serde_json::Value = serde_json::from_str(POLICY).expect("policy");
    policy["settings"]["ai_clients_native"] = serde_json::json!(["codex", "vscode"]);
    // An `oauth` server's connection is Lanyard's: a client's own sign-in cannot use it.
    policy["servers"].as_array_mut().expect("servers").push(
        serde_json::json!({"id": "tickets", "display_name": "Tickets",
            "url": "https://tickets.example/mcp", "mode": "oauth",
            "allow_dynamic_registration": true}),
    );
    std::fs::write(home.0.join("policy.json"), policy.to_string()).expect("policy");
    for client in ["codex", "vscode"] {
        let out = home.lanyard(&["clients", "install", client]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("skip lanyard-tickets: Lanyard holds its connection"),
            "{}",
            stderr(&out)
        );
    }
    let text = read(&codex);
    assert!(
        text.contains("auth = \"ema_auth\"") && !text.contains("proxy"),
        "{text}"
    );
    assert!(text.contains("[mcp_enterprise_managed_auth.idp]\nissuer = \"https://idp.example\"\nclient_id = \"lanyard\""), "{text}");
    let mcp = read(&home.vscode());
    assert!(mcp.contains("\"enterpriseManaged\": true"), "{mcp}");
    let settings = home.vscode().with_file_name("settings.json");
    assert!(read(&settings).contains("\"mcp.enterpriseManagedAuth.idp\""));
    let listed = home.lanyard(&["clients", "list"]);
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(listed.contains("codex           native "), "{listed}");
    assert!(listed.contains("vscode          native "), "{listed}");

    let exported = home.lanyard(&["clients", "export", "vscode-policy"]);
    assert!(exported.status.success(), "{}", stderr(&exported));
    assert!(String::from_utf8_lossy(&exported.stdout).contains("McpEnterpriseManagedAuthIdp"));
    let exported = home.lanyard(&[
        "clients",
        "export",
        "codex-managed",
        "--lanyard-path",
        "/usr/bin/lanyard",
    ]);
    assert!(String::from_utf8_lossy(&exported.stdout).contains("use_xaa = true"));

    for client in ["codex", "vscode"] {
        let out = home.lanyard(&["clients", "remove", client]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    assert_eq!(read(&codex), before);
    assert!(!read(&settings).contains("enterpriseManagedAuth"));
    assert!(!read(&home.vscode()).contains("lanyard-"));
}
