//! The `lanyard-status` executable: the status window, started by the tray on "Open status…" (or
//! by hand). Reads its options, refuses politely without a display (GTK would abort), and shows
//! the window until it closes.

// No console window on Windows: the tray starts it on "Open status…".
#![cfg_attr(windows, windows_subsystem = "windows")]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use lanyard_core::wake::SystemClock;
use lanyard_desktop::host::HostOptions;
use lanyard_desktop::link;
use lanyard_desktop::look::PanelTheme;
use lanyard_status::RunOptions;

#[derive(Parser)]
#[command(
    name = "lanyard-status",
    version,
    about = "Lanyard's status window: your sign-in and every server's state."
)]
struct Args {
    /// A policy file for an agent this process starts, instead of this OS's managed policy (as
    /// `lanyard --policy`); also shown in the window.
    #[arg(long, env = "LANYARD_POLICY")]
    policy: Option<PathBuf>,
    /// An agent this process starts keeps the session in memory only (no keychain).
    #[arg(
        long,
        env = "LANYARD_NO_KEYCHAIN",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    no_keychain: bool,
}

fn has_display() -> bool {
    ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|d| !d.is_empty()))
}

fn main() -> ExitCode {
    lanyard_status::window::note_process_start();
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LANYARD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,lanyard_status=info")),
        )
        .with_writer(std::io::stderr)
        .init();
    if cfg!(target_os = "linux") && !has_display() {
        eprintln!(
            "lanyard-status: no display ($DISPLAY and $WAYLAND_DISPLAY are unset); \
             on this machine use the command line: `lanyard status`"
        );
        return ExitCode::from(2);
    }
    let endpoint = match lanyard_core::ipc::default_endpoint() {
        Ok(endpoint) => endpoint,
        Err(e) => {
            eprintln!("lanyard-status: cannot find the agent's endpoint: {e}");
            return ExitCode::FAILURE;
        }
    };
    let host_options = HostOptions {
        endpoint,
        policy_path: args.policy,
        clock: Arc::new(SystemClock),
        theme: PanelTheme::Dark,
        cli: link::find_cli(),
    };
    match lanyard_status::run(
        RunOptions {
            no_keychain: args.no_keychain,
        },
        host_options,
    ) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lanyard-status: {e}");
            ExitCode::FAILURE
        }
    }
}
