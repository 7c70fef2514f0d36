//! `lanyard policy validate` and `lanyard policy show --origins` as an administrator runs them:
//! the real binary, real files, exit codes and the exact error lines.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[cfg(target_os = "linux")]
#[path = "../../lanyard-core/tests/common/other_user.rs"]
mod other_user;
#[cfg(target_os = "linux")]
use other_user::OtherUser;

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

/// A key reference that cannot work is refused before deployment, by its key path: never a
/// crash at sign-in.
#[cfg(target_os = "linux")]
#[test]
fn validate_refuses_a_bad_key_reference_by_its_key_path() {
    let dir = temp_dir("key-reference");
    for (reference, expected) in [
        (
            r#"{"store": "pkcs11", "module": "/usr/lib/nonexistent/libp11.so", "token": "t", "label": "k"}"#,
            "servers[0].client_auth.key.module: the PKCS#11 module /usr/lib/nonexistent/libp11.so is not installed",
        ),
        (
            r#"{"store": "pkcs11", "module": "libp11.so", "token": "t", "label": "k"}"#,
            "servers[0].client_auth.key.module: must be an absolute path",
        ),
        (
            r#"{"store": "pkcs11", "module": "/usr/lib/softhsm/libsofthsm2.so", "token": "t"}"#,
            "servers[0].client_auth.key.label: name the private key by label, id or both",
        ),
        (
            r#"{"store": "pkcs11", "module": "/usr/lib/softhsm/libsofthsm2.so", "token": "t", "id": "xyz"}"#,
            "servers[0].client_auth.key.id: \"xyz\" is not hex",
        ),
        (
            r#"{"store": "windows", "name": "Lanyard"}"#,
            "servers[0].client_auth.key.store: \"windows\" keys cannot be used on linux",
        ),
        (
            r#"{"store": "windows", "thumbprint": "abc"}"#,
            "servers[0].client_auth.key.thumbprint: \"abc\" is not a SHA-1 thumbprint (40 hex digits)",
        ),
        (
            r#"{"store": "tpm"}"#,
            r#"servers[0].client_auth.key.store: the text "tpm" is not one of "pkcs11", "windows", "macos""#,
        ),
    ] {
        let file = dir.join("policy.json");
        std::fs::write(
            &file,
            GOOD.replace(
                "\"client_id\": \"c1\"",
                &format!(
                    "\"client_id\": \"c1\", \"authorization_server\": \"https://as.example\", \
                     \"client_auth\": {{\"method\": \"private_key_jwt\", \"key\": {reference}}}"
                ),
            ),
        )
        .expect("write");
        let out = lanyard(&["policy", "validate", file.to_str().expect("utf-8")], &dir);
        assert_eq!(out.status.code(), Some(3), "{reference}: {}", text(&out.stdout));
        assert!(
            text(&out.stderr).contains(expected),
            "{reference}: {}",
            text(&out.stderr)
        );
        assert!(!text(&out.stderr).contains("panicked"));
    }
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
        text(&out.stdout).ends_with(": valid (7 servers, identity provider set)\n"),
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
    // The reader is gone before lanyard starts: closed after the spawn instead, a slow test
    // machine could let the whole policy fit in the pipe first, and lanyard would exit 0.
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let output = Command::new(env!("CARGO_BIN_EXE_lanyard"))
        .arg("--policy")
        .arg(&policy)
        .args(["policy", "show"])
        .env("XDG_CONFIG_HOME", &dir)
        .env_remove("LANYARD_POLICY")
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("lanyard runs");
    let stderr = text(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(output.status.code(), Some(141), "{stderr}");
}

/// Runs `lanyard args` in a private mount namespace whose `/etc` is an overlay holding a copy of
/// `stage` (owners and modes kept): the real `/etc/lanyard` for this one process, nobody else's.
/// `None`, after a loud line, when this cannot be done here (not root, no mount namespaces).
#[cfg(target_os = "linux")]
fn lanyard_with_etc(
    test: &str,
    stage: &Path,
    scratch: &Path,
    args: &[&str],
    env_policy: Option<&Path>,
) -> Option<Output> {
    const SCRIPT: &str = r#"set -e
mount -t tmpfs none "$SCRATCH"
mkdir "$SCRATCH/up" "$SCRATCH/work"
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$SCRATCH/up,workdir=$SCRATCH/work" /etc
cp -a "$STAGE/." /etc/
exec "$@""#;
    std::fs::create_dir_all(scratch).expect("scratch");
    let mut command = Command::new("unshare");
    command
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            SCRIPT,
            "sh",
        ])
        .arg(env!("CARGO_BIN_EXE_lanyard"))
        .args(args)
        .env("STAGE", stage)
        .env("SCRATCH", scratch)
        .env("XDG_CONFIG_HOME", scratch.join("config"))
        .env_remove("LANYARD_POLICY");
    if let Some(policy) = env_policy {
        command.env("LANYARD_POLICY", policy);
    }
    let out = command.output().expect("run unshare");
    let stderr = text(&out.stderr);
    if stderr.contains("unshare failed") || stderr.contains("Operation not permitted") {
        println!("SKIPPED {test}: no private mount namespace here ({stderr}); NOT exercised");
        return None;
    }
    Some(out)
}

