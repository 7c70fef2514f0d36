//! The conformance suite's transport scenarios, through the real bridge of `lanyard proxy`:
//! `lanyard conformance-client` plays the AI client on the bridge's stdio side (an in-memory
//! pipe) and the bridge speaks streamable HTTP to the suite's server, exactly as it does behind
//! `lanyard proxy`. Only the token source differs: a fixed value instead of the agent, since these
//! servers ask for none.
//!
//! Scenarios: `http-standard-headers`, `http-custom-headers` and `http-invalid-tool-headers`
//! (SEP-2243, MCP 2026-07-28); `request-metadata` (SEP-2575: every request's `_meta`, with the
//! bridge's `MCP-Protocol-Version` header taken from it); `initialize` and `tools_call`
//! (2025-11-25). The scripts play an AI client's part; what is judged of Lanyard is that the
//! bridge carries them unchanged and adds the headers of the version in use.

use std::time::Duration;

use anyhow::{bail, Context as _};
use lanyard_core::mcp::bridge::{
    self, BridgeConfig, IssuedToken, TokenRequest, TokenSource, TokenUnavailable,
};
use lanyard_core::secret::Secret;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use url::Url;

pub const SCENARIOS: [&str; 7] = [
    "sse-retry",
    "http-standard-headers",
    "http-custom-headers",
    "http-invalid-tool-headers",
    "request-metadata",
    "initialize",
    "tools_call",
];

const PROTOCOL_VERSION: &str = "2026-07-28";
/// The stateful version the `initialize`, `tools_call` and `sse-retry` scenarios speak.
const STATEFUL_VERSION: &str = "2025-11-25";
const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

/// The suite's transport servers take any bearer.
struct NoAgent;

impl TokenSource for NoAgent {
    async fn token(&self, _request: &TokenRequest) -> Result<IssuedToken, TokenUnavailable> {
        Ok(IssuedToken::bearer(Secret::new("conformance-transport")))
    }
}

/// The AI client's side of the bridge: newline-delimited JSON-RPC.
struct StdioClient {
    writer: tokio::io::WriteHalf<tokio::io::DuplexStream>,
    reader: tokio::io::Lines<BufReader<tokio::io::ReadHalf<tokio::io::DuplexStream>>>,
    next_id: u64,
}

impl StdioClient {
    async fn notify(&mut self, method: &str) -> anyhow::Result<()> {
        let line = json!({"jsonrpc": "2.0", "method": method}).to_string() + "\n";
        self.writer.write_all(line.as_bytes()).await?;
        Ok(())
    }

    /// Sends a request and waits for its answer (skipping the server's own messages).
    async fn call(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let line = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
            .to_string()
            + "\n";
        self.writer.write_all(line.as_bytes()).await?;
        loop {
            let line = tokio::time::timeout(ANSWER_TIMEOUT, self.reader.next_line())
                .await
                .with_context(|| format!("no answer to {method} in time"))??
                .with_context(|| format!("the bridge ended before answering {method}"))?;
            let message: Value = serde_json::from_str(&line)?;
            if message.get("id") == Some(&json!(id)) {
                return Ok(message);
            }
        }
    }
}

/// A value for each required argument of `tool`, by its schema type.
fn arguments_for(tool: &Value) -> Value {
    let mut arguments = serde_json::Map::new();
    let properties = tool.pointer("/inputSchema/properties");
    for name in tool
        .pointer("/inputSchema/required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        let kind = properties
            .and_then(|p| p.get(name))
            .and_then(|s| s.get("type"))
            .and_then(Value::as_str);
        let value = match kind {
            Some("integer") => json!(1),
            Some("number") => json!(1.5),
            Some("boolean") => json!(true),
            Some("object") => json!({}),
            Some("array") => json!([]),
            Some("null") => Value::Null,
            _ => json!("conformance"),
        };
        arguments.insert(name.to_owned(), value);
    }
    Value::Object(arguments)
}

fn listed<'a>(answer: &'a Value, field: &str) -> Vec<&'a Value> {
    answer
        .pointer(&format!("/result/{field}"))
        .and_then(Value::as_array)
        .map(|items| items.iter().collect())
        .unwrap_or_default()
}

/// Runs `scenario` against `server`, with the suite's `context` (its `toolCalls`, if any).
pub async fn run(scenario: &str, server: &Url, context: &Value) -> anyhow::Result<()> {
    run_with(scenario, server, context, NoAgent).await
}

