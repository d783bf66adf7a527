//! A container record.
//!
//! ```text
//!   CreateContainer ──► Created ──StartContainer──► Running ──(exit | stop | pod died)──► Exited
//!                          └──────────────(pod died)───────────────────────────────────────►┘
//!   RemoveContainer: any state but Running ──► (gone)
//! ```

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use proto::cri;
use serde::{Deserialize, Serialize};

use super::persist::{RECORD_VERSION, read_json, write_json};
use crate::error::ServerError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
    Unknown,
}

impl ContainerState {
    pub fn to_cri(self) -> cri::ContainerState {
        match self {
            ContainerState::Created => cri::ContainerState::ContainerCreated,
            ContainerState::Running => cri::ContainerState::ContainerRunning,
            ContainerState::Exited => cri::ContainerState::ContainerExited,
            ContainerState::Unknown => cri::ContainerState::ContainerUnknown,
        }
    }
}

/// Written once at CreateContainer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerMeta {
    pub version: u32,
    pub id: String,
    pub pod_id: String,
    pub config: cri::ContainerConfig,
    pub created_at: i64,
    /// Image id (config digest) and the name the kubelet asked for.
    pub image_id: String,
    pub image_name: String,
    /// A repo digest of the image if known, else its id (CRI `image_ref`).
    pub image_ref: String,
    pub log_path: PathBuf,
    /// This container's private copy of the image files.
    pub rootfs: PathBuf,
    /// Who the container runs as (resolved at create); absent in records written before it was kept.
    #[serde(default)]
    pub user: Option<ContainerUser>,
}

/// A container's Linux identity as CRI `ContainerStatus.user` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerUser {
    pub uid: u32,
    pub gid: u32,
    pub supplemental_groups: Vec<u32>,
}

/// The mutable part.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub version: u32,
    pub state: ContainerState,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
}

pub struct Container {
    pub meta: ContainerMeta,
    dir: PathBuf,
    record: Mutex<ContainerRecord>,
}

impl Container {
    pub fn create(dir: PathBuf, meta: ContainerMeta) -> Result<Container, ServerError> {
        let record = ContainerRecord {
            version: RECORD_VERSION,
            state: ContainerState::Created,
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
        };
        write_json(&dir.join("meta.json"), &meta)?;
        write_json(&dir.join("status.json"), &record)?;
        Ok(Container {
            meta,
            dir,
            record: Mutex::new(record),
        })
    }

    pub fn load(dir: &Path) -> Result<Container, ServerError> {
        let meta: ContainerMeta = read_json(&dir.join("meta.json"))?;
        let record: ContainerRecord = read_json(&dir.join("status.json"))?;
        Ok(Container {
            meta,
            dir: dir.to_path_buf(),
            record: Mutex::new(record),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> MutexGuard<'_, ContainerRecord> {
        self.record.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn record(&self) -> ContainerRecord {
        self.lock().clone()
    }

    pub fn state(&self) -> ContainerState {
        self.lock().state
    }

    /// Applies `change` on disk first, then in memory; a no-op change writes nothing.
    pub fn update(&self, change: impl FnOnce(&mut ContainerRecord)) -> Result<(), ServerError> {
        let mut guard = self.lock();
        let mut next = guard.clone();
        change(&mut next);
        next.version = RECORD_VERSION;
        if serde_json::to_value(&next).ok() == serde_json::to_value(&*guard).ok() {
            return Ok(());
        }
        write_json(&self.dir.join("status.json"), &next)?;
        *guard = next;
        Ok(())
    }

    pub fn metadata(&self) -> cri::ContainerMetadata {
        self.meta.config.metadata.clone().unwrap_or_default()
    }

    /// Applies a status reported by the pod process. An exited container never goes back to running (events
    /// may arrive out of order after a reconnect).
    pub fn apply_pod_status(&self, s: &proto::pod::ContainerStatus) -> Result<(), ServerError> {
        use proto::pod::ContainerState as P;
        let state = match P::try_from(s.state) {
            Ok(P::Created) => ContainerState::Created,
            Ok(P::Running) => ContainerState::Running,
            Ok(P::Exited) => ContainerState::Exited,
            Err(_) => ContainerState::Unknown,
        };
        self.update(|r| {
            if r.state == ContainerState::Exited && state != ContainerState::Exited {
                return;
            }
            r.state = state;
            if s.started_at != 0 {
                r.started_at = s.started_at;
            }
            if s.finished_at != 0 {
                r.finished_at = s.finished_at;
            }
            if state == ContainerState::Exited {
                r.exit_code = s.exit_code;
                r.reason = s.reason.clone();
                r.message = s.message.clone();
            }
        })
    }
}
