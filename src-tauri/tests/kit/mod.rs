//! What the display-bound tests share: paths to the built binaries and tools, a testbed whose
//! policy is written to a file, the environment the tray app runs in, and a minimal W3C WebDriver
//! client (over reqwest) for tauri-driver + WebKitWebDriver.
#![allow(dead_code)]

pub mod webdriver;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use lanyard_testbed::Testbed;
use serde_json::json;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("src-tauri has a parent")
        .to_path_buf()
}

/// Where the test binaries' sibling executables are (target/debug, honouring CARGO_TARGET_DIR).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/debug/deps/..")
        .to_path_buf()
}

/// The status window executable (this package's).
pub fn status_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lanyard-status"))
}

/// The tray executable (package `lanyard-tray`, built beside this one).
pub fn tray_binary() -> PathBuf {
    let path = bin_dir().join("lanyard-tray");
    assert!(
        path.is_file(),
        "{} is missing: `cargo build -p lanyard-tray` first (scripts/webview-e2e.sh does)",
        path.display()
    );
    path
}

pub fn cli_binary() -> PathBuf {
    let path = bin_dir().join("lanyard");
    assert!(
        path.is_file(),
        "{} is missing: `cargo build -p lanyard-cli` first (scripts/webview-e2e.sh does)",
        path.display()
    );
    path
}

pub fn testbed_binary() -> PathBuf {
    let path = bin_dir().join("lanyard-testbed");
    assert!(
        path.is_file(),
        "{} is missing: `cargo build -p lanyard-testbed` first (scripts/webview-e2e.sh does)",
        path.display()
    );
    path
}

pub fn tauri_driver() -> PathBuf {
    let path = root().join(".tools/cargo/bin/tauri-driver");
    assert!(
        path.is_file(),
        "{} is missing: run scripts/install-deps.sh",
        path.display()
    );
    path
}

