//! Golden-file and edge-case tests of the pure client-config plans.
//!
//! The golden files live in `crates/lanyard-cli/tests/golden/<client>/`. `before` is a realistic
//! user file with unrelated entries (and, for VS Code, comments and a trailing comma);
//! `after_install` and `after_remove` are asserted byte for byte. Set `LANYARD_BLESS=1` to rewrite
//! the `after_*` files after an intended change, then review them by eye before committing.

use std::path::{Path, PathBuf};

use super::jsonc::{self, Dialect, Node};
use super::*;

const EXE: &str = "/opt/lanyard/bin/lanyard";

fn servers() -> Vec<ServerSpec> {
    let mut crm = ServerSpec::new("crm", "https://crm.example.com/v1/mcp", "lanyard-crm");
    crm.scopes = vec!["crm.read".into(), "crm.write".into()];
    vec![
        ServerSpec::new("docs", "https://docs.example.com/mcp", "lanyard-docs"),
        crm,
    ]
}

fn install(client: Client, text: Option<&str>) -> Edit {
    let servers = servers();
    let action = Action::Install {
        servers: &servers,
        exe: Path::new(EXE),
        native: None,
    };
    plan(client, text, action, "config").expect("plannable")
}

fn remove(client: Client, text: &str) -> Edit {
    plan(client, Some(text), Action::Remove, "config").expect("plannable")
}

fn golden_dir(client: Client) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("golden")
        .join(client.name())
}

fn extension(client: Client) -> &'static str {
    match client {
        Client::VsCode => "jsonc",
        Client::Codex => "toml",
        _ => "json",
    }
}

fn read_golden(client: Client, name: &str) -> String {
    let path = golden_dir(client).join(format!("{name}.{}", extension(client)));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn assert_golden(client: Client, name: &str, actual: &str) {
    let path = golden_dir(client).join(format!("{name}.{}", extension(client)));
    if std::env::var_os("LANYARD_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        return;
    }
    let expected = read_golden(client, name);
    assert!(
        expected == actual,
        "{} differs:\n{}",
        path.display(),
        diff::unified("expected → actual", &expected, actual)
    );
}

/// The source text of every member of `object`, key through value.
fn member_texts<'a>(text: &'a str, object: &Node) -> Vec<(String, &'a str)> {
    object
        .members()
        .unwrap_or(&[])
        .iter()
        .map(|m| (m.key.clone(), &text[m.key_start..m.value.end]))
        .collect()
}

fn map_of(client: Client, text: &str) -> Node {
    let root = jsonc::parse(text, client.dialect()).expect("parses");
    root.get(client.map_key())
        .expect("has the server map")
        .clone()
}

