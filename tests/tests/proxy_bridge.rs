//! The stdio bridge against the testbed over real HTTP, in-process: a scripted MCP client on one
//! end of an in-memory pipe, `lanyard_core::mcp::bridge::run` in the middle, the testbed's MCP server on
//! the other, and tokens from a real engine signed in at the testbed IdP. Covers JSON and SSE
//! replies, the session id and protocol version headers, the EMA declaration, the GET stream in
//! both directions, DELETE at the end, a token expiring mid-session (401 → one fresh mint) and a
//! 403 `insufficient_scope` (one re-mint with the union of scopes).

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lanyard_core::engine::{self, EngineHandle};
use lanyard_core::mcp::bridge::{
    self, BridgeConfig, IssuedToken, TokenRequest, TokenSource, TokenUnavailable,
};
use lanyard_testbed::{McpConfig, Testbed, TestbedConfig};
use serde_json::{json, Value};
use support::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, Lines};
use tokio::task::JoinHandle;

const EMA: &str = "io.modelcontextprotocol/enterprise-managed-authorization";

/// Tokens from the engine, remembering every request the bridge made.
#[derive(Clone)]
struct EngineTokens {
    engine: EngineHandle,
    server: String,
    asked: Arc<Mutex<Vec<TokenRequest>>>,
}

impl TokenSource for EngineTokens {
    fn token(
        &self,
        request: &TokenRequest,
    ) -> impl std::future::Future<Output = Result<IssuedToken, TokenUnavailable>> + Send {
        self.asked.lock().expect("lock").push(request.clone());
        let target = request.proof_for.clone();
        let engine = self.engine.clone();
        let server = self.server.clone();
        let wanted = engine::TokenRequest {
            min_ttl: Duration::from_secs(30),
            force_refresh: request.force_refresh,
            extra_scopes: request.extra_scopes.clone(),
            requester: None,
        };
        async move {
            let token = engine
                .token_with(&server, wanted)
                .await
                .map_err(|e| TokenUnavailable::new(e.to_string()))?;
            // A bound token goes with a proof of the engine's key, as the agent's broker signs it.
            let dpop_proof = match (&token.dpop_jkt, target) {
                (Some(_), Some(target)) => Some(
                    engine::grant::sign_proof(
                        &engine.dpop_key(),
                        &target.method,
                        &target.url,
                        engine.unix_now(),
                        Some(token.access_token.clone()),
                        target.nonce,
                    )
                    .await
                    .map_err(|e| TokenUnavailable::new(e.to_string()))?,
                ),
                _ => None,
            };
            Ok(IssuedToken {
                access_token: token.access_token,
                dpop_proof,
            })
        }
    }
}

/// The client's end of the bridge.
struct StdioClient {
    input: DuplexStream,
    output: Lines<BufReader<DuplexStream>>,
    bridge: JoinHandle<Result<(), bridge::BridgeError>>,
}

impl StdioClient {
    fn start(url: &str, tokens: EngineTokens) -> Self {
        Self::start_with(url, tokens, |_| {})
    }

    fn start_with(url: &str, tokens: EngineTokens, tweak: impl FnOnce(&mut BridgeConfig)) -> Self {
        let (input, bridge_in) = tokio::io::duplex(64 * 1024);
        let (bridge_out, output) = tokio::io::duplex(64 * 1024);
        let mut config = BridgeConfig::new(url::Url::parse(url).expect("url"));
        config.http.request_timeout = Duration::from_secs(10);
        tweak(&mut config);
        let bridge = tokio::spawn(bridge::run(config, tokens, bridge_in, bridge_out));
        Self {
            input,
            output: BufReader::new(output).lines(),
            bridge,
        }
    }

    async fn send(&mut self, message: &Value) {
        let mut line = message.to_string();
        line.push('\n');
        self.input
            .write_all(line.as_bytes())
            .await
            .expect("write to bridge");
    }

