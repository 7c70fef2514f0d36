//! The properties of what a sign-in reads: ID tokens (signature, issuer, audience, times) and the
//! SAML response posted to the loopback listener.

use super::*;

/// A key made for fuzzing only, trusted by nothing: it signs the tokens whose claims are fuzzed.
const FUZZ_KEY_PEM: &[u8] = include_bytes!("fuzz-only-rs256.pem");
const FUZZ_KEY_N: &str = "shFJydC-i0ljLO_SzMXyPMklo5MPzW1GiZa6SziX8Fi69crTDZ2DemLW_2LRYbQmPXjXcbSL4mKxxXeQO0v_ijT2NrpEop-vf77A3yOpTtiDwEQZUx8Yi04lvfUh2CVM_XqZp1fU0VGUrKV8bO_6LglhZA9fm1AEVC--GgwXdeXG2riL-Ec2xtTevSobKrUMnjDpPlg8gm2yZopOYkLCJ_TRN_vF1aD8FOYfF6OGY10Ffb9N_scrP4odjzJWBy_wRfDedgJ1ouMdGafuVdZvaJ1lplQVf5d9vzvFFs-p5-_j_xfGmEeqGJH8rZ0e3-PN6AluuLL3BUfF__gc2D5ahw";

fn key_set_json() -> String {
    format!(
        r#"{{"keys":[{{"kty":"RSA","use":"sig","alg":"RS256","kid":"fuzz","n":"{FUZZ_KEY_N}","e":"AQAB"}}]}}"#
    )
}

fn client() -> Client {
    Client {
        client_id: JWT_CLIENT_ID.to_owned(),
        auth: ClientAuth::None,
    }
}

fn idp_with_keys(jwks: &[u8]) -> Result<IdpClient, WireError> {
    let metadata = format!(
        r#"{{"issuer":"{JWT_ISSUER}","token_endpoint":"{JWT_ISSUER}/token","jwks_uri":"{JWT_ISSUER}/jwks"}}"#
    );
    let metadata =
        parse_authorization_server_metadata(&response(200, metadata.as_bytes()), JWT_ISSUER)?;
    IdpClient::from_parts(
        metadata,
        client(),
        Vec::new(),
        BTreeMap::new(),
        &response(200, jwks),
    )
}

fn fuzz_idp() -> &'static (IdpClient, SigningKey) {
    static IDP: OnceLock<(IdpClient, SigningKey)> = OnceLock::new();
    IDP.get_or_init(|| {
        let idp = idp_with_keys(key_set_json().as_bytes())
            .unwrap_or_else(|e| panic!("the fuzz IdP does not build: {e}"));
        let key = SigningKey::from_pem(FUZZ_KEY_PEM, KeyAlgorithm::RS256, Some("fuzz".into()))
            .unwrap_or_else(|e| panic!("the fuzz key does not load: {e}"));
        (idp, key)
    })
}

/// Signs `claims` (JSON) with the fuzz key, with `typ` in the header: what the corpus and
/// `tests/corpus.rs` use to make seeds for [`jwt`] mode 1.
pub fn sign_for_fuzzing(claims: &Value, typ: Option<&str>) -> Secret {
    fuzz_idp()
        .1
        .sign(claims, typ)
        .unwrap_or_else(|e| panic!("signing with the fuzz key: {e}"))
}

/// Signs `claims` with the IdP's (fuzz) key and validates the token at [`JWT_NOW`], with the
/// nonce [`jwt`] expects when `with_nonce`.
pub fn validate_signed(
    claims: &Value,
    typ: Option<&str>,
    with_nonce: bool,
) -> Result<IdTokenInfo, SignInError> {
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(JWT_NOW));
    let token = sign_for_fuzzing(claims, typ);
    let nonce = Nonce::new(JWT_NONCE.to_owned());
    fuzz_idp()
        .0
        .validate_id_token(&token, &clock, None, with_nonce.then_some(&nonce))
}

fn audience_has(aud: Option<&Value>, client_id: &str) -> bool {
    match aud {
        Some(Value::String(a)) => a == client_id,
        Some(Value::Array(items)) => items.iter().any(|a| a.as_str() == Some(client_id)),
        _ => false,
    }
}

