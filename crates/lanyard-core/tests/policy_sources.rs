//! The policy sources port: the macOS layout (JSON file, per-user and machine-wide managed
//! preferences, the user's settings) read, merged and watched under a temporary root — the same
//! code that reads `/Library` on a Mac — and the choice between a named file and the platform.

#![cfg(unix)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use lanyard_core::policy::sources::linux_files::LinuxPolicyPaths;
use lanyard_core::policy::sources::macos_files::MacosPolicyPaths;
use lanyard_core::policy::sources::platform::PolicySources;
use lanyard_core::policy::{PolicyError, PolicySnapshot, Scope};
use serde_json::json;

#[path = "common/other_user.rs"]
mod other_user;
use other_user::OtherUser;

fn temp_root(name: &str) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "lanyard-sources-{}-{}-{name}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The macOS layout under `root`, for user `alice`; the JSON file may be owned by the test's user.
fn macos_paths(root: &Path) -> MacosPolicyPaths {
    let uid = std::fs::metadata(root).expect("root").uid();
    MacosPolicyPaths {
        managed_dir: root.join("Library/Managed Preferences"),
        user: Some("alice".into()),
        json_file: root.join("Library/Application Support/Lanyard/policy.json"),
        user_file: Some(root.join("Users/alice/Library/Application Support/Lanyard/config.json")),
        trusted_owner: Some(uid),
        ancestors_from: Some(root.to_owned()),
    }
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

const JSON_POLICY: &str = r#"{
  "idp": {"issuer": "https://idp.example", "client_id": "lanyard"},
  "servers": [{"id": "docs", "display_name": "Docs", "url": "https://docs.example/mcp", "client_id": "c1"}],
  "settings": {"max_concurrency": 3, "support_url": "https://json.example"}
}"#;

/// A per-user profile in the plain form: forced values, and a second server.
const USER_PLIST: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<plist version="1.0"><dict>
  <key>PayloadUUID</key><string>ignored</string>
  <key>servers</key><array><dict>
    <key>id</key><string>ci</string>
    <key>display_name</key><string>CI</string>
    <key>url</key><string>https://ci.example/mcp</string>
    <key>client_id</key><string>c2</string>
  </dict></array>
  <key>settings</key><dict>
    <key>max_concurrency</key><integer>5</integer>
    <key>refresh_at_fraction</key><real>0.6</real>
  </dict>
</dict></plist>"#;

/// The machine-wide profile in the Managed Client form: one forced value, one set-once default.
fn machine_plist(max_concurrency: u32) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<plist version="1.0"><dict>
  <key>dev.lanyard.tray</key><dict>
    <key>Forced</key><array><dict><key>mcx_preference_settings</key><dict>
      <key>settings</key><dict><key>max_concurrency</key><integer>{max_concurrency}</integer></dict>
    </dict></dict></array>
    <key>Set-Once</key><array><dict><key>mcx_preference_settings</key><dict>
      <key>settings</key><dict><key>notifications</key><false/></dict>
    </dict></dict></array>
  </dict>
</dict></plist>"#
    )
}

