//! The testbed's SAML IdP on its own, driven over real HTTP the way a service provider would: an
//! `AuthnRequest` to the SSO endpoint, the login, the auto-posting form's `SAMLResponse`, and the
//! RFC 8693 exchanges (assertion → refresh token → ID-JAG). Hostile input: tampered, unsigned,
//! foreign-signed, misdirected, expired, unsolicited and replayed assertions are refused.
#![cfg(target_os = "linux")]

mod support;

use std::io::Write as _;
use std::time::Duration;

use base64::Engine as _;
use lanyard_testbed::oauth::{
    GRANT_TOKEN_EXCHANGE, TOKEN_TYPE_ID_JAG, TOKEN_TYPE_REFRESH_TOKEN, TOKEN_TYPE_SAML2,
};
use lanyard_testbed::{
    saml_key, signed_response, AssertionContent, IdpConfig, RegisteredClient, SamlKey, Testbed,
    TestbedConfig,
};
use serde_json::Value;
use support::*;

const CLIENT: &str = "lanyard-desktop";
const ACS: &str = "http://127.0.0.1:9/callback";

async fn start(session: Duration) -> Testbed {
    let idp = IdpConfig {
        saml_session_lifetime: session,
        ..IdpConfig::default()
    }
    .add_client(RegisteredClient::public("other-app"));
    Testbed::start(TestbedConfig {
        idp,
        ..TestbedConfig::default()
    })
    .await
    .expect("testbed")
}

fn redirect_binding(xml: &str) -> String {
    let mut deflater =
        flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    deflater.write_all(xml.as_bytes()).expect("deflate");
    base64::engine::general_purpose::STANDARD.encode(deflater.finish().expect("deflate"))
}

fn authn_request(id: &str, sp: &str, acs: &str) -> String {
    format!(
        "<samlp:AuthnRequest xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" \
         xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"{id}\" Version=\"2.0\" \
         IssueInstant=\"2026-11-28T10:00:00Z\" AssertionConsumerServiceURL=\"{acs}\">\
         <saml:Issuer>{sp}</saml:Issuer></samlp:AuthnRequest>"
    )
}

/// Opens the SSO URL with an `AuthnRequest`; returns the status and the page.
async fn open_sso(tb: &Testbed, id: &str, sp: &str, acs: &str) -> (u16, String) {
    let mut url = url::Url::parse(&tb.idp().saml_sso_url()).expect("url");
    url.query_pairs_mut()
        .append_pair(
            "SAMLRequest",
            &redirect_binding(&authn_request(id, sp, acs)),
        )
        .append_pair("RelayState", "rs-1");
    let resp = http().get(url).send().await.expect("sso");
    (resp.status().as_u16(), resp.text().await.expect("page"))
}

fn field(page: &str, name: &str) -> Option<String> {
    let needle = format!("name=\"{name}\" value=\"");
    let start = page.find(&needle)? + needle.len();
    Some(page[start..start + page[start..].find('"')?].to_string())
}

/// A full SAML login as alice: the `Response` XML the IdP posted, and the request id.
async fn login(tb: &Testbed) -> (String, String) {
    let id = format!("_req{}", rand_string().replace(['-', '_'], "x"));
    let (status, page) = open_sso(tb, &id, CLIENT, ACS).await;
    assert_eq!(status, 200, "{page}");
    let (status, body) = post_form(
        &tb.idp().saml_sso_url().replace("/saml/sso", "/saml/login"),
        &[("request", &id), ("user", "alice")],
    )
    .await;
    assert_eq!(status, 200);
    let page = body.as_str().expect("html").to_string();
    assert!(page.contains(&format!("action=\"{ACS}\"")), "{page}");
    assert_eq!(field(&page, "RelayState").as_deref(), Some("rs-1"));
    let response = field(&page, "SAMLResponse").expect("SAMLResponse");
    let xml = base64::engine::general_purpose::STANDARD
        .decode(response)
        .expect("base64");
    (String::from_utf8(xml).expect("utf-8"), id)
}

/// The assertion element of a response (samael declares its namespace on it).
fn assertion_of(response: &str) -> String {
    let start = response.find("<saml2:Assertion").expect("assertion");
    let end = response.find("</saml2:Assertion>").expect("end") + "</saml2:Assertion>".len();
    response[start..end].to_string()
}

fn b64url(xml: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(xml)
}

