//! The native tray icon and menu for a [`TrayLook`] (tray-icon + muda): the icon's pixels, the
//! menu items with their action ids, and applying a new look to the live icon. What the menu says
//! is decided in `lanyard_desktop::look`; what an item does, in `app`.

use lanyard_desktop::actions::MenuAction;
use lanyard_desktop::look::{icon_png, TrayLook, TRAY_ID};
use muda::{Menu, MenuItem, PredefinedMenuItem, Submenu};
use tray_icon::{Icon, TrayIcon, TrayIconBuilder};

/// A failure to build the icon or the menu.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The icon of a look, decoded to RGBA.
pub fn icon(look: &TrayLook) -> Result<Icon, Error> {
    let png = icon_png(look.icon).ok_or_else(|| format!("no embedded icon {}", look.icon))?;
    let image = image::load_from_memory_with_format(png, image::ImageFormat::Png)?.into_rgba8();
    let (width, height) = image.dimensions();
    Ok(Icon::from_rgba(image.into_raw(), width, height)?)
}

/// The native menu for a look: the headline, the actions, the clients submenu before Quit.
pub fn native_menu(look: &TrayLook) -> Result<Menu, Error> {
    let menu = Menu::new();
    for (index, item) in look.menu.iter().enumerate() {
        let id = item
            .action
            .as_ref()
            .map(MenuAction::id)
            .unwrap_or_else(|| format!("info-{index}"));
        if item.action == Some(MenuAction::Quit) {
            if !look.clients.is_empty() {
                let submenu = Submenu::with_id("clients", "Connect AI clients", true);
                for client in &look.clients {
                    let id = client
                        .action
                        .as_ref()
                        .map(MenuAction::id)
                        .unwrap_or_default();
                    submenu.append(&MenuItem::with_id(id, &client.label, client.enabled, None))?;
                }
                menu.append(&submenu)?;
            }
            menu.append(&PredefinedMenuItem::separator())?;
        }
        menu.append(&MenuItem::with_id(id, &item.label, item.enabled, None))?;
        if index == 0 {
            menu.append(&PredefinedMenuItem::separator())?;
        }
    }
    Ok(menu)
}

/// Creates the tray icon showing `look`.
pub fn create(look: &TrayLook) -> Result<TrayIcon, Error> {
    Ok(TrayIconBuilder::new()
        .with_id(TRAY_ID)
        .with_icon(icon(look)?)
        .with_tooltip(&look.tooltip)
        .with_menu(Box::new(native_menu(look)?))
        .with_menu_on_left_click(true)
        .build()?)
}

/// Shows `look` on the live tray icon.
pub fn apply(tray: &TrayIcon, look: &TrayLook) -> Result<(), Error> {
    tray.set_icon(Some(icon(look)?))?;
    tray.set_tooltip(Some(&look.tooltip))?;
    tray.set_menu(Some(Box::new(native_menu(look)?)));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use lanyard_desktop::look::{icon_name, PanelTheme};
    use lanyard_desktop::snapshot::TrayHealth;

    #[test]
    fn every_embedded_icon_decodes_to_square_rgba() {
        for health in [
            TrayHealth::SignedOut,
            TrayHealth::AllGood,
            TrayHealth::Degraded,
            TrayHealth::ActionNeeded,
        ] {
            for theme in [PanelTheme::Light, PanelTheme::Dark] {
                let name = icon_name(health, theme);
                let png = icon_png(name).expect("embedded");
                let image = image::load_from_memory_with_format(png, image::ImageFormat::Png)
                    .expect("decodes")
                    .into_rgba8();
                let (w, h) = image.dimensions();
                assert!(w == h && w >= 16, "{name}: {w}x{h}");
            }
        }
    }
}