fn golden_round_trip(client: Client) {
    let before = read_golden(client, "before");
    let installed = install(client, Some(&before));
    assert_eq!(
        installed.changes,
        vec![
            Change::Added("lanyard-docs".into()),
            Change::Added("lanyard-crm".into())
        ],
        "{client:?}"
    );
    assert_golden(client, "after_install", &installed.new_text);
    assert!(installed.diff.contains("+") && installed.diff.starts_with("--- config\n+++ config\n"));

    // Every unrelated top-level member and server entry survives byte for byte.
    let old_root = jsonc::parse(&before, client.dialect()).expect("before parses");
    let new_root = jsonc::parse(&installed.new_text, client.dialect()).expect("after parses");
    let new_top = member_texts(&installed.new_text, &new_root);
    for (key, text) in member_texts(&before, &old_root) {
        if key != client.map_key() {
            assert!(
                new_top.contains(&(key.clone(), text)),
                "{client:?}: top-level {key} changed"
            );
        }
    }
    let new_map = map_of(client, &installed.new_text);
    let new_entries = member_texts(&installed.new_text, &new_map);
    for entry in member_texts(&before, &map_of(client, &before)) {
        assert!(
            new_entries.contains(&entry),
            "{client:?}: entry {} changed",
            entry.0
        );
    }
    // Ours are the exact shape the client expects.
    for server in servers() {
        let entry = new_map
            .get(&format!("lanyard-{}", server.id))
            .expect("entry written");
        match client {
            Client::ClaudeCode => {
                assert_eq!(entry.get("type").and_then(Node::as_str), Some("http"));
                assert_eq!(
                    entry.get("url").and_then(Node::as_str),
                    Some(server.url.as_str())
                );
                let helper = format!(
                    "{EXE} token --header-json --no-oauth-fallback {}",
                    server.id
                );
                assert_eq!(
                    entry.get("headersHelper").and_then(Node::as_str),
                    Some(helper.as_str())
                );
            }
            _ => {
                assert_eq!(entry.get("command").and_then(Node::as_str), Some(EXE));
                let args: Vec<&str> = entry
                    .get("args")
                    .and_then(Node::as_array)
                    .expect("args")
                    .iter()
                    .filter_map(Node::as_str)
                    .collect();
                assert_eq!(args, ["proxy", server.id.as_str()]);
                let stdio_type = entry.get("type").and_then(Node::as_str);
                assert_eq!(stdio_type, (client == Client::VsCode).then_some("stdio"));
            }
        }
    }

    // Installing again changes nothing.
    let again = install(client, Some(&installed.new_text));
    assert_eq!(
        again.new_text, installed.new_text,
        "{client:?}: install is not idempotent"
    );
    assert!(again.changes.is_empty() && again.diff.is_empty());

    let removed = remove(client, &installed.new_text);
    assert_eq!(
        removed.changes,
        vec![
            Change::Removed("lanyard-docs".into()),
            Change::Removed("lanyard-crm".into())
        ]
    );
    assert_golden(client, "after_remove", &removed.new_text);
    assert_eq!(
        removed.new_text, before,
        "{client:?}: install then remove must give back the original bytes"
    );
    let again = remove(client, &removed.new_text);
    assert!(again.changes.is_empty() && again.new_text == removed.new_text);
}

#[test]
fn golden_claude_code() {
    golden_round_trip(Client::ClaudeCode);
}

#[test]
fn golden_claude_desktop() {
    golden_round_trip(Client::ClaudeDesktop);
}

#[test]
fn golden_gemini_cli() {
    golden_round_trip(Client::GeminiCli);
}

#[test]
fn golden_vscode() {
    golden_round_trip(Client::VsCode);
}

#[test]
fn golden_cursor() {
    golden_round_trip(Client::Cursor);
}

#[test]
fn a_missing_file_is_created_and_remove_leaves_it_missing() {
    let created = install(Client::Cursor, None);
    assert_eq!(
        created.new_text,
        r#"{
  "mcpServers": {
    "lanyard-docs": {
      "command": "/opt/lanyard/bin/lanyard",
      "args": ["proxy", "docs"]
    },
    "lanyard-crm": {
      "command": "/opt/lanyard/bin/lanyard",
      "args": ["proxy", "crm"]
    }
  }
}
"#
    );
    let vscode = install(Client::VsCode, Some(""));
    assert!(vscode.new_text.starts_with(
        "{\n  \"servers\": {\n    // Managed by Lanyard: `lanyard clients remove vscode` takes it out.\n    \"lanyard-docs\": {\n      \"type\": \"stdio\",\n"
    ));
    let nothing = plan(Client::Cursor, None, Action::Remove, "config").expect("plannable");
    assert_eq!(nothing.new_text, "");
    assert!(nothing.changes.is_empty());
}

#[test]
fn a_comments_only_vscode_file_keeps_its_comments() {
    let text = "// Add servers here.\n";
    let edit = install(Client::VsCode, Some(text));
    assert!(
        edit.new_text
            .starts_with("// Add servers here.\n{\n  \"servers\": {\n"),
        "{}",
        edit.new_text
    );
    assert!(jsonc::parse(&edit.new_text, Dialect::Jsonc).is_ok());
}

#[test]
fn a_file_without_the_server_map_gets_one_and_keeps_the_rest() {
    let text = "{\n\t\"theme\": \"dark\"\n}\n";
    let edit = install(Client::ClaudeCode, Some(text));
    assert!(edit.new_text.starts_with("{\n\t\"theme\": \"dark\",\n\t\"mcpServers\": {\n\t\t\"lanyard-docs\": {\n\t\t\t\"type\": \"http\",\n"), "{}", edit.new_text);
    let removed = remove(Client::ClaudeCode, &edit.new_text);
    assert_eq!(
        removed.new_text,
        "{\n\t\"theme\": \"dark\",\n\t\"mcpServers\": {}\n}\n"
    );
}

