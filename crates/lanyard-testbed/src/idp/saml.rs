//! The IdP's SAML 2.0 side: the single sign-on endpoint (an `AuthnRequest` over HTTP-Redirect),
//! the login that answers with a signed assertion posted to the service provider's assertion
//! consumer service (HTTP-POST binding: an auto-submitting form), and the check of an assertion
//! presented at the token endpoint (signature, issuer, audience → client, validity window,
//! `InResponseTo`, recipient, one use).
//!
//! SAML messages and XML signatures are `samael`'s (libxmlsec1 underneath); nothing is signed or
//! checked by string handling here. Verification keeps only what the signature covers (samael's
//! `ValidateAndMarkNoAncestors` reduction) and reads the assertion from that, so content wrapped
//! around a signed element is never believed. Linux only: the testbed runs on the Linux host.

use std::collections::HashMap;
use std::io::Read as _;
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use samael::attribute::{Attribute, AttributeValue};
use samael::crypto::{
    AllowedSignatureAlgorithm, CertificateDer, Crypto, CryptoProvider, ReduceMode,
};
use samael::idp::{CertificateParams, IdentityProvider, KeyType, Rsa};
use samael::schema::{
    Assertion, AttributeStatement, AudienceRestriction, AuthnContext, AuthnContextClassRef,
    AuthnRequest, AuthnStatement, Conditions, Issuer, Response as SamlResponse, Status,
    StatusCode as SamlStatusCode, Subject, SubjectConfirmation, SubjectConfirmationData,
    SubjectNameID,
};
use samael::signature::{DigestAlgorithm, Signature};
use samael::traits::ToXml;

use super::login::{account_forms, escape};
use super::{IdpState, SamlConfirmationFault, SamlRequest};
use crate::config::RegisteredClient;
use crate::oauth::{parse_form, random_token, OAuthError};

const STATUS_SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
const BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";
const NAMEID_UNSPECIFIED: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified";
const PASSWORD_PROTECTED: &str =
    "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport";

/// The IdP's SAML signing key and its self-signed certificate: one per process (RSA 2048).
pub struct SamlKey {
    key_der: Vec<u8>,
    cert: CertificateDer,
}

/// The process-wide SAML signing key, made on first use.
pub fn saml_key() -> &'static SamlKey {
    static KEY: OnceLock<SamlKey> = OnceLock::new();
    KEY.get_or_init(|| {
        SamlKey::generate("lanyard-testbed-idp").unwrap_or_else(|e| {
            // The testbed cannot serve SAML without a key; a broken OpenSSL is a setup error.
            panic!("generating the testbed's SAML signing key: {e}")
        })
    })
}

impl SamlKey {
    /// A fresh RSA 2048 key and a self-signed certificate naming `common_name`.
    pub fn generate(common_name: &str) -> Result<Self, Box<dyn std::error::Error>> {
        let idp = IdentityProvider::generate_new(KeyType::Rsa(Rsa::Rsa2048))?;
        let cert = idp.create_certificate(&CertificateParams {
            common_name,
            issuer_name: common_name,
            days_until_expiration: 3650,
        })?;
        Ok(Self {
            key_der: idp.export_private_key_der()?,
            cert,
        })
    }

    /// The certificate (DER) that verifies this key's signatures.
    pub fn certificate(&self) -> &CertificateDer {
        &self.cert
    }
}

/// What goes into one assertion.
pub struct AssertionContent<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
    pub recipient: &'a str,
    pub in_response_to: &'a str,
    pub name_id: &'a str,
    pub email: Option<&'a str>,
    pub issued_at: u64,
    pub lifetime_secs: u64,
}

fn instant(unix: u64) -> DateTime<Utc> {
    DateTime::from_timestamp(unix as i64, 0).unwrap_or_default()
}

/// A `Response` carrying one assertion that `key` signs (enveloped, exclusive C14N, RSA-SHA256),
/// as XML text. Its bearer `SubjectConfirmationData` (inside the signature) names the request
/// answered, the recipient and the end of the assertion's validity.
pub fn signed_response(
    key: &SamlKey,
    content: &AssertionContent<'_>,
) -> Result<String, Box<dyn std::error::Error>> {
    signed_response_with(key, content, None)
}

