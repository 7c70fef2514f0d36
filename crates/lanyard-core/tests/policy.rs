//! The managed policy end to end without the network: merging sources with origins and locks,
//! every validation message, Linux file ownership, macOS plists, the Windows registry mapping, the
//! generated schema and the book's key table, the deployed examples, and a bounded fuzz of the parser.

#[cfg(unix)]
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use lanyard_core::admin_files::Trust;
#[cfg(unix)]
use lanyard_core::policy::sources::linux_files::LinuxPolicyPaths;
use lanyard_core::policy::sources::macos_plist::{
    layers_from_mobileconfig, layers_from_plist, read_managed_preferences,
};
use lanyard_core::policy::sources::windows_registry::{
    layers_from_trees, tree_to_json, RegistryKey, RegistryValue,
};
use lanyard_core::policy::{
    resolve, schema, FileChecks, Layer, LogLevel, Policy, PolicyError, Scope, ServerMode,
};
use serde_json::{json, Value};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn base() -> Value {
    json!({
        "idp": {"issuer": "https://idp.example", "client_id": "lanyard"},
        "servers": [
            {"id": "docs", "display_name": "Docs", "url": "https://docs.example/mcp", "client_id": "c1"}
        ]
    })
}

fn shown(errors: &[PolicyError]) -> Vec<String> {
    errors.iter().map(|e| e.to_string()).collect()
}

