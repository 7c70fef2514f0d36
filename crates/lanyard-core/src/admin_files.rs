//! Files only an administrator may change — the machine policy and the CA bundles it names —
//! opened once and judged on the open handle, never on a path looked at twice.
//!
//! On Unix a trusted file is owned by root (or, for a policy file the user named on the command
//! line, by that user: [`Trust::also_uid`]) and not writable by group or others. With
//! [`Trust::ancestors_from`], every directory from there down to the file's own must pass the same
//! test; a sticky, world-writable directory such as `/tmp` fails it, because whoever may create
//! entries there may plant the path. The walk opens each directory with `O_NOFOLLOW` relative to
//! the one before and judges it with `fstat`, and the file is opened relative to the last one, so
//! a path that changes between the check and the read fails instead of being read.
//!
//! On Windows the file and, with `ancestors_from`, its folder must be owned by SYSTEM,
//! Administrators or TrustedInstaller, and no allow entry of their DACLs may give anyone else a
//! right to change them ([`crate::os::judge_admin_security`]); the folder stays open (not
//! shareable for deletion) while the file is opened, and links or junctions are refused.
//!
//! This module reads and judges. What a refusal means (a policy part ignored, a CA bundle
//! unusable) is the caller's decision.

use std::path::{Path, PathBuf};

/// Who, besides the administrators, may own a trusted file, and how far up its directories are
/// judged too.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trust {
    /// Unix: a uid trusted besides root (the user who named a policy file on the command line).
    pub also_uid: Option<u32>,
    /// Every directory from this one down to the file's own must be trusted too (Unix; on Windows
    /// only the file's own folder is judged). `None`: only the file.
    pub ancestors_from: Option<PathBuf>,
}

impl Trust {
    /// Administrators only, the file alone (a CA bundle).
    pub fn administrators() -> Self {
        Self::default()
    }
}

/// Why a file was not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminFileError {
    /// Someone other than an administrator owns it or may change it (or a directory above it):
    /// the text says who and what an administrator must do.
    Untrusted(String),
    /// It (or a directory above it) exists but could not be opened or read.
    Unreadable(String),
}

impl std::fmt::Display for AdminFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Untrusted(m) | Self::Unreadable(m) => f.write_str(m),
        }
    }
}

/// Reads the trusted file `path` whole: `Ok(None)` when it (or a directory leading to it) does not
/// exist.
pub fn read_trusted(path: &Path, trust: &Trust) -> Result<Option<Vec<u8>>, AdminFileError> {
    use std::io::Read;
    let Some(mut file) = open_trusted(path, trust)? else {
        return Ok(None);
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| AdminFileError::Unreadable(format!("cannot read: {e}")))?;
    Ok(Some(bytes))
}

/// [`read_trusted`] as UTF-8 text.
pub fn read_trusted_text(path: &Path, trust: &Trust) -> Result<Option<String>, AdminFileError> {
    read_trusted(path, trust)?
        .map(|bytes| {
            String::from_utf8(bytes)
                .map_err(|_| AdminFileError::Unreadable("cannot read: not UTF-8 text".into()))
        })
        .transpose()
}

#[cfg(unix)]
fn unreadable(e: impl std::fmt::Display) -> AdminFileError {
    AdminFileError::Unreadable(format!("cannot read: {e}"))
}

#[cfg(unix)]
pub use unix::{open_trusted, open_trusted_dir, TrustedDir};

#[cfg(unix)]
mod unix {
    use std::ffi::OsStr;
    use std::os::fd::OwnedFd;
    use std::os::unix::ffi::OsStrExt;
    use std::path::{Component, Path, PathBuf};

    use rustix::fs::{fstat, openat, FileType, Mode, OFlags, Stat, CWD};

    use super::{unreadable, AdminFileError, Trust};

    const DIR_FLAGS: OFlags = OFlags::RDONLY
        .union(OFlags::DIRECTORY)
        .union(OFlags::CLOEXEC)
        .union(OFlags::NOFOLLOW);
    // NONBLOCK: a FIFO planted in place of a file must not hang the open; it is refused below.
    const FILE_FLAGS: OFlags = OFlags::RDONLY
        .union(OFlags::CLOEXEC)
        .union(OFlags::NOFOLLOW)
        .union(OFlags::NONBLOCK);

    fn not_found(e: &rustix::io::Errno) -> bool {
        *e == rustix::io::Errno::NOENT || *e == rustix::io::Errno::NOTDIR
    }

