//! Live policy reload against the testbed over real HTTP: the policy file on disk is rewritten
//! while the user is signed in, the watcher notices, and the engine grants the new server, revokes
//! the removed server's token at its authorization server, re-grants the changed one — with no new
//! sign-in. An invalid change keeps the last good policy and is reported; an invalid policy at
//! start shows as Misconfigured until a good one arrives.

// Linux policy files (owner and mode checks); the Windows registry watch is covered by windows_wine.rs.
#![cfg(unix)]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use lanyard_core::engine::{EngineError, EngineHandle, Health, PolicyStatus, ServerState};
use lanyard_core::policy::sources::linux_files::LinuxPolicyPaths;
use lanyard_core::policy::watch::{watch_linux, PolicyWatcher};
use lanyard_core::policy::Policy;
use serde_json::{json, Value};
use support::*;

/// A policy directory of its own: `policy.json` (root-owned, 0644 as written by root), no user file.
struct PolicyDir {
    dir: PathBuf,
    paths: LinuxPolicyPaths,
}

impl PolicyDir {
    fn new() -> Self {
        let dir = temp_path("policy-dir");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let paths = LinuxPolicyPaths {
            mandatory_file: dir.join("policy.json"),
            mandatory_dir: dir.join("policy.d"),
            user_file: None,
            trusted_owner: None,
            ancestors_from: Some(dir.clone()),
        };
        Self { dir, paths }
    }

    /// Replaces the policy file the way configuration management does: write aside, rename over.
    fn write(&self, text: &str) {
        let aside = self.dir.join(".policy.json.new");
        std::fs::write(&aside, text).expect("write");
        std::fs::rename(&aside, &self.paths.mandatory_file).expect("rename");
    }

    /// Watches the directory and feeds every re-read policy to `engine`.
    fn watch(&self, engine: &EngineHandle) -> PolicyWatcher {
        let engine = engine.clone();
        watch_linux(
            self.paths.clone(),
            Duration::from_millis(100),
            move |result| {
                let engine = engine.clone();
                tokio::spawn(async move {
                    let _ = match result {
                        Ok(snapshot) => engine.apply_policy(snapshot.policy).await,
                        Err(errors) => {
                            engine
                                .reject_policy(errors.iter().map(|e| e.to_string()).collect())
                                .await
                        }
                    };
                });
            },
        )
        .expect("watch")
    }
}

impl Drop for PolicyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The demo world without denials: docs, tickets and payroll all grantable for alice.
async fn world() -> lanyard_testbed::Testbed {
    testbed(lanyard_testbed::demo::demo_config(Duration::ZERO)).await
}

fn without_server(mut policy: Value, id: &str) -> Value {
    policy["servers"]
        .as_array_mut()
        .expect("servers")
        .retain(|s| s["id"] != id);
    policy
}

fn revocations(tb: &lanyard_testbed::Testbed, name: &str) -> Vec<(String, Option<String>)> {
    tb.auth_server_for(name)
        .expect("AS")
        .stats()
        .revocations
        .into_iter()
        .map(|r| (r.client_id, r.token_type_hint))
        .collect()
}

fn client_id(tb: &lanyard_testbed::Testbed, name: &str) -> String {
    tb.auth_server_for(name).expect("AS").clients()[0]
        .client_id
        .clone()
}

#[tokio::test]
async fn a_rewritten_policy_file_adds_removes_and_changes_servers_while_signed_in() {
    let tb = world().await;
    let full = policy_json(&tb);
    let initial = without_server(full.clone(), "payroll");
    let dir = PolicyDir::new();
    dir.write(&initial.to_string());
    let loaded = dir.paths.load().expect("the initial file is valid");
    let lanyard = start_engine(&tb, &initial, Options::default());
    assert_eq!(loaded.policy, parse_policy(&initial));
    let _watcher = dir.watch(&lanyard.engine);

    lanyard.sign_in().await;
    lanyard.wait_granted("docs").await;
    lanyard.wait_granted("tickets").await;
    let old_docs = lanyard.token("docs", 0).await;
    assert!(lanyard.engine.status().server("payroll").is_none());

    // The administrator removes tickets, adds payroll and widens docs' scopes.
    let mut next = without_server(full, "tickets");
    server_entry(&mut next, "docs")["scopes"] = json!(["docs.read", "docs.write"]);
    dir.write(&serde_json::to_string_pretty(&next).expect("json"));

    let status = lanyard
        .wait("payroll granted, tickets gone, docs re-granted with docs.write", |s| {
            s.server("tickets").is_none()
                && s.server("payroll")
                    .is_some_and(|p| matches!(p.state, ServerState::Granted { .. }))
                && s.server("docs").is_some_and(|d| {
                    matches!(&d.state, ServerState::Granted { scopes, .. } if scopes.iter().any(|x| x == "docs.write"))
                })
        })
        .await;
    assert_eq!(status.policy, PolicyStatus::Applied);

    // The removed server's token was revoked at its own authorization server, and the changed
    // server's old token at its; the new server's authorization server saw no revocation.
    let tickets_client = client_id(&tb, "tickets");
    eventually("tickets' token revoked at the tickets AS", || {
        revocations(&tb, "tickets") == [(tickets_client.clone(), Some("access_token".into()))]
    })
    .await;
    let docs_client = client_id(&tb, "docs");
    eventually("docs' old token revoked at the docs AS", || {
        revocations(&tb, "docs") == [(docs_client.clone(), Some("access_token".into()))]
    })
    .await;
    assert!(revocations(&tb, "payroll").is_empty());

    // Tickets is gone for callers; the new tokens work; no second sign-in happened.
    match lanyard.engine.token("tickets", Duration::ZERO).await {
        Err(EngineError::UnknownServer(id)) => assert_eq!(id, "tickets"),
        other => panic!("expected UnknownServer, got {other:?}"),
    }
    let new_docs = lanyard.token("docs", 0).await;
    assert_ne!(new_docs.access_token, old_docs.access_token);
    assert!(
        new_docs.scopes.iter().any(|s| s == "docs.write"),
        "{:?}",
        new_docs.scopes
    );
    assert_accepted(
        tb.mcp_server("docs").expect("docs MCP"),
        new_docs.access_token.expose(),
    )
    .await;
    let payroll = lanyard.token("payroll", 0).await;
    assert_accepted(
        tb.mcp_server("payroll").expect("payroll MCP"),
        payroll.access_token.expose(),
    )
    .await;
    assert_eq!(lanyard.browser.opened().len(), 1, "no new sign-in");
}

