//! SAML 2.0 sign-in (`idp.sign_in: saml`) end to end against the testbed over real HTTP: the
//! scripted browser opens the IdP's SSO page, signs in, and submits the auto-posting form that
//! carries the signed assertion to Lanyard's loopback; Lanyard exchanges the assertion for an IdP
//! refresh token, which is then the subject of every ID-JAG exchange. Renewal mints ID-JAGs from
//! that refresh token, the IdP session is renewed by the refresh-token grant, and when the IdP
//! session ends the engine asks to sign in again. Linux only: the testbed's SAML IdP is.
#![cfg(target_os = "linux")]

mod support;

use std::sync::Arc;
use std::time::Duration;

use lanyard_core::engine::{refresh_token_key, EngineError, IdpStatus, ServerState};
use lanyard_core::signin::Browser;
use lanyard_core::store::SecretStore;
use lanyard_testbed::demo::{demo_config, lanyard_saml_policy, DEMO_IDP_CLIENT_ID};
use lanyard_testbed::Testbed;
use serde_json::{json, Value};
use support::*;

/// The demo world (alice denied Payroll) whose SAML sessions last `session`.
async fn saml_world(session: Duration) -> Testbed {
    let mut config = demo_config(Duration::ZERO);
    config.idp.saml_session_lifetime = session;
    let tb = testbed(config).await;
    let payroll = tb
        .auth_server("payroll")
        .expect("payroll")
        .issuer()
        .to_owned();
    tb.idp().deny("alice", &payroll);
    tb
}

fn saml_policy(tb: &Testbed) -> Value {
    let mut policy = lanyard_saml_policy(tb);
    policy["dev_mode"] = json!(true);
    policy
}

fn saved_refresh_token(lanyard: &Lanyard, tb: &Testbed) -> Option<String> {
    let key = refresh_token_key(tb.idp().issuer(), DEMO_IDP_CLIENT_ID);
    lanyard
        .store
        .get(&key)
        .expect("store")
        .map(|s| s.expose().to_owned())
}

async fn settled(lanyard: &Lanyard) {
    lanyard
        .wait("docs and tickets granted, payroll denied", |s| {
            s.is_settled()
                && ["docs", "tickets"].iter().all(|id| {
                    s.server(id)
                        .is_some_and(|srv| matches!(srv.state, ServerState::Granted { .. }))
                })
                && s.server("payroll")
                    .is_some_and(|srv| matches!(srv.state, ServerState::Denied { .. }))
        })
        .await;
}

#[tokio::test]
async fn saml_sign_in_grants_every_server_with_the_idp_refresh_token_as_subject() {
    let tb = saml_world(Duration::from_secs(8 * 3600)).await;
    let lanyard = start_engine(&tb, &saml_policy(&tb), Options::default());
    lanyard.sign_in().await;
    settled(&lanyard).await;

    let status = lanyard.engine.status();
    match &status.idp {
        IdpStatus::SignedIn { subject, email, .. } => {
            assert_eq!(subject, "alice");
            assert_eq!(email.as_deref(), Some("alice@example.com"));
        }
        other => panic!("not signed in: {other:?}"),
    }
    let opened = lanyard.browser.opened();
    assert_eq!(opened.len(), 1, "one browser tab");
    assert!(
        opened[0].as_str().starts_with(&tb.idp().saml_sso_url()),
        "{}",
        opened[0]
    );
    assert!(opened[0].query_pairs().any(|(k, _)| k == "SAMLRequest"));

    let stats = tb.idp().stats();
    assert_eq!(stats.saml_requests, 1);
    assert_eq!(stats.saml_logins, 1);
    assert_eq!(stats.saml_exchanges, 1, "one assertion exchanged");
    assert_eq!(stats.rejected_saml_exchanges, 0);
    assert_eq!(stats.authorize_requests + stats.code_grants, 0, "no OIDC");
    assert_eq!(stats.refresh_grants, 0);
    // docs, tickets granted; payroll refused by policy at the exchange.
    assert_eq!(stats.token_exchanges, 2);
    assert_eq!(stats.rejected_token_exchanges, 1);

    // The IdP refresh token from the SAML exchange is in the keychain and is what every ID-JAG
    // exchange presented as its subject.
    let refresh_token = saved_refresh_token(&lanyard, &tb).expect("refresh token saved");
    assert_eq!(tb.idp().live_refresh_tokens(), 1);
    let wire = tb.idp().wire_secrets();
    assert!(
        wire.id_tokens.contains(&refresh_token),
        "the refresh token was a subject token"
    );
    assert!(
        wire.access_tokens.contains(&refresh_token),
        "issued as the exchange's access_token, as the draft shows"
    );

    for id in ["docs", "tickets"] {
        let token = lanyard.token(id, 0).await;
        assert_accepted(tb.mcp_server(id).expect("mcp"), token.access_token.expose()).await;
    }
    assert!(matches!(
        lanyard.engine.token("payroll", Duration::ZERO).await,
        Err(EngineError::Denied { .. })
    ));
}

