//! The tray app in a real webview: tauri-driver + Debian's WebKitWebDriver, under Xvfb with a
//! private D-Bus session and a real (gnome-keyring) Secret Service, against the testbed over real
//! HTTP, with a separately started agent and tray process (the desktop's login items); WebDriver
//! drives the status window process (`lanyard-status`; the tray, `lanyard-tray`, links no
//! webview and has no WebKit library mapped). Start signed out → Sign in (the scripted `$BROWSER`
//! submits the IdP's login page) → allowed servers Granted with ticking countdowns → the denied
//! one shows the organization's message → an injected IdP outage shows Retrying and recovers by
//! itself → the tray icon follows (the tray process's report) → the agent
//! restarts → closing the window ends its process and leaves the tray with no WebKit child → a
//! second launch of the tray opens the window again.
//! Every step saves a screenshot under target/artifacts/webview/.
//!
//! Needs a display: run by `make webview` (scripts/webview-e2e.sh), ignored by the plain test run.

mod kit;

use std::process::{Command, Stdio};
use std::time::Duration;

use kit::webdriver::{self, Session};
use lanyard_testbed::{Endpoint, Fault, FaultMode};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

/// What the page shows, read from the DOM.
const PROBE: &str = r#"
const text = (el) => (el ? el.textContent.trim() : null);
return {
  headline: text(document.querySelector('[data-testid=headline]')),
  user: text(document.querySelector('[data-testid=user]')),
  body: document.body.innerText,
  cards: [...document.querySelectorAll('[data-server]')].map((c) => ({
    id: c.dataset.server,
    badge: text(c.querySelector('[data-testid=badge]')),
    countdown: text(c.querySelector('[data-testid=countdown]')),
    text: c.innerText,
  })),
};"#;

async fn page(session: &Session) -> Value {
    session.execute(PROBE).await.unwrap_or(Value::Null)
}

fn card<'a>(page: &'a Value, id: &str) -> &'a Value {
    page["cards"]
        .as_array()
        .and_then(|cards| cards.iter().find(|c| c["id"] == id))
        .unwrap_or(&Value::Null)
}

