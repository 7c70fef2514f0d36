//! The tray as a client of the agent, over a real Unix socket: a recording broker stands in for
//! `lanyard agent` (hello, subscribe, sign in/out, refresh), so every request the tray sends is
//! seen on the wire. Proves: the tray follows the status stream, reconnects after the agent
//! restarts (with a backoff, not a busy loop), says "Reconnecting" meanwhile, and never asks for a
//! token.
#![cfg(unix)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lanyard_core::ipc::Request;
use lanyard_core::wake::SystemClock;
use lanyard_desktop::actions::ask_agent;
use lanyard_desktop::host::{Host, HostOptions};
use lanyard_desktop::link::{self, LinkEvent, LinkOptions};
use lanyard_desktop::look::PanelTheme;
use lanyard_desktop::snapshot::{TrayHealth, RECONNECTING};
use serde_json::{json, Value};

/// A stand-in agent that records every request line.
struct RecordingAgent {
    listener_path: PathBuf,
    seen: Arc<Mutex<Vec<Value>>>,
    connections: Arc<AtomicUsize>,
    subscribers: Arc<Mutex<Vec<UnixStream>>>,
    status: Arc<Mutex<Value>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

fn status_json(idp: Value, servers: Vec<Value>) -> Value {
    json!({"idp": idp, "servers": servers, "keychain": {"state": "available"},
           "policy": {"state": "applied"}, "updated_at": 1})
}

fn server(id: &str, state: Value) -> Value {
    json!({"id": id, "display_name": id.to_uppercase(), "url": format!("https://{id}.example"),
           "mode": "enterprise-managed", "state": state, "last_refresh": null,
           "authorization_server": null})
}

fn signed_in() -> Value {
    json!({"state": "signed_in", "subject": "alice", "email": "alice@example.com",
           "id_token_expires_at": 9_999_999_999u64, "refresh_error": null})
}

fn granted() -> Value {
    json!({"state": "granted", "expires_at": 9_999_999_999u64, "scopes": [], "refresh_at": 9_999_999_000u64})
}

impl RecordingAgent {
    fn start(path: &Path, seen: Arc<Mutex<Vec<Value>>>, status: Value) -> Self {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let agent = RecordingAgent {
            listener_path: path.to_path_buf(),
            seen,
            connections: Arc::new(AtomicUsize::new(0)),
            subscribers: Arc::default(),
            status: Arc::new(Mutex::new(status)),
            stop: Arc::default(),
        };
        let (seen, conns, subs, status, stop) = (
            agent.seen.clone(),
            agent.connections.clone(),
            agent.subscribers.clone(),
            agent.status.clone(),
            agent.stop.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        conns.fetch_add(1, Ordering::SeqCst);
                        let (seen, subs, status) = (seen.clone(), subs.clone(), status.clone());
                        std::thread::spawn(move || serve(stream, seen, subs, status));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        agent
    }

    /// A new status for every subscriber.
    fn publish(&self, status: Value) {
        *self.status.lock().expect("lock") = status.clone();
        let line = format!("{}\n", json!({"type": "status", "status": status}));
        for sub in self.subscribers.lock().expect("lock").iter_mut() {
            let _ = sub.write_all(line.as_bytes());
        }
    }

    /// The agent exits: its socket goes, every connection closes.
    fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for sub in self.subscribers.lock().expect("lock").drain(..) {
            let _ = sub.shutdown(std::net::Shutdown::Both);
        }
        let _ = std::fs::remove_file(&self.listener_path);
    }
}

fn serve(
    stream: UnixStream,
    seen: Arc<Mutex<Vec<Value>>>,
    subs: Arc<Mutex<Vec<UnixStream>>>,
    status: Arc<Mutex<Value>>,
) {
    stream.set_nonblocking(false).expect("blocking");
    let mut writer = stream.try_clone().expect("clone");
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { return };
        let request: Value = serde_json::from_str(&line).expect("a JSON request");
        seen.lock().expect("lock").push(request.clone());
        let reply = match request["op"].as_str() {
            Some("hello") => json!({"type": "hello", "protocol": request["protocol"],
                                   "agent_version": "test", "agent_pid": 4242}),
            Some("subscribe") => {
                let current = status.lock().expect("lock").clone();
                let line = format!("{}\n", json!({"type": "status", "status": current}));
                let _ = writer.write_all(line.as_bytes());
                subs.lock()
                    .expect("lock")
                    .push(writer.try_clone().expect("clone"));
                continue;
            }
            Some("sign_in" | "sign_out" | "refresh_all" | "refresh") => json!({"type": "done"}),
            _ => json!({"type": "error", "code": "bad_request", "message": "not here"}),
        };
        let _ = writer.write_all(format!("{reply}\n").as_bytes());
    }
}

