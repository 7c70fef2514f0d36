//! deploy/macos/dev.lanyard.agent.plist against the `lanyard` it launches: the keys launchd needs
//! are there and mean what deploy/macos/README.md says, the program path is where the .pkg of
//! .github/workflows/platforms.yml puts the binary, and its shell line — run here with this build's
//! binary in place of the installed one — starts a real agent that logs under
//! `$HOME/Library/Logs/Lanyard/` and stops cleanly (exit 0, so KeepAlive leaves it stopped).

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
        line.contains(&format!("exec \"{INSTALLED_BINARY}\" agent 2>>")),
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
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(&line)
        .env("HOME", &home)
        .env("LANYARD_POLICY", &policy)
        .env("LANYARD_AGENT_SOCKET", &socket)
        .env("LANYARD_NO_KEYCHAIN", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("sh");
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
