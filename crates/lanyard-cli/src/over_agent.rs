//! The commands that talk to a running agent over the broker: `login`, `logout`, `status`,
//! `servers`, `token`. Std only — no async runtime, no policy load — so `lanyard token` stays a
//! millisecond-class helper. None of them opens a browser (the agent does, when `login` asks), and
//! nothing secret goes to stderr: only `token` writes a token, to stdout.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use lanyard_core::engine::{IdpStatus, PolicyStatus, Status};
use lanyard_core::ipc::{BlockingClient, ClientError, ErrorCode, TokenRequestOptions};
use lanyard_core::policy::sources::platform::PolicySources;

use crate::{agent, exit, output};

/// Prints one line for `e` and returns its exit code.
pub fn fail(e: &ClientError) -> u8 {
    eprintln!("lanyard: {e}");
    exit_code(e)
}

/// The documented exit code of a broker error.
pub fn exit_code(e: &ClientError) -> u8 {
    match e {
        ClientError::NotRunning { .. } => exit::AGENT_NOT_RUNNING,
        ClientError::VersionMismatch { .. } => exit::VERSION_MISMATCH,
        ClientError::Agent(reply) => match reply.code {
            ErrorCode::NotSignedIn | ErrorCode::StepUpRequired | ErrorCode::NotConnected => {
                exit::NOT_SIGNED_IN
            }
            ErrorCode::Denied => exit::DENIED,
            ErrorCode::UnknownServer => exit::UNKNOWN_SERVER,
            ErrorCode::Unavailable | ErrorCode::SignInFailed | ErrorCode::Stopped => {
                exit::UNAVAILABLE
            }
            ErrorCode::VersionMismatch => exit::VERSION_MISMATCH,
            ErrorCode::Misconfigured => exit::MISCONFIGURED,
            _ => exit::FAILURE,
        },
        ClientError::ForeignAgent { .. }
        | ClientError::UntrustedEndpoint { .. }
        | ClientError::Io(_)
        | ClientError::Protocol(_) => exit::FAILURE,
    }
}

pub enum TokenFormat {
    Plain,
    Json,
    HeaderJson,
    /// `HeaderJson` for an AI client's headers helper: never a failing exit (see [`refusal`]).
    HeadersHelper,
}

/// What a headers helper prints when it has no token: an `Authorization` header with Lanyard's own
/// scheme and the reason, carrying no credential. An AI client that ran a helper and got an
/// `Authorization` header does not start its own per-server OAuth (Claude Code then shows the
/// server as failed: "Server rejected the Authorization header minted by the configured
/// headersHelper … OAuth fallback is disabled"); a failing helper would make it offer exactly that
/// OAuth sign-in, which enterprise-managed authorization exists to remove. The MCP server answers
/// 401 to it, as to any credential it cannot verify.
pub fn refusal(e: &ClientError) -> String {
    let reason = match e {
        ClientError::NotRunning { .. } => "agent_not_running",
        ClientError::VersionMismatch { .. } => "version_mismatch",
        ClientError::Agent(reply) => match reply.code {
            ErrorCode::Denied => "denied",
            ErrorCode::NotSignedIn => "not_signed_in",
            ErrorCode::NotConnected => "not_connected",
            ErrorCode::StepUpRequired => "step_up_required",
            ErrorCode::UnknownServer => "unknown_server",
            ErrorCode::Misconfigured => "misconfigured",
            ErrorCode::VersionMismatch => "version_mismatch",
            ErrorCode::DpopBound => "dpop_bound",
            ErrorCode::Unavailable | ErrorCode::SignInFailed | ErrorCode::Stopped => "unavailable",
            _ => "failure",
        },
        ClientError::ForeignAgent { .. } | ClientError::UntrustedEndpoint { .. } => {
            "untrusted_agent"
        }
        ClientError::Io(_) | ClientError::Protocol(_) => "failure",
    };
    refusal_header(reason)
}

/// The headers helper's answer for `reason` (see [`refusal`]).
pub fn refusal_header(reason: &str) -> String {
    serde_json::json!({"Authorization": format!("Lanyard error=\"{reason}\"")}).to_string()
}

