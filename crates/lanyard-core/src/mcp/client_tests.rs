//! The MCP client's tests: real HTTP servers on 127.0.0.1.

use super::*;

#[test]
fn picks_the_response_with_our_id() {
    let notification = json!({"jsonrpc":"2.0","method":"notifications/progress","params":{}});
    let server_request = json!({"jsonrpc":"2.0","id":3,"method":"ping"});
    let other = json!({"jsonrpc":"2.0","id":2,"result":{"x":1}});
    let ours = json!({"jsonrpc":"2.0","id":3,"result":{"tools":[]}});
    assert_eq!(find_response(&notification, 3), None);
    assert_eq!(find_response(&server_request, 3), None);
    assert_eq!(find_response(&other, 3), None);
    assert_eq!(find_response(&ours, 3), Some(Ok(json!({"tools":[]}))));
    assert_eq!(
        find_response(&json!([other, ours]), 3),
        Some(Ok(json!({"tools":[]})))
    );
    assert_eq!(
        find_response(&json!({"jsonrpc":"2.0","id":"3","result":1}), 3),
        Some(Ok(json!(1)))
    );
    let error = json!({"jsonrpc":"2.0","id":3,"error":{"code":-32601,"message":"nope"}});
    assert_eq!(
        find_response(&error, 3),
        Some(Err(RpcErrorObject {
            code: -32601,
            message: "nope".into(),
            data: None
        }))
    );
}

#[test]
fn initialize_declares_the_extensions() {
    let params = initialize_params(
        &[AuthExtension::EnterpriseManagedAuthorization],
        "lanyard",
        "1",
    );
    assert_eq!(params["protocolVersion"], PROTOCOL_VERSION);
    assert_eq!(
        params["capabilities"]["extensions"],
        json!({"io.modelcontextprotocol/enterprise-managed-authorization": {}})
    );
    let plain = initialize_params(&[], "lanyard", "1");
    assert_eq!(plain["capabilities"], json!({}));
}

#[test]
fn insufficient_scope_names_the_scopes() {
    let err = McpError::Unauthorized {
        url: "http://m/mcp".into(),
        status: 403,
        challenge: parse_bearer_challenge(r#"Bearer error="insufficient_scope", scope="a b""#),
    };
    assert_eq!(
        err.insufficient_scope(),
        Some(vec!["a".to_owned(), "b".to_owned()])
    );
    assert!(!err.needs_new_token());
    assert_eq!(
        err.to_string(),
        "http://m/mcp refused the access token (HTTP 403): insufficient_scope; required scope: a b"
    );
}

/// A one-request-per-connection HTTP server that answers with `responses` in order and hands
/// back each request (head and body) it saw.
async fn mock_server(responses: Vec<String>) -> (Url, tokio::task::JoinHandle<Vec<String>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = Url::parse(&format!(
        "http://{}/mcp",
        listener.local_addr().expect("addr")
    ))
    .expect("url");
    let handle = tokio::spawn(async move {
        let mut seen = Vec::new();
        for response in responses {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = stream.read(&mut buf).await.expect("read");
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().to_owned())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length || n == 0 {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            seen.push(String::from_utf8_lossy(&request).to_string());
            // The client may hang up early (the size cap test): not an error here.
            stream.write_all(response.as_bytes()).await.ok();
            stream.shutdown().await.ok();
        }
        seen
    });
    (url, handle)
}

fn executor() -> HttpExecutor {
    HttpExecutor::new(&crate::oauth::http::HttpConfig::default()).expect("executor")
}

#[tokio::test]
async fn session_sse_and_headers_end_to_end() {
    let init = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nmcp-session-id: s-1\r\nconnection: close\r\n\r\n\
                event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{}}\n\n\
                event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"protocolVersion\":\"2025-06-18\",\"capabilities\":{}}}\n\n";
    let accepted = "HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    let list = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n\
                {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"tools\":[{\"name\":\"t\",\"inputSchema\":{\"type\":\"object\"}}]}}";
    let (url, server) = mock_server(vec![init.into(), accepted.into(), list.into()]).await;
    let mcp = McpClient::new(&executor(), url);
    let token = Secret::new("tok-123");
    let result = mcp
        .initialize(&[AuthExtension::ClientCredentials], &token)
        .await
        .expect("initialize");
    assert_eq!(result.protocol_version, "2025-06-18");
    assert_eq!(mcp.session_id().as_deref(), Some("s-1"));
    mcp.notify_initialized(&token).await.expect("initialized");
    let tools = mcp.list_tools(&token).await.expect("tools");
    assert_eq!(tools.len(), 1);
    assert_eq!(tools[0].name, "t");

    let seen = server.await.expect("server");
    let lower: Vec<String> = seen.iter().map(|r| r.to_ascii_lowercase()).collect();
    assert!(lower[0].contains("accept: application/json, text/event-stream"));
    assert!(lower[0].contains("content-type: application/json"));
    assert!(lower[0].contains("authorization: bearer tok-123"));
    assert!(lower[0].contains("io.modelcontextprotocol/oauth-client-credentials"));
    assert!(
        !lower[0].contains("mcp-protocol-version"),
        "initialize carries no version header"
    );
    assert!(!lower[0].contains("mcp-session-id"));
    for later in &lower[1..] {
        assert!(later.contains("mcp-session-id: s-1"), "{later}");
        assert!(
            later.contains("mcp-protocol-version: 2025-06-18"),
            "{later}"
        );
    }
}

#[tokio::test]
async fn unauthorized_returns_the_challenge_and_never_the_token() {
    let denied = "HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Bearer error=\"invalid_token\", \
                  resource_metadata=\"http://m/.well-known/oauth-protected-resource/mcp\"\r\n\
                  content-length: 0\r\nconnection: close\r\n\r\n";
    let (url, _server) = mock_server(vec![denied.into()]).await;
    let mcp = McpClient::new(&executor(), url);
    let err = mcp
        .list_tools(&Secret::new("tok-secret"))
        .await
        .expect_err("401");
    assert!(err.needs_new_token());
    let challenge = err.challenge().expect("challenge");
    assert_eq!(
        challenge.resource_metadata.as_deref(),
        Some("http://m/.well-known/oauth-protected-resource/mcp")
    );
    let text = format!("{err} {err:?}");
    assert!(!text.contains("tok-secret"), "{text}");
}

#[tokio::test]
async fn oversized_and_unanswered_responses_are_errors() {
    let big = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\nevent: message\ndata: {}\n\n",
        "x".repeat(4096)
    );
    let other_id =
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n\
                    event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":99,\"result\":{}}\n\n";
    let (url, _server) = mock_server(vec![big, other_id.into()]).await;
    let mcp = McpClient::new(&executor(), url).with_max_body_bytes(1024);
    let token = Secret::new("t");
    let err = mcp
        .request("tools/list", json!({}), &token)
        .await
        .expect_err("too large");
    assert!(
        matches!(
            err,
            McpError::Wire(WireError::BodyTooLarge { limit: 1024, .. })
        ),
        "{err:?}"
    );
    let err = mcp
        .request("tools/list", json!({}), &token)
        .await
        .expect_err("no response");
    assert!(matches!(err, McpError::NoResponse { .. }), "{err:?}");
}

#[test]
fn media_type_drops_parameters() {
    assert_eq!(
        media_type("Text/Event-Stream; charset=utf-8"),
        "text/event-stream"
    );
}
