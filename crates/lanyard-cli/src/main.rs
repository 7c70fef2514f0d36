//! The `lanyard` command. Thin: parse arguments, then either host the engine (`lanyard agent`) or
//! ask the running agent over the local broker (`login`, `logout`, `status`, `servers`, `token`).
//!
//! The helper commands are std-only and never open a browser: when no agent runs they exit with
//! [`exit::AGENT_NOT_RUNNING`] (only `login` starts one in the background), and when a sign-in is
//! needed with [`exit::NOT_SIGNED_IN`]. Only the agent opens the browser, when `login` asks it to.

mod agent;
mod clients;
mod conformance;
mod conformance_bridge;
mod conformance_dpop;
mod conformance_oauth;
mod device_key_cmd;
mod diagnose;
mod log_file;
mod log_sink;
mod output;
mod over_agent;
mod policy_cmd;
mod proxy;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use lanyard_core::policy::sources::platform::PolicySources;

/// Exit codes other programs can rely on (also listed in `lanyard --help`).
mod exit {
    pub const FAILURE: u8 = 1;
    // 2: usage errors, reported by clap.
    pub const MISCONFIGURED: u8 = 3;
    pub const NOT_SIGNED_IN: u8 = 4;
    pub const DENIED: u8 = 5;
    pub const UNAVAILABLE: u8 = 6;
    pub const UNKNOWN_SERVER: u8 = 7;
    pub const AGENT_NOT_RUNNING: u8 = 8;
    pub const VERSION_MISMATCH: u8 = 9;
    pub const AGENT_ALREADY_RUNNING: u8 = 10;
}

const EXIT_CODES_HELP: &str = "\
Exit codes:
  0   success
  1   other failure
  2   usage error
  3   misconfigured: the policy (or the agent's socket directory) is not usable
  4   not signed in, or the server needs a fresh sign-in: run `lanyard login`
  5   denied by your organization's policy
  6   temporarily unavailable (the agent retries by itself)
  7   no such server in the policy
  8   the Lanyard agent is not running: start it with `lanyard agent` (or `lanyard login`)
  9   the agent speaks another protocol version: restart it
  10  `lanyard agent`: an agent already runs for this user (its pid is printed)

Only `lanyard agent` hosts the session and opens a browser (when `lanyard login` asks it to);
`token`, `status`, `servers` and `logout` talk to it and never open a browser. `login` starts the
agent in the background when none runs (log: agent.log next to the socket).";

#[derive(Parser)]
#[command(
    name = "lanyard",
    version,
    about = "Sign in once; every MCP server gets its token.",
    after_help = EXIT_CODES_HELP
)]
struct Cli {
    /// A policy file to use instead of this OS's managed policy (read by the agent, `servers`,
    /// `clients` and `policy show`). Default: /etc/lanyard/policy.json (+ policy.d/) on Linux,
    /// managed preferences (dev.lanyard.tray) + /Library/Application Support/Lanyard/policy.json
    /// on macOS, HKLM/HKCU\SOFTWARE\Policies\Lanyard + %ProgramData%\Lanyard\policy.json on Windows.
    #[arg(long, global = true, env = "LANYARD_POLICY")]
    policy: Option<PathBuf>,
    /// The agent keeps the session in memory only (no keychain): it ends with the agent.
    #[arg(
        long,
        global = true,
        env = "LANYARD_NO_KEYCHAIN",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    no_keychain: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Host the session and the local broker for this user (one per user), until SIGTERM/Ctrl-C.
    Agent {
        /// Write the log (and anything else the agent prints on stderr) to this file instead of
        /// stderr, rotated at 5 MiB, keeping 3 files (FILE, FILE.1, FILE.2).
        #[arg(long, value_name = "FILE")]
        log_file: Option<PathBuf>,
    },
    /// Sign in at the corporate identity provider (the agent opens the browser) and grant every server.
    Login {
        /// Sign in with a code on another device (no browser here).
        #[arg(long)]
        device: bool,
        /// Do not start the agent when none runs (exit 8 instead).
        #[arg(long)]
        no_start: bool,
    },
    /// Show the session and every server's grant, with who used each token last.
    Status {
        #[arg(long)]
        json: bool,
        /// Keep running and print the status again each time it changes (with --json: one object
        /// per line). Ends when the agent stops.
        #[arg(long)]
        watch: bool,
    },
    /// Sign out: revoke the session at the IdP and wipe it from the keychain.
    Logout,
    /// Grant SERVER (every server without one) anew now, also one that was refused.
    Refresh { server: Option<String> },
    /// Connect the `oauth` server SERVER: the browser opens once for its own sign-in and consent;
    /// after that the agent renews its tokens silently.
    Connect {
        server: String,
        /// Do not start the agent when none runs (exit 8 instead).
        #[arg(long)]
        no_start: bool,
    },
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
        /// With --header-json: when no token can be had (denied, not signed in, no agent, …) say
        /// why on stderr, print {"Authorization": "Lanyard error=\"<reason>\""} (no credential)
        /// and exit 0, so the AI client shows the server as failed instead of offering its own
        /// OAuth sign-in (Claude Code ignores a failing helper's output and falls back to OAuth).
        #[arg(long, requires = "header_json")]
        no_oauth_fallback: bool,
        /// The token must stay valid at least this long.
        #[arg(long, default_value_t = 60)]
        min_ttl: u64,
        /// For one request (METHOD URL): when the token is bound to this device's key (DPoP),
        /// also print the proof for that request (the second line; "DPoP" in --json and
        /// --header-json). A bound token is refused without it.
        #[arg(long, num_args = 2, value_names = ["METHOD", "URL"])]
        dpop: Option<Vec<String>>,
    },
    /// Serve SERVER to an AI client as a stdio MCP server, with a fresh token on every request
    /// (for clients that cannot send headers, e.g. Claude Desktop). Needs a running agent.
    Proxy { server: String },
    /// Run one scenario of the MCP conformance suite against SERVER_URL (used by the suite).
    ConformanceClient { server_url: String },
    /// Wire AI clients (Claude Code, Claude Desktop, VS Code, Cursor) to every server.
    #[command(subcommand)]
    Clients(clients::command::ClientsCommand),
    /// Show the effective managed policy, or validate a policy file before deploying it.
    #[command(subcommand)]
    Policy(policy_cmd::PolicyCommand),
    /// The client key the OS holds for private_key_jwt (a TPM, the Secure Enclave, a PKCS#11
    /// token, CNG): make it, show where it lives and its public JWK for registration.
    #[command(subcommand)]
    DeviceKey(device_key_cmd::DeviceKeyCommand),
    /// Write a diagnostics archive (.zip) for your helpdesk: versions, policy, status, discovery,
    /// clock skew, keychain state and the agent's last log lines, all redacted. Exits 0 whenever
    /// the archive is written (problems found are listed in it); never prints or stores a secret.
    Diagnose {
        /// Where to write the archive (e.g. lanyard-diagnostics.zip).
        #[arg(long, short)]
        output: PathBuf,
    },
}