#[test]
fn an_empty_server_map_round_trips_to_an_empty_map() {
    let text = "{\n  \"mcpServers\": {},\n  \"x\": 1\n}\n";
    let edit = install(Client::ClaudeDesktop, Some(text));
    assert!(
        edit.new_text
            .contains("\"mcpServers\": {\n    \"lanyard-docs\": {\n      \"command\""),
        "{}",
        edit.new_text
    );
    assert_eq!(remove(Client::ClaudeDesktop, &edit.new_text).new_text, text);
}

#[test]
fn a_minified_file_stays_on_one_line() {
    let text = r#"{"mcpServers":{"a":{"command":"x"}},"z":[1,2]}"#;
    let edit = install(Client::Cursor, Some(text));
    assert_eq!(
        edit.new_text,
        r#"{"mcpServers":{"a":{"command":"x"}, "lanyard-docs": {"command": "/opt/lanyard/bin/lanyard", "args": ["proxy", "docs"]}, "lanyard-crm": {"command": "/opt/lanyard/bin/lanyard", "args": ["proxy", "crm"]}},"z":[1,2]}"#
    );
    assert_eq!(remove(Client::Cursor, &edit.new_text).new_text, text);
}

#[test]
fn crlf_line_breaks_are_kept() {
    let text = "{\r\n  \"mcpServers\": {\r\n    \"a\": {\"command\": \"x\"}\r\n  }\r\n}\r\n";
    let edit = install(Client::ClaudeDesktop, Some(text));
    assert!(
        !edit.new_text.replace("\r\n", "").contains('\n'),
        "a bare LF crept in: {:?}",
        edit.new_text
    );
    assert_eq!(remove(Client::ClaudeDesktop, &edit.new_text).new_text, text);
}

#[test]
fn outdated_entries_are_updated_and_dropped_servers_removed() {
    let text = r#"{
  "mcpServers": {
    "lanyard-docs": {
      "command": "/old/place/lanyard",
      "args": ["proxy", "docs"]
    },
    "mine": {"command": "mine"},
    "lanyard-retired": {
      "command": "/old/place/lanyard",
      "args": ["proxy", "retired"]
    }
  }
}
"#;
    let edit = install(Client::Cursor, Some(text));
    assert_eq!(
        edit.changes,
        vec![
            Change::Updated("lanyard-docs".into()),
            Change::Added("lanyard-crm".into()),
            Change::Removed("lanyard-retired".into())
        ]
    );
    assert_eq!(
        edit.new_text,
        r#"{
  "mcpServers": {
    "lanyard-docs": {
      "command": "/opt/lanyard/bin/lanyard",
      "args": ["proxy", "docs"]
    },
    "mine": {"command": "mine"},
    "lanyard-crm": {
      "command": "/opt/lanyard/bin/lanyard",
      "args": ["proxy", "crm"]
    }
  }
}
"#
    );
}

#[test]
fn a_users_own_entry_under_our_key_is_never_touched() {
    let text = "{\n  \"mcpServers\": {\n    \"lanyard-docs\": {\"command\": \"my-docs-server\", \"args\": [\"proxy\"]}\n  }\n}\n";
    let edit = install(Client::ClaudeDesktop, Some(text));
    assert!(edit
        .changes
        .contains(&Change::Conflict("lanyard-docs".into())));
    assert!(edit
        .new_text
        .contains("\"lanyard-docs\": {\"command\": \"my-docs-server\", \"args\": [\"proxy\"]}"));
    let removed = remove(Client::ClaudeDesktop, &edit.new_text);
    assert_eq!(removed.changes, vec![Change::Removed("lanyard-crm".into())]);
    assert_eq!(removed.new_text, text);
    assert_eq!(
        lanyard_entries(Client::ClaudeDesktop, &edit.new_text).expect("parses"),
        vec![LanyardEntry {
            key: "lanyard-crm".into(),
            server_id: "crm".into()
        }]
    );
}

