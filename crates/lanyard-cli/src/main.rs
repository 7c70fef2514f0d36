//! The `lanyard` command. Thin: parse arguments, build the engine from policy, ask it, print.
//!
//! Until the local broker lands, each invocation hosts the engine in-process: the IdP session is
//! resumed from the keychain's refresh token, so `lanyard login` in one process and `lanyard status`
//! in the next share one sign-in. No command but `login` ever opens a browser.

mod clients;
mod conformance;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use lanyard_core::clock::SystemClock;
use lanyard_core::engine::{self, EngineConfig, EngineError, EngineHandle, IdpStatus};
use lanyard_core::policy::Policy;
use lanyard_core::signin::SystemBrowser;
use lanyard_core::store::{KeyringStore, MemoryStore, SecretStore};

/// Exit codes other programs can rely on.
mod exit {
    pub const FAILURE: u8 = 1;
    // 2: usage errors, reported by clap.
    pub const MISCONFIGURED: u8 = 3;
    pub const NOT_SIGNED_IN: u8 = 4;
    pub const DENIED: u8 = 5;
    pub const UNAVAILABLE: u8 = 6;
    pub const UNKNOWN_SERVER: u8 = 7;
}

#[derive(Parser)]
#[command(name = "lanyard", version, about = "Sign in once; every MCP server gets its token.")]
struct Cli {
    /// The managed policy file.
    #[arg(long, global = true, env = "LANYARD_POLICY", default_value = "/etc/lanyard/policy.json")]
    policy: PathBuf,
    /// Keep the session in memory only (no keychain): it ends with this process.
    #[arg(long, global = true, env = "LANYARD_NO_KEYCHAIN")]
    no_keychain: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Sign in at the corporate identity provider (opens the browser) and grant every server.
    Login {
        /// Sign in with a code on another device (no browser here).
        #[arg(long)]
        device: bool,
    },
    /// Show the session and every server's grant.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Sign out: revoke the session at the IdP and wipe it from the keychain.
    Logout,
    /// List the configured servers.
    Servers,
    /// Print a token for SERVER on stdout (never opens a browser).
    Token {
        server: String,
        /// Print {access_token, expires_at, scopes}.
        #[arg(long, conflicts_with = "header_json")]
        json: bool,
        /// Print {"Authorization": "Bearer …"} (Claude Code's headersHelper).
        #[arg(long)]
        header_json: bool,
        /// The token must stay valid at least this long.
        #[arg(long, default_value_t = 60)]
        min_ttl: u64,
    },
    /// Run one scenario of the MCP conformance suite against SERVER_URL (used by the suite).
    ConformanceClient { server_url: String },
    /// Wire AI clients (Claude Code, Claude Desktop, VS Code, Cursor) to every server.
    #[command(subcommand)]
    Clients(clients::command::ClientsCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LANYARD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("lanyard: cannot start: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let code = runtime.block_on(run(cli));
    runtime.shutdown_timeout(Duration::from_secs(2));
    ExitCode::from(code)
}

async fn run(cli: Cli) -> u8 {
    if let Command::ConformanceClient { server_url } = &cli.command {
        return match conformance::run(server_url).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("lanyard conformance-client: FAILED: {e:#}");
                exit::FAILURE
            }
        };
    }
    if let Command::Clients(command) = &cli.command {
        return clients::command::run(command, &cli.policy);
    }
    let policy = match Policy::load(&cli.policy) {
        Ok(policy) => policy,
        Err(errors) => {
            eprintln!("lanyard: the policy is not usable:");
            for e in errors {
                eprintln!("  {e}");
            }
            return exit::MISCONFIGURED;
        }
    };
    if let Command::Servers = cli.command {
        for s in &policy.servers {
            println!("{:<16} {:<24} {}", s.id, s.display_name, s.url);
        }
        return 0;
    }
    let store: Arc<dyn SecretStore> =
        if cli.no_keychain { Arc::new(MemoryStore::new()) } else { Arc::new(KeyringStore::new("lanyard")) };
    let config = EngineConfig::new(policy, store, Arc::new(SystemClock), Arc::new(SystemBrowser));
    let engine = match engine::start(config) {
        Ok(engine) => engine,
        Err(e) => {
            eprintln!("lanyard: {e}");
            return exit::FAILURE;
        }
    };
    let code = match cli.command {
        Command::Login { device } => login(&engine, device).await,
        Command::Status { json } => status(&engine, json).await,
        Command::Logout => logout(&engine).await,
        Command::Token { server, json, header_json, min_ttl } => {
            token(&engine, &server, json, header_json, min_ttl).await
        }
        Command::Servers | Command::ConformanceClient { .. } | Command::Clients(_) => 0,
    };
    engine.shutdown().await;
    code
}

