//! The engine's published state: what the tray, the status window and `lanyard status` show.
//!
//! Every state is named after what the user can do about it. `Status` is plain serializable data
//! with no secrets in it; the engine replaces it on its `watch` channel after every change.

use serde::{Deserialize, Serialize};

use crate::policy::ServerMode;

/// Everything the engine knows, minus secrets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub idp: IdpStatus,
    pub servers: Vec<ServerStatus>,
    pub keychain: KeychainStatus,
    /// Whether the managed policy is in force (or why not).
    #[serde(default)]
    pub policy: PolicyStatus,
    /// What the organization's policy says about the tray and the window (the agent is the only
    /// reader of the policy; its clients follow this).
    #[serde(default)]
    pub organization: OrganizationSettings,
    /// Where the client key of the identity provider's leg lives, when it signs with one
    /// (`private_key_jwt`): IT asks.
    #[serde(default)]
    pub idp_client_key: Option<KeyLocation>,
    /// The device's DPoP key: where it lives and its thumbprint (the `jkt` bound tokens name).
    #[serde(default)]
    pub dpop_key: Option<DpopKeySummary>,
    /// Wall-clock seconds when this snapshot was made.
    pub updated_at: u64,
}

/// The device's DPoP key, as IT asks about it (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DpopKeySummary {
    pub home: crate::oauth::dpop::DpopKeyHome,
    /// Its RFC 7638 thumbprint.
    pub jkt: String,
}

/// The policy settings the tray and the status window follow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrganizationSettings {
    /// Where "Contact IT" points.
    pub support_url: Option<String>,
    /// Start Lanyard at login (the first-run default of the tray's switch).
    pub autostart: bool,
    /// Show desktop notifications.
    pub notifications: bool,
}

impl Default for OrganizationSettings {
    fn default() -> Self {
        OrganizationSettings::from(&crate::policy::Settings::default())
    }
}

impl From<&crate::policy::Settings> for OrganizationSettings {
    fn from(settings: &crate::policy::Settings) -> Self {
        OrganizationSettings {
            support_url: settings.support_url.clone(),
            autostart: settings.autostart,
            notifications: settings.notifications,
        }
    }
}

impl Status {
    pub fn server(&self, id: &str) -> Option<&ServerStatus> {
        self.servers.iter().find(|s| s.id == id)
    }

    /// Whether any server is still being worked on (for callers waiting for a settled state).
    pub fn is_settled(&self) -> bool {
        !matches!(self.idp, IdpStatus::SigningIn { .. } | IdpStatus::Restoring)
            && self
                .servers
                .iter()
                .all(|s| !matches!(s.state, ServerState::Granting))
    }

    /// One word for the tray: the worst thing going on.
    pub fn health(&self) -> Health {
        if let PolicyStatus::Misconfigured { .. } = self.policy {
            return Health::ActionNeeded;
        }
        // Signed out: that is the state to show. An `oauth` server (connected on its own) does
        // not change it, unless it is all there is (nothing waits for the sign-in); a machine's
        // server (no human) does, and then the servers speak for themselves.
        let only_oauth =
            !self.servers.is_empty() && self.servers.iter().all(|s| s.mode == ServerMode::Oauth);
        let mut health = match &self.idp {
            IdpStatus::SignedOut
                if !only_oauth
                    && self.servers.iter().all(|s| {
                        matches!(s.mode, ServerMode::EnterpriseManaged | ServerMode::Oauth)
                    }) =>
            {
                return Health::SignedOut
            }
            IdpStatus::NeedsSignIn { .. } => Health::ActionNeeded,
            _ => Health::AllGood,
        };
        for server in &self.servers {
            let h = match server.state {
                ServerState::Granted { .. } => Health::AllGood,
                ServerState::NotSignedIn
                | ServerState::NeedsConnect
                | ServerState::ReadyOnFirstUse { .. } => Health::AllGood,
                ServerState::Granting | ServerState::Failing { .. } => Health::Degraded,
                ServerState::Denied { .. } | ServerState::StepUpRequired { .. } => {
                    Health::ActionNeeded
                }
            };
            health = health.max(h);
        }
        health
    }
}