/// `lanyard token SERVER`: the token on stdout, or a documented exit code and one line on stderr.
pub fn token(
    endpoint: &Path,
    server: &str,
    format: TokenFormat,
    min_ttl: u64,
    dpop: Option<lanyard_core::ipc::ProofRequest>,
) -> u8 {
    let options = TokenRequestOptions {
        min_ttl: Duration::from_secs(min_ttl),
        dpop,
        ..Default::default()
    };
    let token = match BlockingClient::connect(endpoint).and_then(|mut c| c.token(server, options)) {
        Ok(token) => token,
        Err(e) if matches!(format, TokenFormat::HeadersHelper) => {
            eprintln!("lanyard: {e}");
            let mut stdout = std::io::stdout().lock();
            return match writeln!(stdout, "{}", refusal(&e)).and_then(|()| stdout.flush()) {
                Ok(()) => 0,
                Err(_) => exit_code(&e),
            };
        }
        Err(e) => return fail(&e),
    };
    let value = token.access_token.expose();
    let proof = token.dpop_proof.as_ref().map(|p| p.expose());
    let scheme = if proof.is_some() { "DPoP" } else { "Bearer" };
    let text = match (format, proof) {
        (TokenFormat::Plain, None) => value.to_owned(),
        // The token, then the proof for the one request it was asked for.
        (TokenFormat::Plain, Some(proof)) => format!("{value}\n{proof}"),
        (TokenFormat::Json, _) => {
            let mut json = serde_json::json!({
                "access_token": value, "token_type": scheme,
                "expires_at": token.expires_at, "scopes": token.scopes,
            });
            if let Some(proof) = proof {
                json["dpop_proof"] = proof.into();
            }
            json.to_string()
        }
        (TokenFormat::HeaderJson | TokenFormat::HeadersHelper, proof) => {
            let mut json = serde_json::json!({"Authorization": format!("{scheme} {value}")});
            if let Some(proof) = proof {
                json["DPoP"] = proof.into();
            }
            json.to_string()
        }
    };
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("lanyard: writing the token failed: {}", e.kind());
            exit::FAILURE
        }
    }
}

