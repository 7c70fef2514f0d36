//! The host: loads the policy, runs the engine, and turns every engine status into what the tray,
//! the window and the notifications show.
//!
//! It owns the engine handle and the little state only a host has (the last tray look, the notices
//! already shown, autostart). It never reads tokens: the engine keeps them, the broker hands them
//! out. A policy that cannot be used is a state to show, not a reason to exit.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use lanyard_core::clock::Clock;
use lanyard_core::engine::{self, EngineConfig, EngineHandle};
use lanyard_core::policy::sources::linux_files::LinuxPolicyPaths;
use lanyard_core::policy::watch::{watch_linux, PolicyWatcher, DEFAULT_DEBOUNCE};
use lanyard_core::policy::{Policy, PolicyError, PolicySnapshot};
use lanyard_core::signin::Browser;
use lanyard_core::store::SecretStore;
use tauri::{AppHandle, Emitter, Manager, Runtime};
use tracing::{debug, warn};

use crate::actions::CommandError;
use crate::broker::BrokerState;
use crate::clients::AiClient;
use crate::notices::{Notice, NoticeTracker};
use crate::snapshot::{AutostartView, PolicyView, Snapshot};
use crate::tray::{self, PanelTheme, TrayLook};

/// The window event that carries a new [`Snapshot`].
pub const STATUS_EVENT: &str = "lanyard://status";

/// How the host is built.
pub struct HostOptions {
    pub policy_path: PathBuf,
    pub store: Arc<dyn SecretStore>,
    pub browser: Arc<dyn Browser>,
    pub clock: Arc<dyn Clock>,
    /// How often the engine re-reads the wall clock when nothing else happens. Every tick wakes
    /// the process, so the tray app keeps it long (idle wake-ups are a battery cost).
    pub tick: Duration,
    pub theme: PanelTheme,
    /// The `lanyard` CLI, for "Connect AI clients".
    pub cli: Option<PathBuf>,
}

/// The engine and everything shown about it.
pub struct Host {
    policy_path: PathBuf,
    policy_view: PolicyView,
    engine: Option<EngineHandle>,
    clock: Arc<dyn Clock>,
    theme: PanelTheme,
    cli: Option<PathBuf>,
    clients: Mutex<Vec<AiClient>>,
    autostart: Mutex<AutostartView>,
    broker: Mutex<Option<BrokerState>>,
    tray_look: Mutex<Option<TrayLook>>,
    tracker: Mutex<NoticeTracker>,
    notices_sent: Mutex<Vec<Notice>>,
    /// The organization's start-at-login setting and whether it is locked (mandatory).
    autostart_policy: AutostartView,
    /// Applies policy file changes to the running engine; dropped with the host.
    policy_watcher: Mutex<Option<PolicyWatcher>>,
}

