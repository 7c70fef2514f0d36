//! The conformance suite's scenarios of the standard MCP authorization (authorization code + PKCE
//! for servers without Enterprise-Managed Authorization): discovery, client identity, scopes,
//! token endpoint authentication, `resource`, `offline_access`, authorization-server migration
//! and RFC 9207 `iss`. Every decision is [`lanyard_core::oauth::code_flow`]'s, the code the
//! agent's `oauth` mode runs; the suite's authorization server approves without a person, so its
//! redirect is read from the `Location` header instead of a browser reaching the loopback
//! listener. The MCP requests go through the real bridge of `lanyard proxy`, whose 401 and 403
//! `insufficient_scope` retries ask this token source again.
//!
//! The client identity this client is configured with plays the policy's part: the suite's
//! pre-registered credentials when it hands some over, its Client ID Metadata Document URL, and
//! dynamic registration allowed.

use anyhow::Context as _;
use lanyard_core::mcp::bridge::{IssuedToken, TokenRequest, TokenSource, TokenUnavailable};
use lanyard_core::oauth::code_flow::{self, ClientIdentityPolicy, PrepareInputs, Prepared};
use lanyard_core::oauth::discovery::DiscoveredUrls;
use lanyard_core::oauth::{AssertionInputs, Client, HttpConfig, HttpExecutor, HttpRequest};
use lanyard_core::secret::Secret;
use lanyard_core::signin::random_id;
use serde_json::Value;
use tokio::sync::Mutex;
use url::Url;

/// The scenarios this module runs.
pub const SCENARIOS: [&str; 25] = [
    "auth/metadata-default",
    "auth/metadata-var1",
    "auth/metadata-var2",
    "auth/metadata-var3",
    "auth/basic-cimd",
    "auth/pre-registration",
    "auth/scope-from-www-authenticate",
    "auth/scope-from-scopes-supported",
    "auth/scope-omitted-when-undefined",
    "auth/scope-step-up",
    "auth/scope-retry-limit",
    "auth/token-endpoint-auth-basic",
    "auth/token-endpoint-auth-post",
    "auth/token-endpoint-auth-none",
    "auth/resource-mismatch",
    "auth/offline-access-scope",
    "auth/offline-access-not-supported",
    "auth/authorization-server-migration",
    "auth/iss-supported",
    "auth/iss-not-advertised",
    "auth/iss-supported-missing",
    "auth/iss-wrong-issuer",
    "auth/iss-unexpected",
    "auth/iss-normalized",
    "auth/metadata-issuer-mismatch",
];

/// The suite's Client ID Metadata Document URL (the document a company would host).
const METADATA_DOCUMENT_URL: &str = "https://conformance-test.local/client-metadata.json";

/// Never listened on: the redirect is read, not followed (RFC 8252 loopback form).
const REDIRECT_URI: &str = "http://127.0.0.1/callback";

/// Authorizations after the first one (step-up, a moved authorization server) before giving up:
/// a server that keeps asking is not answered forever.
const MAX_REAUTHORIZATIONS: u32 = 2;

fn say(message: impl AsRef<str>) {
    eprintln!("lanyard conformance-client: {}", message.as_ref());
}

fn now() -> u64 {
    lanyard_core::clock::unix_seconds(std::time::SystemTime::now())
}

pub async fn run(scenario: &str, server: &Url, context: &Value) -> anyhow::Result<()> {
    let http = HttpExecutor::new(&HttpConfig::default()).context("starting the HTTP client")?;
    let identity = ClientIdentityPolicy {
        client_id: context["client_id"].as_str().map(str::to_owned),
        client_secret: context["client_secret"].as_str().map(Secret::new),
        metadata_document_url: Some(METADATA_DOCUMENT_URL.to_owned()),
        allow_dynamic_registration: true,
    };
    let source = CodeFlowTokens {
        http,
        server: server.clone(),
        identity,
        held: Mutex::new(Held::default()),
    };
    // Authorize before the MCP session, as the agent does at `lanyard connect`: a refusal (a
    // wrong issuer, a forged redirect) ends the run here, with nothing sent to the server.
    source
        .authorize(&mut *source.held.lock().await, &[])
        .await
        .map_err(|e| anyhow::anyhow!(e.to_string()))?;
    // The suite's servers of 2026-07-28 are stateless: no initialize, `_meta` on every request
    // (the bridge's `request-metadata` script); the others speak 2025-11-25.
    let script = match std::env::var("MCP_CONFORMANCE_PROTOCOL_VERSION").as_deref() {
        Ok("2026-07-28") => "request-metadata",
        _ => scenario,
    };
    crate::conformance_bridge::run_with(script, server, &Value::Null, source).await
}

#[derive(Default)]
struct Held {
    access_token: Option<Secret>,
    refresh_token: Option<Secret>,
    prepared: Option<Prepared>,
    /// The client registered at an issuer, reused only there.
    registered: Option<(String, Client)>,
    extra_scopes: Vec<String>,
    reauthorizations: u32,
}

struct CodeFlowTokens {
    http: HttpExecutor,
    server: Url,
    identity: ClientIdentityPolicy,
    held: Mutex<Held>,
}

