//! The fault matrix's network and peer rows: what a corporate network and imperfect servers do to
//! Lanyard, each over real sockets on 127.0.0.1 — a host name that does not resolve, a closed
//! port, a server that never answers, certificates that are untrusted, expired or re-signed by a
//! TLS-inspecting proxy, a CONNECT proxy from the policy that goes away, clocks ten minutes off,
//! an IdP that rotates its signing key and an authorization server whose metadata changes. Every
//! row asserts the state and message the user sees, that no secret is in it, and the recovery once
//! the fault is gone. The fault matrix (docs/src/security/fault-matrix.md) names each test.

#[cfg(unix)]
mod kit;
mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use lanyard_core::engine::{IdpStatus, ServerState, Status};
use lanyard_testbed::demo::demo_config;
use lanyard_testbed::net::{ConnectProxy, GateMode, ProxyMode, TlsCertificate, TlsIdentity};
use lanyard_testbed::{FrontOptions, HttpsSetup, Testbed, TestbedConfig};
use serde_json::{json, Value};
use support::*;

// ---- the world ------------------------------------------------------------------------------

/// The demo world cut to one server, "docs".
fn one_server() -> TestbedConfig {
    let mut config = demo_config(Duration::ZERO);
    config.auth_servers.truncate(1);
    config.mcp_servers.truncate(1);
    config
}

/// Short timeouts, so a black hole costs half a second.
fn quick() -> Options {
    Options {
        tweak: Box::new(|c| {
            c.http.connect_timeout = Duration::from_millis(500);
            c.http.request_timeout = Duration::from_millis(500);
        }),
        ..Options::default()
    }
}

/// A scripted browser for an IdP served over HTTPS: it trusts the servers' CA (the user's
/// browser is not what these rows test).
#[derive(Debug)]
struct HttpsBrowser {
    ca_pem: String,
}

impl lanyard_core::signin::Browser for HttpsBrowser {
    fn open(&self, url: &url::Url) -> Result<(), String> {
        let (url, ca_pem) = (url.to_string(), self.ca_pem.clone());
        tokio::spawn(async move {
            if let Err(e) = lanyard_testbed::complete_login_trusting(&url, USER, &ca_pem).await {
                tracing::warn!("scripted login failed: {e:#}");
            }
        });
        Ok(())
    }
}

/// [`quick`], with the browser for a world whose certificates come from `ca`.
fn quick_https(ca: &Ca) -> Options {
    Options {
        browser: Some(std::sync::Arc::new(HttpsBrowser {
            ca_pem: ca.pem.clone(),
        })),
        ..quick()
    }
}

/// Waits until "docs" is failing and returns its error.
async fn failing_error(lanyard: &Lanyard) -> (String, u64) {
    match lanyard
        .wait_server("docs", "failing", |s| {
            matches!(s, ServerState::Failing { .. })
        })
        .await
    {
        ServerState::Failing {
            error, retry_at, ..
        } => (error, retry_at),
        _ => unreachable!(),
    }
}

/// Once the fault is gone: past the retry time "docs" is granted a new token, which works.
async fn recovers(tb: &Testbed, lanyard: &Lanyard, retry_at: u64, ca: Option<&Ca>) {
    lanyard.sync(tb);
    let skip = retry_at.saturating_sub(lanyard.now()) + 1;
    lanyard.advance(tb, Duration::from_secs(skip));
    let healed_from = lanyard.now();
    lanyard
        .wait_server(
            "docs",
            "granted again",
            |s| matches!(s, ServerState::Granted { expires_at, .. } if *expires_at > healed_from),
        )
        .await;
    let token = lanyard.token("docs", 60).await;
    match ca {
        Some(ca) => assert_accepted_over_https(tb, ca, token.access_token.expose()).await,
        None => {
            assert_accepted(
                tb.mcp_server("docs").expect("mcp"),
                token.access_token.expose(),
            )
            .await
        }
    }
}