/// ID tokens. First byte: 0 → the rest is a token as received (never signed by the IdP's key,
/// so it must be refused: `alg: none`, HMAC with the public key, a mangled signature…);
/// 1 → `typ\nclaims-JSON`, signed with the IdP's key, then validated: accepted only with our
/// issuer and audience, unexpired, and the info read from the claims; 2 → the rest is the IdP's
/// key set: read or refused by name. Never a panic.
pub fn jwt(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (idp, _) = fuzz_idp();
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(JWT_NOW));
    match mode % 3 {
        0 => {
            let Ok(token) = std::str::from_utf8(rest) else {
                return;
            };
            let token = Secret::new(token);
            if let Ok(info) = idp.validate_id_token(&token, &clock, None, None) {
                panic!("a token the IdP's key did not sign was accepted: {info:?}");
            }
        }
        1 => {
            let (typ, claims) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (&[][..], rest),
            };
            let Ok(typ) = std::str::from_utf8(typ) else {
                return;
            };
            let Ok(claims) = serde_json::from_slice::<Value>(claims) else {
                return;
            };
            let typ = (!typ.is_empty()).then_some(typ);
            for with_nonce in [false, true] {
                let Ok(info) = validate_signed(&claims, typ, with_nonce) else {
                    continue;
                };
                assert_eq!(claims.get("iss").and_then(Value::as_str), Some(JWT_ISSUER));
                assert!(
                    audience_has(claims.get("aud"), JWT_CLIENT_ID),
                    "another audience"
                );
                assert_eq!(
                    claims.get("sub").and_then(Value::as_str),
                    Some(info.subject.as_str())
                );
                // openidconnect allows no clock skew by default; a minute is generous.
                assert!(
                    info.expires_at + 60 > JWT_NOW,
                    "an expired token was accepted"
                );
                if with_nonce {
                    assert_eq!(claims.get("nonce").and_then(Value::as_str), Some(JWT_NONCE));
                }
            }
        }
        _ => {
            if let Err(e) = idp_with_keys(rest) {
                assert_bounded("key set", &e.to_string());
            }
        }
    }
}

// ---- SAML response and the loopback post ------------------------------------------------------

/// The `AuthnRequest` id the SAML seeds answer.
pub const SAML_REQUEST_ID: &str = "_req1";

/// What the fuzzed responses are read against: the request above, the loopback URL the seeds'
/// `SubjectConfirmationData` names, and a time (2026-11-28T10:00:00Z) before their `NotOnOrAfter`.
pub const SAML_EXPECTED: lanyard_core::signin::saml::ExpectedResponse<'static> =
    lanyard_core::signin::saml::ExpectedResponse {
        request_id: SAML_REQUEST_ID,
        acs_url: "http://127.0.0.1:9/acs",
        now: 1_795_860_000,
    };

/// A SAML answer at the loopback. First byte 0: the rest is a `Response` document, base64-encoded
/// as an IdP posts it, read by `read_response`; 1: the rest is the posted `SAMLResponse` value as
/// is; 2: the rest is a raw HTTP post (head, blank line, body) checked as the loopback does.
/// Properties: no panic; errors bounded; an accepted response yields one assertion that is a
/// well-formed document of its own whose root is a SAML 2.0 `Assertion` with a non-empty subject,
/// and that appears (start tag aside) verbatim in the response: Lanyard never rewrites what the
/// IdP signed.
pub fn saml_response(data: &[u8]) {
    use base64::Engine as _;
    use lanyard_core::signin::loopback::{check_saml_post_head, read_saml_post};
    use lanyard_core::signin::saml::read_response;
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 | 1 => {
            let (posted, document) = if mode % 3 == 0 {
                (
                    base64::engine::general_purpose::STANDARD.encode(rest),
                    String::from_utf8_lossy(rest).into_owned(),
                )
            } else {
                (String::from_utf8_lossy(rest).into_owned(), String::new())
            };
            match read_response(&posted, &SAML_EXPECTED) {
                Err(e) => assert_bounded("SAML response", &e.to_string()),
                Ok(assertion) => {
                    assert!(
                        !assertion.subject.is_empty(),
                        "an empty subject was accepted"
                    );
                    let xml = assertion.xml.expose();
                    let doc = roxmltree::Document::parse(xml).unwrap_or_else(|e| {
                        panic!("the detached assertion is not a document ({e}): {xml}")
                    });
                    let root = doc.root_element();
                    assert_eq!(root.tag_name().name(), "Assertion");
                    assert_eq!(
                        root.tag_name().namespace(),
                        Some("urn:oasis:names:tc:SAML:2.0:assertion")
                    );
                    if !document.is_empty() {
                        let body_start = xml.find('>').map(|i| i + 1).unwrap_or(xml.len());
                        assert!(
                            document.contains(&xml[body_start..]),
                            "the assertion's content differs from what was received"
                        );
                    }
                }
            }
        }
        _ => {
            let text = String::from_utf8_lossy(rest);
            let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
            match check_saml_post_head(head) {
                Err(e) => assert_bounded("SAML post head", &e.to_string()),
                Ok(length) => {
                    let body = &body.as_bytes()[..length.min(body.len())];
                    match read_saml_post(body, "rs-1") {
                        Err(e) => assert_bounded("SAML post body", &e.to_string()),
                        Ok(response) => assert!(!response.expose().is_empty()),
                    }
                }
            }
        }
    }
}
