//! The conformance suite's DPoP scenarios (`auth/dpop`, `auth/dpop-nonce`; SEP-1932, RFC 9449).
//! Their authorization server hands out tokens through the authorization-code flow with dynamic
//! registration, which Lanyard's agent does not run yet (the standard flow is a later issue), so
//! this client walks that part itself with lanyard-core's pieces: discovery, registration, a
//! PKCE authorization request whose redirect it reads without following, and the code exchange.
//! What the scenarios judge is Lanyard's own DPoP code: the device key and its proofs
//! ([`lanyard_core::oauth::dpop`]), the `use_dpop_nonce` retry at the token endpoint, and the
//! real bridge of `lanyard proxy` presenting the bound token with the `DPoP` scheme, a fresh proof
//! on every request and the MCP server's nonce.

use anyhow::{bail, Context as _};
use lanyard_core::engine::grant::sign_proof;
use lanyard_core::mcp::bridge::{IssuedToken, TokenRequest, TokenSource, TokenUnavailable};
use lanyard_core::oauth::discovery::discover_server;
use lanyard_core::oauth::dpop::{self, DpopKey, DpopUse, Nonces};
use lanyard_core::oauth::token::{
    authorization_code, parse_error, parse_token_response, pkce_s256_challenge,
};
use lanyard_core::oauth::{
    AssertionInputs, Client, ClientAuth, HttpConfig, HttpExecutor, HttpRequest, TokenEndpoint,
};
use lanyard_core::secret::Secret;
use lanyard_core::signin::random_id;
use serde_json::{json, Value};
use url::Url;

/// The scenarios this module runs.
pub const SCENARIOS: [&str; 2] = ["auth/dpop", "auth/dpop-nonce"];

/// Never listened on: the authorization server's redirect is read, not followed (RFC 8252
/// loopback form).
const REDIRECT_URI: &str = "http://127.0.0.1/callback";

fn say(message: impl AsRef<str>) {
    eprintln!("lanyard conformance-client: {}", message.as_ref());
}

fn now() -> u64 {
    lanyard_core::clock::unix_seconds(std::time::SystemTime::now())
}

pub async fn run(scenario: &str, server: &Url) -> anyhow::Result<()> {
    let http = HttpExecutor::new(&HttpConfig::default()).context("starting the HTTP client")?;
    let discovered = discover_server(&http, server)
        .await
        .context("discovering the authorization server")?;
    let metadata = &discovered.authorization_server;
    let key = DpopKey::generate().context("making a DPoP key")?;
    // The policy's `required`: a server that does not offer DPoP fails this scenario.
    DpopUse::Required
        .applies(&metadata.dpop_signing_alg_values_supported, key.algorithm())
        .map_err(anyhow::Error::msg)?;
    say(format!(
        "authorization server {} offers DPoP; device key jkt {}",
        metadata.issuer,
        key.thumbprint()
    ));

    let client_id = register(&http, metadata).await?;
    let verifier = Secret::new(random_id() + &random_id());
    let code = authorize(&http, &discovered, &client_id, &verifier).await?;

    let endpoint = TokenEndpoint {
        url: metadata.token_endpoint.clone(),
        issuer: metadata.issuer.clone(),
    };
    let client = Client {
        client_id,
        auth: ClientAuth::None,
    };
    let nonces = Nonces::default();
    let mut nonce_retried = false;
    let response = loop {
        let mut request = authorization_code(
            &endpoint,
            &client,
            &AssertionInputs {
                audience: endpoint.issuer.clone(),
                now: now(),
                jti: random_id(),
            },
            &code,
            REDIRECT_URI,
            &verifier,
        )?;
        request.field("resource", discovered.resource.clone());
        let nonce = nonces.for_url(&endpoint.url);
        let proof = sign_proof(&key, "POST", &endpoint.url, now(), None, nonce).await?;
        request.header(dpop::DPOP_HEADER, proof.expose());
        let response = http.execute(&request).await.context("token request")?;
        nonces.learn(&response);
        if response.status == 400 && dpop::asks_for_nonce(&parse_error(&response)) && !nonce_retried
        {
            say("the token endpoint wants a DPoP nonce: asking again with it");
            nonce_retried = true;
            continue;
        }
        break response;
    };
    let tokens = parse_token_response(&response).context("the code exchange")?;
    if !dpop::is_dpop_token_type(tokens.token_type.as_deref()) {
        bail!(
            "the authorization server issued a {:?} token, not a DPoP-bound one",
            tokens.token_type
        );
    }
    say("DPoP-bound access token obtained; talking to the server through the bridge");
    let bound = BoundToken {
        key,
        access_token: tokens.access_token,
    };
    crate::conformance_bridge::run_with(scenario, server, &Value::Null, bound).await
}