    async fn recv(&mut self) -> Value {
        let line = tokio::time::timeout(WAIT, self.output.next_line())
            .await
            .expect("no message from the bridge in time")
            .expect("read from bridge")
            .expect("bridge closed its output");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    /// Sends request `id` and returns its response plus every message that arrived before it.
    async fn request(&mut self, id: i64, method: &str, params: Value) -> (Value, Vec<Value>) {
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await;
        let mut before = Vec::new();
        loop {
            let message = self.recv().await;
            if message.get("id") == Some(&json!(id)) && message.get("method").is_none() {
                return (message, before);
            }
            before.push(message);
        }
    }

    async fn handshake(&mut self) -> Value {
        let (init, _) = self
            .request(
                0,
                "initialize",
                json!({"protocolVersion": "2025-11-25",
                       "capabilities": {"roots": {"listChanged": true}},
                       "clientInfo": {"name": "proxy-test", "version": "1"}}),
            )
            .await;
        self.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        init
    }

    async fn call_tool(&mut self, id: i64, name: &str, arguments: Value) -> (Value, Vec<Value>) {
        self.request(
            id,
            "tools/call",
            json!({"name": name, "arguments": arguments}),
        )
        .await
    }

    /// Closes stdin and waits for the bridge to finish (it ends the session first).
    async fn close(self) {
        drop(self.input);
        tokio::time::timeout(WAIT, self.bridge)
            .await
            .expect("bridge did not stop after stdin closed")
            .expect("bridge task")
            .expect("bridge result");
    }
}

fn text_of(response: &Value) -> String {
    response["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no tool text in {response}"))
        .to_owned()
}

fn exp_of(whoami: &str) -> u64 {
    whoami
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("exp="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no exp in {whoami}"))
}

struct World {
    tb: Testbed,
    lanyard: Lanyard,
    tokens: EngineTokens,
}

async fn world(config: TestbedConfig, policy_edit: impl FnOnce(&mut Value)) -> World {
    let tb = testbed(config).await;
    let mut policy = policy_json(&tb);
    policy_edit(&mut policy);
    let lanyard = start_engine(&tb, &policy, Options::default());
    lanyard.sign_in().await;
    lanyard.wait_granted("docs").await;
    let tokens = EngineTokens {
        engine: lanyard.engine.clone(),
        server: "docs".into(),
        asked: Arc::default(),
    };
    World {
        tb,
        lanyard,
        tokens,
    }
}

fn docs_world(mcp: McpConfig) -> TestbedConfig {
    TestbedConfig {
        mcp_servers: vec![mcp],
        ..TestbedConfig::default()
    }
}

async fn round_trip(streaming: bool) {
    let mcp = McpConfig::default();
    let mcp = if streaming { mcp.streaming() } else { mcp };
    let w = world(docs_world(mcp), |_| {}).await;
    let docs = w.tb.mcp_server("docs").expect("docs").clone();
    let mut client = StdioClient::start(docs.url(), w.tokens.clone());

    let init = client.handshake().await;
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25", "{init}");
    assert_eq!(
        init["result"]["serverInfo"]["name"], "lanyard-testbed-docs",
        "{init}"
    );

    let (list, _) = client.request(1, "tools/list", json!({})).await;
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["whoami", "echo"]);

    let (echo, before) = client
        .request(
            2,
            "tools/call",
            json!({"name": "echo", "arguments": {"text": "héllo\nworld"}, "_meta": {"progressToken": "p-1"}}),
        )
        .await;
    assert_eq!(text_of(&echo), "héllo\nworld");
    if streaming {
        // Streamed message by message, in the server's order, before the result.
        let methods: Vec<&str> = before.iter().filter_map(|m| m["method"].as_str()).collect();
        assert_eq!(
            methods,
            ["notifications/progress", "notifications/message"],
            "{before:?}"
        );
        assert_eq!(before[0]["params"]["progressToken"], "p-1");
    } else {
        assert!(before.is_empty(), "{before:?}");
    }

    // An unknown tool: the server's JSON-RPC error reaches the client untouched.
    let (unknown, _) = client.call_tool(3, "nope", json!({})).await;
    assert_eq!(unknown["error"]["code"], -32602, "{unknown}");

    // What the server saw: the declaration added to initialize (the client's own capabilities
    // kept), then the session id and negotiated version on every later message.
    let received = docs.received();
    let initialize = &received[0];
    assert_eq!(initialize.message["method"], "initialize");
    let capabilities = &initialize.message["params"]["capabilities"];
    assert_eq!(capabilities["extensions"][EMA], json!({}), "{capabilities}");
    assert_eq!(capabilities["roots"], json!({"listChanged": true}));
    assert_eq!(initialize.session_id, None);
    assert!(received.len() >= 5, "{received:?}");
    for later in &received[1..] {
        assert!(later.session_id.is_some(), "{later:?}");
        assert_eq!(later.protocol_version.as_deref(), Some("2025-11-25"));
        assert!(later.message["params"]["capabilities"].is_null());
    }
    assert_eq!(
        received[1].message,
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"})
    );

    client.close().await;
    assert_eq!(docs.stats().sessions_deleted, 1, "DELETE on stdin EOF");
    assert!(
        w.tokens
            .asked
            .lock()
            .expect("lock")
            .iter()
            .all(|r| !r.force_refresh && r.extra_scopes.is_empty()),
        "no retries were needed"
    );
    drop(w.lanyard);
}