fn main() -> ExitCode {
    // Before any thread starts: the OS trust store must not be replaced from the environment.
    let forgotten = lanyard_core::oauth::http::forget_tls_environment();
    quiet_on_closed_stdout();
    let cli = Cli::parse();
    ExitCode::from(run(cli, &forgotten))
}

/// A reader that went away (`lanyard policy show | head -n 1`) ends the command as SIGPIPE ends
/// other tools: exit 141, nothing on stderr. Rust ignores SIGPIPE, so `println!` meets the closed
/// pipe as an error and panics; this hook turns exactly that panic into the quiet exit and leaves
/// every other panic to the default hook.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        // EPIPE is "os error 32" on Unix; a closed pipe is ERROR_BROKEN_PIPE (109) or
        // ERROR_NO_DATA (232) on Windows.
        let closed = ["(os error 32)", "(os error 109)", "(os error 232)"]
            .iter()
            .any(|code| message.contains(code));
        if message.starts_with("failed printing to stdout") && closed {
            std::process::exit(141);
        }
        default(info);
    }));
}

fn run(cli: Cli, forgotten_environment: &[&str]) -> u8 {
    // The helpers' hot path (`token` above all) starts no runtime, no logger and reads no policy.
    let endpoint = || match lanyard_core::ipc::default_endpoint() {
        Ok(endpoint) => Ok(endpoint),
        Err(e) => {
            eprintln!("lanyard: {e}");
            Err(exit::MISCONFIGURED)
        }
    };
    // Where the policy comes from: the named file (refused over a managed policy that does not
    // set dev_mode), else this OS's management channel.
    let sources = || match PolicySources::chosen_checked(cli.policy.as_deref()) {
        Ok(sources) => Ok(sources),
        Err(e) => {
            eprintln!("lanyard: {e}");
            Err(exit::MISCONFIGURED)
        }
    };
    match cli.command {
        Command::Token {
            server,
            json,
            header_json,
            no_oauth_fallback,
            min_ttl,
            dpop,
        } => {
            let Ok(endpoint) = endpoint() else {
                if no_oauth_fallback {
                    // The reason is on stderr already; the header keeps the client off OAuth.
                    let header = over_agent::refusal_header("misconfigured");
                    return match std::io::Write::write_all(
                        &mut std::io::stdout(),
                        format!("{header}\n").as_bytes(),
                    ) {
                        Ok(()) => 0,
                        Err(_) => exit::MISCONFIGURED,
                    };
                }
                return exit::MISCONFIGURED;
            };
            let format = if json {
                over_agent::TokenFormat::Json
            } else if no_oauth_fallback {
                over_agent::TokenFormat::HeadersHelper
            } else if header_json {
                over_agent::TokenFormat::HeaderJson
            } else {
                over_agent::TokenFormat::Plain
            };
            let proof_for = dpop.and_then(|pair| match pair.as_slice() {
                [method, url] => Some(lanyard_core::ipc::ProofRequest {
                    method: method.to_ascii_uppercase(),
                    url: url.clone(),
                    nonce: None,
                }),
                _ => None,
            });
            over_agent::token(&endpoint, &server, format, min_ttl, proof_for)
        }
        Command::Status { json, watch: false } => {
            endpoint().map_or_else(|c| c, |e| over_agent::status(&e, json))
        }
        Command::Status { json, watch: true } => {
            endpoint().map_or_else(|c| c, |e| over_agent::status_watch(&e, json))
        }
        Command::Servers => match (endpoint(), sources()) {
            (Ok(e), Ok(sources)) => over_agent::servers(&e, &sources),
            (Err(c), _) | (_, Err(c)) => c,
        },
        Command::Logout => endpoint().map_or_else(|c| c, |e| over_agent::logout(&e)),
        Command::Refresh { server } => {
            endpoint().map_or_else(|c| c, |e| over_agent::refresh(&e, server.as_deref()))
        }
        Command::Connect { server, no_start } => match (endpoint(), sources()) {
            (Ok(e), Ok(sources)) => {
                over_agent::connect(&e, &sources, cli.no_keychain, &server, no_start)
            }
            (Err(c), _) | (_, Err(c)) => c,
        },
        Command::Login { device, no_start } => match (endpoint(), sources()) {
            (Ok(e), Ok(sources)) => {
                over_agent::login(&e, &sources, cli.no_keychain, device, no_start)
            }
            (Err(c), _) | (_, Err(c)) => c,
        },
        Command::Clients(command) => {
            sources().map_or_else(|c| c, |s| clients::command::run(&command, &s))
        }
        Command::Policy(command) => sources().map_or_else(|c| c, |s| policy_cmd::run(&command, &s)),
        Command::DeviceKey(command) => {
            sources().map_or_else(|c| c, |s| device_key_cmd::run(&command, &s))
        }
        Command::Diagnose { output } => {
            sources().map_or_else(|c| c, |s| diagnose::run(&output, &s, cli.no_keychain))
        }
        Command::Agent { log_file } => {
            // The policy's `settings.log_level` (read once here; a change applies at the next
            // start, as its spec says); `LANYARD_LOG` still wins.
            let level = sources()
                .ok()
                .and_then(|s| s.load_with(lanyard_core::policy::FileChecks::Skip).ok())
                .map(|snapshot| snapshot.policy.settings.log_level)
                .unwrap_or_default();
            if let Some(path) = log_file {
                match log_file::LogFile::open(&path, log_file::DEFAULT_ROTATION, true) {
                    Ok(file) => {
                        init_logging_to(level.filter(), log_sink::LogSink::to_file(file), false)
                    }
                    Err(e) => {
                        eprintln!(
                            "lanyard agent: cannot open the log file {}: {e}",
                            path.display()
                        );
                        return exit::FAILURE;
                    }
                }
            } else {
                init_logging(level.filter());
            }
            if !forgotten_environment.is_empty() {
                tracing::warn!(
                    ignored = forgotten_environment.join(", "),
                    "ignoring CA settings from the environment: Lanyard trusts the OS's \
                     certificates and the policy's settings.extra_ca_files only"
                );
            }
            match (endpoint(), sources()) {
                (Ok(e), Ok(sources)) => agent::run(sources, cli.no_keychain, e),
                (Err(c), _) | (_, Err(c)) => c,
            }
        }
        Command::Proxy { server } => {
            init_logging("warn");
            match (endpoint(), sources()) {
                (Ok(e), Ok(sources)) => proxy::run(&e, &server, &sources),
                (Err(c), _) | (_, Err(c)) => c,
            }
        }
        Command::ConformanceClient { server_url } => {
            init_logging("error");
            conformance_client(&server_url)
        }
    }
}

/// Logs to stderr, filtered by `LANYARD_LOG` (default `default`). Nothing secret is ever logged; a
/// full disk or a closed stderr loses lines (counted, reported once) but never stops the process.
fn init_logging(default: &str) {
    init_logging_to(
        default,
        log_sink::LogSink::default(),
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
    );
}

/// Logs to `sink`, filtered by `LANYARD_LOG` (default `default`).
fn init_logging_to(default: &str, sink: log_sink::LogSink, ansi: bool) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LANYARD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(sink)
        .with_ansi(ansi)
        .init();
}

/// The small runtime the one-shot async commands run on.
fn two_worker_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

fn conformance_client(server_url: &str) -> u8 {
    let runtime = match two_worker_runtime() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("lanyard: cannot start: {e}");
            return exit::FAILURE;
        }
    };
    let code = runtime.block_on(async {
        match conformance::run(server_url).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("lanyard conformance-client: FAILED: {e:#}");
                exit::FAILURE
            }
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(2));
    code
}