async fn exchange_assertion(tb: &Testbed, client: &str, subject_token: &str) -> (u16, Value) {
    post_form(
        &tb.idp().token_endpoint(),
        &[
            ("grant_type", GRANT_TOKEN_EXCHANGE),
            ("requested_token_type", TOKEN_TYPE_REFRESH_TOKEN),
            ("subject_token_type", TOKEN_TYPE_SAML2),
            ("subject_token", subject_token),
            ("scope", "openid offline_access email"),
            ("client_id", client),
        ],
    )
    .await
}

async fn id_jag_from_refresh_token(tb: &Testbed, refresh_token: &str) -> (u16, Value) {
    post_form(
        &tb.idp().token_endpoint(),
        &[
            ("grant_type", GRANT_TOKEN_EXCHANGE),
            ("requested_token_type", TOKEN_TYPE_ID_JAG),
            ("subject_token_type", TOKEN_TYPE_REFRESH_TOKEN),
            ("subject_token", refresh_token),
            ("audience", "https://as.example"),
            ("resource", "https://mcp.example/mcp"),
            ("client_id", CLIENT),
        ],
    )
    .await
}

fn refused(answer: &(u16, Value), why: &str) {
    assert_eq!(answer.0, 400, "{:?}", answer.1);
    assert_eq!(answer.1["error"], "invalid_grant", "{:?}", answer.1);
    let description = answer.1["error_description"].as_str().unwrap_or_default();
    assert!(description.contains(why), "{description:?} lacks {why:?}");
}

#[tokio::test]
async fn an_assertion_buys_one_refresh_token_which_mints_id_jags_until_the_session_ends() {
    let tb = start(Duration::from_secs(3600)).await;
    let (response, _) = login(&tb).await;
    let assertion = assertion_of(&response);

    let (status, body) = exchange_assertion(&tb, CLIENT, &b64url(&assertion)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["issued_token_type"], TOKEN_TYPE_REFRESH_TOKEN);
    assert_eq!(body["token_type"], "N_A");
    assert_eq!(body["expires_in"], 3600);
    let refresh_token = body["access_token"].as_str().expect("token").to_string();
    refused(
        &exchange_assertion(&tb, CLIENT, &b64url(&assertion)).await,
        "already exchanged",
    );

    // The draft's example sends padded base64: accepted too.
    let (response, _) = login(&tb).await;
    let padded = base64::engine::general_purpose::STANDARD.encode(assertion_of(&response));
    assert_eq!(exchange_assertion(&tb, CLIENT, &padded).await.0, 200);

    let (status, body) = id_jag_from_refresh_token(&tb, &refresh_token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["issued_token_type"], TOKEN_TYPE_ID_JAG);
    let jag = body["access_token"].as_str().expect("jag");
    let payload = jag.split('.').nth(1).expect("payload");
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("b64"),
    )
    .expect("json");
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["aud"], "https://as.example");
    // Not spent: the same refresh token mints the next one too.
    assert_eq!(id_jag_from_refresh_token(&tb, &refresh_token).await.0, 200);

    tb.clock().advance(Duration::from_secs(3601));
    refused(
        &id_jag_from_refresh_token(&tb, &refresh_token).await,
        "session has expired",
    );
    let stats = tb.idp().stats();
    assert_eq!(stats.saml_logins, 2);
    assert_eq!(stats.saml_exchanges, 2);
    assert_eq!(stats.rejected_saml_exchanges, 1);
}

#[tokio::test]
async fn tampered_unsigned_foreign_misdirected_unsolicited_or_late_assertions_are_refused() {
    let tb = start(Duration::from_secs(3600)).await;

    let (response, request_id) = login(&tb).await;
    let assertion = assertion_of(&response);
    let tampered = assertion.replace(">alice<", ">bob<");
    assert_ne!(tampered, assertion);
    refused(
        &exchange_assertion(&tb, CLIENT, &b64url(&tampered)).await,
        "signature",
    );
    let start = assertion.find("<ds:Signature").expect("signature");
    let end = assertion.find("</ds:Signature>").expect("end") + "</ds:Signature>".len();
    let unsigned = format!("{}{}", &assertion[..start], &assertion[end..]);
    refused(
        &exchange_assertion(&tb, CLIENT, &b64url(&unsigned)).await,
        "signature",
    );
    refused(
        &exchange_assertion(&tb, CLIENT, "%%% not base64 %%%").await,
        "base64",
    );
    // The assertion was issued to the SP lanyard-desktop: another client may not use it.
    refused(
        &exchange_assertion(&tb, "other-app", &b64url(&assertion)).await,
        "which is not client other-app",
    );

    // Signed like the IdP's, but by another key.
    let issuer = tb.idp().issuer().to_string();
    let content = |in_response_to| AssertionContent {
        issuer: &issuer,
        audience: CLIENT,
        recipient: ACS,
        in_response_to,
        name_id: "alice",
        email: None,
        issued_at: tb.clock().unix(),
        lifetime_secs: 300,
    };
    let foreign = SamlKey::generate("someone-else").expect("key");
    let xml = signed_response(&foreign, &content(&request_id)).expect("signed");
    refused(
        &exchange_assertion(&tb, CLIENT, &b64url(&assertion_of(&xml))).await,
        "signature",
    );
    // Signed by the IdP's own key but answering no request it accepted.
    let xml = signed_response(saml_key(), &content("_never-asked")).expect("signed");
    refused(
        &exchange_assertion(&tb, CLIENT, &b64url(&assertion_of(&xml))).await,
        "did not accept",
    );

    // Presented after its NotOnOrAfter.
    tb.clock().advance(Duration::from_secs(301));
    refused(
        &exchange_assertion(&tb, CLIENT, &b64url(&assertion)).await,
        "expired",
    );
    let stats = tb.idp().stats();
    assert_eq!(stats.saml_exchanges, 0);
    assert_eq!(stats.rejected_saml_exchanges, 7);
    assert_eq!(tb.idp().live_refresh_tokens(), 0);
}

