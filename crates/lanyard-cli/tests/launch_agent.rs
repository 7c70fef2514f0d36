//! deploy/macos/dev.lanyard.agent.plist against the `lanyard` it launches: the keys launchd needs
//! are there and mean what deploy/macos/README.md says, the program path is where the .pkg of
//! .github/workflows/platforms.yml puts the binary, and its shell line — run here with this build's
//! binary in place of the installed one — starts a real agent that logs under
//! `$HOME/Library/Logs/Lanyard/` (its own rotated log file, which also receives its stderr) and
//! stops cleanly (exit 0, so KeepAlive leaves it stopped).

#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const INSTALLED_BINARY: &str = "/Applications/Lanyard.app/Contents/MacOS/lanyard";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn launch_agent() -> plist::Dictionary {
    let path = repo_root().join("deploy/macos/dev.lanyard.agent.plist");
    plist::Value::from_file(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_dictionary()
        .expect("a dictionary at the top")
}

fn shell_line(plist: &plist::Dictionary) -> String {
    let args: Vec<&str> = plist["ProgramArguments"]
        .as_array()
        .expect("ProgramArguments is an array")
        .iter()
        .map(|v| v.as_string().expect("string arguments"))
        .collect();
    assert_eq!(args.len(), 3, "{args:?}");
    assert_eq!(&args[..2], ["/bin/sh", "-c"]);
    args[2].to_owned()
}

#[test]
fn the_launch_agent_keys_are_coherent() {
    let plist = launch_agent();
    assert_eq!(plist["Label"].as_string(), Some("dev.lanyard.agent"));
    assert_eq!(plist["RunAtLoad"].as_boolean(), Some(true));
    let keep_alive = plist["KeepAlive"].as_dictionary().expect("KeepAlive dict");
    assert_eq!(keep_alive.len(), 1, "restart on failure only");
    assert_eq!(keep_alive["SuccessfulExit"].as_boolean(), Some(false));
    assert_eq!(plist["ProcessType"].as_string(), Some("Interactive"));
    assert_eq!(plist["LimitLoadToSessionType"].as_string(), Some("Aqua"));
    let line = shell_line(&plist);
    assert!(
        line.contains(&format!(
            "exec \"{INSTALLED_BINARY}\" agent --log-file \"$HOME/Library/Logs/Lanyard/agent.log\""
        )),
        "{line}"
    );
    assert!(
        line.contains("\"$HOME/Library/Logs/Lanyard/agent.log\""),
        "{line}"
    );
    // No policy file is named: the agent reads the platform's sources (managed preferences).
    assert!(!line.contains("--policy"), "{line}");

    // The .pkg built by the workflow installs the binary and this plist where they are named.
    let workflow = std::fs::read_to_string(repo_root().join(".github/workflows/platforms.yml"))
        .expect("workflow");
    assert!(workflow.contains("Lanyard.app/Contents/MacOS/lanyard"));
    assert!(workflow.contains("Library/LaunchAgents/dev.lanyard.agent.plist"));
}

