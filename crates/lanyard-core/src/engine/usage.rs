//! What each server costs and serves, counted per day over a rolling 30 days: the ID-JAGs minted
//! at the identity provider, the jwt-bearer grants at its authorization server and the client
//! requests answered, plus when a client last asked (which decides whether the server is kept
//! warm). Kept in the agent's state file, which holds no secret (counts, server ids, times) and
//! survives restarts; the file is written owner-only, replaced atomically (a temporary file, then a
//! rename), and an unreadable one is set aside with a warning, never a reason not to start.
//!
//! Plain data owned by the actor; the write itself runs on a blocking thread, and a write that
//! finishes after a newer one is dropped, so the file never goes back in time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tracing::warn;

use super::schedule::USAGE_WINDOW_SECS;

const DAY_SECS: u64 = 86_400;
const FILE_VERSION: u32 = 1;

/// The record's version, for the actor's writes.
pub const VERSION: u32 = FILE_VERSION;

/// One day's counts for one server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayCount {
    #[serde(default)]
    pub id_jags: u64,
    #[serde(default)]
    pub jwt_bearer_grants: u64,
    #[serde(default)]
    pub client_requests: u64,
}

/// A server's totals over the last 30 days, as the status shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageCounts {
    /// ID-JAGs minted at the identity provider for this server.
    pub id_jags: u64,
    /// jwt-bearer grants answered by its authorization server.
    pub jwt_bearer_grants: u64,
    /// Client requests answered with a token.
    pub client_requests: u64,
    /// The window, in days (30).
    pub window_days: u64,
}

/// One server's record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerUsage {
    /// Counts per day (days since the Unix epoch, UTC).
    #[serde(default)]
    pub days: BTreeMap<u64, DayCount>,
    /// When a client last asked for this server's token (wall-clock seconds).
    #[serde(default)]
    pub last_requested: Option<u64>,
}

impl ServerUsage {
    /// Adds to today's counts, forgetting days that left the window.
    pub fn add(&mut self, now: u64, count: impl FnOnce(&mut DayCount)) {
        count(self.days.entry(now / DAY_SECS).or_default());
        self.prune(now);
    }

    fn prune(&mut self, now: u64) {
        let first = first_day(now);
        self.days.retain(|day, _| *day >= first);
    }

    /// The totals over the 30 days up to `now`.
    pub fn totals(&self, now: u64) -> UsageCounts {
        let first = first_day(now);
        let mut totals = UsageCounts {
            window_days: USAGE_WINDOW_SECS / DAY_SECS,
            ..UsageCounts::default()
        };
        for (_, day) in self.days.range(first..) {
            totals.id_jags += day.id_jags;
            totals.jwt_bearer_grants += day.jwt_bearer_grants;
            totals.client_requests += day.client_requests;
        }
        totals
    }
}

/// The first day inside the window ending at `now` (today and the 29 days before).
fn first_day(now: u64) -> u64 {
    (now / DAY_SECS).saturating_sub(USAGE_WINDOW_SECS / DAY_SECS - 1)
}

/// The state file's contents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    pub version: u32,
    #[serde(default)]
    pub servers: BTreeMap<String, ServerUsage>,
}

/// Reads the state file: a missing one is an empty record; an unreadable one is renamed to
/// `<name>.unreadable` (so the next write does not destroy what someone may want to look at) and
/// counts start again.
pub fn load(path: &Path) -> UsageRecord {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return UsageRecord::default(),
        Err(e) => {
            warn!(path = %path.display(), error = %e, "cannot read the state file; counting from zero");
            return UsageRecord::default();
        }
    };
    match serde_json::from_slice::<UsageRecord>(&bytes) {
        Ok(record) => record,
        Err(e) => {
            let aside = path.with_extension("unreadable");
            warn!(path = %path.display(), error = %e, aside = %aside.display(), "the state file is unreadable; set aside, counting from zero");
            let _ = std::fs::rename(path, &aside);
            UsageRecord::default()
        }
    }
}

/// Writes the state file in the background, in order: `sequence` numbers each write, and one
/// that finds a newer write already done is dropped.
#[derive(Clone)]
pub struct StateWriter {
    path: PathBuf,
    written: Arc<Mutex<u64>>,
}

impl StateWriter {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            written: Arc::new(Mutex::new(0)),
        }
    }

    /// Writes `record` now, on this thread (used at shutdown).
    pub fn write_now(&self, sequence: u64, record: &UsageRecord) {
        let bytes = match serde_json::to_vec_pretty(record) {
            Ok(bytes) => bytes,
            Err(e) => {
                warn!(error = %e, "cannot encode the state file");
                return;
            }
        };
        // A poisoned lock only means an earlier write panicked; the number is still right.
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        if *written >= sequence {
            return;
        }
        match write_private(&self.path, &bytes) {
            Ok(()) => *written = sequence,
            Err(e) => {
                warn!(path = %self.path.display(), error = %e, "cannot write the state file")
            }
        }
    }

    /// Writes `record` on a blocking thread.
    pub fn write_soon(&self, sequence: u64, record: UsageRecord) {
        let writer = self.clone();
        tokio::task::spawn_blocking(move || writer.write_now(sequence, &record));
    }
}

/// Writes `bytes` to `path` through a temporary file in the same folder, readable and writable
/// by the owner only, then renames it into place.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_private_dir(dir)?;
    }
    let temporary = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, path)
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_leave_the_window_after_thirty_days() {
        let mut usage = ServerUsage::default();
        let day0 = 20_000 * DAY_SECS;
        usage.add(day0, |d| d.id_jags += 3);
        usage.add(day0 + 29 * DAY_SECS, |d| d.id_jags += 1);
        assert_eq!(usage.totals(day0 + 29 * DAY_SECS).id_jags, 4);
        assert_eq!(usage.totals(day0 + 30 * DAY_SECS).id_jags, 1);
        usage.add(day0 + 30 * DAY_SECS, |d| d.client_requests += 1);
        assert_eq!(usage.days.len(), 2, "day 0 was forgotten");
    }

    #[cfg(unix)]
    #[test]
    fn the_state_file_is_owner_only_and_an_unreadable_one_is_set_aside() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("lanyard-usage-{}", rand::random::<u32>()));
        let path = dir.join("state").join("usage.json");
        let writer = StateWriter::new(path.clone());
        let mut record = UsageRecord {
            version: FILE_VERSION,
            ..UsageRecord::default()
        };
        record
            .servers
            .entry("docs".into())
            .or_default()
            .add(1_000_000, |d| d.id_jags += 1);
        writer.write_now(2, &record);
        // An older write arriving late does not replace it.
        writer.write_now(1, &UsageRecord::default());
        assert_eq!(load(&path), record);
        let mode = std::fs::metadata(&path).expect("file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = std::fs::metadata(path.parent().expect("parent"))
            .expect("dir")
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);

        std::fs::write(&path, b"{not json").expect("write");
        assert_eq!(load(&path), UsageRecord::default());
        assert!(path.with_extension("unreadable").exists());
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