/// [`signed_response`] with its `SubjectConfirmationData` made wrong as `fault` says.
pub fn signed_response_with(
    key: &SamlKey,
    content: &AssertionContent<'_>,
    fault: Option<SamlConfirmationFault>,
) -> Result<String, Box<dyn std::error::Error>> {
    let now = instant(content.issued_at);
    let until = instant(content.issued_at + content.lifetime_secs);
    let confirmation_until = match fault {
        Some(SamlConfirmationFault::Expired) => instant(content.issued_at.saturating_sub(3600)),
        _ => until,
    };
    let recipient = match fault {
        Some(SamlConfirmationFault::WrongRecipient) => "http://127.0.0.1:1/elsewhere".to_string(),
        _ => content.recipient.to_string(),
    };
    let confirmed_request = match fault {
        Some(SamlConfirmationFault::WrongInResponseTo) => format!("_other{}", hex_id()),
        _ => content.in_response_to.to_string(),
    };
    let subject_confirmations = match fault {
        Some(SamlConfirmationFault::Missing) => None,
        _ => Some(vec![SubjectConfirmation {
            method: Some(BEARER.to_string()),
            name_id: None,
            subject_confirmation_data: Some(SubjectConfirmationData {
                not_before: None,
                not_on_or_after: Some(confirmation_until),
                recipient: Some(recipient),
                in_response_to: Some(confirmed_request),
                address: None,
                content: None,
            }),
        }]),
    };
    let issuer = Issuer {
        value: Some(content.issuer.to_string()),
        ..Default::default()
    };
    let assertion_id = format!("_a{}", hex_id());
    // samael's template digests with SHA-1; SHA-256 goes with the RSA-SHA256 signature (and is
    // what the check below accepts).
    let mut signature = Signature::template(&assertion_id, &key.cert);
    for reference in &mut signature.signed_info.reference {
        reference.digest_method.algorithm = DigestAlgorithm::Sha256;
    }
    let attributes = content
        .email
        .map(|email| Attribute {
            friendly_name: None,
            name: Some("email".to_string()),
            name_format: None,
            values: vec![AttributeValue {
                attribute_type: Some("xs:string".to_string()),
                value: Some(email.to_string()),
            }],
        })
        .into_iter()
        .collect();
    let assertion = Assertion {
        id: assertion_id.clone(),
        issue_instant: now,
        version: "2.0".to_string(),
        issuer: issuer.clone(),
        signature: Some(signature),
        subject: Some(Subject {
            name_id: Some(SubjectNameID {
                format: Some(NAMEID_UNSPECIFIED.to_string()),
                value: content.name_id.to_string(),
            }),
            subject_confirmations,
        }),
        conditions: Some(Conditions {
            not_before: Some(now),
            not_on_or_after: Some(until),
            audience_restrictions: Some(vec![AudienceRestriction {
                audience: vec![content.audience.to_string()],
            }]),
            one_time_use: None,
            proxy_restriction: None,
        }),
        authn_statements: Some(vec![AuthnStatement {
            authn_instant: Some(now),
            session_index: Some(random_token(8)),
            session_not_on_or_after: None,
            subject_locality: None,
            authn_context: Some(AuthnContext {
                value: Some(AuthnContextClassRef {
                    value: Some(PASSWORD_PROTECTED.to_string()),
                }),
            }),
        }]),
        attribute_statements: Some(vec![AttributeStatement { attributes }]),
    };
    let response = SamlResponse {
        id: format!("_r{}", hex_id()),
        in_response_to: Some(content.in_response_to.to_string()),
        version: "2.0".to_string(),
        issue_instant: now,
        destination: Some(content.recipient.to_string()),
        consent: None,
        issuer: Some(issuer),
        signature: None,
        status: Some(Status {
            status_code: SamlStatusCode {
                value: Some(STATUS_SUCCESS.to_string()),
            },
            status_message: None,
            status_detail: None,
        }),
        encrypted_assertion: None,
        assertion: Some(assertion),
    };
    let unsigned = response.to_string()?;
    Ok(Crypto::sign_xml(unsigned, &key.key_der)?)
}

fn hex_id() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn error_page(status: StatusCode, message: &str) -> Response {
    (
        status,
        Html(format!(
            "<!doctype html><title>Sign-in error</title><h1>Sign-in error</h1><p id=\"error\">{}</p>",
            escape(message)
        )),
    )
        .into_response()
}

/// Whether `uri` is a loopback ACS a native app may use (any port), as for OIDC redirects.
fn is_loopback(uri: &str) -> bool {
    url::Url::parse(uri).is_ok_and(|u| {
        u.scheme() == "http"
            && matches!(
                u.host_str(),
                Some("127.0.0.1") | Some("localhost") | Some("[::1]")
            )
            && u.fragment().is_none()
    })
}

/// The OAuth client an SP entity id maps to, if the SP is registered.
fn client_for_entity<'a>(state: &'a IdpState, entity_id: &str) -> Option<&'a RegisteredClient> {
    let client_id = state
        .config
        .saml_service_providers
        .get(entity_id)
        .map(String::as_str)
        .unwrap_or(entity_id);
    state
        .config
        .clients
        .iter()
        .find(|c| c.client_id == client_id)
}

