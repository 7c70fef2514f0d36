//! Where secrets live: the [`SecretStore`] port, the OS keychain adapter and an in-memory store.
//!
//! Refresh tokens and client secrets are kept only here. A keychain that is absent or locked is a
//! named [`StoreError`], never a silent fallback to a file. Calls may block on D-Bus: async callers
//! run them on a blocking thread.
//!
//! Windows' Credential Manager holds at most 2,560 bytes per credential (1,280 UTF-16 characters
//! through `keyring`), less than some ID and refresh tokens. A value longer than the store's part
//! size is kept in parts: every part is written under a fresh generation first, then the entry
//! itself names that generation and the number of parts, then the previous generation's parts are
//! deleted. A crash at any point leaves either the old value or the new one readable, never a mix;
//! a missing part is a named error, not a wrong secret.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::secret::Secret;

/// Why the store could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error(
        "no keychain is available ({0}); on Linux start a Secret Service such as gnome-keyring"
    )]
    Unavailable(String),
    #[error("the keychain is locked ({0}); unlock it and try again")]
    Locked(String),
    #[error("the keychain failed: {0}")]
    Failed(String),
}

/// A small key → secret map.
pub trait SecretStore: Send + Sync + 'static {
    fn get(&self, key: &str) -> Result<Option<Secret>, StoreError>;
    fn set(&self, key: &str, value: &Secret) -> Result<(), StoreError>;
    /// Deleting a missing entry is not an error.
    fn delete(&self, key: &str) -> Result<(), StoreError>;
}

/// The OS keychain (Secret Service on Linux, Keychain on macOS, Credential Manager on Windows).
#[derive(Debug, Clone)]
pub struct KeyringStore {
    service: String,
    /// The longest value kept in one entry (characters); longer ones are kept in parts.
    part_chars: usize,
}

/// Credential Manager's 2,560-byte blob holds 1,280 UTF-16 code units; a margin stays free.
pub const CREDENTIAL_MANAGER_PART_CHARS: usize = 1_200;

/// What an entry kept in parts holds: `lanyard-parts:v1:<generation>:<count>`.
const PARTS_MARKER: &str = "lanyard-parts:v1:";

impl KeyringStore {
    /// This OS's keychain under `service`; values are split where the OS needs it (Windows).
    pub fn new(service: impl Into<String>) -> Self {
        let part_chars = if cfg!(windows) {
            CREDENTIAL_MANAGER_PART_CHARS
        } else {
            usize::MAX
        };
        Self::with_part_size(service, part_chars)
    }

    /// Like [`KeyringStore::new`], keeping values longer than `part_chars` in parts (tests use a
    /// small size to exercise the Windows path against any keychain).
    pub fn with_part_size(service: impl Into<String>, part_chars: usize) -> Self {
        Self {
            service: service.into(),
            part_chars: part_chars.max(1),
        }
    }

    fn entry(&self, key: &str) -> Result<keyring::Entry, StoreError> {
        keyring::Entry::new(&self.service, key).map_err(map_keyring_error)
    }

    fn raw_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        match self.entry(key)?.get_password() {
            Ok(value) => Ok(Some(value)),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(map_keyring_error(e)),
        }
    }

    /// Whether the keychain has an entry `key`, without handing its value to the caller (the
    /// diagnostics archive reports presence only). Reads the entry's attributes; keychains without
    /// attributes read the value internally and drop it.
    pub fn contains(&self, key: &str) -> Result<bool, StoreError> {
        match self.entry(key)?.get_attributes() {
            Ok(_) => Ok(true),
            Err(keyring::Error::NoEntry) => Ok(false),
            Err(e) => Err(map_keyring_error(e)),
        }
    }

    fn raw_delete(&self, key: &str) -> Result<(), StoreError> {
        match self.entry(key)?.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) => Err(map_keyring_error(e)),
        }
    }

    /// The parts `key` currently names (generation, count), if it is kept in parts.
    fn current_parts(&self, key: &str) -> Result<Option<(String, usize)>, StoreError> {
        Ok(self.raw_get(key)?.as_deref().and_then(parse_parts_marker))
    }

    fn delete_parts(&self, key: &str, parts: Option<(String, usize)>) -> Result<(), StoreError> {
        if let Some((generation, count)) = parts {
            for i in 0..count {
                self.raw_delete(&part_key(key, &generation, i))?;
            }
        }
        Ok(())
    }
}

/// The entry holding part `index` of `key`'s value in `generation`.
fn part_key(key: &str, generation: &str, index: usize) -> String {
    format!("{key}#{generation}.{index}")
}