/// Overall health, ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    SignedOut,
    AllGood,
    Degraded,
    ActionNeeded,
}

/// The IdP session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum IdpStatus {
    /// Nobody is signed in; sign in to start.
    SignedOut,
    /// Resuming a saved session at start-up.
    Restoring,
    /// Waiting for the user in the browser (or to enter a device code).
    SigningIn {
        user_code: Option<String>,
        verification_uri: Option<String>,
    },
    SignedIn {
        subject: String,
        email: Option<String>,
        /// When the current ID token expires (it is refreshed before).
        id_token_expires_at: u64,
        /// Set while refreshing the session keeps failing.
        refresh_error: Option<String>,
        /// Set when this sign-in was by another account than the one signed in before (without a
        /// sign-out between): the user should check that they meant to switch, since another
        /// local user or page could have slipped its own sign-in in.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        previous_subject: Option<String>,
    },
    /// The session ended (refresh token expired or revoked, step-up): sign in again.
    NeedsSignIn { reason: String },
}

/// The managed policy's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PolicyStatus {
    /// The policy is valid and in force.
    #[default]
    Applied,
    /// No usable policy: nothing works until IT fixes it (each error names its source and key).
    Misconfigured { errors: Vec<String> },
    /// A changed policy was invalid; the last good one stays in force.
    ChangeRejected { errors: Vec<String> },
}

/// The keychain that holds the refresh token and client secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum KeychainStatus {
    Available,
    /// No Secret Service / keychain: the session lasts only while Lanyard runs.
    Unavailable {
        reason: String,
    },
    /// The keychain is locked: unlock it.
    Locked {
        reason: String,
    },
}

/// One MCP server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerStatus {
    pub id: String,
    pub display_name: String,
    pub url: String,
    pub mode: ServerMode,
    pub state: ServerState,
    /// When a token was last obtained.
    pub last_refresh: Option<u64>,
    /// The authorization server, once known.
    pub authorization_server: Option<String>,
    /// The last process a host handed this server's token to (audit; hosts that know the caller).
    #[serde(default)]
    pub last_used: Option<TokenUse>,
    /// Where the client key of this server's authorization-server leg lives, if it has one.
    #[serde(default)]
    pub client_key: Option<KeyLocation>,
    /// What this server cost and served over the last 30 days (kept across restarts).
    #[serde(default)]
    pub usage: super::usage::UsageCounts,
    /// Its current token is bound to this device's DPoP key: only `lanyard proxy` (or
    /// `lanyard token --dpop`) can use it, never a fixed header.
    #[serde(default)]
    pub dpop_bound: bool,
    /// An `oauth` server's connect is under way: the browser is open for its sign-in.
    #[serde(default)]
    pub connecting: bool,
}

/// Who took a server's token, and when (recorded by the broker per hand-out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUse {
    /// Wall-clock seconds of the hand-out.
    pub at: u64,
    pub requester: Requester,
}

/// The local process that asked for a token, as the OS vouches for it (peer credentials).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requester {
    pub pid: Option<u32>,
    /// The executable's path, when the OS tells (Linux: `/proc/<pid>/exe`).
    pub executable: Option<String>,
}

/// The grant of one server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ServerState {
    /// Waiting for the user to sign in.
    NotSignedIn,
    /// An `oauth` server not connected yet (or whose connection the server ended): *Connect*
    /// (`lanyard connect <id>`).
    NeedsConnect,
    Granting,
    Granted {
        expires_at: u64,
        scopes: Vec<String>,
        refresh_at: u64,
    },
    /// The organization's IdP policy said no. Lanyard does not retry by itself.
    Denied {
        code: String,
        description: Option<String>,
    },
    /// The IdP wants a fresher sign-in for this server.
    StepUpRequired {
        max_age: Option<u64>,
    },
    /// Something went wrong; Lanyard retries at `retry_at`.
    Failing {
        error: String,
        retry_at: u64,
        attempts: u32,
    },
    /// Not kept warm in the background: the next client request mints a token (one wait of
    /// about two round trips). Nothing is wrong.
    ReadyOnFirstUse {
        reason: IdleReason,
    },
}