#[test]
fn only_conflicts_leave_the_file_unchanged() {
    let text = "{\"mcpServers\": {\"lanyard-docs\": {\"command\": \"other\"}}}";
    let servers = vec![ServerSpec::new(
        "docs",
        "https://docs.example.com/mcp",
        "lanyard-docs",
    )];
    let edit = plan(
        Client::Cursor,
        Some(text),
        Action::Install {
            servers: &servers,
            exe: Path::new(EXE),
            native: None,
        },
        "c",
    )
    .expect("plannable");
    assert_eq!(edit.new_text, text);
    assert_eq!(edit.changes, vec![Change::Conflict("lanyard-docs".into())]);
}

#[test]
fn project_scoped_servers_in_claude_json_are_left_alone() {
    let before = read_golden(Client::ClaudeCode, "before");
    let installed = install(Client::ClaudeCode, Some(&before));
    let root = jsonc::parse(&installed.new_text, Dialect::Json).expect("parses");
    let project = root
        .get("projects")
        .and_then(|p| p.get("/home/me/src/app"))
        .expect("project kept");
    let project_map = project.get("mcpServers").expect("project map kept");
    assert_eq!(project_map.members().map(<[_]>::len), Some(1));
}

#[test]
fn malformed_files_are_reported_with_line_and_column() {
    let text = "{\n  \"mcpServers\": {\n    \"a\": {\"command\": \"x\",}\n  }\n}\n";
    let servers = servers();
    let err = plan(
        Client::ClaudeDesktop,
        Some(text),
        Action::Install {
            servers: &servers,
            exe: Path::new(EXE),
            native: None,
        },
        "c",
    )
    .expect_err("trailing comma is not JSON");
    assert_eq!(
        err.to_string(),
        "line 3, column 26: trailing comma before '}'"
    );
    let err = plan(Client::ClaudeCode, Some("// hi\n{}"), Action::Remove, "c")
        .expect_err("comments are not JSON");
    assert!(
        matches!(
            err,
            PlanError::Malformed(ParseError {
                line: 1,
                column: 1,
                ..
            })
        ),
        "{err}"
    );
    let err = plan(Client::Cursor, Some("[1, 2]"), Action::Remove, "c").expect_err("not an object");
    assert_eq!(
        err.to_string(),
        "line 1, column 1: the top level is not a JSON object"
    );
    let err = plan(
        Client::VsCode,
        Some("{\n  \"servers\": []\n}"),
        Action::Remove,
        "c",
    )
    .expect_err("not a map");
    assert_eq!(
        err.to_string(),
        "line 2, column 14: \"servers\" is not a JSON object"
    );
}

#[test]
fn a_lanyard_path_with_spaces_is_quoted_for_the_helper_shell() {
    let servers = servers();
    let exe = Path::new("/Users/me/Application Support/lanyard");
    let edit = plan(
        Client::ClaudeCode,
        None,
        Action::Install {
            servers: &servers,
            exe,
            native: None,
        },
        "c",
    )
    .expect("plannable");
    let map = map_of(Client::ClaudeCode, &edit.new_text);
    let helper = map
        .get("lanyard-docs")
        .and_then(|e| e.get("headersHelper"))
        .and_then(Node::as_str);
    let expected = if cfg!(windows) {
        "\"/Users/me/Application Support/lanyard\" token --header-json --no-oauth-fallback docs"
    } else {
        "'/Users/me/Application Support/lanyard' token --header-json --no-oauth-fallback docs"
    };
    assert_eq!(helper, Some(expected));
    assert_eq!(
        shell_quote("it's"),
        if cfg!(windows) {
            "\"it's\""
        } else {
            "'it'\\''s'"
        }
    );
}

