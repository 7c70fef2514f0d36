//! Real PKCS#11 key stores for tests, each private to one test process: SoftHSM2 (a software
//! token) and a TPM 2.0 simulated by `swtpm`, reached through `tpm2-pkcs11`. Both are the
//! Debian packages an administrator would install (`make test` installs them); nothing here is a
//! stand-in for the module Lanyard loads.
//!
//! The modules read their configuration from the environment at load time (`SOFTHSM2_CONF`,
//! `TPM2_PKCS11_TCTI`, `TPM2_PKCS11_STORE`), so each store also gives the variables for child
//! processes, and [`SoftHsm::start`] / [`SoftTpm::start`] set them in this process too: one
//! store of each kind per test process (nextest runs every test in its own).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian installs SoftHSM2's module.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// Where Debian installs tpm2-pkcs11's module.
pub const TPM2_PKCS11_MODULE: &str = "/usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so";

fn scratch(kind: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "lanyard-{kind}-{}-{:x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).expect("key store scratch dir");
    dir
}

fn require(path: &str, package: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: install {package} (scripts/install-deps.sh does)"
    );
}

/// A SoftHSM2 token directory of its own.
pub struct SoftHsm {
    dir: PathBuf,
    pub module: PathBuf,
    env: Vec<(String, String)>,
}

impl SoftHsm {
    /// A fresh, empty SoftHSM2 store (no token yet), its configuration exported.
    pub fn start() -> Self {
        require(SOFTHSM_MODULE, "softhsm2");
        let dir = scratch("softhsm");
        std::fs::create_dir_all(dir.join("tokens")).expect("tokens dir");
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                dir.join("tokens").display()
            ),
        )
        .expect("softhsm2.conf");
        let env = vec![("SOFTHSM2_CONF".to_owned(), conf.display().to_string())];
        export(&env);
        Self {
            dir,
            module: SOFTHSM_MODULE.into(),
            env,
        }
    }

    /// The variables a child process needs to see this store.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }
}

impl Drop for SoftHsm {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TPM 2.0 simulator (`swtpm`) on a loopback port of its own, with a tpm2-pkcs11 store.
pub struct SoftTpm {
    child: Child,
    dir: PathBuf,
    pub module: PathBuf,
    env: Vec<(String, String)>,
}

impl SoftTpm {
    /// Starts `swtpm` and exports tpm2-pkcs11's variables pointing at it.
    pub fn start() -> Self {
        require("/usr/bin/swtpm", "swtpm");
        require(
            TPM2_PKCS11_MODULE,
            "libtpm2-pkcs11-1 and libtss2-tcti-swtpm0",
        );
        let dir = scratch("swtpm");
        std::fs::create_dir_all(dir.join("state")).expect("state dir");
        std::fs::create_dir_all(dir.join("store")).expect("store dir");
        let (port, child) = (0..20)
            .find_map(|_| {
                let port = free_port_pair()?;
                let child = Command::new("swtpm")
                    .args(["socket", "--tpm2", "--tpmstate"])
                    .arg(format!("dir={}", dir.join("state").display()))
                    .args(["--server"])
                    .arg(format!("type=tcp,bindaddr=127.0.0.1,port={port}"))
                    .args(["--ctrl"])
                    .arg(format!("type=tcp,bindaddr=127.0.0.1,port={}", port + 1))
                    .args(["--flags", "not-need-init,startup-clear"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .ok()?;
                let mut child = child;
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline {
                    if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                        return Some((port, child));
                    }
                    if child.try_wait().ok().flatten().is_some() {
                        return None; // the port was taken meanwhile: another pair
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = child.kill();
                None
            })
            .expect("swtpm did not start");
        let env = vec![
            (
                "TPM2_PKCS11_TCTI".to_owned(),
                format!("swtpm:host=127.0.0.1,port={port}"),
            ),
            (
                "TPM2_PKCS11_STORE".to_owned(),
                dir.join("store").display().to_string(),
            ),
            // tpm2-pkcs11 prints its warnings to stderr otherwise.
            ("TPM2_PKCS11_LOG_LEVEL".to_owned(), "0".to_owned()),
            ("TSS2_LOG".to_owned(), "all+none".to_owned()),
        ];
        export(&env);
        Self {
            child,
            dir,
            module: TPM2_PKCS11_MODULE.into(),
            env,
        }
    }

    /// The variables a child process needs to reach this TPM.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }
}

impl Drop for SoftTpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn export(env: &[(String, String)]) {
    for (name, value) in env {
        std::env::set_var(name, value);
    }
}

/// Two consecutive free loopback ports (swtpm's server and control), or `None`.
fn free_port_pair() -> Option<u16> {
    let first = TcpListener::bind("127.0.0.1:0").ok()?;
    let port = first.local_addr().ok()?.port();
    let _second = TcpListener::bind(("127.0.0.1", port.checked_add(1)?)).ok()?;
    Some(port)
}
