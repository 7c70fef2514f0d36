//! The `lanyard-tray` executable: Lanyard's tray icon, its menu and the notifications, a client of
//! `lanyard agent`. It reads its options, refuses politely without a display (GTK would abort),
//! hands over to a tray that already runs (which then opens the status window), and runs the tray.
//!
//! It links no webview: the status window is another executable (`lanyard-status`) that the tray
//! starts on "Open status…" and that ends when its window closes. Tokens never pass through here.
//!
//! On Windows it is a GUI-subsystem program: the HKLM Run entry the .msi writes starts it at every
//! sign-in without a console window, and it starts `lanyard agent` with `CREATE_NO_WINDOW`
//! (lanyard_desktop::link). `scripts/package/test.sh` reads the subsystem from the installed exe.

// No console window on Windows (also in debug builds: the installer test packages those).
#![cfg_attr(windows, windows_subsystem = "windows")]

mod app;
mod instance;
mod menu;
mod notify;
mod window;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use lanyard_core::wake::SystemClock;
use lanyard_desktop::host::HostOptions;
use lanyard_desktop::link;
use lanyard_desktop::look::PanelTheme;

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
    /// Started at login (the installer's Run entry, the user's login item): when a tray already
    /// runs, exit without asking it to open the status window.
    #[arg(long)]
    at_login: bool,
}

fn has_display() -> bool {
    ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|d| !d.is_empty()))
}

fn main() -> ExitCode {
    let args = Args::parse();
    window::quiet_gdk();
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
    match app::run(
        app::RunOptions {
            show_window: args.show,
            no_keychain: args.no_keychain,
            at_login: args.at_login,
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