#[test]
fn claude_code_reaches_a_server_bound_with_dpop_through_the_proxy() {
    let mut servers = servers();
    servers[0].needs_proxy = true;
    let edit = plan(
        Client::ClaudeCode,
        None,
        Action::Install {
            servers: &servers,
            exe: Path::new(EXE),
            native: None,
        },
        "c",
    )
    .expect("plannable");
    let map = map_of(Client::ClaudeCode, &edit.new_text);
    let docs = map.get("lanyard-docs").expect("docs entry");
    assert_eq!(docs.get("type").and_then(Node::as_str), Some("stdio"));
    assert_eq!(docs.get("command").and_then(Node::as_str), Some(EXE));
    assert!(docs.get("headersHelper").is_none());
    let crm = map.get("lanyard-crm").expect("crm entry");
    assert!(
        crm.get("headersHelper").is_some(),
        "the bearer server keeps its helper"
    );
    // Both shapes are recognised as Lanyard's: remove takes both out.
    let removed = remove(Client::ClaudeCode, &edit.new_text);
    let map = map_of(Client::ClaudeCode, &removed.new_text);
    assert!(map.get("lanyard-docs").is_none() && map.get("lanyard-crm").is_none());
}

#[test]
fn config_paths_follow_each_clients_convention() {
    let at = Locations::under_home(Path::new("/home/me"));
    assert_eq!(
        Client::ClaudeCode.config_path(&at),
        Path::new("/home/me/.claude.json")
    );
    assert_eq!(
        Client::Cursor.config_path(&at),
        Path::new("/home/me/.cursor/mcp.json")
    );
    if cfg!(target_os = "linux") {
        assert_eq!(
            Client::ClaudeDesktop.config_path(&at),
            Path::new("/home/me/.config/Claude/claude_desktop_config.json")
        );
        assert_eq!(
            Client::VsCode.config_path(&at),
            Path::new("/home/me/.config/Code/User/mcp.json")
        );
    }
    assert_eq!("vscode".parse::<Client>(), Ok(Client::VsCode));
    assert!("emacs".parse::<Client>().is_err());
}

#[test]
fn unusual_layouts_parse_after_install_and_round_trip_through_remove() {
    let layouts: &[(Client, &str)] = &[
        (Client::VsCode, "{\"servers\": {\n  \"a\": {} /* spans\n lines */\n}}"),
        (Client::VsCode, "{\n  \"servers\": {\n    // only a comment\n  }\n}\n"),
        (Client::VsCode, "{\n  \"servers\": {\n    \"a\": {}, // note\n    \"b\": {} // last\n  }\n}"),
        (Client::VsCode, "\u{feff}{\n  \"servers\": {\n    \"a\": {\n    }}\n}\n"),
        (Client::Cursor, "{\n  \"mcpServers\": {\"a\": {\"command\": \"x\"}},\n  \"b\": 1\n}\n"),
        (Client::Cursor, "{\"mcpServers\": {}}"),
        (Client::ClaudeCode, "{\n   \"mcpServers\":\n   {\n      \"a\": {\"type\": \"http\", \"url\": \"https://a\"}\n   }\n}"),
        (Client::ClaudeDesktop, "  {  \"mcpServers\" : {\n\"a\":{\"command\":\"x\"}\n}  }  \n"),
    ];
    for (client, before) in layouts {
        let installed = install(*client, Some(before));
        assert!(
            jsonc::parse(&installed.new_text, client.dialect()).is_ok(),
            "{client:?} produced unparsable text from {before:?}:\n{}",
            installed.new_text
        );
        assert_eq!(
            lanyard_entries(*client, &installed.new_text)
                .expect("parses")
                .len(),
            2,
            "{}",
            installed.new_text
        );
        assert_eq!(
            install(*client, Some(&installed.new_text)).new_text,
            installed.new_text
        );
        let removed = remove(*client, &installed.new_text);
        assert_eq!(
            &removed.new_text, before,
            "{client:?}: after install:\n{}",
            installed.new_text
        );
    }
}

// ---- Codex CLI (TOML) ------------------------------------------------------------------------

fn idp() -> NativeIdp {
    NativeIdp {
        issuer: "https://idp.example.com".into(),
        client_id: "lanyard-desktop".into(),
    }
}