/// Asserts that `token` works at the MCP server of an HTTPS world whose CA is `ca`.
async fn assert_accepted_over_https(tb: &Testbed, ca: &Ca, token: &str) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem.as_bytes()).expect("CA"))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let response = client
        .post(tb.mcp_server("docs").expect("mcp").url())
        .header("accept", "application/json, text/event-stream")
        .bearer_auth(token)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "whoami", "arguments": {}}}))
        .send()
        .await
        .expect("MCP request");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("JSON");
    let text = body["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(text.contains("sub=alice"), "{body}");
}

/// No secret that crossed the IdP's token endpoint appears anywhere in the status.
fn assert_no_secret(tb: &Testbed, status: &Status) {
    let shown = format!("{status:?}");
    for secret in tb.idp().wire_secrets().all() {
        assert!(!shown.contains(&secret), "a secret leaked into the status");
    }
}

// ---- DNS, refused, timeout ----------------------------------------------------------------------

#[tokio::test]
async fn dns_failure_is_named_and_heals_when_the_policy_is_fixed() {
    let tb = testbed(one_server()).await;
    let mut policy = policy_json(&tb);
    let good_url = server_entry(&mut policy, "docs")["url"].clone();
    // RFC 6761: `.invalid` never resolves. The resolver may be slow to say so (a machine whose
    // name server is unreachable retries it): the timeouts leave it room, so a slow "no" still
    // reads as DNS, not as a timeout.
    server_entry(&mut policy, "docs")["url"] = json!("https://docs.lanyard-faults.invalid/mcp");
    let lanyard = start_engine(
        &tb,
        &policy,
        Options {
            tweak: Box::new(|c| {
                c.http.connect_timeout = Duration::from_secs(8);
                c.http.request_timeout = Duration::from_secs(8);
            }),
            ..Options::default()
        },
    );
    lanyard.sign_in().await;
    let (error, _) = failing_error(&lanyard).await;
    assert!(error.contains("could not be resolved (DNS)"), "{error}");
    assert!(error.contains("docs.lanyard-faults.invalid"), "{error}");
    assert!(
        !error.contains("refused") && !error.contains("timed out"),
        "{error}"
    );
    assert_no_secret(&tb, &lanyard.engine.status());

    server_entry(&mut policy, "docs")["url"] = good_url;
    lanyard
        .engine
        .apply_policy(parse_policy(&policy))
        .await
        .expect("apply");
    lanyard.wait_granted("docs").await;
    let token = lanyard.token("docs", 60).await;
    assert_accepted(
        tb.mcp_server("docs").expect("mcp"),
        token.access_token.expose(),
    )
    .await;
}

/// Signs in to a gated world, then closes (or black-holes) the authorization server's port.
async fn gate_fault(mode: GateMode, expect: &str, not: &[&str]) {
    init_tracing();
    let tb = Testbed::start_with(
        one_server(),
        FrontOptions {
            gated: true,
            ..FrontOptions::default()
        },
    )
    .await
    .expect("testbed");
    let lanyard = start_engine(&tb, &policy_json(&tb), quick());
    lanyard.sign_in().await;
    let first_exp = lanyard.wait_granted("docs").await;
    let gate = tb
        .gate_of(tb.auth_server("docs").expect("as").issuer())
        .expect("gate")
        .clone();
    gate.set(mode);
    // Let the client's pool see its kept-alive connections cut before the next grant.
    let_ticks_pass(5).await;
    lanyard.engine.refresh("docs").await.expect("refresh");
    let (error, retry_at) = failing_error(&lanyard).await;
    assert!(error.contains(expect), "{error:?} should say {expect:?}");
    for other in not {
        assert!(!error.contains(other), "{error:?} should not say {other:?}");
    }
    assert!(error.contains("authorization server"), "{error}");
    assert_no_secret(&tb, &lanyard.engine.status());
    // Meanwhile the still-valid token is handed out.
    assert_eq!(lanyard.token("docs", 0).await.expires_at, first_exp);

    gate.set(GateMode::Open);
    recovers(&tb, &lanyard, retry_at, None).await;
}