#[tokio::test]
async fn an_invalid_change_keeps_the_last_good_policy_and_says_why() {
    let tb = world().await;
    let policy = policy_json(&tb);
    let dir = PolicyDir::new();
    dir.write(&policy.to_string());
    let lanyard = start_engine(&tb, &policy, Options::default());
    let _watcher = dir.watch(&lanyard.engine);
    lanyard.sign_in().await;
    lanyard.wait_granted("docs").await;

    let mut broken = without_server(policy.clone(), "docs");
    broken["settings"] = json!({"max_concurency": 4});
    dir.write(&broken.to_string());
    let status = lanyard
        .wait("the change rejected", |s| {
            matches!(s.policy, PolicyStatus::ChangeRejected { .. })
        })
        .await;
    let PolicyStatus::ChangeRejected { errors } = &status.policy else {
        unreachable!()
    };
    assert_eq!(
        errors,
        &[format!(
            "{}: settings.max_concurency: unknown key; did you mean \"max_concurrency\"?",
            dir.paths.mandatory_file.display()
        )]
    );
    assert!(
        matches!(
            status.server("docs").expect("docs kept").state,
            ServerState::Granted { .. }
        ),
        "the last good policy stays in force"
    );
    assert!(lanyard.token("docs", 0).await.expires_at > 0);
    assert!(revocations(&tb, "docs").is_empty());

    // A group-writable file is refused the same way, naming the file.
    dir.write(&policy.to_string());
    lanyard
        .wait("the fixed policy applied", |s| {
            s.policy == PolicyStatus::Applied
        })
        .await;
    set_mode(&dir.paths.mandatory_file, 0o666);
    // chmod alone is an attribute change the watcher reports as well.
    let status = lanyard
        .wait("the writable file refused", |s| {
            matches!(s.policy, PolicyStatus::ChangeRejected { .. })
        })
        .await;
    let PolicyStatus::ChangeRejected { errors } = status.policy else {
        unreachable!()
    };
    assert!(
        errors[0].contains("ignored: writable by group or others (mode 0666)"),
        "{errors:?}"
    );
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[tokio::test]
async fn misconfigured_at_start_until_a_good_policy_arrives() {
    let tb = world().await;
    let good = policy_json(&tb);
    let errors = vec!["/etc/lanyard/policy.json: idp.issuer: \"x\" is not a URL".to_owned()];
    let reported = errors.clone();
    let lanyard = start_engine(
        &tb,
        &json!({}),
        Options {
            tweak: Box::new(move |config| config.policy_errors = reported),
            ..Options::default()
        },
    );
    let status = lanyard.engine.status();
    assert_eq!(status.policy, PolicyStatus::Misconfigured { errors });
    assert_eq!(status.health(), Health::ActionNeeded);
    assert!(status.servers.is_empty());
    lanyard
        .engine
        .reject_policy(vec!["still wrong".into()])
        .await
        .expect("engine");
    assert_eq!(
        lanyard.engine.status().policy,
        PolicyStatus::Misconfigured {
            errors: vec!["still wrong".into()]
        },
        "still no good policy: still misconfigured"
    );

    lanyard
        .engine
        .apply_policy(Policy::from_json(&good.to_string(), "good").expect("valid"))
        .await
        .expect("engine");
    let status = lanyard
        .wait("applied and servers listed", |s| {
            s.policy == PolicyStatus::Applied && s.servers.len() == 3
        })
        .await;
    assert_ne!(status.health(), Health::ActionNeeded);
    lanyard.sign_in().await;
    lanyard.wait_granted("docs").await;
}