/// Locks a mutex, carrying on with the data when another thread panicked while holding it (the
/// values here are plain display state, valid at every point).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Host {
    /// Loads the policy the way `lanyard agent` does (the managed file and its drop-ins, merged,
    /// with mandatory values locked), starts the engine on the current tokio runtime and watches
    /// the policy files so a fixed or changed policy applies live.
    pub fn start(options: HostOptions) -> Host {
        let paths = LinuxPolicyPaths::for_named_file(&options.policy_path);
        let host = Self::with_snapshot(paths.load(), options);
        if let Some(engine) = host.engine.clone() {
            // The watcher spawns onto the current runtime: ours.
            let runtime = tokio::runtime::Handle::try_current()
                .unwrap_or_else(|_| tauri::async_runtime::handle().inner().clone());
            let _inside = runtime.enter();
            let watched = watch_linux(paths, DEFAULT_DEBOUNCE, move |result| {
                let engine = engine.clone();
                tauri::async_runtime::spawn(async move {
                    let _ = match result {
                        Ok(snapshot) => engine.apply_policy(snapshot.policy).await,
                        Err(errors) => {
                            warn!(problems = errors.len(), "the changed policy is not usable");
                            let errors = errors.iter().map(|e| e.to_string()).collect();
                            engine.reject_policy(errors).await
                        }
                    };
                });
            });
            match watched {
                Ok(watcher) => *lock(&host.policy_watcher) = Some(watcher),
                Err(e) => warn!("policy changes will apply at the next start: {e}"),
            }
        }
        host
    }

    /// Like [`Host::start`] with an already loaded (or rejected) policy, without watching files.
    pub fn with_policy(loaded: Result<Policy, Vec<PolicyError>>, options: HostOptions) -> Host {
        let snapshot = loaded.map(|policy| PolicySnapshot {
            policy,
            origins: Default::default(),
        });
        Self::with_snapshot(snapshot, options)
    }

    fn with_snapshot(
        loaded: Result<PolicySnapshot, Vec<PolicyError>>,
        options: HostOptions,
    ) -> Host {
        // The engine spawns its actor on the current runtime, else on tauri's (ours, set at start).
        let runtime = tokio::runtime::Handle::try_current()
            .unwrap_or_else(|_| tauri::async_runtime::handle().inner().clone());
        let _inside = runtime.enter();
        let source = options.policy_path.display().to_string();
        let autostart_policy = match &loaded {
            Ok(snapshot) => AutostartView {
                enabled: snapshot.policy.settings.autostart,
                locked: snapshot
                    .origins
                    .get("settings.autostart")
                    .is_some_and(|origin| origin.locked),
            },
            Err(_) => AutostartView {
                enabled: true,
                locked: false,
            },
        };
        // An unusable policy does not stop the host (as with `lanyard agent`): the engine runs
        // Misconfigured, the window shows each problem, and a fixed policy applies live.
        let (policy, policy_errors, problems) = match loaded {
            Ok(snapshot) => (snapshot.policy, Vec::new(), Vec::new()),
            Err(errors) => {
                warn!(problems = errors.len(), "the policy is not usable");
                let lines = errors.iter().map(|e| e.to_string()).collect();
                (Policy::default(), lines, errors)
            }
        };
        let (policy_view, engine) = {
            {
                let support_url = policy.settings.support_url.clone();
                let mut config = EngineConfig::new(
                    policy,
                    options.store.clone(),
                    options.clock.clone(),
                    options.browser.clone(),
                );
                config.tick = Some(options.tick);
                config.policy_errors = policy_errors;
                match engine::start(config) {
                    Ok(engine) => {
                        let mut view = PolicyView::from_errors(&source, &problems);
                        view.support_url = support_url;
                        (view, Some(engine))
                    }
                    Err(e) => {
                        let problem = PolicyError {
                            source_name: source.clone(),
                            key_path: "settings".into(),
                            message: format!("the HTTP client cannot be set up: {e}"),
                        };
                        (PolicyView::from_errors(&source, &[problem]), None)
                    }
                }
            }
        };
        Self::assemble(options, policy_view, engine, autostart_policy)
    }

    /// A host from its parts; every piece of runtime state starts empty.
    fn assemble(
        options: HostOptions,
        policy_view: PolicyView,
        engine: Option<EngineHandle>,
        autostart_policy: AutostartView,
    ) -> Host {
        Host {
            policy_path: options.policy_path,
            policy_view,
            engine,
            clock: options.clock,
            theme: options.theme,
            cli: options.cli,
            clients: Mutex::new(Vec::new()),
            autostart: Mutex::new(AutostartView {
                enabled: false,
                locked: false,
            }),
            broker: Mutex::new(None),
            tray_look: Mutex::new(None),
            tracker: Mutex::new(NoticeTracker::default()),
            notices_sent: Mutex::new(Vec::new()),
            autostart_policy,
            policy_watcher: Mutex::new(None),
        }
    }

    /// The organization's start-at-login value, and whether it is locked.
    pub fn autostart_policy(&self) -> AutostartView {
        self.autostart_policy
    }

    /// A host without an engine because another host already serves this user.
    pub fn beside_other_host(options: HostOptions, other: BrokerState) -> Host {
        let source = options.policy_path.display().to_string();
        let host = Self::assemble(
            options,
            PolicyView::from_errors(&source, &[]),
            None,
            AutostartView {
                enabled: false,
                locked: false,
            },
        );
        host.set_broker(other);
        host
    }

    /// The engine, or why there is none.
    pub fn engine(&self) -> Result<&EngineHandle, CommandError> {
        self.engine
            .as_ref()
            .ok_or_else(|| match &*lock(&self.broker) {
                Some(BrokerState::OtherHost { pid, .. }) => CommandError::new(
                    "other_host",
                    format!(
                        "Another Lanyard already runs for you (pid {}); use that one or quit it",
                        pid.map(|p| p.to_string())
                            .unwrap_or_else(|| "unknown".into())
                    ),
                ),
                _ => CommandError::new(
                    "policy_invalid",
                    "Lanyard's settings from your organization are not usable; contact IT",
                ),
            })
    }

    pub fn set_broker(&self, state: BrokerState) {
        *lock(&self.broker) = Some(state);
    }

    pub fn policy_path(&self) -> &Path {
        &self.policy_path
    }

    pub fn cli(&self) -> Option<&Path> {
        self.cli.as_deref()
    }

    pub fn support_url(&self) -> Option<&str> {
        self.policy_view.support_url.as_deref()
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot::new(
            self.engine.as_ref().map(EngineHandle::status),
            self.policy_view.clone(),
            *lock(&self.autostart),
            lock(&self.broker).clone(),
            self.clock.unix_now(),
        )
    }

    pub fn set_clients(&self, clients: Vec<AiClient>) {
        *lock(&self.clients) = clients;
    }

    pub fn set_autostart(&self, view: AutostartView) {
        *lock(&self.autostart) = view;
    }

    pub fn autostart(&self) -> AutostartView {
        *lock(&self.autostart)
    }

    /// The look the tray shows now.
    pub fn tray_look(&self) -> Option<TrayLook> {
        lock(&self.tray_look).clone()
    }

    /// Every notice shown since start.
    pub fn notices_sent(&self) -> Vec<Notice> {
        lock(&self.notices_sent).clone()
    }

    /// The look `snapshot` calls for.
    pub fn look_for(&self, snapshot: &Snapshot) -> TrayLook {
        tray::look(snapshot, self.theme, &lock(&self.clients))
    }

    /// Decides which notices a snapshot calls for and records them as sent.
    fn take_notices(&self, snapshot: &Snapshot) -> Vec<Notice> {
        let Some(status) = &snapshot.status else {
            return Vec::new();
        };
        let notices = lock(&self.tracker).observe(status, snapshot.now);
        lock(&self.notices_sent).extend(notices.iter().cloned());
        notices
    }
}

