//! The bridge's view of one JSON-RPC message: what kind it is, which request ids it opens or
//! answers, the one edit the bridge makes (declaring Enterprise-Managed Authorization on the
//! client's behalf) and the error responses the bridge writes when it cannot get an answer.
//!
//! Pure functions over `serde_json::Value`: no I/O, no tokens. Everything except the capability
//! declaration passes through unchanged; a message that already declares the extension is left as
//! it is.

use serde_json::{json, Map, Value};

use crate::mcp::AuthExtension;

/// `_meta` key under which protocol 2026-07-28 clients send their capabilities on every request.
pub const CLIENT_CAPABILITIES_META: &str = "io.modelcontextprotocol/clientCapabilities";

/// `_meta` key naming the protocol version of a 2026-07-28 request.
pub const PROTOCOL_VERSION_META: &str = "io.modelcontextprotocol/protocolVersion";

/// The first protocol version without the `initialize` handshake (capabilities travel in `_meta`).
pub const STATELESS_PROTOCOL_VERSION: &str = "2026-07-28";

/// JSON-RPC error code the bridge uses when the upstream server could not be asked or gave no answer
/// (the implementation-defined server-error range).
pub const UPSTREAM_ERROR_CODE: i64 = -32000;

/// JSON-RPC error code for input that is not JSON.
pub const PARSE_ERROR_CODE: i64 = -32700;

/// JSON-RPC error code for JSON that is not a JSON-RPC message.
pub const INVALID_REQUEST_CODE: i64 = -32600;

/// What a line from the client is.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A request: the client waits for a response with this id.
    Request { id: Value, method: String },
    /// A notification (no response).
    Notification { method: String },
    /// The client's response to a request the server sent it.
    Response,
    /// A batch: the ids of the requests in it (responses and notifications need no answer).
    Batch { request_ids: Vec<Value> },
}

impl Incoming {
    /// The request ids the client now waits on.
    pub fn request_ids(&self) -> Vec<Value> {
        match self {
            Incoming::Request { id, .. } => vec![id.clone()],
            Incoming::Batch { request_ids } => request_ids.clone(),
            Incoming::Notification { .. } | Incoming::Response => Vec::new(),
        }
    }

    /// The method, for requests and notifications.
    pub fn method(&self) -> Option<&str> {
        match self {
            Incoming::Request { method, .. } | Incoming::Notification { method } => Some(method),
            Incoming::Response | Incoming::Batch { .. } => None,
        }
    }
}

/// Why a line from the client cannot be forwarded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAMessage {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("not a JSON-RPC message: {0}")]
    NotJsonRpc(&'static str),
}

impl NotAMessage {
    /// The JSON-RPC error code that answers it.
    pub fn code(&self) -> i64 {
        match self {
            NotAMessage::NotJson(_) => PARSE_ERROR_CODE,
            NotAMessage::NotJsonRpc(_) => INVALID_REQUEST_CODE,
        }
    }
}

/// Parses one line from the client and says what it is.
pub fn parse_incoming(line: &[u8]) -> Result<(Value, Incoming), NotAMessage> {
    let value: Value =
        serde_json::from_slice(line).map_err(|e| NotAMessage::NotJson(e.to_string()))?;
    let kind = classify(&value)?;
    Ok((value, kind))
}

/// Says what a parsed message is.
pub fn classify(value: &Value) -> Result<Incoming, NotAMessage> {
    match value {
        Value::Array(items) => {
            if items.is_empty() {
                return Err(NotAMessage::NotJsonRpc("an empty batch"));
            }
            let mut request_ids = Vec::new();
            for item in items {
                if let Incoming::Request { id, .. } = classify_one(item)? {
                    request_ids.push(id);
                }
            }
            Ok(Incoming::Batch { request_ids })
        }
        other => classify_one(other),
    }
}

fn classify_one(value: &Value) -> Result<Incoming, NotAMessage> {
    let object = value
        .as_object()
        .ok_or(NotAMessage::NotJsonRpc("neither an object nor a batch"))?;
    let id = object.get("id").filter(|id| !id.is_null());
    match (object.get("method"), id) {
        (Some(Value::String(method)), Some(id)) => Ok(Incoming::Request {
            id: id.clone(),
            method: method.clone(),
        }),
        (Some(Value::String(method)), None) => Ok(Incoming::Notification {
            method: method.clone(),
        }),
        (Some(_), _) => Err(NotAMessage::NotJsonRpc("a method that is not a string")),
        (None, Some(_)) if object.contains_key("result") || object.contains_key("error") => {
            Ok(Incoming::Response)
        }
        (None, _) => Err(NotAMessage::NotJsonRpc(
            "no method, and not a response with an id",
        )),
    }
}

