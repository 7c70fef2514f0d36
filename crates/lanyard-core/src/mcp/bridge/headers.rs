//! The HTTP headers MCP 2026-07-28 asks of a client on every POST (SEP-2243): `Mcp-Method` (the
//! JSON-RPC method), `Mcp-Name` (the tool, prompt or resource a call names) and one
//! `Mcp-Param-<Name>` per tool argument whose schema property carries `x-mcp-header`. They copy
//! what the body says so gateways can route without reading it; the body itself is not touched.
//!
//! The bridge learns each tool's annotations from the `tools/list` results it forwards. A tool
//! whose annotations break the rules (an empty or non-token name, a name twice, an annotation on
//! a number, object, array or null) is not called: the SEP says clients must exclude it. Pure:
//! values in, header pairs out.

use std::collections::HashMap;

use base64::Engine as _;
use serde_json::Value;

/// The first protocol version that has these headers.
pub const HEADERS_PROTOCOL_VERSION: &str = "2026-07-28";

/// Whether `version` (a `YYYY-MM-DD` protocol version) carries the headers.
pub fn version_has_headers(version: &str) -> bool {
    version >= HEADERS_PROTOCOL_VERSION
}

/// What the bridge knows of each listed tool's `x-mcp-header` annotations.
#[derive(Debug, Default, Clone)]
pub struct ToolHeaders {
    /// Tool name → its (argument, header name) pairs, or why the tool may not be called.
    tools: HashMap<String, Result<Vec<(String, String)>, String>>,
}

impl ToolHeaders {
    /// Takes in a `tools/list` result (`{"tools": [...]}`); later pages add to what is known.
    pub fn learn(&mut self, result: &Value) {
        let Some(tools) = result.get("tools").and_then(Value::as_array) else {
            return;
        };
        for tool in tools {
            if let Some(name) = tool.get("name").and_then(Value::as_str) {
                self.tools.insert(name.to_owned(), annotations(tool));
            }
        }
    }
}

/// A tool's `x-mcp-header` annotations, checked.
fn annotations(tool: &Value) -> Result<Vec<(String, String)>, String> {
    let mut found: Vec<(String, String)> = Vec::new();
    let Some(properties) = tool
        .pointer("/inputSchema/properties")
        .and_then(Value::as_object)
    else {
        return Ok(found);
    };
    for (argument, schema) in properties {
        let Some(header) = schema.get("x-mcp-header") else {
            continue;
        };
        let header = header
            .as_str()
            .ok_or_else(|| format!("x-mcp-header of {argument:?} is not a string"))?;
        if header.is_empty() || !header.bytes().all(is_token_byte) {
            return Err(format!(
                "x-mcp-header {header:?} of {argument:?} is not a header name"
            ));
        }
        match schema.get("type").and_then(Value::as_str) {
            Some("string" | "integer" | "boolean") => {}
            other => {
                return Err(format!(
                    "x-mcp-header on {argument:?}, of type {}: only string, integer and boolean \
                     arguments may be mirrored",
                    other.unwrap_or("(none)")
                ))
            }
        }
        if found.iter().any(|(_, h)| h.eq_ignore_ascii_case(header)) {
            return Err(format!("x-mcp-header {header:?} is declared twice"));
        }
        found.push((argument.clone(), header.to_owned()));
    }
    Ok(found)
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A value as the SEP encodes it in a header, or `None` (null, absent: no header). Strings that
/// are not plain printable ASCII, or that start or end with whitespace, go as
/// `=?base64?<UTF-8, base64>?=`.
pub fn encode_value(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => {
            let plain = s.bytes().all(|b| (0x20..=0x7e).contains(&b)) && s.trim() == s;
            Some(if plain {
                s.clone()
            } else {
                format!(
                    "=?base64?{}?=",
                    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
                )
            })
        }
        Value::Array(_) | Value::Object(_) => None,
    }
}