/// Waits for the saved session (if any) to be resumed.
async fn restored(engine: &EngineHandle) -> IdpStatus {
    match engine.wait_for(|s| !matches!(s.idp, IdpStatus::Restoring)).await {
        Ok(status) => status.idp,
        Err(_) => IdpStatus::SignedOut,
    }
}

/// Waits (bounded) until no server is still being granted.
async fn settled(engine: &EngineHandle) {
    let _ = tokio::time::timeout(Duration::from_secs(60), engine.wait_for(|s| s.is_settled())).await;
}

async fn login(engine: &EngineHandle, device: bool) -> u8 {
    if let IdpStatus::SignedIn { email, subject, .. } = restored(engine).await {
        eprintln!("Already signed in as {}.", email.unwrap_or(subject));
    } else {
        if device {
            let waiter = engine.clone();
            tokio::spawn(async move {
                if let Ok(status) = waiter
                    .wait_for(|s| matches!(&s.idp, IdpStatus::SigningIn { user_code: Some(_), .. }))
                    .await
                {
                    if let IdpStatus::SigningIn { user_code: Some(code), verification_uri: Some(uri) } = status.idp {
                        eprintln!("To sign in, open {uri} and enter the code {code}");
                    }
                }
            });
        } else {
            eprintln!("Opening your browser to sign in…");
        }
        let result = if device { engine.sign_in_with_device_code().await } else { engine.sign_in().await };
        if let Err(e) = result {
            eprintln!("lanyard: {e}");
            return exit::NOT_SIGNED_IN;
        }
    }
    settled(engine).await;
    output::print_status(&engine.status());
    0
}

async fn status(engine: &EngineHandle, json: bool) -> u8 {
    restored(engine).await;
    settled(engine).await;
    let status = engine.status();
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

async fn logout(engine: &EngineHandle) -> u8 {
    restored(engine).await;
    match engine.sign_out().await {
        Ok(()) => {
            // Give the best-effort revocation and the keychain wipe a moment to finish.
            tokio::time::sleep(Duration::from_millis(500)).await;
            eprintln!("Signed out.");
            0
        }
        Err(e) => {
            eprintln!("lanyard: {e}");
            exit::FAILURE
        }
    }
}

async fn token(engine: &EngineHandle, server: &str, json: bool, header_json: bool, min_ttl: u64) -> u8 {
    restored(engine).await;
    match engine.token(server, Duration::from_secs(min_ttl)).await {
        Ok(token) => {
            let value = token.access_token.expose();
            if json {
                println!(
                    "{}",
                    serde_json::json!({"access_token": value, "expires_at": token.expires_at, "scopes": token.scopes})
                );
            } else if header_json {
                println!("{}", serde_json::json!({"Authorization": format!("Bearer {value}")}));
            } else {
                println!("{value}");
            }
            0
        }
        Err(e) => {
            eprintln!("lanyard: {e}");
            match e {
                EngineError::UnknownServer(_) => exit::UNKNOWN_SERVER,
                EngineError::NotSignedIn | EngineError::StepUpRequired => exit::NOT_SIGNED_IN,
                EngineError::Denied { .. } => exit::DENIED,
                EngineError::Unavailable { .. } | EngineError::SignIn(_) | EngineError::Stopped => exit::UNAVAILABLE,
            }
        }
    }
}