/// Inflates and parses a `SAMLRequest` of the HTTP-Redirect binding.
fn read_authn_request(encoded: &str) -> Result<AuthnRequest, String> {
    let deflated = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| "SAMLRequest is not base64".to_string())?;
    let mut xml = String::new();
    flate2::read::DeflateDecoder::new(&deflated[..])
        .take(64 * 1024)
        .read_to_string(&mut xml)
        .map_err(|_| "SAMLRequest is not DEFLATE-compressed XML".to_string())?;
    AuthnRequest::from_str(&xml).map_err(|e| format!("SAMLRequest is not an AuthnRequest: {e}"))
}

/// `GET /saml/sso`: checks the `AuthnRequest` and renders the login page.
pub(crate) async fn sso(
    State(state): State<Arc<IdpState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(encoded) = q.get("SAMLRequest") else {
        return error_page(StatusCode::BAD_REQUEST, "SAMLRequest is required");
    };
    let request = match read_authn_request(encoded) {
        Ok(r) => r,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, &e),
    };
    let Some(entity_id) = request.issuer.as_ref().and_then(|i| i.value.clone()) else {
        return error_page(StatusCode::BAD_REQUEST, "the AuthnRequest names no Issuer");
    };
    if client_for_entity(&state, &entity_id).is_none() {
        return error_page(
            StatusCode::BAD_REQUEST,
            &format!("unknown service provider {entity_id}"),
        );
    }
    let Some(acs_url) = request.assertion_consumer_service_url.clone() else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "the AuthnRequest names no AssertionConsumerServiceURL",
        );
    };
    if !is_loopback(&acs_url) {
        return error_page(
            StatusCode::BAD_REQUEST,
            "AssertionConsumerServiceURL must be http://127.0.0.1:<port>/… or http://localhost:<port>/…",
        );
    }
    if request.id.is_empty() {
        return error_page(StatusCode::BAD_REQUEST, "the AuthnRequest has no ID");
    }
    state.counters.saml_requests.fetch_add(1, Ordering::SeqCst);
    state.data().saml_requests.insert(
        request.id.clone(),
        SamlRequest {
            sp_entity_id: entity_id.clone(),
            acs_url,
            relay_state: q.get("RelayState").cloned(),
            answered: false,
        },
    );
    let forms = account_forms(
        &state,
        &format!("{}/saml/login", state.base_path),
        &request.id,
    );
    Html(format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Lanyard testbed IdP — SAML sign in</title></head>\
         <body><h1>Sign in to the testbed IdP (SAML)</h1><p>Service provider: {}</p>\n{forms}</body></html>\n",
        escape(&entity_id)
    ))
    .into_response()
}

/// `POST /saml/login`: the user picked an account; answer with the signed response, posted to the
/// service provider by an auto-submitting form.
pub(crate) async fn login(State(state): State<Arc<IdpState>>, body: Bytes) -> Response {
    let form = parse_form(&body);
    let (Some(request_id), Some(who)) = (form.get("request"), form.get("user")) else {
        return error_page(StatusCode::BAD_REQUEST, "request and user are required");
    };
    let Some(user) = state.user(who).cloned() else {
        return error_page(StatusCode::BAD_REQUEST, &format!("unknown user {who}"));
    };
    let request = {
        let mut data = state.data();
        match data.saml_requests.get_mut(request_id) {
            Some(r) if !r.answered => {
                r.answered = true;
                r.clone()
            }
            _ => {
                return error_page(
                    StatusCode::BAD_REQUEST,
                    "unknown or already answered sign-in request",
                )
            }
        }
    };
    let content = AssertionContent {
        issuer: &state.issuer,
        audience: &request.sp_entity_id,
        recipient: &request.acs_url,
        in_response_to: request_id,
        name_id: &user.sub,
        email: Some(&user.email),
        issued_at: state.clock.unix(),
        lifetime_secs: state.config.saml_assertion_lifetime.as_secs(),
    };
    let fault = *state
        .saml_confirmation_fault
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let xml = match signed_response_with(saml_key(), &content, fault) {
        Ok(xml) => xml,
        Err(e) => {
            return error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("signing failed: {e}"),
            )
        }
    };
    state.counters.saml_logins.fetch_add(1, Ordering::SeqCst);
    let encoded = base64::engine::general_purpose::STANDARD.encode(xml);
    let relay = request
        .relay_state
        .as_deref()
        .map(|r| {
            format!(
                "<input type=\"hidden\" name=\"RelayState\" value=\"{}\">",
                escape(r)
            )
        })
        .unwrap_or_default();
    Html(format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Signing in…</title></head>\
         <body onload=\"document.forms[0].submit()\">\
         <form method=\"post\" action=\"{acs}\" data-saml-post=\"1\">\
         <input type=\"hidden\" name=\"SAMLResponse\" value=\"{encoded}\">{relay}\
         <noscript><button type=\"submit\">Continue</button></noscript></form></body></html>\n",
        acs = escape(&request.acs_url),
    ))
    .into_response()
}

