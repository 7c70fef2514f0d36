//! The properties Lanyard's fuzz targets check: one `pub fn(&[u8])` per parser that reads what
//! others wrote (IdPs, authorization servers, MCP servers, MDM, local peers, other programs'
//! config files). Each function returns quietly for every input, however malformed, and panics
//! with a message only when a property fails: a parser panicked, a round trip changed something,
//! an error grew without bound, a secret reached an error, a forged token was accepted.
//!
//! `fuzz/fuzz_targets/*` call these under libFuzzer (nightly, `make fuzz`); `tests/corpus.rs`
//! replays the committed corpus and regressions through the same functions on stable, as part of
//! `make test`. No I/O, no network, and no clock but a fixed one live here.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use lanyard_cli::jsonc::{self, Dialect, Node};
use lanyard_cli::jsonc_edit::{insert_member, remove_member, replace_value, Out};
use lanyard_core::clock::ManualClock;
use lanyard_core::ipc::protocol::{
    decode_request_line, ErrorCode, RequestLine, Response, LINE_READ_LIMIT, MAX_REQUEST_BYTES,
};
use lanyard_core::mcp::{SseEvent, SseParser};
use lanyard_core::oauth::discovery::{
    authorization_server_metadata_urls, parse_authorization_server_metadata,
    parse_bearer_challenge, parse_protected_resource_metadata, protected_resource_metadata_urls,
    BearerChallenge,
};
use lanyard_core::oauth::error::EXCERPT_LIMIT;
use lanyard_core::oauth::token::{
    parse_device_authorization, parse_error, parse_id_jag_response, parse_revocation_response,
    parse_token_response, TOKEN_TYPE_ID_JAG,
};
use lanyard_core::oauth::{Client, ClientAuth, HttpResponse, KeyAlgorithm, SigningKey, WireError};
use lanyard_core::policy::sources::macos_plist::{layers_from_mobileconfig, layers_from_plist};
use lanyard_core::policy::{parse_json, resolve, FileChecks, Layer, Policy, Scope};
use lanyard_core::secret::Secret;
use lanyard_core::signin::{IdTokenInfo, IdpClient, SignInError};
use openidconnect::Nonce;
use serde_json::Value;
use url::Url;

/// One target's property function.
pub type Target = fn(&[u8]);

/// Every target by name, as `fuzz/fuzz_targets/<name>.rs` and `fuzz/corpus/<name>/` spell it.
pub const TARGETS: &[(&str, Target)] = &[
    ("www_authenticate", www_authenticate),
    ("prm_metadata", prm_metadata),
    ("as_metadata", as_metadata),
    ("token_response", token_response),
    ("policy", policy),
    ("broker_protocol", broker_protocol),
    ("sse_reader", sse_reader),
    ("jsonc_edit", jsonc_edit),
    ("jwt", jwt),
    ("saml_response", saml_response),
];

/// The longest error text a foreign document may cause: an error is shown and logged whole, so
/// it must not carry an unbounded part of what was received.
pub const MAX_ERROR_TEXT: usize = 4096;

fn assert_bounded(what: &str, text: &str) {
    assert!(
        text.len() <= MAX_ERROR_TEXT,
        "{what}: an error of {} bytes (limit {MAX_ERROR_TEXT}): {}…",
        text.len(),
        text.chars().take(200).collect::<String>()
    );
}

fn response(status: u16, body: &[u8]) -> HttpResponse {
    HttpResponse {
        // A fixed, valid URL literal.
        url: Url::parse("https://peer.example.com/path").unwrap_or_else(|_| unreachable!()),
        status,
        headers: Vec::new(),
        body: body.to_vec(),
    }
}

// ---- WWW-Authenticate ------------------------------------------------------------------------