/// The errors of one JSON document as a mandatory source named `p.json`.
fn errors_of(document: Value) -> Vec<String> {
    let layers = [Layer::new("p.json", Scope::Mandatory, document)];
    match resolve(&layers, FileChecks::Readable) {
        Ok(_) => Vec::new(),
        Err(errors) => shown(&errors),
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "lanyard-policy-{}-{:x}-{name}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

// ---- merge ---------------------------------------------------------------------------------

#[test]
fn merge_precedence_locks_and_origins_across_sources() {
    let main = Layer::new(
        "/etc/lanyard/policy.json",
        Scope::Mandatory,
        json!({
            "idp": {"issuer": "https://idp.example", "client_id": "lanyard"},
            "servers": [{"id": "docs", "display_name": "Docs", "url": "https://docs.example/mcp", "client_id": "c1"}],
            "settings": {"max_concurrency": 8, "log_level": "info", "support_url": "https://it.example"}
        }),
    );
    let fragment = Layer::new(
        "/etc/lanyard/policy.d/20-ci.json",
        Scope::Mandatory,
        json!({
            "idp": {"client_id": "lanyard-2"},
            "servers": [{"id": "ci", "display_name": "CI", "url": "https://ci.example/mcp", "client_id": "c2"}],
            "settings": {"max_concurrency": 4}
        }),
    );
    let defaults = Layer::new(
        "profile (Set-Once)",
        Scope::Recommended,
        json!({"settings": {"autostart": false, "notifications": false, "max_concurrency": 200,
                            "ai_clients": ["cursor"]}}),
    );
    let user = Layer::new(
        "/home/u/.config/lanyard/config.json",
        Scope::User,
        json!({"settings": {"max_concurrency": 64, "log_level": "debug", "autostart": true}}),
    );
    // Layer order within the list must not matter across scopes: user and defaults come first.
    let snapshot = resolve(&[user, defaults, main, fragment], FileChecks::Readable).expect("valid");
    let p = &snapshot.policy;
    let idp = p.idp.as_ref().expect("idp");
    assert_eq!(idp.issuer, "https://idp.example");
    assert_eq!(idp.client_id, "lanyard-2", "the later mandatory file wins");
    let ids: Vec<&str> = p.servers.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["docs", "ci"]);
    assert_eq!(
        p.settings.max_concurrency, 4,
        "locked by the later mandatory file"
    );
    assert_eq!(
        p.settings.log_level,
        LogLevel::Debug,
        "log_level is not lockable: the user wins"
    );
    assert!(
        p.settings.autostart,
        "the user beats an administrator default"
    );
    assert!(
        !p.settings.notifications,
        "the administrator default applies"
    );
    assert_eq!(
        p.settings.support_url.as_deref(),
        Some("https://it.example")
    );

    let o = &snapshot.origins;
    let origin = |k: &str| {
        let x = o
            .get(k)
            .unwrap_or_else(|| panic!("no origin for {k}: {o:#?}"));
        (x.source.as_str(), x.key_path.as_str(), x.scope, x.locked)
    };
    assert_eq!(
        origin("settings.max_concurrency"),
        (
            "/etc/lanyard/policy.d/20-ci.json",
            "settings.max_concurrency",
            Scope::Mandatory,
            true
        )
    );
    assert_eq!(
        origin("settings.log_level"),
        (
            "/home/u/.config/lanyard/config.json",
            "settings.log_level",
            Scope::User,
            false
        )
    );
    assert_eq!(
        origin("settings.notifications"),
        (
            "profile (Set-Once)",
            "settings.notifications",
            Scope::Recommended,
            false
        )
    );
    assert_eq!(
        origin("servers[1]"),
        (
            "/etc/lanyard/policy.d/20-ci.json",
            "servers[0]",
            Scope::Mandatory,
            true
        )
    );
    assert_eq!(origin("idp.issuer").0, "/etc/lanyard/policy.json");
    assert_eq!(
        origin("idp.client_id").0,
        "/etc/lanyard/policy.d/20-ci.json"
    );
    assert!(!o.contains_key("settings.proxy"), "defaults have no origin");
}

#[test]
fn a_mandatory_non_lockable_value_is_only_a_default() {
    let admin = Layer::new(
        "a",
        Scope::Mandatory,
        json!({"settings": {"notifications": false}}),
    );
    let user = Layer::new(
        "u",
        Scope::User,
        json!({"settings": {"notifications": true}}),
    );
    let snap = resolve(std::slice::from_ref(&admin), FileChecks::Readable).expect("valid");
    assert!(!snap.policy.settings.notifications);
    assert!(!snap.origins["settings.notifications"].locked);
    let snap = resolve(&[admin, user], FileChecks::Readable).expect("valid");
    assert!(snap.policy.settings.notifications);
}

#[test]
fn errors_in_a_merged_policy_name_the_source_and_its_own_key_path() {
    let main = Layer::new("/etc/lanyard/policy.json", Scope::Mandatory, base());
    let fragment = Layer::new(
        "/etc/lanyard/policy.d/20-ci.json",
        Scope::Mandatory,
        json!({"servers": [
            {"id": "ci", "display_name": "CI", "url": "http://ci.example/mcp", "client_id": "c2"},
            {"id": "docs", "display_name": "Docs 2", "url": "https://d.example", "client_id": "c3"}
        ]}),
    );
    let errors = shown(&resolve(&[main, fragment], FileChecks::Readable).expect_err("invalid"));
    assert_eq!(
        errors,
        [
            "/etc/lanyard/policy.d/20-ci.json: servers[1].id: duplicate server id \"docs\" (already defined by /etc/lanyard/policy.json)",
            // Reported in the same run (not only once the duplicate is fixed).
            "/etc/lanyard/policy.d/20-ci.json: servers[0].url: \"http://ci.example/mcp\" must use https",
        ]
    );
    // With the duplicate gone, the meaning error is attributed the same way.
    let main = Layer::new("/etc/lanyard/policy.json", Scope::Mandatory, base());
    let fragment = Layer::new(
        "/etc/lanyard/policy.d/20-ci.json",
        Scope::Mandatory,
        json!({"servers": [{"id": "ci", "display_name": "CI", "url": "http://ci.example/mcp", "client_id": "c2"}]}),
    );
    let errors = shown(&resolve(&[main, fragment], FileChecks::Readable).expect_err("invalid"));
    assert_eq!(
        errors,
        ["/etc/lanyard/policy.d/20-ci.json: servers[0].url: \"http://ci.example/mcp\" must use https"]
    );
}

#[test]
fn a_user_file_may_not_set_administrator_keys_and_missing_keys_name_the_section_source() {
    let user = Layer::new(
        "config.json",
        Scope::User,
        json!({"dev_mode": true, "servers": []}),
    );
    assert_eq!(
        shown(&resolve(&[user], FileChecks::Readable).expect_err("refused")),
        [
            "config.json: dev_mode: only the administrator's policy can set this",
            "config.json: servers: only the administrator's policy can set this",
        ]
    );
    let half = Layer::new(
        "a.json",
        Scope::Mandatory,
        json!({"idp": {"issuer": "https://idp.example"}}),
    );
    assert_eq!(
        shown(&resolve(&[half], FileChecks::Readable).expect_err("incomplete")),
        ["a.json: idp: missing required key \"client_id\""]
    );
}

// ---- every validation message ------------------------------------------------------------------

/// An administrator fixing a policy from an MDM console sees every problem in one run: shape
/// errors of different sections and the meaning of the values that could be read, together.
#[test]
fn every_problem_of_a_policy_is_reported_in_one_go() {
    let errors = errors_of(json!({"idp": {"issuer": "http://x"}, "servers": [{"id": "a"}]}));
    for expected in [
        "p.json: servers[0]: missing required key \"display_name\"",
        "p.json: servers[0]: missing required key \"url\"",
        "p.json: idp: missing required key \"client_id\"",
        "p.json: idp.issuer: \"http://x\" must use https",
    ] {
        assert!(
            errors.iter().any(|e| e == expected),
            "missing {expected:?} in {errors:#?}"
        );
    }
    assert_eq!(errors.len(), 4, "each problem once: {errors:#?}");

    // A section of the wrong type hides no other problem, and invents none: the server is not
    // told it lacks an `idp` section, and a second server's plain-HTTP URL is still named.
    let errors = errors_of(json!({
        "idp": {"issuer": 5, "client_id": "lanyard"},
        "servers": [
            {"id": "a", "display_name": "A", "url": 7, "client_id": "c"},
            {"id": "b", "display_name": "B", "url": "http://b.example/mcp", "client_id": "c"}
        ],
        "settings": {"refresh_at_fraction": 0.99}
    }));
    for expected in [
        "p.json: idp.issuer: expected text, found the number 5",
        "p.json: servers[0].url: expected text, found the number 7",
        "p.json: servers[1].url: \"http://b.example/mcp\" must use https",
        "p.json: settings.refresh_at_fraction: must be between 0.5 and 0.9",
    ] {
        assert!(
            errors.iter().any(|e| e == expected),
            "missing {expected:?} in {errors:#?}"
        );
    }
    assert!(
        !errors
            .iter()
            .any(|e| e.contains("needs an `idp` section") || e.contains("stand-in")),
        "{errors:#?}"
    );
    assert_eq!(errors.len(), 4, "{errors:#?}");
}

#[test]
fn every_validation_error_has_its_exact_message() {
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut doc = base();
        edit(&mut doc);
        errors_of(doc)
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            with(&|d| {
                d["servers"][0]["mode"] = json!("oauth");
                d["servers"][0]["client_id"] = json!("");
            }),
            "p.json: servers[0].client_id: oauth needs a client identity: client_id (registered at the server's authorization server), client_id_metadata_url, or \"allow_dynamic_registration\": true",
        ),
        (
            with(&|d| {
                d["servers"][0]["mode"] = json!("oauth");
                d["servers"][0]["client_id_metadata_url"] = json!("http://it.example/lanyard.json");
            }),
            "p.json: servers[0].client_id_metadata_url: \"http://it.example/lanyard.json\" must be an https URL with a path (the metadata document)",
        ),
        (
            with(&|d| d["servers"][0]["allow_dynamic_registration"] = json!(true)),
            "p.json: servers[0].allow_dynamic_registration: is for \"mode\": \"oauth\" only",
        ),
        (
            with(&|d| d["servers"][0]["client_id"] = json!(" ")),
            "p.json: servers[0].client_id: is required (Lanyard's client id at the server's authorization server) and must not be empty",
        ),
        (
            with(&|d| d["servers"][0]["urll"] = json!("x")),
            "p.json: servers[0].urll: unknown key; did you mean \"url\"?",
        ),
        (
            with(&|d| d["settings"] = json!({"log_levle": "info"})),
            "p.json: settings.log_levle: unknown key; did you mean \"log_level\"?",
        ),
        (
            with(&|d| d["zzzzzz"] = json!(1)),
            "p.json: zzzzzz: unknown key; expected one of: dev_mode, idp, servers, settings",
        ),
        (
            with(&|d| d["settings"] = json!({"max_concurrency": "8"})),
            "p.json: settings.max_concurrency: expected a whole number, found the text \"8\"",
        ),
        (
            with(&|d| d["settings"] = json!({"autostart": 1})),
            "p.json: settings.autostart: expected true or false, found the number 1",
        ),
        (
            with(&|d| d["servers"] = json!({"id": "x"})),
            "p.json: servers: expected a list, found an object",
        ),
        (
            with(&|d| d["settings"] = json!({"support_url": 5})),
            "p.json: settings.support_url: expected text, found the number 5",
        ),
        (
            with(&|d| d["servers"][0]["mode"] = json!("enterprise_managed")),
            "p.json: servers[0].mode: the text \"enterprise_managed\" is not one of \"enterprise-managed\", \"client-credentials\", \"workload-identity\", \"oauth\"; did you mean \"enterprise-managed\"?",
        ),
        (
            with(&|d| d["settings"] = json!({"log_level": "loud"})),
            "p.json: settings.log_level: the text \"loud\" is not one of \"error\", \"warn\", \"info\", \"debug\", \"trace\"",
        ),
        (
            with(&|d| d["servers"][0].as_object_mut().map(|m| m.remove("client_id")).map(|_| ()).unwrap_or(())),
            "p.json: servers[0].client_id: is required (Lanyard's client id at the server's authorization server) and must not be empty",
        ),
        (
            with(&|d| d["servers"][0]["client_auth"] = json!({"method": "tls_client_auth"})),
            "p.json: servers[0].client_auth.method: the text \"tls_client_auth\" is not one of \"none\", \"client_secret_basic\", \"client_secret_post\", \"private_key_jwt\"",
        ),
        (
            with(&|d| d["servers"][0]["client_auth"] = json!({"secret": {"env": "X"}})),
            "p.json: servers[0].client_auth: missing required key \"method\"",
        ),
        (
            with(&|d| d["servers"][0]["client_auth"] = json!({"method": "client_secret_basic", "secret": {"keychian": "x"}})),
            "p.json: servers[0].client_auth.secret.keychian: unknown key; did you mean \"keychain\"?",
        ),
        (
            with(&|d| d["servers"][0]["client_auth"] = json!({"method": "client_secret_basic", "secret": "hunter2"})),
            "p.json: servers[0].client_auth.secret: expected an object, found the text \"hunter2\"",
        ),
        (
            with(&|d| d["servers"][0]["client_auth"] = json!({"method": "none", "secret": {"env": "X"}})),
            "p.json: servers[0].client_auth.secret: unknown key; expected one of: method",
        ),
        (
            with(&|d| d["idp"]["issuer"] = json!("not a url")),
            "p.json: idp.issuer: \"not a url\" is not a URL (relative URL without a base)",
        ),
        (
            with(&|d| d["servers"][0]["url"] = json!("http://127.0.0.1:8080/mcp")),
            "p.json: servers[0].url: \"http://127.0.0.1:8080/mcp\" uses plain HTTP; loopback HTTP is allowed only with dev_mode",
        ),
        (
            with(&|d| d["servers"][0]["authorization_server"] = json!("http://as.example")),
            "p.json: servers[0].authorization_server: \"http://as.example\" must use https",
        ),
        (
            with(&|d| d["servers"][0]["resource"] = json!("::")),
            "p.json: servers[0].resource: \"::\" is not a URL (relative URL without a base)",
        ),
        (
            with(&|d| {
                let copy = d["servers"][0].clone();
                d["servers"].as_array_mut().map(|a| a.push(copy)).unwrap_or(())
            }),
            "p.json: servers[1].id: duplicate server id \"docs\"",
        ),
        (
            with(&|d| d["servers"][0]["id"] = json!("my docs")),
            "p.json: servers[0].id: \"my docs\" must be non-empty letters, digits, '-', '_' or '.'",
        ),
        (
            with(&|d| d["servers"][0]["display_name"] = json!(" ")),
            "p.json: servers[0].display_name: must not be empty",
        ),
        (
            with(&|d| {
                d["servers"][0]["client_auth"] =
                    json!({"method": "client_secret_post", "secret": {"env": "S"}});
            }),
            "p.json: servers[0].authorization_server: a server Lanyard authenticates to with a secret or a key needs `authorization_server` (or `allowed_authorization_servers`): the MCP server must not choose where the credential is sent",
        ),
        (
            with(&|d| {
                d["servers"][0]["allowed_extra_scopes"] = json!(["docs.write admin"]);
            }),
            "p.json: servers[0].allowed_extra_scopes[0]: \"docs.write admin\" is not a scope (one token, no spaces)",
        ),
        (
            with(&|d| d["servers"][0]["client_id"] = json!("")),
            "p.json: servers[0].client_id: is required (Lanyard's client id at the server's authorization server) and must not be empty",
        ),
        (
            with(&|d| d["idp"]["client_id"] = json!(" ")),
            "p.json: idp.client_id: must not be empty",
        ),
        (
            with(&|d| d["idp"]["scopes"] = json!(["email"])),
            "p.json: idp.scopes: must include \"openid\"",
        ),
        (
            with(&|d| d["idp"]["sign_in"] = json!("saml")),
            // Absent keys have no source to name.
            "(merged policy): idp.saml_sso_url: is required with \"sign_in\": \"saml\"",
        ),
        (
            with(&|d| {
                d["idp"]["sign_in"] = json!("saml");
                d["idp"]["saml_sso_url"] = json!("ftp://idp.example/sso");
            }),
            "p.json: idp.saml_sso_url: \"ftp://idp.example/sso\" must use https",
        ),
        (
            with(&|d| {
                d.as_object_mut().map(|m| m.remove("idp")).map(|_| ()).unwrap_or(())
            }),
            "p.json: servers[0].mode: enterprise-managed needs an `idp` section",
        ),
        (
            with(&|d| d["servers"][0]["mode"] = json!("client-credentials")),
            "p.json: servers[0].client_auth: client-credentials needs a secret or a private key",
        ),
        (
            with(&|d| d["settings"] = json!({"refresh_at_fraction": 0.95})),
            "p.json: settings.refresh_at_fraction: must be between 0.5 and 0.9",
        ),
        (
            with(&|d| d["settings"] = json!({"max_concurrency": 0})),
            "p.json: settings.max_concurrency: must be between 1 and 256",
        ),
        (
            with(&|d| d["settings"] = json!({"max_concurrency": -1})),
            "p.json: settings.max_concurrency: must be between 1 and 256",
        ),
        (
            with(&|d| d["settings"] = json!({"max_concurrency_per_host": 0})),
            "p.json: settings.max_concurrency_per_host: must be between 1 and 256",
        ),
        (
            with(&|d| d["settings"] = json!({"refresh_jitter": 0.5})),
            "p.json: settings.refresh_jitter: must be between 0 and 0.4",
        ),
        (
            with(&|d| d["settings"] = json!({"recovery_jitter_secs": 7200})),
            "p.json: settings.recovery_jitter_secs: must be between 0 and 3600",
        ),
        (
            with(&|d| d["settings"] = json!({"on_demand_servers": ["nope"]})),
            "p.json: settings.on_demand_servers[0]: \"nope\" is no configured server id (or `*` for all)",
        ),
        (
            with(&|d| d["settings"] = json!({"support_url": "http://it.example"})),
            "p.json: settings.support_url: \"http://it.example\" must use https or mailto",
        ),
        (
            with(&|d| d["settings"] = json!({"proxy": "ftp://proxy.example"})),
            "p.json: settings.proxy: \"ftp://proxy.example\" must be an http, https or socks5 proxy URL",
        ),
        (
            with(&|d| {
                d["servers"][0]["client_auth"] = json!({"method": "private_key_jwt", "key_file": "/nonexistent/lanyard.pem"});
                d["servers"][0]["authorization_server"] = json!("https://as.example");
            }),
            "p.json: servers[0].client_auth.key_file: cannot read the key file /nonexistent/lanyard.pem: No such file or directory (os error 2)",
        ),
        (
            with(&|d| d["idp"]["client_auth"] = json!({"method": "client_secret_post", "secret": {"file": "/nonexistent/s"}})),
            "p.json: idp.client_auth.secret.file: cannot read the secret file /nonexistent/s: No such file or directory (os error 2)",
        ),
        (
            with(&|d| d["settings"] = json!({"extra_ca_files": ["/nonexistent/ca.pem"]})),
            "p.json: settings.extra_ca_files[0]: cannot read the CA bundle /nonexistent/ca.pem: No such file or directory (os error 2)",
        ),
        (
            errors_of(json!([1, 2])),
            "p.json: .: expected an object at the top of the document",
        ),
    ];
    for (errors, expected) in cases {
        assert_eq!(errors, [expected.to_owned()]);
    }
    // Several problems are all reported at once.
    let mut doc = base();
    doc["servers"][0]["urll"] = json!(1);
    doc["settings"] = json!({"autostart": "yes", "notification": true});
    assert_eq!(errors_of(doc).len(), 3);
    // JSON syntax errors carry line and column.
    assert_eq!(
        shown(&Policy::from_json("{\n  \"idp\": }", "p.json").expect_err("syntax")),
        ["p.json: .: not valid JSON: expected value at line 2 column 10"]
    );
    // dev_mode allows loopback HTTP, and only loopback.
    let mut dev = base();
    dev["dev_mode"] = json!(true);
    dev["servers"][0]["url"] = json!("http://127.0.0.1:8080/mcp");
    assert!(errors_of(dev.clone()).is_empty());
    dev["servers"][0]["url"] = json!("http://10.0.0.1/mcp");
    assert_eq!(
        errors_of(dev),
        ["p.json: servers[0].url: \"http://10.0.0.1/mcp\" must use https"]
    );
}