#[tokio::test]
async fn json_replies_session_and_declaration() {
    round_trip(false).await;
}

#[tokio::test]
async fn sse_replies_stream_message_by_message() {
    round_trip(true).await;
}

#[tokio::test]
async fn get_stream_carries_server_requests_and_the_client_answers() {
    let w = world(docs_world(McpConfig::default().streaming()), |_| {}).await;
    let docs = w.tb.mcp_server("docs").expect("docs").clone();
    let mut client = StdioClient::start(docs.url(), w.tokens.clone());
    client.handshake().await;
    // The bridge opens the GET stream after notifications/initialized.
    let opened = tokio::time::timeout(WAIT, async {
        while docs.open_streams() == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(opened.is_ok(), "the bridge never opened the GET stream");
    assert_eq!(docs.stats().get_streams, 1);

    let ping = json!({"jsonrpc": "2.0", "id": "srv-1", "method": "ping"});
    assert_eq!(docs.push(ping.clone()), 1);
    assert_eq!(client.recv().await, ping);
    let changed = json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"});
    docs.push(changed.clone());
    assert_eq!(client.recv().await, changed);

    // The client's answer to the server's request goes back by POST, in the session.
    let answer = json!({"jsonrpc": "2.0", "id": "srv-1", "result": {}});
    client.send(&answer).await;
    let (echo, _) = client.call_tool(5, "echo", json!({"text": "after"})).await;
    assert_eq!(text_of(&echo), "after");
    let received = docs.received();
    let answered = received
        .iter()
        .find(|r| r.message == answer)
        .expect("the server received the client's answer");
    assert!(answered.session_id.is_some());

    client.close().await;
    assert_eq!(docs.stats().sessions_deleted, 1);
}

#[tokio::test]
async fn a_token_expiring_mid_session_is_replaced_without_the_client_noticing() {
    let w = world(docs_world(McpConfig::default().streaming()), |_| {}).await;
    let docs = w.tb.mcp_server("docs").expect("docs").clone();
    let docs_as = w.tb.auth_server("docs").expect("docs AS").clone();
    let mut client = StdioClient::start(docs.url(), w.tokens.clone());
    client.handshake().await;
    let (first, _) = client.call_tool(1, "whoami", json!({})).await;
    let first_exp = exp_of(&text_of(&first));
    let minted_before = docs_as.stats();
    let refused_before = docs.stats().unauthorized;

    // The server's world moves past the token's expiry; the engine's clock moves only past the
    // "just minted" window, so it still holds the old token and hands it out: the server must
    // refuse it and the bridge must ask for a fresh one.
    let lifetime = first_exp.saturating_sub(testbed_now(&w.tb));
    w.tb.clock().advance(Duration::from_secs(lifetime + 5));
    w.lanyard.clock.advance(Duration::from_secs(3));

    let (second, _) = client.call_tool(2, "whoami", json!({})).await;
    let second_text = text_of(&second);
    assert!(second_text.contains("sub=alice"), "{second_text}");
    assert!(exp_of(&second_text) > first_exp, "a new token was used");
    assert_eq!(
        docs.stats().unauthorized,
        refused_before + 1,
        "one 401, then success"
    );
    assert_eq!(
        docs_as.stats().jwt_bearer_mints,
        minted_before.jwt_bearer_mints + 1,
        "exactly one new token minted"
    );
    let asked = w.tokens.asked.lock().expect("lock").clone();
    assert_eq!(
        asked.iter().filter(|r| r.force_refresh).count(),
        1,
        "{asked:?}"
    );
    client.close().await;
}

#[tokio::test]
async fn insufficient_scope_remints_once_with_the_union_of_scopes() {
    // The server needs docs.write too; the policy grants only docs.read.
    let mcp = McpConfig::new("docs", "docs", &["docs.read", "docs.write"]);
    let w = world(docs_world(mcp), |policy| {
        server_entry(policy, "docs")["scopes"] = json!(["docs.read"]);
    })
    .await;
    let docs = w.tb.mcp_server("docs").expect("docs").clone();
    let mut client = StdioClient::start(docs.url(), w.tokens.clone());
    let init = client.handshake().await;
    assert!(init.get("result").is_some(), "{init}");
    let (who, _) = client.call_tool(1, "whoami", json!({})).await;
    let text = text_of(&who);
    assert!(
        text.contains("docs.read") && text.contains("docs.write"),
        "{text}"
    );
    assert_eq!(docs.stats().insufficient_scope, 1, "one 403, then success");
    let asked = w.tokens.asked.lock().expect("lock").clone();
    let widened: Vec<&TokenRequest> = asked
        .iter()
        .filter(|r| r.extra_scopes.contains(&"docs.write".to_owned()))
        .collect();
    assert!(!widened.is_empty(), "{asked:?}");
    assert!(widened[0].force_refresh);
    client.close().await;
}

/// The step-up's retry limit: a server that still answers 403 `insufficient_scope` after the
/// one re-mint with the union of scopes (its authorization server never grants the scope) gets
/// no third try for that request: every HTTP request the bridge sends is tried twice (the first
/// 403, then one forced token for the wider scopes), the client hears of the refusal, and the
/// bridge does not keep going by itself.
#[tokio::test]
async fn a_server_that_keeps_asking_for_scopes_gets_one_step_up_per_request() {
    // The authorization server grants docs.read and docs.write only; the server wants docs.admin.
    let mcp = McpConfig::new("docs", "docs", &["docs.read", "docs.admin"]);
    let w = world(docs_world(mcp), |policy| {
        server_entry(policy, "docs")["scopes"] = json!(["docs.read"]);
        server_entry(policy, "docs")["allowed_extra_scopes"] = json!(["docs.admin"]);
    })
    .await;
    let docs = w.tb.mcp_server("docs").expect("docs").clone();
    let mut client = StdioClient::start(docs.url(), w.tokens.clone());
    let (who, _) = client.call_tool(1, "whoami", json!({})).await;
    assert!(who.get("error").is_some(), "refused in the end: {who}");
    let (again, _) = client.call_tool(2, "whoami", json!({})).await;
    assert!(again.get("error").is_some(), "{again}");
    let settled = docs.stats().insufficient_scope;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = docs.stats();
    assert_eq!(stats.insufficient_scope, settled, "the bridge kept trying");
    assert_eq!(stats.tool_calls, 0);
    let forced = w
        .tokens
        .asked
        .lock()
        .expect("lock")
        .iter()
        .filter(|r| r.force_refresh && r.extra_scopes.contains(&"docs.admin".to_owned()))
        .count() as u64;
    assert!(forced >= 2, "one step-up per tools/call at least: {forced}");
    assert_eq!(
        stats.insufficient_scope,
        2 * forced,
        "each request: the first 403 and one step-up, no more"
    );
    client.close().await;
}

#[tokio::test]
async fn when_no_token_can_be_had_every_request_gets_an_error_and_the_bridge_keeps_going() {
    let tb = testbed(docs_world(McpConfig::default())).await;
    // Never signed in.
    let lanyard = start_engine(&tb, &policy_json(&tb), Options::default());
    let docs = tb.mcp_server("docs").expect("docs").clone();
    let tokens = EngineTokens {
        engine: lanyard.engine.clone(),
        server: "docs".into(),
        asked: Arc::default(),
    };
    let mut client = StdioClient::start(docs.url(), tokens);
    let (init, _) = client
        .request(7, "initialize", json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}))
        .await;
    assert_eq!(init["error"]["code"], bridge::UPSTREAM_ERROR_CODE, "{init}");
    let message = init["error"]["message"].as_str().expect("message");
    assert!(message.contains("sign in"), "{message}");
    assert_eq!(init["error"]["data"]["lanyard"], "token_unavailable");

    // Garbage gets a JSON-RPC error and does not stop the bridge.
    client.input.write_all(b"{not json\n").await.expect("write");
    let parse_error = client.recv().await;
    assert_eq!(parse_error["error"]["code"], -32700, "{parse_error}");
    assert!(parse_error["id"].is_null());

    // Signing in later makes the next request work, no restart.
    lanyard.sign_in().await;
    lanyard.wait_granted("docs").await;
    let init = client.handshake().await;
    assert!(init.get("result").is_some(), "{init}");
    let (who, _) = client.call_tool(1, "whoami", json!({})).await;
    assert!(text_of(&who).contains("sub=alice"));
    client.close().await;
    assert_eq!(docs.stats().requests, 3, "initialize, initialized, whoami");
}