/// `WWW-Authenticate`: no panic; each parameter is no longer than the header; the challenge,
/// rendered back as quoted-strings after another scheme's challenge, parses to itself.
pub fn www_authenticate(data: &[u8]) {
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    let Some(challenge) = parse_bearer_challenge(header) else {
        return;
    };
    for value in challenge_values(&challenge).into_iter().flatten() {
        assert!(
            value.len() <= header.len(),
            "a parameter longer than the header"
        );
    }
    let rendered = render_challenge(&challenge);
    let again = parse_bearer_challenge(&rendered)
        .unwrap_or_else(|| panic!("a rendered Bearer challenge does not parse: {rendered:?}"));
    assert_eq!(again, challenge, "round trip through {rendered:?}");
}

fn challenge_values(c: &BearerChallenge) -> [Option<&String>; 4] {
    [
        c.resource_metadata.as_ref(),
        c.scope.as_ref(),
        c.error.as_ref(),
        c.error_description.as_ref(),
    ]
}

fn render_challenge(c: &BearerChallenge) -> String {
    let mut out = String::from("Basic realm=\"corp\", Bearer");
    let names = ["resource_metadata", "scope", "error", "error_description"];
    let mut first = true;
    for (name, value) in names.iter().zip(challenge_values(c)) {
        let Some(value) = value else { continue };
        out.push_str(if first { " " } else { ", " });
        first = false;
        out.push_str(name);
        out.push_str("=\"");
        for ch in value.chars() {
            if ch == '"' || ch == '\\' {
                out.push('\\');
            }
            out.push(ch);
        }
        out.push('"');
    }
    out
}

// ---- PRM and AS metadata ---------------------------------------------------------------------