/// Why a server is ready on first use instead of kept warm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdleReason {
    /// No client asked for it within `settings.idle_after_secs` (or at all, for a server in
    /// `settings.on_demand_servers`).
    Unused,
    /// It minted 90 % of `settings.id_jag_monthly_budget` in the last 30 days: background
    /// refreshes stop; clients' requests are still answered.
    NearBudget,
}

// ---- the actor's status -------------------------------------------------------------------

use super::slots::IdpPhase;
use crate::device_key::{configured_location, KeyLocation};

impl super::Actor {
    pub(super) fn build_status(&self) -> Status {
        let idp = match &self.idp.phase {
            IdpPhase::SignedOut => IdpStatus::SignedOut,
            IdpPhase::Restoring => IdpStatus::Restoring,
            IdpPhase::SigningIn {
                user_code,
                verification_uri,
            } => IdpStatus::SigningIn {
                user_code: user_code.clone(),
                verification_uri: verification_uri.clone(),
            },
            IdpPhase::SignedIn => match &self.idp.tokens {
                Some(t) => IdpStatus::SignedIn {
                    subject: t.info.subject.clone(),
                    email: t.info.email.clone(),
                    id_token_expires_at: t.info.expires_at,
                    refresh_error: self.idp.refresh_error.clone(),
                    previous_subject: self.idp.previous_subject.clone(),
                },
                None => IdpStatus::NeedsSignIn {
                    reason: "the session is being renewed".into(),
                },
            },
            IdpPhase::NeedsSignIn(reason) => IdpStatus::NeedsSignIn {
                reason: reason.clone(),
            },
        };
        let now = self.now();
        let servers = self
            .servers
            .values()
            .map(|slot| ServerStatus {
                id: slot.policy.id.clone(),
                display_name: slot.policy.display_name.clone(),
                url: slot.policy.url.clone(),
                mode: slot.policy.mode,
                state: slot.state.clone(),
                last_refresh: slot.last_refresh,
                authorization_server: slot
                    .target
                    .as_ref()
                    .map(|t| t.authorization_server.issuer.clone())
                    .or_else(|| slot.connected_issuer.clone()),
                last_used: slot.last_used.clone(),
                client_key: configured_location(&slot.policy.client_auth),
                usage: self.usage_totals(&slot.policy.id, now),
                dpop_bound: slot.token.as_ref().is_some_and(|t| t.dpop_jkt.is_some()),
                connecting: slot.connect_began_after.is_some(),
            })
            .collect();
        let dpop = super::current_dpop_key(&self.dpop);
        Status {
            idp,
            servers,
            keychain: self.keychain.clone(),
            policy: self.policy_status.clone(),
            organization: OrganizationSettings::from(&self.config.policy.settings),
            idp_client_key: self
                .config
                .policy
                .idp
                .as_ref()
                .and_then(|idp| configured_location(&idp.client_auth)),
            dpop_key: Some(DpopKeySummary {
                home: dpop.home(),
                jkt: dpop.thumbprint().to_owned(),
            }),
            updated_at: now,
        }
    }

    pub(super) fn publish(&mut self) {
        let status = self.build_status();
        self.status_tx.send_if_modified(|current| {
            let changed = current.idp != status.idp
                || current.servers != status.servers
                || current.keychain != status.keychain
                || current.policy != status.policy
                || current.organization != status.organization
                || current.idp_client_key != status.idp_client_key
                || current.dpop_key != status.dpop_key;
            if changed {
                *current = status;
            }
            changed
        });
    }
}