/// Waits (bounded) until the agent has resumed its session and no server is being granted.
fn settled(client: &mut BlockingClient, limit: Duration) -> Result<Status, ClientError> {
    let deadline = Instant::now() + limit;
    loop {
        let status = client.status()?;
        if status.is_settled() || Instant::now() >= deadline {
            return Ok(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `lanyard status [--json]`.
pub fn status(endpoint: &Path, json: bool) -> u8 {
    let status = match BlockingClient::connect(endpoint)
        .and_then(|mut c| settled(&mut c, Duration::from_secs(10)))
    {
        Ok(status) => status,
        Err(e) => return fail(&e),
    };
    if json {
        match serde_json::to_string_pretty(&status) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("lanyard: {e}");
                return exit::FAILURE;
            }
        }
    } else {
        output::print_status(&status);
    }
    0
}

/// `lanyard status --watch`: the status now and after every change, until the agent stops (then
/// exit code "unavailable") or stdout closes (exit 0).
pub fn status_watch(endpoint: &Path, json: bool) -> u8 {
    let updates = match BlockingClient::connect(endpoint).and_then(BlockingClient::subscribe) {
        Ok(updates) => updates,
        Err(e) => return fail(&e),
    };
    for (n, status) in updates.enumerate() {
        let status = match status {
            Ok(status) => status,
            Err(e) => return fail(&e),
        };
        let mut stdout = std::io::stdout();
        let written = if json {
            match serde_json::to_string(&status) {
                Ok(line) => writeln!(stdout, "{line}"),
                Err(e) => {
                    eprintln!("lanyard: {e}");
                    return exit::FAILURE;
                }
            }
        } else {
            if n > 0 {
                println!();
            }
            output::print_status(&status);
            Ok(())
        };
        if written.and_then(|()| stdout.flush()).is_err() {
            return 0; // the reader went away (`| head`): not an error
        }
    }
    eprintln!("lanyard: the agent stopped");
    exit::UNAVAILABLE
}

/// `lanyard servers`: from the agent, or from the policy file when no agent runs.
pub fn servers(endpoint: &Path, policy_sources: &PolicySources) -> u8 {
    match BlockingClient::connect(endpoint).and_then(|mut c| c.servers()) {
        Ok(servers) => {
            for s in servers {
                println!("{:<16} {:<24} {}", s.id, s.display_name, s.url);
            }
            0
        }
        Err(ClientError::NotRunning { .. }) => match policy_sources.load() {
            Ok(snapshot) => {
                let policy = snapshot.policy;
                for s in &policy.servers {
                    println!("{:<16} {:<24} {}", s.id, s.display_name, s.url);
                }
                0
            }
            Err(errors) => {
                eprintln!("lanyard: the policy is not usable:");
                for e in errors {
                    eprintln!("  {e}");
                }
                exit::MISCONFIGURED
            }
        },
        Err(e) => fail(&e),
    }
}

/// `lanyard logout`.
pub fn logout(endpoint: &Path) -> u8 {
    match BlockingClient::connect(endpoint).and_then(|mut c| c.sign_out()) {
        Ok(()) => {
            eprintln!("Signed out.");
            0
        }
        Err(e) => fail(&e),
    }
}

/// `lanyard connect SERVER`: the agent opens the browser for the server's own sign-in, started
/// in the background first when none runs (unless `no_start`), as for `lanyard login`.
pub fn connect(
    endpoint: &Path,
    policy_sources: &PolicySources,
    no_keychain: bool,
    server: &str,
    no_start: bool,
) -> u8 {
    let mut client = match client_starting_agent(endpoint, policy_sources, no_keychain, no_start) {
        Ok(client) => client,
        Err(code) => return code,
    };
    eprintln!("Opening the browser to connect {server}…");
    match client.connect_server(server) {
        Ok(()) => {
            println!("Connected {server}. Lanyard renews its tokens from now on.");
            0
        }
        Err(e) => fail(&e),
    }
}

/// `lanyard refresh [SERVER]`: asks the agent to grant SERVER (every server without one) anew
/// now, also one that was refused; the status shows how it went.
pub fn refresh(endpoint: &Path, server: Option<&str>) -> u8 {
    let asked = BlockingClient::connect(endpoint).and_then(|mut c| match server {
        Some(server) => c.refresh(server),
        None => c.refresh_all(),
    });
    match asked {
        Ok(()) => {
            eprintln!(
                "Asked the agent to grant {} anew; `lanyard status` shows how it goes.",
                server.unwrap_or("every server")
            );
            0
        }
        Err(e) => fail(&e),
    }
}

/// `lanyard login [--device]`: asks the agent to sign in, starting the agent in the background
/// first when none runs (unless `no_start`).
pub fn login(
    endpoint: &Path,
    policy_sources: &PolicySources,
    no_keychain: bool,
    device: bool,
    no_start: bool,
) -> u8 {
    let mut client = match client_starting_agent(endpoint, policy_sources, no_keychain, no_start) {
        Ok(client) => client,
        Err(code) => return code,
    };
    let status = match settled(&mut client, Duration::from_secs(30)) {
        Ok(status) => status,
        Err(e) => return fail(&e),
    };
    // Nothing to sign in to: say so in `lanyard status`'s words, and open no browser.
    if let PolicyStatus::Misconfigured { errors } = &status.policy {
        output::print_misconfigured(errors);
        return exit::MISCONFIGURED;
    }
    if let IdpStatus::SignedIn { email, subject, .. } = &status.idp {
        eprintln!(
            "Already signed in as {}.",
            email.as_deref().unwrap_or(subject)
        );
    } else {
        if device {
            show_device_code(endpoint);
        } else {
            eprintln!("The agent is opening your browser to sign in…");
        }
        if let Err(e) = client.sign_in(device) {
            return fail(&e);
        }
    }
    match settled(&mut client, Duration::from_secs(60)) {
        Ok(status) => {
            output::print_status(&status);
            0
        }
        Err(e) => fail(&e),
    }
}

/// A client of the agent, started in the background first when none runs (unless `no_start`);
/// `Err` is the exit code, already explained on stderr.
fn client_starting_agent(
    endpoint: &Path,
    policy_sources: &PolicySources,
    no_keychain: bool,
    no_start: bool,
) -> Result<BlockingClient, u8> {
    match BlockingClient::connect(endpoint) {
        Ok(client) => Ok(client),
        Err(ClientError::NotRunning { .. }) if !no_start => {
            eprintln!("Starting the Lanyard agent in the background…");
            if let Err(e) = agent::spawn_background(policy_sources, no_keychain, endpoint) {
                eprintln!("lanyard: {e}");
                return Err(exit::AGENT_NOT_RUNNING);
            }
            BlockingClient::connect(endpoint).map_err(|e| fail(&e))
        }
        Err(e) => Err(fail(&e)),
    }
}

/// Prints the device code once the agent shows it (on a second connection, while the first waits).
fn show_device_code(endpoint: &Path) {
    let endpoint = endpoint.to_path_buf();
    std::thread::spawn(move || {
        let Ok(mut client) = BlockingClient::connect(&endpoint) else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Status {
                idp:
                    IdpStatus::SigningIn {
                        user_code: Some(code),
                        verification_uri: Some(uri),
                    },
                ..
            }) = client.status()
            {
                eprintln!("To sign in, open {uri} and enter the code {code}");
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use lanyard_core::ipc::ErrorReply;

    fn header(e: &ClientError) -> String {
        let printed: serde_json::Value = serde_json::from_str(&refusal(e)).expect("json");
        let object = printed.as_object().expect("an object of headers");
        assert_eq!(object.len(), 1, "only Authorization: {printed}");
        object["Authorization"]
            .as_str()
            .expect("a string")
            .to_owned()
    }

    #[test]
    fn a_refusal_header_names_the_reason_and_carries_no_credential() {
        let denied = ClientError::Agent(ErrorReply {
            code: ErrorCode::Denied,
            message: "blocked by your organization".into(),
            retry_at: None,
            agent_protocol: None,
        });
        assert_eq!(header(&denied), "Lanyard error=\"denied\"");
        let gone = ClientError::NotRunning {
            endpoint: "/nowhere".into(),
        };
        assert_eq!(header(&gone), "Lanyard error=\"agent_not_running\"");
        assert!(!refusal(&denied).contains("Bearer"));
    }
}
