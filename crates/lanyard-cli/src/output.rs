//! Human-readable rendering of the engine's status for the terminal.

use lanyard_core::clock::Clock;
use lanyard_core::engine::{
    IdleReason, IdpStatus, KeychainStatus, PolicyStatus, ServerState, Status,
};
use lanyard_core::policy::ServerMode;
use lanyard_core::wake::SystemClock;

/// "4m 05s", "2h 10m", "expired".
pub fn remaining(until: u64, now: u64) -> String {
    if until <= now {
        return "expired".into();
    }
    let secs = until - now;
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m {:02}s", secs / 60, secs % 60),
        _ => format!("{}h {:02}m", secs / 3600, (secs % 3600) / 60),
    }
}

/// The policy problems, in the words `lanyard status` and `lanyard login` share.
pub fn print_misconfigured(errors: &[String]) {
    println!("Misconfigured: the managed policy is not usable; ask IT to fix it:");
    for e in errors {
        println!("  {e}");
    }
}

pub fn print_status(status: &Status) {
    let now = SystemClock.unix_now();
    match &status.idp {
        IdpStatus::SignedOut => println!("Signed out. Run `lanyard login` to sign in."),
        IdpStatus::Restoring => println!("Resuming your session…"),
        IdpStatus::SigningIn { .. } => println!("Signing in…"),
        IdpStatus::SignedIn {
            subject,
            email,
            refresh_error,
            previous_subject,
            ..
        } => {
            println!("Signed in as {}.", email.as_deref().unwrap_or(subject));
            if let Some(previous) = previous_subject {
                println!(
                    "  Warning: before this sign-in, {previous} was signed in. If you did not mean \
                     to switch accounts, run `lanyard logout` and sign in again."
                );
            }
            if let Some(e) = refresh_error {
                println!("  Renewing the session keeps failing ({e}); retrying.");
            }
        }
        IdpStatus::NeedsSignIn { reason } => {
            println!("Sign in again: {reason}. Run `lanyard login`.")
        }
    }
    match &status.policy {
        PolicyStatus::Applied => {}
        PolicyStatus::Misconfigured { errors } => print_misconfigured(errors),
        PolicyStatus::ChangeRejected { errors } => {
            println!("A policy change was refused; the previous policy stays in force:");
            for e in errors {
                println!("  {e}");
            }
        }
    }
    match &status.keychain {
        KeychainStatus::Available => {}
        KeychainStatus::Locked { reason } => {
            println!("The keychain is locked ({reason}): unlock it to keep your session.")
        }
        KeychainStatus::Unavailable { reason } => {
            println!("No keychain ({reason}): the session lasts only while Lanyard runs.")
        }
    }
    if let Some(key) = &status.idp_client_key {
        println!("Client key at the identity provider: {key}");
    }
    if status.servers.is_empty() {
        println!("No MCP servers are configured.");
    }
    for server in &status.servers {
        let (state, detail) = match &server.state {
            ServerState::NotSignedIn => ("not signed in", String::new()),
            ServerState::NeedsConnect if server.connecting => (
                "connecting",
                "finish the sign-in in your browser".to_owned(),
            ),
            ServerState::NeedsConnect => (
                "not connected",
                format!("Connect: lanyard connect {}", server.id),
            ),
            ServerState::Granting => ("granting", String::new()),
            ServerState::Granted {
                expires_at, scopes, ..
            } => (
                if server.mode == ServerMode::Oauth {
                    "connected"
                } else {
                    "granted"
                },
                format!(
                    "expires in {}  scopes: {}",
                    remaining(*expires_at, now),
                    scopes.join(" ")
                ),
            ),
            ServerState::Denied { description, code } => (
                "denied",
                format!(
                    "Blocked by your organization — contact IT ({})",
                    description.as_deref().unwrap_or(code)
                ),
            ),
            ServerState::StepUpRequired { .. } => (
                "step-up",
                "needs a fresh sign-in: run `lanyard login`".into(),
            ),
            ServerState::Failing {
                error, retry_at, ..
            } => (
                "retrying",
                format!("{error}; next try in {}", remaining(*retry_at, now)),
            ),
            ServerState::ReadyOnFirstUse { reason } => (
                "ready",
                match reason {
                    IdleReason::Unused => "on first use (not kept warm while unused)".into(),
                    IdleReason::NearBudget => {
                        "on first use (near this month's ID-JAG budget: not refreshed in the background)"
                            .into()
                    }
                },
            ),
        };
        println!(
            "  {:<12} {:<20} {:<14} {}",
            server.id, server.display_name, state, detail
        );
        if let Some(used) = &server.last_used {
            let who = used
                .requester
                .executable
                .as_deref()
                .unwrap_or("an unknown program");
            let pid = used
                .requester
                .pid
                .map(|p| format!(" (pid {p})"))
                .unwrap_or_default();
            println!(
                "  {:<12} last used {} ago by {who}{pid}",
                "",
                remaining(now, used.at.min(now)).replace("expired", "0s")
            );
        }
        if server.mode == ServerMode::Oauth && !matches!(server.state, ServerState::NeedsConnect) {
            if let Some(issuer) = &server.authorization_server {
                println!(
                    "  {:<12} connected at {issuer}; renewed without a browser",
                    ""
                );
            }
        }
        if let Some(key) = &server.client_key {
            println!("  {:<12} client key: {key}", "");
        }
        if server.dpop_bound {
            println!(
                "  {:<12} bound to this device (DPoP): reach it through `lanyard proxy {}`",
                "", server.id
            );
        }
        let usage = &server.usage;
        if usage.id_jags + usage.jwt_bearer_grants + usage.client_requests > 0 {
            println!(
                "  {:<12} last {} days: {} ID-JAGs, {} jwt-bearer grants, {} client requests",
                "",
                usage.window_days,
                usage.id_jags,
                usage.jwt_bearer_grants,
                usage.client_requests
            );
        }
    }
}