#[tokio::test]
async fn saml_renewal_mints_from_the_refresh_token_and_the_end_of_the_idp_session_asks_to_sign_in_again(
) {
    let session = Duration::from_secs(2 * 3600);
    let tb = saml_world(session).await;
    let lanyard = start_engine(&tb, &saml_policy(&tb), Options::default());
    lanyard.sign_in().await;
    settled(&lanyard).await;
    let first_rt = saved_refresh_token(&lanyard, &tb).expect("saved");
    let first_expiry = lanyard.wait_granted("docs").await;
    let exchanges = tb.idp().stats().token_exchanges;

    // The access tokens (300 s) run out: new ID-JAGs from the same refresh token, no browser, no
    // IdP refresh.
    lanyard.advance(&tb, Duration::from_secs(300));
    lanyard
        .wait_server(
            "docs",
            "re-granted",
            |s| matches!(s, ServerState::Granted { expires_at, .. } if *expires_at > first_expiry),
        )
        .await;
    let stats = tb.idp().stats();
    assert!(stats.token_exchanges > exchanges, "fresh ID-JAGs");
    assert_eq!(stats.refresh_grants, 0);
    assert_eq!(stats.saml_logins, 1);
    assert_eq!(
        saved_refresh_token(&lanyard, &tb).as_deref(),
        Some(&*first_rt)
    );

    // Three quarters into the IdP session: the session is renewed with the refresh-token grant
    // (rotation), and grants go on with the new refresh token.
    lanyard.advance(&tb, Duration::from_secs(5400 - 300));
    eventually("the IdP session renewed", || {
        tb.idp().stats().refresh_grants >= 1
    })
    .await;
    let now = lanyard.now();
    lanyard
        .wait_server(
            "docs",
            "granted after the renewal",
            |s| matches!(s, ServerState::Granted { expires_at, .. } if *expires_at > now),
        )
        .await;
    let second_rt = saved_refresh_token(&lanyard, &tb).expect("saved");
    assert_ne!(second_rt, first_rt, "the rotated refresh token is saved");
    assert!(matches!(
        lanyard.engine.status().idp,
        IdpStatus::SignedIn { .. }
    ));
    assert_eq!(tb.idp().stats().saml_logins, 1, "no new SAML sign-in");

    // Past the end of the IdP session: the refresh token is refused; "sign in again".
    lanyard.advance(&tb, Duration::from_secs(2100));
    let status = lanyard
        .wait("sign in again", |s| {
            matches!(s.idp, IdpStatus::NeedsSignIn { .. })
        })
        .await;
    let IdpStatus::NeedsSignIn { reason } = &status.idp else {
        unreachable!()
    };
    assert!(reason.contains("sign in again"), "{reason}");
    assert_eq!(
        lanyard
            .engine
            .token("docs", Duration::from_secs(60))
            .await
            .err(),
        Some(EngineError::NotSignedIn)
    );
    eventually("the ended session wiped from the keychain", || {
        holds_no_secret(&lanyard.store)
    })
    .await;

    // Signing in again starts a new SAML session.
    lanyard.sign_in().await;
    settled(&lanyard).await;
    assert_eq!(tb.idp().stats().saml_logins, 2);
    assert_eq!(tb.idp().stats().saml_exchanges, 2);
}

#[tokio::test]
async fn a_second_engine_resumes_a_saml_session_without_a_browser() {
    let tb = saml_world(Duration::from_secs(8 * 3600)).await;
    let policy = saml_policy(&tb);
    let first = start_engine(&tb, &policy, Options::default());
    first.sign_in().await;
    settled(&first).await;
    first.engine.shutdown().await;

    let second = start_engine(
        &tb,
        &policy,
        Options {
            store: first.store.clone(),
            browser: Some(Arc::new(NoBrowser)),
            ..Options::default()
        },
    );
    settled(&second).await;
    let stats = tb.idp().stats();
    assert_eq!(stats.saml_logins, 1, "no second browser sign-in");
    assert_eq!(
        stats.refresh_grants, 1,
        "resumed with the refresh-token grant"
    );
    match second.engine.status().idp {
        IdpStatus::SignedIn { subject, .. } => assert_eq!(subject, "alice"),
        other => panic!("not resumed: {other:?}"),
    }
}

