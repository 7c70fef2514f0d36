//! Where secrets live: the [`SecretStore`] port, the OS keychain adapter and an in-memory store.
//!
//! Refresh tokens and client secrets are kept only here. A keychain that is absent or locked is a
//! named [`StoreError`], never a silent fallback to a file. Calls may block on D-Bus: async callers
//! run them on a blocking thread.

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
}

impl KeyringStore {
    pub fn new(service: impl Into<String>) -> Self {
        Self {
            service: service.into(),
        }
    }

    fn entry(&self, key: &str) -> Result<keyring::Entry, StoreError> {
        keyring::Entry::new(&self.service, key).map_err(map_keyring_error)
    }
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
        match self.entry(key)?.get_password() {
            Ok(value) => Ok(Some(Secret::new(value))),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(map_keyring_error(e)),
        }
    }

    fn set(&self, key: &str, value: &Secret) -> Result<(), StoreError> {
        self.entry(key)?
            .set_password(value.expose())
            .map_err(map_keyring_error)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self.entry(key)?.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) => Err(map_keyring_error(e)),
        }
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