/// RFC 7591 registration as a public native client.
async fn register(
    http: &HttpExecutor,
    metadata: &lanyard_core::oauth::discovery::AuthorizationServerMetadata,
) -> anyhow::Result<String> {
    let endpoint = metadata
        .registration_endpoint
        .clone()
        .context("the authorization server offers no registration endpoint")?;
    let answer = http
        .client()
        .post(endpoint)
        .json(&json!({
            "client_name": "Lanyard conformance client",
            "redirect_uris": [REDIRECT_URI],
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            "application_type": "native",
        }))
        .send()
        .await
        .context("client registration")?;
    let body: Value = answer.json().await.context("the registration answer")?;
    let client_id = body["client_id"]
        .as_str()
        .context("the registration answer has no client_id")?;
    say(format!("registered as {client_id}"));
    Ok(client_id.to_owned())
}

/// The authorization request with PKCE S256; the code from the redirect it answers with (state
/// and, when sent, RFC 9207 `iss` checked).
async fn authorize(
    http: &HttpExecutor,
    discovered: &lanyard_core::oauth::discovery::DiscoveredServer,
    client_id: &str,
    verifier: &Secret,
) -> anyhow::Result<Secret> {
    let metadata = &discovered.authorization_server;
    let mut url = metadata
        .authorization_endpoint
        .clone()
        .context("the authorization server has no authorization endpoint")?;
    let state = random_id();
    let challenge = pkce_s256_challenge(verifier);
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", REDIRECT_URI)
            .append_pair("state", &state)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("resource", &discovered.resource);
        if !discovered.challenge_scopes.is_empty() {
            query.append_pair("scope", &discovered.challenge_scopes.join(" "));
        }
    }
    // The executor follows no redirects: the answer is the redirect itself.
    let answer = http
        .execute(&HttpRequest::get(url))
        .await
        .context("the authorization request")?;
    let location = answer
        .header_values("location")
        .next()
        .context("the authorization endpoint did not redirect")?;
    let redirect = Url::parse(location).context("the redirect is not a URL")?;
    let param = |name: &str| {
        redirect
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    if param("state").as_deref() != Some(state.as_str()) {
        bail!("the redirect's state is not this request's");
    }
    if let Some(iss) = param("iss") {
        if iss != metadata.issuer {
            bail!("the redirect's iss {iss:?} is not the authorization server's issuer");
        }
    }
    param("code")
        .map(Secret::new)
        .context("the redirect carries no code")
}

/// The token, with a fresh proof of `key` for each request the bridge sends.
struct BoundToken {
    key: DpopKey,
    access_token: Secret,
}

impl TokenSource for BoundToken {
    async fn token(&self, request: &TokenRequest) -> Result<IssuedToken, TokenUnavailable> {
        let target = request
            .proof_for
            .as_ref()
            .ok_or_else(|| TokenUnavailable::new("the bridge named no request for the proof"))?;
        let proof = sign_proof(
            &self.key,
            &target.method,
            &target.url,
            now(),
            Some(self.access_token.clone()),
            target.nonce.clone(),
        )
        .await
        .map_err(|e| TokenUnavailable::new(e.to_string()))?;
        Ok(IssuedToken {
            access_token: self.access_token.clone(),
            dpop_proof: Some(proof),
        })
    }
}