#[tokio::test]
async fn connection_refused_is_named_and_heals_when_the_server_is_back() {
    gate_fault(
        GateMode::Refuse,
        "the connection was refused",
        &["DNS", "timed out"],
    )
    .await;
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_and_heals() {
    gate_fault(
        GateMode::BlackHole,
        "timed out (no answer in time)",
        &["DNS", "refused"],
    )
    .await;
}

// ---- TLS ----------------------------------------------------------------------------------------

/// A certificate authority made for one test.
struct Ca {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pem: String,
    file: std::path::PathBuf,
}

impl Ca {
    fn new(name: &str) -> Self {
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("CA certificate");
        let pem = cert.pem();
        Self {
            issuer: rcgen::Issuer::new(params, key),
            file: temp_file("ca.pem", &pem),
            pem,
        }
    }

    /// A certificate for 127.0.0.1 and localhost, valid from `not_before` to `not_after`.
    fn leaf(&self, not_before: (i32, u8, u8), not_after: (i32, u8, u8)) -> TlsIdentity {
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        params.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let cert = params.signed_by(&key, &self.issuer).expect("leaf");
        TlsIdentity {
            cert_chain_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    fn valid_leaf(&self) -> TlsIdentity {
        self.leaf((2020, 1, 1), (2099, 1, 1))
    }

    fn expired_leaf(&self) -> TlsIdentity {
        self.leaf((2020, 1, 1), (2021, 1, 1))
    }
}

/// The one-server world over HTTPS with `identity`, its components trusting `ca`.
async fn https_world(ca: &Ca, identity: &TlsIdentity) -> (Testbed, TlsCertificate) {
    init_tracing();
    let certificate = TlsCertificate::new(identity).expect("certificate");
    let tb = Testbed::start_https(
        one_server(),
        HttpsSetup {
            certificate: certificate.clone(),
            ca_pem: ca.pem.clone(),
        },
    )
    .await
    .expect("testbed");
    assert!(tb.idp().issuer().starts_with("https://127.0.0.1:"));
    (tb, certificate)
}

fn with_settings(tb: &Testbed, settings: Value) -> Value {
    let mut policy = policy_json(tb);
    policy["settings"] = settings;
    policy
}

/// Signing in fails with `expect` in the session's reason; nothing is granted.
async fn sign_in_fails(lanyard: &Lanyard, expect: &str) -> String {
    let error = tokio::time::timeout(WAIT, lanyard.engine.sign_in())
        .await
        .expect("sign-in timed out")
        .expect_err("sign-in must fail");
    let status = lanyard
        .wait("needs sign-in", |s| {
            matches!(s.idp, IdpStatus::NeedsSignIn { .. })
        })
        .await;
    let IdpStatus::NeedsSignIn { reason } = &status.idp else {
        unreachable!()
    };
    assert!(reason.contains(expect), "{reason:?} should say {expect:?}");
    assert!(error.to_string().contains(expect), "{error}");
    assert!(matches!(lanyard.state("docs"), ServerState::NotSignedIn));
    reason.clone()
}

#[tokio::test]
async fn untrusted_certificate_is_named_and_heals_when_it_is_trusted() {
    let ca = Ca::new("Lanyard faults: private CA");
    let (tb, _certificate) = https_world(&ca, &ca.valid_leaf()).await;
    let policy = with_settings(&tb, json!({}));
    let lanyard = start_engine(&tb, &policy, quick_https(&ca));
    let reason = sign_in_fails(&lanyard, "TLS certificate is not trusted").await;
    assert!(reason.contains("settings.extra_ca_files"), "{reason}");
    assert_eq!(tb.idp().stats().code_grants, 0);

    // IT deploys the CA through the policy: applied live, the next sign-in works.
    let fixed = with_settings(&tb, json!({"extra_ca_files": [ca.file]}));
    lanyard
        .engine
        .apply_policy(parse_policy(&fixed))
        .await
        .expect("apply");
    lanyard.sign_in().await;
    lanyard.wait_granted("docs").await;
    let token = lanyard.token("docs", 60).await;
    assert_accepted_over_https(&tb, &ca, token.access_token.expose()).await;
}

#[tokio::test]
async fn expired_certificate_is_named_and_heals_when_it_is_renewed() {
    let ca = Ca::new("Lanyard faults: CA with an expired leaf");
    let (tb, certificate) = https_world(&ca, &ca.expired_leaf()).await;
    let policy = with_settings(&tb, json!({"extra_ca_files": [ca.file]}));
    let lanyard = start_engine(&tb, &policy, quick_https(&ca));
    let reason = sign_in_fails(&lanyard, "TLS certificate has expired").await;
    assert!(!reason.contains("not trusted"), "{reason}");

    certificate.replace(&ca.valid_leaf()).expect("renew");
    lanyard.sign_in().await;
    lanyard.wait_granted("docs").await;
    let token = lanyard.token("docs", 60).await;
    assert_accepted_over_https(&tb, &ca, token.access_token.expose()).await;
}

#[tokio::test]
async fn tls_inspecting_proxy_works_only_with_its_ca_in_extra_ca_files() {
    let servers_ca = Ca::new("Lanyard faults: the servers' CA");
    let corporate_ca = Ca::new("Lanyard faults: corporate TLS inspection");
    let (tb, _certificate) = https_world(&servers_ca, &servers_ca.valid_leaf()).await;
    let proxy = ConnectProxy::start(ProxyMode::Inspect {
        identity: corporate_ca.valid_leaf(),
        upstream_ca_pem: servers_ca.pem.clone(),
    })
    .await
    .expect("proxy");

    // Through the inspecting proxy, without its CA: every site looks untrusted.
    let policy = with_settings(&tb, json!({"proxy": proxy.url()}));
    let lanyard = start_engine(&tb, &policy, quick_https(&servers_ca));
    sign_in_fails(&lanyard, "TLS certificate is not trusted").await;
    assert!(proxy.tunnels() >= 1, "the client went around the proxy");

    // With only the corporate CA (not the servers' own) everything works through the proxy.
    let fixed = with_settings(
        &tb,
        json!({"proxy": proxy.url(), "extra_ca_files": [corporate_ca.file]}),
    );
    lanyard
        .engine
        .apply_policy(parse_policy(&fixed))
        .await
        .expect("apply");
    lanyard.sign_in().await;
    lanyard.wait_granted("docs").await;
    let idp_port = url::Url::parse(tb.idp().issuer())
        .expect("url")
        .port()
        .expect("port");
    let log = proxy.log();
    assert!(
        log.contains(&format!("CONNECT 127.0.0.1:{idp_port} -> 200")),
        "{log:?}"
    );
    let token = lanyard.token("docs", 60).await;
    assert_accepted_over_https(&tb, &servers_ca, token.access_token.expose()).await;
}

// ---- the policy's CONNECT proxy ---------------------------------------------------------------

#[tokio::test]
async fn connect_proxy_from_the_policy_carries_the_traffic_and_its_loss_heals() {
    let ca = Ca::new("Lanyard faults: CA behind a proxy");
    let (tb, _certificate) = https_world(&ca, &ca.valid_leaf()).await;
    let mut proxy = ConnectProxy::start(ProxyMode::Tunnel).await.expect("proxy");
    let policy = with_settings(
        &tb,
        json!({"proxy": proxy.url(), "extra_ca_files": [ca.file]}),
    );
    let lanyard = start_engine(&tb, &policy, quick_https(&ca));
    lanyard.sign_in().await;
    let first_exp = lanyard.wait_granted("docs").await;
    let as_origin = tb.auth_server("docs").expect("as").issuer().to_owned();
    let as_port = url::Url::parse(&as_origin)
        .expect("url")
        .port()
        .expect("port");
    let log = proxy.log();
    assert!(
        log.contains(&format!("CONNECT 127.0.0.1:{as_port} -> 200")),
        "{log:?}"
    );
    let tunnels = proxy.tunnels();

    // The proxy goes away (its port closes, its tunnels are cut).
    proxy.stop();
    // Let the client's pool see its tunnels cut before the next grant.
    let_ticks_pass(5).await;
    lanyard.engine.refresh("docs").await.expect("refresh");
    let (error, retry_at) = failing_error(&lanyard).await;
    assert!(
        error.contains(&format!("the proxy {} could not be reached", proxy.url())),
        "{error}"
    );
    assert_no_secret(&tb, &lanyard.engine.status());
    assert_eq!(lanyard.token("docs", 0).await.expires_at, first_exp);

    proxy.restart().await.expect("restart");
    recovers(&tb, &lanyard, retry_at, Some(&ca)).await;
    assert!(
        proxy.tunnels() > tunnels,
        "the recovery went around the proxy"
    );
}

// ---- clocks ten minutes off -------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Skewed {
    Idp,
    AuthorizationServer,
}

/// One server's clock is `skew_secs` off; ID tokens live 5 minutes and ID-JAGs 5 minutes, so ten
/// minutes is beyond any lifetime. Sign-in works and the session is scheduled on this computer's
/// clock; the grant fails as "clock skew" naming which side is ahead; fixing the clock heals it.
async fn clock_row(who: Skewed, skew_secs: i64, expect: &str) {
    let mut config = one_server();
    config.idp.id_token_lifetime = Duration::from_secs(300);
    let tb = testbed(config).await;
    match who {
        Skewed::Idp => tb.idp().set_clock_skew(skew_secs),
        Skewed::AuthorizationServer => tb
            .auth_server("docs")
            .expect("as")
            .set_clock_skew(skew_secs),
    }
    let lanyard = start_engine(&tb, &policy_json(&tb), quick());
    lanyard.sign_in().await;
    let status = lanyard.engine.status();
    let IdpStatus::SignedIn {
        id_token_expires_at,
        ..
    } = status.idp
    else {
        panic!("not signed in: {:?}", status.idp);
    };
    // On this computer's clock, whatever the IdP's says: five minutes from now.
    let life = id_token_expires_at as i64 - lanyard.now() as i64;
    assert!((290..=310).contains(&life), "ID token life {life} s");

    let (error, retry_at) = failing_error(&lanyard).await;
    assert!(error.starts_with("clock skew: "), "{error}");
    assert!(error.contains(expect), "{error:?} should say {expect:?}");
    assert!(error.contains("synchronize"), "{error}");
    assert_no_secret(&tb, &lanyard.engine.status());
    // Not a policy refusal: the server is retried, never shown as denied.
    assert_eq!(tb.idp().stats().rejected_token_exchanges, 0);

    match who {
        Skewed::Idp => tb.idp().set_clock_skew(0),
        Skewed::AuthorizationServer => tb.auth_server("docs").expect("as").set_clock_skew(0),
    }
    recovers(&tb, &lanyard, retry_at, None).await;
}

#[tokio::test]
async fn idp_clock_10_min_ahead_is_named_clock_skew_and_heals() {
    clock_row(
        Skewed::Idp,
        600,
        "the identity provider's clock is 10 min ahead of the authorization server's",
    )
    .await;
}

#[tokio::test]
async fn idp_clock_10_min_behind_is_named_clock_skew_and_heals() {
    // Without the IdP's `Date`, its five-minute ID token would look expired at sign-in.
    clock_row(
        Skewed::Idp,
        -600,
        "the identity provider's clock is 10 min behind the authorization server's",
    )
    .await;
}

#[tokio::test]
async fn as_clock_10_min_ahead_is_named_clock_skew_and_heals() {
    clock_row(
        Skewed::AuthorizationServer,
        600,
        "the identity provider's clock is 10 min behind the authorization server's",
    )
    .await;
}

#[tokio::test]
async fn as_clock_10_min_behind_is_named_clock_skew_and_heals() {
    clock_row(
        Skewed::AuthorizationServer,
        -600,
        "the identity provider's clock is 10 min ahead of the authorization server's",
    )
    .await;
}

#[tokio::test]
async fn this_computers_clock_10_min_ahead_is_corrected_for() {
    // Both servers agree; this computer is ten minutes ahead of them. A five-minute ID token would
    // look expired by our clock: Lanyard checks it on the IdP's (`Date`) and schedules on ours.
    let mut config = one_server();
    config.idp.id_token_lifetime = Duration::from_secs(300);
    let tb = testbed(config).await;
    let lanyard = start_engine(&tb, &policy_json(&tb), quick());
    lanyard
        .clock
        .set(tb.clock().now() + Duration::from_secs(600));
    lanyard.sign_in().await;
    let IdpStatus::SignedIn {
        id_token_expires_at,
        ..
    } = lanyard.engine.status().idp
    else {
        panic!("not signed in: {:?}", lanyard.engine.status().idp);
    };
    let life = id_token_expires_at as i64 - lanyard.now() as i64;
    assert!((290..=310).contains(&life), "ID token life {life} s");
    let expires_at = lanyard.wait_granted("docs").await;
    assert!(expires_at > lanyard.now() + 250, "scheduled on our clock");
    let token = lanyard.token("docs", 60).await;
    assert_accepted(
        tb.mcp_server("docs").expect("mcp"),
        token.access_token.expose(),
    )
    .await;
}

// ---- keys and metadata that change under a live session -------------------------------------

/// JWKS fetches made by Lanyard (the authorization server fetches the IdP's keys too).
fn lanyard_jwks_fetches(tb: &Testbed) -> u64 {
    tb.idp().stats().jwks_fetches - tb.auth_server("docs").expect("as").stats().jwks_fetches
}

#[tokio::test]
async fn idp_signing_key_rotation_refetches_the_keys_once_and_rate_limited() {
    let tb = testbed(one_server()).await;
    let lanyard = start_engine(&tb, &policy_json(&tb), quick());
    lanyard.sign_in().await;
    lanyard.wait_granted("docs").await;
    assert_eq!(
        lanyard_jwks_fetches(&tb),
        1,
        "discovery fetches the keys once"
    );

    // The IdP rotates: its JWKS now holds only the new key. The next renewal verifies with it.
    tb.idp().rotate_signing_key().await.expect("rotate");
    let refreshes = tb.idp().stats().refresh_grants;
    lanyard.advance(&tb, Duration::from_secs(50 * 60));
    eventually("the session renewed", || {
        tb.idp().stats().refresh_grants > refreshes
    })
    .await;
    let renewed_from = lanyard.now();
    let status = lanyard
        .wait("renewed with the new key", |s| {
            matches!(&s.idp, IdpStatus::SignedIn { id_token_expires_at, refresh_error: None, .. }
                if *id_token_expires_at > renewed_from)
        })
        .await;
    assert_no_secret(&tb, &status);
    lanyard
        .wait_server(
            "docs",
            "granted after the rotation",
            |s| matches!(s, ServerState::Granted { expires_at, .. } if *expires_at > renewed_from),
        )
        .await;
    // (Counted once the grant is done: the authorization server fetches the new key too.)
    assert_eq!(
        lanyard_jwks_fetches(&tb),
        2,
        "one refetch for the new key id"
    );

    // A second rotation within the minute: no second fetch; a sign-in then says why and the
    // session in hand stays usable.
    tb.idp().rotate_signing_key().await.expect("rotate");
    let error = tokio::time::timeout(WAIT, lanyard.engine.sign_in())
        .await
        .expect("sign-in timed out")
        .expect_err("a key id unknown within the minute");
    assert!(
        error
            .to_string()
            .contains("signed by a key the identity provider does not publish"),
        "{error}"
    );
    assert_eq!(lanyard_jwks_fetches(&tb), 2, "rate-limited");
    assert!(matches!(
        lanyard.engine.status().idp,
        IdpStatus::SignedIn { .. }
    ));
    let token = lanyard.token("docs", 60).await;
    assert_accepted(
        tb.mcp_server("docs").expect("mcp"),
        token.access_token.expose(),
    )
    .await;

    // A minute on, the keys are fetched again and the sign-in succeeds.
    lanyard.advance(&tb, Duration::from_secs(61));
    let signed_in_from = lanyard.now();
    lanyard.sign_in().await;
    lanyard
        .wait_server(
            "docs",
            "granted after the second rotation",
            |s| matches!(s, ServerState::Granted { expires_at, .. } if *expires_at > signed_in_from),
        )
        .await;
    assert_eq!(lanyard_jwks_fetches(&tb), 3);
}

#[tokio::test]
async fn authorization_server_metadata_change_is_rediscovered_between_grants() {
    let tb = testbed(one_server()).await;
    let lanyard = start_engine(&tb, &policy_json(&tb), quick());
    lanyard.sign_in().await;
    let first_exp = lanyard.wait_granted("docs").await;
    let as_handle = tb.auth_server("docs").expect("as");
    let mints = as_handle.stats().jwt_bearer_mints;

    // Between two grants the authorization server moves its token endpoint.
    let old_endpoint = as_handle.token_endpoint();
    as_handle.move_token_endpoint();
    assert_ne!(as_handle.token_endpoint(), old_endpoint);
    let mut states = lanyard.engine.subscribe();
    let saw_failing = tokio::spawn(async move {
        let mut failing = false;
        while states.changed().await.is_ok() {
            let status = states.borrow_and_update().clone();
            failing |= matches!(
                status.server("docs").map(|s| &s.state),
                Some(ServerState::Failing { .. })
            );
            if matches!(status.server("docs").map(|s| &s.state),
                Some(ServerState::Granted { expires_at, .. }) if *expires_at > first_exp)
            {
                break;
            }
        }
        failing
    });
    lanyard.advance(&tb, Duration::from_secs(10));
    lanyard.engine.refresh("docs").await.expect("refresh");
    let exp = lanyard.wait_granted("docs").await;
    let exp = if exp > first_exp {
        exp
    } else {
        lanyard
            .wait_server(
                "docs",
                "granted anew",
                |s| matches!(s, ServerState::Granted { expires_at, .. } if *expires_at > first_exp),
            )
            .await;
        first_exp + 10
    };
    assert!(exp > first_exp);
    assert!(
        !tokio::time::timeout(WAIT, saw_failing)
            .await
            .expect("watcher")
            .expect("join"),
        "the move must not surface as a failure"
    );
    assert_eq!(as_handle.stats().jwt_bearer_mints, mints + 1);
    let token = lanyard.token("docs", 60).await;
    assert_accepted(
        tb.mcp_server("docs").expect("mcp"),
        token.access_token.expose(),
    )
    .await;
}

#[tokio::test]
async fn idp_metadata_change_is_rediscovered_without_ending_the_session() {
    let tb = testbed(one_server()).await;
    let lanyard = start_engine(&tb, &policy_json(&tb), quick());
    lanyard.sign_in().await;
    lanyard.wait_granted("docs").await;
    let refreshes = tb.idp().stats().refresh_grants;

    // The IdP moves its token endpoint under the live session; 50 minutes on, the session is
    // renewed (and the access token re-granted) through the new one, with no sign-in.
    tb.idp().move_token_endpoint();
    lanyard.advance(&tb, Duration::from_secs(50 * 60));
    let renewed_from = lanyard.now();
    lanyard
        .wait_server(
            "docs",
            "granted through the moved endpoint",
            |s| matches!(s, ServerState::Granted { expires_at, .. } if *expires_at > renewed_from),
        )
        .await;
    let status = lanyard.engine.status();
    assert!(
        matches!(&status.idp, IdpStatus::SignedIn { id_token_expires_at, refresh_error: None, .. }
            if *id_token_expires_at > renewed_from),
        "{:?}",
        status.idp
    );
    assert_eq!(tb.idp().stats().refresh_grants, refreshes + 1);
    assert_eq!(tb.idp().stats().logins, 1, "no new sign-in");
    let token = lanyard.token("docs", 60).await;
    assert_accepted(
        tb.mcp_server("docs").expect("mcp"),
        token.access_token.expose(),
    )
    .await;
}

// ---- the environment does not choose the network -----------------------------------------------

/// A TCP listener that counts and drops every connection: a "proxy" nobody should use.
#[cfg(unix)]
struct Trap {
    url: String,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

#[cfg(unix)]
impl Trap {
    fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = connections.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                drop(stream);
            }
        });
        Self { url, connections }
    }

    fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Every variable a proxy-aware HTTP stack would follow (upper and lower case): written out here,
