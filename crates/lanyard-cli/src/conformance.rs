//! `lanyard conformance-client <server-url>`: the client the official MCP conformance suite launches
//! for its three authorization scenarios (`auth/client-credentials-basic`,
//! `auth/client-credentials-jwt`, and the EMA flow: `auth/enterprise-managed-authorization` since
//! 0.2.0, `auth/cross-app-access-complete-flow` in 0.1.x, the same flow under its older name).
//!
//! The suite passes the scenario name in `MCP_CONFORMANCE_SCENARIO` and the credentials in
//! `MCP_CONFORMANCE_CONTEXT` (JSON). Everything on the wire goes through lanyard-core: discovery
//! (unauthenticated probe, protected resource metadata, authorization server metadata with the
//! issuer check), the token requests, and the MCP calls (`initialize`, `notifications/initialized`,
//! `tools/list`, `tools/call test-tool`). This binary is a host, so it reads the system clock and
//! draws the `jti`s itself. Progress goes to stderr; no token, secret or key is ever printed.

use std::time::SystemTime;

use anyhow::{bail, Context as _};
use lanyard_core::clock::unix_seconds;
use lanyard_core::mcp::{AuthExtension, McpClient};
use lanyard_core::oauth::discovery::{discover_server, fetch_authorization_server_metadata};
use lanyard_core::oauth::token::{
    client_credentials, jwt_bearer, parse_id_jag_response, parse_token_response,
    token_exchange_for_id_jag, IdJagExchange, TOKEN_TYPE_ID_TOKEN,
};
use lanyard_core::oauth::{
    AssertionInputs, Client, ClientAuth, HttpConfig, HttpExecutor, KeyAlgorithm, SigningKey,
    TokenEndpoint,
};
use lanyard_core::secret::Secret;
use serde::Deserialize;
use serde_json::Value;
use url::Url;

const SCENARIO_BASIC: &str = "auth/client-credentials-basic";
const SCENARIO_JWT: &str = "auth/client-credentials-jwt";
const SCENARIO_CROSS_APP: &str = "auth/cross-app-access-complete-flow";
const SCENARIO_EMA: &str = "auth/enterprise-managed-authorization";
const SCENARIO_WIF: &str = "auth/wif-jwt-bearer";

/// `MCP_CONFORMANCE_CONTEXT`: which fields are present depends on the scenario. Secrets stay in
/// [`Secret`], so even a `Debug` print of this is harmless.
#[derive(Debug, Default, Deserialize)]
struct Context {
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    client_secret: Option<Secret>,
    #[serde(default)]
    private_key_pem: Option<Secret>,
    #[serde(default)]
    signing_algorithm: Option<String>,
    #[serde(default)]
    idp_client_id: Option<String>,
    #[serde(default)]
    idp_id_token: Option<Secret>,
    #[serde(default)]
    idp_issuer: Option<String>,
    #[serde(default)]
    idp_token_endpoint: Option<String>,
    /// `auth/wif-jwt-bearer`: the workload's platform JWT (the suite also offers a wrong-audience
    /// and an expired one, to see that a client does not try them after a refusal).
    #[serde(default)]
    valid_jwt: Option<Secret>,
}

impl Context {
    fn client_id(&self) -> anyhow::Result<&str> {
        self.client_id
            .as_deref()
            .context("the conformance context has no client_id")
    }

    fn client_secret(&self) -> anyhow::Result<&Secret> {
        self.client_secret
            .as_ref()
            .context("the conformance context has no client_secret")
    }
}

fn say(message: impl AsRef<str>) {
    eprintln!("lanyard conformance-client: {}", message.as_ref());
}

/// Fresh `AssertionInputs` from the system clock and a random `jti`.
fn assertion_inputs(audience: &str) -> AssertionInputs {
    let jti: u128 = rand::random();
    AssertionInputs {
        audience: audience.to_owned(),
        now: unix_seconds(SystemTime::now()),
        jti: format!("{jti:032x}"),
    }
}

/// Which of this client's paths a scenario takes, beyond the token grants run here.
#[derive(Debug, Clone, Copy)]
enum Route {
    /// The transport scenarios: the real bridge of `lanyard proxy`.
    Bridge,
    /// The standard authorization (`mode: oauth`'s code flow).
    AuthorizationCode,
    /// DPoP-bound tokens.
    Dpop,
}