fn same_host(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// RFC 9728 metadata: no panic; bounded errors; the well-known URLs derived from what it names
/// stay on that host and under `/.well-known/`.
pub fn prm_metadata(data: &[u8]) {
    match parse_protected_resource_metadata(&response(200, data)) {
        Ok(metadata) => {
            if let Ok(server) = Url::parse(&metadata.resource) {
                if !server.cannot_be_a_base() {
                    for url in protected_resource_metadata_urls(&server) {
                        assert!(same_host(&url, &server), "{url} is not on {server}'s host");
                        assert!(
                            url.path()
                                .starts_with("/.well-known/oauth-protected-resource"),
                            "{url}: not a well-known path"
                        );
                    }
                }
            }
            for issuer in &metadata.authorization_servers {
                let Ok(issuer) = Url::parse(issuer) else {
                    continue;
                };
                if issuer.cannot_be_a_base() {
                    continue;
                }
                for url in authorization_server_metadata_urls(&issuer) {
                    assert!(same_host(&url, &issuer), "{url} is not on {issuer}'s host");
                    assert!(
                        url.path().contains("/.well-known/"),
                        "{url}: not well-known"
                    );
                }
            }
        }
        Err(e) => assert_bounded("protected resource metadata", &e.to_string()),
    }
    match parse_protected_resource_metadata(&response(404, data)) {
        Ok(_) => panic!("metadata accepted from a 404"),
        Err(e) => assert_bounded("protected resource metadata (404)", &e.to_string()),
    }
}

/// RFC 8414 metadata: no panic; bounded errors; accepted only for the issuer it names.
pub fn as_metadata(data: &[u8]) {
    let named = serde_json::from_slice::<Value>(data)
        .ok()
        .and_then(|v| v.get("issuer")?.as_str().map(str::to_owned));
    let expected = named.unwrap_or_else(|| "https://as.example.com".to_owned());
    match parse_authorization_server_metadata(&response(200, data), &expected) {
        Ok(metadata) => {
            assert_eq!(metadata.issuer, expected, "metadata of another issuer");
            let _ = metadata.advertises_id_jag();
        }
        Err(e) => assert_bounded("authorization server metadata", &e.to_string()),
    }
    let other = format!("{expected}/other");
    match parse_authorization_server_metadata(&response(200, data), &other) {
        Ok(_) => panic!("metadata accepted for an issuer it does not name"),
        Err(e) => assert_bounded("authorization server metadata", &e.to_string()),
    }
}

// ---- token and error responses ---------------------------------------------------------------

const SECRET_FIELDS: [&str; 4] = ["access_token", "refresh_token", "id_token", "device_code"];

/// Top-level secret strings of a body (long enough not to be found by chance) that appear
/// nowhere else in it.
fn secrets_in(body: &[u8]) -> Vec<String> {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    let public: String = map
        .iter()
        .filter(|(k, _)| !SECRET_FIELDS.contains(&k.as_str()))
        .map(|(k, v)| format!("{k} {v} "))
        .collect();
    SECRET_FIELDS
        .iter()
        .filter_map(|k| map.get(*k)?.as_str())
        .filter(|s| s.len() >= 16 && !public.contains(*s))
        .map(str::to_owned)
        .collect()
}

fn assert_no_secret(what: &str, text: &str, secrets: &[String]) {
    for secret in secrets {
        assert!(!text.contains(secret.as_str()), "{what} shows a secret");
    }
}

/// Token, ID-JAG, device-authorization, revocation and error responses: no panic; success only
/// for 2xx with a non-empty token; an error about a success body never shows its secrets; error
/// excerpts are capped.
pub fn token_response(data: &[u8]) {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let status = [200, 201, 400, 401, 403, 500, 503, 302][usize::from(first) % 8];
    let success = (200..300).contains(&status);
    let response = response(status, body);
    let secrets = if success {
        secrets_in(body)
    } else {
        Vec::new()
    };
    match parse_token_response(&response) {
        Ok(token) => {
            assert!(success, "a token from HTTP {status}");
            assert!(!token.access_token.is_empty(), "an empty access token");
            let scope_words = token
                .scope
                .as_deref()
                .map_or(0, |s| s.split_whitespace().count());
            assert_eq!(token.scopes().len(), scope_words);
            assert_no_secret("a token response's Debug", &format!("{token:?}"), &secrets);
        }
        Err(e) => check_wire_error("token response", &e, &secrets),
    }
    match parse_id_jag_response(&response) {
        Ok(token) => assert!(
            matches!(
                token.issued_token_type.as_deref(),
                None | Some(TOKEN_TYPE_ID_JAG)
            ),
            "an ID-JAG response of another token type"
        ),
        Err(e) => check_wire_error("ID-JAG response", &e, &secrets),
    }
    match parse_device_authorization(&response) {
        Ok(device) => {
            assert!(success, "a device authorization from HTTP {status}");
            assert_no_secret(
                "a device authorization's Debug",
                &format!("{device:?}"),
                &secrets,
            );
        }
        Err(e) => check_wire_error("device authorization", &e, &secrets),
    }
    assert_eq!(parse_revocation_response(&response).is_ok(), success);
    if let WireError::OAuth(error) = parse_error(&response) {
        assert!(!error.error.is_empty(), "an OAuth error without a code");
        // Lossy UTF-8 turns one invalid byte into three, plus the ellipsis.
        assert!(
            error.raw.len() <= 3 * EXCERPT_LIMIT + 3,
            "an uncapped excerpt"
        );
    }
}

fn check_wire_error(what: &str, e: &WireError, secrets: &[String]) {
    let text = format!("{e} {e:?}");
    assert_no_secret(what, &text, secrets);
    assert_bounded(what, &e.to_string());
}

// ---- policy ----------------------------------------------------------------------------------

fn resolved(layers: &[Layer]) -> Option<Policy> {
    match resolve(layers, FileChecks::Skip) {
        Ok(snapshot) => Some(snapshot.policy),
        Err(errors) => {
            assert!(!errors.is_empty(), "a policy refused without a reason");
            None
        }
    }
}

/// The policy as JSON, as a managed-preferences plist and as a configuration profile: no panic;
/// a refusal always says why; a valid JSON policy reads the same written back as JSON and as an
/// XML plist.
pub fn policy(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        policy_json(text);
    }
    match layers_from_plist(data, "fuzz.plist") {
        Ok(layers) => {
            resolved(&layers);
        }
        Err(e) => assert_bounded("plist", &e.to_string()),
    }
    match layers_from_mobileconfig(data, "fuzz.mobileconfig") {
        Ok(layers) => {
            resolved(&layers);
        }
        Err(e) => assert_bounded("mobileconfig", &e.to_string()),
    }
}

