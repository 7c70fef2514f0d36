//! The one redaction pass every piece of text goes through before it leaves the machine in a
//! diagnostics archive (`lanyard diagnose`): logs, the policy, the status, discovery documents.
//!
//! It owns the patterns of what a secret looks like in text: JWTs (ID tokens, ID-JAGs, access
//! tokens, client assertions), private-key PEM blocks, the user name and password inside a URL
//! (a proxy's `http://user:password@host`), `Authorization` / `Cookie` header values
//! and bearer credentials, the values of secret-ish keys in JSON, form bodies, query strings and
//! log fields (`refresh_token`, `client_secret`, `code`, `code_verifier`, `password`, …), and
//! opaque random-looking strings long enough to be a token. It is deliberately greedy: a
//! helpdesk loses a hash now and then, never a credential. It reads no files and keeps no state;
//! it is not a licence to log secrets (they never reach a log in the first place), only the last
//! line of defence for a file that is about to be handed to somebody else.

use std::sync::OnceLock;

use regex::{Captures, Regex};

/// What a redacted value is replaced with.
pub const REDACTED: &str = "[redacted]";

struct Patterns {
    userinfo: Regex,
    pem: Regex,
    jwt: Regex,
    header: Regex,
    scheme: Regex,
    keyed: Regex,
    opaque: Regex,
}

fn patterns() -> &'static Patterns {
    static PATTERNS: OnceLock<Patterns> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        // The patterns are literals checked by the unit tests below: they always compile.
        let re = |p: &str| Regex::new(p).unwrap_or_else(|e| panic!("redaction pattern {p}: {e}"));
        Patterns {
            // The user name and password of a URL (`http://alice:pw@proxy:3128`), up to the `@`.
            userinfo: re(r#"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/?#@"'<>\\]+@"#),
            // A private key block, or what is left of one when a file was cut short.
            pem: re(
                r"(?s)-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\z)",
            ),
            // JWS (3 parts) and JWE (5 parts); also a lone base64url JSON header left by a cut.
            jwt: re(r"eyJ[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*){0,4}"),
            // `Authorization: …`, `Cookie: …`, `Set-Cookie: …` header lines (the value to the end
            // of the line), as written by HTTP traces and curl-style dumps.
            header: re(
                r#"(?im)\b((?:proxy-)?authorization|cookie|set-cookie|x-api-key|dpop)(\s*:\s*)([^\r\n]+)"#,
            ),
            // A credential after its scheme anywhere in a line.
            scheme: re(r"(?i)\b(bearer|basic|dpop|negotiate)(\s+)([A-Za-z0-9._~+/=-]{6,})"),
            // key=value, key: value, "key": "value", key="value" (also with JSON-escaped quotes).
            keyed: re(
                r#"(?i)([A-Za-z0-9_.-]*(?:token|secret|password|passwd|verifier|assertion|cookie|code|private_key|api_key|apikey|credential|session_state|authorization))(\\?"?\s*[:=]\s*\\?"?)([^\s"\\&,;)}\]]+)"#,
            ),
            // Random-looking base64url strings of 24+ characters with upper case, lower case and
            // digits mixed (opaque access and refresh tokens, codes, verifiers). Hex digests, UUIDs
            // and words are left alone.
            opaque: re(r"[A-Za-z0-9_-]{24,}"),
        }
    })
}

/// Keys that name a secret-looking word but hold something a helpdesk needs and nobody can use.
fn harmless_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase().replace('-', "_");
    let key = key.rsplit('.').next().unwrap_or(&key);
    [
        "error_code",
        "status_code",
        "http_code",
        "exit_code",
        "response_code",
        "code_challenge_method",
        "code_challenge_methods_supported",
        "token_type",
        "token_endpoint",
        "token_endpoint_auth_method",
        "token_endpoint_auth_methods_supported",
        "token_endpoint_auth_signing_alg_values_supported",
        "secret_source",
        "postcode",
        "country_code",
    ]
    .contains(&key)
}

/// Whether `value` (after a secret-ish key) is a word that describes rather than is a secret:
/// `token_type: Bearer` is harmless, `client_secret: <anything else>` is not.
fn descriptive_value(value: &str) -> bool {
    matches!(
        value.to_ascii_lowercase().as_str(),
        "null" | "none" | "true" | "false" | "present" | "absent" | "[redacted]" | "redacted"
    ) || value.starts_with('[') && value.ends_with(']')
        // Already redacted by an earlier pattern (`[redacted jwt]` is cut at its space).
        || value.starts_with("[redacted")
        || value.starts_with('{')
}

fn looks_random(s: &str) -> bool {
    let upper = s.bytes().any(|b| b.is_ascii_uppercase());
    let lower = s.bytes().any(|b| b.is_ascii_lowercase());
    let digit = s.bytes().any(|b| b.is_ascii_digit());
    upper && lower && digit
}

