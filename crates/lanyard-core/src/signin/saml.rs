//! SAML 2.0 sign-in, as the ID-JAG draft's "SAML 2.0 Identity Assertion Interoperability" section
//! describes it for a client whose corporate SSO speaks SAML: the service provider's
//! `AuthnRequest` (HTTP-Redirect binding), the IdP's `Response` taken apart to the one assertion
//! it carries, and what that assertion says about the user for display.
//!
//! This module does not check XML signatures and links no XML-security library: the assertion is
//! a bearer token Lanyard hands on unchanged to the IdP's token endpoint, which verifies it (the
//! draft puts that check there: "the IdP MUST validate the assertion"). What is read from it here
//! (subject, e-mail) is for the status display only and never decides access. Documents with a
//! DTD are refused (no entity expansion), and so are encrypted assertions (Lanyard holds no SP
//! decryption key). Nothing here does I/O or reads a clock.
//!
//! What Lanyard does check is that the assertion was made for *this* sign-in: the `Response`'s
//! `InResponseTo` sits outside the signed assertion and can be rewritten by whoever posts it, so
//! the assertion's own bearer `SubjectConfirmationData` (inside the IdP's signature, which the IdP
//! checks at the exchange) must name this sign-in's request id (`InResponseTo`), this listener's
//! URL (`Recipient`) and a `NotOnOrAfter` still ahead (SAML Profiles §4.1.4.2–3). An assertion the
//! IdP issued for another sign-in — another user's own, replayed into ours — is refused here,
//! before it is ever exchanged.

use std::io::Write as _;

use base64::Engine as _;
use url::Url;

use crate::secret::Secret;

const NS_PROTOCOL: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
const NS_ASSERTION: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
const STATUS_SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
const BINDING_HTTP_POST: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";
const NAMEID_EMAIL: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress";

/// The longest `SAMLResponse` (base64) taken from the loopback POST. A signed response with a
/// certificate and a dozen attributes is 8–20 KiB; 256 KiB leaves room for large group lists.
pub const MAX_SAML_RESPONSE_BYTES: usize = 256 * 1024;

/// How the SAML sign-in is configured (from the policy's `idp` section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamlSettings {
    /// The IdP's single sign-on service URL (HTTP-Redirect binding).
    pub sso_url: Url,
    /// Lanyard's service provider entity id: the `Issuer` of the request and the `Audience` the
    /// IdP puts in the assertion (and maps to the OAuth client id at the exchange).
    pub sp_entity_id: String,
}

/// Why a SAML answer could not be used. Each names what was wrong; none carries the assertion.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SamlError {
    #[error("the SAML response is larger than {MAX_SAML_RESPONSE_BYTES} bytes")]
    TooLarge,
    #[error("the SAML response is not base64")]
    NotBase64,
    #[error("the SAML response is not well-formed XML: {0}")]
    NotXml(String),
    #[error("the document is not a SAML 2.0 Response (root element {0})")]
    NotAResponse(String),
    #[error("the identity provider answered with SAML status {status}{}", message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Status {
        status: String,
        message: Option<String>,
    },
    #[error("the SAML response answers request {found:?}, not this sign-in's {expected:?}")]
    InResponseTo {
        expected: String,
        found: Option<String>,
    },
    #[error("the SAML response carries an encrypted assertion, which Lanyard cannot read; ask IT to turn off assertion encryption for the Lanyard service provider")]
    Encrypted,
    #[error("the SAML response carries {0} assertions; exactly one is expected")]
    AssertionCount(usize),
    #[error("the SAML assertion names no subject")]
    NoSubject,
    #[error("the SAML assertion carries no bearer SubjectConfirmationData")]
    NoBearerConfirmation,
    #[error("the SAML assertion was issued for request {found:?}, not this sign-in's {expected:?} (SubjectConfirmationData InResponseTo)")]
    AssertionInResponseTo {
        expected: String,
        found: Option<String>,
    },
    #[error("the SAML assertion is addressed to {found:?}, not this sign-in's {expected:?} (SubjectConfirmationData Recipient)")]
    Recipient {
        expected: String,
        found: Option<String>,
    },
    #[error("the SAML assertion is no longer valid (SubjectConfirmationData NotOnOrAfter {found:?}); check this computer's date and time, and sign in again")]
    ConfirmationExpired { found: Option<String> },
}

