//! Sender-constrained tokens (RFC 9449 DPoP) over real HTTP against the testbed: the identity
//! provider binds the ID-JAG to the device's key, the authorization server binds the access token,
//! and the MCP server accepts it only with a fresh proof of that key for the very request. A
//! token copied without its key, a proof replayed, or a proof used for another URL or method is
//! refused; nonces handed out by the servers are followed, also when rotated; a server whose
//! authorization server does not offer DPoP keeps working with bearer tokens.

mod support;

use std::time::Duration;

use lanyard_core::engine::grant::sign_proof;
use lanyard_core::engine::ServerState;
use lanyard_core::secret::Secret;
use lanyard_testbed::demo::demo_config;
use lanyard_testbed::{McpHandle, Testbed};
use serde_json::json;
use support::*;

/// The demo world with `docs`'s authorization server binding tokens (and wanting its nonce in
/// proofs when `nonce`), and its MCP server wanting its own nonce too when `nonce`.
async fn bound_docs(nonce: bool) -> Testbed {
    let mut config = demo_config(Duration::ZERO);
    for auth_server in &mut config.auth_servers {
        if auth_server.name == "docs" {
            *auth_server = auth_server.clone().with_dpop(nonce);
        }
    }
    for mcp in &mut config.mcp_servers {
        if mcp.name == "docs" {
            mcp.dpop_require_nonce = nonce;
        }
    }
    testbed(config).await
}

/// A `tools/call whoami` to `mcp` with `authorization` and, if given, a `DPoP` header: the
/// status and the `WWW-Authenticate` and `DPoP-Nonce` headers.
async fn call(
    mcp: &McpHandle,
    authorization: &str,
    proof: Option<&Secret>,
) -> (u16, String, Option<String>) {
    let response =
        lanyard_testbed::whoami_call(&http(), mcp.url(), authorization, proof.map(Secret::expose))
            .send()
            .await
            .expect("MCP request");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let challenge = header("www-authenticate").unwrap_or_default();
    let nonce = header("dpop-nonce");
    (response.status().as_u16(), challenge, nonce)
}

async fn proof(
    lanyard: &Lanyard,
    method: &str,
    url: &str,
    token: &Secret,
    nonce: Option<String>,
) -> Secret {
    let url = url::Url::parse(url).expect("url");
    sign_proof(
        &lanyard.engine.dpop_key(),
        method,
        &url,
        lanyard.now(),
        Some(token.clone()),
        nonce,
    )
    .await
    .expect("signed")
}

#[tokio::test]
async fn a_bound_token_works_only_with_a_fresh_proof_for_its_request() {
    let tb = bound_docs(false).await;
    let lanyard = start_engine(&tb, &policy_json(&tb), Options::default());
    lanyard.sign_in().await;
    lanyard.wait_granted("docs").await;
    lanyard.wait_granted("tickets").await;

    // Both legs were bound: the IdP put the key in the ID-JAG, the AS in the access token.
    let docs_as = tb.auth_server("docs").expect("AS").stats();
    assert_eq!(docs_as.dpop_bound_mints, 1, "{docs_as:?}");
    assert_eq!(
        tb.idp().stats().bound_id_jags,
        1,
        "only docs asked for a bound ID-JAG"
    );
    let token = lanyard.token("docs", 60).await;
    let jkt = token.dpop_jkt.clone().expect("the docs token is bound");
    assert_eq!(jkt, lanyard.engine.dpop_key().thumbprint());
    assert_eq!(claims(token.access_token.expose())["cnf"]["jkt"], jkt);
    let mcp = tb.mcp_server("docs").expect("mcp");
    let access = &token.access_token;

    // Copied out and replayed as a bearer token, or without a proof: refused.
    let (status, challenge, _) = call(mcp, &format!("Bearer {}", access.expose()), None).await;
    assert_eq!(status, 401);
    assert!(challenge.starts_with("DPoP "), "{challenge}");
    let dpop_auth = format!("DPoP {}", access.expose());
    let (status, challenge, _) = call(mcp, &dpop_auth, None).await;
    assert_eq!(
        (status, challenge.contains("invalid_dpop_proof")),
        (401, true),
        "{challenge}"
    );

    // With a proof of the device's key for this request: accepted, once.
    let good = proof(&lanyard, "POST", mcp.url(), access, None).await;
    assert_eq!(call(mcp, &dpop_auth, Some(&good)).await.0, 200);
    let (status, challenge, _) = call(mcp, &dpop_auth, Some(&good)).await;
    assert_eq!(status, 401, "a replayed proof was accepted");
    assert!(challenge.contains("replayed"), "{challenge}");
    assert_eq!(mcp.dpop_replays(), 1);

    // A proof stolen from another request is good for nothing here.
    let for_get = proof(&lanyard, "GET", mcp.url(), access, None).await;
    let (status, challenge, _) = call(mcp, &dpop_auth, Some(&for_get)).await;
    assert_eq!(status, 401);
    assert!(challenge.contains("another method"), "{challenge}");
    let elsewhere = format!("{}/elsewhere", mcp.url());
    let for_other_url = proof(&lanyard, "POST", &elsewhere, access, None).await;
    let (status, challenge, _) = call(mcp, &dpop_auth, Some(&for_other_url)).await;
    assert_eq!(status, 401);
    assert!(challenge.contains("another URL"), "{challenge}");
    // Nor a proof for another token.
    let other_token = Secret::new("not-this-token");
    let for_other_token = proof(&lanyard, "POST", mcp.url(), &other_token, None).await;
    let (status, challenge, _) = call(mcp, &dpop_auth, Some(&for_other_token)).await;
    assert_eq!(status, 401);
    assert!(challenge.contains("ath"), "{challenge}");

    // The AS without DPoP (tickets) issued a plain bearer token, which works as before.
    let tickets = lanyard.token("tickets", 60).await;
    assert_eq!(tickets.dpop_jkt, None);
    assert_eq!(
        tb.auth_server("tickets")
            .expect("AS")
            .stats()
            .dpop_bound_mints,
        0
    );
    assert_accepted(
        tb.mcp_server("tickets").expect("mcp"),
        tickets.access_token.expose(),
    )
    .await;
}

