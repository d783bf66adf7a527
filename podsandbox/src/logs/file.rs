//! One container's CRI log file, shared by its stdout and stderr sinks.
//!
//! Writes are serialized by a mutex and every log line goes out in one `write` on an `O_APPEND` descriptor, so
//! lines of the two streams never interleave inside a line. The kubelet rotates logs by renaming the file and
//! then calling `ReopenContainerLog`, which ends in [`LogFile::reopen`].

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// Permissions of a new log file: what containerd uses (readable by the group, e.g. log collectors).
const LOG_FILE_MODE: u32 = 0o640;

/// A container's CRI log file. Clones share the same open file.
#[derive(Clone, Debug)]
pub struct LogFile {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    file: Mutex<File>,
}

impl LogFile {
    /// Opens (creating if needed) `path` for appending.
    pub fn open(path: &Path) -> io::Result<LogFile> {
        let file = open_append(path)?;
        Ok(LogFile {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                file: Mutex::new(file),
            }),
        })
    }

    /// The path this log file was opened at.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Reopens the path, e.g. after the kubelet renamed the old file away. Lines written after this call go to
    /// the new file; the old descriptor is closed once no write holds it.
    pub fn reopen(&self) -> io::Result<()> {
        let file = open_append(&self.inner.path)?;
        *self.lock() = file;
        Ok(())
    }

    /// Appends one complete, already formatted log line with a single write.
    pub(crate) fn write_line(&self, line: &[u8]) -> io::Result<()> {
        // `write_all` on an O_APPEND regular file completes in one write(2) unless the disk is full or a signal
        // interrupts it; both are reported to the caller.
        self.lock().write_all(line)
    }

    fn lock(&self) -> MutexGuard<'_, File> {
        // A panic while holding the lock cannot leave the `File` in a broken state, so poisoning is ignored.
        self.inner
            .file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(LOG_FILE_MODE)
        .open(path)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn reopen_follows_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let log = LogFile::open(&path).unwrap();
        log.write_line(b"one\n").unwrap();
        std::fs::rename(&path, dir.path().join("0.log.1")).unwrap();
        log.write_line(b"two\n").unwrap();
        log.reopen().unwrap();
        log.write_line(b"three\n").unwrap();

        let rotated = std::fs::read_to_string(dir.path().join("0.log.1")).unwrap();
        assert_eq!(rotated, "one\ntwo\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "three\n");
    }
}