/// The extension Lanyard declares for the client.
fn extension_id() -> &'static str {
    AuthExtension::EnterpriseManagedAuthorization.id()
}

/// Declares Enterprise-Managed Authorization in `message` where the protocol puts client
/// capabilities: `initialize` → `params.capabilities.extensions`, and on a 2026-07-28 request
/// `params._meta["io.modelcontextprotocol/clientCapabilities"].extensions`. Batches are handled item
/// by item. Returns whether anything changed; a message that already declares it, or has nowhere to
/// declare it, is left alone.
pub fn declare_extension(message: &mut Value) -> bool {
    if let Value::Array(items) = message {
        let mut changed = false;
        for item in items {
            changed |= declare_extension(item);
        }
        return changed;
    }
    let Some(object) = message.as_object_mut() else {
        return false;
    };
    let is_request = object.get("id").is_some_and(|id| !id.is_null());
    let method = object
        .get("method")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let Some(method) = method else {
        return false;
    };
    if method == "initialize" {
        let params = object_entry(object, "params");
        let capabilities = object_entry(params, "capabilities");
        let extensions = object_entry(capabilities, "extensions");
        return insert_absent(extensions, extension_id());
    }
    if !is_request {
        return false;
    }
    let Some(meta) = object
        .get_mut("params")
        .and_then(Value::as_object_mut)
        .and_then(|p| p.get_mut("_meta"))
        .and_then(Value::as_object_mut)
    else {
        return false;
    };
    let stateless = meta.contains_key(CLIENT_CAPABILITIES_META)
        || meta
            .get(PROTOCOL_VERSION_META)
            .and_then(Value::as_str)
            .is_some_and(is_stateless_version);
    if !stateless {
        return false;
    }
    let capabilities = object_entry(meta, CLIENT_CAPABILITIES_META);
    let extensions = object_entry(capabilities, "extensions");
    insert_absent(extensions, extension_id())
}

/// Whether `version` (a `YYYY-MM-DD` protocol revision) is 2026-07-28 or later.
pub fn is_stateless_version(version: &str) -> bool {
    version.len() == STATELESS_PROTOCOL_VERSION.len()
        && version >= STATELESS_PROTOCOL_VERSION
        && version.bytes().all(|b| b.is_ascii_digit() || b == b'-')
}

/// The protocol version a 2026-07-28 request names in its `_meta`, if any.
pub fn meta_protocol_version(message: &Value) -> Option<&str> {
    let first = match message {
        Value::Array(items) => items.first()?,
        other => other,
    };
    first
        .pointer("/params/_meta")
        .and_then(|m| m.get(PROTOCOL_VERSION_META))
        .and_then(Value::as_str)
}

/// `object[key]` as an object, replacing a non-object value (a client sending
/// `"capabilities": null` still gets a usable declaration).
fn object_entry<'a>(object: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let entry = object
        .entry(key.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    match entry {
        Value::Object(map) => map,
        // Made an object just above.
        _ => unreachable!("entry was just made an object"),
    }
}

fn insert_absent(extensions: &mut Map<String, Value>, id: &str) -> bool {
    if extensions.contains_key(id) {
        return false;
    }
    extensions.insert(id.to_owned(), json!({}));
    true
}

/// A JSON-RPC error response to request `id`.
pub fn error_response(id: &Value, code: i64, message: &str, data: Option<Value>) -> Value {
    let mut error = json!({ "code": code, "message": message });
    if let Some(data) = data {
        error["data"] = data;
    }
    json!({ "jsonrpc": "2.0", "id": id, "error": error })
}

/// The ids of the responses in a message from the server (a batch answers several).
pub fn response_ids(message: &Value) -> Vec<&Value> {
    match message {
        Value::Array(items) => items.iter().flat_map(response_ids).collect(),
        Value::Object(object) if !object.contains_key("method") => object
            .get("id")
            .filter(|id| !id.is_null())
            .into_iter()
            .collect(),
        _ => Vec::new(),
    }
}

/// The `protocolVersion` of the `initialize` result answering request `id` in `message`.
pub fn negotiated_version<'a>(message: &'a Value, id: &Value) -> Option<&'a str> {
    let items: Vec<&Value> = match message {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    items
        .into_iter()
        .filter(|m| m.get("method").is_none() && m.get("id") == Some(id))
        .find_map(|m| m.pointer("/result/protocolVersion").and_then(Value::as_str))
}