async fn until(session: &Session, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = page(session).await;
        if pred(&now) {
            return now;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for: {what}\nlast page: {now:#}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn until_icon(report: &std::path::Path, icon: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let look = kit::tray_report(report)["look"].clone();
        if look["icon"] == icon {
            return look;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("the tray icon never became {icon}: {look:#}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn is_countdown(text: &Value) -> bool {
    text.as_str().is_some_and(|t| {
        let mut parts = t.split(':');
        matches!((parts.next(), parts.next(), parts.next()),
            (Some(m), Some(s), None) if m.parse::<u32>().is_ok() && s.len() == 2 && s.parse::<u32>().is_ok())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Xvfb, D-Bus and tauri-driver: run by `make webview`"]
async fn status_window_from_signed_out_to_granted_denied_retrying_and_recovered() {
    assert_display();
    let shots = kit::artifacts("webview");
    let scratch = kit::Scratch::new("webview");
    let tb = lanyard_testbed::demo::start_demo(Duration::ZERO)
        .await
        .expect("testbed");
    let policy = kit::write_policy(&tb, &scratch.0);
    let env = kit::app_env(&policy, &scratch.0);
    let socket = scratch.0.join("run/agent.sock");
    let _trayer = kit::start_trayer();
    // The agent runs on its own, as the OS would start it at login; the tray is its client.
    let mut agent = Some(kit::start_agent(&policy, &env, &socket));
    // The tray process, as the desktop starts it at login; it reports what it shows.
    let report = scratch.0.join("tray-report.json");
    let tray = kit::start_tray(&env, &report);
    let tray_pid = tray.0.id();

    let (_driver, session) = status_window_session(&env).await;

    // 1. Signed out: the window says so and offers one button.
    let now = until(&session, "the signed-out state", |p| {
        p["body"]
            .as_str()
            .is_some_and(|b| b.contains("You're signed out"))
    })
    .await;
    assert_eq!(now["headline"], "Signed out");
    assert_eq!(card(&now, "docs")["badge"], "Waiting for sign-in");
    until_icon(&report, "tray-signed_out-dark").await;
    session
        .screenshot(&shots.join("01-signed-out.png"))
        .await
        .expect("shot");

    // 2. Sign in: the scripted browser submits the IdP's login page as alice.
    session
        .click_button("Sign in")
        .await
        .expect("click Sign in");
    let now = until(&session, "docs and tickets granted, payroll blocked", |p| {
        card(p, "docs")["badge"] == "Granted"
            && card(p, "tickets")["badge"] == "Granted"
            && card(p, "payroll")["badge"] == "Blocked"
    })
    .await;
    assert_eq!(now["user"], "alice@example.com");
    assert!(is_countdown(&card(&now, "docs")["countdown"]), "{now:#}");
    assert!(is_countdown(&card(&now, "tickets")["countdown"]), "{now:#}");
    session
        .screenshot(&shots.join("02-granted.png"))
        .await
        .expect("shot");
    // The countdown ticks by itself.
    let before = card(&now, "docs")["countdown"].clone();
    let later = until(&session, "the countdown to tick", |p| {
        is_countdown(&card(p, "docs")["countdown"]) && card(p, "docs")["countdown"] != before
    })
    .await;
    assert_ne!(card(&later, "docs")["countdown"], before);

    // 2b. The tray app hosts the broker: `lanyard token` gets a token from it (no browser, no
    //     engine of its own), and the denied server answers with the "denied" exit code.
    let token = Command::new(kit::cli_binary())
        .args(["token", "docs"])
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("lanyard token");
    assert!(
        token.status.success(),
        "{}",
        String::from_utf8_lossy(&token.stderr)
    );
    assert!(token.stdout.len() > 20, "a token came back");
    let denied = Command::new(kit::cli_binary())
        .args(["token", "payroll"])
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("lanyard token");
    assert_eq!(denied.status.code(), Some(5), "exit code 5 = denied");
    let snapshot = session.invoke("snapshot").await.expect("snapshot");
    assert_eq!(snapshot["agent"]["state"], "connected", "{snapshot:#}");
    let agent_pid = agent.as_ref().map(|a| a.0.id());
    assert_eq!(
        snapshot["agent"]["pid"].as_u64().map(|p| p as u32),
        agent_pid,
        "the tray shows the separately started agent: {snapshot:#}"
    );

    // 2c. "Connect AI clients": the `lanyard` beside the app knows `clients`, so the tray offers
    //     them, and connecting one writes Lanyard's entries into that client's config.
    let deadline = std::time::Instant::now() + WAIT;
    let look = loop {
        let look = kit::tray_report(&report)["look"].clone();
        if look["clients"].as_array().is_some_and(|c| !c.is_empty())
            || std::time::Instant::now() > deadline
        {
            break look;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let names: Vec<&str> = look["clients"]
        .as_array()
        .map(|c| c.iter().filter_map(|e| e["label"].as_str()).collect())
        .unwrap_or_default();
    assert!(names.contains(&"Claude Code"), "{look:#}");
    session
        .invoke_with(
            "connect_client",
            serde_json::json!({"client": "claude-code"}),
        )
        .await
        .expect("connect Claude Code");
    let claude =
        std::fs::read_to_string(scratch.0.join("home/.claude.json")).expect("~/.claude.json");
    assert!(claude.contains("lanyard-docs"), "{claude}");
    let e = session
        .invoke_with("connect_client", serde_json::json!({"client": "emacs"}))
        .await
        .expect_err("unknown client");
    assert!(e.to_string().contains("unknown_client"), "{e}");

    // 2d. Start at login: on by default at the first start (an XDG autostart entry), and the
    //     window's switch turns it off and on again.
    let autostart_dir = scratch.0.join("home/.config/autostart");
    let entries = || {
        std::fs::read_dir(&autostart_dir)
            .map(|d| d.filter_map(Result::ok).count())
            .unwrap_or(0)
    };
    assert_eq!(
        entries(),
        1,
        "one autostart entry in {}",
        autostart_dir.display()
    );
    let snapshot = session.invoke("snapshot").await.expect("snapshot");
    assert_eq!(snapshot["autostart"]["enabled"], true, "{snapshot:#}");
    session
        .invoke_with("set_autostart", serde_json::json!({"enabled": false}))
        .await
        .expect("autostart off");
    assert_eq!(entries(), 0, "the entry is gone");
    session
        .invoke_with("set_autostart", serde_json::json!({"enabled": true}))
        .await
        .expect("autostart on");
    assert_eq!(entries(), 1, "the entry is back");

    // 3. The denied server: the organization's message and a Contact IT button.
    let payroll = card(&now, "payroll")["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        payroll.contains("Blocked by your organization"),
        "{payroll}"
    );
    // The policy's support URL reaches the window through the agent's status.
    assert!(payroll.contains("Contact IT"), "{payroll}");
    let snapshot = session.invoke("snapshot").await.expect("snapshot");
    assert_eq!(
        snapshot["policy"]["support_url"], "https://it.example.com/help",
        "{snapshot:#}"
    );
    session
        .execute("document.querySelector('[data-server=payroll]').scrollIntoView({block: 'end'}); return true;")
        .await
        .expect("scroll");
    session
        .screenshot(&shots.join("03-denied.png"))
        .await
        .expect("shot");
    // Payroll is denied: a standing fact, so the tray stays calm; it was announced exactly once.
    let look = until_icon(&report, "tray-all_good-dark").await;
    assert!(
        look["tooltip"]
            .as_str()
            .unwrap_or_default()
            .contains("Payroll blocked"),
        "{look:#}"
    );
    kit::screenshot_root(&shots.join("03-tray-and-window.png"));
    kit::crop_tray(
        &shots.join("03-tray-and-window.png"),
        &shots.join("03-tray-icon.png"),
    );
    let notices = kit::tray_report(&report)["notices"].clone();
    let denied = notices
        .as_array()
        .map(|n| n.iter().filter(|n| n["kind"] == "denied").count())
        .unwrap_or(0);
    assert_eq!(denied, 1, "{notices:#}");

    // 4. The IdP goes down: Refresh all fails, servers show Retrying with the problem in words.
    tb.idp()
        .faults()
        .inject(Endpoint::Token, Fault::Status(503), FaultMode::Persistent);
    session
        .execute("window.scrollTo(0, 0); return true;")
        .await
        .expect("scroll");
    session
        .click_button("Refresh all")
        .await
        .expect("click Refresh all");
    let now = until(&session, "docs retrying", |p| {
        card(p, "docs")["badge"] == "Retrying"
    })
    .await;
    let docs = card(&now, "docs")["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(docs.contains("Can't get a token right now"), "{docs}");
    assert!(docs.contains("Retry now"), "{docs}");
    session
        .screenshot(&shots.join("04-retrying.png"))
        .await
        .expect("shot");
    // Every server (Payroll too) is now waiting on the IdP: the tray shows the clock icon.
    let look = until_icon(&report, "tray-degraded-dark").await;
    assert!(
        look["tooltip"]
            .as_str()
            .unwrap_or_default()
            .contains("Retrying"),
        "{look:#}"
    );

    // 5. The IdP is back: the engine's own retry recovers, nobody clicks.
    tb.idp().faults().clear();
    until(&session, "docs and tickets granted again", |p| {
        card(p, "docs")["badge"] == "Granted" && card(p, "tickets")["badge"] == "Granted"
    })
    .await;
    session
        .screenshot(&shots.join("05-recovered.png"))
        .await
        .expect("shot");
    until(&session, "payroll blocked again", |p| {
        card(p, "payroll")["badge"] == "Blocked"
    })
    .await;
    until_icon(&report, "tray-all_good-dark").await;
    let notices = kit::tray_report(&report)["notices"].clone();
    let denied = notices
        .as_array()
        .map(|n| n.iter().filter(|n| n["kind"] == "denied").count())
        .unwrap_or(0);
    assert_eq!(
        denied, 1,
        "the same denial is not announced again: {notices:#}"
    );

    // 5b. The agent restarts while the tray runs: the tray says so, then reconnects by itself and
    //    shows the restored session (the keychain kept it).
    drop(agent.take());
    let now = until(&session, "the reconnecting state", |p| {
        p["body"]
            .as_str()
            .is_some_and(|b| b.contains("Reconnecting to the Lanyard agent"))
    })
    .await;
    assert_eq!(now["headline"], "Reconnecting to the Lanyard agent…");
    until_icon(&report, "tray-signed_out-dark").await;
    session
        .screenshot(&shots.join("07-reconnecting.png"))
        .await
        .expect("shot");
    agent = Some(kit::start_agent(&policy, &env, &socket));
    until(&session, "docs granted after the agent restart", |p| {
        card(p, "docs")["badge"] == "Granted"
    })
    .await;
    let snapshot = session.invoke("snapshot").await.expect("snapshot");
    assert_eq!(
        snapshot["agent"]["pid"].as_u64().map(|p| p as u32),
        agent.as_ref().map(|a| a.0.id()),
        "{snapshot:#}"
    );
    session
        .screenshot(&shots.join("08-after-agent-restart.png"))
        .await
        .expect("shot");

    // 6. Closing the window ends its process; the tray stays, with no WebKit process left under
    //    it, and the agent keeps answering.
    let pid = kit::agent_pid(&socket).expect("the agent holds the agent lock");
    assert_eq!(
        Some(pid),
        agent.as_ref().map(|a| a.0.id()),
        "the lock is the agent's, not the tray's"
    );
    session.press_key("\u{E00C}").await.expect("press Escape");
    let deadline = std::time::Instant::now() + WAIT;
    while kit::status_window_shown() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!kit::status_window_shown(), "the window is gone");
    assert!(
        std::path::Path::new(&format!("/proc/{tray_pid}")).exists(),
        "the tray still runs"
    );
    assert_eq!(
        kit::children(tray_pid),
        Vec::<u32>::new(),
        "no process under the tray"
    );
    let maps = std::fs::read_to_string(format!("/proc/{tray_pid}/maps")).expect("tray maps");
    for library in ["libwebkit2gtk", "libjavascriptcoregtk"] {
        assert!(!maps.contains(library), "the tray maps {library}");
    }
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the agent still runs"
    );
    assert!(
        socket.exists(),
        "the broker still serves at {}",
        socket.display()
    );

    // 7. A second launch of the tray hands over to the first, which opens the window again (a new
    //    window process under the tray).
    let second = Command::new(kit::tray_binary())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("second launch");
    assert!(second.success(), "the second instance exits cleanly");
    let deadline = std::time::Instant::now() + WAIT;
    while !kit::status_window_shown() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        kit::status_window_shown(),
        "the first instance opened its window"
    );
    assert_eq!(
        kit::children(tray_pid).len(),
        1,
        "the window is a process of its own, under the tray"
    );
    // Wait until the new webview has painted the status (an unpainted window is one flat colour).
    let reopened = shots.join("06-reopened-by-second-launch.png");
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        kit::screenshot_root(&reopened);
        if kit::colour_count(&reopened) > 100 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the reopened window never painted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    session.end().await;
    drop(tray);
}

/// A server ready on first use (here: on demand, never asked for) looks calm in the window, in
/// the light and the dark theme: the good tone, a quiet sentence, no problem and no button, and
/// the tray stays all good. Screenshots in target/artifacts/webview-idle/: `idle-light.png` and
/// `idle-dark.png`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Xvfb, D-Bus and tauri-driver: run by `make webview`"]
async fn an_idle_server_looks_calm_in_light_and_dark() {
    assert_display();
    // Its own folder: the other test empties target/artifacts/webview/ when it starts.
    let shots = kit::artifacts("webview-idle");
    let _trayer = kit::start_trayer();
    for theme in ["light", "dark"] {
        let scratch = kit::Scratch::new(&format!("webview-idle-{theme}"));
        let tb = lanyard_testbed::demo::start_demo(Duration::ZERO)
            .await
            .expect("testbed");
        let policy = kit::write_policy(&tb, &scratch.0);
        let mut json: Value =
            serde_json::from_slice(&std::fs::read(&policy).expect("policy")).expect("json");
        json["settings"]["on_demand_servers"] = serde_json::json!(["tickets"]);
        std::fs::write(&policy, json.to_string()).expect("policy");
        let mut env = kit::app_env(&policy, &scratch.0);
        for (key, value) in &mut env {
            match key.as_str() {
                "LANYARD_TRAY_THEME" => *value = theme.into(),
                "GTK_THEME" => {
                    *value = if theme == "dark" {
                        "Adwaita:dark"
                    } else {
                        "Adwaita"
                    }
                    .into()
                }
                _ => {}
            }
        }
        let socket = scratch.0.join("run/agent.sock");
        let _agent = kit::start_agent(&policy, &env, &socket);
        let report = scratch.0.join("tray-report.json");
        let _tray = kit::start_tray(&env, &report);
        let (_driver, session) = status_window_session(&env).await;
        sign_in_from_signed_out(&session).await;
        let now = until(&session, "docs granted, tickets ready on first use", |p| {
            card(p, "docs")["badge"] == "Granted"
                && card(p, "tickets")["badge"] == "Ready on first use"
                && card(p, "payroll")["badge"] == "Blocked"
        })
        .await;
        let tickets = card(&now, "tickets")["text"].as_str().unwrap_or_default();
        assert!(tickets.contains("Not kept fresh"), "{tickets}");
        assert!(
            !tickets.contains("Retry") && !tickets.contains("Sign in"),
            "no remedy on a calm server: {tickets}"
        );
        // Every server ready: the denial is a standing fact, the idle server no problem at all.
        let look = until_icon(&report, &format!("tray-all_good-{theme}")).await;
        assert_eq!(look["icon"], format!("tray-all_good-{theme}"));
        session
            .screenshot(&shots.join(format!("idle-{theme}.png")))
            .await
            .expect("shot");
        session.end().await;
    }
}

/// A server in the standard MCP authorization (`mode: oauth`, the demo's Wiki): its card and the
/// tray menu offer Connect; the card's button opens the browser once (the scripted `$BROWSER`
/// follows the authorization server's consent back to the agent's loopback) → Granted, with a
/// token for `lanyard token` → Refresh all renews it from the refresh token, no browser → sign-out
/// wipes the connection: Connect again, and a client's request is refused naming `lanyard
/// connect`. Screenshots in target/artifacts/webview-connect/.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Xvfb, D-Bus and tauri-driver: run by `make webview`"]
async fn an_oauth_server_is_connected_from_its_card_refreshed_and_wiped_at_sign_out() {
    assert_display();
    let shots = kit::artifacts("webview-connect");
    let _trayer = kit::start_trayer();
    let scratch = kit::Scratch::new("webview-connect");
    let tb = lanyard_testbed::demo::start_demo_world(Duration::ZERO, &[], true)
        .await
        .expect("testbed");
    let wiki_as = || tb.auth_server("wiki").expect("wiki's AS").stats();
    let policy = kit::write_policy(&tb, &scratch.0);
    let env = kit::app_env(&policy, &scratch.0);
    let socket = scratch.0.join("run/agent.sock");
    let _agent = kit::start_agent(&policy, &env, &socket);
    let report = scratch.0.join("tray-report.json");
    let _tray = kit::start_tray(&env, &report);
    let (_driver, session) = status_window_session(&env).await;
    let token = |server: &str| {
        Command::new(kit::cli_binary())
            .args(["token", server])
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("lanyard token")
    };

    // 1. Signed in to the IdP: the enterprise-managed servers are granted, Wiki is not connected;
    //    its card and the tray menu offer Connect, and a client's request never opens a browser.
    sign_in_from_signed_out(&session).await;
    let now = until(&session, "docs granted, wiki not connected", |p| {
        card(p, "docs")["badge"] == "Granted" && card(p, "wiki")["badge"] == "Not connected"
    })
    .await;
    let wiki = card(&now, "wiki")["text"].as_str().unwrap_or_default();
    assert!(wiki.contains("Connect once in your browser"), "{wiki}");
    assert!(
        now["headline"]
            .as_str()
            .is_some_and(|h| h.contains("Wiki not connected")),
        "{now:#}"
    );
    let deadline = std::time::Instant::now() + WAIT;
    let look = loop {
        let look = kit::tray_report(&report)["look"].clone();
        let offered = look["menu"].as_array().is_some_and(|m| {
            m.iter()
                .any(|e| e["label"] == "Connect Wiki…" && e["enabled"] == true)
        });
        if offered || std::time::Instant::now() > deadline {
            break look;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let item = look["menu"]
        .as_array()
        .and_then(|m| m.iter().find(|e| e["label"] == "Connect Wiki…"))
        .cloned()
        .unwrap_or_else(|| panic!("the tray offers Connect Wiki…: {look:#}"));
    assert_eq!(item["action"]["action"], "connect_server", "{item:#}");
    assert_eq!(item["action"]["target"], "wiki", "{item:#}");
    let refused = token("wiki");
    assert_eq!(refused.status.code(), Some(4), "exit 4 = not connected");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("lanyard connect wiki"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert_eq!(wiki_as().code_mints, 0, "no browser for a client's request");
    card_shot(&session, "wiki", &shots.join("01-connect.png")).await;

    // 2. Connect: one browser round trip (dynamic registration, authorization code + PKCE), then
    //    Granted with a countdown, and `lanyard token` hands the token out.
    session
        .click_button("Connect")
        .await
        .expect("click Connect");
    let now = until(&session, "wiki granted", |p| {
        card(p, "wiki")["badge"] == "Granted"
    })
    .await;
    assert!(is_countdown(&card(&now, "wiki")["countdown"]), "{now:#}");
    let stats = wiki_as();
    assert_eq!((stats.registrations, stats.code_mints), (1, 1), "{stats:?}");
    let granted = token("wiki");
    assert!(
        granted.status.success(),
        "{}",
        String::from_utf8_lossy(&granted.stderr)
    );
    assert!(granted.stdout.len() > 20, "a token came back");
    card_shot(&session, "wiki", &shots.join("02-connected.png")).await;

    // 3. Refresh all: Wiki is renewed from its refresh token, silently (no second consent), and
    //    its card says so.
    click_at_top(&session, "Refresh all").await;
    let deadline = std::time::Instant::now() + WAIT;
    while wiki_as().refresh_mints == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stats = wiki_as();
    assert_eq!(
        (stats.code_mints, stats.refresh_mints),
        (1, 1),
        "renewed from the refresh token, not a new consent: {stats:?}"
    );
    // The renewal itself is proven by the server's count above and the new token below; the
    // card stays Granted through it.
    let now = until(&session, "wiki still granted", |p| {
        card(p, "wiki")["badge"] == "Granted"
    })
    .await;
    // The agent stores the renewed token just after the authorization server minted it.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let renewed = token("wiki");
        assert!(renewed.status.success());
        // Compared, never printed: a token stays out of the test's output.
        if renewed.stdout != granted.stdout {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "`lanyard token wiki` never handed out the renewed token"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(is_countdown(&card(&now, "wiki")["countdown"]), "{now:#}");
    card_shot(&session, "wiki", &shots.join("03-refreshed.png")).await;

    // 4. Sign out: the connection goes with the session; Wiki offers Connect again and a client
    //    is refused naming `lanyard connect`.
    click_at_top(&session, "Sign out").await;
    let now = until(&session, "signed out, wiki not connected", |p| {
        p["body"]
            .as_str()
            .is_some_and(|b| b.contains("You're signed out"))
            && card(p, "wiki")["badge"] == "Not connected"
    })
    .await;
    assert!(
        card(&now, "wiki")["text"]
            .as_str()
            .is_some_and(|t| t.contains("Connect")),
        "{now:#}"
    );
    let refused = token("wiki");
    assert_eq!(refused.status.code(), Some(4), "exit 4 = not connected");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("lanyard connect wiki"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert_eq!(wiki_as().code_mints, 1, "still no browser for a client");
    card_shot(&session, "wiki", &shots.join("04-signed-out.png")).await;
    session.end().await;
}

/// These tests need a display: scripts/webview-e2e.sh gives them Xvfb.
fn assert_display() {
    assert!(
        std::env::var_os("DISPLAY").is_some(),
        "no DISPLAY: run through scripts/webview-e2e.sh"
    );
}

/// Scrolls to the top of the window (the account's buttons) and clicks the button `label`.
async fn click_at_top(session: &Session, label: &str) {
    session
        .execute("window.scrollTo(0, 0); return true;")
        .await
        .expect("scroll");
    session
        .click_button(label)
        .await
        .unwrap_or_else(|e| panic!("click {label}: {e}"));
}

/// Waits for the window's signed-out state and clicks its Sign in (the scripted `$BROWSER`
/// submits the IdP's login page as alice).
async fn sign_in_from_signed_out(session: &Session) {
    until(session, "the signed-out state", |p| {
        p["body"]
            .as_str()
            .is_some_and(|b| b.contains("You're signed out"))
    })
    .await;
    session
        .click_button("Sign in")
        .await
        .expect("click Sign in");
}

/// Scrolls server `id`'s card fully into view and saves a screenshot once it is (a status update
/// may lay the page out again meanwhile).
async fn card_shot(session: &Session, id: &str, path: &std::path::Path) {
    let script = format!(
        "const c = document.querySelector('[data-server={id}]'); c.scrollIntoView({{block: 'end'}}); \
         const r = c.getBoundingClientRect(); return r.top >= 0 && r.bottom <= window.innerHeight + 1;"
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let shown = session.execute(&script).await.expect("scroll");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let still = session.execute(&script).await.expect("scroll");
        if shown == true && still == true {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the {id} card never came into view"
        );
    }
    session.screenshot(path).await.expect("shot");
}

/// tauri-driver on free ports with `env`, and a WebDriver session on the status window process
/// it starts; the driver stops when its handle is dropped.
async fn status_window_session(env: &[(String, String)]) -> (kit::Stopper, Session) {
    let port = kit::free_port();
    let native_port = kit::free_port();
    let driver = Command::new(kit::tauri_driver())
        .args([
            "--port",
            &port.to_string(),
            "--native-port",
            &native_port.to_string(),
        ])
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("tauri-driver starts");
    let stopper = kit::Stopper(driver);
    webdriver::wait_ready(port).await.expect("driver ready");
    let session = Session::start(port, &kit::status_binary(), &[])
        .await
        .expect("a WebDriver session on the status window process");
    (stopper, session)
}
