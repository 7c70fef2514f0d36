//! The agent's own log file (`lanyard agent --log-file PATH`), rotated by size: when the file has
//! reached [`Rotation::max_bytes`], `PATH` becomes `PATH.1`, `PATH.1` becomes `PATH.2`, and so on,
//! the oldest is deleted, and a fresh `PATH` is opened, so at most [`Rotation::files`] files of
//! about `max_bytes` each ever exist (5 MiB × 3 by default). Every OS uses it: the tray, `lanyard
//! login` and the macOS LaunchAgent start the agent with `--log-file`; only systemd's unit logs to
//! the journal (which journald rotates).
//!
//! The open file is also made the process's stderr (fd 2 on Unix, the standard error handle on
//! Windows), again after each rotation, so the agent's own error lines and a panic's message land in
//! the same current file. It owns the file and the renames, nothing else: the lines' format and the
//! lost-line bookkeeping are [`crate::log_sink`]'s.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// How big a log file may grow and how many are kept (the current one included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    pub max_bytes: u64,
    pub files: u32,
}

/// 5 MiB × 3: a week of a busy agent's info lines, at most 15 MiB on disk.
pub const DEFAULT_ROTATION: Rotation = Rotation {
    max_bytes: 5 * 1024 * 1024,
    files: 3,
};

/// A log file that rotates itself.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    file: File,
    /// Bytes in the current file (its size at open, plus what was written since).
    written: u64,
    rotation: Rotation,
    /// Point stderr at the current file (the agent); off in tests, whose stderr is the harness's.
    capture_stderr: bool,
}

impl LogFile {
    /// Opens (appends to) `path`, creating its folder. With `capture_stderr`, stderr is redirected
    /// into it.
    pub fn open(path: &Path, rotation: Rotation, capture_stderr: bool) -> io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = open_append(path)?;
        let written = file.metadata()?.len();
        let log = LogFile {
            path: path.to_path_buf(),
            file,
            written,
            rotation: Rotation {
                max_bytes: rotation.max_bytes.max(1),
                files: rotation.files.max(1),
            },
            capture_stderr,
        };
        if capture_stderr {
            redirect_stderr(&log.file)?;
        }
        Ok(log)
    }

    /// `PATH.n` (n ≥ 1): the n-th older file.
    fn older(&self, n: u32) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    /// Rotates when the current file is full. A failure (a rename refused) keeps the current file
    /// and says so in it; the next attempt comes after another `max_bytes`.
    fn rotate_if_full(&mut self) {
        if self.written < self.rotation.max_bytes {
            return;
        }
        if let Err(e) = self.rotate() {
            self.written = 0;
            let _ = writeln!(
                self.file,
                "lanyard: cannot rotate the log file {}: {e}; appending to it",
                self.path.display()
            );
        }
    }

    fn rotate(&mut self) -> io::Result<()> {
        let keep = self.rotation.files;
        if keep == 1 {
            // Only one file: start it again.
            self.file.set_len(0)?;
            self.written = 0;
            return Ok(());
        }
        ignore_missing(std::fs::remove_file(self.older(keep - 1)))?;
        for n in (1..keep - 1).rev() {
            ignore_missing(std::fs::rename(self.older(n), self.older(n + 1)))?;
        }
        std::fs::rename(&self.path, self.older(1))?;
        let file = open_append(&self.path)?;
        if self.capture_stderr {
            redirect_stderr(&file)?;
        }
        self.file = file;
        self.written = 0;
        Ok(())
    }
}

impl Write for LogFile {
    /// Writes into the current file, rotating first when it is full (so a line is never split
    /// across two files).
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.rotate_if_full();
        let n = self.file.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn ignore_missing(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Makes `file` this process's stderr.
#[cfg(unix)]
fn redirect_stderr(file: &File) -> io::Result<()> {
    rustix::stdio::dup2_stderr(file).map_err(io::Error::from)
}

#[cfg(windows)]
fn redirect_stderr(file: &File) -> io::Result<()> {
    lanyard_core::os::windows::set_stderr(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_default()
    }

    #[test]
    fn rotates_by_size_and_keeps_only_the_newest_files() {
        let dir = std::env::temp_dir().join(format!("lanyard-log-file-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("logs").join("agent.log");
        let rotation = Rotation {
            max_bytes: 100,
            files: 3,
        };
        let mut log = LogFile::open(&path, rotation, false).expect("open");
        // 40 lines of 10 bytes: 4 files' worth beyond the first, so rotation runs 3 times.
        for i in 0..40 {
            log.write_all(format!("line {i:04}\n").as_bytes())
                .expect("write");
        }
        drop(log);
        let current = read(&path);
        let one = read(&dir.join("logs/agent.log.1"));
        let two = read(&dir.join("logs/agent.log.2"));
        assert!(
            !dir.join("logs/agent.log.3").exists(),
            "only 3 files are kept"
        );
        for (name, text) in [("current", &current), (".1", &one), (".2", &two)] {
            assert_eq!(text.len(), 100, "{name} holds one file's worth: {text:?}");
        }
        // The newest lines, in order, across the three files; the oldest were deleted.
        let all = format!("{two}{one}{current}");
        let expected: String = (10..40).map(|i| format!("line {i:04}\n")).collect();
        assert_eq!(all, expected);

        // Reopened (an agent restart): appends to the current file, and rotates it when full.
        let mut log = LogFile::open(&path, rotation, false).expect("reopen");
        log.write_all(b"after restart\n").expect("write");
        drop(log);
        assert_eq!(read(&path), "after restart\n");
        assert!(read(&dir.join("logs/agent.log.1")).starts_with("line 0030\n"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