/// not taken from the agent's own list, so a name missing there still fails this test.
#[cfg(unix)]
fn proxy_variables() -> Vec<String> {
    ["HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY"]
        .into_iter()
        .flat_map(|name| [name.to_owned(), name.to_lowercase()])
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg(unix)]
async fn https_proxy_in_the_agents_environment_is_not_followed() {
    let tb = testbed(one_server()).await;
    let trap = Trap::start();
    let dir = temp_path("proxy-env");
    let run = dir.join("run");
    std::fs::create_dir_all(&run).expect("mkdir");
    let policy = dir.join("policy.json");
    std::fs::write(&policy, policy_json(&tb).to_string()).expect("policy");
    let bins = kit::binaries();
    // The scripted browser is not Lanyard: it is kept off the trap so only the agent is judged.
    let mut browser = String::from("env");
    for name in proxy_variables() {
        browser.push_str(&format!(" -u {name}"));
    }
    browser.push_str(&format!(
        " {} browse --user alice@example.com",
        bins.testbed.display()
    ));
    let lanyard = |args: &[&str]| {
        let mut command = std::process::Command::new(&bins.lanyard);
        command
            .args(args)
            .env("XDG_RUNTIME_DIR", &run)
            .env("XDG_STATE_HOME", &run)
            .env("LANYARD_POLICY", &policy)
            .env("LANYARD_NO_KEYCHAIN", "1")
            .env("BROWSER", &browser)
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .env_remove("LANYARD_AGENT_SOCKET")
            .stdin(std::process::Stdio::null());
        for name in proxy_variables() {
            command.env(name, &trap.url);
        }
        command
    };
    let log = dir.join("agent.log");
    let mut agent = lanyard(&["agent"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn the agent");
    let socket = run.join("lanyard/agent.sock");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while lanyard_core::ipc::BlockingClient::connect(&socket).is_err() {
        assert!(
            std::time::Instant::now() < deadline && agent.try_wait().ok().flatten().is_none(),
            "the agent did not answer: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut login = lanyard(&["login", "--no-start"]);
    let login = tokio::task::spawn_blocking(move || login.output())
        .await
        .expect("join")
        .expect("run lanyard login");
    let _ = agent.kill();
    let _ = agent.wait();
    let agent_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        trap.connections(),
        0,
        "the agent went through HTTPS_PROXY / HTTP_PROXY / ALL_PROXY; its log: {agent_log}"
    );
    assert_eq!(
        login.status.code(),
        Some(0),
        "login: {}\nagent: {agent_log}",
        String::from_utf8_lossy(&login.stderr)
    );
    assert!(tb.idp().stats().code_grants >= 1, "signed in directly");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg(unix)]
async fn ssl_cert_file_in_the_environment_does_not_replace_the_trust_store() {
    let ca = Ca::new("Lanyard faults: a CA named only by SSL_CERT_FILE");
    let (tb, _certificate) = https_world(&ca, &ca.valid_leaf()).await;
    let dir = temp_path("ssl-cert-file");
    std::fs::create_dir_all(dir.join("run")).expect("mkdir");
    let policy = dir.join("policy.json");
    std::fs::write(&policy, with_settings(&tb, json!({})).to_string()).expect("policy");
    let archive = dir.join("diagnostics.zip");
    let run = || {
        let mut command = std::process::Command::new(&kit::binaries().lanyard);
        command
            .args(["diagnose", "--output"])
            .arg(&archive)
            .env("LANYARD_POLICY", &policy)
            .env("XDG_RUNTIME_DIR", dir.join("run"))
            .env("XDG_STATE_HOME", dir.join("run"))
            .env("LANYARD_NO_KEYCHAIN", "1")
            .env("SSL_CERT_FILE", &ca.file)
            .env("SSL_CERT_DIR", dir.join("no-such-dir"));
        let out = command.output().expect("run lanyard diagnose");
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let mut zip =
            zip::ZipArchive::new(std::fs::File::open(&archive).expect("archive")).expect("zip");
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut zip.by_name("discovery.json").expect("entry"),
            &mut text,
        )
        .expect("text");
        text
    };
    // Only the OS's certificates (and the policy's extra_ca_files) count: the CA is not trusted.
    let discovery = run();
    assert!(
        discovery.contains("TLS certificate is not trusted"),
        "SSL_CERT_FILE was followed: {discovery}"
    );
    // The policy's way is the one that works.
    std::fs::write(
        &policy,
        with_settings(&tb, json!({"extra_ca_files": [ca.file]})).to_string(),
    )
    .expect("policy");
    let discovery = run();
    assert!(!discovery.contains("not trusted"), "{discovery}");
    let _ = std::fs::remove_dir_all(&dir);
}