fn install_native(client: Client, text: Option<&str>) -> Edit {
    let mut servers = servers();
    let mut machine = ServerSpec::new("ci", "https://ci.example.com/mcp", "ci-bot");
    machine.native_unfit = Some("it is for machines");
    servers.push(machine);
    let idp = idp();
    let action = Action::Install {
        servers: &servers,
        exe: Path::new(EXE),
        native: Some(&idp),
    };
    plan(client, text, action, "config").expect("plannable")
}

fn toml_doc(text: &str) -> toml_edit::DocumentMut {
    text.parse()
        .unwrap_or_else(|e| panic!("not TOML: {e}\n{text}"))
}

/// The lines of `before` all appear in `after`, in order (comments included).
fn keeps_every_line(before: &str, after: &str) {
    let mut rest = after.lines();
    for line in before.lines() {
        assert!(
            rest.any(|l| l == line),
            "line {line:?} of the original is gone:\n{after}"
        );
    }
}

#[test]
fn golden_codex() {
    let client = Client::Codex;
    let before = read_golden(client, "before");
    let installed = install(client, Some(&before));
    assert_eq!(
        installed.changes,
        vec![
            Change::Added("lanyard-docs".into()),
            Change::Added("lanyard-crm".into())
        ]
    );
    assert_golden(client, "after_install", &installed.new_text);
    keeps_every_line(&before, &installed.new_text);
    let doc = toml_doc(&installed.new_text);
    for server in servers() {
        let entry = &doc["mcp_servers"][format!("lanyard-{}", server.id).as_str()];
        assert_eq!(entry["command"].as_str(), Some(EXE));
        let args: Vec<&str> = entry["args"]
            .as_array()
            .expect("args")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert_eq!(args, ["proxy", server.id.as_str()]);
        let forwarded: Vec<&str> = entry["env_vars"]
            .as_array()
            .expect("env_vars")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert_eq!(forwarded, ["XDG_RUNTIME_DIR", "LANYARD_AGENT_SOCKET"]);
    }
    assert_eq!(
        lanyard_entries(client, &installed.new_text).expect("parses"),
        vec![
            LanyardEntry {
                key: "lanyard-docs".into(),
                server_id: "docs".into()
            },
            LanyardEntry {
                key: "lanyard-crm".into(),
                server_id: "crm".into()
            }
        ]
    );

    let again = install(client, Some(&installed.new_text));
    assert!(again.changes.is_empty() && again.new_text == installed.new_text);

    let removed = remove(client, &installed.new_text);
    assert_eq!(
        removed.changes,
        vec![
            Change::Removed("lanyard-docs".into()),
            Change::Removed("lanyard-crm".into())
        ]
    );
    assert_golden(client, "after_remove", &removed.new_text);
    assert_eq!(
        removed.new_text, before,
        "install then remove must give back the original bytes"
    );
}

#[test]
fn golden_codex_native() {
    let client = Client::Codex;
    let before = read_golden(client, "before");
    let native = install_native(client, Some(&before));
    assert_eq!(
        native.changes,
        vec![
            Change::Skipped("lanyard-ci".into(), "it is for machines"),
            Change::Added("lanyard-docs".into()),
            Change::Added("lanyard-crm".into()),
            Change::Updated("mcp_enterprise_managed_auth.idp".into()),
        ]
    );
    assert_golden(client, "after_native", &native.new_text);
    keeps_every_line(&before, &native.new_text);
    let doc = toml_doc(&native.new_text);
    assert_eq!(doc["features"]["use_xaa"].as_bool(), Some(true));
    let idp = &doc["mcp_enterprise_managed_auth"]["idp"];
    assert_eq!(idp["issuer"].as_str(), Some("https://idp.example.com"));
    assert_eq!(idp["client_id"].as_str(), Some("lanyard-desktop"));
    let crm = &doc["mcp_servers"]["lanyard-crm"];
    assert_eq!(crm["url"].as_str(), Some("https://crm.example.com/v1/mcp"));
    assert_eq!(crm["auth"].as_str(), Some("ema_auth"));
    assert_eq!(crm["oauth"]["client_id"].as_str(), Some("lanyard-crm"));
    assert_eq!(crm["scopes"].as_array().map(|a| a.len()), Some(2));
    assert!(doc["mcp_servers"].get("lanyard-ci").is_none());
    assert!(
        install_native(client, Some(&native.new_text)).changes
            == [Change::Skipped("lanyard-ci".into(), "it is for machines")]
    );

    // Back to entries through Lanyard: the native tables and settings go, the proxy ones come.
    let proxied = install(client, Some(&native.new_text));
    assert_eq!(
        proxied.changes,
        vec![
            Change::Updated("lanyard-docs".into()),
            Change::Updated("lanyard-crm".into()),
            Change::Removed("mcp_enterprise_managed_auth.idp".into()),
        ]
    );
    let doc = toml_doc(&proxied.new_text);
    assert!(doc.get("mcp_enterprise_managed_auth").is_none() && doc.get("features").is_none());
    assert_eq!(remove(client, &proxied.new_text).new_text, before);

    let removed = remove(client, &native.new_text);
    assert_eq!(
        removed.new_text, before,
        "remove takes out every native piece"
    );
}