/// What the response to one sign-in must say: the `AuthnRequest`'s ID, the assertion consumer
/// URL it named (the loopback's), and the time now (the engine's clock, Unix seconds).
#[derive(Debug, Clone, Copy)]
pub struct ExpectedResponse<'a> {
    pub request_id: &'a str,
    pub acs_url: &'a str,
    pub now: u64,
}

/// Leeway on the confirmation's `NotOnOrAfter` for an IdP whose clock runs behind ours.
pub const CONFIRMATION_LEEWAY_SECS: i64 = 60;

/// One assertion taken out of a SAML response: its XML exactly as signed (plus the namespace
/// declarations it inherited, see [`detach`]) and what it says about the user, unverified.
#[derive(Debug, Clone)]
pub struct ReceivedAssertion {
    /// The `<Assertion>` element, a document of its own: the RFC 8693 subject token.
    pub xml: Secret,
    /// The `NameID`, for display.
    pub subject: String,
    /// An e-mail attribute, or the `NameID` when its format is an e-mail address.
    pub email: Option<String>,
}

/// A fresh SAML request ID: an XML NCName (it must not start with a digit), 144 random bits.
pub fn new_request_id() -> String {
    let bytes: [u8; 18] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("_lanyard-{hex}")
}

/// The URL to open in the browser: the IdP's SSO URL with the deflated, base64-encoded
/// `AuthnRequest` and the `RelayState` (SAML Bindings §3.4.4). `issue_instant` is RFC 3339 UTC;
/// `force_authn` asks the IdP to authenticate the user again (step-up).
pub fn authn_request_url(
    settings: &SamlSettings,
    request_id: &str,
    issue_instant: &str,
    acs_url: &str,
    relay_state: &str,
    force_authn: bool,
) -> Url {
    let xml = authn_request_xml(settings, request_id, issue_instant, acs_url, force_authn);
    let mut deflater =
        flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let _ = deflater.write_all(xml.as_bytes());
    let deflated = deflater.finish().unwrap_or_default();
    let mut url = settings.sso_url.clone();
    url.query_pairs_mut()
        .append_pair(
            "SAMLRequest",
            &base64::engine::general_purpose::STANDARD.encode(deflated),
        )
        .append_pair("RelayState", relay_state);
    url
}