    /// `Ok(())` when `stat` belongs to root (or `trust.also_uid`) and group and others may not
    /// write it; `dir` names the directory being judged (`None`: the file itself).
    fn judge(stat: &Stat, trust: &Trust, target: &Path, dir: bool) -> Result<(), AdminFileError> {
        let uid = stat.st_uid;
        // `st_mode` is a u32 on Linux and a u16 on macOS.
        #[allow(clippy::unnecessary_cast)]
        let mode = stat.st_mode as u32 & 0o7777;
        let what = if dir {
            format!("its directory {} is ", target.display())
        } else {
            String::new()
        };
        if uid != 0 && Some(uid) != trust.also_uid {
            let allowed = match trust.also_uid {
                Some(you) => format!("neither root nor uid {you}"),
                None => "not root".to_owned(),
            };
            return Err(AdminFileError::Untrusted(format!(
                "{what}owned by uid {uid}, {allowed}; an administrator must own it (chown root {})",
                target.display()
            )));
        }
        if mode & 0o022 != 0 {
            return Err(AdminFileError::Untrusted(format!(
                "{what}writable by group or others (mode {mode:04o}); an administrator must \
                 remove that (chmod go-w {})",
                target.display()
            )));
        }
        Ok(())
    }

    /// Opens the directory `dir` (absolute, canonical) after judging it and, with
    /// `trust.ancestors_from`, every directory from there down; `None` when it does not exist.
    fn open_dir_chain(dir: &Path, trust: &Trust) -> Result<Option<OwnedFd>, AdminFileError> {
        let Some(top) = &trust.ancestors_from else {
            let fd = match openat(CWD, dir, DIR_FLAGS, Mode::empty()) {
                Ok(fd) => fd,
                Err(e) if not_found(&e) => return Ok(None),
                Err(e) => return Err(unreadable(format!("{}: {e}", dir.display()))),
            };
            judge(&fstat(&fd).map_err(unreadable)?, trust, dir, true)?;
            return Ok(Some(fd));
        };
        let top = match std::fs::canonicalize(top) {
            Ok(top) if dir.starts_with(&top) => top,
            // The file lies elsewhere (a link led out of the tree): judge from the root.
            Ok(_) => PathBuf::from("/"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(unreadable(format!("{}: {e}", top.display()))),
        };
        let mut fd = match openat(
            CWD,
            &top,
            DIR_FLAGS.difference(OFlags::NOFOLLOW),
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(e) if not_found(&e) => return Ok(None),
            Err(e) => return Err(unreadable(format!("{}: {e}", top.display()))),
        };
        judge(&fstat(&fd).map_err(unreadable)?, trust, &top, true)?;
        let mut current = top.clone();
        let rest = dir.strip_prefix(&top).unwrap_or(Path::new(""));
        for component in rest.components() {
            let Component::Normal(name) = component else {
                continue;
            };
            current.push(name);
            fd = match openat(&fd, name, DIR_FLAGS, Mode::empty()) {
                Ok(next) => next,
                Err(e) if not_found(&e) => return Ok(None),
                Err(e) => return Err(unreadable(format!("{}: {e}", current.display()))),
            };
            judge(&fstat(&fd).map_err(unreadable)?, trust, &current, true)?;
        }
        Ok(Some(fd))
    }

    /// Opens `name` inside the judged directory `dir` and judges the file itself.
    fn open_in(
        dir: &OwnedFd,
        name: &OsStr,
        shown: &Path,
        trust: &Trust,
    ) -> Result<Option<std::fs::File>, AdminFileError> {
        let fd = match openat(dir, name, FILE_FLAGS, Mode::empty()) {
            Ok(fd) => fd,
            Err(e) if not_found(&e) => return Ok(None),
            Err(rustix::io::Errno::LOOP) => {
                return Err(AdminFileError::Untrusted(format!(
                    "{} is a symbolic link; an administrator must put the file itself there",
                    shown.display()
                )))
            }
            Err(e) => return Err(unreadable(e)),
        };
        let stat = fstat(&fd).map_err(unreadable)?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(AdminFileError::Untrusted(format!(
                "{} is not a regular file",
                shown.display()
            )));
        }
        judge(&stat, trust, shown, false)?;
        let file = std::fs::File::from(fd);
        // Reads block as usual: NONBLOCK was only for the open.
        rustix::fs::fcntl_setfl(&file, OFlags::empty()).map_err(unreadable)?;
        Ok(Some(file))
    }