/// One line of output for a message the server sent as `text`: the text itself when it is already
/// a single line (untouched), else the message re-serialised compactly (newline-delimited framing
/// forbids embedded line breaks; JSON strings never contain raw ones, so only whitespace changes).
pub fn output_line(text: &str, parsed: &Value) -> String {
    let trimmed = text.trim();
    if trimmed.contains(['\n', '\r']) {
        parsed.to_string()
    } else {
        trimmed.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMA: &str = "io.modelcontextprotocol/enterprise-managed-authorization";

    #[test]
    fn classifies_requests_notifications_responses_and_batches() {
        let (_, kind) =
            parse_incoming(br#"{"jsonrpc":"2.0","id":"a","method":"tools/list"}"#).expect("ok");
        assert_eq!(
            kind,
            Incoming::Request {
                id: json!("a"),
                method: "tools/list".into()
            }
        );
        let (_, kind) =
            parse_incoming(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
                .expect("ok");
        assert_eq!(kind.method(), Some("notifications/initialized"));
        assert!(kind.request_ids().is_empty());
        let (_, kind) = parse_incoming(br#"{"jsonrpc":"2.0","id":7,"result":{}}"#).expect("ok");
        assert_eq!(kind, Incoming::Response);
        let (_, kind) = parse_incoming(
            br#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"n"},{"jsonrpc":"2.0","id":9,"result":{}}]"#,
        )
        .expect("ok");
        assert_eq!(kind.request_ids(), vec![json!(1)]);
    }

    #[test]
    fn rejects_what_is_not_json_rpc() {
        assert!(matches!(
            parse_incoming(b"{nope"),
            Err(NotAMessage::NotJson(_))
        ));
        let err = parse_incoming(b"[]").expect_err("empty batch");
        assert_eq!(err.code(), INVALID_REQUEST_CODE);
        assert!(parse_incoming(b"42").is_err());
        assert!(parse_incoming(br#"{"jsonrpc":"2.0","id":1}"#).is_err());
        assert!(parse_incoming(br#"{"jsonrpc":"2.0","id":1,"method":5}"#).is_err());
        assert_eq!(
            parse_incoming(b"{nope").expect_err("bad").code(),
            PARSE_ERROR_CODE
        );
    }

    #[test]
    fn initialize_gets_the_extension_and_keeps_everything_else() {
        let mut message = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
            "protocolVersion":"2025-11-25",
            "capabilities":{"roots":{"listChanged":true},"extensions":{"x/other":{"a":1}}},
            "clientInfo":{"name":"c","version":"1"}}});
        let before = message.clone();
        assert!(declare_extension(&mut message));
        assert_eq!(
            message["params"]["capabilities"]["extensions"][EMA],
            json!({})
        );
        assert_eq!(
            message["params"]["capabilities"]["extensions"]["x/other"],
            json!({"a":1})
        );
        assert_eq!(
            message["params"]["capabilities"]["roots"],
            before["params"]["capabilities"]["roots"]
        );
        assert_eq!(
            message["params"]["clientInfo"],
            before["params"]["clientInfo"]
        );
        // Idempotent: a second pass changes nothing.
        let once = message.clone();
        assert!(!declare_extension(&mut message));
        assert_eq!(message, once);
    }

    #[test]
    fn initialize_without_capabilities_or_with_junk_capabilities_gets_them() {
        let mut bare = json!({"jsonrpc":"2.0","id":1,"method":"initialize"});
        assert!(declare_extension(&mut bare));
        assert_eq!(bare["params"]["capabilities"]["extensions"][EMA], json!({}));
        let mut junk =
            json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"capabilities":null}});
        assert!(declare_extension(&mut junk));
        assert_eq!(junk["params"]["capabilities"]["extensions"][EMA], json!({}));
    }

    #[test]
    fn a_client_declaration_is_not_overwritten() {
        let mut message = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
            "capabilities":{"extensions":{EMA:{"setting":true}}}}});
        let before = message.clone();
        assert!(!declare_extension(&mut message));
        assert_eq!(message, before);
    }

    #[test]
    fn stateless_requests_get_the_meta_form() {
        let mut with_caps = json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{
            "name":"echo","arguments":{"text":"hi"},
            "_meta":{CLIENT_CAPABILITIES_META:{"sampling":{}}, PROTOCOL_VERSION_META:"2026-07-28"}}});
        assert!(declare_extension(&mut with_caps));
        let caps = &with_caps["params"]["_meta"][CLIENT_CAPABILITIES_META];
        assert_eq!(caps["extensions"][EMA], json!({}));
        assert_eq!(caps["sampling"], json!({}));
        assert_eq!(with_caps["params"]["arguments"], json!({"text":"hi"}));

        let mut version_only = json!({"jsonrpc":"2.0","id":4,"method":"server/discover","params":{
            "_meta":{PROTOCOL_VERSION_META:"2026-07-28"}}});
        assert!(declare_extension(&mut version_only));
        assert_eq!(
            version_only["params"]["_meta"][CLIENT_CAPABILITIES_META]["extensions"][EMA],
            json!({})
        );
        assert_eq!(meta_protocol_version(&version_only), Some("2026-07-28"));
    }

    #[test]
    fn older_requests_notifications_and_responses_are_untouched() {
        for original in [
            json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"x"}}),
            json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"x","_meta":{"progressToken":1}}}),
            json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"_meta":{PROTOCOL_VERSION_META:"2025-11-25"}}}),
            json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
            json!({"jsonrpc":"2.0","method":"notifications/x","params":{"_meta":{CLIENT_CAPABILITIES_META:{}}}}),
            json!({"jsonrpc":"2.0","id":3,"result":{"_meta":{CLIENT_CAPABILITIES_META:{}}}}),
        ] {
            let mut message = original.clone();
            assert!(!declare_extension(&mut message), "{original}");
            assert_eq!(message, original);
        }
    }

    #[test]
    fn batches_are_declared_item_by_item() {
        let mut batch = json!([
            {"jsonrpc":"2.0","id":1,"method":"initialize","params":{"capabilities":{}}},
            {"jsonrpc":"2.0","id":2,"method":"ping"}
        ]);
        assert!(declare_extension(&mut batch));
        assert_eq!(
            batch[0]["params"]["capabilities"]["extensions"][EMA],
            json!({})
        );
        assert_eq!(batch[1], json!({"jsonrpc":"2.0","id":2,"method":"ping"}));
    }

    #[test]
    fn stateless_version_comparison() {
        assert!(is_stateless_version("2026-07-28"));
        assert!(is_stateless_version("2027-01-01"));
        assert!(!is_stateless_version("2025-11-25"));
        assert!(!is_stateless_version("draft"));
        assert!(!is_stateless_version("2026-07-28-x"));
    }

    #[test]
    fn response_ids_and_negotiated_version() {
        let single = json!({"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18"}});
        assert_eq!(response_ids(&single), vec![&json!(0)]);
        assert_eq!(negotiated_version(&single, &json!(0)), Some("2025-06-18"));
        assert_eq!(negotiated_version(&single, &json!(1)), None);
        let server_request = json!({"jsonrpc":"2.0","id":0,"method":"ping"});
        assert!(response_ids(&server_request).is_empty());
        assert_eq!(negotiated_version(&server_request, &json!(0)), None);
        let batch = json!([{"jsonrpc":"2.0","id":"a","result":{}},{"jsonrpc":"2.0","method":"n"},{"jsonrpc":"2.0","id":2,"error":{"code":1,"message":"m"}}]);
        assert_eq!(response_ids(&batch), vec![&json!("a"), &json!(2)]);
    }

    #[test]
    fn output_lines_are_single_lines_and_untouched_when_possible() {
        let text = "{\"jsonrpc\":\"2.0\", \"id\":1,\"result\":{ }}";
        let parsed: Value = serde_json::from_str(text).expect("json");
        assert_eq!(output_line(text, &parsed), text);
        let pretty =
            "{\n  \"jsonrpc\": \"2.0\",\r\n  \"id\": 1,\n  \"result\": {\"t\": \"a\\nb\"}\n}\n";
        let parsed: Value = serde_json::from_str(pretty).expect("json");
        let line = output_line(pretty, &parsed);
        assert!(!line.contains('\n') && !line.contains('\r'), "{line}");
        assert_eq!(serde_json::from_str::<Value>(&line).expect("json"), parsed);
    }

    #[test]
    fn error_responses_carry_the_id_and_data() {
        let e = error_response(
            &json!("x"),
            UPSTREAM_ERROR_CODE,
            "nope",
            Some(json!({"k":1})),
        );
        assert_eq!(
            e,
            json!({"jsonrpc":"2.0","id":"x","error":{"code":-32000,"message":"nope","data":{"k":1}}})
        );
    }
}
