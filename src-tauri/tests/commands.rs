//! The window's commands and the tray menu's actions through `tauri::test::mock_builder()` (no
//! display), against the testbed's IdP and MCP servers over real HTTP on 127.0.0.1: the same
//! functions the real app calls, the tray look they produce, and the notices they decide on.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use lanyard_core::clock::SystemClock;
use lanyard_core::policy::sources::platform::PolicySources;
use lanyard_core::policy::Policy;
use lanyard_core::signin::Browser;
use lanyard_core::store::MemoryStore;
use lanyard_testbed::{Endpoint, Fault, FaultMode, Testbed};
use lanyard_tray::actions::{self, MenuAction};
use lanyard_tray::host::{self, Host, HostOptions};
use lanyard_tray::tray::PanelTheme;
use serde_json::{json, Value};
use tauri::ipc::{CallbackFn, InvokeBody};
use tauri::test::{mock_builder, mock_context, noop_assets, MockRuntime, INVOKE_KEY};
use tauri::webview::InvokeRequest;
use tauri::{App, Manager, WebviewWindow, WebviewWindowBuilder};

const WAIT: Duration = Duration::from_secs(15);

/// Signs in at the testbed's login page as alice, like the user would in the browser.
struct ScriptedBrowser;

impl Browser for ScriptedBrowser {
    fn open(&self, url: &url::Url) -> Result<(), String> {
        let url = url.to_string();
        tokio::spawn(async move {
            if let Err(e) = lanyard_testbed::complete_login(&url, "alice@example.com").await {
                eprintln!("scripted login failed: {e:#}");
            }
        });
        Ok(())
    }
}

fn policy_json(tb: &Testbed) -> Value {
    let mut policy = lanyard_testbed::demo::lanyard_policy(tb);
    policy["dev_mode"] = json!(true);
    policy["settings"] = json!({"support_url": "https://it.example.com/help"});
    policy
}

fn options() -> HostOptions {
    HostOptions {
        policy: PolicySources::file(Path::new("/etc/lanyard/test-policy.json")),
        store: Arc::new(MemoryStore::new()),
        browser: Arc::new(ScriptedBrowser),
        clock: Arc::new(SystemClock),
        tick: Duration::from_millis(200),
        theme: PanelTheme::Dark,
        cli: None,
    }
}

struct Rig {
    app: App<MockRuntime>,
    window: WebviewWindow<MockRuntime>,
    _host: Arc<Host>,
}

fn rig(policy: Result<Policy, Vec<lanyard_core::policy::PolicyError>>) -> Rig {
    let host = Arc::new(Host::with_policy(policy, options()));
    let app = lanyard_tray::configure(mock_builder(), host.clone())
        .build(mock_context(noop_assets()))
        .expect("mock app");
    let window = WebviewWindowBuilder::new(&app, "status", Default::default())
        .build()
        .expect("mock window");
    host::watch(app.handle().clone(), host.clone());
    Rig {
        app,
        window,
        _host: host,
    }
}

impl Rig {
    /// Invokes a command the way the window does; `Err` carries the `{code, message}` body.
    fn invoke(&self, cmd: &str, args: Value) -> Result<Value, Value> {
        let request = InvokeRequest {
            cmd: cmd.into(),
            callback: CallbackFn(0),
            error: CallbackFn(1),
            url: "tauri://localhost".parse().expect("url"),
            body: InvokeBody::Json(args),
            headers: Default::default(),
            invoke_key: INVOKE_KEY.to_string(),
        };
        // The command may wait on the engine, which runs on this test's runtime: block a worker.
        tokio::task::block_in_place(|| tauri::test::get_ipc_response(&self.window, request))
            .map(|body| body.deserialize::<Value>().expect("json reply"))
    }

    fn snapshot(&self) -> Value {
        self.invoke("snapshot", json!({})).expect("snapshot")
    }

