//! Where the agent's log lines go: stderr (a file, the journal, a pipe), or the agent's own rotated
//! log file ([`crate::log_file`], `lanyard agent --log-file`), written so that a sink that
//! refuses them (a full disk, a closed pipe) never stops or slows the agent. A refused line is
//! dropped and counted; the first line that can be written again is preceded by one notice saying
//! how many were lost and why. Owns only that bookkeeping: it formats nothing and must never panic
//! (`eprintln!` would).

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::MakeWriter;

use crate::log_file::LogFile;

/// Lines the sink refused since the last one it took.
#[derive(Debug, Default)]
struct Lost {
    lines: u64,
    /// Why the first of them was refused.
    reason: String,
    /// A refused line was partly written: the notice starts on a fresh line.
    torn: bool,
}

/// A [`MakeWriter`] for `tracing_subscriber::fmt` over stderr (or a log file) that survives a
/// full disk.
#[derive(Debug, Clone, Default)]
pub struct LogSink {
    lost: Arc<Mutex<Lost>>,
    /// `None`: stderr.
    file: Option<Arc<Mutex<LogFile>>>,
}

impl LogSink {
    /// Lines go to `file` (rotated by size) instead of stderr.
    pub fn to_file(file: LogFile) -> Self {
        LogSink {
            lost: Arc::default(),
            file: Some(Arc::new(Mutex::new(file))),
        }
    }
}

impl<'a> MakeWriter<'a> for LogSink {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            lost: self.lost.clone(),
            file: self.file.clone(),
        }
    }
}

/// Writes one formatted event (the fmt layer writes each event with one `write_all`).
pub struct LineWriter {
    lost: Arc<Mutex<Lost>>,
    file: Option<Arc<Mutex<LogFile>>>,
}

/// Writes all of `buf`; on failure, whether some of it reached the sink.
fn write_whole(out: &mut impl Write, mut buf: &[u8]) -> Result<(), (io::Error, bool)> {
    let mut written_any = false;
    while !buf.is_empty() {
        match out.write(buf) {
            Ok(0) => return Err((io::ErrorKind::WriteZero.into(), written_any)),
            Ok(n) => {
                written_any = true;
                buf = &buf[n..];
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err((e, written_any)),
        }
    }
    Ok(())
}

impl LineWriter {
    fn write_line(&self, out: &mut impl Write, line: &[u8]) {
        let mut lost = self.lost.lock().unwrap_or_else(|p| p.into_inner());
        if lost.lines > 0 {
            let notice = format!(
                "{}lanyard: {} log line(s) could not be written ({}); logging again\n",
                if lost.torn { "\n" } else { "" },
                lost.lines,
                lost.reason
            );
            if let Err((_, torn)) = write_whole(out, notice.as_bytes()) {
                lost.lines += 1;
                lost.torn |= torn;
                return;
            }
            *lost = Lost::default();
        }
        if let Err((e, torn)) = write_whole(out, line) {
            if lost.lines == 0 {
                lost.reason = e.to_string();
            }
            lost.lines += 1;
            lost.torn = torn;
        }
    }
}

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &self.file {
            Some(file) => {
                let mut file = file.lock().unwrap_or_else(|p| p.into_inner());
                self.write_line(&mut *file, buf);
            }
            None => self.write_line(&mut io::stderr().lock(), buf),
        }
        // Taken either way: a refused line is counted, never retried by the caller.
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that takes `room` bytes, then refuses like a full disk.
    struct Disk {
        data: Vec<u8>,
        room: usize,
    }

    impl Write for Disk {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let free = self.room.saturating_sub(self.data.len());
            if free == 0 {
                return Err(io::Error::from_raw_os_error(28));
            }
            let n = free.min(buf.len());
            self.data.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn refused_lines_are_counted_and_reported_once_when_writing_works_again() {
        let sink = LogSink::default();
        let writer = sink.make_writer();
        let mut disk = Disk {
            data: Vec::new(),
            room: 14,
        };
        writer.write_line(&mut disk, b"first line\n");
        writer.write_line(&mut disk, b"second line\n"); // torn: 3 bytes fit
        writer.write_line(&mut disk, b"third line\n");
        disk.room = 1000;
        writer.write_line(&mut disk, b"fourth line\n");
        writer.write_line(&mut disk, b"fifth line\n");
        let text = String::from_utf8(disk.data).expect("utf-8");
        assert_eq!(text.matches("could not be written").count(), 1, "{text}");
        assert!(
            text.starts_with("first line\nsec\nlanyard: 2 log line(s) could not be written ("),
            "{text}"
        );
        assert!(
            text.ends_with("logging again\nfourth line\nfifth line\n"),
            "{text}"
        );
    }
}