#[tokio::test]
async fn a_2026_client_gets_the_declaration_in_meta_on_every_request() {
    let w = world(docs_world(McpConfig::default()), |_| {}).await;
    let docs = w.tb.mcp_server("docs").expect("docs").clone();
    let mut client = StdioClient::start(docs.url(), w.tokens.clone());
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {"sampling": {}},
    });
    let (discover, _) = client
        .request(1, "server/discover", json!({"_meta": meta}))
        .await;
    assert_eq!(
        discover["result"]["capabilities"]["extensions"][EMA],
        json!({}),
        "{discover}"
    );
    let (echo, _) = client
        .request(
            2,
            "tools/call",
            json!({"name": "echo", "arguments": {"text": "x"}, "_meta": meta}),
        )
        .await;
    assert_eq!(text_of(&echo), "x");
    let received = docs.received();
    assert_eq!(received.len(), 2, "{received:?}");
    for r in &received {
        let caps = &r.message["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"];
        assert_eq!(caps["extensions"][EMA], json!({}), "{}", r.message);
        assert_eq!(
            caps["sampling"],
            json!({}),
            "the client's own capabilities are kept"
        );
        assert_eq!(r.protocol_version.as_deref(), Some("2026-07-28"));
        assert_eq!(r.session_id, None);
    }
    assert_eq!(
        received[1].message["params"]["arguments"],
        json!({"text": "x"})
    );
    client.close().await;
    assert_eq!(docs.stats().sessions_deleted, 0, "no session, no DELETE");
}

