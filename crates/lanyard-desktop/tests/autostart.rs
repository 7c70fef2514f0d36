//! Start at login through the real login item: on Linux an XDG autostart entry,
//! `~/.config/autostart/Lanyard.desktop`, that starts the tray executable. The first-run
//! default is applied once, a user's "off" then sticks, and the switch without a login item is a
//! named error.
#![cfg(target_os = "linux")]

use std::path::Path;
use std::sync::Arc;

use lanyard_core::wake::SystemClock;
use lanyard_desktop::autostart::{self, LoginItem};
use lanyard_desktop::host::{Host, HostOptions};
use lanyard_desktop::look::PanelTheme;

fn host() -> Host {
    Host::new(HostOptions {
        endpoint: "/nonexistent/agent.sock".into(),
        policy_path: None,
        clock: Arc::new(SystemClock),
        theme: PanelTheme::Dark,
        cli: None,
    })
}

#[test]
fn the_login_item_starts_the_tray_and_a_users_off_sticks() {
    let home = std::env::temp_dir().join(format!("lanyard-autostart-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    let config = home.join(".config");
    std::fs::create_dir_all(&config).expect("config dir");
    // The only test in this binary: no other thread reads the environment meanwhile.
    std::env::set_var("HOME", &home);
    std::env::set_var("XDG_CONFIG_HOME", &config);
    let entry = config.join("autostart/Lanyard.desktop");
    let tray = Path::new("/opt/lanyard/lanyard-tray");

    let item = LoginItem::new(tray).expect("a login item on Linux");
    let shown = host();
    // The window process only reads the state: nothing is written.
    autostart::init(Some(&item), &shown, false);
    assert!(!entry.exists());
    assert!(!shown.autostart().enabled);

    // The tray's first run applies the default (on) and remembers that it did.
    autostart::init(Some(&item), &shown, true);
    let text = std::fs::read_to_string(&entry).expect("the autostart entry");
    assert!(text.contains("Exec=/opt/lanyard/lanyard-tray"), "{text}");
    assert!(shown.autostart().enabled);
    assert!(config
        .join("dev.lanyard.tray/autostart-default-applied")
        .exists());

    // The user turns it off; the next start does not turn it back on.
    autostart::set(Some(&item), &shown, false).expect("off");
    assert!(!entry.exists());
    let restarted = host();
    autostart::init(Some(&item), &restarted, true);
    assert!(!entry.exists());
    assert!(!restarted.autostart().enabled);

    let e = autostart::set(None, &restarted, true).expect_err("no login item");
    assert_eq!(e.code, "unsupported");
    let _ = std::fs::remove_dir_all(&home);
}