fn policy_json(text: &str) {
    let Ok(document) = parse_json(text, "fuzz.json") else {
        return;
    };
    let layer = Layer::new("fuzz.json", Scope::Mandatory, document.clone());
    let Some(policy) = resolved(&[layer]) else {
        return;
    };
    let written = match serde_json::to_value(&policy) {
        Ok(written) => written,
        Err(e) => panic!("a valid policy cannot be written as JSON: {e}"),
    };
    let again = resolved(&[Layer::new("written.json", Scope::Mandatory, written)]);
    assert_eq!(
        again.as_ref(),
        Some(&policy),
        "the policy written back reads otherwise"
    );
    let mut xml = Vec::new();
    if plist::to_writer_xml(&mut xml, &document).is_ok() {
        match layers_from_plist(&xml, "fuzz.plist") {
            Ok(layers) => assert_eq!(
                resolved(&layers).as_ref(),
                Some(&policy),
                "the same policy as a plist reads otherwise"
            ),
            Err(e) => panic!("the same policy as a plist is refused: {e}"),
        }
    }
}

// ---- broker protocol -------------------------------------------------------------------------

/// The broker's NDJSON framing, read as the agent reads it: no panic; every request decoded
/// encodes and decodes to itself; over-long lines end the connection; a line read as a reply
/// round-trips too and its `Debug` never shows a token.
pub fn broker_protocol(data: &[u8]) {
    let mut rest = data;
    while !rest.is_empty() {
        let window = &rest[..rest.len().min(LINE_READ_LIMIT)];
        let (line, complete) = match window.iter().position(|&b| b == b'\n') {
            Some(i) => (&window[..=i], true),
            None => (window, false),
        };
        rest = &rest[line.len()..];
        match decode_request_line(line, complete) {
            RequestLine::Request(request) => {
                let mut bytes = match serde_json::to_vec(&request) {
                    Ok(bytes) => bytes,
                    Err(e) => panic!("a decoded request does not encode: {e}"),
                };
                bytes.push(b'\n');
                match decode_request_line(&bytes, true) {
                    RequestLine::Request(again) => assert_eq!(again, request),
                    other => panic!("an encoded request reads as {other:?}"),
                }
            }
            RequestLine::TooLarge(reply) => {
                assert_eq!(reply.code, ErrorCode::TooLarge);
                assert!(
                    line.len() > MAX_REQUEST_BYTES,
                    "a short line called too large"
                );
                return;
            }
            RequestLine::Malformed(reply) => assert_eq!(reply.code, ErrorCode::BadRequest),
            RequestLine::Blank => assert!(line.iter().all(u8::is_ascii_whitespace)),
        }
        broker_reply(line);
    }
}

fn broker_reply(line: &[u8]) {
    let Ok(text) = std::str::from_utf8(line) else {
        return;
    };
    let Ok(reply) = serde_json::from_str::<Response>(text.trim_end()) else {
        return;
    };
    let encoded = match serde_json::to_string(&reply) {
        Ok(encoded) => encoded,
        Err(e) => panic!("a decoded reply does not encode: {e}"),
    };
    match serde_json::from_str::<Response>(&encoded) {
        Ok(again) => assert!(again == reply, "a reply changed through encode/decode"),
        Err(e) => panic!("an encoded reply does not decode: {e}"),
    }
    if let Response::Token { access_token, .. } = &reply {
        if access_token.expose().len() >= 16 {
            assert!(
                !format!("{reply:?}").contains(access_token.expose()),
                "a token reply's Debug shows the token"
            );
        }
    }
}

// ---- SSE reader ------------------------------------------------------------------------------

fn sse_events(stream: &[u8], chunk_sizes: &mut dyn FnMut() -> usize) -> Vec<SseEvent> {
    let mut parser = SseParser::default();
    let mut events = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let n = chunk_sizes().clamp(1, rest.len());
        events.extend(parser.push(&rest[..n]));
        rest = &rest[n..];
    }
    events.extend(parser.finish());
    events
}