/// Lanyard takes the assertion out of the IdP's response without checking its signature; this
/// checks with libxmlsec (samael) that what it sends still verifies — also when the assertion's
/// namespace was declared only on the enclosing `Response`, which Lanyard must then carry over.
#[test]
fn the_detached_assertion_still_verifies_with_xmlsec() {
    use base64::Engine as _;
    use samael::crypto::{AllowedSignatureAlgorithm, Crypto, CryptoProvider, ReduceMode};
    let key = lanyard_testbed::saml_key();
    let xml = lanyard_testbed::signed_response(
        key,
        &lanyard_testbed::AssertionContent {
            issuer: "https://idp.example",
            audience: "lanyard-desktop",
            recipient: "http://127.0.0.1:1/callback",
            in_response_to: "_req",
            name_id: "alice",
            email: Some("alice@example.com"),
            issued_at: 1_800_000_000,
            lifetime_secs: 300,
        },
    )
    .expect("signed");
    let ns = r#" xmlns:saml2="urn:oasis:names:tc:SAML:2.0:assertion""#;
    // The same document with the assertion namespace declared once, on the Response root.
    let inherited =
        xml.replace(ns, "")
            .replacen("<saml2p:Response", &format!("<saml2p:Response{ns}"), 1);
    assert_ne!(inherited, xml);
    let verify = |doc: &str| {
        Crypto::reduce_xml_to_signed_with_allowed_algorithms(
            doc,
            std::slice::from_ref(key.certificate()),
            ReduceMode::ValidateAndMarkNoAncestors,
            Some(&[AllowedSignatureAlgorithm::RsaSha256]),
        )
        .map(|_| ())
    };
    for doc in [&xml, &inherited] {
        verify(doc).expect("the IdP's response verifies");
        let b64 = base64::engine::general_purpose::STANDARD.encode(doc);
        let got = lanyard_core::signin::saml::read_response(
            &b64,
            &lanyard_core::signin::saml::ExpectedResponse {
                request_id: "_req",
                acs_url: "http://127.0.0.1:1/callback",
                now: 1_800_000_000,
            },
        )
        .expect("assertion");
        assert_eq!(got.subject, "alice");
        verify(got.xml.expose()).expect("the detached assertion verifies");
        let tampered = got.xml.expose().replace(">alice<", ">bob<");
        assert_ne!(&tampered, got.xml.expose());
        assert!(verify(&tampered).is_err(), "a changed NameID breaks it");
    }
}

/// What a hostile page posts to Lanyard's loopback, given the `AuthnRequest`'s id, the
/// `RelayState` and the assertion consumer URL: the form body.
type Forge = dyn Fn(&str, &str, &str) -> String + Send + Sync;

/// Signs in, which must fail as a sign-in error: its message.
async fn failed_sign_in(lanyard: &Lanyard) -> String {
    let error = tokio::time::timeout(WAIT, lanyard.engine.sign_in())
        .await
        .expect("sign-in answered")
        .expect_err("the sign-in must fail");
    let EngineError::SignIn(message) = error else {
        panic!("not a sign-in error: {error:?}");
    };
    message
}

/// A "browser" that reads the SAML request Lanyard sends and posts its own answer to the ACS URL
/// named there, instead of signing in at the IdP.
struct HostileBrowser(Arc<Forge>);

impl std::fmt::Debug for HostileBrowser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HostileBrowser")
    }
}

fn attribute(xml: &str, name: &str) -> String {
    let needle = format!(" {name}=\"");
    let start = xml.find(&needle).expect("attribute") + needle.len();
    xml[start..start + xml[start..].find('"').expect("quote")].to_string()
}

impl Browser for HostileBrowser {
    fn open(&self, url: &url::Url) -> Result<(), String> {
        use base64::Engine as _;
        use std::io::Read as _;
        let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
        let deflated = base64::engine::general_purpose::STANDARD
            .decode(&q["SAMLRequest"])
            .map_err(|e| e.to_string())?;
        let mut xml = String::new();
        flate2::read::DeflateDecoder::new(&deflated[..])
            .read_to_string(&mut xml)
            .map_err(|e| e.to_string())?;
        let acs = attribute(&xml, "AssertionConsumerServiceURL");
        let body = (self.0)(&attribute(&xml, "ID"), &q["RelayState"], &acs);
        tokio::spawn(async move {
            let _ = http()
                .post(acs)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await;
        });
        Ok(())
    }
}

fn form(response: &str, relay_state: &str) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("SAMLResponse", response)
        .append_pair("RelayState", relay_state)
        .finish()
}