/// A hostile server's GET stream cannot make the bridge buffer without end: an event larger than
/// the message cap is dropped with its stream (never delivered), the bridge opens the stream
/// again, and the next message of a sane size arrives.
#[tokio::test]
async fn an_oversized_event_on_the_get_stream_is_dropped_not_buffered() {
    let w = world(docs_world(McpConfig::default().streaming()), |_| {}).await;
    let docs = w.tb.mcp_server("docs").expect("docs").clone();
    let mut client = StdioClient::start_with(docs.url(), w.tokens.clone(), |c| {
        c.max_message_bytes = 64 * 1024;
    });
    client.handshake().await;
    let wait_streams = |n: u64| {
        let docs = docs.clone();
        async move {
            tokio::time::timeout(WAIT, async {
                while docs.stats().get_streams < n || docs.open_streams() == 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await
            .is_ok()
        }
    };
    assert!(
        wait_streams(1).await,
        "the bridge never opened the GET stream"
    );
    let huge = json!({"jsonrpc": "2.0", "method": "notifications/message",
                      "params": {"data": "x".repeat(256 * 1024)}});
    assert_eq!(docs.push(huge), 1);
    assert!(
        wait_streams(2).await,
        "the bridge did not open the stream again"
    );
    let small = json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"});
    docs.push(small.clone());
    assert_eq!(
        client.recv().await,
        small,
        "the huge event was never delivered"
    );
    client.close().await;
}