#[test]
fn the_testbed_demo_shape_still_parses() {
    let doc = json!({
        "idp": {"issuer": "http://127.0.0.1:1234", "client_id": "lanyard-desktop",
                "client_auth": {"method": "none"}, "scopes": ["openid", "offline_access", "email"]},
        "servers": [{"id": "docs", "display_name": "Docs", "url": "http://127.0.0.1:1/mcp",
                     "client_id": "lanyard-docs", "client_auth": {"method": "none"},
                     "scopes": ["docs.read"], "mode": "enterprise-managed"}],
        "dev_mode": true
    });
    let p = Policy::from_json(&doc.to_string(), "demo").expect("valid");
    assert_eq!(p.servers[0].mode, ServerMode::EnterpriseManaged);
    assert_eq!(p.settings.max_concurrency, 32);
}

// ---- Linux files ---------------------------------------------------------------------------

#[cfg(unix)]
fn write(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[cfg(unix)]
fn linux_paths(dir: &Path) -> LinuxPolicyPaths {
    LinuxPolicyPaths {
        mandatory_file: dir.join("policy.json"),
        mandatory_dir: dir.join("policy.d"),
        user_file: Some(dir.join("user/config.json")),
        trusted_owner: None,
        ancestors_from: Some(dir.to_owned()),
    }
}

#[cfg(unix)]
#[path = "common/other_user.rs"]
mod other_user;
#[cfg(unix)]
use other_user::OtherUser;

#[test]
#[cfg(unix)]
fn linux_mandatory_files_must_be_root_owned_and_not_writable_by_others() {
    let Some(other) = OtherUser::create("linux_mandatory_files_must_be_root_owned…") else {
        return;
    };
    let dir = temp_dir("perms");
    let paths = linux_paths(&dir);
    let file = &paths.mandatory_file;
    write(file, &base().to_string(), 0o644);
    std::fs::create_dir_all(&paths.mandatory_dir).expect("mkdir");
    std::fs::set_permissions(&paths.mandatory_dir, std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    write(
        &paths.mandatory_dir.join("10-ci.json"),
        &json!({"settings": {"max_concurrency": 3}}).to_string(),
        0o600,
    );
    let snap = paths.load().expect("root-owned 0644 is fine");
    assert_eq!(snap.policy.settings.max_concurrency, 3);
    assert!(snap.refused.is_empty());

    // The main file writable by its group: ignored by name, the fragment still applies.
    write(file, &base().to_string(), 0o664);
    let snap = paths.load().expect("the rest of the policy");
    assert_eq!(
        shown(&snap.refused),
        [format!(
            "{0}: .: ignored: writable by group or others (mode 0664); an administrator must \
             remove that (chmod go-w {0})",
            file.display()
        )]
    );
    assert!(
        snap.policy.idp.is_none(),
        "nothing of the ignored file is used"
    );
    assert_eq!(snap.policy.settings.max_concurrency, 3);
    write(file, &base().to_string(), 0o646);
    assert_eq!(
        paths.load().expect("rest").refused.len(),
        1,
        "world-writable"
    );

    // Owned by another user.
    write(file, &base().to_string(), 0o644);
    std::os::unix::fs::chown(file, Some(other.uid), None).expect("chown");
    let snap = paths.load().expect("the rest of the policy");
    assert_eq!(
        shown(&snap.refused),
        [format!(
            "{0}: .: ignored: owned by uid {1}, not root; an administrator must own it \
             (chown root {0})",
            file.display(),
            other.uid
        )]
    );
    // A file named explicitly may belong to the user running Lanyard.
    let mut trusting = paths.clone();
    trusting.trusted_owner = Some(other.uid);
    let snap = trusting.load().expect("trusted");
    assert!(snap.refused.is_empty() && snap.policy.idp.is_some());
    std::os::unix::fs::chown(file, Some(0), None).expect("chown root");

    // A fragment: ignored, the main file applies.
    let fragment = paths.mandatory_dir.join("20-evil.json");
    write(
        &fragment,
        &json!({"settings": {"max_concurrency": 99}}).to_string(),
        0o644,
    );
    std::os::unix::fs::chown(&fragment, Some(other.uid), None).expect("chown");
    let snap = paths.load().expect("the rest of the policy");
    assert_eq!(
        shown(&snap.refused),
        [format!(
            "{0}: .: ignored: owned by uid {1}, not root; an administrator must own it \
             (chown root {0})",
            fragment.display(),
            other.uid
        )]
    );
    assert_eq!(
        snap.policy.settings.max_concurrency, 3,
        "not the planted 99"
    );
    assert!(snap.policy.idp.is_some());
    std::fs::remove_file(&fragment).expect("rm");

    // The fragments directory itself, world-writable: all of it ignored.
    std::fs::set_permissions(&paths.mandatory_dir, std::fs::Permissions::from_mode(0o777))
        .expect("chmod");
    let snap = paths.load().expect("the main file");
    assert_eq!(
        shown(&snap.refused),
        [format!(
            "{0}: .: ignored: its directory {0} is writable by group or others (mode 0777); an \
             administrator must remove that (chmod go-w {0})",
            paths.mandatory_dir.display()
        )]
    );
    assert_eq!(
        snap.policy.settings.max_concurrency, 32,
        "the fragment is not used"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[cfg(unix)]
fn linux_every_directory_above_the_policy_must_be_roots_and_not_writable_by_others() {
    let Some(other) = OtherUser::create("linux_every_directory_above_the_policy…") else {
        return;
    };
    // A copy of the system layout under a root-owned test root: <root>/etc/lanyard/policy.json.
    let root = temp_dir("ancestors");
    let etc = root.join("etc");
    let lanyard = etc.join("lanyard");
    std::fs::create_dir_all(&lanyard).expect("mkdir");
    let paths = LinuxPolicyPaths {
        mandatory_file: lanyard.join("policy.json"),
        mandatory_dir: lanyard.join("policy.d"),
        user_file: None,
        trusted_owner: None,
        ancestors_from: Some(root.clone()),
    };
    write(&paths.mandatory_file, &base().to_string(), 0o644);
    assert!(paths.load().expect("all root's").refused.is_empty());

    // A standard user owns a directory on the way (their own "Lanyard" folder).
    std::os::unix::fs::chown(&lanyard, Some(other.uid), None).expect("chown");
    let errors = paths.load().expect_err("nothing else to load");
    assert_eq!(
        shown(&errors),
        [format!(
            "{0}: .: ignored: its directory {1} is owned by uid {2}, not root; an administrator \
             must own it (chown root {1})",
            paths.mandatory_file.display(),
            lanyard.display(),
            other.uid
        )]
    );
    std::os::unix::fs::chown(&lanyard, Some(0), None).expect("chown root");

    // A sticky, world-writable directory higher up (like /tmp) is no place for a policy either.
    std::fs::set_permissions(&etc, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    let errors = paths.load().expect_err("refused");
    assert_eq!(
        shown(&errors),
        [format!(
            "{0}: .: ignored: its directory {1} is writable by group or others (mode 1777); an \
             administrator must remove that (chmod go-w {1})",
            paths.mandatory_file.display(),
            etc.display()
        )]
    );
    std::fs::set_permissions(&etc, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    // A link to a root-owned file in a directory anyone may write: judged where it leads.
    let open_dir = root.join("open");
    std::fs::create_dir_all(&open_dir).expect("mkdir");
    std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    let elsewhere = open_dir.join("policy.json");
    write(&elsewhere, &base().to_string(), 0o644);
    std::fs::remove_file(&paths.mandatory_file).expect("rm");
    std::os::unix::fs::symlink(&elsewhere, &paths.mandatory_file).expect("symlink");
    let errors = shown(&paths.load().expect_err("refused"));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains(&format!(
            "its directory {} is writable by group or others (mode 1777)",
            open_dir.display()
        )),
        "{errors:?}"
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
#[cfg(unix)]
fn a_users_own_config_may_not_set_the_proxy_or_extra_ca_files() {
    let dir = temp_dir("user-proxy");
    let paths = linux_paths(&dir);
    std::fs::create_dir_all(dir.join("user")).expect("mkdir");
    write(&paths.mandatory_file, &base().to_string(), 0o644);
    let user_file = dir.join("user/config.json");
    write(
        &user_file,
        &json!({"settings": {"proxy": "http://127.0.0.1:8080", "extra_ca_files": ["/tmp/mine.pem"],
            "notifications": false}})
        .to_string(),
        0o644,
    );
    let message = "only the administrator's policy can set this (it decides where sign-ins \
                   travel and which certificates are trusted); remove it from this file";
    let mut errors = shown(&paths.load().expect_err("refused"));
    errors.sort();
    assert_eq!(
        errors,
        [
            format!(
                "{}: settings.extra_ca_files: {message}",
                user_file.display()
            ),
            format!("{}: settings.proxy: {message}", user_file.display()),
        ]
    );
    // The same keys from an administrator's layer, or as an administrator's default, are fine.
    let mut admin = base();
    admin["settings"] = json!({"proxy": "http://127.0.0.1:8080"});
    write(&paths.mandatory_file, &admin.to_string(), 0o644);
    write(
        &user_file,
        r#"{"settings": {"notifications": false}}"#,
        0o644,
    );
    let snap = paths.load().expect("valid");
    assert_eq!(
        snap.policy.settings.proxy.as_deref(),
        Some("http://127.0.0.1:8080")
    );
    assert!(snap.origins["settings.proxy"].locked);
    let recommended = Layer::new(
        "set-once.plist",
        Scope::Recommended,
        json!({"settings": {"proxy": "http://127.0.0.1:3128"}}),
    );
    let snap = resolve(&[recommended], FileChecks::Readable).expect("an administrator's default");
    assert_eq!(
        snap.policy.settings.proxy.as_deref(),
        Some("http://127.0.0.1:3128")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[cfg(unix)]
fn ca_bundles_must_be_an_administrators_file() {
    let Some(other) = OtherUser::create("ca_bundles_must_be_an_administrators_file") else {
        return;
    };
    let dir = temp_dir("ca");
    let ca = dir.join("corp-ca.pem");
    write(
        &ca,
        "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
        0o644,
    );
    let mut policy = base();
    policy["settings"] = json!({"extra_ca_files": [ca]});
    assert_eq!(
        errors_of(policy.clone()),
        Vec::<String>::new(),
        "root's, 0644"
    );

    std::os::unix::fs::chown(&ca, Some(other.uid), None).expect("chown");
    assert_eq!(
        errors_of(policy.clone()),
        [format!(
            "p.json: settings.extra_ca_files[0]: the CA bundle {0} is refused: owned by uid {1}, \
             not root; an administrator must own it (chown root {0})",
            ca.display(),
            other.uid
        )]
    );
    std::os::unix::fs::chown(&ca, Some(0), None).expect("chown root");
    std::fs::set_permissions(&ca, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    assert_eq!(
        errors_of(policy.clone()),
        [format!(
            "p.json: settings.extra_ca_files[0]: the CA bundle {0} is refused: writable by group \
             or others (mode 0666); an administrator must remove that (chmod go-w {0})",
            ca.display()
        )]
    );
    // The engine reads the bundle through the same check.
    let settings = lanyard_core::policy::Settings {
        extra_ca_files: vec![ca.clone()],
        ..Default::default()
    };
    let refused = lanyard_core::engine::credentials::http_config_for(
        &settings,
        lanyard_core::oauth::HttpConfig::default(),
    )
    .expect_err("refused");
    assert!(
        refused.contains("is refused: writable by group or others"),
        "{refused}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[cfg(unix)]
fn linux_fragments_apply_in_name_order_and_the_user_file_fills_unlocked_settings() {
    let dir = temp_dir("order");
    let paths = linux_paths(&dir);
    std::fs::create_dir_all(&paths.mandatory_dir).expect("mkdir");
    std::fs::create_dir_all(dir.join("user")).expect("mkdir");
    write(&paths.mandatory_file, &base().to_string(), 0o644);
    write(
        &paths.mandatory_dir.join("20-b.json"),
        r#"{"settings": {"min_refresh_lead_secs": 20}}"#,
        0o644,
    );
    write(
        &paths.mandatory_dir.join("10-a.json"),
        r#"{"settings": {"min_refresh_lead_secs": 10, "max_concurrency": 5}}"#,
        0o644,
    );
    write(&paths.mandatory_dir.join("notes.txt"), "ignored", 0o644);
    write(
        &dir.join("user/config.json"),
        r#"{"settings": {"max_concurrency": 50, "notifications": false}}"#,
        0o666,
    );
    let snap = paths.load().expect("valid");
    assert_eq!(snap.policy.settings.min_refresh_lead_secs, 20);
    assert_eq!(snap.policy.settings.max_concurrency, 5, "locked");
    assert!(!snap.policy.settings.notifications, "the user's choice");
    assert_eq!(
        snap.origins["settings.notifications"].source,
        dir.join("user/config.json").display().to_string()
    );

    write(
        &dir.join("user/config.json"),
        r#"{"settings": {"notifications": "no"}}"#,
        0o644,
    );
    assert_eq!(
        shown(&paths.load().expect_err("bad user file")),
        [format!(
            "{}: settings.notifications: expected true or false, found the text \"no\"",
            dir.join("user/config.json").display()
        )]
    );
    std::fs::remove_file(dir.join("user/config.json")).expect("rm");
    std::fs::remove_file(&paths.mandatory_file).expect("rm");
    for f in ["10-a.json", "20-b.json"] {
        std::fs::remove_file(paths.mandatory_dir.join(f)).expect("rm");
    }
    let errors = shown(&paths.load().expect_err("nothing installed"));
    assert_eq!(
        errors,
        [format!(
            "{}: .: no policy is installed (neither this file nor {}/*.json exists)",
            paths.mandatory_file.display(),
            paths.mandatory_dir.display()
        )]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- macOS plists --------------------------------------------------------------------------

const FORCED_PLIST: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0"><dict>
  <key>PayloadUUID</key><string>ignored</string>
  <key>idp</key><dict>
    <key>issuer</key><string>https://idp.example</string>
    <key>client_id</key><string>lanyard</string>
  </dict>
  <key>servers</key><array><dict>
    <key>id</key><string>docs</string>
    <key>display_name</key><string>Docs</string>
    <key>url</key><string>https://docs.example/mcp</string>
    <key>client_id</key><string>c1</string>
  </dict></array>
  <key>settings</key><dict>
    <key>max_concurrency</key><integer>7</integer>
    <key>refresh_at_fraction</key><real>0.6</real>
    <key>autostart</key><false/>
  </dict>
</dict></plist>"#;

const MCX_PLIST: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<plist version="1.0"><dict>
  <key>dev.lanyard.tray</key><dict>
    <key>Forced</key><array><dict><key>mcx_preference_settings</key><dict>
      <key>settings</key><dict><key>max_concurrency</key><integer>9</integer></dict>
    </dict></dict></array>
    <key>Set-Once</key><array><dict><key>mcx_preference_settings</key><dict>
      <key>settings</key><dict>
        <key>notifications</key><false/>
        <key>support_url</key><string>https://it.example</string>
        <key>max_concurrency</key><integer>100</integer>
      </dict>
    </dict></dict></array>
  </dict>
</dict></plist>"#;

#[test]
fn macos_forced_values_lock_and_set_once_values_are_defaults() {
    let forced = layers_from_plist(FORCED_PLIST.as_bytes(), "forced.plist").expect("plist");
    assert_eq!(forced.len(), 1);
    assert_eq!(forced[0].scope, Scope::Mandatory);
    assert!(forced[0].document.get("PayloadUUID").is_none());
    let mcx = layers_from_plist(MCX_PLIST.as_bytes(), "mcx.plist").expect("plist");
    let scopes: Vec<(String, Scope)> = mcx.iter().map(|l| (l.source.clone(), l.scope)).collect();
    assert_eq!(
        scopes,
        [
            ("mcx.plist (Set-Once)".to_owned(), Scope::Recommended),
            ("mcx.plist (Forced)".to_owned(), Scope::Mandatory)
        ]
    );
    let user = Layer::new(
        "user",
        Scope::User,
        json!({"settings": {"notifications": true, "max_concurrency": 1, "support_url": "https://mine.example"}}),
    );
    let mut layers = forced;
    layers.extend(mcx);
    layers.push(user);
    let snap = resolve(&layers, FileChecks::Readable).expect("valid");
    let s = &snap.policy.settings;
    assert_eq!(s.max_concurrency, 9, "the later forced value locks");
    assert!((s.refresh_at_fraction - 0.6).abs() < 1e-9);
    assert!(!s.autostart);
    assert!(s.notifications, "set-once is only a default");
    assert_eq!(s.support_url.as_deref(), Some("https://mine.example"));
    assert!(snap.origins["settings.max_concurrency"].locked);
    assert_eq!(
        snap.origins["settings.max_concurrency"].source,
        "mcx.plist (Forced)"
    );
    assert!(!snap.origins["settings.support_url"].locked);

    // Without the user's layer, the set-once value applies.
    let mcx = layers_from_plist(MCX_PLIST.as_bytes(), "mcx.plist").expect("plist");
    let snap = resolve(&mcx, FileChecks::Readable).expect("valid");
    assert!(!snap.policy.settings.notifications);
    assert_eq!(
        snap.origins["settings.notifications"].scope,
        Scope::Recommended
    );
}

#[test]
fn macos_plist_errors_are_named() {
    let bad = r#"<plist version="1.0"><dict><key>settings</key><dict>
        <key>proxy</key><data>aGVsbG8=</data></dict></dict></plist>"#;
    assert_eq!(
        layers_from_plist(bad.as_bytes(), "x.plist")
            .expect_err("data")
            .to_string(),
        "x.plist: settings.proxy: data is not a policy value (secrets belong in the keychain)"
    );
    let err = layers_from_plist(b"not a plist", "x.plist").expect_err("garbage");
    assert!(
        err.message.starts_with("not a valid property list"),
        "{err}"
    );
    // Managed preferences on disk: machine-wide last (it wins over the per-user file).
    let root = temp_dir("mp");
    std::fs::create_dir_all(root.join("alice")).expect("mkdir");
    std::fs::write(root.join("dev.lanyard.tray.plist"), FORCED_PLIST).expect("write");
    std::fs::write(root.join("alice/dev.lanyard.tray.plist"), MCX_PLIST).expect("write");
    let trust = Trust {
        also_uid: None,
        ancestors_from: Some(root.clone()),
    };
    let read = read_managed_preferences(&root, Some("alice"), &trust);
    assert!(read.errors.is_empty());
    let snap = resolve(&read.layers, FileChecks::Readable).expect("valid");
    assert_eq!(
        snap.policy.settings.max_concurrency, 7,
        "machine beats user"
    );
    let _ = std::fs::remove_dir_all(&root);
}

// ---- Windows registry ----------------------------------------------------------------------

fn sz(s: &str) -> RegistryValue {
    RegistryValue::String(s.to_owned())
}

#[test]
fn registry_tree_maps_onto_the_model_and_the_machine_wins() {
    let machine = RegistryKey::new()
        .subkey(
            "IDP",
            RegistryKey::new()
                .value("Issuer", sz("https://idp.example"))
                .value("client_id", sz("lanyard"))
                .value(
                    "scopes",
                    RegistryValue::MultiString(vec!["openid".into(), "email".into()]),
                ),
        )
        .subkey(
            "servers",
            RegistryKey::new()
                .subkey(
                    "docs",
                    RegistryKey::new()
                        .value("display_name", sz("Docs"))
                        .value("url", sz("https://docs.example/mcp"))
                        .value("client_id", sz("c1"))
                        .subkey(
                            "scopes",
                            RegistryKey::new()
                                .value("10", sz("c"))
                                .value("2", sz("b"))
                                .value("1", sz("a")),
                        ),
                )
                .subkey(
                    "ci",
                    RegistryKey::new()
                        .value("display_name", sz("CI"))
                        .value("url", sz("https://ci.example/mcp"))
                        .value("authorization_server", sz("https://as.ci.example"))
                        .value("client_id", sz("c2"))
                        .value("mode", sz("client-credentials"))
                        .subkey(
                            "client_auth",
                            RegistryKey::new()
                                .value("method", sz("client_secret_basic"))
                                .subkey("secret", RegistryKey::new().value("env", sz("CI_SECRET"))),
                        ),
                ),
        )
        .subkey(
            "settings",
            RegistryKey::new()
                .value("max_concurrency", RegistryValue::Dword(12))
                .value("min_refresh_lead_secs", RegistryValue::Qword(30))
                .value("refresh_at_fraction", sz("0.8"))
                .value("autostart", RegistryValue::Dword(0))
                .subkey(
                    "ai_clients",
                    RegistryKey::new()
                        .value("1", sz("claude-code"))
                        .value("2", sz("cursor")),
                ),
        );
    let user = RegistryKey::new().subkey(
        "settings",
        RegistryKey::new()
            .value("max_concurrency", RegistryValue::Dword(99))
            .value("notifications", RegistryValue::Dword(0)),
    );
    let layers = layers_from_trees(Some(&machine), Some(&user));
    let snap = resolve(&layers, FileChecks::Readable).expect("valid");
    let p = &snap.policy;
    let idp = p.idp.as_ref().expect("idp");
    assert_eq!(idp.issuer, "https://idp.example");
    assert_eq!(idp.scopes, ["openid", "email"]);
    let ids: Vec<&str> = p.servers.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        ids,
        ["ci", "docs"],
        "subkey names are the ids, in name order"
    );
    assert_eq!(p.server("docs").expect("docs").scopes, ["a", "b", "c"]);
    let ci = p.server("ci").expect("ci");
    assert_eq!(ci.mode, ServerMode::ClientCredentials);
    assert_eq!(
        serde_json::to_value(&ci.client_auth).expect("json"),
        json!({"method": "client_secret_basic", "secret": {"env": "CI_SECRET"}})
    );
    assert_eq!(p.settings.max_concurrency, 12, "HKCU never overrides HKLM");
    assert_eq!(p.settings.min_refresh_lead_secs, 30);
    assert!((p.settings.refresh_at_fraction - 0.8).abs() < 1e-9);
    assert!(!p.settings.autostart);
    assert!(!p.settings.notifications, "HKCU fills what HKLM leaves");
    assert_eq!(
        snap.origins["settings.notifications"].source,
        r"HKCU\SOFTWARE\Policies\Lanyard"
    );
    assert_eq!(
        snap.origins["settings.max_concurrency"].source,
        r"HKLM\SOFTWARE\Policies\Lanyard"
    );
    assert_eq!(p.settings.ai_clients.len(), 2);
}

#[test]
fn registry_mistakes_are_named_with_the_key() {
    let machine = RegistryKey::new().subkey(
        "settings",
        RegistryKey::new()
            .value("max_concurency", RegistryValue::Dword(4))
            .value("autostart", RegistryValue::Dword(7))
            .value("refresh_at_fraction", sz("most")),
    );
    let layers = layers_from_trees(Some(&machine), None);
    assert_eq!(
        shown(&resolve(&layers, FileChecks::Readable).expect_err("invalid")),
        [
            r#"HKLM\SOFTWARE\Policies\Lanyard: settings.autostart: expected true or false, found the number 7"#,
            r#"HKLM\SOFTWARE\Policies\Lanyard: settings.max_concurency: unknown key; did you mean "max_concurrency"?"#,
            r#"HKLM\SOFTWARE\Policies\Lanyard: settings.refresh_at_fraction: expected a number, found the text "most""#,
        ]
    );
    assert_eq!(tree_to_json(&RegistryKey::new()), json!({}));
}

// ---- generated artefacts and deployed examples ---------------------------------------------

/// Compares `path` with `expected`, or rewrites it when `LANYARD_BLESS=1`.
fn assert_fresh(path: &Path, expected: &str, how: &str) {
    if std::env::var("LANYARD_BLESS").as_deref() == Ok("1") {
        std::fs::write(path, expected).expect("bless");
        return;
    }
    let actual = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        actual == expected,
        "{} is stale: {how} (run `LANYARD_BLESS=1 cargo test -p lanyard-core --test policy`)",
        path.display()
    );
}

#[test]
fn the_deployed_json_schema_is_generated_from_the_model() {
    assert_fresh(
        &repo_root().join("deploy/policy.schema.json"),
        &schema::json_schema_text(),
        "the policy model changed",
    );
}

#[test]
fn the_books_key_table_is_generated_from_the_model() {
    let path = repo_root().join("docs/src/admin/policy.md");
    let readme = std::fs::read_to_string(&path).expect("the policy chapter");
    let start = readme
        .find("<!-- policy-keys:start")
        .expect("the policy chapter has the policy-keys:start marker");
    let body_start = start + readme[start..].find("-->").expect("marker end") + 3;
    let end = readme
        .find("<!-- policy-keys:end -->")
        .expect("the policy chapter has the policy-keys:end marker");
    let table = format!("\n{}", schema::key_table());
    let expected = format!("{}{}{}", &readme[..body_start], table, &readme[end..]);
    assert_fresh(&path, &expected, "the key table differs from the model");
    for spec in lanyard_core::policy::SETTING_SPECS {
        assert!(
            table.contains(&format!("`settings.{}`", spec.key)),
            "{}",
            spec.key
        );
    }
}

#[test]
fn every_setting_has_a_lock_and_reload_spec() {
    let schema = schema::json_schema();
    let props = schema
        .pointer("/$defs/Settings/properties")
        .and_then(Value::as_object)
        .expect("settings properties");
    let mut keys: Vec<&str> = props.keys().map(String::as_str).collect();
    let mut specs: Vec<&str> = lanyard_core::policy::SETTING_SPECS
        .iter()
        .map(|s| s.key)
        .collect();
    keys.sort();
    specs.sort();
    assert_eq!(keys, specs);
}

/// The templates an administrator gets (ADMX/ADML, the macOS profile, the `.reg` example) are
/// generated from the model and the one example policy; a key added to the model and not to the
/// example fails here, as does a stale committed copy.
#[test]
fn the_deployed_templates_are_generated_from_the_model_and_the_example() {
    use lanyard_core::policy::templates;
    let root = repo_root().join("deploy");
    let text = std::fs::read_to_string(root.join("linux/policy.json")).expect("linux example");
    let example: Value = serde_json::from_str(&text).expect("json");
    let missing: Vec<String> = templates::coverage_paths(&templates::model_key_paths())
        .difference(&templates::coverage_paths(&templates::document_key_paths(
            &example,
        )))
        .cloned()
        .collect();
    assert!(
        missing.is_empty(),
        "deploy/linux/policy.json must set every key of the model; it lacks {missing:?}"
    );
    assert_fresh(
        &root.join("windows/lanyard.admx"),
        &templates::admx_text(),
        "the ADMX differs from the model",
    );
    assert_fresh(
        &root.join("windows/en-US/lanyard.adml"),
        &templates::adml_text(),
        "the ADML differs from the model",
    );
    assert_fresh(
        &root.join("macos/lanyard.mobileconfig"),
        &templates::mobileconfig_text(&example),
        "the profile differs from deploy/linux/policy.json",
    );
    assert_fresh(
        &root.join("windows/servers-example.reg"),
        &templates::reg_text(&example),
        "the .reg example differs from deploy/linux/policy.json",
    );
}

#[test]
fn the_deployed_examples_are_valid() {
    let root = repo_root().join("deploy");
    let text = std::fs::read_to_string(root.join("linux/policy.json")).expect("linux example");
    let document: Value = serde_json::from_str(&text).expect("json");
    let layers = [Layer::new("linux/policy.json", Scope::Mandatory, document)];
    let example = resolve(&layers, FileChecks::Skip).expect("the Linux example is valid");
    assert_eq!(example.policy.servers.len(), 7);

    // The other two examples are generated from it, and say the same.
    let bytes = std::fs::read(root.join("macos/lanyard.mobileconfig")).expect("profile");
    let layers = layers_from_mobileconfig(&bytes, "lanyard.mobileconfig").expect("profile");
    assert_eq!(
        layers.iter().map(|l| l.scope).collect::<Vec<_>>(),
        [Scope::Mandatory, Scope::Recommended]
    );
    let snap = resolve(&layers, FileChecks::Skip).expect("the macOS profile is valid");
    assert_eq!(snap.policy, example.policy);
    assert!(snap.origins["settings.max_concurrency"].locked);
    assert!(!snap.origins["settings.log_level"].locked);

    let reg = std::fs::read_to_string(root.join("windows/servers-example.reg")).expect("reg");
    let tree = parse_reg_file(&reg, r"HKEY_LOCAL_MACHINE\SOFTWARE\Policies\Lanyard");
    let snap = resolve(&layers_from_trees(Some(&tree), None), FileChecks::Skip)
        .expect("the .reg example is valid");
    // The registry has no order: its servers come sorted by id.
    let mut by_id = example.policy.clone();
    by_id.servers.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(snap.policy, by_id);

    check_admx(
        &std::fs::read_to_string(root.join("windows/lanyard.admx")).expect("admx"),
        &std::fs::read_to_string(root.join("windows/en-US/lanyard.adml")).expect("adml"),
    );
}

/// A `.reg` string's data: the quotes off, `\\"` and `\\\\` unescaped.
fn reg_unescape(quoted: &str) -> String {
    let inner = quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or(quoted);
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.extend(chars.next());
        } else {
            out.push(c);
        }
    }
    out
}

/// A `.reg` file (strings, dwords) as a registry tree below `base`.
fn parse_reg_file(text: &str, base: &str) -> RegistryKey {
    let mut tree = RegistryKey::new();
    let mut current: Vec<String> = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(path) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let rest = path.strip_prefix(base).expect("key below the policy key");
            current = rest
                .split('\\')
                .filter(|p| !p.is_empty())
                .map(String::from)
                .collect();
        } else if let Some((name, value)) = line.split_once('=') {
            if !name.starts_with('"') {
                continue;
            }
            let name = name.trim_matches('"').to_owned();
            let value = match value.strip_prefix("dword:") {
                Some(hex) => RegistryValue::Dword(u32::from_str_radix(hex, 16).expect("dword")),
                None => RegistryValue::String(reg_unescape(value)),
            };
            let mut key = &mut tree;
            for part in &current {
                key = key.subkeys.entry(part.clone()).or_default();
            }
            key.values.insert(name, value);
        }
    }
    tree
}

/// Every ADMX value lands on a policy key the model knows; every string and presentation the
/// ADMX refers to is in the ADML.
fn check_admx(admx: &str, adml: &str) {
    let keys = lanyard_core::policy::templates::model_key_paths();
    let attr = |tag: &str, name: &str| -> Option<String> {
        let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
        Some(tag[start..start + tag[start..].find('"')?].to_owned())
    };
    // `Software\Policies\Lanyard\idp\client_auth` + `method` → `idp.client_auth.method`.
    let dotted = |key: &str, name: &str| -> String {
        let section = key
            .strip_prefix(r"Software\Policies\Lanyard")
            .expect("under the policy key")
            .trim_start_matches('\\')
            .replace('\\', ".");
        if section.is_empty() {
            name.to_owned()
        } else {
            format!("{section}.{name}")
        }
    };
    let mut checked = 0;
    let mut policy_key = String::new();
    for tag in admx.split('<').skip(1) {
        if tag.starts_with("policy ") {
            policy_key = attr(tag, "key").expect("policy key");
        }
        if let Some(value_name) = attr(tag, "valueName") {
            let key = attr(tag, "key").unwrap_or_else(|| policy_key.clone());
            let path = dotted(&key, &value_name);
            assert!(
                keys.contains(&path),
                "ADMX value {path} is not a policy key"
            );
            checked += 1;
        } else if let Some(list_key) = attr(tag, "key").filter(|_| tag.starts_with("list ")) {
            let (parent, name) = list_key.rsplit_once('\\').expect("list key");
            let path = dotted(parent, name);
            assert!(
                path == "servers" || keys.contains(&path),
                "ADMX list {path} is not a policy key"
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} ADMX values checked");
    for reference in admx.split("$(").skip(1) {
        let reference = &reference[..reference.find(')').expect("reference end")];
        let (kind, id) = reference.split_once('.').expect("kind.id");
        let needle = match kind {
            "string" => format!("<string id=\"{id}\">"),
            "presentation" => format!("<presentation id=\"{id}\">"),
            other => panic!("unknown reference kind {other}"),
        };
        assert!(adml.contains(&needle), "the ADML lacks {reference}");
    }
}

// ---- fuzz ----------------------------------------------------------------------------------

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    const KEYS: &[&str] = &[
        "idp",
        "servers",
        "settings",
        "dev_mode",
        "issuer",
        "client_id",
        "client_auth",
        "method",
        "secret",
        "keychain",
        "file",
        "env",
        "key_file",
        "alg",
        "kid",
        "scopes",
        "id",
        "display_name",
        "url",
        "mode",
        "resource",
        "authorization_server",
        "max_concurrency",
        "refresh_at_fraction",
        "min_refresh_lead_secs",
        "log_level",
        "ai_clients",
        "proxy",
        "support_url",
        "extra_ca_files",
        "autostart",
        "notifications",
        "extra_authorize_params",
        "none",
        "private_key_jwt",
        "client_secret_basic",
        "client-credentials",
        "x",
    ];

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>().prop_map(|f| json!(f)),
            prop::sample::select(KEYS).prop_map(|k| json!(k)),
            "https?://[a-z0-9.:/]{0,20}".prop_map(Value::String),
            ".{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(5, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::vec((prop::sample::select(KEYS), inner), 0..6).prop_map(
                    |pairs| Value::Object(
                        pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
                    )
                ),
            ]
        })
    }

    proptest! {
        // Bounded: a few hundred cases run in seconds in the normal test command.
        #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn structured_documents_never_panic(doc in json_value(), user in json_value()) {
            let layers = [
                Layer::new("fuzz.json", Scope::Mandatory, doc.clone()),
                Layer::new("user.json", Scope::User, user),
            ];
            match resolve(&layers, FileChecks::Skip) {
                Ok(snapshot) => {
                    // Whatever is accepted must survive a round trip through JSON.
                    let text = serde_json::to_string(&snapshot.policy).expect("serializes");
                    let again: Policy = serde_json::from_str(&text).expect("round trip");
                    prop_assert_eq!(again.servers.len(), snapshot.policy.servers.len());
                }
                Err(errors) => prop_assert!(!errors.is_empty()),
            }
            let _ = tree_to_json(&RegistryKey::new());
        }

        #[test]
        fn arbitrary_text_never_panics(text in ".{0,200}") {
            let _ = Policy::from_json(&text, "fuzz.json");
            let _ = layers_from_plist(text.as_bytes(), "fuzz.plist");
            let _ = layers_from_mobileconfig(text.as_bytes(), "fuzz.mobileconfig");
        }

        #[test]
        fn mutated_valid_policies_never_panic(cut in 0usize..400, insert in ".{0,8}") {
            let text = base().to_string();
            let cut = cut.min(text.len());
            let cut = (0..=cut).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
            let mutated = format!("{}{}{}", &text[..cut], insert, &text[cut..]);
            let _ = Policy::from_json(&mutated, "fuzz.json");
        }
    }
}

// ---- settings.ai_clients_native ------------------------------------------------------------

#[test]
fn native_ema_clients_are_named_and_an_unknown_one_is_a_clear_error() {
    let mut document = base();
    document["settings"] =
        json!({"ai_clients": ["codex"], "ai_clients_native": ["vscode", "codex"]});
    let layers = [Layer::new("p.json", Scope::Mandatory, document.clone())];
    let snapshot = resolve(&layers, FileChecks::Readable).expect("valid");
    assert_eq!(
        snapshot.policy.settings.ai_clients_native,
        [
            lanyard_core::policy::NativeEmaClient::Vscode,
            lanyard_core::policy::NativeEmaClient::Codex
        ]
    );
    assert_eq!(
        snapshot.policy.settings.ai_clients,
        [lanyard_core::policy::AiClient::Codex]
    );

    document["settings"] = json!({"ai_clients_native": ["codex", "cursor"]});
    assert_eq!(
        errors_of(document.clone()),
        ["p.json: settings.ai_clients_native[1]: the text \"cursor\" is not one of \"vscode\", \"codex\""]
    );
    document["settings"] = json!({"ai_clients_native": ["vs-code"]});
    assert_eq!(
        errors_of(document),
        ["p.json: settings.ai_clients_native[0]: the text \"vs-code\" is not one of \"vscode\", \"codex\"; did you mean \"vscode\"?"]
    );
}

#[test]
fn native_ema_clients_need_an_identity_provider() {
    let document = json!({
        "servers": [{"id": "ci", "display_name": "CI", "url": "https://ci.example/mcp",
                     "client_id": "c", "mode": "client-credentials",
                     "client_auth": {"method": "client_secret_basic", "secret": {"env": "S"}}}],
        "settings": {"ai_clients_native": ["codex"]}
    });
    let errors = errors_of(document);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("settings.ai_clients_native") && e.contains("needs \"idp\"")),
        "{errors:?}"
    );
}
