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
    vec![
        ServerSpec {
            id: "docs".into(),
            url: "https://docs.example.com/mcp".into(),
        },
        ServerSpec {
            id: "crm".into(),
            url: "https://crm.example.com/v1/mcp".into(),
        },
    ]
}

fn install(client: Client, text: Option<&str>) -> Edit {
    let servers = servers();
    let action = Action::Install {
        servers: &servers,
        exe: Path::new(EXE),
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
    if client == Client::VsCode {
        "jsonc"
    } else {
        "json"
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
    let servers = vec![ServerSpec {
        id: "docs".into(),
        url: "https://docs.example.com/mcp".into(),
    }];
    let edit = plan(
        Client::Cursor,
        Some(text),
        Action::Install {
            servers: &servers,
            exe: Path::new(EXE),
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