#[tokio::test]
async fn the_sso_endpoint_refuses_unknown_service_providers_and_remote_consumers() {
    let tb = start(Duration::from_secs(3600)).await;
    let (status, page) = open_sso(&tb, "_r1", "urn:unknown:sp", ACS).await;
    assert_eq!(status, 400);
    assert!(page.contains("unknown service provider"), "{page}");
    let (status, page) = open_sso(&tb, "_r2", CLIENT, "https://evil.example/acs").await;
    assert_eq!(status, 400);
    assert!(
        page.contains("AssertionConsumerServiceURL must be"),
        "{page}"
    );
    let resp = http()
        .get(format!(
            "{}?SAMLRequest=bm90LWRlZmxhdGVk",
            tb.idp().saml_sso_url()
        ))
        .send()
        .await
        .expect("sso");
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(tb.idp().stats().saml_requests, 0);
}

/// The IdP's `SubjectConfirmationData` sits inside the signed assertion and, with a fault knob
/// set, is wrong there in the way the knob says; the IdP's own check at the token endpoint
/// refuses each such assertion too (so a service provider that skipped its check would still
/// fail, only later and less clearly).
#[tokio::test]
async fn confirmation_fault_knobs_make_signed_assertions_the_idp_itself_refuses() {
    use lanyard_testbed::SamlConfirmationFault as Fault;
    let tb = start(Duration::from_secs(3600)).await;
    let (xml, id) = login(&tb).await;
    let assertion = assertion_of(&xml);
    let confirmation = |assertion: &str| -> Option<String> {
        let start = assertion.find("<saml2:SubjectConfirmationData")?;
        let end = start + assertion[start..].find('>')?;
        Some(assertion[start..=end].to_string())
    };
    let good = confirmation(&assertion).expect("a confirmation inside the assertion");
    assert!(good.contains(&format!("InResponseTo=\"{id}\"")), "{good}");
    assert!(good.contains(&format!("Recipient=\"{ACS}\"")), "{good}");
    assert!(good.contains("NotOnOrAfter=\""), "{good}");

    for (fault, why) in [
        (Fault::WrongRecipient, "another Recipient"),
        (Fault::WrongInResponseTo, "did not accept"),
        (Fault::Expired, "confirmation has expired"),
        (Fault::Missing, "no bearer SubjectConfirmationData"),
    ] {
        tb.idp().set_saml_confirmation_fault(Some(fault));
        let (xml, id) = login(&tb).await;
        // The Response itself still answers the request.
        assert!(xml.contains(&format!("InResponseTo=\"{id}\"")), "{fault:?}");
        let assertion = assertion_of(&xml);
        match (fault, confirmation(&assertion)) {
            (Fault::Missing, None) => {}
            (Fault::WrongRecipient, Some(c)) => assert!(!c.contains(ACS), "{c}"),
            (Fault::WrongInResponseTo, Some(c)) => assert!(!c.contains(&id), "{c}"),
            (Fault::Expired, Some(c)) => assert!(c.contains("NotOnOrAfter=\""), "{c}"),
            (fault, c) => panic!("{fault:?}: {c:?}"),
        }
        refused(
            &exchange_assertion(&tb, CLIENT, &b64url(&assertion)).await,
            why,
        );
    }
    tb.idp().set_saml_confirmation_fault(None);
    let stats = tb.idp().stats();
    assert_eq!(stats.saml_exchanges, 0);
    assert_eq!(stats.rejected_saml_exchanges, 4);
}
