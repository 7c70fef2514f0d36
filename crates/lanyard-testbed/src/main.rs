//! The `lanyard-testbed` binary: `serve` runs the fake IdP, authorization servers and MCP servers
//! (the demo world with `--demo`) until Ctrl-C; `browse` and `device` are the scripted browser,
//! usable as `BROWSER="lanyard-testbed browse --user alice@example.com"`; `impostor` stands in
//! for another user's fake agent (see [`lanyard_testbed::impostor`]).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use lanyard_testbed::{complete_device, complete_login, demo, Testbed, TestbedConfig};

#[derive(Parser)]
#[command(
    name = "lanyard-testbed",
    version,
    about = "Lanyard's dev IdP + MCP servers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the testbed until Ctrl-C.
    Serve {
        /// Start the demo world (Docs, Tickets, Payroll; alice is denied Payroll).
        #[arg(long)]
        demo: bool,
        /// With --demo: add Wiki, a server in the standard MCP authorization (`mode: oauth` in
        /// the written policy) that the user connects once in the browser.
        #[arg(long, requires = "demo")]
        oauth_server: bool,
        /// Instead of the demo, a world of this many MCP servers (srv01…), nobody denied.
        #[arg(long, conflicts_with = "demo")]
        servers: Option<usize>,
        /// With --servers: the access-token lifetime of their authorization servers, in seconds.
        #[arg(long, default_value_t = 300, requires = "servers")]
        token_secs: u64,
        /// Latency added to every request, in milliseconds.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
        /// Write a Lanyard policy JSON pointing at the testbed to this path.
        #[arg(long)]
        write_policy: Option<PathBuf>,
        /// The written policy signs in with SAML 2.0 (`idp.sign_in: saml`) instead of OpenID
        /// Connect.
        #[arg(long)]
        saml: bool,
        /// Write a JSON summary of every URL (IdP, authorization servers, MCP servers) here.
        #[arg(long)]
        port_file: Option<PathBuf>,
        /// Bind this MCP server's tokens with DPoP: its authorization server offers it and binds
        /// a token to the proof's key (repeat for more servers).
        #[arg(long = "dpop", value_name = "SERVER")]
        dpop: Vec<String>,
        /// Log every token-endpoint request and write the log (times, numbers in flight, peaks)
        /// to this JSON file on Ctrl-C / SIGINT.
        #[arg(long)]
        traffic_file: Option<PathBuf>,
    },
    /// Sign in through the testbed IdP's login page and follow the redirect (a scripted browser).
    Browse {
        /// User to sign in as (sub, email or name).
        #[arg(long, default_value = "alice@example.com")]
        user: String,
        /// The authorization URL.
        url: String,
    },
    /// Pose as a Lanyard agent at SOCKET (security tests run this as another user): answer like
    /// a willing agent and record every line received in RECORD. Runs until killed.
    #[cfg(unix)]
    Impostor {
        /// The endpoint to listen on.
        #[arg(long)]
        socket: PathBuf,
        /// Every line received is appended here.
        #[arg(long)]
        record: PathBuf,
        /// The URL given for the server `docs`.
        #[arg(long, default_value = "http://impostor.example/mcp")]
        server_url: String,
        /// The support page claimed.
        #[arg(long, default_value = "file:///etc/passwd")]
        support_url: String,
    },
    /// Send one raw line to the socket at SOCKET, with no check of who listens there, and print
    /// the one line answered (security tests run this as another user).
    #[cfg(unix)]
    Ask {
        #[arg(long)]
        socket: PathBuf,
        line: String,
    },
    /// Approve a device-flow code (open `verification_uri_complete`) as a user.
    Device {
        /// User to approve as (sub, email or name).
        #[arg(long, default_value = "alice@example.com")]
        user: String,
        /// The verification URL including `user_code`.
        url: String,
    },
}

fn write_file(path: &PathBuf, value: &serde_json::Value) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve {
            demo: demo_world,
            oauth_server,
            servers,
            token_secs,
            latency_ms,
            write_policy,
            port_file,
            saml,
            traffic_file,
            dpop,
        } => {
            let latency = Duration::from_millis(latency_ms);
            let record = traffic_file.is_some();
            let testbed = if demo_world {
                demo::start_demo_world(latency, &dpop, oauth_server).await?
            } else {
                let mut config = match servers {
                    Some(n) => demo::wide_config(n, latency, Duration::from_secs(token_secs)),
                    None => TestbedConfig::default().with_latency(latency),
                };
                demo::bind_with_dpop(&mut config, &dpop);
                config.record_traffic = record;
                Testbed::start(config).await?
            };
            if let Some(path) = &write_policy {
                let mut policy = if saml {
                    demo::lanyard_saml_policy(&testbed)
                } else {
                    demo::lanyard_policy(&testbed)
                };
                demo::with_standard_oauth(&testbed, &mut policy);
                write_file(path, &policy)?;
            }
            if let Some(path) = &port_file {
                write_file(path, &demo::url_summary(&testbed))?;
            }
            println!("lanyard-testbed is running (Ctrl-C to stop)\n");
            print!("{}", demo::readable_summary(&testbed));
            if demo_world {
                println!("Policy: alice@example.com is denied Payroll.");
                if oauth_server {
                    println!("Wiki speaks the standard MCP authorization: connect it once (lanyard connect wiki).");
                }
            }
            if let Some(path) = &write_policy {
                println!("Lanyard policy written to {}", path.display());
                if saml {
                    println!(
                        "  sign-in          SAML 2.0 ({})",
                        testbed.idp().saml_sso_url()
                    );
                }
            }
            tokio::signal::ctrl_c()
                .await
                .context("waiting for Ctrl-C")?;
            if let Some(path) = &traffic_file {
                write_file(path, &serde_json::to_value(testbed.traffic().summary())?)?;
            }
            drop(testbed);
            Ok(())
        }
        Command::Browse { user, url } => {
            let visit = complete_login(&url, &user).await?;
            println!("{}", visit.redirect_url);
            if !visit.body.is_empty() {
                eprintln!("{}", visit.body);
            }
            Ok(())
        }
        #[cfg(unix)]
        Command::Impostor {
            socket,
            record,
            server_url,
            support_url,
        } => lanyard_testbed::impostor::serve(&lanyard_testbed::impostor::ImpostorConfig {
            socket,
            record,
            server_url,
            support_url,
        }),
        #[cfg(unix)]
        Command::Ask { socket, line } => {
            use std::io::{BufRead, Write};
            let mut stream = std::os::unix::net::UnixStream::connect(&socket)
                .with_context(|| format!("connecting to {}", socket.display()))?;
            // A server that refuses its peer may answer and hang up before reading: its answer
            // still counts when the write failed.
            let _ = writeln!(stream, "{line}");
            let mut reply = String::new();
            std::io::BufReader::new(stream).read_line(&mut reply)?;
            print!("{reply}");
            Ok(())
        }
        Command::Device { user, url } => {
            complete_device(&url, &user).await?;
            println!("approved as {user}");
            Ok(())
        }
    }
}