#[test]
fn codex_keeps_a_users_own_idp_features_and_lanyard_named_table() {
    let text = "[features]\nweb_search = true\n\n[mcp_servers.lanyard-docs]\nurl = \"https://mine.example/mcp\"\n";
    let edit = install(Client::Codex, Some(text));
    assert!(edit
        .changes
        .contains(&Change::Conflict("lanyard-docs".into())));
    assert!(edit.new_text.contains("url = \"https://mine.example/mcp\""));
    let native = install_native(Client::Codex, Some(text));
    let doc = toml_doc(&native.new_text);
    assert_eq!(doc["features"]["web_search"].as_bool(), Some(true));
    assert_eq!(doc["features"]["use_xaa"].as_bool(), Some(true));
    // Removing takes out our flag from the user's [features] table, and the table stays.
    assert_eq!(remove(Client::Codex, &native.new_text).new_text, text);

    let theirs = "[mcp_enterprise_managed_auth.idp]\nissuer = \"https://other.example\"\nclient_id = \"x\"\n";
    let err = plan(
        Client::Codex,
        Some(theirs),
        Action::Install {
            servers: &servers(),
            exe: Path::new(EXE),
            native: Some(&idp()),
        },
        "c",
    )
    .expect_err("someone else's IdP");
    assert!(err.to_string().contains("set by someone else"), "{err}");
    assert_eq!(remove(Client::Codex, theirs).new_text, theirs);
}

#[test]
fn codex_files_missing_empty_or_malformed() {
    let created = install(Client::Codex, None);
    assert!(
        created
            .new_text
            .starts_with("\n# Managed by Lanyard: `lanyard clients remove codex` takes it out.\n[mcp_servers.lanyard-docs]\ncommand = \"/opt/lanyard/bin/lanyard\"\n"),
        "{}",
        created.new_text
    );
    assert_eq!(remove(Client::Codex, &created.new_text).new_text, "");
    let nothing = plan(Client::Codex, None, Action::Remove, "c").expect("plannable");
    assert!(nothing.changes.is_empty() && nothing.new_text.is_empty());
    let err = plan(Client::Codex, Some("model = \n"), Action::Remove, "c").expect_err("bad");
    assert!(err.to_string().contains("line 1"), "{err}");
    let err = plan(
        Client::Codex,
        Some("mcp_servers = 3\n"),
        Action::Remove,
        "c",
    )
    .expect_err("bad");
    assert!(err.to_string().contains("not a table"), "{err}");
}

// ---- VS Code's own EMA -------------------------------------------------------------------------