/// [`run`] with the bridge's tokens from `tokens` (a DPoP-bound token and its proofs, for the
/// DPoP scenarios).
pub async fn run_with(
    scenario: &str,
    server: &Url,
    context: &Value,
    tokens: impl TokenSource,
) -> anyhow::Result<()> {
    let (client_side, bridge_side) = tokio::io::duplex(1 << 20);
    let (bridge_in, bridge_out) = tokio::io::split(bridge_side);
    let mut config = BridgeConfig::new(server.clone());
    config.listen = false;
    let running = tokio::spawn(bridge::run(config, tokens, bridge_in, bridge_out));
    let (reader, writer) = tokio::io::split(client_side);
    let mut client = StdioClient {
        writer,
        reader: BufReader::new(reader).lines(),
        next_id: 0,
    };

    let client_info = json!({"name": "lanyard-conformance", "version": env!("CARGO_PKG_VERSION")});
    if scenario == "request-metadata" {
        // Stateless 2026-07-28: no initialize; every request says who and what in `_meta`. A
        // version the server refuses (-32022) is retried once with one it supports.
        let mut version = PROTOCOL_VERSION.to_owned();
        for method in ["server/discover", "tools/list"] {
            for _ in 0..2 {
                let meta = json!({"io.modelcontextprotocol/protocolVersion": version,
                                  "io.modelcontextprotocol/clientInfo": client_info,
                                  "io.modelcontextprotocol/clientCapabilities": {}});
                let answer = client.call(method, json!({"_meta": meta})).await?;
                match answer
                    .pointer("/error/data/supported/0")
                    .and_then(Value::as_str)
                {
                    Some(supported) if answer.pointer("/error/code") == Some(&json!(-32022)) => {
                        version = supported.to_owned();
                    }
                    _ => break,
                }
            }
        }
        return finish(client, running).await;
    }
    let version = if matches!(scenario, "initialize" | "tools_call" | "sse-retry") {
        STATEFUL_VERSION
    } else {
        PROTOCOL_VERSION
    };
    let init = client
        .call(
            "initialize",
            json!({"protocolVersion": version, "capabilities": {}, "clientInfo": client_info}),
        )
        .await?;
    if init.get("result").is_none() {
        bail!("initialize was refused: {init}");
    }
    client.notify("notifications/initialized").await?;
    let tools = client.call("tools/list", json!({})).await?;
    match scenario {
        "initialize" => {}
        "sse-retry" => {
            // Its one tool's reply stream closes before the answer: the bridge must resume it.
            let tool = listed(&tools, "tools")
                .first()
                .map(|t| t["name"].clone())
                .context("sse-retry lists no tool")?;
            let answer = client
                .call("tools/call", json!({"name": tool, "arguments": {}}))
                .await?;
            if answer.get("result").is_none() {
                bail!("the resumed tools/call came back without a result: {answer}");
            }
        }
        "tools_call" => {
            client
                .call(
                    "tools/call",
                    json!({"name": "add_numbers", "arguments": {"a": 2, "b": 3}}),
                )
                .await?;
        }
        "http-custom-headers" => {
            for call in context
                .get("toolCalls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                client
                    .call(
                        "tools/call",
                        json!({"name": call["name"], "arguments": call["arguments"]}),
                    )
                    .await?;
            }
        }
        "http-invalid-tool-headers" => {
            // Every listed tool is asked for; the bridge answers the ones with broken
            // annotations itself, and the server never sees them.
            for tool in listed(&tools, "tools") {
                let answer = client
                    .call(
                        "tools/call",
                        json!({"name": tool["name"], "arguments": arguments_for(tool)}),
                    )
                    .await?;
                eprintln!(
                    "lanyard conformance-client: {} -> {}",
                    tool["name"],
                    if answer.get("error").is_some() {
                        "refused"
                    } else {
                        "called"
                    }
                );
            }
        }
        _ => {
            if let Some(tool) = listed(&tools, "tools").first() {
                client
                    .call(
                        "tools/call",
                        json!({"name": tool["name"], "arguments": arguments_for(tool)}),
                    )
                    .await?;
            }
            let resources = client.call("resources/list", json!({})).await?;
            if let Some(resource) = listed(&resources, "resources").first() {
                client
                    .call("resources/read", json!({"uri": resource["uri"]}))
                    .await?;
            }
            let prompts = client.call("prompts/list", json!({})).await?;
            if let Some(prompt) = listed(&prompts, "prompts").first() {
                client
                    .call(
                        "prompts/get",
                        json!({"name": prompt["name"], "arguments": {}}),
                    )
                    .await?;
            }
        }
    }
    finish(client, running).await
}

/// Ends the input; the bridge closes the session and stops.
async fn finish(
    mut client: StdioClient,
    running: tokio::task::JoinHandle<Result<(), bridge::BridgeError>>,
) -> anyhow::Result<()> {
    client.writer.shutdown().await?;
    drop(client);
    running
        .await
        .context("the bridge task failed")?
        .context("the bridge")?;
    Ok(())
}
