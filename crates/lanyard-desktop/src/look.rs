//! The tray icon's look: which icon, tooltip and menu a [`Snapshot`] calls for ([`TrayLook`]), and
//! the panel theme the icon is drawn for. Pure: building the native icon and menu is the tray
//! executable's job.
//!
//! Linux tray hosts send no click events, so every action is a menu item. This module decides what
//! the menu says; what an item *does* lives with the tray and the window.

use serde::Serialize;

use crate::actions::MenuAction;
use crate::clients::AiClient;
use crate::snapshot::{Snapshot, TrayHealth};
use lanyard_core::engine::{IdpStatus, ServerState};

/// The id of Lanyard's one tray icon.
pub const TRAY_ID: &str = "lanyard";

/// The colour of the panel the icon sits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PanelTheme {
    Light,
    Dark,
}

impl PanelTheme {
    /// `LANYARD_TRAY_THEME=light|dark` wins; otherwise dark, which is what Linux panels (GNOME's
    /// top bar, KDE's default, trayer) mostly are, whatever the window theme.
    pub fn from_env(value: Option<&str>) -> Self {
        match value.map(str::trim) {
            Some(v) if v.eq_ignore_ascii_case("light") => PanelTheme::Light,
            _ => PanelTheme::Dark,
        }
    }

    /// The panel's theme, best effort: `LANYARD_TRAY_THEME` wins; then `GTK_THEME` (a `:dark`
    /// variant or a `-dark` name); then the desktop's colour scheme
    /// (`org.gnome.desktop.interface color-scheme`, read with `gsettings`, Linux only):
    /// `prefer-light` is a light panel, `prefer-dark` and `default` a dark one (GNOME's top bar
    /// stays dark by default). Anything unknown: dark.
    pub fn detect() -> Self {
        if let Ok(value) = std::env::var("LANYARD_TRAY_THEME") {
            return Self::from_env(Some(&value));
        }
        if let Some(theme) = std::env::var("GTK_THEME")
            .ok()
            .and_then(|t| Self::from_gtk_theme(&t))
        {
            return theme;
        }
        Self::from_color_scheme(desktop_color_scheme().as_deref())
    }

    /// A light or dark theme named by `GTK_THEME` (`Adwaita:dark`, `Yaru-dark`), if it says.
    pub fn from_gtk_theme(value: &str) -> Option<Self> {
        let value = value.trim().to_ascii_lowercase();
        if value.is_empty() {
            return None;
        }
        if value.ends_with(":dark") || value.ends_with("-dark") {
            Some(PanelTheme::Dark)
        } else if value.ends_with(":light") || value.ends_with("-light") {
            Some(PanelTheme::Light)
        } else {
            None
        }
    }

    /// The theme for `gsettings get org.gnome.desktop.interface color-scheme`'s answer.
    pub fn from_color_scheme(value: Option<&str>) -> Self {
        match value.map(|v| v.trim().trim_matches('\'')) {
            Some("prefer-light") => PanelTheme::Light,
            _ => PanelTheme::Dark,
        }
    }
}

/// The desktop's colour scheme, when `gsettings` answers quickly.
#[cfg(target_os = "linux")]
fn desktop_color_scheme() -> Option<String> {
    let out = std::process::Command::new("gsettings")
        .args(["get", "org.gnome.desktop.interface", "color-scheme"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(not(target_os = "linux"))]
fn desktop_color_scheme() -> Option<String> {
    None
}

/// One menu line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MenuEntry {
    /// `None` for an information line that does nothing.
    pub action: Option<MenuAction>,
    pub label: String,
    pub enabled: bool,
}

/// Everything the tray shows for one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrayLook {
    /// The icon file's stem under `icons/`, e.g. `tray-all_good-dark`.
    pub icon: &'static str,
    pub tooltip: String,
    pub menu: Vec<MenuEntry>,
    /// The "Connect AI clients ▸" submenu; empty when `lanyard clients` is not available.
    pub clients: Vec<MenuEntry>,
}

/// The icon for a health on a panel.
pub fn icon_name(health: TrayHealth, theme: PanelTheme) -> &'static str {
    use PanelTheme::*;
    use TrayHealth::*;
    match (health, theme) {
        // Neutral while the agent is away: nothing to fix yet.
        (Reconnecting | SignedOut, Light) => "tray-signed_out-light",
        (Reconnecting | SignedOut, Dark) => "tray-signed_out-dark",
        (AllGood, Light) => "tray-all_good-light",
        (AllGood, Dark) => "tray-all_good-dark",
        (Degraded, Light) => "tray-degraded-light",
        (Degraded, Dark) => "tray-degraded-dark",
        (ActionNeeded, Light) => "tray-action_needed-light",
        (ActionNeeded, Dark) => "tray-action_needed-dark",
    }
}