fn wait_for(events: &mpsc::Receiver<LinkEvent>, what: &str, pred: impl Fn(&LinkEvent) -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while std::time::Instant::now() < deadline {
        if let Ok(event) = events.recv_timeout(Duration::from_millis(100)) {
            if pred(&event) {
                return;
            }
        }
    }
    panic!("no {what} within 15 s");
}

/// A directory the agent would accept for its socket (and so would its clients): ours, 0700.
fn private_dir(name: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("lanyard-tray-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    dir
}

fn host(endpoint: &Path) -> Host {
    Host::new(HostOptions {
        endpoint: endpoint.to_path_buf(),
        policy_path: Some("/nonexistent/policy.json".into()),
        clock: Arc::new(SystemClock),
        theme: PanelTheme::Dark,
        cli: None,
    })
}

/// A stand-in agent, signed out, in a fresh private directory: the directory, its socket, what
/// it records, and the agent.
fn signed_out_agent(name: &str) -> (PathBuf, PathBuf, Arc<Mutex<Vec<Value>>>, RecordingAgent) {
    let dir = private_dir(name);
    let endpoint = dir.join("agent.sock");
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let agent = RecordingAgent::start(
        &endpoint,
        seen.clone(),
        status_json(json!({"state": "signed_out"}), vec![]),
    );
    (dir, endpoint, seen, agent)
}

/// The tray's link to the agent at `endpoint`, feeding a host (what the tray shows) and a
/// channel of every event, in order.
fn link_tray(
    endpoint: &Path,
    policy_path: Option<&str>,
) -> (Arc<Host>, mpsc::Receiver<LinkEvent>, link::Link) {
    let shown = Arc::new(host(endpoint));
    let (tx, events) = mpsc::channel();
    let tee = shown.clone();
    let tx = Mutex::new(tx);
    let link = link::start(
        LinkOptions {
            endpoint: endpoint.to_path_buf(),
            cli: None,
            policy_path: policy_path.map(PathBuf::from),
            no_keychain: true,
        },
        move |event| {
            tee.observe(event.clone());
            let _ = tx.lock().expect("lock").send(event);
        },
    )
    .expect("link starts");
    (shown, events, link)
}

#[test]
fn the_tray_follows_the_agent_across_a_restart_and_never_asks_for_a_token() {
    let (dir, endpoint, seen, agent) = signed_out_agent("link");

    let (shown, events, _link) = link_tray(&endpoint, Some("/nonexistent/policy.json"));

    // Signed out first, straight from the subscription.
    wait_for(&events, "signed-out status", |e| {
        matches!(e, LinkEvent::Status(_))
    });
    assert_eq!(shown.snapshot().health, TrayHealth::SignedOut);

    // The tray's actions are broker requests.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        ask_agent(endpoint.clone(), Request::SignIn { device: false })
            .await
            .expect("sign in");
        ask_agent(endpoint.clone(), Request::RefreshAll)
            .await
            .expect("refresh all");
        ask_agent(endpoint.clone(), Request::Refresh { server: "a".into() })
            .await
            .expect("refresh");
    });

    // Granted, then a denied server: a standing fact, the tray stays calm.
    agent.publish(status_json(signed_in(), vec![server("a", granted())]));
    wait_for(
        &events,
        "granted",
        |e| matches!(e, LinkEvent::Status(s) if !s.servers.is_empty()),
    );
    assert_eq!(shown.snapshot().health, TrayHealth::AllGood);
    let denied = json!({"state": "denied", "code": "access_denied", "description": null});
    agent.publish(status_json(
        signed_in(),
        vec![server("a", granted()), server("p", denied)],
    ));
    wait_for(
        &events,
        "denied",
        |e| matches!(e, LinkEvent::Status(s) if s.servers.len() == 2),
    );
    assert_eq!(shown.snapshot().health, TrayHealth::AllGood);

    // The agent restarts: the tray says so meanwhile, and does not hammer the socket.
    let before = agent.connections.load(Ordering::SeqCst);
    agent.stop();
    wait_for(&events, "lost", |e| matches!(e, LinkEvent::Lost { .. }));
    assert_eq!(shown.snapshot().headline, RECONNECTING);
    assert_eq!(shown.snapshot().health, TrayHealth::Reconnecting);
    std::thread::sleep(Duration::from_secs(3));
    let agent = RecordingAgent::start(
        &endpoint,
        seen.clone(),
        status_json(signed_in(), vec![server("a", granted())]),
    );
    wait_for(&events, "reconnected", |e| {
        matches!(e, LinkEvent::Connected(_))
    });
    wait_for(&events, "status again", |e| {
        matches!(e, LinkEvent::Status(_))
    });
    assert_eq!(shown.snapshot().health, TrayHealth::AllGood);
    assert_eq!(agent.connections.load(Ordering::SeqCst), 1);
    let _ = before;
    // Attempts during the 3 s outage were spaced out (200 ms doubling): a handful, not hundreds.
    let hellos = seen
        .lock()
        .expect("lock")
        .iter()
        .filter(|r| r["op"] == "hello")
        .count();
    assert!(hellos <= 8, "{hellos} hellos");

    // Everything the tray said, on every connection: never a token.
    let ops: Vec<String> = seen
        .lock()
        .expect("lock")
        .iter()
        .map(|r| r["op"].as_str().unwrap_or("?").to_owned())
        .collect();
    assert!(ops.contains(&"subscribe".to_owned()), "{ops:?}");
    for op in &ops {
        assert!(
            ["hello", "subscribe", "sign_in", "refresh_all", "refresh"].contains(&op.as_str()),
            "the tray sent {op}: {ops:?}"
        );
    }
    agent.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// An "agent" whose directory belongs to another user (squatted before the real agent started):
