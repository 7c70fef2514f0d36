//! `lanyard policy validate` and `lanyard policy show --origins` as an administrator runs them:
//! the real binary, real files, exit codes and the exact error lines.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn lanyard(args: &[&str], config_home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lanyard"))
        .args(args)
        .env("XDG_CONFIG_HOME", config_home)
        .env_remove("LANYARD_POLICY")
        .output()
        .expect("run lanyard")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("lanyard-policy-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const GOOD: &str = r#"{
  "idp": {"issuer": "https://idp.example", "client_id": "lanyard"},
  "servers": [{"id": "docs", "display_name": "Docs", "url": "https://docs.example/mcp", "client_id": "c1"}],
  "settings": {"max_concurrency": 8}
}"#;

#[test]
fn validate_accepts_a_good_file_and_lists_every_error_of_a_bad_one() {
    let dir = temp_dir("validate");
    let good = dir.join("good.json");
    std::fs::write(&good, GOOD).expect("write");
    let out = lanyard(&["policy", "validate", good.to_str().expect("utf-8")], &dir);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!(
            "{}: valid (1 server, identity provider set)\n",
            good.display()
        )
    );

    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        GOOD.replace("\"url\"", "\"urll\"").replace(
            "\"max_concurrency\": 8",
            "\"max_concurrency\": 8, \"autostrat\": true",
        ),
    )
    .expect("write");
    let out = lanyard(&["policy", "validate", bad.to_str().expect("utf-8")], &dir);
    assert_eq!(out.status.code(), Some(3));
    let name = bad.display();
    assert_eq!(
        text(&out.stderr),
        format!(
            "lanyard: the policy is not usable (3 problems):\n  \
             {name}: servers[0].urll: unknown key; did you mean \"url\"?\n  \
             {name}: servers[0]: missing required key \"url\"\n  \
             {name}: settings.autostrat: unknown key; did you mean \"autostart\"?\n"
        )
    );
    assert!(out.stdout.is_empty());

    let key = dir.join("key.json");
    std::fs::write(
        &key,
        GOOD.replace(
            "\"client_id\": \"c1\"",
            "\"client_id\": \"c1\", \"authorization_server\": \"https://as.example\", \"client_auth\": {\"method\": \"private_key_jwt\", \"key_file\": \"/nonexistent/k.pem\"}",
        ),
    )
    .expect("write");
    let path = key.to_str().expect("utf-8");
    let out = lanyard(&["policy", "validate", path], &dir);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr)
        .contains("servers[0].client_auth.key_file: cannot read the key file /nonexistent/k.pem"));
    let out = lanyard(&["policy", "validate", "--skip-file-checks", path], &dir);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn validate_reads_the_deployed_macos_profile() {
    let dir = temp_dir("profile");
    let profile =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/macos/lanyard.mobileconfig");
    let out = lanyard(
        // The profile names key and CA files of the managed Macs, not of this machine.
        &[
            "policy",
            "validate",
            "--skip-file-checks",
            profile.to_str().expect("utf-8"),
        ],
        &dir,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).ends_with(": valid (4 servers, identity provider set)\n"),
        "{}",
        text(&out.stdout)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn show_origins_names_each_source_and_lock() {
    let dir = temp_dir("show");
    let policy = dir.join("policy.json");
    std::fs::write(&policy, GOOD).expect("write");
    std::fs::create_dir_all(dir.join("policy.d")).expect("mkdir");
    std::fs::write(
        dir.join("policy.d/10-more.json"),
        r#"{"servers": [{"id": "ci", "display_name": "CI", "url": "https://ci.example/mcp", "client_id": "c2"}]}"#,
    )
    .expect("write");
    std::fs::create_dir_all(dir.join("lanyard")).expect("mkdir");
    std::fs::write(
        dir.join("lanyard/config.json"),
        r#"{"settings": {"max_concurrency": 99, "notifications": false}}"#,
    )
    .expect("write");
    let policy_arg = policy.to_str().expect("utf-8");
    let out = lanyard(
        &["--policy", policy_arg, "policy", "show", "--origins"],
        &dir,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    let line = |key: &str| {
        shown
            .lines()
            .find(|l| l.starts_with(&format!("{key} ")))
            .unwrap_or_else(|| panic!("no line for {key} in:\n{shown}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let user = dir.join("lanyard/config.json");
    assert_eq!(
        line("settings.max_concurrency"),
        format!(
            "settings.max_concurrency 8 <- {} settings.max_concurrency (mandatory, locked)",
            policy.display()
        )
    );
    assert_eq!(
        line("settings.notifications"),
        format!(
            "settings.notifications false <- {} settings.notifications (user)",
            user.display()
        )
    );
    assert_eq!(
        line("servers[1]"),
        format!(
            "servers[1] server \"ci\" <- {} servers[0] (mandatory, locked)",
            dir.join("policy.d/10-more.json").display()
        )
    );
    assert_eq!(
        line("settings.log_level"),
        "settings.log_level \"info\" <- built-in default"
    );
    // The parts read, in precedence order, head the listing.
    let header: Vec<&str> = shown.lines().take_while(|l| l.starts_with('#')).collect();
    assert_eq!(
        header,
        [
            "# read from (later parts win):".to_owned(),
            format!("#   {} (mandatory)", policy.display()),
            format!("#   {}/*.json (mandatory)", dir.join("policy.d").display()),
            format!("#   {} (user settings)", user.display()),
        ]
    );

    let out = lanyard(&["--policy", policy_arg, "policy", "show"], &dir);
    let effective: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(effective["servers"][1]["id"], "ci");
    assert_eq!(effective["settings"]["max_concurrency"], 8);

    std::fs::write(&policy, "{\"idp\": 1}").expect("write");
    let out = lanyard(&["--policy", policy_arg, "policy", "show"], &dir);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("idp: expected an object, found the number 1"),
        "{}",
        text(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `lanyard policy show | head -n 1`: the reader leaves first; lanyard stops quietly (141, as for
/// SIGPIPE) instead of printing a panic.
#[test]
fn a_reader_that_goes_away_ends_the_command_quietly() {
    let dir = temp_dir("closed-stdout");
    let policy = dir.join("policy.json");
    std::fs::write(&policy, GOOD).expect("policy");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lanyard"))
        .arg("--policy")
        .arg(&policy)
        .args(["policy", "show"])
        .env("XDG_CONFIG_HOME", &dir)
        .env_remove("LANYARD_POLICY")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("lanyard starts");
    drop(child.stdout.take());
    let output = child.wait_with_output().expect("lanyard ends");
    let stderr = text(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(output.status.code(), Some(141), "{stderr}");
}
