//! Secret values (tokens, client secrets, PKCE verifiers, authorization codes).
//!
//! A [`Secret`] prints as `[redacted]` in `Debug` and `Display`, is never serialized implicitly and
//! exposes its value through one explicit method, so that a secret can only reach a log line, an error
//! message or a file when somebody wrote `.expose()` next to it. Its bytes are overwritten with
//! zeros when it is dropped (each clone its own), so a freed token does not linger in the heap
//! for a later core dump or memory read to find; copies made before the value was wrapped (a
//! response body being parsed) are not covered. This module owns no storage.

use std::fmt;

use zeroize::Zeroize;

/// A string that must never be printed. Compare with [`Secret::expose`] only where a value is needed.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value. Trailing newlines (common in secrets read from files) are the caller's concern:
    /// use [`Secret::from_file_contents`] for file contents.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// Wraps file contents, dropping one trailing `\n` / `\r\n` — a known cause of `invalid_client`.
    pub fn from_file_contents(contents: &str) -> Self {
        let trimmed = contents.strip_suffix('\n').unwrap_or(contents);
        let trimmed = trimmed.strip_suffix('\r').unwrap_or(trimmed);
        Self(trimmed.to_owned())
    }

    /// The value itself. Every call site is a place a secret leaves the type: keep them few.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_redact() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn file_contents_lose_one_trailing_newline() {
        assert_eq!(Secret::from_file_contents("abc\n").expose(), "abc");
        assert_eq!(Secret::from_file_contents("abc\r\n").expose(), "abc");
        assert_eq!(Secret::from_file_contents("abc").expose(), "abc");
    }
}