/// Runs the scenario named in `MCP_CONFORMANCE_SCENARIO` against the MCP server at `server_url`.
pub async fn run(server_url: &str) -> anyhow::Result<()> {
    let scenario =
        std::env::var("MCP_CONFORMANCE_SCENARIO").context("MCP_CONFORMANCE_SCENARIO is not set")?;
    let context: Context = match std::env::var("MCP_CONFORMANCE_CONTEXT") {
        // Never echo the JSON: it holds secrets. serde_json's message names only line and column.
        Ok(json) => serde_json::from_str(&json)
            .context("MCP_CONFORMANCE_CONTEXT is not the expected JSON")?,
        Err(_) => Context::default(),
    };
    // The scenarios run through the bridge, the authorization-code flow or DPoP take the
    // suite's context as plain JSON (their own fields), the server URL parsed.
    let route = if crate::conformance_bridge::SCENARIOS.contains(&scenario.as_str()) {
        Some(Route::Bridge)
    } else if crate::conformance_oauth::SCENARIOS.contains(&scenario.as_str()) {
        Some(Route::AuthorizationCode)
    } else if crate::conformance_dpop::SCENARIOS.contains(&scenario.as_str()) {
        Some(Route::Dpop)
    } else {
        None
    };
    if let Some(route) = route {
        let server =
            Url::parse(server_url).with_context(|| format!("{server_url:?} is not a URL"))?;
        let suite_context: Value = std::env::var("MCP_CONFORMANCE_CONTEXT")
            .ok()
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or(Value::Null);
        say(format!("scenario {scenario}, server {server}, {route:?}"));
        return match route {
            Route::Bridge => {
                crate::conformance_bridge::run(&scenario, &server, &suite_context).await
            }
            Route::AuthorizationCode => {
                crate::conformance_oauth::run(&scenario, &server, &suite_context).await
            }
            Route::Dpop => crate::conformance_dpop::run(&scenario, &server).await,
        };
    }
    if ![
        SCENARIO_BASIC,
        SCENARIO_JWT,
        SCENARIO_CROSS_APP,
        SCENARIO_EMA,
        SCENARIO_WIF,
    ]
    .contains(&scenario.as_str())
    {
        bail!(
            "unknown scenario {scenario:?} (expected {SCENARIO_BASIC}, {SCENARIO_JWT}, {SCENARIO_EMA} or {SCENARIO_CROSS_APP})"
        );
    }
    let server = Url::parse(server_url).with_context(|| format!("{server_url:?} is not a URL"))?;
    say(format!("scenario {scenario}, server {server}"));

    let http = HttpExecutor::new(&HttpConfig::default()).context("starting the HTTP client")?;
    let discovered = discover_server(&http, &server)
        .await
        .context("discovering the authorization server")?;
    let metadata = &discovered.authorization_server;
    say(format!(
        "resource {}, authorization server {}, token endpoint {}",
        discovered.resource, metadata.issuer, metadata.token_endpoint
    ));
    let endpoint = TokenEndpoint {
        url: metadata.token_endpoint.clone(),
        issuer: metadata.issuer.clone(),
    };
    let scopes = &discovered.challenge_scopes;

    let (token, extension) = match scenario.as_str() {
        SCENARIO_BASIC | SCENARIO_JWT => {
            let auth = if scenario == SCENARIO_BASIC {
                ClientAuth::SecretBasic(context.client_secret()?.clone())
            } else {
                let alg = match context.signing_algorithm.as_deref().unwrap_or("ES256") {
                    "ES256" => KeyAlgorithm::ES256,
                    "RS256" => KeyAlgorithm::RS256,
                    other => bail!("signing algorithm {other:?} is not supported (ES256, RS256)"),
                };
                let pem = context.private_key_pem.as_ref().context("the conformance context has no private_key_pem")?;
                ClientAuth::PrivateKeyJwt(SigningKey::from_pem(pem.expose().as_bytes(), alg, None)?)
            };
            let client = Client { client_id: context.client_id()?.to_owned(), auth };
            say(format!("client credentials grant, client authentication {}", client.auth.method_name()));
            let request =
                client_credentials(&endpoint, &client, &assertion_inputs(&endpoint.issuer), &discovered.resource, scopes)?;
            let response = http.execute(&request).await.context("client credentials request")?;
            let tokens = parse_token_response(&response).context("client credentials grant")?;
            (tokens.access_token, AuthExtension::ClientCredentials)
        }
        SCENARIO_WIF => {
            // The engine's workload-identity grant: the platform JWT as the jwt-bearer
            // assertion, the workload's client id in the body, nothing stored.
            let client = Client { client_id: context.client_id()?.to_owned(), auth: ClientAuth::None };
            let assertion = context.valid_jwt.as_ref().context("the conformance context has no valid_jwt")?;
            say(format!("jwt-bearer grant with the workload token at {}", endpoint.url));
            let request = jwt_bearer(
                &endpoint,
                &client,
                &assertion_inputs(&endpoint.issuer),
                assertion,
                &discovered.resource,
                scopes,
            )?;
            let response = http.execute(&request).await.context("jwt-bearer request")?;
            let tokens = parse_token_response(&response).context("workload jwt-bearer grant")?;
            (tokens.access_token, AuthExtension::WorkloadIdentity)
        }
        SCENARIO_CROSS_APP | SCENARIO_EMA => {
            let idp_issuer = context.idp_issuer.as_deref().context("the conformance context has no idp_issuer")?;
            let idp_token_url = match context.idp_token_endpoint.as_deref() {
                Some(url) => Url::parse(url).with_context(|| format!("idp_token_endpoint {url:?} is not a URL"))?,
                None => {
                    fetch_authorization_server_metadata(&http, idp_issuer)
                        .await
                        .context("discovering the IdP token endpoint")?
                        .token_endpoint
                }
            };
            let idp_endpoint = TokenEndpoint { url: idp_token_url, issuer: idp_issuer.to_owned() };
            let idp_client = Client {
                client_id: context.idp_client_id.clone().context("the conformance context has no idp_client_id")?,
                auth: ClientAuth::None,
            };
            let id_token = context.idp_id_token.as_ref().context("the conformance context has no idp_id_token")?;

            say(format!("token exchange for an ID-JAG at {}, audience {}", idp_endpoint.url, metadata.issuer));
            let request = token_exchange_for_id_jag(
                &idp_endpoint,
                &idp_client,
                &assertion_inputs(idp_issuer),
                &IdJagExchange {
                    subject_token: id_token,
                    subject_token_type: TOKEN_TYPE_ID_TOKEN,
                    audience: &metadata.issuer,
                    resource: &discovered.resource,
                    scopes,
                },
            )?;
            let response = http.execute(&request).await.context("token exchange request")?;
            let id_jag = parse_id_jag_response(&response).context("token exchange at the IdP")?;

            let client = Client {
                client_id: context.client_id()?.to_owned(),
                auth: ClientAuth::SecretBasic(context.client_secret()?.clone()),
            };
            say(format!("jwt-bearer grant at {}", endpoint.url));
            let request = jwt_bearer(
                &endpoint,
                &client,
                &assertion_inputs(&endpoint.issuer),
                &id_jag.access_token,
                &discovered.resource,
                scopes,
            )?;
            let response = http.execute(&request).await.context("jwt-bearer request")?;
            let tokens = parse_token_response(&response).context("jwt-bearer grant at the authorization server")?;
            (tokens.access_token, AuthExtension::EnterpriseManagedAuthorization)
        }
        other => bail!("unknown scenario {other:?} (expected {SCENARIO_BASIC}, {SCENARIO_JWT}, {SCENARIO_EMA}, {SCENARIO_WIF} or {SCENARIO_CROSS_APP})"),
    };
    say("access token obtained");

    exercise_server(&http, server, extension, &token).await
}

/// initialize → notifications/initialized → tools/list → tools/call `test-tool`.
async fn exercise_server(
    http: &HttpExecutor,
    server: Url,
    extension: AuthExtension,
    token: &Secret,
) -> anyhow::Result<()> {
    let mcp = McpClient::new(http, server);
    let init = mcp
        .initialize(&[extension], token)
        .await
        .context("MCP initialize")?;
    say(format!("initialized, protocol {}", init.protocol_version));
    mcp.notify_initialized(token)
        .await
        .context("MCP notifications/initialized")?;
    let tools = mcp.list_tools(token).await.context("MCP tools/list")?;
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
    say(format!("tools: {}", names.join(", ")));
    if !names.contains(&"test-tool") {
        bail!("the server lists no test-tool");
    }
    let result = mcp
        .call_tool("test-tool", serde_json::json!({}), token)
        .await
        .context("MCP tools/call test-tool")?;
    if result.is_error {
        bail!("test-tool reported an error");
    }
    say(format!(
        "test-tool answered with {} content item(s)",
        result.content.len()
    ));
    Ok(())
}