#[tokio::test]
async fn nonces_are_followed_at_the_authorization_server_and_after_rotation() {
    let tb = bound_docs(true).await;
    let lanyard = start_engine(&tb, &policy_json(&tb), Options::default());
    lanyard.sign_in().await;
    lanyard.wait_granted("docs").await;
    let stats = || tb.auth_server("docs").expect("AS").stats();
    assert_eq!(stats().dpop_bound_mints, 1);
    // The first proof went without a nonce and was answered `use_dpop_nonce`: one refusal,
    // then the retry with the nonce.
    assert_eq!(stats().rejected_grants, 1, "{:?}", stats());

    // The AS rotates its nonce: the next renewal is refused once more and then succeeds.
    tb.auth_server("docs")
        .expect("AS")
        .rotate_dpop_nonce()
        .expect("a nonce");
    lanyard.advance(&tb, Duration::from_secs(11));
    lanyard.engine.refresh("docs").await.expect("refresh");
    eventually("the renewal after the rotation", || {
        stats().dpop_bound_mints == 2
    })
    .await;
    assert_eq!(stats().rejected_grants, 2, "{:?}", stats());
    lanyard.wait_granted("docs").await;

    // The MCP server wants its own nonce: the first proof is answered with it, the retry works,
    // and after a rotation the same dance again.
    let mcp = tb.mcp_server("docs").expect("mcp");
    let token = lanyard.token("docs", 60).await.access_token;
    let auth = format!("DPoP {}", token.expose());
    let first = proof(&lanyard, "POST", mcp.url(), &token, None).await;
    let (status, challenge, nonce) = call(mcp, &auth, Some(&first)).await;
    assert_eq!(status, 401);
    assert!(challenge.contains("use_dpop_nonce"), "{challenge}");
    let nonce = nonce.expect("the server's nonce");
    let with_nonce = proof(&lanyard, "POST", mcp.url(), &token, Some(nonce.clone())).await;
    assert_eq!(call(mcp, &auth, Some(&with_nonce)).await.0, 200);
    let rotated = mcp.rotate_dpop_nonce().expect("rotated");
    assert_ne!(rotated, nonce);
    let stale = proof(&lanyard, "POST", mcp.url(), &token, Some(nonce)).await;
    let (status, _, offered) = call(mcp, &auth, Some(&stale)).await;
    assert_eq!((status, offered.as_deref()), (401, Some(rotated.as_str())));
}

#[tokio::test]
async fn dpop_required_against_a_server_without_it_is_a_named_failure_and_off_stays_bearer() {
    let tb = bound_docs(false).await;
    let mut policy = policy_json(&tb);
    // tickets' AS does not offer DPoP; docs' does, but the policy turns it off there.
    server_entry(&mut policy, "tickets")["dpop"] = json!("required");
    server_entry(&mut policy, "docs")["dpop"] = json!("off");
    let lanyard = start_engine(&tb, &policy, Options::default());
    lanyard.sign_in().await;
    lanyard.wait_granted("docs").await;
    let docs = lanyard.token("docs", 60).await;
    assert_eq!(docs.dpop_jkt, None, "dpop: off asked for a bound token");
    assert_accepted(
        tb.mcp_server("docs").expect("mcp"),
        docs.access_token.expose(),
    )
    .await;
    let state = lanyard
        .wait_server("tickets", "failing", |s| {
            matches!(s, ServerState::Failing { .. })
        })
        .await;
    let ServerState::Failing { error, .. } = state else {
        unreachable!()
    };
    assert!(
        error.contains("requires DPoP") && error.contains("does not offer it"),
        "{error}"
    );
    assert_eq!(
        tb.auth_server("tickets")
            .expect("AS")
            .stats()
            .jwt_bearer_mints,
        0
    );
}