/// `text/event-stream` as the proxy bridge reads it: no panic; the same events however the
/// stream is cut into chunks (whole, byte by byte, pseudo-random cuts); no line end inside a
/// field; the data no larger than the stream could make it.
pub fn sse_reader(data: &[u8]) {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let whole = sse_events(stream, &mut || usize::MAX);
    let bytewise = sse_events(stream, &mut || 1);
    assert_eq!(whole, bytewise, "byte-by-byte chunks read otherwise");
    let mut state = u32::from(seed) | 1;
    let cut = sse_events(stream, &mut || {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        1 + (state >> 16) as usize % 17
    });
    assert_eq!(whole, cut, "chunks cut by seed {seed} read otherwise");
    let line_ends = stream.iter().filter(|&&b| b == b'\n' || b == b'\r').count();
    assert!(whole.len() <= line_ends + 1, "more events than lines");
    let mut data_bytes = 0;
    for event in &whole {
        assert!(!event.event.is_empty(), "an event without a type");
        assert!(
            !event.event.contains(['\n', '\r']),
            "a line end in an event type"
        );
        assert!(!event.data.contains('\r'), "a CR in event data");
        if let Some(id) = &event.id {
            assert!(
                !id.contains(['\n', '\r', '\0']),
                "a line end or NUL in an id"
            );
        }
        data_bytes += event.data.len();
    }
    // Lossy UTF-8 turns one invalid byte into three.
    assert!(
        data_bytes <= 3 * stream.len(),
        "more data than the stream holds"
    );
}

// ---- JSONC config editor ---------------------------------------------------------------------

/// The root's server map: `mcpServers` (Claude, Cursor) or `servers` (VS Code).
fn servers_map(root: &Node) -> Option<&Node> {
    root.get("mcpServers").or_else(|| root.get("servers"))
}

/// Whether Lanyard edits the root's server map (when it is an object) or the root itself.
fn edits_servers(root: &Node) -> bool {
    servers_map(root).is_some_and(|s| s.members().is_some())
}

/// The object Lanyard edits, found the same way in the document before and after an edit.
fn edited_object(root: &Node, in_servers: bool) -> Option<&Node> {
    let object = if in_servers { servers_map(root)? } else { root };
    object.members().map(|_| object)
}

fn check_spans(text: &str, node: &Node) {
    assert!(
        node.start < node.end && node.end <= text.len(),
        "a span outside the text"
    );
    assert!(
        text.is_char_boundary(node.start) && text.is_char_boundary(node.end),
        "a span that cuts a character"
    );
    if let Some(members) = node.members() {
        for member in members {
            assert!(member.key_start >= node.start && member.value.end <= node.end);
            check_spans(text, &member.value);
        }
    } else if let Some(items) = node.as_array() {
        for item in items {
            assert!(item.start >= node.start && item.end <= node.end);
            check_spans(text, item);
        }
    }
}

/// Keys and value texts of an object's members, in order.
fn member_texts<'a>(text: &'a str, object: &Node) -> Vec<(String, &'a str)> {
    object
        .members()
        .unwrap_or(&[])
        .iter()
        .map(|m| (m.key.clone(), &text[m.value.start..m.value.end]))
        .collect()
}

fn reparse(text: &str, dialect: Dialect, what: &str) -> Node {
    match jsonc::parse(text, dialect) {
        Ok(root) => root,
        Err(e) => panic!("after {what} the document no longer parses ({e}):\n{text}"),
    }
}

/// Everything outside the edited object is byte for byte what it was.
fn assert_outside_kept(before: &str, object: &Node, after: &str, new_object: &Node, what: &str) {
    assert_eq!(
        &before[..object.start],
        &after[..new_object.start],
        "{what}: text before changed"
    );
    assert_eq!(
        &before[object.end..],
        &after[new_object.end..],
        "{what}: text after changed"
    );
}

