//! The `lanyard-tray` executable: reads its options, refuses politely without a display (GTK
//! would abort), and runs the tray app.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use lanyard_core::clock::SystemClock;
use lanyard_tray::host::HostOptions;
use lanyard_tray::tray::PanelTheme;
use lanyard_tray::{link, window, Role, RunOptions};

#[derive(Parser)]
#[command(
    name = "lanyard-tray",
    version,
    about = "Lanyard in the tray: sign in once, health at a glance."
)]
struct Args {
    /// A policy file for an agent the tray starts, instead of this OS's managed policy (as
    /// `lanyard --policy`).
    #[arg(long, env = "LANYARD_POLICY")]
    policy: Option<PathBuf>,
    /// An agent the tray starts keeps the session in memory only (no keychain).
    #[arg(
        long,
        env = "LANYARD_NO_KEYCHAIN",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    no_keychain: bool,
    /// Open the status window at start.
    #[arg(long)]
    show: bool,
    /// Be the status window only (what "Open status…" starts); ends when the window closes.
    #[arg(long, conflicts_with = "show")]
    window: bool,
}

fn has_display() -> bool {
    ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|d| !d.is_empty()))
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !args.window {
        window::quiet_gdk();
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LANYARD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,lanyard_tray=info")),
        )
        .with_writer(std::io::stderr)
        .init();
    if cfg!(target_os = "linux") && !has_display() {
        eprintln!(
            "lanyard-tray: no display ($DISPLAY and $WAYLAND_DISPLAY are unset); \
             on this machine use the command line: `lanyard login`, `lanyard status`"
        );
        return ExitCode::from(2);
    }
    let endpoint = match lanyard_core::ipc::default_endpoint() {
        Ok(endpoint) => endpoint,
        Err(e) => {
            eprintln!("lanyard-tray: cannot find the agent's endpoint: {e}");
            return ExitCode::FAILURE;
        }
    };
    let host_options = HostOptions {
        endpoint,
        policy_path: args.policy,
        clock: Arc::new(SystemClock),
        theme: PanelTheme::detect(),
        cli: link::find_cli(),
    };
    match lanyard_tray::run(
        RunOptions {
            role: if args.window {
                Role::Window
            } else {
                Role::Tray
            },
            show_window: args.show,
            no_keychain: args.no_keychain,
        },
        host_options,
    ) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lanyard-tray: {e}");
            ExitCode::FAILURE
        }
    }
}