/// `(generation, count)` when `value` is a parts marker.
fn parse_parts_marker(value: &str) -> Option<(String, usize)> {
    let rest = value.strip_prefix(PARTS_MARKER)?;
    let (generation, count) = rest.split_once(':')?;
    let count = count.parse().ok()?;
    (!generation.is_empty() && generation.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| (generation.to_owned(), count))
}

/// `value` cut into pieces of at most `part_chars` characters.
fn split_chars(value: &str, part_chars: usize) -> Vec<String> {
    let chars: Vec<char> = value.chars().collect();
    chars
        .chunks(part_chars)
        .map(|chunk| chunk.iter().collect())
        .collect()
}

fn map_keyring_error(e: keyring::Error) -> StoreError {
    match e {
        keyring::Error::NoStorageAccess(inner) => StoreError::Locked(inner.to_string()),
        keyring::Error::PlatformFailure(inner) => StoreError::Unavailable(inner.to_string()),
        other => StoreError::Failed(other.to_string()),
    }
}

impl SecretStore for KeyringStore {
    fn get(&self, key: &str) -> Result<Option<Secret>, StoreError> {
        let Some(value) = self.raw_get(key)? else {
            return Ok(None);
        };
        let Some((generation, count)) = parse_parts_marker(&value) else {
            return Ok(Some(Secret::new(value)));
        };
        let mut whole = String::new();
        for i in 0..count {
            match self.raw_get(&part_key(key, &generation, i))? {
                Some(part) => whole.push_str(&part),
                None => {
                    return Err(StoreError::Failed(format!(
                        "part {} of {count} of the entry {key:?} is missing; sign in again",
                        i + 1
                    )))
                }
            }
        }
        Ok(Some(Secret::new(whole)))
    }

    fn set(&self, key: &str, value: &Secret) -> Result<(), StoreError> {
        let previous = self.current_parts(key)?;
        let text = value.expose();
        if text.chars().count() <= self.part_chars && !text.starts_with(PARTS_MARKER) {
            self.entry(key)?
                .set_password(text)
                .map_err(map_keyring_error)?;
        } else {
            let generation = format!("{:08x}", rand::random::<u32>());
            let parts = split_chars(text, self.part_chars);
            for (i, part) in parts.iter().enumerate() {
                self.entry(&part_key(key, &generation, i))?
                    .set_password(part)
                    .map_err(map_keyring_error)?;
            }
            // The entry names the new parts only once they are all written.
            self.entry(key)?
                .set_password(&format!("{PARTS_MARKER}{generation}:{}", parts.len()))
                .map_err(map_keyring_error)?;
        }
        self.delete_parts(key, previous)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        let previous = self.current_parts(key)?;
        self.raw_delete(key)?;
        self.delete_parts(key, previous)
    }
}

/// A store in memory: tests, and sessions where the user chose not to persist.
#[derive(Debug, Default)]
pub struct MemoryStore {
    entries: Mutex<HashMap<String, Secret>>,
    failure: Mutex<Option<StoreError>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every later call fail with `error` (a locked keychain, in tests), or heal with `None`.
    pub fn set_failure(&self, error: Option<StoreError>) {
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = error;
    }

    fn check(&self) -> Result<(), StoreError> {
        match &*self.failure.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The keys held, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        keys.sort();
        keys
    }
}

impl SecretStore for MemoryStore {
    fn get(&self, key: &str) -> Result<Option<Secret>, StoreError> {
        self.check()?;
        Ok(self
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned())
    }

    fn set(&self, key: &str, value: &Secret) -> Result<(), StoreError> {
        self.check()?;
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_owned(), value.clone());
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.check()?;
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_split_on_characters_and_markers_round_trip() {
        let parts = split_chars("aé€𝄞bc", 2);
        assert_eq!(parts, ["aé", "€𝄞", "bc"]);
        assert_eq!(parts.concat(), "aé€𝄞bc");
        assert_eq!(
            parse_parts_marker("lanyard-parts:v1:0a1b2c3d:3"),
            Some(("0a1b2c3d".to_owned(), 3))
        );
        for not_a_marker in [
            "lanyard-parts:v1::3",
            "lanyard-parts:v1:zz:3",
            "lanyard-parts:v1:0a:x",
            "eyJhbGciOiJSUzI1NiJ9.e30.sig",
        ] {
            assert_eq!(parse_parts_marker(not_a_marker), None, "{not_a_marker}");
        }
    }
}
