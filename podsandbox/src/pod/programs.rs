//! Compiled programs of this pod, keyed by the file they came from, so that repeated execs of the same
//! program (a liveness probe every few seconds, `sh` in a busybox-style image whose applets are all one file)
//! compile once per pod instead of once per call; and containers' programs loaded from the daemon's
//! precompile cache (an artifact that cannot be used is logged and the caller compiles).

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use tracing::{info, warn};

use crate::engine::{Engine, Program};
use crate::error_chain;

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

    /// The program of the file at `wasm`, mapped from its precompiled `artifact` (on the blocking pool: it
    /// reads and maps files) and cached under the file's key, so execs of that file in this pod reuse it.
    /// `None` when the artifact cannot be used: the caller compiles `wasm`.
    pub async fn load_precompiled(
        &self,
        engine: &Engine,
        artifact: &Path,
        wasm: &Path,
        container_id: &str,
    ) -> Option<Program> {
        let key = FileKey::of(wasm).ok()?;
        if let Some(program) = self.get(&key) {
            return Some(program);
        }
        let (engine, owned) = (engine.clone(), artifact.to_path_buf());
        let started = std::time::Instant::now();
        let loaded = tokio::task::spawn_blocking(move || engine.load_precompiled(&owned)).await;
        match loaded {
            Ok(Ok(program)) => {
                // The e2e tests read this line to tell a mapped artifact from a compile.
                info!(container_id, artifact = %artifact.display(), micros = started.elapsed().as_micros() as u64,
                    "program loaded from precompiled artifact");
                self.insert(key, program.clone());
                Some(program)
            }
            Ok(Err(error)) => {
                warn!(container_id, artifact = %artifact.display(), error = %error_chain(&error),
                    "cannot use precompiled artifact; compiling the program");
                None
            }
            Err(error) => {
                warn!(container_id, %error, "loading task failed; compiling the program");
                None
            }
        }
    }

    fn map(&self) -> MutexGuard<'_, HashMap<FileKey, Program>> {
        // Plain data: still consistent if a holder panicked.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}