async fn sign_in_error(tb: &Testbed, forge: Arc<Forge>) -> String {
    let lanyard = start_engine(
        tb,
        &saml_policy(tb),
        Options {
            browser: Some(Arc::new(HostileBrowser(forge))),
            ..Options::default()
        },
    );
    let message = failed_sign_in(&lanyard).await;
    let status = lanyard.engine.status();
    assert!(
        matches!(&status.idp, IdpStatus::NeedsSignIn { reason } if *reason == message),
        "{:?}",
        status.idp
    );
    assert!(holds_no_secret(&lanyard.store), "nothing saved");
    message
}

#[tokio::test]
async fn a_malformed_saml_answer_at_the_loopback_is_a_named_sign_in_error() {
    let tb = saml_world(Duration::from_secs(3600)).await;
    let message = sign_in_error(&tb, Arc::new(|_, relay, _| form("%%% not base64", relay))).await;
    assert_eq!(message, "the SAML response is not base64");
    let message = sign_in_error(
        &tb,
        Arc::new(|_, relay, _| {
            use base64::Engine as _;
            form(
                &base64::engine::general_purpose::STANDARD.encode("<html>no</html>"),
                relay,
            )
        }),
    )
    .await;
    assert!(message.contains("not a SAML 2.0 Response"), "{message}");
    assert_eq!(
        tb.idp().stats().saml_exchanges + tb.idp().stats().rejected_saml_exchanges,
        0
    );
}

#[tokio::test]
async fn a_tampered_assertion_is_refused_by_the_idp_and_the_sign_in_fails_by_name() {
    let tb = saml_world(Duration::from_secs(3600)).await;
    let issuer = tb.idp().issuer().to_owned();
    let now = tb.clock().unix();
    let message = sign_in_error(
        &tb,
        Arc::new(move |request_id, relay, acs| {
            use base64::Engine as _;
            let xml = lanyard_testbed::signed_response(
                lanyard_testbed::saml_key(),
                &lanyard_testbed::AssertionContent {
                    issuer: &issuer,
                    audience: DEMO_IDP_CLIENT_ID,
                    recipient: acs,
                    in_response_to: request_id,
                    name_id: "bob",
                    email: None,
                    issued_at: now,
                    lifetime_secs: 300,
                },
            )
            .expect("signed");
            // bob's assertion, rewritten to say alice: the signature no longer holds.
            let tampered = xml.replace(">bob<", ">alice<");
            form(
                &base64::engine::general_purpose::STANDARD.encode(tampered),
                relay,
            )
        }),
    )
    .await;
    assert!(message.contains("invalid_grant"), "{message}");
    assert!(message.contains("signature is not valid"), "{message}");
    assert_eq!(tb.idp().stats().rejected_saml_exchanges, 1);
    assert_eq!(tb.idp().live_refresh_tokens(), 0);
}

/// A sign-in whose assertion the IdP signed with `fault` in its `SubjectConfirmationData` (the
/// scripted browser signs in for real); the sign-in error's message.
async fn sign_in_error_with_confirmation_fault(
    tb: &Testbed,
    fault: lanyard_testbed::SamlConfirmationFault,
) -> String {
    tb.idp().set_saml_confirmation_fault(Some(fault));
    let lanyard = start_engine(tb, &saml_policy(tb), Options::default());
    let message = failed_sign_in(&lanyard).await;
    assert!(holds_no_secret(&lanyard.store), "nothing saved");
    message
}

#[tokio::test]
async fn an_assertion_not_confirmed_for_this_sign_in_is_refused_before_the_exchange() {
    use lanyard_testbed::SamlConfirmationFault as Fault;
    let tb = saml_world(Duration::from_secs(3600)).await;
    for (fault, expect) in [
        (Fault::WrongRecipient, "(SubjectConfirmationData Recipient)"),
        (
            Fault::WrongInResponseTo,
            "(SubjectConfirmationData InResponseTo)",
        ),
        (Fault::Expired, "(SubjectConfirmationData NotOnOrAfter"),
        (Fault::Missing, "no bearer SubjectConfirmationData"),
    ] {
        let message = sign_in_error_with_confirmation_fault(&tb, fault).await;
        assert!(message.contains(expect), "{fault:?}: {message}");
    }
    let stats = tb.idp().stats();
    assert_eq!(stats.saml_logins, 4, "each assertion was issued");
    assert_eq!(
        stats.saml_exchanges + stats.rejected_saml_exchanges,
        0,
        "none was presented at the token endpoint"
    );

    // The same IdP with its confirmations right again: the sign-in goes through.
    tb.idp().set_saml_confirmation_fault(None);
    let lanyard = start_engine(&tb, &saml_policy(&tb), Options::default());
    lanyard.sign_in().await;
    settled(&lanyard).await;
    assert_eq!(tb.idp().stats().saml_exchanges, 1);
}