/// Shows the host's current state everywhere: window event, tray, notifications.
pub fn present<R: Runtime>(app: &AppHandle<R>, host: &Host) {
    let snapshot = host.snapshot();
    if let Err(e) = app.emit(STATUS_EVENT, &snapshot) {
        debug!("no window took the status: {e}");
    }
    let look = host.look_for(&snapshot);
    if lock(&host.tray_look).as_ref() != Some(&look) {
        if let Err(e) = tray::apply(app, &look) {
            warn!("the tray icon could not be updated: {e}");
        }
        *lock(&host.tray_look) = Some(look);
    }
    for notice in host.take_notices(&snapshot) {
        show_notice(app, &notice);
    }
}

/// Shows a desktop notification when the notification plugin is there (not under the mock
/// runtime). A missing notification daemon is logged, not fatal.
pub fn show_notice<R: Runtime>(app: &AppHandle<R>, notice: &Notice) {
    use tauri_plugin_notification::NotificationExt;
    if app
        .try_state::<tauri_plugin_notification::Notification<R>>()
        .is_none()
    {
        return;
    }
    if let Err(e) = app
        .notification()
        .builder()
        .title(&notice.title)
        .body(&notice.body)
        .show()
    {
        debug!("notification not shown: {e}");
    }
}

/// Presents every engine status change until the engine stops.
pub fn watch<R: Runtime>(app: AppHandle<R>, host: Arc<Host>) {
    present(&app, &host);
    let Some(engine) = host.engine.clone() else {
        return;
    };
    tauri::async_runtime::spawn(async move {
        let mut statuses = engine.subscribe();
        while statuses.changed().await.is_ok() {
            present(&app, &host);
        }
        debug!("engine stopped; status watcher ends");
    });
}
