//! The `lanyard-tray` executable: reads its options, refuses politely without a display (GTK
//! would abort), and runs the tray app.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use lanyard_core::clock::SystemClock;
use lanyard_core::policy::sources::platform::PolicySources;
use lanyard_core::signin::SystemBrowser;
use lanyard_core::store::{KeyringStore, MemoryStore, SecretStore};
use lanyard_tray::host::HostOptions;
use lanyard_tray::tray::PanelTheme;
use lanyard_tray::{clients, RunOptions};

#[derive(Parser)]
#[command(
    name = "lanyard-tray",
    version,
    about = "Lanyard in the tray: sign in once, health at a glance."
)]
struct Args {
    /// A policy file to use instead of this OS's managed policy (as `lanyard --policy`).
    #[arg(long, env = "LANYARD_POLICY")]
    policy: Option<PathBuf>,
    /// Keep the session in memory only (no keychain): it ends with this process.
    #[arg(
        long,
        env = "LANYARD_NO_KEYCHAIN",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    no_keychain: bool,
    /// Open the status window at start.
    #[arg(long)]
    show: bool,
}

/// How often the engine re-reads the wall clock when idle: one wake-up a minute at most from it.
const IDLE_TICK: Duration = Duration::from_secs(60);

fn has_display() -> bool {
    ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|d| !d.is_empty()))
}

fn main() -> ExitCode {
    let args = Args::parse();
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
    let store: Arc<dyn SecretStore> = if args.no_keychain {
        Arc::new(MemoryStore::new())
    } else {
        Arc::new(KeyringStore::new("lanyard"))
    };
    let host_options = HostOptions {
        policy: PolicySources::chosen(args.policy.as_deref()),
        store,
        browser: Arc::new(SystemBrowser),
        clock: Arc::new(SystemClock),
        tick: IDLE_TICK,
        theme: PanelTheme::from_env(std::env::var("LANYARD_TRAY_THEME").ok().as_deref()),
        cli: clients::find_cli(),
    };
    match lanyard_tray::run(
        RunOptions {
            show_window: args.show,
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