/// The PNG bytes of an icon named by [`icon_name`].
pub fn icon_png(name: &str) -> Option<&'static [u8]> {
    macro_rules! icons {
        ($($stem:literal),*) => {
            match name {
                $($stem => Some(include_bytes!(concat!("../../../icons/", $stem, ".png")).as_slice()),)*
                _ => None,
            }
        };
    }
    icons!(
        "tray-signed_out-light",
        "tray-signed_out-dark",
        "tray-all_good-light",
        "tray-all_good-dark",
        "tray-degraded-light",
        "tray-degraded-dark",
        "tray-action_needed-light",
        "tray-action_needed-dark"
    )
}

fn entry(action: MenuAction, label: impl Into<String>, enabled: bool) -> MenuEntry {
    MenuEntry {
        action: Some(action),
        label: label.into(),
        enabled,
    }
}

/// What the tray should show for `snapshot`.
pub fn look(snapshot: &Snapshot, theme: PanelTheme, clients: &[AiClient]) -> TrayLook {
    let mut menu = vec![MenuEntry {
        action: None,
        label: snapshot.headline.clone(),
        enabled: false,
    }];
    let idp = snapshot.status.as_ref().map(|s| &s.idp);
    let has_idp = snapshot.status.is_some();
    match idp {
        Some(IdpStatus::SignedIn { .. }) => {
            let who = snapshot.user().unwrap_or("your account");
            menu.push(entry(MenuAction::SignOut, format!("Sign out {who}"), true));
        }
        Some(IdpStatus::SigningIn { .. }) => {
            menu.push(entry(MenuAction::SignIn, "Signing in…", false));
        }
        Some(IdpStatus::Restoring) => {
            menu.push(entry(MenuAction::SignIn, "Resuming session…", false));
        }
        _ => menu.push(entry(MenuAction::SignIn, "Sign in…", has_idp)),
    }
    menu.push(entry(MenuAction::OpenStatus, "Open status…", true));
    let signed_in = matches!(idp, Some(IdpStatus::SignedIn { .. }));
    menu.push(entry(MenuAction::RefreshAll, "Refresh all", signed_in));
    // Each `oauth` server not connected yet: one click opens the browser for its own sign-in.
    if let Some(status) = &snapshot.status {
        for server in status
            .servers
            .iter()
            .filter(|s| matches!(s.state, ServerState::NeedsConnect))
        {
            // While its browser sign-in is open, one connect is enough.
            let (label, enabled) = if server.connecting {
                (
                    format!(
                        "Connecting {}… (finish in your browser)",
                        server.display_name
                    ),
                    false,
                )
            } else {
                (format!("Connect {}…", server.display_name), true)
            };
            menu.push(entry(
                MenuAction::ConnectServer(server.id.clone()),
                label,
                enabled,
            ));
        }
    }
    let clients = clients
        .iter()
        .map(|c| entry(MenuAction::ConnectClient(c.id.clone()), &c.name, true))
        .collect();
    menu.push(entry(
        MenuAction::CopyDiagnostics,
        "Copy diagnostics…",
        true,
    ));
    menu.push(entry(MenuAction::Quit, "Quit Lanyard", true));
    TrayLook {
        icon: icon_name(snapshot.health, theme),
        tooltip: format!("Lanyard — {}", snapshot.headline),
        menu,
        clients,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{AutostartView, PolicyView};
    use lanyard_core::engine::{KeychainStatus, Status};

    fn snap(idp: IdpStatus) -> Snapshot {
        Snapshot::new(
            Some(Status {
                idp,
                servers: vec![],
                keychain: KeychainStatus::Available,
                policy: Default::default(),
                organization: Default::default(),
                idp_client_key: None,
                dpop_key: None,
                updated_at: 0,
            }),
            PolicyView::from_errors("p", &[]),
            AutostartView {
                enabled: true,
                locked: false,
            },
            crate::snapshot::AgentView::Connecting,
            0,
        )
    }

    #[test]
    fn every_health_and_theme_has_its_own_embedded_icon() {
        let mut seen = std::collections::HashSet::new();
        for health in [
            TrayHealth::SignedOut,
            TrayHealth::AllGood,
            TrayHealth::Degraded,
            TrayHealth::ActionNeeded,
        ] {
            for theme in [PanelTheme::Light, PanelTheme::Dark] {
                let name = icon_name(health, theme);
                assert!(seen.insert(name), "{name} used twice");
                let png = icon_png(name).expect("embedded");
                assert_eq!(&png[1..4], b"PNG");
            }
        }
        assert_eq!(icon_png("nope"), None);
    }

    #[test]
    fn theme_follows_gtk_theme_and_the_colour_scheme() {
        assert_eq!(
            PanelTheme::from_gtk_theme("Adwaita:dark"),
            Some(PanelTheme::Dark)
        );
        assert_eq!(
            PanelTheme::from_gtk_theme("Yaru-light"),
            Some(PanelTheme::Light)
        );
        assert_eq!(PanelTheme::from_gtk_theme("Adwaita"), None);
        assert_eq!(
            PanelTheme::from_color_scheme(Some("'prefer-light'\n")),
            PanelTheme::Light
        );
        assert_eq!(
            PanelTheme::from_color_scheme(Some("'prefer-dark'")),
            PanelTheme::Dark
        );
        assert_eq!(
            PanelTheme::from_color_scheme(Some("'default'")),
            PanelTheme::Dark
        );
        assert_eq!(PanelTheme::from_color_scheme(None), PanelTheme::Dark);
    }

    #[test]
    fn theme_defaults_to_dark_panels() {
        assert_eq!(PanelTheme::from_env(None), PanelTheme::Dark);
        assert_eq!(PanelTheme::from_env(Some(" Light ")), PanelTheme::Light);
        assert_eq!(PanelTheme::from_env(Some("bogus")), PanelTheme::Dark);
    }

    #[test]
    fn signed_out_menu_offers_sign_in_and_no_refresh() {
        let look = look(&snap(IdpStatus::SignedOut), PanelTheme::Dark, &[]);
        assert_eq!(look.icon, "tray-signed_out-dark");
        assert_eq!(look.tooltip, "Lanyard — Signed out");
        let sign_in = look
            .menu
            .iter()
            .find(|e| e.action == Some(MenuAction::SignIn))
            .expect("sign in");
        assert!(sign_in.enabled);
        let refresh = look
            .menu
            .iter()
            .find(|e| e.action == Some(MenuAction::RefreshAll))
            .expect("refresh");
        assert!(!refresh.enabled);
        assert!(look.clients.is_empty());
    }

    #[test]
    fn signed_in_menu_names_the_user_on_sign_out() {
        let idp = IdpStatus::SignedIn {
            subject: "alice".into(),
            email: Some("alice@example.com".into()),
            id_token_expires_at: 9,
            refresh_error: None,
            previous_subject: None,
        };
        let clients = [AiClient {
            id: "claude-code".into(),
            name: "Claude Code".into(),
        }];
        let look = look(&snap(idp), PanelTheme::Light, &clients);
        assert_eq!(look.icon, "tray-all_good-light");
        let labels: Vec<_> = look.menu.iter().map(|e| e.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "Signed in; no servers are configured",
                "Sign out alice@example.com",
                "Open status…",
                "Refresh all",
                "Copy diagnostics…",
                "Quit Lanyard"
            ]
        );
        assert_eq!(
            look.clients[0].action,
            Some(MenuAction::ConnectClient("claude-code".into()))
        );
    }

    #[test]
    fn an_unconnected_oauth_server_gets_its_own_connect_item() {
        let mut snapshot = snap(IdpStatus::SignedOut);
        let server = |id: &str, state: &str| {
            serde_json::from_value(serde_json::json!({
                "id": id, "display_name": id.to_uppercase(), "url": format!("https://{id}.example"),
                "mode": "oauth", "state": {"state": state}, "last_refresh": null,
                "authorization_server": null,
            }))
            .expect("a server status")
        };
        if let Some(status) = &mut snapshot.status {
            status.servers = vec![
                server("wiki", "needs_connect"),
                server("docs", "not_signed_in"),
            ];
        }
        let look = look(&snapshot, PanelTheme::Dark, &[]);
        let connects: Vec<_> = look
            .menu
            .iter()
            .filter(|e| matches!(e.action, Some(MenuAction::ConnectServer(_))))
            .collect();
        assert_eq!(connects.len(), 1, "{:?}", look.menu);
        assert_eq!(connects[0].label, "Connect WIKI…");
        assert_eq!(
            connects[0].action,
            Some(MenuAction::ConnectServer("wiki".into()))
        );
        assert!(connects[0].enabled, "connecting needs no IdP sign-in");

        // While its browser sign-in is open: said, and not offered twice.
        if let Some(status) = &mut snapshot.status {
            status.servers[0].connecting = true;
        }
        let connecting = super::look(&snapshot, PanelTheme::Dark, &[]);
        let item = connecting
            .menu
            .iter()
            .find(|e| e.action == Some(MenuAction::ConnectServer("wiki".into())))
            .expect("the item stays");
        assert_eq!(item.label, "Connecting WIKI… (finish in your browser)");
        assert!(!item.enabled);
    }
}
