//! A second Unix user for ownership tests: created with `useradd` by the test that needs it and
//! removed (`userdel`) when dropped, so files can really belong to someone else. Creating a user
//! needs root: [`OtherUser::create`] returns `None` after printing a loud SKIPPED line otherwise.
#![allow(dead_code)]

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// A Unix user that exists while this value lives.
#[derive(Debug)]
pub struct OtherUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl OtherUser {
    /// Creates a fresh system user (no home, no login shell); `None` when not root.
    pub fn create(test: &str) -> Option<Self> {
        let me = Command::new("id").arg("-u").output().expect("run id");
        if String::from_utf8_lossy(&me.stdout).trim() != "0" {
            println!(
                "SKIPPED {test}: creating a second Unix user needs root (these tests run as root \
                 in CI); the ownership checks were NOT exercised"
            );
            return None;
        }
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "lyt{}x{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        // Other tests may be adding users at the same time: /etc/passwd's lock makes one wait.
        let mut last = String::new();
        for _ in 0..50 {
            let out = Command::new("useradd")
                .args([
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                ])
                .arg(&name)
                .output()
                .expect("run useradd");
            if out.status.success() {
                let id = |flag: &str| -> u32 {
                    let out = Command::new("id")
                        .args([flag, &name])
                        .output()
                        .expect("run id");
                    String::from_utf8_lossy(&out.stdout)
                        .trim()
                        .parse()
                        .expect("a numeric id")
                };
                let (uid, gid) = (id("-u"), id("-g"));
                return Some(Self { name, uid, gid });
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("useradd {name} failed: {last}");
    }

    /// `program` run as this user (no supplementary groups), through `setpriv`.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("setpriv");
        command
            .arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .arg("--clear-groups")
            .arg(program);
        command
    }

    /// GETs `url` with curl run as this user: the HTTP status it got (`000` for none).
    pub fn curl(&self, url: &str) -> String {
        self.curl_with(&[], url)
    }

    /// curl run as this user with `extra` arguments (e.g. `--data …` to POST): the HTTP status.
    pub fn curl_with(&self, extra: &[&str], url: &str) -> String {
        let out = self
            .command("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "10",
            ])
            .args(extra)
            .arg(url)
            .output()
            .expect("run curl as the other user");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for OtherUser {
    fn drop(&mut self) {
        for _ in 0..50 {
            let status = Command::new("userdel").arg(&self.name).status();
            if status.is_ok_and(|s| s.success()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("could not remove the test user {}", self.name);
    }
}