/// the tray's link and its actions refuse it by name and never say hello, so nothing it claims
/// (its status, its support page) reaches the tray. Needs root, to give the directory away.
#[test]
fn the_tray_refuses_an_agent_in_another_users_directory() {
    if !running_as_root() {
        eprintln!("\n!!!!!!!! SKIPPED: needs root to give a directory to another user !!!!!!!!\n");
        return;
    }
    let (dir, endpoint, seen, agent) = signed_out_agent("foreign");
    std::os::unix::fs::chown(&dir, Some(65534), None).expect("chown");
    let expected = format!(
        "the agent at {} is owned by uid 65534, not you: refusing",
        endpoint.display()
    );

    let (shown, events, link) = link_tray(&endpoint, None);
    wait_for(
        &events,
        "the refusal",
        |e| matches!(e, LinkEvent::Lost { reason } if reason.contains(&expected)),
    );
    assert_eq!(shown.support_url(), None);

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let refused = rt
        .block_on(ask_agent(
            endpoint.clone(),
            Request::SignIn { device: false },
        ))
        .expect_err("a sign-in through another user's agent");
    assert_eq!(refused.code, "agent_untrusted", "{refused:?}");
    link.stop();
    assert_eq!(
        agent.connections.load(Ordering::SeqCst),
        0,
        "a client connected"
    );
    assert!(
        seen.lock().expect("lock").is_empty(),
        "a client said something"
    );
    agent.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

fn running_as_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