/// The JSON(C) parser and editor client wiring uses: strict JSON that `serde_json` accepts is
/// accepted, JSONC accepts all strict JSON, spans are sound; an inserted member is there with its
/// value and every other member and byte outside the object are kept; removing it gives back
/// the members; replacing a value changes only that value.
pub fn jsonc_edit(data: &[u8]) {
    let Some((&mode, text)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let strict = jsonc::parse(text, Dialect::Json);
    if serde_json::from_str::<Value>(text).is_ok() {
        assert!(
            strict.is_ok(),
            "JSON that serde_json reads is refused: {strict:?}"
        );
    }
    if strict.is_ok() {
        assert!(
            jsonc::parse(text, Dialect::Jsonc).is_ok(),
            "strict JSON refused as JSONC"
        );
    }
    let dialect = if mode & 1 == 0 {
        Dialect::Json
    } else {
        Dialect::Jsonc
    };
    let Ok(root) = jsonc::parse(text, dialect) else {
        return;
    };
    check_spans(text, &root);
    if root.members().is_none() {
        return;
    }
    let in_servers = edits_servers(&root);
    let Some(object) = edited_object(&root, in_servers) else {
        return;
    };
    let comment = (dialect == Dialect::Jsonc && mode & 2 != 0).then_some("// Added by Lanyard");
    let value = Out::Map(vec![
        ("command".into(), Out::Str("lanyard".into())),
        (
            "args".into(),
            Out::List(vec!["proxy".into(), format!("fuzz-{mode}")]),
        ),
    ]);
    let before = member_texts(text, object);
    let mut key = String::from("lanyard-fuzz");
    while object.get(&key).is_some() {
        key.push('_');
    }

    let inserted = insert_member(text, object, &key, &value, comment);
    let new_root = reparse(&inserted, dialect, "an insert");
    check_spans(&inserted, &new_root);
    let Some(new_object) = edited_object(&new_root, in_servers) else {
        panic!("the edited object is gone after an insert:\n{inserted}");
    };
    assert_outside_kept(text, object, &inserted, new_object, "insert");
    let mut after = member_texts(&inserted, new_object);
    let Some((new_key, new_value)) = after.pop() else {
        panic!("no member after an insert:\n{inserted}");
    };
    assert_eq!(new_key, key, "the inserted member is not last");
    assert_eq!(
        serde_json::from_str::<Value>(new_value).ok(),
        Some(value.to_json()),
        "the inserted value reads otherwise"
    );
    assert_eq!(after, before, "an insert changed other members");

    let index = before.len();
    let removed = remove_member(&inserted, new_object, index, comment);
    let removed_root = reparse(&removed, dialect, "a removal");
    let Some(removed_object) = edited_object(&removed_root, in_servers) else {
        panic!("the edited object is gone after a removal:\n{removed}");
    };
    assert_eq!(
        member_texts(&removed, removed_object),
        before,
        "a removal changed members"
    );
    assert_outside_kept(text, object, &removed, removed_object, "removal");

    if let Some(members) = object.members().filter(|m| !m.is_empty()) {
        let index = usize::from(mode >> 2) % members.len();
        let replaced = replace_value(text, object, &members[index], &value);
        let replaced_root = reparse(&replaced, dialect, "a replacement");
        let Some(replaced_object) = edited_object(&replaced_root, in_servers) else {
            panic!("the edited object is gone after a replacement:\n{replaced}");
        };
        assert_outside_kept(text, object, &replaced, replaced_object, "replacement");
        let mut now = member_texts(&replaced, replaced_object);
        assert_eq!(
            now.len(),
            before.len(),
            "a replacement changed the member count"
        );
        assert_eq!(
            serde_json::from_str::<Value>(now[index].1).ok(),
            Some(value.to_json()),
            "the replaced value reads otherwise"
        );
        now[index].1 = before[index].1;
        assert_eq!(now, before, "a replacement changed other members");
    }
}

// ---- JWT (ID token) --------------------------------------------------------------------------

/// The fixed time the fuzzed tokens are checked at.
pub const JWT_NOW: u64 = 1_800_000_000;
pub const JWT_ISSUER: &str = "https://idp.example.com";
pub const JWT_CLIENT_ID: &str = "lanyard";
const JWT_NONCE: &str = "n-0S6_WzA2Mj";

mod sign_in;
pub use sign_in::*;
