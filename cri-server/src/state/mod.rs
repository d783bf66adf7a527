//! Pod sandbox and container records: in memory for the RPCs, on disk under `<root>` so they survive a
//! restart.
//!
//! Layout: `<root>/sandboxes/<id>/{meta.json,status.json}` and `<root>/containers/<id>/{meta.json,status.json}`.
//! `meta.json` is written once at creation and never changes; `status.json` is the mutable part. Both are
//! versioned (`"version": 1`) and written atomically; the disk is updated before memory.

mod container;
mod persist;
pub mod sandbox;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dashmap::DashMap;
use tracing::warn;

pub use container::{Container, ContainerMeta, ContainerRecord, ContainerState, ContainerUser};
pub use persist::remove_dir as persist_remove_dir;
pub use sandbox::{Sandbox, SandboxMeta, SandboxRecord, SandboxState};

use crate::error::ServerError;

/// Every pod sandbox and container this daemon knows.
pub struct Store {
    root: PathBuf,
    pub sandboxes: DashMap<String, Arc<Sandbox>>,
    pub containers: DashMap<String, Arc<Container>>,
}

impl Store {
    /// Loads every record under `root`. A record that cannot be read is logged and skipped, never deleted.
    pub fn load(root: &Path) -> Result<Store, ServerError> {
        let store = Store {
            root: root.to_path_buf(),
            sandboxes: DashMap::new(),
            containers: DashMap::new(),
        };
        for dir in persist::subdirs(&store.sandboxes_dir())? {
            match Sandbox::load(&dir) {
                Ok(s) => {
                    store.sandboxes.insert(s.meta.id.clone(), Arc::new(s));
                }
                Err(err) => {
                    warn!(dir = %dir.display(), error = %crate::error::chain(&err), "skipping unreadable sandbox record")
                }
            }
        }
        for dir in persist::subdirs(&store.containers_dir())? {
            match Container::load(&dir) {
                Ok(c) => {
                    store.containers.insert(c.meta.id.clone(), Arc::new(c));
                }
                Err(err) => {
                    warn!(dir = %dir.display(), error = %crate::error::chain(&err), "skipping unreadable container record")
                }
            }
        }
        Ok(store)
    }

    pub fn sandboxes_dir(&self) -> PathBuf {
        self.root.join("sandboxes")
    }

    pub fn containers_dir(&self) -> PathBuf {
        self.root.join("containers")
    }

    /// Finds a sandbox by full id or unique id prefix (crictl users type short ids).
    pub fn sandbox(&self, id: &str) -> Result<Arc<Sandbox>, ServerError> {
        resolve(&self.sandboxes, id, "pod sandbox")
    }

    /// Finds a container by full id or unique id prefix.
    pub fn container(&self, id: &str) -> Result<Arc<Container>, ServerError> {
        resolve(&self.containers, id, "container")
    }

    /// The containers of one pod.
    pub fn containers_of(&self, pod_id: &str) -> Vec<Arc<Container>> {
        self.containers
            .iter()
            .filter(|c| c.meta.pod_id == pod_id)
            .map(|c| Arc::clone(c.value()))
            .collect()
    }
}

fn resolve<T>(
    map: &DashMap<String, Arc<T>>,
    id: &str,
    kind: &'static str,
) -> Result<Arc<T>, ServerError> {
    if id.is_empty() {
        return Err(ServerError::InvalidArgument(format!(
            "{kind} id must not be empty"
        )));
    }
    if let Some(v) = map.get(id) {
        return Ok(Arc::clone(v.value()));
    }
    let mut found = map.iter().filter(|e| e.key().starts_with(id));
    match (found.next(), found.next()) {
        (Some(one), None) => Ok(Arc::clone(one.value())),
        (Some(_), Some(_)) => Err(ServerError::Ambiguous {
            kind,
            prefix: id.to_string(),
        }),
        _ => Err(ServerError::NotFound {
            kind,
            id: id.to_string(),
        }),
    }
}

/// Whether every `key=value` of `selector` is among `labels`.
pub fn labels_match(
    selector: &std::collections::HashMap<String, String>,
    labels: &std::collections::HashMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}