/// The unsigned `AuthnRequest` (SAML Core §3.4.1). Unsigned is what HTTP-Redirect SPs without a
/// signing key send; the IdP binds the answer to the ACS URL and the SP it has registered.
pub fn authn_request_xml(
    settings: &SamlSettings,
    request_id: &str,
    issue_instant: &str,
    acs_url: &str,
    force_authn: bool,
) -> String {
    let force = if force_authn {
        " ForceAuthn=\"true\""
    } else {
        ""
    };
    format!(
        "<samlp:AuthnRequest xmlns:samlp=\"{NS_PROTOCOL}\" xmlns:saml=\"{NS_ASSERTION}\" \
         ID=\"{id}\" Version=\"2.0\" IssueInstant=\"{instant}\" Destination=\"{dest}\" \
         ProtocolBinding=\"{BINDING_HTTP_POST}\" AssertionConsumerServiceURL=\"{acs}\"{force}>\
         <saml:Issuer>{issuer}</saml:Issuer>\
         <samlp:NameIDPolicy AllowCreate=\"true\"/>\
         </samlp:AuthnRequest>",
        id = escape(request_id),
        instant = escape(issue_instant),
        dest = escape(settings.sso_url.as_str()),
        acs = escape(acs_url),
        issuer = escape(&settings.sp_entity_id),
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Reads the `SAMLResponse` form value (base64 of the `Response` document), checks that it is a
/// successful answer to this sign-in ([`ExpectedResponse`]), and takes out its one assertion,
/// whose bearer confirmation must be for this sign-in too ([`check_confirmation`]).
pub fn read_response(
    saml_response: &str,
    expected: &ExpectedResponse<'_>,
) -> Result<ReceivedAssertion, SamlError> {
    let request_id = expected.request_id;
    if saml_response.len() > MAX_SAML_RESPONSE_BYTES {
        return Err(SamlError::TooLarge);
    }
    // Some IdPs wrap the base64 at 64 or 76 columns.
    let compact: String = saml_response
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map_err(|_| SamlError::NotBase64)?;
    let text = String::from_utf8(bytes).map_err(|_| SamlError::NotXml("not UTF-8".into()))?;
    let doc = roxmltree::Document::parse(&text)
        .map_err(|e| SamlError::NotXml(crate::oauth::error::capped_message(e)))?;
    let root = doc.root_element();
    if !(root.tag_name().name() == "Response" && root.tag_name().namespace() == Some(NS_PROTOCOL)) {
        return Err(SamlError::NotAResponse(capped(root.tag_name().name())));
    }
    let found = root.attribute("InResponseTo");
    if found != Some(request_id) {
        return Err(SamlError::InResponseTo {
            expected: request_id.to_owned(),
            found: found.map(capped),
        });
    }
    let status = child(root, NS_PROTOCOL, "Status");
    let code = status
        .and_then(|s| child(s, NS_PROTOCOL, "StatusCode"))
        .and_then(|c| c.attribute("Value"));
    if code != Some(STATUS_SUCCESS) {
        // A second-level code says more ("…:AuthnFailed", "…:RequestDenied").
        let detail = status
            .and_then(|s| child(s, NS_PROTOCOL, "StatusCode"))
            .and_then(|c| child(c, NS_PROTOCOL, "StatusCode"))
            .and_then(|c| c.attribute("Value"));
        return Err(SamlError::Status {
            status: capped(detail.or(code).unwrap_or("(none)")),
            message: status
                .and_then(|s| child(s, NS_PROTOCOL, "StatusMessage"))
                .and_then(|m| m.text())
                .map(|m| capped(m.trim())),
        });
    }
    if child(root, NS_ASSERTION, "EncryptedAssertion").is_some() {
        return Err(SamlError::Encrypted);
    }
    let assertions: Vec<_> = root
        .children()
        .filter(|n| is(*n, NS_ASSERTION, "Assertion"))
        .collect();
    let [assertion] = assertions[..] else {
        return Err(SamlError::AssertionCount(assertions.len()));
    };
    let subject_element = child(assertion, NS_ASSERTION, "Subject").ok_or(SamlError::NoSubject)?;
    let name_id = child(subject_element, NS_ASSERTION, "NameID").ok_or(SamlError::NoSubject)?;
    check_confirmation(subject_element, expected)?;
    let subject = name_id.text().unwrap_or_default().trim().to_owned();
    if subject.is_empty() {
        return Err(SamlError::NoSubject);
    }
    let email = email_attribute(assertion)
        .or_else(|| (name_id.attribute("Format") == Some(NAMEID_EMAIL)).then(|| subject.clone()));
    Ok(ReceivedAssertion {
        xml: Secret::new(detach(&text, assertion)),
        subject,
        email,
    })
}

const METHOD_BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";

/// The `Subject` has a bearer `SubjectConfirmation` whose data names this sign-in's request and
/// listener and has not expired. When none does, the first bearer confirmation's fault is named.
fn check_confirmation(
    subject: roxmltree::Node<'_, '_>,
    expected: &ExpectedResponse<'_>,
) -> Result<(), SamlError> {
    let mut first_fault = None;
    let bearer = subject
        .children()
        .filter(|n| is(*n, NS_ASSERTION, "SubjectConfirmation"))
        .filter(|n| n.attribute("Method") == Some(METHOD_BEARER));
    for confirmation in bearer {
        let Some(data) = child(confirmation, NS_ASSERTION, "SubjectConfirmationData") else {
            continue;
        };
        match check_confirmation_data(data, expected) {
            Ok(()) => return Ok(()),
            Err(e) => {
                first_fault.get_or_insert(e);
            }
        }
    }
    Err(first_fault.unwrap_or(SamlError::NoBearerConfirmation))
}

fn check_confirmation_data(
    data: roxmltree::Node<'_, '_>,
    expected: &ExpectedResponse<'_>,
) -> Result<(), SamlError> {
    let in_response_to = data.attribute("InResponseTo");
    if in_response_to != Some(expected.request_id) {
        return Err(SamlError::AssertionInResponseTo {
            expected: expected.request_id.to_owned(),
            found: in_response_to.map(capped),
        });
    }
    let recipient = data.attribute("Recipient");
    if recipient != Some(expected.acs_url) {
        return Err(SamlError::Recipient {
            expected: expected.acs_url.to_owned(),
            found: recipient.map(capped),
        });
    }
    let until = data.attribute("NotOnOrAfter");
    let until_secs = until
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t.trim()).ok())
        .map(|t| t.timestamp());
    let now = i64::try_from(expected.now).unwrap_or(i64::MAX);
    match until_secs {
        Some(t) if now < t.saturating_add(CONFIRMATION_LEEWAY_SECS) => Ok(()),
        _ => Err(SamlError::ConfirmationExpired {
            found: until.map(capped),
        }),
    }
}

