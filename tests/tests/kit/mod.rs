//! Shared by the secret-leak test, the keyring test, the broker, secrets and local-fault tests and
//! the sign-in benchmark (included there by path): the `lanyard` and testbed executables, a
//! scripted browser that signs in through the testbed's login page, the testbed's clock
//! as the engine's [`Clock`], and an engine configured for a running testbed.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use lanyard_core::clock::Clock;
use lanyard_core::engine::EngineConfig;
use lanyard_core::policy::Policy;
use lanyard_core::signin::Browser;
use lanyard_core::store::SecretStore;
use lanyard_core::wake::{watch_drift, WakeNotices};
use lanyard_testbed::{complete_login, BrowserVisit, TestClock};
use url::Url;

/// A [`Browser`] that signs `user` in with the testbed's scripted browser, in a spawned task
/// (the engine's `open` must not block). Remembers what it saw.
#[derive(Debug)]
pub struct ScriptedBrowser {
    user: String,
    opened: Mutex<Vec<String>>,
    visits: Arc<Mutex<Vec<Result<BrowserVisit, String>>>>,
}

impl ScriptedBrowser {
    pub fn new(user: &str) -> Arc<Self> {
        Arc::new(Self {
            user: user.to_owned(),
            opened: Mutex::new(Vec::new()),
            visits: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// Authorization URLs opened so far.
    pub fn opened(&self) -> Vec<String> {
        self.opened
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Finished logins (the redirect followed, or why the login failed).
    pub fn visits(&self) -> Vec<Result<BrowserVisit, String>> {
        self.visits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Browser for ScriptedBrowser {
    fn open(&self, url: &Url) -> Result<(), String> {
        self.opened
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(url.to_string());
        let (url, user, visits) = (url.to_string(), self.user.clone(), self.visits.clone());
        tokio::spawn(async move {
            let visit = complete_login(&url, &user)
                .await
                .map_err(|e| format!("{e:#}"));
            visits.lock().unwrap_or_else(|p| p.into_inner()).push(visit);
        });
        Ok(())
    }
}

/// The testbed's clock as the engine's clock: advancing one advances both.
#[derive(Debug, Clone)]
pub struct SharedClock(pub TestClock);

impl Clock for SharedClock {
    fn now(&self) -> SystemTime {
        self.0.now()
    }

    /// The testbed's clock moves without telling anyone, so its jumps are found by the portable
    /// drift check (the macOS/Windows fallback path), run often.
    fn notices(&self) -> WakeNotices {
        watch_drift(Arc::new(self.clone()), Duration::from_millis(50))
    }
}

/// An engine configuration for a testbed policy (JSON); jumps of the testbed clock reach it through
/// [`SharedClock::notices`].
pub fn engine_config(
    policy: &serde_json::Value,
    store: Arc<dyn SecretStore>,
    clock: &TestClock,
    browser: Arc<dyn Browser>,
) -> EngineConfig {
    let mut parsed = match Policy::from_json(&policy.to_string(), "testbed policy") {
        Ok(p) => p,
        Err(errors) => panic!("the testbed policy is invalid: {errors:?}"),
    };
    // As in `support::start_engine`: without `settings.idle_after_secs` every server is kept
    // warm, since these tests exercise refreshes no client asked for.
    if policy.pointer("/settings/idle_after_secs").is_none() {
        parsed.settings.idle_after_secs = 0;
    }
    let policy = parsed;
    let mut config =
        EngineConfig::new(policy, store, Arc::new(SharedClock(clock.clone())), browser);
    config.sign_in_timeout = Duration::from_secs(30);
    config
}

/// The debug `lanyard` and `lanyard-testbed` executables, for tests that run them as processes.
pub struct Binaries {
    pub lanyard: std::path::PathBuf,
    pub testbed: std::path::PathBuf,
}

/// Builds (once per test process) and finds the `lanyard` and `lanyard-testbed` binaries.
pub fn binaries() -> &'static Binaries {
    static BINS: std::sync::OnceLock<Binaries> = std::sync::OnceLock::new();
    BINS.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args([
                "build",
                "-q",
                "-p",
                "lanyard-cli",
                "-p",
                "lanyard-testbed",
                "--bins",
            ])
            .current_dir(&root)
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building the binaries failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        let bins = Binaries {
            lanyard: target.join("debug/lanyard"),
            testbed: target.join("debug/lanyard-testbed"),
        };
        assert!(bins.lanyard.exists() && bins.testbed.exists());
        bins
    })
}