#[test]
fn the_launch_agent_line_starts_an_agent_that_logs_and_stops_cleanly() {
    let line = shell_line(&launch_agent());
    let exe = env!("CARGO_BIN_EXE_lanyard");
    let line = line.replace(INSTALLED_BINARY, exe);
    let home = std::env::temp_dir().join(format!("lanyard-launchd-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).expect("home");
    // The agent's socket directory must be private, as a real home's runtime folder is.
    std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .expect("chmod");
    let policy = home.join("policy.json");
    std::fs::write(
        &policy,
        r#"{"idp": {"issuer": "https://idp.example", "client_id": "lanyard"}, "servers": []}"#,
    )
    .expect("policy");
    let socket = home.join("agent.sock");
    // The LaunchAgent's command line, as launchd would run it: in the employee's home, with
    // no keychain, stdin and stdout on /dev/null.
    let launch = || {
        let mut sh = Command::new("/bin/sh");
        sh.arg("-c")
            .arg(&line)
            .env("HOME", &home)
            .env("LANYARD_POLICY", &policy)
            .env("LANYARD_AGENT_SOCKET", &socket)
            .env("LANYARD_NO_KEYCHAIN", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        sh
    };
    let mut child = launch().spawn().expect("sh");
    let log = home.join("Library/Logs/Lanyard/agent.log");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !socket.exists() && Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("wait") {
            let logged = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("the agent exited early ({status}): {logged}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(socket.exists(), "no agent socket within 20 s");
    // A second start meets the first: what it says on stderr lands in the log file too (the
    // agent made the file its stderr), since launchd sends stderr to /dev/null.
    let second = launch().stderr(Stdio::null()).status().expect("second sh");
    assert_eq!(second.code(), Some(10), "a second agent says one runs");
    let logged = std::fs::read_to_string(&log).expect("the log file");
    assert!(
        logged.contains("an agent already runs for this user"),
        "the second agent's stderr is not in the log: {logged}"
    );
    // `exec`: the shell's pid is the agent's, so launchd's SIGTERM reaches the agent itself.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.code();
        }
        assert!(
            Instant::now() < deadline,
            "the agent did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, Some(0), "a clean stop is a successful exit");
    let logged = std::fs::read_to_string(&log).expect("the log file");
    assert!(logged.contains("agent starting"), "{logged}");
    let _ = std::fs::remove_dir_all(&home);
}

fn plist_at(relative: &str) -> plist::Dictionary {
    let path = repo_root().join(relative);
    plist::Value::from_file(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_dictionary()
        .expect("a dictionary at the top")
}

/// One bundle id: the app (Tauri's identifier, which the .pkg's Info.plist carries), the managed
/// preferences domain the agent reads, the tray's LaunchAgent (`open -b`), the policy profile's
/// payload type and the Managed Login Items / Notifications profile all name the same id.
#[test]
fn one_bundle_id_for_the_app_its_preferences_and_its_login_items() {
    let domain = lanyard_core::policy::sources::macos_plist::PREFERENCE_DOMAIN;
    let tauri: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("src-tauri/tauri.conf.json")).expect("tauri"),
    )
    .expect("tauri.conf.json");
    assert_eq!(
        tauri["identifier"].as_str(),
        Some(domain),
        "the app's bundle id"
    );

    let tray = plist_at("deploy/macos/dev.lanyard.tray.plist");
    assert_eq!(tray["Label"].as_string(), Some("dev.lanyard.tray"));
    assert_eq!(tray["RunAtLoad"].as_boolean(), Some(true));
    let args: Vec<&str> = tray["ProgramArguments"]
        .as_array()
        .expect("ProgramArguments")
        .iter()
        .map(|v| v.as_string().expect("string"))
        .collect();
    assert_eq!(
        args,
        ["/usr/bin/open", "-g", "-b", domain, "--args", "--at-login"],
        "the tray is found by bundle id, not by path"
    );

    let policy = plist_at("deploy/macos/lanyard.mobileconfig");
    let payloads = policy["PayloadContent"].as_array().expect("payloads");
    assert!(
        payloads.iter().any(
            |p| p.as_dictionary().expect("payload")["PayloadType"].as_string() == Some(domain)
        ),
        "the policy profile's payload type is the preferences domain"
    );

    let login_items = plist_at("deploy/macos/login-items.mobileconfig");
    let payloads = login_items["PayloadContent"].as_array().expect("payloads");
    let payload = |kind: &str| {
        payloads
            .iter()
            .map(|p| p.as_dictionary().expect("payload"))
            .find(|p| p["PayloadType"].as_string() == Some(kind))
            .unwrap_or_else(|| panic!("no {kind} payload"))
    };
    let rules: Vec<(&str, &str)> = payload("com.apple.servicemanagement")["Rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| {
            let r = r.as_dictionary().expect("rule");
            (
                r["RuleType"].as_string().expect("type"),
                r["RuleValue"].as_string().expect("value"),
            )
        })
        .collect();
    for wanted in [
        ("Label", "dev.lanyard.agent"),
        ("Label", "dev.lanyard.tray"),
        ("BundleIdentifier", domain),
    ] {
        assert!(rules.contains(&wanted), "{wanted:?} not in {rules:?}");
    }
    let notifications = payload("com.apple.notificationsettings")["NotificationSettings"]
        .as_array()
        .expect("settings");
    assert_eq!(
        notifications[0].as_dictionary().expect("setting")["BundleIdentifier"].as_string(),
        Some(domain)
    );
    // The .pkg installs the tray's LaunchAgent and checks the bundle id it ships.
    let workflow = std::fs::read_to_string(repo_root().join(".github/workflows/platforms.yml"))
        .expect("workflow");
    assert!(workflow.contains("Library/LaunchAgents/dev.lanyard.tray.plist"));
    assert!(workflow.contains("BundleIsRelocatable"));
    assert!(workflow.contains(&format!("= {domain} ]")));
}
