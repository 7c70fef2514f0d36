//! The `make demo` world: one IdP and three MCP servers (Docs, Tickets, Payroll), each behind its
//! own authorization server, with alice denied Payroll by policy; `make demo` adds Wiki, a server in
//! the standard MCP authorization (`mode: oauth`) that the employee connects once in the browser
//! ([`add_oauth_server`]). Also writes the Lanyard policy
//! JSON that points an agent at it (the policy schema belongs to lanyard-core; the writer is kept
//! to the one function [`lanyard_policy`] so it is easy to adjust).

use std::time::Duration;

use serde_json::{json, Value};

use crate::config::{AsConfig, IdpConfig, McpConfig, TestbedConfig};
use crate::testbed::Testbed;

/// The client id Lanyard uses at the demo IdP.
pub const DEMO_IDP_CLIENT_ID: &str = "lanyard-desktop";

/// The demo servers: (id, display name, scope).
const DEMO_SERVERS: [(&str, &str, &str); 3] = [
    ("docs", "Docs", "docs.read"),
    ("tickets", "Tickets", "tickets.read"),
    ("payroll", "Payroll", "payroll.read"),
];

/// The demo's server in the standard MCP authorization: (id, display name, scope).
const OAUTH_DEMO_SERVER: (&str, &str, &str) = ("wiki", "Wiki", "wiki.read");

/// Adds Wiki to a demo world: an MCP server whose own authorization server runs the
/// authorization-code flow (PKCE, RFC 9207 `iss`, dynamic registration) and knows nothing of the
/// IdP's ID-JAGs. [`lanyard_policy`] lists it in `mode: oauth`.
pub fn add_oauth_server(config: &mut TestbedConfig) {
    let (id, _, scope) = OAUTH_DEMO_SERVER;
    config.auth_servers.push(
        AsConfig::new(id, &format!("lanyard-{id}"))
            .with_issuer_path(&format!("/oauth2/{id}"), false)
            .with_scopes(&[scope])
            .with_code_flow(true),
    );
    config.mcp_servers.push(McpConfig::new(id, id, &[scope]));
}

/// Configuration of the demo world.
pub fn demo_config(latency: Duration) -> TestbedConfig {
    let mut config = TestbedConfig {
        idp: IdpConfig::default(),
        auth_servers: Vec::new(),
        mcp_servers: Vec::new(),
        latency,
        ..TestbedConfig::default()
    };
    for (id, _, scope) in DEMO_SERVERS {
        let write = scope.replace(".read", ".write");
        config.auth_servers.push(
            AsConfig::new(id, &format!("lanyard-{id}"))
                .with_issuer_path(&format!("/oauth2/{id}"), false)
                .with_scopes(&[scope, &write]),
        );
        config.mcp_servers.push(McpConfig::new(id, id, &[scope]));
    }
    config
}

/// A world of `n` MCP servers (`srv01`…), each behind its own authorization server issuing access
/// tokens that live `token_lifetime`, nobody denied: what a benchmark of a busy agent
/// (`scripts/agent-idle-bench.sh`) signs in to.
pub fn wide_config(n: usize, latency: Duration, token_lifetime: Duration) -> TestbedConfig {
    let mut config = TestbedConfig {
        idp: IdpConfig::default(),
        auth_servers: Vec::new(),
        mcp_servers: Vec::new(),
        latency,
        ..TestbedConfig::default()
    };
    for i in 1..=n {
        let id = format!("srv{i:02}");
        let scope = format!("{id}.read");
        let mut auth_server = AsConfig::new(&id, &format!("lanyard-{id}"))
            .with_issuer_path(&format!("/oauth2/{id}"), false)
            .with_scopes(&[&scope]);
        auth_server.access_token_lifetime = token_lifetime;
        config.auth_servers.push(auth_server);
        config.mcp_servers.push(McpConfig::new(&id, &id, &[&scope]));
    }
    config
}

/// Starts the demo world and applies its policy (alice may not use Payroll).
pub async fn start_demo(latency: Duration) -> anyhow::Result<Testbed> {
    start_demo_binding(latency, &[]).await
}

/// The authorization servers of the MCP servers named in `bound` bind tokens with DPoP.
pub fn bind_with_dpop(config: &mut TestbedConfig, bound: &[String]) {
    let protectors: Vec<String> = config
        .mcp_servers
        .iter()
        .filter(|m| bound.contains(&m.name))
        .map(|m| m.auth_server.clone())
        .collect();
    for auth_server in &mut config.auth_servers {
        if protectors.contains(&auth_server.name) {
            *auth_server = auth_server.clone().with_dpop(false);
        }
    }
}

/// [`start_demo`] with the servers in `bound` DPoP-bound (`make demo` binds Tickets).
pub async fn start_demo_binding(latency: Duration, bound: &[String]) -> anyhow::Result<Testbed> {
    start_demo_world(latency, bound, false).await
}

/// [`start_demo_binding`], with Wiki in the standard MCP authorization when `oauth_server`
/// (what `make demo` runs).
pub async fn start_demo_world(
    latency: Duration,
    bound: &[String],
    oauth_server: bool,
) -> anyhow::Result<Testbed> {
    let mut config = demo_config(latency);
    if oauth_server {
        add_oauth_server(&mut config);
    }
    bind_with_dpop(&mut config, bound);
    let testbed = Testbed::start(config).await?;
    if let Some(payroll) = testbed.auth_server("payroll") {
        testbed.idp().deny("alice", payroll.issuer());
    }
    Ok(testbed)
}