fn is(node: roxmltree::Node<'_, '_>, ns: &str, name: &str) -> bool {
    node.is_element() && node.tag_name().name() == name && node.tag_name().namespace() == Some(ns)
}

fn child<'a, 'input>(
    node: roxmltree::Node<'a, 'input>,
    ns: &str,
    name: &str,
) -> Option<roxmltree::Node<'a, 'input>> {
    node.children().find(|n| is(*n, ns, name))
}

fn capped(s: &str) -> String {
    s.chars().take(120).collect()
}

/// The first value of an attribute that names an e-mail address.
fn email_attribute(assertion: roxmltree::Node<'_, '_>) -> Option<String> {
    const NAMES: &[&str] = &[
        "email",
        "mail",
        "emailaddress",
        "urn:oid:0.9.2342.19200300.100.1.3",
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
    ];
    assertion
        .children()
        .filter(|n| is(*n, NS_ASSERTION, "AttributeStatement"))
        .flat_map(|s| s.children().filter(|n| is(*n, NS_ASSERTION, "Attribute")))
        .find(|a| {
            a.attribute("Name")
                .is_some_and(|n| NAMES.iter().any(|e| n.eq_ignore_ascii_case(e)))
        })
        .and_then(|a| child(a, NS_ASSERTION, "AttributeValue"))
        .and_then(|v| v.text())
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// The element's own text, made a document of its own: every namespace in scope at the element
/// that its start tag does not declare itself (one the `Response` declared) is declared on it.
/// This keeps the enveloped signature valid under both canonicalizations SAML uses: exclusive
/// C14N renders only the namespaces the content uses, wherever they were declared, and inclusive
/// C14N renders all in-scope namespaces of the signed element anyway.
pub fn detach(text: &str, element: roxmltree::Node<'_, '_>) -> String {
    let range = element.range();
    let own = &text[range.clone()];
    let tag_end = start_tag_end(own);
    let start_tag = &own[..tag_end];
    let name_end = start_tag
        .find(|c: char| c.is_ascii_whitespace() || c == '>' || c == '/')
        .unwrap_or(start_tag.len());
    let mut added = String::new();
    for ns in element.namespaces() {
        let declaration = match ns.name() {
            Some("xml") => continue,
            Some(prefix) => format!("xmlns:{prefix}="),
            None => "xmlns=".to_owned(),
        };
        let declared_here = start_tag
            .match_indices(&declaration)
            .any(|(i, _)| start_tag[..i].ends_with(|c: char| c.is_ascii_whitespace()));
        if declared_here {
            continue;
        }
        added.push_str(&format!(" {declaration}\"{}\"", escape(ns.uri())));
    }
    format!("{}{added}{}", &own[..name_end], &own[name_end..])
}

/// The byte offset just past the start tag's `>` (quotes in attribute values skipped).
fn start_tag_end(element_text: &str) -> usize {
    let mut quote: Option<char> = None;
    for (i, c) in element_text.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '>') => return i + 1,
            _ => {}
        }
    }
    element_text.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> SamlSettings {
        SamlSettings {
            sso_url: Url::parse("https://idp.example/saml/sso?tenant=a").expect("url"),
            sp_entity_id: "urn:lanyard:sp".into(),
        }
    }

    fn encode(xml: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(xml)
    }

    const RESPONSE: &str = r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_r1" InResponseTo="_req1" Version="2.0">