#[test]
fn vscode_native_entries_and_idp_setting_round_trip() {
    let before = read_golden(Client::VsCode, "before");
    let native = install_native(Client::VsCode, Some(&before));
    assert_golden(Client::VsCode, "after_native", &native.new_text);
    let map = map_of(Client::VsCode, &native.new_text);
    let crm = map.get("lanyard-crm").expect("written");
    assert_eq!(crm.get("type").and_then(Node::as_str), Some("http"));
    let oauth = crm.get("oauth").expect("oauth");
    assert_eq!(
        oauth.get("clientId").and_then(Node::as_str),
        Some("lanyard-crm")
    );
    let flag = oauth.get("enterpriseManaged").expect("flag");
    assert_eq!(&native.new_text[flag.start..flag.end], "true");
    assert!(map.get("lanyard-ci").is_none());
    assert_eq!(
        lanyard_entries(Client::VsCode, &native.new_text)
            .expect("parses")
            .len(),
        2
    );
    // Switching back to the proxy replaces them; removing gives the original back.
    let proxied = install(Client::VsCode, Some(&native.new_text));
    assert_eq!(
        proxied.new_text,
        install(Client::VsCode, Some(&before)).new_text
    );
    assert_eq!(remove(Client::VsCode, &native.new_text).new_text, before);

    let settings = "{\n  // Mine.\n  \"editor.fontSize\": 14\n}\n";
    let set = plan_vscode_settings(Some(settings), Some(&idp()), "s").expect("plannable");
    assert_eq!(
        set.new_text,
        "{\n  // Mine.\n  \"editor.fontSize\": 14,\n  // Managed by Lanyard: `lanyard clients remove vscode` takes it out.\n  \"mcp.enterpriseManagedAuth.idp\": {\n    \"issuer\": \"https://idp.example.com\",\n    \"clientId\": \"lanyard-desktop\"\n  }\n}\n"
    );
    let again = plan_vscode_settings(Some(&set.new_text), Some(&idp()), "s").expect("plannable");
    assert!(again.changes.is_empty() && again.new_text == set.new_text);
    let unset = plan_vscode_settings(Some(&set.new_text), None, "s").expect("plannable");
    assert_eq!(unset.new_text, settings);
    // One the user set is theirs.
    let theirs = "{\n  \"mcp.enterpriseManagedAuth.idp\": {\"issuer\": \"https://x\"}\n}\n";
    let kept = plan_vscode_settings(Some(theirs), Some(&idp()), "s").expect("plannable");
    assert_eq!(kept.new_text, theirs);
    assert_eq!(
        kept.changes,
        vec![Change::Conflict("mcp.enterpriseManagedAuth.idp".into())]
    );
    assert_eq!(
        plan_vscode_settings(Some(theirs), None, "s")
            .expect("plannable")
            .new_text,
        theirs
    );
}

#[test]
fn the_vscode_policy_carries_the_idp_as_a_json_string() {
    let text = vscode_policy(&idp());
    let document: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let value = document["McpEnterpriseManagedAuthIdp"]
        .as_str()
        .expect("a string");
    let idp: serde_json::Value = serde_json::from_str(value).expect("JSON inside");
    assert_eq!(
        idp,
        serde_json::json!({"issuer": "https://idp.example.com", "clientId": "lanyard-desktop"})
    );
}

#[test]
fn codex_managed_config_is_a_whole_document() {
    let text = codex::managed_config(&servers(), Path::new(EXE), None);
    let doc = toml_doc(&text);
    let args = doc["mcp_servers"]["lanyard-docs"]["args"].as_array();
    assert_eq!(
        args.and_then(|a| a.get(1)).and_then(|v| v.as_str()),
        Some("docs")
    );
    let native = codex::managed_config(&servers(), Path::new(EXE), Some(&idp()));
    let doc = toml_doc(&native);
    assert_eq!(
        doc["mcp_servers"]["lanyard-docs"]["auth"].as_str(),
        Some("ema_auth")
    );
    assert_eq!(doc["features"]["use_xaa"].as_bool(), Some(true));
}

#[test]
fn modes_shown_by_clients_list() {
    assert_eq!(Client::ClaudeCode.mode(false), "helper");
    assert_eq!(Client::Codex.mode(false), "proxy");
    assert_eq!(Client::Codex.mode(true), "native");
    assert_eq!(Client::VsCode.mode(true), "native");
    assert_eq!(
        Client::Cursor.mode(true),
        "proxy",
        "Cursor has no EMA of its own"
    );
    let at = Locations::under_home(Path::new("/home/me"));
    assert_eq!(
        Client::Codex.config_path(&at),
        Path::new("/home/me/.codex/config.toml")
    );
    assert_eq!("codex".parse::<Client>(), Ok(Client::Codex));
}