/// Returns `text` with every secret-looking value replaced by [`REDACTED`] (or a named marker for
/// JWTs and private keys). The one redaction function of the diagnostics archive: every file goes
/// through it before it enters the archive.
pub fn redact(text: &str) -> String {
    let p = patterns();
    let text = p
        .userinfo
        .replace_all(text, |c: &Captures| format!("{}{REDACTED}@", &c[1]));
    let text = p.pem.replace_all(&text, "[redacted private key]");
    let text = p.jwt.replace_all(&text, "[redacted jwt]");
    let text = p.header.replace_all(&text, |c: &Captures| {
        format!("{}{}{REDACTED}", &c[1], &c[2])
    });
    let text = p.scheme.replace_all(&text, |c: &Captures| {
        format!("{}{}{REDACTED}", &c[1], &c[2])
    });
    let text = p.keyed.replace_all(&text, |c: &Captures| {
        if harmless_key(&c[1]) || descriptive_value(&c[3]) {
            c[0].to_owned()
        } else {
            format!("{}{}{REDACTED}", &c[1], &c[2])
        }
    });
    let text = p.opaque.replace_all(&text, |c: &Captures| {
        if looks_random(&c[0]) {
            REDACTED.to_owned()
        } else {
            c[0].to_owned()
        }
    });
    text.into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hides(text: &str, secret: &str) {
        let out = redact(text);
        assert!(!out.contains(secret), "{secret:?} survived in {out:?}");
    }

    #[test]
    fn jwts_are_redacted_wherever_they_stand() {
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLWJ5dGVzLWhlcmU";
        hides(&format!("id_token {jwt} end"), jwt);
        hides(
            &format!("{{\"assertion\":\"{jwt}\"}}"),
            "c2lnbmF0dXJlLWJ5dGVzLWhlcmU",
        );
        let jwe = "eyJhbGciOiJSU0EtT0FFUCJ9.a2V5.aXY.Y2lwaGVy.dGFn";
        assert_eq!(redact(jwe), "[redacted jwt]");
    }

    #[test]
    fn keyed_values_in_json_forms_queries_and_log_fields() {
        for (text, secret) in [
            (r#"{"refresh_token": "rt-1"}"#, "rt-1"),
            (r#"{"client_secret":"s3"}"#, "s3"),
            (
                "grant_type=authorization_code&code=abc123&code_verifier=v-1",
                "abc123",
            ),
            (
                "grant_type=authorization_code&code=abc123&code_verifier=v-1",
                "v-1",
            ),
            ("GET /cb?code=xyz&state=1", "xyz"),
            ("refresh_token=opaque", "opaque"),
            ("password: hunter2", "hunter2"),
            (r#"body="{\"access_token\":\"tok-77\"}""#, "tok-77"),
            ("subject_token=abc.def", "abc.def"),
            ("device_code=dc-9", "dc-9"),
        ] {
            hides(text, secret);
        }
    }

    #[test]
    fn credentials_inside_urls() {
        assert_eq!(
            redact(r#"{"proxy": "http://alice:pr0xy-pass@proxy.corp:3128"}"#),
            r#"{"proxy": "http://[redacted]@proxy.corp:3128"}"#
        );
        hides("socks5h://bob:hunter2@10.0.0.1:1080/", "hunter2");
        hides("https://only-a-user@proxy.corp/", "only-a-user");
        assert_eq!(
            redact("mailto:help@corp.example and https://proxy.corp:3128/"),
            "mailto:help@corp.example and https://proxy.corp:3128/"
        );
    }

    #[test]
    fn headers_and_schemes() {
        hides("authorization: Bearer abc.def-ghi", "abc.def-ghi");
        hides("Cookie: sid=s3ss10n; other=1", "s3ss10n");
        hides("set-cookie: __Host-sid=xyz; Path=/", "xyz");
        hides("sent Basic dXNlcjpwYXNz to the IdP", "dXNlcjpwYXNz");
    }

    #[test]
    fn one_marker_per_value_when_patterns_overlap() {
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl";
        assert_eq!(
            redact(&format!("authorization: Bearer {jwt}")),
            "authorization: [redacted]"
        );
        assert_eq!(
            redact(&format!(r#"{{"id_token":"{jwt}"}}"#)),
            r#"{"id_token":"[redacted jwt]"}"#
        );
        assert_eq!(redact("Cookie: sid=abc"), "Cookie: [redacted]");
    }

    #[test]
    fn private_keys_even_cut_short() {
        let pem = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49\n-----END PRIVATE KEY-----\n";
        assert_eq!(redact(pem), "[redacted private key]\n");
        hides("-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBx", "MHcCAQEEIBx");
    }

    #[test]
    fn opaque_random_strings_but_not_words_hashes_or_uuids() {
        hides(
            "handed out Zq8vW3kTqLm2Rr9dXy7PaB0c to pid 4",
            "Zq8vW3kTqLm2Rr9dXy7PaB0c",
        );
        for kept in [
            "https://idp.example.com/.well-known/openid-configuration",
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "123e4567-e89b-12d3-a456-426614174000",
            "token_endpoint_auth_methods_supported",
        ] {
            assert_eq!(redact(kept), kept);
        }
    }

    #[test]
    fn what_a_helpdesk_needs_survives() {
        for kept in [
            r#""token_endpoint": "https://as.example.com/token""#,
            r#""token_type": "Bearer""#,
            "error_code=invalid_grant status_code=400",
            r#""code_challenge_methods_supported": ["S256"]"#,
            r#""secret": {"file": "/etc/lanyard/secret"}"#,
            "signed in as alice@example.com",
            "keychain: refresh token present",
        ] {
            assert_eq!(redact(kept), kept);
        }
    }
}