/// The headers for one client message, or why the bridge refuses to send it (a call to a tool
/// with broken annotations). Responses and messages without a method get none.
pub fn request_headers(
    message: &Value,
    tools: &ToolHeaders,
) -> Result<Vec<(String, String)>, String> {
    let Some(method) = message.get("method").and_then(Value::as_str) else {
        return Ok(Vec::new());
    };
    let mut headers = vec![("Mcp-Method".to_owned(), method.to_owned())];
    let params = message.get("params");
    let name = match method {
        "tools/call" | "prompts/get" => params.and_then(|p| p.get("name")),
        "resources/read" => params.and_then(|p| p.get("uri")),
        _ => None,
    };
    if let Some(name) = name.and_then(encode_value) {
        headers.push(("Mcp-Name".to_owned(), name));
    }
    if method == "tools/call" {
        let tool = params
            .and_then(|p| p.get("name"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        match tools.tools.get(tool) {
            Some(Err(why)) => {
                return Err(format!(
                    "the server's tool {tool:?} is not called: {why} (SEP-2243)"
                ))
            }
            Some(Ok(mirrored)) => {
                let arguments = params.and_then(|p| p.get("arguments"));
                for (argument, header) in mirrored {
                    if let Some(value) = arguments
                        .and_then(|a| a.get(argument))
                        .and_then(encode_value)
                    {
                        headers.push((format!("Mcp-Param-{header}"), value));
                    }
                }
            }
            None => {}
        }
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn listed() -> ToolHeaders {
        let mut tools = ToolHeaders::default();
        tools.learn(&json!({"tools": [
            {"name": "search", "inputSchema": {"type": "object", "properties": {
                "region": {"type": "string", "x-mcp-header": "Region"},
                "priority": {"type": "integer", "x-mcp-header": "Priority"},
                "verbose": {"type": "boolean", "x-mcp-header": "Verbose"},
                "query": {"type": "string"}}}},
            {"name": "scored", "inputSchema": {"properties": {
                "score": {"type": "number", "x-mcp-header": "Score"}}}},
            {"name": "twice", "inputSchema": {"properties": {
                "a": {"type": "string", "x-mcp-header": "MyField"},
                "b": {"type": "string", "x-mcp-header": "myfield"}}}},
            {"name": "empty", "inputSchema": {"properties": {
                "a": {"type": "string", "x-mcp-header": ""}}}}
        ]}));
        tools
    }

    #[test]
    fn every_post_names_its_method_and_a_call_its_target() {
        let tools = ToolHeaders::default();
        let h = request_headers(
            &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            &tools,
        )
        .expect("headers");
        assert_eq!(
            h,
            [(
                "Mcp-Method".to_owned(),
                "notifications/initialized".to_owned()
            )]
        );
        let h = request_headers(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "resources/read", "params": {"uri": "file:///a b"}}),
            &tools,
        )
        .expect("headers");
        assert_eq!(h[1], ("Mcp-Name".to_owned(), "file:///a b".to_owned()));
        assert!(
            request_headers(&json!({"jsonrpc": "2.0", "id": 1, "result": {}}), &tools)
                .expect("none")
                .is_empty()
        );
    }

    #[test]
    fn annotated_arguments_are_mirrored_and_encoded_as_the_sep_says() {
        let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "search",
            "arguments": {"region": " us-west1", "priority": 42, "verbose": null, "query": "x"}}});
        let h = request_headers(&call, &listed()).expect("headers");
        assert_eq!(
            h,
            [
                ("Mcp-Method".to_owned(), "tools/call".to_owned()),
                ("Mcp-Name".to_owned(), "search".to_owned()),
                ("Mcp-Param-Priority".to_owned(), "42".to_owned()),
                // A leading space needs Base64; null and unannotated arguments send nothing.
                (
                    "Mcp-Param-Region".to_owned(),
                    "=?base64?IHVzLXdlc3Qx?=".to_owned()
                ),
            ]
        );
        assert_eq!(
            encode_value(&json!("Hello, 世界")).as_deref(),
            Some("=?base64?SGVsbG8sIOS4lueVjA==?=")
        );
        assert_eq!(
            encode_value(&json!("us west 1")).as_deref(),
            Some("us west 1")
        );
        assert_eq!(
            encode_value(&json!("a\tb")).as_deref(),
            Some("=?base64?YQli?=")
        );
        assert_eq!(encode_value(&json!(false)).as_deref(), Some("false"));
        assert_eq!(encode_value(&json!("")).as_deref(), Some(""));
    }

    #[test]
    fn tools_with_broken_annotations_are_not_called() {
        let tools = listed();
        for tool in ["scored", "twice", "empty"] {
            let call = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                              "params": {"name": tool, "arguments": {}}});
            let why = request_headers(&call, &tools).expect_err(tool);
            assert!(why.contains(tool) && why.contains("SEP-2243"), "{why}");
        }
    }
}
