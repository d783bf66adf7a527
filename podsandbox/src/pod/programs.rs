//! Compiled programs of this pod, keyed by the file they came from, so that repeated execs of the same
//! program (a liveness probe every few seconds, `sh` in a busybox-style image whose applets are all one file)
//! compile once per pod instead of once per call.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use crate::engine::Program;

/// At most this many programs stay cached; past it the cache starts over (execs of many different programs
/// are rare, and a compiled module can be megabytes).
const MAX_PROGRAMS: usize = 16;

/// Identity of a file's current content: a rewritten or replaced file gets a new key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileKey {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl FileKey {
    pub fn of(path: &Path) -> std::io::Result<FileKey> {
        let m = std::fs::metadata(path)?;
        Ok(FileKey {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
        })
    }
}

#[derive(Default)]
pub struct Programs {
    map: Mutex<HashMap<FileKey, Program>>,
}

impl Programs {
    pub fn get(&self, key: &FileKey) -> Option<Program> {
        self.map().get(key).cloned()
    }

    pub fn insert(&self, key: FileKey, program: Program) {
        let mut map = self.map();
        if map.len() >= MAX_PROGRAMS {
            map.clear();
        }
        map.insert(key, program);
    }

    fn map(&self) -> MutexGuard<'_, HashMap<FileKey, Program>> {
        // Plain data: still consistent if a holder panicked.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}