/// target/artifacts/<name>/, created empty of old screenshots.
pub fn artifacts(name: &str) -> PathBuf {
    let dir = root().join("target").join("artifacts").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    dir
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A scratch directory removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "lanyard-{name}-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes the demo testbed's policy (dev mode, a support URL) and returns its path. Servers are
/// kept warm (`idle_after_secs` 0), as the other tiers' kits do: these tests show states over
/// time, and an unused server would otherwise turn calm, *ready on first use*, instead of
/// retrying (tickets after the simulated outage).
pub fn write_policy(tb: &Testbed, dir: &Path) -> PathBuf {
    let mut policy = lanyard_testbed::demo::lanyard_policy(tb);
    lanyard_testbed::demo::with_standard_oauth(tb, &mut policy);
    policy["dev_mode"] = json!(true);
    policy["settings"] =
        json!({"support_url": "https://it.example.com/help", "idle_after_secs": 0});
    let path = dir.join("policy.json");
    std::fs::write(&path, policy.to_string()).expect("write policy");
    path
}

/// The environment the tray app runs in: the policy, the scripted browser, a private home (for
/// autostart and app data) and a private broker socket.
pub fn app_env(policy: &Path, scratch: &Path) -> Vec<(String, String)> {
    let home = scratch.join("home");
    std::fs::create_dir_all(&home).expect("home");
    vec![
        ("LANYARD_POLICY".into(), policy.display().to_string()),
        (
            "BROWSER".into(),
            format!(
                "{} browse --user alice@example.com",
                testbed_binary().display()
            ),
        ),
        ("HOME".into(), home.display().to_string()),
        (
            "XDG_CONFIG_HOME".into(),
            home.join(".config").display().to_string(),
        ),
        (
            "LANYARD_AGENT_SOCKET".into(),
            scratch.join("run/agent.sock").display().to_string(),
        ),
        ("LANYARD_TRAY_THEME".into(), "dark".into()),
        // A dark desktop: the window follows it (prefers-color-scheme), so the shots are dark.
        ("GTK_THEME".into(), "Adwaita:dark".into()),
        ("LANYARD_CLI".into(), cli_binary().display().to_string()),
        // The test starts (and restarts) the agent itself, so the tray's "Reconnecting" shows.
        ("LANYARD_TRAY_START_AGENT".into(), "0".into()),
        (
            "LANYARD_LOG".into(),
            "warn,lanyard_tray=info,lanyard_status=info".into(),
        ),
    ]
}

/// Starts `lanyard agent` on `socket` with the test's policy and environment, and waits until it
/// answers.
pub fn start_agent(policy: &Path, env: &[(String, String)], socket: &Path) -> Stopper {
    let child = Command::new(cli_binary())
        .arg("--policy")
        .arg(policy)
        .arg("agent")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("lanyard agent starts");
    let agent = Stopper(child);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while lanyard_core::ipc::BlockingClient::connect(socket).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the agent never answered at {}",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    agent
}

/// A child process stopped with SIGTERM on drop (SIGKILL would orphan WebKitWebDriver).
pub struct Stopper(pub Child);

impl Drop for Stopper {
    fn drop(&mut self) {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        for _ in 0..50 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the tray process (as the desktop does at login), writing what it shows to `report`
/// (`LANYARD_TRAY_REPORT`).
pub fn start_tray(env: &[(String, String)], report: &Path) -> Stopper {
    let child = Command::new(tray_binary())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("LANYARD_TRAY_REPORT", report)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("lanyard-tray starts");
    Stopper(child)
}

/// What the tray process last reported (`{"look": …, "notices": […]}`), or null before it has.
pub fn tray_report(report: &Path) -> serde_json::Value {
    std::fs::read_to_string(report)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// The pids of a process's children (Linux).
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Starts `trayer` (a system tray host) at the bottom right of the X screen.
pub fn start_trayer() -> Option<Stopper> {
    Command::new("trayer")
        .args([
            "--edge",
            "bottom",
            "--align",
            "right",
            "--widthtype",
            "request",
            "--height",
            "32",
            "--tint",
            "0x2b2f36",
            "--transparent",
            "true",
            "--alpha",
            "0",
            "--SetDockType",
            "true",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
        .map(Stopper)
}

/// A screenshot of the whole X screen (window + tray) via ImageMagick's `import`.
pub fn screenshot_root(path: &Path) {
    let status = Command::new("import")
        .args(["-window", "root"])
        .arg(path)
        .status()
        .expect("import (imagemagick)");
    assert!(status.success(), "import failed");
}

/// The number of distinct colours in an image (a blank, unpainted window has a handful).
pub fn colour_count(path: &Path) -> usize {
    Command::new("convert")
        .arg(path)
        .args(["-format", "%k", "info:"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(0)
}

/// Crops the bottom-right corner of a root screenshot (where trayer sits), enlarged 3x.
pub fn crop_tray(screen: &Path, out: &Path) {
    let status = Command::new("convert")
        .arg(screen)
        .args([
            "-gravity",
            "SouthEast",
            "-crop",
            "160x48+0+0",
            "+repage",
            "-scale",
            "300%",
        ])
        .arg(out)
        .status()
        .expect("convert (imagemagick)");
    assert!(status.success(), "convert failed");
}

/// The pid written in the agent lock next to the socket (the tray app's, while it runs).
pub fn agent_pid(socket: &Path) -> Option<u32> {
    let lock = socket.parent()?.join("agent.lock");
    std::fs::read_to_string(lock).ok()?.trim().parse().ok()
}

/// Whether an X window titled exactly "Lanyard" is mapped.
pub fn status_window_shown() -> bool {
    Command::new("xdotool")
        .args(["search", "--onlyvisible", "--name", "^Lanyard$"])
        .output()
        .map(|o| o.status.success() && !o.stdout.is_empty())
        .unwrap_or(false)
}