#[test]
fn macos_parts_merge_in_order_machine_profile_last() {
    let root = temp_root("order");
    let paths = macos_paths(&root);
    write(&paths.json_file, JSON_POLICY);
    let user_plist = paths.managed_dir.join("alice/dev.lanyard.tray.plist");
    let machine = paths.managed_dir.join("dev.lanyard.tray.plist");
    write(&user_plist, USER_PLIST);
    write(&machine, &machine_plist(9));
    write(
        paths.user_file.as_deref().expect("user file"),
        r#"{"settings": {"notifications": true, "max_concurrency": 1}}"#,
    );
    let sources = PolicySources::from_source(paths.clone());
    let snap = sources.load().expect("valid");
    let s = &snap.policy.settings;
    assert_eq!(s.max_concurrency, 9, "the machine-wide forced value wins");
    let origin = &snap.origins["settings.max_concurrency"];
    assert!(origin.locked);
    assert_eq!(origin.source, format!("{} (Forced)", machine.display()));
    assert!((s.refresh_at_fraction - 0.6).abs() < 1e-9);
    assert_eq!(
        snap.origins["settings.refresh_at_fraction"].source,
        user_plist.display().to_string(),
        "the per-user profile beats the JSON file"
    );
    assert_eq!(s.support_url.as_deref(), Some("https://json.example"));
    assert!(s.notifications, "a set-once value is only a default");
    assert!(!snap.origins["settings.notifications"].locked);
    assert_eq!(snap.origins["settings.notifications"].scope, Scope::User);
    let ids: Vec<&str> = snap.policy.servers.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["docs", "ci"], "servers are the union of every part");

    let locations = sources.locations();
    assert_eq!(locations.len(), 4, "{locations:?}");
    assert!(locations[0].starts_with(&paths.json_file.display().to_string()));
    assert!(locations[1].starts_with(&user_plist.display().to_string()));
    assert!(locations[2].starts_with(&machine.display().to_string()));
    assert!(locations[3].contains("config.json (user settings)"));
    assert_eq!(sources.explicit_file(), None);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn macos_missing_refused_and_broken_parts_are_named_errors() {
    let root = temp_root("errors");
    let paths = macos_paths(&root);
    // Only the user's own settings: no policy is installed.
    write(
        paths.user_file.as_deref().expect("user file"),
        r#"{"settings": {"notifications": true}}"#,
    );
    let errors = paths.read().errors;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].message.starts_with("no policy is installed"),
        "{}",
        errors[0]
    );

    // A JSON file anyone in the group may rewrite is refused, by name.
    write(&paths.json_file, JSON_POLICY);
    std::fs::set_permissions(&paths.json_file, std::fs::Permissions::from_mode(0o664))
        .expect("chmod");
    let errors = PolicySources::from_source(paths.clone())
        .load()
        .expect_err("group-writable");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].source_name, paths.json_file.display().to_string());
    assert!(errors[0].message.starts_with("ignored: "), "{}", errors[0]);
    assert!(errors[0].message.contains("chmod go-w"), "{}", errors[0]);
    std::fs::set_permissions(&paths.json_file, std::fs::Permissions::from_mode(0o644))
        .expect("chmod");

    // A JSON file owned by someone else (nobody trusted but root) is refused too.
    let mut untrusted = paths.clone();
    untrusted.trusted_owner = None;
    let uid = std::fs::metadata(&paths.json_file).expect("meta").uid();
    if uid != 0 {
        let errors = untrusted.read().errors;
        assert!(
            errors.iter().any(|e| e
                .message
                .contains(", not root; an administrator must own it")),
            "{errors:?}"
        );
    }

    // A broken profile is named, and the policy is not used half-read.
    let machine = paths.managed_dir.join("dev.lanyard.tray.plist");
    write(&machine, "<plist><dict><key>settings</key>");
    let errors = PolicySources::from_source(paths.clone())
        .load()
        .expect_err("broken plist");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].source_name, machine.display().to_string());
    assert!(errors[0].message.starts_with("not a valid property list"));

    // The same server id in the file and a profile is an error, not a silent pick.
    write(
        &machine,
        r#"<plist version="1.0"><dict><key>servers</key><array><dict>
        <key>id</key><string>docs</string><key>display_name</key><string>Docs 2</string>
        <key>url</key><string>https://docs2.example/mcp</string><key>client_id</key><string>c9</string>
        </dict></array></dict></plist>"#,
    );
    let errors = PolicySources::from_source(paths.clone())
        .load()
        .expect_err("duplicate server");
    assert!(
        errors.iter().any(|e| e.to_string().contains("docs")),
        "{errors:?}"
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn macos_watch_notices_the_first_profile_and_a_broken_one() {
    let root = temp_root("watch");
    let paths = macos_paths(&root);
    write(&paths.json_file, JSON_POLICY);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (tx, rx) = std::sync::mpsc::channel::<Result<PolicySnapshot, Vec<PolicyError>>>();
    let sources = PolicySources::from_source(paths.clone());
    assert_eq!(
        sources
            .load()
            .expect("valid")
            .policy
            .settings
            .max_concurrency,
        3
    );
    let _watcher = {
        let _inside = runtime.enter();
        sources
            .watch(Duration::from_millis(100), move |result| {
                let _ = tx.send(result);
            })
            .expect("watch")
    };
    // MDM installs the first profile: `Managed Preferences/` and the user's folder do not exist yet.
    let user_plist = paths.managed_dir.join("alice/dev.lanyard.tray.plist");
    write(&user_plist, USER_PLIST);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut seen = None;
    while std::time::Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(Ok(snap)) if snap.policy.settings.max_concurrency == 5 => {
                seen = Some(snap);
                break;
            }
            Ok(_) | Err(_) => {}
        }
    }
    let snap = seen.expect("the new profile applied within 10 s");
    assert_eq!(snap.policy.servers.len(), 2);

    // The machine-wide profile appears, broken: the re-read reports it by name.
    let machine = paths.managed_dir.join("dev.lanyard.tray.plist");
    write(&machine, "not a plist");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut errors = None;
    while std::time::Instant::now() < deadline {
        if let Ok(Err(e)) = rx.recv_timeout(Duration::from_millis(200)) {
            errors = Some(e);
            break;
        }
    }
    let errors = errors.expect("the broken profile reported within 10 s");
    assert_eq!(errors[0].source_name, machine.display().to_string());
    drop(runtime);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_named_file_is_read_by_the_file_rules_on_every_os() {
    let root = temp_root("named");
    let file = root.join("policy.json");
    write(&file, JSON_POLICY);
    write(
        &root.join("policy.d/20-more.json"),
        &json!({"settings": {"max_concurrency": 4}}).to_string(),
    );
    let sources = PolicySources::file(&file);
    assert_eq!(sources.explicit_file(), Some(file.as_path()));
    assert_eq!(sources.name(), file.display().to_string());
    let snap = sources.load().expect("valid");
    assert_eq!(
        snap.policy.settings.max_concurrency, 4,
        "fragments still apply"
    );
    assert_eq!(
        PolicySources::chosen(Some(&file)).explicit_file(),
        Some(file.as_path())
    );
    let platform = PolicySources::chosen(None);
    assert_eq!(platform.explicit_file(), None);
    assert!(!platform.locations().is_empty());
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn macos_a_profile_someone_else_owns_is_ignored_and_the_json_file_applies() {
    let Some(other) = OtherUser::create("macos_a_profile_someone_else_owns_is_ignored…") else {
        return;
    };
    let root = temp_root("planted-profile");
    let paths = MacosPolicyPaths {
        trusted_owner: None,
        ..macos_paths(&root)
    };
    write(&paths.json_file, JSON_POLICY);
    let machine = paths.managed_dir.join("dev.lanyard.tray.plist");
    write(&machine, &machine_plist(9));
    std::os::unix::fs::chown(&machine, Some(other.uid), None).expect("chown");
    let snap = PolicySources::from_source(paths.clone())
        .load()
        .expect("the JSON file still applies");
    assert_eq!(
        snap.policy.settings.max_concurrency, 3,
        "not the profile's 9"
    );
    assert_eq!(snap.refused.len(), 1, "{:?}", snap.refused);
    assert_eq!(snap.refused[0].source_name, machine.display().to_string());
    assert_eq!(
        snap.refused[0].message,
        format!(
            "ignored: owned by uid {}, not root; an administrator must own it (chown root {})",
            other.uid,
            machine.display()
        )
    );

    // The folder of the administrator's JSON file, taken by a user: nothing of it is read.
    std::os::unix::fs::chown(&machine, Some(0), None).expect("chown root");
    let folder = paths.json_file.parent().expect("folder").to_owned();
    std::os::unix::fs::chown(&folder, Some(other.uid), None).expect("chown");
    let snap = PolicySources::from_source(paths.clone())
        .load()
        .expect("the profile still applies");
    assert_eq!(snap.policy.settings.max_concurrency, 9);
    assert!(
        snap.policy.server("docs").is_none(),
        "the JSON file's server is not used"
    );
    assert!(
        snap.refused[0].message.contains(&format!(
            "its directory {} is owned by uid {}",
            folder.display(),
            other.uid
        )),
        "{:?}",
        snap.refused
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_named_policy_file_is_refused_over_a_managed_policy_unless_it_sets_dev_mode() {
    let root = temp_root("named-over-managed");
    let managed_paths = LinuxPolicyPaths {
        mandatory_file: root.join("etc/lanyard/policy.json"),
        mandatory_dir: root.join("etc/lanyard/policy.d"),
        user_file: None,
        trusted_owner: None,
        ancestors_from: Some(root.clone()),
    };
    let managed = PolicySources::from_source(managed_paths.clone());
    let named = root.join("mine.json");
    write(&named, JSON_POLICY);

    // No managed policy (a developer's laptop, the demo, the tests): any file may be named.
    let chosen = PolicySources::named_file_over(&managed, &named).expect("no managed policy");
    assert_eq!(chosen.explicit_file(), Some(named.as_path()));

    // A managed policy: refused, naming it.
    write(&managed_paths.mandatory_file, JSON_POLICY);
    let refused = PolicySources::named_file_over(&managed, &named).expect_err("managed");
    assert_eq!(
        refused,
        format!(
            "{} cannot replace this computer's managed policy ({}): a policy named with --policy \
             or LANYARD_POLICY is used only where the managed policy sets dev_mode. Remove \
             --policy and unset LANYARD_POLICY to use the managed policy.",
            named.display(),
            managed_paths.mandatory_file.display()
        )
    );

    // The managed policy allows it on a developer's machine.
    let mut dev: serde_json::Value = serde_json::from_str(JSON_POLICY).expect("json");
    dev["dev_mode"] = json!(true);
    write(&managed_paths.mandatory_file, &dev.to_string());
    assert!(PolicySources::named_file_over(&managed, &named).is_ok());

    // A managed file someone else could have planted is no managed policy: it blocks nothing.
    if let Some(other) = OtherUser::create("a_named_policy_file_is_refused_over…") {
        write(&managed_paths.mandatory_file, JSON_POLICY);
        std::os::unix::fs::chown(&managed_paths.mandatory_file, Some(other.uid), None)
            .expect("chown");
        assert!(PolicySources::named_file_over(&managed, &named).is_ok());
    }
    let _ = std::fs::remove_dir_all(&root);
}