#[test]
#[cfg(target_os = "linux")]
fn a_named_policy_is_refused_where_a_managed_policy_is_installed() {
    const TEST: &str = "a_named_policy_is_refused_where_a_managed_policy_is_installed";
    let dir = temp_dir("named-over-managed");
    let stage = dir.join("stage");
    std::fs::create_dir_all(stage.join("lanyard")).expect("mkdir");
    let managed = stage.join("lanyard/policy.json");
    std::fs::write(&managed, GOOD).expect("write");
    let mine = dir.join("mine.json");
    std::fs::write(
        &mine,
        GOOD.replace("\"max_concurrency\": 8", "\"max_concurrency\": 2"),
    )
    .expect("write");
    let mine_arg = mine.to_str().expect("utf-8");

    // Named on the command line, or in the environment: refused, naming the managed policy.
    let Some(out) = lanyard_with_etc(
        TEST,
        &stage,
        &dir.join("ns1"),
        &["--policy", mine_arg, "policy", "show"],
        None,
    ) else {
        return;
    };
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        format!(
            "lanyard: {} cannot replace this computer's managed policy (/etc/lanyard/policy.json): \
             a policy named with --policy or LANYARD_POLICY is used only where the managed policy \
             sets dev_mode. Remove --policy and unset LANYARD_POLICY to use the managed policy.\n",
            mine.display()
        )
    );
    let out = lanyard_with_etc(TEST, &stage, &dir.join("ns2"), &["servers"], Some(&mine))
        .expect("namespace");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("cannot replace this computer's managed policy"));

    // Without one, the managed policy is what is shown.
    let out = lanyard_with_etc(TEST, &stage, &dir.join("ns3"), &["policy", "show"], None)
        .expect("namespace");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("\"max_concurrency\": 8"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[cfg(target_os = "linux")]
fn a_policy_planted_by_another_user_in_etc_lanyard_is_ignored_by_name() {
    const TEST: &str = "a_policy_planted_by_another_user_in_etc_lanyard_is_ignored_by_name";
    let Some(other) = OtherUser::create(TEST) else {
        return;
    };
    let dir = temp_dir("planted");
    let stage = dir.join("stage");
    std::fs::create_dir_all(stage.join("lanyard/policy.d")).expect("mkdir");
    // The administrator's policy, and a fragment a standard user managed to put beside it.
    std::fs::write(stage.join("lanyard/policy.json"), GOOD).expect("write");
    let planted = stage.join("lanyard/policy.d/50-proxy.json");
    std::fs::write(
        &planted,
        r#"{"settings": {"proxy": "http://127.0.0.1:9", "max_concurrency": 99}}"#,
    )
    .expect("write");
    std::os::unix::fs::chown(&planted, Some(other.uid), Some(other.gid)).expect("chown");

    let Some(out) = lanyard_with_etc(TEST, &stage, &dir.join("ns1"), &["policy", "show"], None)
    else {
        return;
    };
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.contains("\"max_concurrency\": 8"), "{shown}");
    assert!(
        !shown.contains("127.0.0.1:9"),
        "the planted proxy is not used: {shown}"
    );
    assert_eq!(
        text(&out.stderr),
        format!(
            "lanyard: parts of the policy were ignored (the rest applies):\n  \
             /etc/lanyard/policy.d/50-proxy.json: .: ignored: owned by uid {}, not root; an \
             administrator must own it (chown root /etc/lanyard/policy.d/50-proxy.json)\n",
            other.uid
        )
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A workload-identity server needs its token's source (a file or the environment, never the
/// keychain) and an authorization server the policy names; other modes take no workload token.
#[test]
fn validate_names_each_workload_identity_mistake() {
    let dir = temp_dir("workload");
    for (entry, expected) in [
        (
            r#""mode": "workload-identity", "authorization_server": "https://as.example""#,
            "servers[0].workload_token: workload-identity needs the workload's token",
        ),
        (
            r#""mode": "workload-identity", "authorization_server": "https://as.example", "workload_token": {"keychain": "ci"}"#,
            "servers[0].workload_token: a workload token comes from its platform",
        ),
        (
            r#""mode": "workload-identity", "workload_token": {"env": "CI_TOKEN"}"#,
            "servers[0].authorization_server: a workload token goes only to an authorization server the policy names",
        ),
        (
            r#""workload_token": {"env": "CI_TOKEN"}"#,
            "servers[0].workload_token: is for \"mode\": \"workload-identity\" only",
        ),
    ] {
        let file = dir.join("policy.json");
        std::fs::write(
            &file,
            GOOD.replace("\"client_id\": \"c1\"", &format!("\"client_id\": \"c1\", {entry}")),
        )
        .expect("write");
        let out = lanyard(&["policy", "validate", file.to_str().expect("utf-8")], &dir);
        assert_eq!(out.status.code(), Some(3), "{entry}: {}", text(&out.stdout));
        assert!(text(&out.stderr).contains(expected), "{entry}: {}", text(&out.stderr));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