    /// Opens the trusted file `path`; `Ok(None)` when it does not exist.
    pub fn open_trusted(
        path: &Path,
        trust: &Trust,
    ) -> Result<Option<std::fs::File>, AdminFileError> {
        // Links an administrator made are followed once, here; every step below refuses them.
        let canonical = match std::fs::canonicalize(path) {
            Ok(canonical) => canonical,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(unreadable(e)),
        };
        let (Some(parent), Some(name)) = (canonical.parent(), canonical.file_name()) else {
            return Err(AdminFileError::Untrusted(format!(
                "{} is not a file",
                path.display()
            )));
        };
        if trust.ancestors_from.is_none() {
            // The file alone: its directory is opened only to open the file relative to it.
            let dir = match openat(
                CWD,
                parent,
                DIR_FLAGS.difference(OFlags::NOFOLLOW),
                Mode::empty(),
            ) {
                Ok(fd) => fd,
                Err(e) if not_found(&e) => return Ok(None),
                Err(e) => return Err(unreadable(e)),
            };
            return open_in(&dir, name, path, trust);
        }
        match open_dir_chain(parent, trust)? {
            Some(dir) => open_in(&dir, name, path, trust),
            None => Ok(None),
        }
    }

    /// An open, judged directory of policy fragments.
    #[derive(Debug)]
    pub struct TrustedDir {
        fd: OwnedFd,
        path: PathBuf,
        trust: Trust,
    }

    /// Opens the trusted directory `path` (judged like a file's directories); `Ok(None)` when it
    /// does not exist.
    pub fn open_trusted_dir(
        path: &Path,
        trust: &Trust,
    ) -> Result<Option<TrustedDir>, AdminFileError> {
        let canonical = match std::fs::canonicalize(path) {
            Ok(canonical) => canonical,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(unreadable(e)),
        };
        Ok(open_dir_chain(&canonical, trust)?.map(|fd| TrustedDir {
            fd,
            path: path.to_owned(),
            trust: trust.clone(),
        }))
    }

    impl TrustedDir {
        /// The names of its entries ending in `.suffix`, hidden ones skipped, in name order.
        pub fn names_ending(&self, suffix: &str) -> Result<Vec<PathBuf>, AdminFileError> {
            let listing = rustix::fs::Dir::read_from(&self.fd).map_err(unreadable)?;
            let mut names = Vec::new();
            for entry in listing {
                let entry = entry.map_err(unreadable)?;
                let name = OsStr::from_bytes(entry.file_name().to_bytes());
                let bytes = name.as_bytes();
                if bytes.starts_with(b".") || !bytes.ends_with(suffix.as_bytes()) {
                    continue;
                }
                if bytes.len() > suffix.len() {
                    names.push(self.path.join(name));
                }
            }
            names.sort();
            Ok(names)
        }

        /// Reads the entry `file` (a path from [`TrustedDir::names_ending`]) after judging it;
        /// `Ok(None)` when it is gone.
        pub fn read_text(&self, file: &Path) -> Result<Option<String>, AdminFileError> {
            use std::io::Read;
            let Some(name) = file.file_name() else {
                return Ok(None);
            };
            let Some(mut opened) = open_in(&self.fd, name, file, &self.trust)? else {
                return Ok(None);
            };
            let mut text = String::new();
            opened.read_to_string(&mut text).map_err(unreadable)?;
            Ok(Some(text))
        }
    }
}

#[cfg(windows)]
pub use windows::open_trusted;

#[cfg(windows)]
mod windows {
    use std::path::Path;

    use super::{AdminFileError, Trust};
    use crate::os::windows::{open_with_security, SecuredObject};

    fn judged(
        path: &Path,
        directory: bool,
        what: &str,
    ) -> Result<Option<SecuredObject>, AdminFileError> {
        let object = match open_with_security(path, directory) {
            Ok(object) => object,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) || e.raw_os_error() == Some(3) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(AdminFileError::Unreadable(format!("cannot read: {e}"))),
        };
        crate::os::judge_admin_security(&object.facts)
            .map_err(|fault| {
                AdminFileError::Untrusted(format!(
                    "{what}{fault}; an administrator must own it and remove that access \
                     (icacls \"{}\" /setowner Administrators, /inheritance:r)",
                    path.display()
                ))
            })
            .map(|()| Some(object))
    }

    /// Opens the trusted file `path`; `Ok(None)` when it does not exist.
    pub fn open_trusted(
        path: &Path,
        trust: &Trust,
    ) -> Result<Option<std::fs::File>, AdminFileError> {
        // The folder stays open, without delete sharing, so it cannot be swapped while the file
        // is opened.
        let _folder = match (&trust.ancestors_from, path.parent()) {
            (Some(_), Some(folder)) => {
                let what = format!("its folder {} ", folder.display());
                match judged(folder, true, &what)? {
                    Some(folder) => Some(folder),
                    None => return Ok(None),
                }
            }
            _ => None,
        };
        Ok(judged(path, false, "")?.map(SecuredObject::into_file))
    }
}