<saml:Issuer>https://idp.example</saml:Issuer>
<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>
<saml:Assertion ID="_a1" Version="2.0" IssueInstant="2026-11-28T10:00:00Z"><saml:Issuer>https://idp.example</saml:Issuer><saml:Subject><saml:NameID Format="urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified">alice</saml:NameID><saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer"><saml:SubjectConfirmationData InResponseTo="_req1" Recipient="http://127.0.0.1:5555/callback" NotOnOrAfter="2026-11-28T10:05:00Z"/></saml:SubjectConfirmation></saml:Subject><saml:AttributeStatement><saml:Attribute Name="email"><saml:AttributeValue>alice@example.com</saml:AttributeValue></saml:Attribute></saml:AttributeStatement></saml:Assertion>
</samlp:Response>"#;

    const ACS: &str = "http://127.0.0.1:5555/callback";
    /// 2026-11-28T10:00:00Z, when [`RESPONSE`] was issued; its confirmation lasts 5 minutes.
    const ISSUED: u64 = 1_795_860_000;

    fn expected(request_id: &str) -> ExpectedResponse<'_> {
        ExpectedResponse {
            request_id,
            acs_url: ACS,
            now: ISSUED,
        }
    }

    #[test]
    fn the_assertion_must_be_confirmed_for_this_sign_in() {
        let ok = |xml: &str, now: u64| {
            read_response(
                &encode(xml),
                &ExpectedResponse {
                    now,
                    ..expected("_req1")
                },
            )
        };
        assert!(ok(RESPONSE, ISSUED).is_ok());
        // Another sign-in's assertion with the Response's (unsigned) InResponseTo rewritten to ours.
        let replayed = RESPONSE.replace(
            "SubjectConfirmationData InResponseTo=\"_req1\"",
            "SubjectConfirmationData InResponseTo=\"_theirs\"",
        );
        assert_eq!(
            ok(&replayed, ISSUED).err(),
            Some(SamlError::AssertionInResponseTo {
                expected: "_req1".into(),
                found: Some("_theirs".into())
            })
        );
        let elsewhere = RESPONSE.replace(
            "Recipient=\"http://127.0.0.1:5555/callback\"",
            "Recipient=\"http://127.0.0.1:6666/callback\"",
        );
        assert_eq!(
            ok(&elsewhere, ISSUED).err(),
            Some(SamlError::Recipient {
                expected: ACS.into(),
                found: Some("http://127.0.0.1:6666/callback".into())
            })
        );
        // NotOnOrAfter is 10:05:00; a minute's leeway for the IdP's clock, not more.
        let until = ISSUED + 300;
        assert!(ok(RESPONSE, until + CONFIRMATION_LEEWAY_SECS as u64 - 1).is_ok());
        assert_eq!(
            ok(RESPONSE, until + CONFIRMATION_LEEWAY_SECS as u64).err(),
            Some(SamlError::ConfirmationExpired {
                found: Some("2026-11-28T10:05:00Z".into())
            })
        );
        let timeless = RESPONSE.replace(" NotOnOrAfter=\"2026-11-28T10:05:00Z\"", "");
        assert_eq!(
            ok(&timeless, ISSUED).err(),
            Some(SamlError::ConfirmationExpired { found: None })
        );
        // Only bearer confirmations count.
        let vouched = RESPONSE.replace("cm:bearer", "cm:sender-vouches");
        assert_eq!(
            ok(&vouched, ISSUED).err(),
            Some(SamlError::NoBearerConfirmation)
        );
        let start = RESPONSE
            .find("<saml:SubjectConfirmation ")
            .expect("confirmation");
        let end = RESPONSE.find("</saml:SubjectConfirmation>").expect("end")
            + "</saml:SubjectConfirmation>".len();
        let unconfirmed = format!("{}{}", &RESPONSE[..start], &RESPONSE[end..]);
        assert_eq!(
            ok(&unconfirmed, ISSUED).err(),
            Some(SamlError::NoBearerConfirmation)
        );
        // One good bearer confirmation among others is enough.
        let wrong = RESPONSE[start..end].replace("_req1", "_theirs");
        let two = format!("{}{wrong}{}", &RESPONSE[..start], &RESPONSE[start..]);
        assert!(ok(&two, ISSUED).is_ok());
    }

    #[test]
    fn the_request_url_carries_a_deflated_request_and_the_relay_state() {
        let url = authn_request_url(
            &settings(),
            "_req1",
            "2026-11-28T10:00:00Z",
            "http://127.0.0.1:5555/callback",
            "rs-1",
            true,
        );
        assert_eq!(url.host_str(), Some("idp.example"));
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q.get("tenant").map(String::as_str), Some("a"));
        assert_eq!(q.get("RelayState").map(String::as_str), Some("rs-1"));
        let deflated = base64::engine::general_purpose::STANDARD
            .decode(&q["SAMLRequest"])
            .expect("base64");
        let mut xml = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::DeflateDecoder::new(&deflated[..]),
            &mut xml,
        )
        .expect("inflate");
        let doc = roxmltree::Document::parse(&xml).expect("xml");
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "AuthnRequest");
        assert_eq!(root.attribute("ID"), Some("_req1"));
        assert_eq!(root.attribute("ForceAuthn"), Some("true"));
        assert_eq!(
            root.attribute("AssertionConsumerServiceURL"),
            Some("http://127.0.0.1:5555/callback")
        );
        assert_eq!(
            child(root, NS_ASSERTION, "Issuer").and_then(|i| i.text()),
            Some("urn:lanyard:sp")
        );
    }

    #[test]
    fn the_assertion_is_taken_out_with_its_inherited_namespaces() {
        let got = read_response(&encode(RESPONSE), &expected("_req1")).expect("assertion");
        assert_eq!(got.subject, "alice");
        assert_eq!(got.email.as_deref(), Some("alice@example.com"));
        let xml = got.xml.expose();
        assert!(xml.starts_with("<saml:Assertion xmlns:samlp="), "{xml}");
        let doc = roxmltree::Document::parse(xml).expect("a document of its own");
        assert!(is(doc.root_element(), NS_ASSERTION, "Assertion"));
        assert_eq!(doc.root_element().attribute("ID"), Some("_a1"));
        // Already declared on the element: not declared twice.
        let own = RESPONSE.replace(
            "<saml:Assertion ID",
            "<saml:Assertion xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID",
        );
        let got = read_response(&encode(&own), &expected("_req1")).expect("assertion");
        assert_eq!(got.xml.expose().matches("xmlns:saml=").count(), 1);
        roxmltree::Document::parse(got.xml.expose()).expect("well-formed");
    }

    #[test]
    fn hostile_or_wrong_responses_are_named_errors() {
        assert_eq!(
            read_response(&"A".repeat(MAX_SAML_RESPONSE_BYTES + 1), &expected("_req1")).err(),
            Some(SamlError::TooLarge)
        );
        assert_eq!(
            read_response("not base64 at all!", &expected("_req1")).err(),
            Some(SamlError::NotBase64)
        );
        assert!(matches!(
            read_response(&encode("<samlp:Response"), &expected("_req1")),
            Err(SamlError::NotXml(_))
        ));
        let dtd = format!(
            "<!DOCTYPE r [<!ENTITY a \"{}\">]>{}",
            "x".repeat(10),
            RESPONSE
        );
        assert!(matches!(
            read_response(&encode(&dtd), &expected("_req1")),
            Err(SamlError::NotXml(_))
        ));
        assert!(matches!(
            read_response(&encode("<html/>"), &expected("_req1")),
            Err(SamlError::NotAResponse(_))
        ));
        assert_eq!(
            read_response(&encode(RESPONSE), &expected("_other")).err(),
            Some(SamlError::InResponseTo {
                expected: "_other".into(),
                found: Some("_req1".into())
            })
        );
        let failed = RESPONSE.replace(
            "<samlp:StatusCode Value=\"urn:oasis:names:tc:SAML:2.0:status:Success\"/>",
            "<samlp:StatusCode Value=\"urn:oasis:names:tc:SAML:2.0:status:Responder\"><samlp:StatusCode Value=\"urn:oasis:names:tc:SAML:2.0:status:AuthnFailed\"/></samlp:StatusCode><samlp:StatusMessage>locked out</samlp:StatusMessage>",
        );
        assert_eq!(
            read_response(&encode(&failed), &expected("_req1")).err(),
            Some(SamlError::Status {
                status: "urn:oasis:names:tc:SAML:2.0:status:AuthnFailed".into(),
                message: Some("locked out".into())
            })
        );
        let encrypted = RESPONSE.replace("saml:Assertion", "saml:EncryptedAssertion");
        assert_eq!(
            read_response(&encode(&encrypted), &expected("_req1")).err(),
            Some(SamlError::Encrypted)
        );
        let none = RESPONSE.replace("saml:Assertion", "saml:Other");
        assert_eq!(
            read_response(&encode(&none), &expected("_req1")).err(),
            Some(SamlError::AssertionCount(0))
        );
        let start = RESPONSE.find("<saml:Assertion").expect("assertion");
        let end = RESPONSE.find("</saml:Assertion>").expect("end") + "</saml:Assertion>".len();
        let two = RESPONSE.replace(
            &RESPONSE[start..end],
            &format!("{0}{0}", &RESPONSE[start..end]).replace("_a1\"", "_a2\""),
        );
        assert!(matches!(
            read_response(&encode(&two), &expected("_req1")),
            Err(SamlError::AssertionCount(2))
        ));
    }
}