impl CodeFlowTokens {
    /// Discovery, the client identity, the authorization request and its redirect, the code
    /// exchange.
    async fn authorize(&self, held: &mut Held, extra: &[String]) -> Result<(), TokenUnavailable> {
        let fail = |e: &dyn std::fmt::Display| TokenUnavailable::new(e.to_string());
        let registered = held.registered.as_ref().map(|(i, c)| (i.as_str(), c));
        let prepared = code_flow::prepare(
            &self.http,
            &PrepareInputs {
                server_url: &self.server,
                urls: DiscoveredUrls::like(&self.server),
                identity: &self.identity,
                redirect_uri: REDIRECT_URI,
                policy_scopes: &[],
                extra_scopes: extra,
                registered,
                accepted_issuers: &[],
            },
        )
        .await
        .map_err(|e| fail(&e))?;
        say(format!(
            "authorization server {} as client {}, scopes {:?}",
            prepared.issuer(),
            prepared.client.client_id,
            prepared.scopes
        ));
        let state = random_id();
        let verifier = Secret::new(random_id() + &random_id());
        let url = prepared
            .authorization_url(&state, &verifier)
            .map_err(|e| fail(&e))?;
        // The executor follows no redirects: the answer is the redirect itself.
        let answer = self
            .http
            .execute(&HttpRequest::get(url))
            .await
            .map_err(|e| fail(&e))?;
        let location = answer
            .header_values("location")
            .next()
            .ok_or_else(|| TokenUnavailable::new("the authorization endpoint did not redirect"))?;
        let redirect = Url::parse(location).map_err(|e| fail(&e))?;
        let pairs: Vec<(String, String)> = redirect.query_pairs().into_owned().collect();
        let code = code_flow::read_redirect(
            pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            &state,
            &prepared.discovered.authorization_server,
        )
        .map_err(|e| {
            say(format!("redirect refused: {e}"));
            fail(&e)
        })?;
        let tokens = code_flow::redeem(
            &self.http,
            &prepared,
            &code,
            &verifier,
            AssertionInputs {
                audience: prepared.issuer().to_owned(),
                now: now(),
                jti: random_id(),
            },
        )
        .await
        .map_err(|e| fail(&e))?;
        say(format!(
            "access token obtained{}",
            if tokens.refresh_token.is_some() {
                " with a refresh token"
            } else {
                ""
            }
        ));
        held.registered = Some((prepared.issuer().to_owned(), prepared.client.clone()));
        held.access_token = Some(tokens.access_token);
        held.refresh_token = tokens.refresh_token;
        held.prepared = Some(prepared);
        Ok(())
    }

    /// A refused token: look again where the server's authorization server is; the same one is
    /// asked with the refresh token when there is one, a moved one from the start.
    async fn renew(&self, held: &mut Held) -> Result<(), TokenUnavailable> {
        let issuer = held.prepared.as_ref().map(|p| p.issuer().to_owned());
        if let (Some(prepared), Some(refresh_token)) = (&held.prepared, &held.refresh_token) {
            let still_there =
                lanyard_core::oauth::discovery::discover_server(&self.http, &self.server)
                    .await
                    .is_ok_and(|d| Some(&d.authorization_server.issuer) == issuer.as_ref());
            if still_there {
                match code_flow::refresh(
                    &self.http,
                    &prepared.token_endpoint(),
                    &prepared.client,
                    refresh_token,
                    &prepared.discovered.resource,
                    AssertionInputs {
                        audience: prepared.issuer().to_owned(),
                        now: now(),
                        jti: random_id(),
                    },
                )
                .await
                {
                    Ok(tokens) => {
                        say("refreshed");
                        held.access_token = Some(tokens.access_token);
                        if let Some(rotated) = tokens.refresh_token {
                            held.refresh_token = Some(rotated);
                        }
                        return Ok(());
                    }
                    Err(e) => say(format!("the refresh was refused ({e}); authorizing again")),
                }
            }
        }
        self.reauthorize(held).await
    }

    async fn reauthorize(&self, held: &mut Held) -> Result<(), TokenUnavailable> {
        if held.reauthorizations >= MAX_REAUTHORIZATIONS {
            return Err(TokenUnavailable::new(format!(
                "the server refused {} fresh authorizations in a row; not asking again",
                held.reauthorizations
            )));
        }
        held.reauthorizations += 1;
        let extra = held.extra_scopes.clone();
        self.authorize(held, &extra).await
    }
}

impl TokenSource for CodeFlowTokens {
    async fn token(&self, request: &TokenRequest) -> Result<IssuedToken, TokenUnavailable> {
        let mut held = self.held.lock().await;
        let new_scopes: Vec<String> = request
            .extra_scopes
            .iter()
            .filter(|s| !held.extra_scopes.contains(s))
            .cloned()
            .collect();
        if !new_scopes.is_empty() {
            say(format!("step-up: the server asks for {new_scopes:?}"));
            held.extra_scopes.extend(new_scopes);
            self.reauthorize(&mut held).await?;
        } else if request.force_refresh || held.access_token.is_none() {
            self.renew(&mut held).await?;
        }
        held.access_token
            .clone()
            .map(IssuedToken::bearer)
            .ok_or_else(|| TokenUnavailable::new("no access token"))
    }
}