    fn state_of(&self, server: &str) -> String {
        let snap = self.snapshot();
        let servers = snap["status"]["servers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        servers
            .iter()
            .find(|s| s["id"] == server)
            .map(|s| s["state"]["state"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_default()
    }

    /// Polls `pred` on the snapshot until it holds (or fails the test with the last snapshot).
    async fn until(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let snap = self.snapshot();
            if pred(&snap) {
                return snap;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("timed out waiting for {what}; last snapshot: {snap:#}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The tray icon the host last applied.
    async fn until_icon(&self, icon: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let look = self.invoke("tray_look", json!({})).expect("tray_look");
            if look["icon"] == icon {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("tray icon never became {icon}; last look: {look:#}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn parse(policy: &Value) -> Policy {
    Policy::from_json(&policy.to_string(), "test policy").expect("valid policy")
}

fn all_settled(snap: &Value) -> bool {
    snap["status"]["servers"].as_array().is_some_and(|servers| {
        servers
            .iter()
            .all(|s| s["state"]["state"] != "granting" && s["state"]["state"] != "not_signed_in")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_command_grants_allowed_servers_and_names_the_denied_one() {
    let tb = lanyard_testbed::demo::start_demo(Duration::ZERO)
        .await
        .expect("testbed");
    let rig = rig(Ok(parse(&policy_json(&tb))));
    // Nothing saved in the (memory) keychain: resuming ends in a plain signed-out start.
    let first = rig
        .until("signed out", |s| {
            s["status"]["idp"]["state"] == "signed_out"
        })
        .await;
    assert_eq!(first["health"], "signed_out");
    assert_eq!(
        first["policy"]["support_url"],
        "https://it.example.com/help"
    );
    rig.until_icon("tray-signed_out-dark").await;

    rig.invoke("sign_in", json!({})).expect("sign_in");
    let snap = rig.until("every server settled", all_settled).await;
    assert_eq!(snap["status"]["idp"]["email"], "alice@example.com");
    assert_eq!(rig.state_of("docs"), "granted");
    assert_eq!(rig.state_of("tickets"), "granted");
    assert_eq!(rig.state_of("payroll"), "denied");
    assert_eq!(snap["health"], "action_needed");
    assert!(
        snap["headline"]
            .as_str()
            .unwrap_or_default()
            .contains("Payroll blocked by your organization"),
        "{snap:#}"
    );
    rig.until_icon("tray-action_needed-dark").await;

    // One notice for the denial, not one per status change.
    let refreshed = rig.invoke("refresh_all", json!({}));
    assert!(refreshed.is_ok(), "{refreshed:?}");
    rig.until("settled after refresh", all_settled).await;
    let notices = rig.invoke("notices_sent", json!({})).expect("notices");
    let denied: Vec<_> = notices
        .as_array()
        .expect("list")
        .iter()
        .filter(|n| n["kind"] == "denied")
        .collect();
    assert_eq!(denied.len(), 1, "{notices:#}");
    assert!(denied[0]["body"]
        .as_str()
        .unwrap_or_default()
        .starts_with("Payroll was blocked"));

    // The tray menu now names the user on Sign out.
    let look = rig.invoke("tray_look", json!({})).expect("look");
    let labels: Vec<&str> = look["menu"]
        .as_array()
        .expect("menu")
        .iter()
        .filter_map(|e| e["label"].as_str())
        .collect();
    assert!(labels.contains(&"Sign out alice@example.com"), "{labels:?}");

    rig.invoke("sign_out", json!({})).expect("sign_out");
    rig.until("signed out", |s| {
        s["status"]["idp"]["state"] == "signed_out"
    })
    .await;
    rig.until_icon("tray-signed_out-dark").await;
    drop(rig.app);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn menu_actions_drive_the_tray_icon_through_every_health() {
    let tb = lanyard_testbed::demo::start_demo(Duration::ZERO)
        .await
        .expect("testbed");
    // Without Payroll nothing is denied: signed in means all good.
    let mut policy = policy_json(&tb);
    policy["servers"]
        .as_array_mut()
        .expect("servers")
        .retain(|s| s["id"] != "payroll");
    let rig = rig(Ok(parse(&policy)));
    let handle = rig.app.handle().clone();
    rig.until_icon("tray-signed_out-dark").await;

    actions::perform(&handle, MenuAction::SignIn)
        .await
        .expect("menu: sign in");
    rig.until("granted", all_settled).await;
    rig.until_icon("tray-all_good-dark").await;

    // The IdP goes down: a refresh fails and the servers are retried (degraded, clock icon).
    tb.idp()
        .faults()
        .inject(Endpoint::Token, Fault::Status(503), FaultMode::Persistent);
    actions::perform(&handle, MenuAction::RefreshAll)
        .await
        .expect("menu: refresh all");
    let snap = rig.until("retrying", |s| s["health"] == "degraded").await;
    assert!(
        snap["headline"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Retrying"),
        "{snap:#}"
    );
    rig.until_icon("tray-degraded-dark").await;

    // It comes back: the engine's own retry recovers without anyone clicking.
    tb.idp().faults().clear();
    rig.until("recovered", |s| s["health"] == "all_good").await;
    rig.until_icon("tray-all_good-dark").await;

    actions::perform(&handle, MenuAction::OpenStatus)
        .await
        .expect("menu: open status");
    assert!(handle.get_webview_window("status").is_some());

    actions::perform(&handle, MenuAction::SignOut)
        .await
        .expect("menu: sign out");
    rig.until_icon("tray-signed_out-dark").await;
    let look = rig.invoke("tray_look", json!({})).expect("look");
    assert_eq!(look["tooltip"], "Lanyard — Signed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_reach_the_window_as_code_and_message() {
    let tb = lanyard_testbed::demo::start_demo(Duration::ZERO)
        .await
        .expect("testbed");
    let rig = rig(Ok(parse(&policy_json(&tb))));
    let e = rig
        .invoke("refresh_server", json!({"server": "nope"}))
        .expect_err("unknown server");
    assert_eq!(e["code"], "unknown_server");
    assert!(
        e["message"].as_str().unwrap_or_default().contains("nope"),
        "{e}"
    );
    let e = rig
        .invoke("set_autostart", json!({"enabled": true}))
        .expect_err("no plugin");
    assert_eq!(e["code"], "unsupported");
    // The app keeps answering after the errors.
    rig.until("signed out", |s| {
        s["status"]["idp"]["state"] == "signed_out"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_policy_runs_misconfigured_with_its_key_path_shown() {
    let bad = r#"{"idp": {"issuer": "http://idp.example.com", "client_id": "x"}, "servers": []}"#;
    let errors = Policy::from_json(bad, "/etc/lanyard/policy.json").expect_err("invalid");
    let rig = rig(Err(errors));
    let snap = rig
        .until("misconfigured", |s| {
            s["status"]["policy"]["state"] == "misconfigured"
        })
        .await;
    let lines = snap["status"]["policy"]["errors"].to_string();
    assert!(lines.contains("idp.issuer"), "{snap:#}");
    assert_eq!(snap["health"], "action_needed");
    assert_eq!(
        snap["headline"],
        "Settings from your organization are not usable"
    );
    assert_eq!(snap["policy"]["problems"][0]["key_path"], "idp.issuer");
    // Nothing to sign in to; the answer says so instead of hanging or crashing.
    let e = rig.invoke("sign_in", json!({})).expect_err("no IdP");
    assert!(e["code"].is_string() && e["message"].is_string(), "{e}");
    let e = rig
        .invoke("open_support", json!({}))
        .expect_err("no support url");
    assert_eq!(e["code"], "no_support_url");
    rig.until_icon("tray-action_needed-dark").await;
    let look = rig.invoke("tray_look", json!({})).expect("look");
    assert_eq!(
        look["tooltip"],
        "Lanyard — Settings from your organization are not usable"
    );
}
