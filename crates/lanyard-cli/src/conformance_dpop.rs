//! The conformance suite's DPoP scenarios (`auth/dpop`, `auth/dpop-nonce`; SEP-1932, RFC 9449).
//! Their authorization server hands out tokens through the authorization-code flow with dynamic
//! registration: this client runs it with [`lanyard_core::oauth::code_flow`] (discovery, the
//! registration, a PKCE authorization request whose redirect it reads without following, state
//! and `iss` checked), the code the agent's `oauth` mode runs, and adds the DPoP proof to the
//! code exchange. What the scenarios judge is Lanyard's own DPoP code: the device key and its
//! proofs ([`lanyard_core::oauth::dpop`]), the `use_dpop_nonce` retry at the token endpoint, and
//! the real bridge of `lanyard proxy` presenting the bound token with the `DPoP` scheme, a fresh
//! proof on every request and the MCP server's nonce.

use anyhow::{bail, Context as _};
use lanyard_core::engine::grant::sign_proof;
use lanyard_core::mcp::bridge::{IssuedToken, TokenRequest, TokenSource, TokenUnavailable};
use lanyard_core::oauth::code_flow::{self, ClientIdentityPolicy, PrepareInputs, Prepared};
use lanyard_core::oauth::discovery::DiscoveredUrls;
use lanyard_core::oauth::dpop::{self, DpopKey, DpopUse, Nonces};
use lanyard_core::oauth::token::{parse_error, parse_token_response};
use lanyard_core::oauth::{AssertionInputs, HttpConfig, HttpExecutor, HttpRequest};
use lanyard_core::secret::Secret;
use lanyard_core::signin::random_id;
use serde_json::Value;
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
    let prepared = code_flow::prepare(
        &http,
        &PrepareInputs {
            server_url: server,
            urls: DiscoveredUrls::like(server),
            identity: &ClientIdentityPolicy {
                allow_dynamic_registration: true,
                ..ClientIdentityPolicy::default()
            },
            redirect_uri: REDIRECT_URI,
            policy_scopes: &[],
            extra_scopes: &[],
            registered: None,
            accepted_issuers: &[],
        },
    )
    .await
    .context("discovery and registration")?;
    let metadata = &prepared.discovered.authorization_server;
    let key = DpopKey::generate().context("making a DPoP key")?;
    // The policy's `required`: a server that does not offer DPoP fails this scenario.
    DpopUse::Required
        .applies(&metadata.dpop_signing_alg_values_supported, key.algorithm())
        .map_err(anyhow::Error::msg)?;
    say(format!(
        "authorization server {} offers DPoP; device key jkt {}; client {}",
        metadata.issuer,
        key.thumbprint(),
        prepared.client.client_id
    ));
    let verifier = Secret::new(random_id() + &random_id());
    let code = authorize(&http, &prepared, &verifier).await?;

    let endpoint = prepared.token_endpoint();
    let nonces = Nonces::default();
    let mut nonce_retried = false;
    let response = loop {
        let mut request = code_flow::code_exchange(
            &prepared,
            &code,
            &verifier,
            &AssertionInputs {
                audience: endpoint.issuer.clone(),
                now: now(),
                jti: random_id(),
            },
        )?;
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

/// The authorization request; the code from the redirect it answers with, read without following
/// it and checked by [`code_flow::read_redirect`].
async fn authorize(
    http: &HttpExecutor,
    prepared: &Prepared,
    verifier: &Secret,
) -> anyhow::Result<Secret> {
    let state = random_id();
    let url = prepared.authorization_url(&state, verifier)?;
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
    let pairs: Vec<(String, String)> = redirect.query_pairs().into_owned().collect();
    Ok(code_flow::read_redirect(
        pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        &state,
        &prepared.discovered.authorization_server,
    )?)
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