/// The Lanyard policy JSON for a running testbed: the IdP plus one enterprise-managed entry per
/// MCP server (client id at its AS = the AS's first registered client). [`with_standard_oauth`]
/// turns the demo's Wiki into an `oauth` entry.
pub fn lanyard_policy(testbed: &Testbed) -> Value {
    let servers: Vec<Value> = testbed
        .mcp_servers()
        .iter()
        .map(|mcp| {
            let display = DEMO_SERVERS
                .iter()
                .find(|(id, _, _)| *id == mcp.name())
                .map(|(_, display, _)| display.to_string())
                .unwrap_or_else(|| mcp.name().to_string());
            let client_id = testbed
                .auth_server_for(mcp.name())
                .and_then(|a| a.clients().first())
                .map(|c| c.client_id.clone())
                .unwrap_or_default();
            json!({
                "id": mcp.name(),
                "display_name": display,
                "url": mcp.url(),
                "client_id": client_id,
                "client_auth": {"method": "none"},
                "scopes": mcp.required_scopes(),
                // The demo ASes also issue `<id>.write`: a client that meets 403
                // insufficient_scope may ask for it, one request at a time.
                "allowed_extra_scopes": mcp
                    .required_scopes()
                    .iter()
                    .filter_map(|s| s.strip_suffix(".read").map(|id| format!("{id}.write")))
                    .collect::<Vec<_>>(),
                "mode": "enterprise-managed",
            })
        })
        .collect();
    json!({
        "idp": {
            "issuer": testbed.idp().issuer(),
            "client_id": DEMO_IDP_CLIENT_ID,
            "client_auth": {"method": "none"},
            "scopes": ["openid", "offline_access", "email"],
        },
        "servers": servers,
        "dev_mode": true,
    })
}

/// Turns the entry of the demo's Wiki (see [`add_oauth_server`]) of `policy` into the standard MCP
/// authorization (`mode: oauth`), registering itself at its authorization server, when the
/// testbed runs it with the authorization-code flow.
pub fn with_standard_oauth(testbed: &Testbed, policy: &mut Value) {
    let (id, display, _) = OAUTH_DEMO_SERVER;
    if !testbed
        .auth_server_for(id)
        .is_some_and(|a| a.runs_code_flow())
    {
        return;
    }
    let Some(servers) = policy.get_mut("servers").and_then(Value::as_array_mut) else {
        return;
    };
    for entry in servers.iter_mut().filter(|s| s["id"] == id) {
        entry["display_name"] = json!(display);
        entry["mode"] = json!("oauth");
        // No client id of its own: it registers at its authorization server (RFC 7591).
        entry["client_id"] = json!("");
        entry["allow_dynamic_registration"] = json!(true);
    }
}

/// Lists its authorization server's issuer in `allowed_authorization_servers` of every server
/// entry of `policy` that authenticates with a secret or a key: Lanyard's policy requires it (or
/// `authorization_server`), so the MCP server cannot choose where the credential goes; discovery
/// still runs.
pub fn allow_authorization_servers_of_confidential_clients(testbed: &Testbed, policy: &mut Value) {
    let Some(servers) = policy.get_mut("servers").and_then(Value::as_array_mut) else {
        return;
    };
    for server in servers {
        let method = server["client_auth"]["method"].as_str().unwrap_or("none");
        if method == "none"
            || server.get("authorization_server").is_some()
            || server.get("allowed_authorization_servers").is_some()
        {
            continue;
        }
        let issuer = server["id"]
            .as_str()
            .and_then(|id| testbed.auth_server_for(id))
            .map(|a| a.issuer().to_owned());
        if let Some(issuer) = issuer {
            server["allowed_authorization_servers"] = json!([issuer]);
        }
    }
}

/// [`lanyard_policy`] signing in with SAML 2.0: `idp.sign_in` is `saml`, the SSO URL is the
/// testbed IdP's, and the SP entity id defaults to the client id (which the IdP maps to itself).
pub fn lanyard_saml_policy(testbed: &Testbed) -> Value {
    let mut policy = lanyard_policy(testbed);
    policy["idp"]["sign_in"] = json!("saml");
    policy["idp"]["saml_sso_url"] = json!(testbed.idp().saml_sso_url());
    policy
}

/// A machine-readable summary of every URL (written by `serve --port-file`).
pub fn url_summary(testbed: &Testbed) -> Value {
    json!({
        "idp": {
            "issuer": testbed.idp().issuer(),
            "discovery": testbed.idp().discovery_url(),
            "token_endpoint": testbed.idp().token_endpoint(),
        },
        "auth_servers": testbed.auth_servers().iter().map(|a| json!({
            "name": a.name(), "issuer": a.issuer(), "token_endpoint": a.token_endpoint(),
        })).collect::<Vec<_>>(),
        "mcp_servers": testbed.mcp_servers().iter().map(|m| json!({
            "name": m.name(), "url": m.url(), "resource": m.resource(),
            "resource_metadata": m.resource_metadata_url(), "auth_server": m.auth_server_issuer(),
        })).collect::<Vec<_>>(),
    })
}

/// A human-readable summary of every URL.
pub fn readable_summary(testbed: &Testbed) -> String {
    let mut out = String::new();
    out.push_str(&format!("IdP issuer         {}\n", testbed.idp().issuer()));
    out.push_str(&format!(
        "  discovery        {}\n",
        testbed.idp().discovery_url()
    ));
    out.push_str("  users            ");
    out.push_str(
        &testbed
            .idp()
            .state
            .config
            .users
            .iter()
            .map(|u| u.email.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    );
    out.push('\n');
    for mcp in testbed.mcp_servers() {
        out.push_str(&format!("MCP server {:<8}{}\n", mcp.name(), mcp.url()));
        out.push_str(&format!(
            "  auth server      {}\n",
            mcp.auth_server_issuer()
        ));
        out.push_str(&format!(
            "  scopes           {}\n",
            mcp.required_scopes().join(" ")
        ));
    }
    out
}