/// Who an accepted assertion speaks for.
pub(crate) struct SamlUser {
    pub sub: String,
    pub auth_time: u64,
}

/// Checks an assertion presented as an RFC 8693 `subject_token` (base64url, padded or not; plain
/// base64 is accepted too): signed by this IdP's key, issued here, its `Audience` an SP that maps
/// to the authenticated `client` (the draft's MUST), inside its validity window, answering a
/// request this IdP accepted for that SP, for a known user, and not presented before.
pub(crate) fn check_assertion(
    state: &IdpState,
    client: &RegisteredClient,
    subject_token: &str,
) -> Result<SamlUser, OAuthError> {
    let reject = |why: &str| OAuthError::invalid_grant(format!("the SAML assertion {why}"));
    let normalized: String = subject_token
        .trim()
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(normalized.as_bytes())
        .map_err(|_| reject("is not base64url"))?;
    let xml = String::from_utf8(bytes).map_err(|_| reject("is not UTF-8 XML"))?;
    let signed_only = Crypto::reduce_xml_to_signed_with_allowed_algorithms(
        &xml,
        std::slice::from_ref(&saml_key().cert),
        ReduceMode::ValidateAndMarkNoAncestors,
        Some(&[AllowedSignatureAlgorithm::RsaSha256]),
    )
    .map_err(|e| reject(&format!("signature is not valid: {e}")))?;
    let assertion = Assertion::from_str(&signed_only)
        .map_err(|_| reject("signed content is not an Assertion"))?;
    if assertion.issuer.value.as_deref() != Some(state.issuer.as_str()) {
        return Err(reject("was not issued here"));
    }
    let audiences: Vec<&str> = assertion
        .conditions
        .iter()
        .flat_map(|c| c.audience_restrictions.iter().flatten())
        .flat_map(|r| r.audience.iter().map(String::as_str))
        .collect();
    let [audience] = audiences[..] else {
        return Err(reject("must name exactly one Audience"));
    };
    if client_for_entity(state, audience).map(|c| c.client_id.as_str())
        != Some(client.client_id.as_str())
    {
        return Err(reject(&format!(
            "was issued to service provider {audience}, which is not client {}",
            client.client_id
        )));
    }
    let now = instant(state.clock.unix());
    let conditions = assertion
        .conditions
        .as_ref()
        .ok_or_else(|| reject("has no Conditions"))?;
    if conditions.not_before.is_some_and(|t| now < t) {
        return Err(reject("is not valid yet (NotBefore)"));
    }
    match conditions.not_on_or_after {
        Some(t) if now < t => {}
        _ => return Err(reject("has expired (NotOnOrAfter)")),
    }
    let subject = assertion
        .subject
        .as_ref()
        .ok_or_else(|| reject("has no Subject"))?;
    let data = subject
        .subject_confirmations
        .iter()
        .flatten()
        .filter(|c| c.method.as_deref() == Some(BEARER))
        .find_map(|c| c.subject_confirmation_data.as_ref())
        .ok_or_else(|| reject("has no bearer SubjectConfirmationData"))?;
    if data.not_on_or_after.is_none_or(|t| now >= t) {
        return Err(reject("confirmation has expired (NotOnOrAfter)"));
    }
    let request_id = data
        .in_response_to
        .as_deref()
        .ok_or_else(|| reject("answers no request (InResponseTo)"))?;
    let sub = subject
        .name_id
        .as_ref()
        .map(|n| n.value.trim().to_string())
        .ok_or_else(|| reject("names no subject"))?;
    let user = state
        .user(&sub)
        .ok_or_else(|| reject("names an unknown user"))?
        .sub
        .clone();
    let auth_time = assertion
        .authn_statements
        .iter()
        .flatten()
        .find_map(|s| s.authn_instant)
        .map(|t| t.timestamp().max(0) as u64)
        .unwrap_or(state.clock.unix());
    let mut store = state.data();
    match store.saml_requests.get(request_id) {
        Some(r) if r.answered && r.sp_entity_id == audience => {
            if data.recipient.as_deref() != Some(r.acs_url.as_str()) {
                return Err(reject("was sent to another Recipient"));
            }
        }
        _ => {
            return Err(reject(
                "answers a request this IdP did not accept (InResponseTo)",
            ))
        }
    }
    if !store.saml_used_assertions.insert(assertion.id.clone()) {
        return Err(reject("was already exchanged"));
    }
    Ok(SamlUser {
        sub: user,
        auth_time,
    })
}
